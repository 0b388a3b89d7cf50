//! Flows and named sets as stored (issue [10]): validation against the host and the
//! sets that exist, then one transaction per change with its audit entry and (for
//! flows) its host event. The pure text form is [`super::flows`]; the rows are
//! [`crate::db::legacy_segment`]. Nothing here reaches the kernel: `legacy segment
//! plan` / `apply` render what is stored.
//!
//! Rules (checked at add time, so a stored allow-list always renders):
//! - the host is a legacy host: any registered (agentless) host, or an agent host whose
//!   OS is in a legacy state; an agent host on a supported OS is refused;
//! - at most [`MAX_FLOWS_PER_HOST`] flows per host, no flow twice (the comment aside);
//! - a `@set` peer names a defined set; an address or CIDR peer (and a set's members)
//!   share an address family with the host.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;
use rusqlite::{Connection, Transaction};
use serde_json::json;

use super::flows::{Flow, FlowError, MAX_COMMENT_CHARS, MAX_FLOWS_PER_HOST, Peer, valid_name};
use super::nft::RenderError;
use super::segment_input::parse_member;
use super::{HostRef, LegacyError, hosts};
use crate::audit::{self, NewEntry};
use crate::config::LegacyConfig;
use crate::db::Db;
use crate::db::legacy_monitor::insert_event;
use crate::db::legacy_segment::{self as q, FlowRow, SetRow};

/// At most this many members in one named set.
pub const MAX_SET_MEMBERS: usize = 1024;

/// One stored flow of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlow {
    pub flow: Flow,
    /// The canonical text (`Flow::to_string()`), as stored.
    pub text: String,
    pub added_at: String,
    pub added_by: String,
}

