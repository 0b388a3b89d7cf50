//! Maintenance-window entries added on the web page, and the effective policy the
//! scheduler uses: the configured `[policy]` with those entries laid over its window
//! sets (`policy::layer`).
//!
//! Every change is checked against the effective policy (the same parser and
//! validation as the configuration file) and audited (`window.added`, `window.changed`,
//! `window.removed`, with actor and reason) in the transaction that stores it. The
//! preview of the next openings is the code behind `patchward windows next`.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rusqlite::{Connection, Transaction};

use crate::audit::{self, NewEntry};
use crate::db::windows::{self as q, WindowEntryRow};
use crate::error::{AuditError, DbError};
use crate::policy::config::WindowSet;
use crate::policy::layer::{self, AddedWindow, Slot, SlotKind};
use crate::policy::{Policy, PolicyError, Urgency};

/// Why a window change was refused.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("no window entry {0}; it may have been removed meanwhile")]
    NoSuchEntry(i64),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<rusqlite::Error> for WindowError {
    fn from(e: rusqlite::Error) -> Self {
        WindowError::Db(DbError::Sqlite(e))
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> WindowError {
    WindowError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A window entry as a form gives it: the fields of every kind, of which `kind` picks
/// the ones that count.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct WindowInput {
    /// The window set it is added to.
    pub set: String,
    /// weekly | monthly | once | blackout
    pub kind: String,
    /// Emergency-only slot (for expedited patches).
    pub emergency: bool,
    /// Weekly: `mon` ... `sun`.
    pub days: Vec<String>,
    /// Weekly and monthly: civil time "22:00"; one-off: date and time "2026-12-27T08:00".
    pub start: String,
    /// "4h", "90m", "1d 2h".
    pub duration: String,
    /// Monthly: 1-4, or -1 for the last.
    pub nth: String,
    /// Monthly: `mon` ... `sun`.
    pub weekday: String,
    /// Monthly: -28..28.
    pub offset_days: String,
    /// Blackout: civil date-times.
    pub from: String,
    pub until: String,
    /// Blackout: why (shown with it).
    pub note: String,
}

fn int(field: &str, s: &str) -> Result<i64, WindowError> {
    s.trim()
        .parse()
        .map_err(|_| invalid(field, format!("{s:?} is not a whole number")))
}

fn required(field: &str, s: &str) -> Result<toml::Value, WindowError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(invalid(field, "required"));
    }
    Ok(toml::Value::String(s.to_string()))
}

impl WindowInput {
    pub fn kind(&self) -> Result<SlotKind, WindowError> {
        SlotKind::parse(self.kind.trim()).ok_or_else(|| {
            invalid(
                "kind",
                format!(
                    "{:?} is not a kind of window (weekly, monthly, once, blackout)",
                    self.kind
                ),
            )
        })
    }

    /// The entry in the config file's TOML syntax (not yet checked beyond its shape).
    pub fn spec(&self) -> Result<String, WindowError> {
        let mut t = toml::Table::new();
        match self.kind()? {
            SlotKind::Weekly => {
                let days: Vec<toml::Value> = self
                    .days
                    .iter()
                    .map(|d| toml::Value::String(d.trim().to_string()))
                    .collect();
                t.insert("days".into(), toml::Value::Array(days));
                t.insert("start".into(), required("start", &self.start)?);
                t.insert("duration".into(), required("duration", &self.duration)?);
            }
            SlotKind::Monthly => {
                t.insert("nth".into(), toml::Value::Integer(int("nth", &self.nth)?));
                t.insert("weekday".into(), required("weekday", &self.weekday)?);
                let off = if self.offset_days.trim().is_empty() {
                    0
                } else {
                    int("offset_days", &self.offset_days)?
                };
                t.insert("offset_days".into(), toml::Value::Integer(off));
                t.insert("start".into(), required("start", &self.start)?);
                t.insert("duration".into(), required("duration", &self.duration)?);
            }
            SlotKind::Once => {
                t.insert("start".into(), required("start", &self.start)?);
                t.insert("duration".into(), required("duration", &self.duration)?);
            }
            SlotKind::Blackout => {
                t.insert("from".into(), required("from", &self.from)?);
                t.insert("until".into(), required("until", &self.until)?);
                if !self.note.trim().is_empty() {
                    t.insert(
                        "reason".into(),
                        toml::Value::String(self.note.trim().to_string()),
                    );
                }
            }
        }
        toml::to_string(&t).map_err(|e| invalid("entry", e.to_string()))
    }

    /// Parses the entry with the configuration's own types.
    fn added(&self, id: i64) -> Result<(AddedWindow, String), WindowError> {
        let kind = self.kind()?;
        let spec = self.spec()?;
        let slot = Slot::parse(kind, &spec).map_err(|e| invalid(kind.as_str(), e))?;
        let set = self.set.trim().to_string();
        if set.is_empty() {
            return Err(invalid("set", "choose a window set"));
        }
        Ok((
            AddedWindow {
                id,
                set,
                emergency: self.emergency,
                slot,
            },
            spec,
        ))
    }
}

