//! A line diff for `patchward legacy segment plan`: what applying would change.
//!
//! Hand-written because no diff crate is in the tree (`similar` is not in Cargo.lock) and
//! rulesets are line-oriented and sorted, so changes are usually a few lines in a long
//! text: the common head and tail are cut off first, and only the middle goes through a
//! longest-common-subsequence table. A middle too large for that table (more than
//! `MAX_CELLS` line pairs) is shown as removed and added whole: still correct, just less
//! minimal. The output is unified-diff style with 3 lines of context.

/// Above this many (old x new) line pairs in the changed middle, no LCS table is built.
const MAX_CELLS: usize = 4_000_000;
const CONTEXT: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// The unified diff from `applied` to `wanted`; empty when they are equal.
pub fn diff(applied: &str, wanted: &str) -> String {
    let old: Vec<&str> = applied.lines().collect();
    let new: Vec<&str> = wanted.lines().collect();
    let ops = ops(&old, &new);
    if ops.iter().all(|o| matches!(o, Op::Same(..))) {
        return String::new();
    }
    let mut out = String::from("--- applied\n+++ wanted\n");
    // Hunks: runs of changes joined when fewer than 2*CONTEXT equal lines lie between.
    let changed: Vec<usize> = (0..ops.len())
        .filter(|&i| !matches!(ops[i], Op::Same(..)))
        .collect();
    let mut start = 0;
    while start < changed.len() {
        let mut end = start;
        while end + 1 < changed.len() && changed[end + 1] - changed[end] <= 2 * CONTEXT + 1 {
            end += 1;
        }
        let lo = changed[start].saturating_sub(CONTEXT);
        let hi = (changed[end] + CONTEXT + 1).min(ops.len());
        hunk(&mut out, &ops[lo..hi], &old, &new, first_lines(&ops, lo));
        start = end + 1;
    }
    out
}

/// The 0-based old and new line numbers at which `ops[at]` starts.
fn first_lines(ops: &[Op], at: usize) -> (usize, usize) {
    ops[..at].iter().fold((0, 0), |(o, n), op| match op {
        Op::Same(..) => (o + 1, n + 1),
        Op::Del(_) => (o + 1, n),
        Op::Add(_) => (o, n + 1),
    })
}

fn hunk(out: &mut String, ops: &[Op], old: &[&str], new: &[&str], (o, n): (usize, usize)) {
    let olen = ops.iter().filter(|op| !matches!(op, Op::Add(_))).count();
    let nlen = ops.iter().filter(|op| !matches!(op, Op::Del(_))).count();
    // As in `diff -u`, an empty side is numbered by the line before it.
    let start = |at: usize, len: usize| if len == 0 { at } else { at + 1 };
    out.push_str(&format!(
        "@@ -{},{olen} +{},{nlen} @@\n",
        start(o, olen),
        start(n, nlen)
    ));
    for op in ops {
        let (mark, line) = match *op {
            Op::Same(i, _) => (' ', old[i]),
            Op::Del(i) => ('-', old[i]),
            Op::Add(j) => ('+', new[j]),
        };
        out.push(mark);
        out.push_str(line);
        out.push('\n');
    }
}

fn ops(old: &[&str], new: &[&str]) -> Vec<Op> {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (om, nm) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    let mut ops: Vec<Op> = (0..head).map(|i| Op::Same(i, i)).collect();
    if om.len().saturating_mul(nm.len()) <= MAX_CELLS {
        lcs_ops(om, nm, head, &mut ops);
    } else {
        ops.extend((0..om.len()).map(|i| Op::Del(head + i)));
        ops.extend((0..nm.len()).map(|j| Op::Add(head + j)));
    }
    let (ot, nt) = (old.len() - tail, new.len() - tail);
    ops.extend((0..tail).map(|k| Op::Same(ot + k, nt + k)));
    ops
}

/// Classic LCS table over the middle; `base` is the middle's offset in both texts.
fn lcs_ops(a: &[&str], b: &[&str], base: usize, ops: &mut Vec<Op>) {
    let w = b.len() + 1;
    // len[i*w + j]: LCS length of a[i..] and b[j..].
    let mut len = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            len[i * w + j] = if a[i] == b[j] {
                len[(i + 1) * w + j + 1] + 1
            } else {
                len[(i + 1) * w + j].max(len[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push(Op::Same(base + i, base + j));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || len[i * w + j + 1] >= len[(i + 1) * w + j]) {
            ops.push(Op::Add(base + j));
            j += 1;
        } else {
            ops.push(Op::Del(base + i));
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(diff("a\nb\n", "a\nb\n"), "");
        assert_eq!(diff("", ""), "");
    }

    #[test]
    fn changes_come_in_hunks_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n";
        let new = "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n15\n16\n";
        expect![[r#"
            --- applied
            +++ wanted
            @@ -1,6 +1,6 @@
             1
             2
            +three
            -3
             4
             5
             6
            @@ -11,5 +11,5 @@
             11
             12
             13
            -14
             15
            +16
        "#]]
        .assert_eq(&diff(old, new));
    }

    #[test]
    fn from_nothing_everything_is_added() {
        expect![[r#"
            --- applied
            +++ wanted
            @@ -0,0 +1,2 @@
            +table inet patchward {
            +}
        "#]]
        .assert_eq(&diff("", "table inet patchward {\n}\n"));
    }

    #[test]
    fn a_huge_middle_is_replaced_whole_and_still_correct() {
        let old: String = (0..3000).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..3000).map(|i| format!("new {i}\n")).collect();
        let d = diff(&old, &new);
        assert_eq!(d.lines().filter(|l| l.starts_with("-old")).count(), 3000);
        assert_eq!(d.lines().filter(|l| l.starts_with("+new")).count(), 3000);
        assert!(d.contains("@@ -1,3000 +1,3000 @@"), "{}", &d[..200]);
    }
}