/// A named set as stored, members parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSet {
    pub name: String,
    pub members: Vec<IpNet>,
    pub comment: String,
    pub updated_at: String,
    pub updated_by: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> LegacyError {
    LegacyError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn parse_flow(text: &str) -> Result<Flow, LegacyError> {
    text.parse::<Flow>()
        .map_err(|e| invalid("flow", e.to_string()))
}

/// Same flow whatever its comment says.
fn same_flow(a: &Flow, b: &Flow) -> bool {
    (a.direction, a.proto, &a.peer, &a.ports) == (b.direction, b.proto, &b.peer, &b.ports)
}

/// `add_flow` judging agent hosts with the default `[legacy]` thresholds; callers that
/// hold the configuration use [`add_flow_with`].
pub fn add_flow(
    db: &Db,
    now: Timestamp,
    host: &str,
    flow: &str,
    actor: &str,
) -> Result<(HostRef, Flow, bool), LegacyError> {
    add_flow_with(db, &LegacyConfig::default(), now, host, flow, actor)
}

/// Adds one flow to a legacy host; `false` (and nothing written) when the host already
/// has exactly this flow.
pub fn add_flow_with(
    db: &Db,
    cfg: &LegacyConfig,
    now: Timestamp,
    host: &str,
    flow: &str,
    actor: &str,
) -> Result<(HostRef, Flow, bool), LegacyError> {
    let f = parse_flow(flow)?;
    let text = f.to_string();
    db.write_blocking(|tx| {
        let (h, addresses) = legacy_host(tx, now, cfg, host)?;
        let name = h.display_name().to_string();
        let stored = flows_of(tx, &h)?;
        if stored.iter().any(|s| s.text == text) {
            return Ok((h, f, false));
        }
        if let Some(s) = stored.iter().find(|s| same_flow(&s.flow, &f)) {
            return Err(LegacyError::Refused(format!(
                "host {name} already has this flow as `{}`; to change its comment, remove it \
                 first (`patchward legacy flow remove {name} {}`)",
                s.text, s.text
            )));
        }
        if stored.len() >= MAX_FLOWS_PER_HOST {
            return Err(LegacyError::Refused(format!(
                "host {name}: {}; remove one first",
                FlowError::TooMany(stored.len() + 1)
            )));
        }
        check_peer(tx, &name, &addresses, &f, &text)?;
        q::insert_flow(
            tx,
            &FlowRow {
                host: h.key().to_string(),
                flow: text.clone(),
                added_at: now.to_string(),
                added_by: actor.to_string(),
            },
        )?;
        record(tx, now, &h, actor, "flow_added", &text)?;
        Ok((h, f, true))
    })
}

/// Removes a host's flow: `flow` may leave the comment out (a host has each flow once).
pub fn remove_flow(
    db: &Db,
    now: Timestamp,
    host: &str,
    flow: &str,
    actor: &str,
) -> Result<(HostRef, Flow), LegacyError> {
    let f = parse_flow(flow)?;
    db.write_blocking(|tx| {
        let h = super::resolve(tx, host)?;
        let stored = flows_of(tx, &h)?;
        let Some(s) = stored.iter().find(|s| same_flow(&s.flow, &f)) else {
            let name = h.display_name();
            let have = if stored.is_empty() {
                "it has none".to_string()
            } else {
                let list: Vec<&str> = stored.iter().map(|s| s.text.as_str()).collect();
                format!("its flows: {}", list.join("; "))
            };
            return Err(LegacyError::Refused(format!(
                "host {name} has no flow `{f}` ({have}; see `patchward legacy flow list {name}`)"
            )));
        };
        if !q::delete_flow(tx, h.key(), &s.text)? {
            return Err(LegacyError::Refused(format!(
                "the flow `{}` disappeared while it was removed; try again",
                s.text
            )));
        }
        record(tx, now, &h, actor, "flow_removed", &s.text)?;
        Ok((h, s.flow.clone()))
    })
}

/// A host's flows, in the order they were added.
pub fn flows_of(conn: &Connection, host: &HostRef) -> Result<Vec<StoredFlow>, LegacyError> {
    q::flows_of(conn, host.key())?
        .into_iter()
        .map(|r| {
            let flow: Flow = r.flow.parse().map_err(|e| {
                LegacyError::Refused(format!(
                    "the stored flow {:?} of host {} is damaged: {e}",
                    r.flow,
                    host.display_name()
                ))
            })?;
            Ok(StoredFlow {
                flow,
                text: r.flow,
                added_at: r.added_at,
                added_by: r.added_by,
            })
        })
        .collect()
}

/// Defines (or replaces) the named set `name` (an optional leading `@` is dropped).
/// Members: addresses or CIDRs without host bits, 1 to [`MAX_SET_MEMBERS`], stored
/// sorted without repeats. Nothing is written when the set already says exactly this.
pub fn define_set(
    db: &Db,
    now: Timestamp,
    name: &str,
    members: &[String],
    comment: &str,
    actor: &str,
) -> Result<(), LegacyError> {
    let name = set_name(name)?;
    let nets = set_members(members)?;
    let comment = set_comment(comment)?;
    let texts: Vec<String> = nets.iter().map(IpNet::to_string).collect();
    let members_json = serde_json::to_string(&texts).expect("strings serialize");
    db.write_blocking(|tx| {
        let old = q::set(tx, &name)?;
        if let Some(o) = &old
            && o.members == members_json
            && o.comment == comment
        {
            return Ok(());
        }
        q::upsert_set(
            tx,
            &SetRow {
                name: name.clone(),
                members: members_json.clone(),
                comment: comment.clone(),
                updated_at: now.to_string(),
                updated_by: actor.to_string(),
            },
        )?;
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "legacy.set_defined",
                subject: &format!("set:{name}"),
                details: json!({
                    "members": texts, "comment": comment, "replaced": old.is_some(),
                }),
            },
        )?;
        Ok(())
    })
}