/// A stored entry with what became of it.
#[derive(Debug, Clone)]
pub struct EntryView {
    pub row: WindowEntryRow,
    /// Why the entry is left out of the effective policy, if it is.
    pub problem: Option<String>,
}

/// The effective policy and the stored entries.
#[derive(Debug, Clone)]
pub struct Layered {
    pub policy: Policy,
    pub entries: Vec<EntryView>,
}

fn parse_row(r: &WindowEntryRow) -> Result<AddedWindow, String> {
    let kind = SlotKind::parse(&r.kind).ok_or_else(|| format!("unknown kind {:?}", r.kind))?;
    Ok(AddedWindow {
        id: r.id,
        set: r.window_set.clone(),
        emergency: r.emergency,
        slot: Slot::parse(kind, &r.spec)?,
    })
}

fn layered_from(base: &Policy, rows: Vec<WindowEntryRow>, skip: Option<i64>) -> Layered {
    let mut added = Vec::new();
    let mut problems = std::collections::BTreeMap::new();
    for r in rows.iter().filter(|r| Some(r.id) != skip) {
        match parse_row(r) {
            Ok(a) => added.push(a),
            Err(e) => {
                problems.insert(r.id, e);
            }
        }
    }
    let (policy, left_out) = layer::layer(base, &added);
    for (id, e) in left_out {
        problems.insert(id, e.to_string());
    }
    let entries = rows
        .into_iter()
        .map(|row| EntryView {
            problem: problems.remove(&row.id),
            row,
        })
        .collect();
    Layered { policy, entries }
}

/// The configured policy with the stored entries laid over it. An entry that no
/// longer fits is left out (and logged), never fatal.
pub fn effective(conn: &Connection, base: &Policy) -> Result<Layered, DbError> {
    let l = layered_from(base, q::entries(conn)?, None);
    for e in &l.entries {
        if let Some(p) = &e.problem {
            tracing::warn!(entry = e.row.id, problem = %p, "window entry left out of the policy");
        }
    }
    Ok(l)
}

fn audit_change(
    tx: &Transaction<'_>,
    now: Timestamp,
    action: &str,
    id: i64,
    actor: &str,
    details: serde_json::Value,
) -> Result<(), WindowError> {
    audit::append(
        tx,
        now,
        &NewEntry {
            actor,
            action,
            subject: &format!("window:{id}"),
            details,
        },
    )?;
    Ok(())
}

/// Adds an entry (checked against the effective policy); returns its id.
pub fn add(
    tx: &Transaction<'_>,
    now: Timestamp,
    base: &Policy,
    input: &WindowInput,
    actor: &str,
    reason: &str,
) -> Result<i64, WindowError> {
    let (new, spec) = input.added(0)?;
    let current = layered_from(base, q::entries(tx)?, None);
    layer::check(&current.policy, &new)?;
    let kind = new.slot.kind().as_str();
    let at = now.to_string();
    let id = q::insert(tx, &new.set, kind, new.emergency, &spec, &at, actor)?;
    audit_change(
        tx,
        now,
        "window.added",
        id,
        actor,
        serde_json::json!({
            "set": new.set, "kind": kind, "emergency": new.emergency,
            "spec": spec, "reason": reason,
        }),
    )?;
    Ok(id)
}

/// Replaces entry `id` (checked against the effective policy without its old self).
pub fn change(
    tx: &Transaction<'_>,
    now: Timestamp,
    base: &Policy,
    id: i64,
    input: &WindowInput,
    actor: &str,
    reason: &str,
) -> Result<(), WindowError> {
    let old = q::entry(tx, id)?.ok_or(WindowError::NoSuchEntry(id))?;
    let (new, spec) = input.added(id)?;
    let others = layered_from(base, q::entries(tx)?, Some(id));
    layer::check(&others.policy, &new)?;
    let kind = new.slot.kind().as_str();
    q::update(
        tx,
        id,
        &new.set,
        kind,
        new.emergency,
        &spec,
        &now.to_string(),
        actor,
    )?;
    audit_change(
        tx,
        now,
        "window.changed",
        id,
        actor,
        serde_json::json!({
            "set": new.set, "kind": kind, "emergency": new.emergency, "spec": spec,
            "was": { "set": old.window_set, "kind": old.kind, "emergency": old.emergency,
                     "spec": old.spec },
            "reason": reason,
        }),
    )?;
    Ok(())
}

/// Removes entry `id`.
pub fn remove(
    tx: &Transaction<'_>,
    now: Timestamp,
    id: i64,
    actor: &str,
    reason: &str,
) -> Result<(), WindowError> {
    let old = q::entry(tx, id)?.ok_or(WindowError::NoSuchEntry(id))?;
    q::delete(tx, id)?;
    audit_change(
        tx,
        now,
        "window.removed",
        id,
        actor,
        serde_json::json!({
            "set": old.window_set, "kind": old.kind, "emergency": old.emergency,
            "spec": old.spec, "reason": reason,
        }),
    )?;
    Ok(())
}

