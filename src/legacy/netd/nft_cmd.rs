//! Running `nft` for the helper, and reading what it prints.
//!
//! The edge to the kernel: every call is one `nft` process with the ruleset on stdin (no
//! temporary files), its stderr returned in the error. The parsing of its JSON and of
//! the table's comment is pure and tested without a kernel.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{BlockedFlow, Counter};

/// The comment the batch gives the table: `patchward-sha256 <hex>`.
const HASH_TAG: &str = "patchward-sha256 ";
/// The dynamic sets the renderer declares for refused flows.
const BLOCKED_SETS: [&str; 4] = ["blocked4", "blocked4_other", "blocked6", "blocked6_other"];

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {program}: {cause}")]
    Spawn {
        program: String,
        cause: std::io::Error,
    },
    #[error("nft {what} failed: {stderr}")]
    Failed { what: &'static str, stderr: String },
    #[error("nft printed JSON this helper does not understand: {0}")]
    Json(String),
}

/// The `nft` program to run (normally `/usr/sbin/nft`).
#[derive(Clone, Debug)]
pub struct Nft {
    pub program: PathBuf,
}

/// The one batch that replaces the table: creating it first makes the delete safe when
/// it does not exist yet, the comment records which ruleset this is, and the kernel
/// commits all of it or nothing.
pub fn batch(ruleset: &str, sha256: &str) -> String {
    format!(
        "add table inet patchward\ndelete table inet patchward\n\
         table inet patchward {{ comment \"{HASH_TAG}{sha256}\"; }}\n{ruleset}\n"
    )
}

/// The hash in the comment of a listed table (`nft list table inet patchward`).
pub fn applied_hash(listing: &str) -> Option<String> {
    listing.lines().find_map(|l| {
        let l = l.trim();
        let hex = l
            .strip_prefix("comment \"")?
            .strip_prefix(HASH_TAG)?
            .strip_suffix('"')?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_string())
    })
}

impl Nft {
    fn run(
        &self,
        what: &'static str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, NftError> {
        let program = self.program.display().to_string();
        let spawn_err = |cause| NftError::Spawn {
            program: program.clone(),
            cause,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // nft reads all of stdin before it answers, so this cannot deadlock on its
            // output pipes; a write error shows up as nft's own error below.
            let _ = pipe.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Long enough for nft's error with its caret line, short enough for a log.
            let stderr: String = stderr.trim().chars().take(4000).collect();
            Err(NftError::Failed { what, stderr })
        }
    }

    /// `nft -c -f -`: would the kernel accept this batch? Changes nothing.
    pub fn check(&self, batch: &str) -> Result<(), NftError> {
        self.run("check", &["-c", "-f", "-"], Some(batch))
            .map(|_| ())
    }

    /// `nft -f -`: one transaction.
    pub fn apply(&self, batch: &str) -> Result<(), NftError> {
        self.run("apply", &["-f", "-"], Some(batch)).map(|_| ())
    }

    /// The table as the kernel lists it, or None when there is none.
    pub fn list_table(&self) -> Result<Option<String>, NftError> {
        absent_is_none(self.run("list", &["list", "table", "inet", "patchward"], None))
    }

    /// The hash of the applied ruleset, from the table's comment. Lists with `-t`
    /// (no set elements): for 1,000 hosts the full listing took 450 ms, this a few.
    pub fn applied_hash(&self) -> Result<Option<String>, NftError> {
        let args = ["-t", "list", "table", "inet", "patchward"];
        Ok(absent_is_none(self.run("list", &args, None))?
            .as_deref()
            .and_then(applied_hash))
    }

    /// Named counters and blocked flows; both empty when there is no table.
    pub fn counters(&self) -> Result<(Vec<Counter>, Vec<BlockedFlow>), NftError> {
        let args = ["-j", "list", "counters", "table", "inet", "patchward"];
        let counters = match absent_is_none(self.run("list counters", &args, None))? {
            Some(json) => parse_counters(&json)?,
            None => return Ok((Vec::new(), Vec::new())),
        };
        let mut blocked = Vec::new();
        for set in BLOCKED_SETS {
            let args = ["-j", "list", "set", "inet", "patchward", set];
            if let Some(json) = absent_is_none(self.run("list set", &args, None))? {
                blocked.extend(parse_blocked(&json)?);
            }
        }
        blocked.sort_by(|a, b| {
            (a.source, a.destination, &a.proto, a.port).cmp(&(
                b.source,
                b.destination,
                &b.proto,
                b.port,
            ))
        });
        Ok((counters, blocked))
    }
}

/// nft says "No such file or directory" for a missing table or set.
fn absent_is_none(r: Result<String, NftError>) -> Result<Option<String>, NftError> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(NftError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn objects(json: &str) -> Result<Vec<Value>, NftError> {
    let v: Value = serde_json::from_str(json).map_err(|e| NftError::Json(e.to_string()))?;
    match v.get("nftables") {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(NftError::Json("no `nftables` array".into())),
    }
}

fn num(v: &Value, key: &str) -> Result<u64, NftError> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| NftError::Json(format!("missing number `{key}` in {v}")))
}