/// Removes a named set no flow uses.
pub fn remove_set(db: &Db, now: Timestamp, name: &str, actor: &str) -> Result<(), LegacyError> {
    let name = set_name(name)?;
    db.write_blocking(|tx| {
        let Some(old) = q::set(tx, &name)? else {
            return Err(LegacyError::Refused(format!(
                "no set @{name} is defined ({})",
                defined_sets(tx)?
            )));
        };
        let users = set_users(tx, &name)?;
        if !users.is_empty() {
            return Err(LegacyError::Refused(format!(
                "set @{name} is used by the flows of {}; remove those flows first \
                 (`patchward legacy flow list HOST`)",
                users.join(", ")
            )));
        }
        if !q::delete_set(tx, &name)? {
            return Err(LegacyError::Refused(format!(
                "set @{name} disappeared while it was removed; try again"
            )));
        }
        let members: serde_json::Value =
            serde_json::from_str(&old.members).unwrap_or(serde_json::Value::Null);
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "legacy.set_removed",
                subject: &format!("set:{name}"),
                details: json!({ "members": members, "comment": old.comment }),
            },
        )?;
        Ok(())
    })
}

/// Every named set, by name.
pub fn sets(conn: &Connection) -> Result<Vec<StoredSet>, LegacyError> {
    q::sets_all(conn)?
        .into_iter()
        .map(|r| {
            let damaged = |e: String| {
                LegacyError::Refused(format!("the stored set @{} is damaged: {e}", r.name))
            };
            let texts: Vec<String> =
                serde_json::from_str(&r.members).map_err(|e| damaged(e.to_string()))?;
            let members = texts
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(damaged)?;
            Ok(StoredSet {
                name: r.name,
                members,
                comment: r.comment,
                updated_at: r.updated_at,
                updated_by: r.updated_by,
            })
        })
        .collect()
}

/// The display names of the hosts whose flows use `@name`, sorted.
fn set_users(conn: &Connection, name: &str) -> Result<Vec<String>, LegacyError> {
    let mut keys = BTreeSet::new();
    for r in q::flows_all(conn)? {
        if let Ok(f) = r.flow.parse::<Flow>()
            && f.peer == Peer::Set(name.to_string())
        {
            keys.insert(r.host);
        }
    }
    let mut names: Vec<String> = keys
        .into_iter()
        .map(|k| match super::resolve(conn, &k) {
            Ok(h) => h.display_name().to_string(),
            Err(_) => k,
        })
        .collect();
    names.sort();
    Ok(names)
}

fn defined_sets(conn: &Connection) -> Result<String, LegacyError> {
    let names: Vec<String> = q::sets_all(conn)?
        .into_iter()
        .map(|s| format!("@{}", s.name))
        .collect();
    Ok(if names.is_empty() {
        "none is defined".to_string()
    } else {
        format!("defined: {}", names.join(", "))
    })
}

fn set_name(name: &str) -> Result<String, LegacyError> {
    let n = name.trim();
    let n = n.strip_prefix('@').unwrap_or(n);
    if valid_name(n) {
        Ok(n.to_string())
    } else {
        Err(invalid(
            "set name",
            format!(
                "{name:?}: expected 1-{} of a-z, 0-9 and -, starting with a letter",
                super::flows::MAX_NAME_CHARS
            ),
        ))
    }
}

fn set_members(members: &[String]) -> Result<Vec<IpNet>, LegacyError> {
    let mut out = BTreeSet::new();
    for m in members.iter().flat_map(|m| m.split(',')) {
        if m.trim().is_empty() {
            continue;
        }
        let net = parse_member(m).map_err(|e| invalid("set member", e))?;
        if net.trunc() != net {
            return Err(invalid(
                "set member",
                format!(
                    "`{}` has host bits set; did you mean {}?",
                    m.trim(),
                    net.trunc()
                ),
            ));
        }
        out.insert(net);
    }
    if out.is_empty() {
        return Err(invalid(
            "set members",
            "a set needs at least one address or CIDR",
        ));
    }
    if out.len() > MAX_SET_MEMBERS {
        return Err(invalid(
            "set members",
            format!(
                "{} members; a set may have at most {MAX_SET_MEMBERS}",
                out.len()
            ),
        ));
    }
    Ok(out.into_iter().collect())
}

