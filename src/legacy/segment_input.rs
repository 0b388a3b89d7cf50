//! What the fence is made of, read from the database in one place: the legacy hosts
//! that have flows (each with its nft object name and addresses), the named sets, and
//! the DNS answers still alive. `legacy::segment` renders it; the applied copy is
//! stored as JSON (`legacy_segment.input`) so DNS refreshes and restores re-render
//! exactly what an operator approved.
//!
//! A legacy host is in the fence once it has at least one flow: registering a host must
//! not cut it off from everything before anyone has said what it needs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use jiff::Timestamp;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::flows::{DnsAnswers, Flow, MAX_NAME_CHARS, NamedSets, SegmentHost, valid_name};
use super::{LegacyError, hosts};
use crate::config::LegacyConfig;
use crate::db::legacy_segment as q;

/// One fenced host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputHost {
    /// The legacy tables' key (agent host id or agentless name).
    pub key: String,
    /// The name people see.
    pub display: String,
    /// The name of its nft objects (`drop_in_NAME`): [`nft_name`] of the key.
    pub nft_name: String,
    pub addresses: Vec<IpAddr>,
    pub flows: Vec<Flow>,
}

/// The fence's input (without DNS answers, which change on their own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInput {
    /// Sorted by key.
    pub hosts: Vec<InputHost>,
    /// Named sets, members as CIDR text.
    pub sets: BTreeMap<String, Vec<String>>,
}

impl SegmentInput {
    /// The hosts as the renderer takes them.
    pub fn segment_hosts(&self) -> Vec<SegmentHost> {
        self.hosts
            .iter()
            .map(|h| SegmentHost {
                name: h.nft_name.clone(),
                addresses: h.addresses.clone(),
                flows: h.flows.clone(),
            })
            .collect()
    }

    /// The named sets as the renderer takes them (members were validated when stored).
    pub fn named_sets(&self) -> Result<NamedSets, LegacyError> {
        let mut out = NamedSets::new();
        for (name, members) in &self.sets {
            let nets = members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    LegacyError::Refused(format!("the stored set @{name} is damaged: {e}"))
                })?;
            out.insert(name.clone(), nets);
        }
        Ok(out)
    }

    /// The DNS names the flows use, sorted.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|h| h.flows.iter())
            .filter_map(|f| match &f.peer {
                super::flows::Peer::Dns(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The host whose nft objects are called `nft_name`.
    pub fn by_nft_name(&self, nft_name: &str) -> Option<&InputHost> {
        self.hosts.iter().find(|h| h.nft_name == nft_name)
    }
}

/// A set member: a CIDR, or a bare address (a /32 or /128).
pub fn parse_member(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(a));
    }
    t.parse::<IpNet>()
        .map_err(|e| format!("`{t}` is not an address or CIDR: {e}"))
}

/// The nft object name for a host key: lowercase, every character outside `a-z 0-9 -`
/// made `-`, `h-` in front when it does not start with a letter, and cut to 48
/// characters with a hash of the key at the end when longer. Two keys that would
/// get the same name are told apart by [`assign_names`].
pub fn nft_name(key: &str) -> String {
    let mut s: String = key
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "h-");
    }
    if s.chars().count() > MAX_NAME_CHARS {
        s = with_hash(&s, key);
    }
    debug_assert!(valid_name(&s), "{s}");
    s
}

fn with_hash(base: &str, key: &str) -> String {
    let h = hex::encode(&Sha256::digest(key.as_bytes())[..4]);
    let keep: String = base.chars().take(MAX_NAME_CHARS - 9).collect();
    format!("{}-{h}", keep.trim_end_matches('-'))
}

/// Gives every host its nft name; where two keys would collide, each of them gets the
/// hashed form, so the names stay stable whatever else is added.
fn assign_names(hosts: &mut [InputHost]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for h in hosts.iter() {
        *seen.entry(nft_name(&h.key)).or_default() += 1;
    }
    for h in hosts.iter_mut() {
        let n = nft_name(&h.key);
        h.nft_name = if seen[&n] > 1 {
            with_hash(&n, &h.key)
        } else {
            n
        };
    }
}

