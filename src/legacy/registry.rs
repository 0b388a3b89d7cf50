//! The agentless legacy host registry: hosts no agent can run on (old Windows,
//! appliances, printers with a web UI), registered by hand (`legacy add`) or from a
//! CSV file (`legacy import`), and removed again (`legacy remove`).
//!
//! Validation is pure ([`validate`]) and checks everything a person can get wrong
//! before anything is written; the writes then happen in the caller's transaction with
//! their audit entry. An import is all or nothing: every bad row is reported with its
//! line number, and one bad row imports none. Text fields are stored as typed (HTML is
//! just text: the pages escape it); names are hostnames, so they cannot carry markup.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;
use rusqlite::Transaction;
use sha2::{Digest, Sha256};

use super::catalog::Catalog;
use super::{HostRef, LegacyError, mapping};
use crate::audit::{self, NewEntry};
use crate::db::legacy_registry::{self as q, AgentlessRow};
use crate::suggest::DidYouMean;

/// At most this many addresses per host.
pub const MAX_ADDRESSES: usize = 16;
/// Longest owner, in characters.
pub const MAX_OWNER: usize = 200;
/// Longest notes, in characters.
pub const MAX_NOTES: usize = 2000;
/// Largest CSV file accepted.
pub const MAX_IMPORT_BYTES: usize = 4 << 20;
/// Most data rows in one CSV file.
pub const MAX_IMPORT_ROWS: usize = 10_000;
/// How many known cycles an unknown-cycle error lists.
const CYCLES_SHOWN: usize = 12;

/// An agentless host as typed (`legacy add` arguments, or one CSV row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewHost {
    pub name: String,
    pub addresses: Vec<String>,
    pub product: String,
    pub cycle: String,
    pub owner: String,
    pub notes: String,
    /// Register a product or cycle the catalog does not know (state `unknown`).
    pub unlisted: bool,
}

/// A validated agentless host, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidHost {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub product: String,
    pub cycle: String,
    pub owner: String,
    pub notes: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> LegacyError {
    LegacyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A host name: 1-253 characters, dot-separated labels of 1-63 of `a-z 0-9 -` (not
/// starting or ending with `-`); upper case is accepted and stored lower case.
pub fn validate_name(name: &str) -> Result<String, LegacyError> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() || lower.len() > 253 {
        return Err(invalid("name", "must be 1-253 characters"));
    }
    if let Some(c) = lower
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')))
    {
        return Err(invalid(
            "name",
            format!(
                "character {c:?} is not allowed (a host name is labels of a-z 0-9 - separated by dots)"
            ),
        ));
    }
    for label in lower.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid(
                "name",
                "each dot-separated label must be 1-63 characters",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid(
                "name",
                format!("label {label:?} must not start or end with '-'"),
            ));
        }
    }
    Ok(lower)
}

/// 1 to [`MAX_ADDRESSES`] IPv4 or IPv6 addresses, no duplicates, none unspecified
/// (`0.0.0.0`, `::`) or multicast.
pub fn parse_addresses<S: AsRef<str>>(list: &[S]) -> Result<Vec<IpAddr>, LegacyError> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(list.len());
    for raw in list {
        let raw = raw.as_ref().trim();
        if raw.is_empty() {
            continue;
        }
        let ip: IpAddr = raw.parse().map_err(|_| {
            invalid(
                "address",
                format!("{raw:?} is not an IPv4 or IPv6 address (no prefix length or port)"),
            )
        })?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(invalid(
                "address",
                format!("{ip} is an unspecified or multicast address, not a host's"),
            ));
        }
        if out.contains(&ip) {
            return Err(invalid("address", format!("{ip} is given twice")));
        }
        out.push(ip);
    }
    if out.is_empty() || out.len() > MAX_ADDRESSES {
        return Err(invalid(
            "address",
            format!("give 1 to {MAX_ADDRESSES} addresses (got {})", out.len()),
        ));
    }
    Ok(out)
}