/// `nft -j list counters table inet patchward` into (name, packets, bytes), sorted.
pub fn parse_counters(json: &str) -> Result<Vec<Counter>, NftError> {
    let mut out = Vec::new();
    for item in objects(json)? {
        let Some(c) = item.get("counter") else {
            continue;
        };
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| NftError::Json(format!("counter without a name: {c}")))?;
        out.push(Counter {
            name: name.to_string(),
            packets: num(c, "packets")?,
            bytes: num(c, "bytes")?,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The elements of one `blocked` set (`nft -j list set ...`), each with its counter.
pub fn parse_blocked(json: &str) -> Result<Vec<BlockedFlow>, NftError> {
    let mut out = Vec::new();
    for item in objects(json)? {
        let Some(elems) = item
            .get("set")
            .and_then(|s| s.get("elem"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for e in elems {
            let bad = || NftError::Json(format!("unexpected set element {e}"));
            let inner = e.get("elem").ok_or_else(bad)?;
            let parts = inner
                .get("val")
                .and_then(|v| v.get("concat"))
                .and_then(Value::as_array)
                .ok_or_else(bad)?;
            let addr = |i: usize| {
                parts
                    .get(i)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)
            };
            let proto = match parts.get(2) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(bad()),
            };
            let port = match parts.get(3) {
                None => None,
                Some(v) => Some(
                    v.as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or_else(bad)?,
                ),
            };
            let counter = inner.get("counter").ok_or_else(bad)?;
            out.push(BlockedFlow {
                source: addr(0)?,
                destination: addr(1)?,
                proto,
                port,
                packets: num(counter, "packets")?,
                bytes: num(counter, "bytes")?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_read_back_from_the_listing() {
        let hex = "ab".repeat(32);
        let listing =
            format!("table inet patchward {{\n\tcomment \"patchward-sha256 {hex}\"\n}}\n");
        assert_eq!(applied_hash(&listing), Some(hex.clone()));
        assert_eq!(applied_hash("table inet patchward {\n}\n"), None);
        assert_eq!(applied_hash("\tcomment \"patchward-sha256 xyz\"\n"), None);
        assert!(
            batch("table inet patchward { }", &hex)
                .contains(&format!("comment \"patchward-sha256 {hex}\""))
        );
    }

    #[test]
    fn counters_and_blocked_elements_parse() {
        let counters = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"counter": {"family": "inet", "name": "drop_out_db", "table": "patchward", "handle": 4, "packets": 7, "bytes": 420}},
            {"counter": {"family": "inet", "name": "drop_in_db", "table": "patchward", "handle": 3, "packets": 0, "bytes": 0}}]}"#;
        assert_eq!(
            parse_counters(counters).unwrap(),
            vec![
                Counter {
                    name: "drop_in_db".into(),
                    packets: 0,
                    bytes: 0
                },
                Counter {
                    name: "drop_out_db".into(),
                    packets: 7,
                    bytes: 420
                },
            ]
        );
        let set = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "blocked4",
            "table": "patchward", "type": ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"], "handle": 9,
            "size": 65536, "flags": ["timeout"], "timeout": 3600, "elem": [{"elem": {"val": {"concat":
            ["192.0.2.7", "198.51.100.10", "tcp", 445]}, "expires": 3599, "counter": {"packets": 3, "bytes": 180}}},
            {"elem": {"val": {"concat": ["198.51.100.10", "192.0.2.9", 47]}, "counter": {"packets": 1, "bytes": 60}}}]}}]}"#;
        let blocked = parse_blocked(set).unwrap();
        assert_eq!(blocked.len(), 2);
        assert_eq!(blocked[0].destination.to_string(), "198.51.100.10");
        assert_eq!(
            (
                blocked[0].proto.as_str(),
                blocked[0].port,
                blocked[0].packets
            ),
            ("tcp", Some(445), 3)
        );
        assert_eq!((blocked[1].proto.as_str(), blocked[1].port), ("47", None));
        let empty = r#"{"nftables": [{"set": {"name": "blocked6", "elem": null}}]}"#;
        assert_eq!(parse_blocked(empty).unwrap(), vec![]);
    }

    #[test]
    fn json_it_does_not_understand_is_an_error() {
        let err = parse_counters("not json").unwrap_err().to_string();
        assert!(
            err.starts_with("nft printed JSON this helper does not understand"),
            "{err}"
        );
        let err = parse_counters(r#"{"nftables": [{"counter": {"name": "x"}}]}"#).unwrap_err();
        assert!(
            err.to_string().contains("missing number `packets`"),
            "{err}"
        );
    }
}