/// One opening in the set's local time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalOpening {
    /// "Tue 2026-12-01 22:00 +01:00"
    pub start: String,
    pub end: String,
    /// "4h"; an opening cut at the search horizon says so ("1096d 2h+, open past the
    /// three-year search horizon").
    pub length: String,
    pub start_utc: Timestamp,
    /// Open since before the search horizon's start (back-to-back slots for years).
    pub open_before: bool,
    /// Still open at the search horizon's end.
    pub open_after: bool,
}

/// The next `count` openings of a window set, in its local time (`patchward windows
/// next` and the web page): the same openings the scheduler decides with.
pub fn next_local(
    ws: &WindowSet,
    now: Timestamp,
    count: usize,
    urgency: Urgency,
) -> Vec<LocalOpening> {
    let local = |tz: &TimeZone, t: Timestamp| {
        let dt = tz.to_datetime(t);
        format!("{} {}", dt.strftime("%a %Y-%m-%d %H:%M"), tz.to_offset(t))
    };
    let (back, ahead) = crate::policy::windows::horizon(&ws.tz, now);
    crate::policy::windows::next_openings(&ws.windows, &ws.tz, now, count, urgency)
        .into_iter()
        .map(|o| {
            let (open_before, open_after) = (o.start <= back, o.end >= ahead);
            let span = format!("{:#}", o.end.duration_since(o.start));
            let length = match (open_before, open_after) {
                (true, true) => "always open within the three-year search horizon".to_string(),
                (false, true) => format!("{span}+, open past the three-year search horizon"),
                (true, false) => format!("{span}+, open since before the three-year look-back"),
                (false, false) => span,
            };
            LocalOpening {
                start: local(&ws.tz, o.start),
                end: local(&ws.tz, o.end),
                length,
                start_utc: o.start,
                open_before,
                open_after,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Db) {
        let d = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        (d, db)
    }

    fn weekly(day: &str, start: &str, duration: &str) -> WindowInput {
        WindowInput {
            set: "default".into(),
            kind: "weekly".into(),
            days: vec![day.into()],
            start: start.into(),
            duration: duration.into(),
            ..Default::default()
        }
    }

    #[test]
    fn add_change_remove_are_checked_audited_and_layered() {
        let (_d, db) = db();
        let base = Policy::default();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let id = db
            .write_blocking(|tx| {
                add(
                    tx,
                    now,
                    &base,
                    &weekly("sat", "10:00", "2h"),
                    "ann",
                    "extra slot",
                )
            })
            .unwrap();
        let l = db.read_blocking(|c| effective(c, &base)).unwrap();
        assert_eq!(l.policy.windows["default"].windows.weekly.len(), 2);
        assert!(l.entries[0].problem.is_none());
        // Refused: nothing stored, nothing audited.
        let audited = |db: &crate::db::Db| {
            db.read_blocking(|c| crate::audit::recent(c, 100))
                .unwrap()
                .len()
        };
        let before = audited(&db);
        for (input, want) in [
            (weekly("sat", "10:00", "9d"), "between 1m and 7d"),
            (weekly("caturday", "10:00", "1h"), "caturday"),
            (
                WindowInput {
                    set: "nope".into(),
                    ..weekly("sat", "10:00", "1h")
                },
                "not defined",
            ),
            (
                WindowInput {
                    kind: "hourly".into(),
                    ..Default::default()
                },
                "not a kind",
            ),
        ] {
            let e = db
                .write_blocking(|tx| add(tx, now, &base, &input, "ann", ""))
                .unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        assert_eq!(audited(&db), before);
        db.write_blocking(|tx| {
            change(
                tx,
                now,
                &base,
                id,
                &weekly("sun", "11:00", "3h"),
                "bob",
                "move",
            )
        })
        .unwrap();
        let l = db.read_blocking(|c| effective(c, &base)).unwrap();
        let w = &l.policy.windows["default"].windows.weekly[1];
        assert_eq!(w.days, [crate::policy::windows::Day::Sun]);
        db.write_blocking(|tx| remove(tx, now, id, "bob", "not needed"))
            .unwrap();
        let l = db.read_blocking(|c| effective(c, &base)).unwrap();
        assert_eq!(l.policy.windows["default"].windows.weekly.len(), 1);
        let actions: Vec<String> = db
            .read_blocking(|c| crate::audit::recent(c, 3))
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            ["window.removed", "window.changed", "window.added"]
        );
        let e = db
            .write_blocking(|tx| remove(tx, now, id, "bob", ""))
            .unwrap_err();
        assert!(matches!(e, WindowError::NoSuchEntry(_)), "{e}");
    }
}