/// A product and cycle as the catalog spells them. Unless `unlisted`, the product must
/// be in the catalog and the cycle one of its cycles; an unlisted pair is checked only
/// for its shape.
pub fn check_product(
    catalog: &Catalog,
    product: &str,
    cycle: &str,
    unlisted: bool,
) -> Result<(String, String), LegacyError> {
    let product = product.trim().to_ascii_lowercase();
    let cycle = mapping::normalize_cycle(cycle);
    word("product", &product, 100)?;
    word("cycle", &cycle, 64)?;
    if unlisted {
        return Ok((product, cycle));
    }
    let Some(p) = catalog.product(&product) else {
        let hint = DidYouMean::among(&product, catalog.products.keys().map(String::as_str));
        return Err(invalid(
            "product",
            format!(
                "{product:?} is not in the lifecycle catalog{hint}; \
                 use --unlisted (CSV: unlisted=yes) to register a product the catalog does not know"
            ),
        ));
    };
    match p
        .cycles
        .iter()
        .find(|c| c.cycle.eq_ignore_ascii_case(&cycle))
    {
        Some(c) => Ok((p.name.clone(), c.cycle.clone())),
        None => {
            let known: Vec<&str> = p
                .cycles
                .iter()
                .take(CYCLES_SHOWN)
                .map(|c| c.cycle.as_str())
                .collect();
            let more = p.cycles.len().saturating_sub(CYCLES_SHOWN);
            let more = if more > 0 {
                format!(" and {more} older")
            } else {
                String::new()
            };
            Err(invalid(
                "cycle",
                format!(
                    "{} has no cycle {cycle:?}; known cycles, newest first: {}{more} \
                     (use --unlisted, CSV: unlisted=yes, for one the catalog does not know)",
                    p.name,
                    known.join(", ")
                ),
            ))
        }
    }
}

fn word(field: &str, s: &str, max: usize) -> Result<(), LegacyError> {
    if s.is_empty() || s.len() > max {
        return Err(invalid(field, format!("must be 1-{max} characters")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '+')))
    {
        return Err(invalid(
            field,
            format!("character {c:?} is not allowed (a-z 0-9 - . _ +)"),
        ));
    }
    Ok(())
}

