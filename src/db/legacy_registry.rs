//! Queries of the legacy host registry: agentless hosts (`legacy_hosts`) and the facts
//! of enrolled agent hosts the legacy views need, read without parsing whole
//! inventories (a package list can hold 20,000 entries; the views need only the
//! os-release and the addresses, kept in `inventory_facts`).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::DbError;

/// An agentless host as stored. `addresses` is a JSON array of IP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentlessRow {
    pub name: String,
    pub addresses: String,
    pub product: String,
    pub cycle: String,
    pub owner: String,
    pub notes: String,
    pub added_at: String,
    pub added_by: String,
}

const AGENTLESS_COLS: &str = "name, addresses, product, cycle, owner, notes, added_at, added_by";

fn agentless_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentlessRow> {
    Ok(AgentlessRow {
        name: r.get(0)?,
        addresses: r.get(1)?,
        product: r.get(2)?,
        cycle: r.get(3)?,
        owner: r.get(4)?,
        notes: r.get(5)?,
        added_at: r.get(6)?,
        added_by: r.get(7)?,
    })
}

/// The agentless host `name`, if registered.
pub fn agentless(conn: &Connection, name: &str) -> Result<Option<AgentlessRow>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {AGENTLESS_COLS} FROM legacy_hosts WHERE name = ?1"),
            params![name],
            agentless_row,
        )
        .optional()?)
}

/// Every agentless host, by name.
pub fn agentless_all(conn: &Connection) -> Result<Vec<AgentlessRow>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {AGENTLESS_COLS} FROM legacy_hosts ORDER BY name"
    ))?;
    let rows = st.query_map([], agentless_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Registers an agentless host (the caller has checked that the name is free).
pub fn insert_agentless(tx: &Transaction<'_>, h: &AgentlessRow) -> Result<(), DbError> {
    tx.execute(
        &format!(
            "INSERT INTO legacy_hosts ({AGENTLESS_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            h.name,
            h.addresses,
            h.product,
            h.cycle,
            h.owner,
            h.notes,
            h.added_at,
            h.added_by
        ],
    )?;
    Ok(())
}

/// Removes an agentless host with its include and risk acceptance; false when there was
/// no such host.
pub fn delete_agentless(tx: &Transaction<'_>, name: &str) -> Result<bool, DbError> {
    let n = tx.execute("DELETE FROM legacy_hosts WHERE name = ?1", params![name])?;
    if n == 0 {
        return Ok(false);
    }
    tx.execute("DELETE FROM legacy_includes WHERE host = ?1", params![name])?;
    tx.execute(
        "DELETE FROM legacy_acceptances WHERE host = ?1",
        params![name],
    )?;
    Ok(true)
}

/// What the legacy views need of an enrolled agent host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    pub id: String,
    pub hostname: String,
    pub ring: Option<String>,
    pub last_seen: Option<String>,
    /// From the latest inventory (empty when there is none).
    pub os_id: String,
    pub os_version_id: String,
    pub os_id_like: String,
    /// The inventory's `addresses` as JSON (`[]` when there is none).
    pub addresses: String,
}

/// The facts come from `inventory_facts` (migration 15), which triggers keep equal to
/// the latest inventory's: reading them never touches the inventory JSON.
const AGENT_SELECT: &str = "SELECT h.id, h.hostname, h.ring, h.last_seen,
        coalesce(f.os_id, ''), coalesce(f.os_version_id, ''), coalesce(f.os_id_like, ''),
        coalesce(f.addresses, '[]')
     FROM hosts h LEFT JOIN inventory_facts f ON f.host_id = h.id
     WHERE h.revoked_at IS NULL";

fn agent_facts(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentFacts> {
    Ok(AgentFacts {
        id: r.get(0)?,
        hostname: r.get(1)?,
        ring: r.get(2)?,
        last_seen: r.get(3)?,
        os_id: r.get(4)?,
        os_version_id: r.get(5)?,
        os_id_like: r.get(6)?,
        addresses: r.get(7)?,
    })
}

/// Every enrolled, not revoked host.
pub fn active_agents(conn: &Connection) -> Result<Vec<AgentFacts>, DbError> {
    let mut st = conn.prepare(&format!("{AGENT_SELECT} ORDER BY h.hostname, h.id"))?;
    let rows = st.query_map([], agent_facts)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The enrolled, not revoked host `id`.
pub fn active_agent(conn: &Connection, id: &str) -> Result<Option<AgentFacts>, DbError> {
    Ok(conn
        .query_row(
            &format!("{AGENT_SELECT} AND h.id = ?1"),
            params![id],
            agent_facts,
        )
        .optional()?)
}

/// The id of the enrolled, not revoked host with this id or hostname (compared without
/// case), if any: such a name cannot be given to an agentless host.
pub fn enrolled_name_taken(conn: &Connection, name: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT id FROM hosts WHERE revoked_at IS NULL
                AND (lower(id) = lower(?1) OR lower(hostname) = lower(?1))
              ORDER BY id LIMIT 1",
            params![name],
            |r| r.get(0),
        )
        .optional()?)
}