/// Reads the fence's current input: every legacy host (as `legacy::hosts::list` sees
/// them at `now`) that has flows, and the named sets. A stored flow or address that
/// no longer parses is reported, not skipped (it was validated when stored).
pub fn load(
    conn: &Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
) -> Result<SegmentInput, LegacyError> {
    let mut flows: BTreeMap<String, Vec<Flow>> = BTreeMap::new();
    for row in q::flows_all(conn)? {
        let f: Flow = row.flow.parse().map_err(|e| {
            LegacyError::Refused(format!(
                "the stored flow {:?} of host {:?} is damaged: {e}",
                row.flow, row.host
            ))
        })?;
        flows.entry(row.host).or_default().push(f);
    }
    let mut out = SegmentInput::default();
    if !flows.is_empty() {
        for v in hosts::list(conn, now, cfg)? {
            let key = v.host.key().to_string();
            let Some(fl) = flows.remove(&key) else {
                continue;
            };
            let addresses = v
                .addresses
                .iter()
                .map(|a| {
                    a.parse::<IpAddr>().map_err(|_| {
                        LegacyError::Refused(format!(
                            "host {}: the stored address {a:?} is not an IP address",
                            v.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.hosts.push(InputHost {
                key,
                display: v.name.clone(),
                nft_name: String::new(),
                addresses,
                flows: fl,
            });
        }
    }
    out.hosts.sort_by(|a, b| a.key.cmp(&b.key));
    assign_names(&mut out.hosts);
    for s in q::sets_all(conn)? {
        let members: Vec<String> = serde_json::from_str(&s.members).map_err(|e| {
            LegacyError::Refused(format!("the stored set @{} is damaged: {e}", s.name))
        })?;
        out.sets.insert(s.name, members);
    }
    Ok(out)
}

/// The DNS answers alive at `now`, each with the time its record has left.
pub fn dns_answers(conn: &Connection, now: Timestamp) -> Result<DnsAnswers, LegacyError> {
    let mut out = DnsAnswers::new();
    for r in q::dns_live(conn, &now.to_string())? {
        let (Ok(addr), Ok(until)) = (
            r.address.parse::<IpAddr>(),
            r.expires_at.parse::<Timestamp>(),
        ) else {
            return Err(LegacyError::Refused(format!(
                "the stored DNS answer {} -> {} is damaged",
                r.name, r.address
            )));
        };
        let left = until.duration_since(now).as_secs().max(1) as u64;
        out.entry(r.name)
            .or_default()
            .push((addr, Duration::from_secs(left)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_names_are_valid_stable_and_distinct() {
        assert_eq!(nft_name("legacy-db"), "legacy-db");
        assert_eq!(nft_name("h-0123abcd"), "h-0123abcd");
        assert_eq!(nft_name("DB01.corp.example"), "db01-corp-example");
        assert_eq!(nft_name("10.0.0.5"), "h-10-0-0-5");
        let long = "a".repeat(80);
        let n = nft_name(&long);
        assert!(valid_name(&n) && n.len() <= MAX_NAME_CHARS, "{n}");
        assert_eq!(n, nft_name(&long));
        let mut hosts: Vec<InputHost> = ["db.a", "db-a", "web"]
            .iter()
            .map(|k| InputHost {
                key: k.to_string(),
                display: k.to_string(),
                nft_name: String::new(),
                addresses: vec![],
                flows: vec![],
            })
            .collect();
        assign_names(&mut hosts);
        let names: Vec<&str> = hosts.iter().map(|h| h.nft_name.as_str()).collect();
        assert_ne!(names[0], names[1]);
        assert!(names[0].starts_with("db-a-") && names[1].starts_with("db-a-"));
        assert_eq!(names[2], "web");
        assert!(names.iter().all(|n| valid_name(n)));
    }

    #[test]
    fn set_members_take_addresses_and_cidrs() {
        assert_eq!(
            parse_member("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_member(" 192.0.2.0/24 ").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert!(
            parse_member("192.0.2.0/33")
                .unwrap_err()
                .contains("192.0.2.0/33")
        );
    }
}
