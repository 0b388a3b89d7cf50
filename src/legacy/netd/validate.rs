//! The whitelist `patchward-netd` applies before `nft` ever sees a ruleset.
//!
//! Text, not the `nftables` JSON crate: the renderer's output is nft text, `nft -c -f`
//! checks exactly what will be applied, and a text whitelist is small enough to test
//! case by case (the refusals below), where a JSON schema would need the same checks
//! on a far larger structure and a second rendering path. The rules:
//!
//! - only printable ASCII, tabs and newlines (nothing nft might read differently), and
//!   no `'` or `\` outside strings (no quoting but `"..."`, no escapes, no line
//!   continuations);
//! - top-level statements (split at newlines and `;` outside braces) are exactly
//!   `add table inet patchward`, `delete table inet patchward`, or
//!   `table inet patchward { ... }`;
//! - braces balance, `"strings"` and `# comments` are respected (a `}` inside them
//!   does not count), and inside the block the words `include`, `define`, `ruleset` and
//!   `table` are refused: nothing in a table block can reach outside the table except
//!   through those.

/// Why a ruleset was refused; each message says what is accepted instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesetError {
    #[error("the ruleset is empty: send a complete `table inet patchward {{ ... }}`")]
    Empty,
    #[error("the ruleset has no `table inet patchward {{ ... }}` block")]
    NoTable,
    #[error(
        "line {line}: character {found} is not allowed (only printable ASCII, tabs and newlines)"
    )]
    Char { line: usize, found: String },
    #[error("line {line}: `{found}` outside a string is refused: only \"...\" quoting, no escapes")]
    Escape { line: usize, found: char },
    #[error("line {line}: unterminated string")]
    Quote { line: usize },
    #[error("line {line}: `}}` without a matching `{{`")]
    Close { line: usize },
    #[error("line {line}: `{{` is never closed")]
    Open { line: usize },
    #[error(
        "line {line}: `flush ruleset` is refused: it would remove every table, and only table inet patchward may be changed"
    )]
    FlushRuleset { line: usize },
    #[error("line {line}: `include` is refused: send the whole ruleset inline")]
    Include { line: usize },
    #[error("line {line}: `{text}` names another table: only table inet patchward may be changed")]
    OtherTable { line: usize, text: String },
    #[error(
        "line {line}: `{text}` is not allowed: only `add table inet patchward`, `delete table inet patchward` and `table inet patchward {{ ... }}` are accepted"
    )]
    Statement { line: usize, text: String },
    #[error("line {line}: `{word}` is not allowed inside table inet patchward")]
    Inside { line: usize, word: String },
}

/// One top-level statement: its words (lower case), whether it had a `{...}` block, and
/// the line it starts on.
struct Stmt {
    line: usize,
    words: Vec<String>,
    block: bool,
}

/// Accepts exactly the whitelist above.
pub fn validate(text: &str) -> Result<(), RulesetError> {
    let stmts = statements(text)?;
    if stmts.is_empty() {
        return Err(RulesetError::Empty);
    }
    let mut has_table = false;
    for s in &stmts {
        let words: Vec<&str> = s.words.iter().map(String::as_str).collect();
        let text = words.join(" ");
        match (words.as_slice(), s.block) {
            (["add" | "delete", "table", "inet", "patchward"], false) => {}
            (["table", "inet", "patchward"], true) => has_table = true,
            (["flush", "ruleset", ..], _) => {
                return Err(RulesetError::FlushRuleset { line: s.line });
            }
            (["include", ..], _) => return Err(RulesetError::Include { line: s.line }),
            _ if names_other_table(&words) => {
                return Err(RulesetError::OtherTable { line: s.line, text });
            }
            _ => return Err(RulesetError::Statement { line: s.line, text }),
        }
    }
    if !has_table {
        return Err(RulesetError::NoTable);
    }
    Ok(())
}

/// Printable ASCII, tab and newline.
fn allowed(c: char, line: usize) -> Result<(), RulesetError> {
    if c == '\n' || c == '\t' || (' '..='~').contains(&c) {
        Ok(())
    } else {
        Err(RulesetError::Char {
            line,
            found: format!("{c:?}"),
        })
    }
}

/// A statement with `table` in it that is not about `inet patchward`.
fn names_other_table(words: &[&str]) -> bool {
    words
        .iter()
        .position(|w| *w == "table")
        .is_some_and(|i| words.get(i + 1..i + 3) != Some(&["inet", "patchward"][..]))
}

/// Splits the text into top-level statements, checking characters, strings, comments,
/// braces and the words inside blocks on the way.
fn statements(text: &str) -> Result<Vec<Stmt>, RulesetError> {
    let mut stmts = Vec::new();
    let mut cur: Option<Stmt> = None;
    let mut depth = 0usize;
    let mut open_line = 0;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let end_stmt = |cur: &mut Option<Stmt>, stmts: &mut Vec<Stmt>| {
        if let Some(s) = cur.take() {
            stmts.push(s);
        }
    };
    while let Some(c) = chars.next() {
        allowed(c, line)?;
        match c {
            '\n' => {
                line += 1;
                if depth == 0 {
                    end_stmt(&mut cur, &mut stmts);
                }
            }
            ';' if depth == 0 => end_stmt(&mut cur, &mut stmts),
            '#' => {
                for c in chars.by_ref() {
                    allowed(c, line)?;
                    if c == '\n' {
                        line += 1;
                        if depth == 0 {
                            end_stmt(&mut cur, &mut stmts);
                        }
                        break;
                    }
                }
            }
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\n') | None => return Err(RulesetError::Quote { line }),
                    Some(c) => allowed(c, line)?,
                }
            },
            '{' => {
                if depth == 0 {
                    open_line = line;
                    cur.get_or_insert_with(|| Stmt {
                        line,
                        words: Vec::new(),
                        block: false,
                    })
                    .block = true;
                }
                depth += 1;
            }
            '}' => {
                depth = depth.checked_sub(1).ok_or(RulesetError::Close { line })?;
                if depth == 0 {
                    end_stmt(&mut cur, &mut stmts);
                }
            }
            // No quoting or escaping but `"..."`: a `'` or `\` that nft might read
            // as one would make this scan and nft's disagree about what is code.
            '\'' | '\\' => {
                return Err(RulesetError::Escape { line, found: c });
            }
            c if c.is_whitespace() || c == ';' => {}
            c => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{};\"#'\\".contains(n) {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                let word = word.to_ascii_lowercase();
                if depth > 0 {
                    if ["include", "define", "ruleset", "table"].contains(&word.as_str()) {
                        return Err(RulesetError::Inside { line, word });
                    }
                } else {
                    let s = cur.get_or_insert_with(|| Stmt {
                        line,
                        words: Vec::new(),
                        block: false,
                    });
                    s.words.push(word);
                }
            }
        }
    }
    if depth > 0 {
        return Err(RulesetError::Open { line: open_line });
    }
    end_stmt(&mut cur, &mut stmts);
    Ok(stmts)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