fn set_comment(comment: &str) -> Result<String, LegacyError> {
    if let Some((i, _)) = comment.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(invalid(
            "comment",
            format!(
                "contains a control character (position {}); use printable text only",
                i + 1
            ),
        ));
    }
    let n = comment.chars().count();
    if n > MAX_COMMENT_CHARS {
        return Err(invalid(
            "comment",
            format!("is {n} characters long; at most {MAX_COMMENT_CHARS} are allowed"),
        ));
    }
    Ok(comment.trim().to_string())
}

/// Resolves `needle` to a legacy host with its addresses, or says why it is not one.
fn legacy_host(
    conn: &Connection,
    now: Timestamp,
    cfg: &LegacyConfig,
    needle: &str,
) -> Result<(HostRef, Vec<IpAddr>), LegacyError> {
    let v = hosts::show(conn, needle, now, cfg)?;
    if let HostRef::Agent { id, hostname } = &v.host
        && !v.lifecycle.state.is_legacy()
    {
        return Err(LegacyError::Refused(format!(
            "{hostname} ({id}) is an agent host on a supported OS (state {}): patch it \
             instead; flows fence only legacy hosts",
            v.lifecycle.state
        )));
    }
    let addresses = v
        .addresses
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .collect();
    Ok((v.host, addresses))
}

/// The peer exists (a set) and shares an address family with the host.
fn check_peer(
    conn: &Connection,
    host: &str,
    addresses: &[IpAddr],
    f: &Flow,
    text: &str,
) -> Result<(), LegacyError> {
    let peers: Vec<IpNet> = match &f.peer {
        Peer::Addr(a) => vec![IpNet::from(*a)],
        Peer::Net(n) => vec![*n],
        Peer::Dns(_) => return Ok(()),
        Peer::Set(s) => {
            let Some(row) = q::set(conn, s)? else {
                return Err(LegacyError::Refused(format!(
                    "flow `{text}`: no set @{s} is defined ({}); define it with \
                     `patchward legacy set add {s} CIDR...`",
                    defined_sets(conn)?
                )));
            };
            let texts: Vec<String> = serde_json::from_str(&row.members).map_err(|e| {
                LegacyError::Refused(format!("the stored set @{s} is damaged: {e}"))
            })?;
            texts.iter().filter_map(|m| parse_member(m).ok()).collect()
        }
    };
    let same = peers
        .iter()
        .any(|p| addresses.iter().any(|a| a.is_ipv4() == p.addr().is_ipv4()));
    match peers.first() {
        Some(p) if !same => Err(LegacyError::Refused(
            RenderError::NoSameFamily {
                host: host.to_string(),
                flow: text.to_string(),
                peer_family: if p.addr().is_ipv4() { 4 } else { 6 },
            }
            .to_string(),
        )),
        _ => Ok(()),
    }
}

/// The audit entry and the host event of one flow change.
fn record(
    tx: &Transaction<'_>,
    now: Timestamp,
    h: &HostRef,
    actor: &str,
    kind: &str,
    text: &str,
) -> Result<(), LegacyError> {
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: &format!("legacy.{kind}"),
            subject: h.key(),
            details: json!({ "flow": text, "host": h.display_name() }),
        },
    )?;
    let verb = if kind == "flow_added" {
        "added"
    } else {
        "removed"
    };
    insert_event(
        tx,
        h.key(),
        &now.to_string(),
        kind,
        &format!("flow {verb} by {actor}: {text}"),
        &json!({ "flow": text, "actor": actor }).to_string(),
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "flows_store_tests.rs"]
mod tests;