/// Free text of at most `max` characters, without control characters (notes may have
/// newlines).
fn free_text(field: &str, s: &str, max: usize, newlines: bool) -> Result<(), LegacyError> {
    let n = s.chars().count();
    if n > max {
        return Err(invalid(
            field,
            format!("is {n} characters; at most {max} are allowed"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c.is_control() && !(newlines && c == '\n'))
    {
        return Err(invalid(
            field,
            format!("control character {c:?} is not allowed"),
        ));
    }
    Ok(())
}

/// Checks everything about one host that does not need the database.
pub fn validate(catalog: &Catalog, h: &NewHost) -> Result<ValidHost, LegacyError> {
    let name = validate_name(&h.name)?;
    let addresses = parse_addresses(&h.addresses)?;
    let (product, cycle) = check_product(catalog, &h.product, &h.cycle, h.unlisted)?;
    free_text("owner", &h.owner, MAX_OWNER, false)?;
    free_text("notes", &h.notes, MAX_NOTES, true)?;
    Ok(ValidHost {
        name,
        addresses,
        product,
        cycle,
        owner: h.owner.clone(),
        notes: h.notes.clone(),
    })
}

/// Why `name` cannot be registered now, if it cannot: an agentless host or an enrolled
/// (not revoked) host already has it.
fn taken(tx: &Transaction<'_>, name: &str) -> Result<Option<String>, LegacyError> {
    if crate::db::legacy::agentless_exists(tx, name)? {
        return Ok(Some(format!(
            "a legacy host named {name:?} is already registered; use `legacy remove` first"
        )));
    }
    if let Some(id) = q::enrolled_name_taken(tx, name)? {
        return Ok(Some(format!(
            "an enrolled host ({id}) already has the name {name:?}; an agent host is \
             listed as legacy on its own when its OS is"
        )));
    }
    Ok(None)
}

fn store(
    tx: &Transaction<'_>,
    now: Timestamp,
    h: &ValidHost,
    actor: &str,
) -> Result<(), LegacyError> {
    let addresses: Vec<String> = h.addresses.iter().map(IpAddr::to_string).collect();
    q::insert_agentless(
        tx,
        &AgentlessRow {
            name: h.name.clone(),
            addresses: serde_json::to_string(&addresses).expect("strings serialise"),
            product: h.product.clone(),
            cycle: h.cycle.clone(),
            owner: h.owner.clone(),
            notes: h.notes.clone(),
            added_at: now.to_string(),
            added_by: actor.to_string(),
        },
    )?;
    Ok(())
}

/// `legacy add`: validates and registers one host, with its `legacy.add` audit entry.
pub fn add(
    tx: &Transaction<'_>,
    now: Timestamp,
    catalog: &Catalog,
    req: &NewHost,
    actor: &str,
) -> Result<ValidHost, LegacyError> {
    let h = validate(catalog, req)?;
    if let Some(why) = taken(tx, &h.name)? {
        return Err(LegacyError::Refused(why));
    }
    store(tx, now, &h, actor)?;
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.add",
            subject: &h.name,
            details: serde_json::json!({
                "addresses": h.addresses, "product": h.product, "cycle": h.cycle,
                "owner": h.owner, "unlisted": req.unlisted,
            }),
        },
    )?;
    Ok(h)
}

/// `legacy import`: registers every host of the CSV file `bytes` (named `file_name`),
/// or none: every bad row is reported by line number, with rows that name a host twice
/// and names already taken. One `legacy.import` audit entry (count, file, sha256).
pub fn import(
    tx: &Transaction<'_>,
    now: Timestamp,
    catalog: &Catalog,
    file_name: &str,
    bytes: &[u8],
    actor: &str,
) -> Result<usize, LegacyError> {
    let parsed = super::registry_csv::parse(file_name, bytes)?;
    let rows = parsed.rows;
    let mut problems = parsed.problems;
    let mut valid = Vec::with_capacity(rows.len());
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (line, row) in &rows {
        match validate(catalog, row) {
            Ok(h) => {
                if let Some(first) = seen.get(&h.name) {
                    problems.push((
                        *line,
                        format!("name {:?} is already on line {first}", h.name),
                    ));
                } else if let Some(why) = taken(tx, &h.name)? {
                    problems.push((*line, why));
                } else {
                    seen.insert(h.name.clone(), *line);
                    valid.push(h);
                }
            }
            Err(e) => problems.push((*line, e.to_string())),
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|(line, _)| *line);
        return Err(LegacyError::bad_import(file_name, &problems));
    }
    if valid.is_empty() {
        return Err(LegacyError::Refused(format!(
            "{file_name} has a header but no hosts; nothing imported"
        )));
    }
    for h in &valid {
        store(tx, now, h, actor)?;
    }
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.import",
            subject: file_name,
            details: serde_json::json!({
                "count": valid.len(), "file": file_name,
                "sha256": hex::encode(Sha256::digest(bytes)),
                "names": valid.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            }),
        },
    )?;
    Ok(valid.len())
}

/// `legacy remove`: removes an agentless host with its include and risk acceptance,
/// audited with `reason`. Agent hosts are retired with `hosts revoke`.
pub fn remove(
    tx: &Transaction<'_>,
    now: Timestamp,
    needle: &str,
    reason: &str,
    actor: &str,
) -> Result<String, LegacyError> {
    if reason.trim().is_empty() {
        return Err(invalid("reason", "must not be empty (it is audited)"));
    }
    free_text("reason", reason, MAX_NOTES, false)?;
    let name = match super::resolve(tx, needle)? {
        HostRef::Agentless { name } => name,
        HostRef::Agent { id, hostname } => {
            return Err(LegacyError::Refused(format!(
                "{hostname} ({id}) is an agent host, not a registered legacy host; \
                 retire it with `patchward hosts revoke {id} --reason ...`"
            )));
        }
    };
    let row = q::agentless(tx, &name)?;
    let flows = crate::db::legacy_segment::delete_flows_of(tx, &name)?;
    if !q::delete_agentless(tx, &name)? {
        return Err(LegacyError::Refused(format!(
            "{name:?} disappeared while it was removed; try again"
        )));
    }
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action: "legacy.remove",
            subject: &name,
            details: serde_json::json!({
                "reason": reason, "flows": flows,
                "product": row.as_ref().map(|r| r.product.as_str()),
                "cycle": row.as_ref().map(|r| r.cycle.as_str()),
            }),
        },
    )?;
    Ok(name)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
