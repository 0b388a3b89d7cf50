//! Schema migrations, applied in order at open; the schema version is SQLite's
//! `user_version` (managed by rusqlite_migration).
//!
//! Migrations are append-only: a released migration is never edited, only followed by a
//! new one.

use std::path::Path;
use std::sync::LazyLock;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use crate::error::DbError;

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(
            r#"
        -- Small settings and facts about this appliance (first start, key ids, ...).
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;

        -- Append-only, hash-chained audit log (see audit.rs).
        CREATE TABLE audit_log (
            seq       INTEGER PRIMARY KEY,
            at        TEXT NOT NULL,
            actor     TEXT NOT NULL,
            action    TEXT NOT NULL,
            subject   TEXT NOT NULL,
            details   TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash      TEXT NOT NULL
        ) STRICT;
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        "#,
        ),
        M::up(
            r#"
        -- Per trusted feed: the verified trust state (root, highest accepted versions,
        -- newest signed time), replaced only in the transaction that commits an import.
        CREATE TABLE feeds (
            name          TEXT PRIMARY KEY,
            trust_state   TEXT NOT NULL,
            updated_at    TEXT NOT NULL
        ) STRICT;

        -- Every accepted catalog version, with its exact signed envelope (so incremental
        -- bundles can be checked against what a base version referenced).
        CREATE TABLE catalogs (
            feed         TEXT NOT NULL REFERENCES feeds(name),
            version      INTEGER NOT NULL,
            sha256       TEXT NOT NULL,
            envelope     BLOB NOT NULL,
            issued       TEXT NOT NULL,
            expires      TEXT NOT NULL,
            imported_at  TEXT NOT NULL,
            via          TEXT NOT NULL,
            PRIMARY KEY (feed, version)
        ) STRICT;

        -- The patches of each feed's current catalog. `first_seen` survives updates.
        CREATE TABLE patches (
            feed             TEXT NOT NULL REFERENCES feeds(name),
            id               TEXT NOT NULL,
            catalog_version  INTEGER NOT NULL,
            title            TEXT NOT NULL,
            kind             TEXT NOT NULL,
            severity         TEXT NOT NULL,
            cvss_score       REAL,
            cves             TEXT NOT NULL,
            released         TEXT NOT NULL,
            entry            TEXT NOT NULL,
            entry_sha256     TEXT NOT NULL,
            first_seen       TEXT NOT NULL,
            PRIMARY KEY (feed, id)
        ) STRICT;

        -- Blobs referenced by each feed's current catalog (what GC keeps).
        CREATE TABLE patch_blobs (
            feed    TEXT NOT NULL,
            sha256  TEXT NOT NULL,
            size    INTEGER NOT NULL,
            PRIMARY KEY (feed, sha256)
        ) STRICT;

        -- Known exploited vulnerabilities (CISA KEV), loaded by `patchward kev import`.
        CREATE TABLE kev (
            cve         TEXT PRIMARY KEY,
            date_added  TEXT NOT NULL,
            due_date    TEXT,
            ransomware  TEXT
        ) STRICT;

        -- Per mirror source: the outcome of the last sync attempts.
        CREATE TABLE mirror_status (
            source         TEXT PRIMARY KEY,
            last_attempt   TEXT,
            last_success   TEXT,
            last_error     TEXT,
            bytes_fetched  INTEGER NOT NULL DEFAULT 0
        ) STRICT;
        "#,
        ),
        M::up(
            r#"
        -- Enrollment tokens: only the sha256 of the secret is stored.
        CREATE TABLE enrollment_tokens (
            id          INTEGER PRIMARY KEY,
            sha256      TEXT NOT NULL UNIQUE,
            ring        TEXT,
            labels      TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            created_by  TEXT NOT NULL,
            expires_at  TEXT NOT NULL,
            max_uses    INTEGER NOT NULL,
            uses        INTEGER NOT NULL DEFAULT 0
        ) STRICT;

        -- Enrolled hosts and their agent's ed25519 public key (hex).
        CREATE TABLE hosts (
            id           TEXT PRIMARY KEY,
            hostname     TEXT NOT NULL,
            public_key   TEXT NOT NULL UNIQUE,
            ring         TEXT,
            labels       TEXT NOT NULL,
            token_id     INTEGER REFERENCES enrollment_tokens(id),
            enrolled_at  TEXT NOT NULL,
            last_seen    TEXT,
            revoked_at   TEXT
        ) STRICT;

        -- The latest inventory per host (validated JSON, packages always included).
        CREATE TABLE host_inventory (
            host_id          TEXT PRIMARY KEY REFERENCES hosts(id),
            reported_at      TEXT NOT NULL,
            inventory        TEXT NOT NULL,
            packages_digest  TEXT NOT NULL
        ) STRICT;

        -- One row per report that changed something: which fields.
        CREATE TABLE host_changes (
            id       INTEGER PRIMARY KEY,
            host_id  TEXT NOT NULL REFERENCES hosts(id),
            at       TEXT NOT NULL,
            fields   TEXT NOT NULL
        ) STRICT;
        CREATE INDEX host_changes_by_host ON host_changes(host_id, id);
        "#,
        ),
        M::up(
            r#"
        -- Jobs: one patch on one host, with the signed ticket the agent receives.
        CREATE TABLE jobs (
            id          TEXT PRIMARY KEY,
            host_id     TEXT NOT NULL REFERENCES hosts(id),
            feed        TEXT NOT NULL,
            patch_id    TEXT NOT NULL,
            state       TEXT NOT NULL,
            ticket      BLOB NOT NULL,
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        ) STRICT;
        CREATE INDEX jobs_by_host ON jobs(host_id, state);

        -- Every state a job reached, as reported; one row per (job, state).
        CREATE TABLE job_events (
            job_id  TEXT NOT NULL REFERENCES jobs(id),
            seq     INTEGER NOT NULL,
            state   TEXT NOT NULL,
            at      TEXT NOT NULL,
            output  TEXT NOT NULL,
            PRIMARY KEY (job_id, seq),
            UNIQUE (job_id, state)
        ) STRICT;
        "#,
        ),
        M::up(
            r#"
        -- Approval decisions per patch (policy::Approval as JSON), latest only; the
        -- history is in the audit log.
        CREATE TABLE approvals (
            feed        TEXT NOT NULL,
            patch_id    TEXT NOT NULL,
            approval    TEXT NOT NULL,
            decided_at  TEXT NOT NULL,
            decided_by  TEXT NOT NULL,
            PRIMARY KEY (feed, patch_id)
        ) STRICT;

        -- One rollout per approved patch: active | halted | aborted | superseded.
        -- Failures that ended before acknowledged_at (set by `rollout resume`) no
        -- longer count towards the error brake.
        CREATE TABLE rollouts (
            feed             TEXT NOT NULL,
            patch_id         TEXT NOT NULL,
            state            TEXT NOT NULL,
            started_at       TEXT NOT NULL,
            updated_at       TEXT NOT NULL,
            acknowledged_at  TEXT,
            note             TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (feed, patch_id)
        ) STRICT;

        -- The ring a scheduled job was offered in (NULL: `patchward deploy`).
        ALTER TABLE jobs ADD COLUMN ring TEXT;
        CREATE INDEX jobs_by_patch ON jobs(feed, patch_id, state);
        "#,
        ),
        M::up_with_hook(
            r#"
        -- Which blobs each job's ticket names, for the artifact endpoint's per-host
        -- authorization. `host_id` repeats the job's host (it never changes) so one index
        -- seek answers "does a job of this host name this blob?".
        CREATE TABLE job_artifacts (
            job_id   TEXT NOT NULL REFERENCES jobs(id),
            host_id  TEXT NOT NULL REFERENCES hosts(id),
            sha256   TEXT NOT NULL,
            PRIMARY KEY (job_id, sha256)
        ) STRICT;
        CREATE INDEX job_artifacts_by_blob ON job_artifacts(sha256, host_id);
        "#,
            backfill_job_artifacts,
        ),
        M::up(
            r#"
        -- apt repositories per ring (src/apt). Control data of every deb blob, read from
        -- the package itself when it entered the store; `control` is the stanza as it goes
        -- into Packages (without Filename/Size/hashes).
        CREATE TABLE deb_packages (
            sha256        TEXT PRIMARY KEY,
            package       TEXT NOT NULL,
            version       TEXT NOT NULL,
            architecture  TEXT NOT NULL,
            size          INTEGER NOT NULL,
            md5           TEXT NOT NULL,
            control       TEXT NOT NULL,
            filename      TEXT NOT NULL,
            read_at       TEXT NOT NULL
        ) STRICT;

        -- "This patch's debs are released to this ring" (approved and gate passed).
        CREATE TABLE apt_ring_packages (
            ring         TEXT NOT NULL,
            feed         TEXT NOT NULL,
            patch_id     TEXT NOT NULL,
            sha256       TEXT NOT NULL,
            released_at  TEXT NOT NULL,
            released_by  TEXT NOT NULL,
            PRIMARY KEY (ring, feed, patch_id, sha256)
        ) STRICT;
        CREATE INDEX apt_ring_packages_by_sha ON apt_ring_packages(sha256, ring);

        -- Per ring: changed since the last publish, and what was published.
        CREATE TABLE apt_rings (
            ring              TEXT PRIMARY KEY,
            dirty             INTEGER NOT NULL DEFAULT 1,
            changed_at        TEXT,
            published_at      TEXT,
            valid_until       TEXT,
            published_digest  TEXT,
            generation        INTEGER NOT NULL DEFAULT 0,
            last_error        TEXT
        ) STRICT;
        "#,
        ),
        M::up(
            r#"
        -- Which hosts' inventories changed, in order: the fleet planner (rollout::planner)
        -- re-reads only those. Filled by triggers, so every writer (server or CLI) is
        -- seen; the server deletes rows the planner has consumed.
        -- AUTOINCREMENT: ids are never reused after the consumed rows are deleted.
        CREATE TABLE inventory_changes (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            host_id  TEXT NOT NULL
        ) STRICT;
        CREATE TRIGGER inventory_changes_insert AFTER INSERT ON host_inventory
        BEGIN
            INSERT INTO inventory_changes (host_id) VALUES (NEW.host_id);
        END;
        CREATE TRIGGER inventory_changes_update AFTER UPDATE OF inventory ON host_inventory
        BEGIN
            INSERT INTO inventory_changes (host_id) VALUES (NEW.host_id);
        END;

        -- Bumped by every change of approvals or rollouts (any process): a fleet plan
        -- built before the latest bump is stale, and check-ins rebuild it first.
        CREATE TABLE rollout_generation (
            id  INTEGER PRIMARY KEY CHECK (id = 1),
            n   INTEGER NOT NULL
        ) STRICT;
        INSERT INTO rollout_generation (id, n) VALUES (1, 0);
        CREATE TRIGGER rollout_generation_approvals_insert AFTER INSERT ON approvals
        BEGIN UPDATE rollout_generation SET n = n + 1; END;
        CREATE TRIGGER rollout_generation_approvals_update AFTER UPDATE ON approvals
        BEGIN UPDATE rollout_generation SET n = n + 1; END;
        CREATE TRIGGER rollout_generation_approvals_delete AFTER DELETE ON approvals
        BEGIN UPDATE rollout_generation SET n = n + 1; END;
        CREATE TRIGGER rollout_generation_rollouts_insert AFTER INSERT ON rollouts
        BEGIN UPDATE rollout_generation SET n = n + 1; END;
        CREATE TRIGGER rollout_generation_rollouts_update AFTER UPDATE ON rollouts
        BEGIN UPDATE rollout_generation SET n = n + 1; END;
        CREATE TRIGGER rollout_generation_rollouts_delete AFTER DELETE ON rollouts
        BEGIN UPDATE rollout_generation SET n = n + 1; END;

        -- Bumped by every job created or changed and every host enrolled, revoked or
        -- re-ringed: with rollout_generation and inventory_changes it tells the planner
        -- whether anything it reads changed since its last plan.
        CREATE TABLE plan_inputs (
            id  INTEGER PRIMARY KEY CHECK (id = 1),
            n   INTEGER NOT NULL
        ) STRICT;
        INSERT INTO plan_inputs (id, n) VALUES (1, 0);
        CREATE TRIGGER plan_inputs_jobs_insert AFTER INSERT ON jobs
        BEGIN UPDATE plan_inputs SET n = n + 1; END;
        CREATE TRIGGER plan_inputs_jobs_update AFTER UPDATE OF state ON jobs
        BEGIN UPDATE plan_inputs SET n = n + 1; END;
        CREATE TRIGGER plan_inputs_hosts_insert AFTER INSERT ON hosts
        BEGIN UPDATE plan_inputs SET n = n + 1; END;
        CREATE TRIGGER plan_inputs_hosts_update AFTER UPDATE OF ring, labels, revoked_at ON hosts
        BEGIN UPDATE plan_inputs SET n = n + 1; END;
        "#,
        ),
        M::up(
            r#"
        -- Accounts of the web admin page (src/auth). `password_hash` is an argon2id PHC
        -- string; the password itself is never stored.
        CREATE TABLE users (
            id                    INTEGER PRIMARY KEY,
            name                  TEXT NOT NULL UNIQUE,
            password_hash         TEXT NOT NULL,
            role                  TEXT NOT NULL CHECK (role IN ('admin', 'auditor')),
            disabled              INTEGER NOT NULL DEFAULT 0,
            must_change_password  INTEGER NOT NULL DEFAULT 1,
            created_at            TEXT NOT NULL,
            changed_at            TEXT NOT NULL
        ) STRICT;

        -- Signed-in sessions. Only the sha256 of the cookie's random token is stored, so
        -- a copy of the database cannot be used to sign in. Times are unix milliseconds
        -- (compared in SQL).
        CREATE TABLE sessions (
            token_sha256  TEXT PRIMARY KEY,
            user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_ms    INTEGER NOT NULL,
            last_seen_ms  INTEGER NOT NULL,
            csrf          TEXT NOT NULL,
            user_agent    TEXT
        ) STRICT;
        CREATE INDEX sessions_by_user ON sessions(user_id);

        -- Failed sign-ins, for throttling per account name (as typed) and per client
        -- address; kept in the database so a restart does not reset a lockout.
        CREATE TABLE login_attempts (
            id        INTEGER PRIMARY KEY,
            at_ms     INTEGER NOT NULL,
            username  TEXT NOT NULL,
            address   TEXT NOT NULL
        ) STRICT;
        CREATE INDEX login_attempts_by_user ON login_attempts(username, at_ms);
        CREATE INDEX login_attempts_by_address ON login_attempts(address, at_ms);
        "#,
        ),
        M::up(
            r#"
        -- Maintenance-window entries added on the web page, laid over the configured
        -- [policy.windows] sets (policy::layer). `spec` is the entry in the config
        -- file's TOML syntax; the history is in the audit log.
        CREATE TABLE window_entries (
            id          INTEGER PRIMARY KEY,
            window_set  TEXT NOT NULL,
            kind        TEXT NOT NULL,
            emergency   INTEGER NOT NULL DEFAULT 0,
            spec        TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            created_by  TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            updated_by  TEXT NOT NULL
        ) STRICT;

        -- The admin pages: the host list in name order, the audit log filtered by
        -- actor or action (newest first), recent failures by time.
        CREATE INDEX hosts_by_name ON hosts(hostname, id);
        CREATE INDEX audit_by_actor ON audit_log(actor, seq);
        CREATE INDEX audit_by_action ON audit_log(action, seq);
        CREATE INDEX jobs_by_state ON jobs(state, updated_at);
        "#,
        ),
        M::up(
            r#"
        -- Issue [8] items 1 and 3 (agent API clocks and replay).
        -- Item 1: a job event is dated by the appliance's clock (`at`); what the host's
        -- clock said is kept beside it, for people only.
        ALTER TABLE job_events ADD COLUMN host_at TEXT;
        -- Item 3: replay protection across restarts (web::agent_auth). The horizon is
        -- a date no request accepted without a floor row below was dated after (one
        -- row, renewed every few seconds); a floor is the newest accepted
        -- Patchward-Date of a host that signed past the horizon. Nanoseconds since
        -- the epoch, so that SQLite compares them as numbers.
        CREATE TABLE agent_replay_horizon (
            id          INTEGER PRIMARY KEY CHECK (id = 1),
            until_ns    INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE agent_replay_floors (
            host_id     TEXT PRIMARY KEY REFERENCES hosts(id),
            floor_ns    INTEGER NOT NULL
        ) STRICT;
        "#,
        ),
        M::up(
            r#"
        -- [8] item 24: apt clients. Who fetches which ring's apt index, by address and
        -- user agent, so hosts without an agent are visible. Written in coalesced
        -- batches (apt::clients) and kept to a bounded number of rows.
        CREATE TABLE apt_clients (
            ring        TEXT NOT NULL,
            address     TEXT NOT NULL,
            user_agent  TEXT NOT NULL,
            first_seen  TEXT NOT NULL,
            last_seen   TEXT NOT NULL,
            requests    INTEGER NOT NULL CHECK (requests >= 0),
            PRIMARY KEY (ring, address, user_agent)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX apt_clients_by_last_seen ON apt_clients(last_seen);
        "#,
        ),
        M::up(
            r#"
        -- Issue [9]: legacy end-of-life hosts (see legacy::).
        -- The lifecycle catalog in force once a signed feed brought one newer than the
        -- snapshot built into the binary (one row; none: the built-in snapshot). The
        -- body is the verified JSON, replaced in the import's transaction.
        CREATE TABLE eol_catalog (
            id           INTEGER PRIMARY KEY CHECK (id = 1),
            version      TEXT NOT NULL,
            source       TEXT NOT NULL,
            sha256       TEXT NOT NULL,
            feed         TEXT NOT NULL,
            imported_at  TEXT NOT NULL,
            body         BLOB NOT NULL
        ) STRICT;
        -- Hosts without an agent (old Windows, appliances, printers with a web UI),
        -- registered by hand or from a CSV file. `addresses`: a JSON array of IP
        -- addresses, at least one.
        CREATE TABLE legacy_hosts (
            name         TEXT PRIMARY KEY,
            addresses    TEXT NOT NULL,
            product      TEXT NOT NULL,
            cycle        TEXT NOT NULL,
            owner        TEXT NOT NULL,
            notes        TEXT NOT NULL,
            added_at     TEXT NOT NULL,
            added_by     TEXT NOT NULL
        ) STRICT;
        -- `host` below is an agent host's id (`h-...`) or an agentless host's name.
        -- A legacy host opted in to rollouts despite its state (`legacy include`).
        CREATE TABLE legacy_includes (
            host         TEXT PRIMARY KEY,
            reason       TEXT NOT NULL,
            at           TEXT NOT NULL,
            actor        TEXT NOT NULL
        ) STRICT;
        -- A risk acceptance: who accepted running the host as it is, why, under which
        -- compensating controls (JSON array of names), until when. An expired one stays
        -- (shown as expired) until revoked or replaced; `expiry_audited` records that
        -- its expiry has its audit entry.
        CREATE TABLE legacy_acceptances (
            host            TEXT PRIMARY KEY,
            reason          TEXT NOT NULL,
            controls        TEXT NOT NULL,
            accepted_at     TEXT NOT NULL,
            until           TEXT NOT NULL,
            actor           TEXT NOT NULL,
            expiry_audited  INTEGER NOT NULL DEFAULT 0 CHECK (expiry_audited IN (0, 1))
        ) STRICT;
        -- A host's audit history on its Legacy page (`audit::Filter::subject`).
        CREATE INDEX audit_by_subject ON audit_log(subject, seq);
        "#,
        ),
        M::up(
            r#"
        -- Issue [10]: fencing legacy hosts in and watching them (see legacy::segment,
        -- legacy::monitor). `host` is an agent host's id or an agentless host's name,
        -- as in legacy_includes.
        -- A host's allowed flows, each in the canonical text form of legacy::flows
        -- (parsed and printed again before it is stored).
        CREATE TABLE legacy_flows (
            host      TEXT NOT NULL,
            flow      TEXT NOT NULL,
            added_at  TEXT NOT NULL,
            added_by  TEXT NOT NULL,
            PRIMARY KEY (host, flow)
        ) STRICT;
        -- Named peer sets (`@lan-clients`): `members` is a JSON array of CIDRs.
        CREATE TABLE legacy_sets (
            name        TEXT PRIMARY KEY,
            members     TEXT NOT NULL,
            comment     TEXT NOT NULL,
            updated_at  TEXT NOT NULL,
            updated_by  TEXT NOT NULL
        ) STRICT;
        -- The last answers for DNS-name peers: each address until its record expires.
        CREATE TABLE legacy_dns (
            name         TEXT NOT NULL,
            address      TEXT NOT NULL,
            expires_at   TEXT NOT NULL,
            resolved_at  TEXT NOT NULL,
            PRIMARY KEY (name, address)
        ) STRICT;
        -- The fence as last applied (one row): the segment's input (JSON: hosts, flows,
        -- sets) an operator applied, so DNS refreshes and restores after a reboot
        -- re-render exactly what was approved; pending edits wait for the next apply.
        CREATE TABLE legacy_segment (
            id          INTEGER PRIMARY KEY CHECK (id = 1),
            input       TEXT NOT NULL,
            sha256      TEXT NOT NULL,
            applied_at  TEXT NOT NULL,
            applied_by  TEXT NOT NULL,
            reason      TEXT NOT NULL
        ) STRICT;
        -- Ports the monitor watches beside the host's `in` flows (`legacy monitor
        -- add-port`); `banner` = read and hash the first line.
        CREATE TABLE legacy_monitor_ports (
            host      TEXT NOT NULL,
            port      INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
            banner    INTEGER NOT NULL CHECK (banner IN (0, 1)),
            added_at  TEXT NOT NULL,
            added_by  TEXT NOT NULL,
            PRIMARY KEY (host, port)
        ) STRICT;
        -- The monitor's state per host, so a restart neither forgets a DOWN host nor
        -- misses drift: the state, since when, the address probed, and the port
        -- baselines (JSON).
        CREATE TABLE legacy_monitor_state (
            host        TEXT PRIMARY KEY,
            address     TEXT NOT NULL,
            state       TEXT NOT NULL,
            since       TEXT NOT NULL,
            last_cycle  TEXT NOT NULL,
            baselines   TEXT NOT NULL
        ) STRICT;
        -- What the monitor and the fence saw: host down/up, port drift, banner changes,
        -- blocked flows, fence applied/restored. Kept for compliance ([11]).
        CREATE TABLE legacy_events (
            id      INTEGER PRIMARY KEY,
            host    TEXT NOT NULL,
            at      TEXT NOT NULL,
            kind    TEXT NOT NULL,
            text    TEXT NOT NULL,
            detail  TEXT NOT NULL
        ) STRICT;
        CREATE INDEX legacy_events_by_host ON legacy_events(host, id);
        CREATE INDEX legacy_events_by_at ON legacy_events(at);
        "#,
        ),
        M::up(
            r#"
        -- The few facts of a host's latest inventory that whole-fleet views need
        -- (os-release for the legacy lifecycle, the addresses for the legacy views and
        -- the apt clients list), so those views read a small row per host instead of
        -- parsing every inventory (~20 KB of JSON each). Written by triggers with the
        -- inventory itself, so no writer can leave them behind; backfilled below. (An
        -- upsert, not INSERT OR REPLACE: the outer statement's conflict policy, ABORT
        -- for the check-in's own upsert, would override the trigger's OR REPLACE.)
        CREATE TABLE inventory_facts (
            host_id        TEXT PRIMARY KEY REFERENCES hosts(id),
            os_id          TEXT NOT NULL,
            os_version_id  TEXT NOT NULL,
            os_id_like     TEXT NOT NULL,
            addresses      TEXT NOT NULL
        ) STRICT;
        CREATE TRIGGER inventory_facts_insert AFTER INSERT ON host_inventory
        BEGIN
            INSERT INTO inventory_facts (host_id, os_id, os_version_id, os_id_like, addresses)
            VALUES (NEW.host_id,
                coalesce(json_extract(NEW.inventory, '$.os.id'), ''),
                coalesce(json_extract(NEW.inventory, '$.os.version_id'), ''),
                coalesce(json_extract(NEW.inventory, '$.os.id_like'), ''),
                coalesce(json_extract(NEW.inventory, '$.addresses'), '[]'))
            ON CONFLICT(host_id) DO UPDATE SET os_id = excluded.os_id,
                os_version_id = excluded.os_version_id, os_id_like = excluded.os_id_like,
                addresses = excluded.addresses;
        END;
        CREATE TRIGGER inventory_facts_update AFTER UPDATE OF inventory ON host_inventory
        BEGIN
            INSERT INTO inventory_facts (host_id, os_id, os_version_id, os_id_like, addresses)
            VALUES (NEW.host_id,
                coalesce(json_extract(NEW.inventory, '$.os.id'), ''),
                coalesce(json_extract(NEW.inventory, '$.os.version_id'), ''),
                coalesce(json_extract(NEW.inventory, '$.os.id_like'), ''),
                coalesce(json_extract(NEW.inventory, '$.addresses'), '[]'))
            ON CONFLICT(host_id) DO UPDATE SET os_id = excluded.os_id,
                os_version_id = excluded.os_version_id, os_id_like = excluded.os_id_like,
                addresses = excluded.addresses;
        END;
        CREATE TRIGGER inventory_facts_delete AFTER DELETE ON host_inventory
        BEGIN
            DELETE FROM inventory_facts WHERE host_id = OLD.host_id;
        END;
        INSERT INTO inventory_facts (host_id, os_id, os_version_id, os_id_like, addresses)
        SELECT host_id,
            coalesce(json_extract(inventory, '$.os.id'), ''),
            coalesce(json_extract(inventory, '$.os.version_id'), ''),
            coalesce(json_extract(inventory, '$.os.id_like'), ''),
            coalesce(json_extract(inventory, '$.addresses'), '[]')
        FROM host_inventory;
        "#,
        ),
        M::up(
            r#"
        -- Export mode: the fence last written by `legacy segment export` (or marked
        -- exported on the admin page) for the site's firewall, shaped like
        -- legacy_segment; `reason` says where it went. Hosts whose entry equals this
        -- input are "exported", others "pending" until the next export.
        CREATE TABLE legacy_segment_export (
            id          INTEGER PRIMARY KEY CHECK (id = 1),
            input       TEXT NOT NULL,
            sha256      TEXT NOT NULL,
            applied_at  TEXT NOT NULL,
            applied_by  TEXT NOT NULL,
            reason      TEXT NOT NULL
        ) STRICT;
        "#,
        ),
    ])
});

/// The schema version this binary writes.
pub const LATEST: usize = 16;

/// Migration 6's hook: fills `job_artifacts` from the tickets of jobs created before it,
/// in the migration's transaction. SQLite cannot decode the envelope's base64 payload,
/// so this is done here. A ticket that does not parse (the appliance wrote it, so only
/// damage does that) gives its job no rows: its host gets 403 for those blobs, which is
/// the safe side, and a warning names the job.
fn backfill_job_artifacts(tx: &rusqlite::Transaction<'_>) -> rusqlite_migration::HookResult {
    let jobs: Vec<(String, String, Vec<u8>)> = {
        let mut st = tx.prepare("SELECT id, host_id, ticket FROM jobs ORDER BY id")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?
    };
    for (id, host, ticket) in jobs {
        match ticket_blobs(&ticket) {
            Ok(blobs) => {
                super::jobs::insert_job_artifacts(tx, &id, &host, blobs.iter().map(String::as_str))
                    .map_err(|e| rusqlite_migration::HookError::Hook(e.to_string()))?;
            }
            Err(reason) => {
                tracing::warn!(job = %id, %reason, "stored ticket unreadable; its artifacts stay unauthorized");
            }
        }
    }
    Ok(())
}

/// The artifact sha256s a stored ticket envelope names (each checked to be a blob name).
fn ticket_blobs(ticket: &[u8]) -> Result<Vec<String>, String> {
    let env = crate::trust::dsse::Envelope::from_json(ticket).map_err(|e| e.to_string())?;
    let payload: serde_json::Value =
        serde_json::from_slice(&env.payload).map_err(|e| e.to_string())?;
    let arts = payload
        .get("artifacts")
        .and_then(|a| a.as_array())
        .ok_or("the payload has no artifacts list")?;
    arts.iter()
        .map(|a| {
            let s = a
                .get("sha256")
                .and_then(|s| s.as_str())
                .ok_or("an artifact has no sha256")?;
            crate::store::Sha256Hex::parse(s)
                .map(|h| h.as_str().to_owned())
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Reads the schema version of an open connection.
pub fn schema_version(conn: &Connection) -> Result<usize, DbError> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let found = schema_version(conn)?;
    if found > LATEST {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found,
            known: LATEST,
        });
    }
    MIGRATIONS.to_latest(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::feed::catalog::{Artifact, ArtifactFormat, InstallMethod};
    use crate::fleet::jobs::Ticket;
    use crate::trust::keys::Ed25519Key;

    fn ticket(job: &str, host: &str, blobs: &[&str]) -> Vec<u8> {
        let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
        Ticket {
            job_id: job.into(),
            host_id: host.into(),
            feed: "f".into(),
            patch_id: "p".into(),
            title: String::new(),
            kind: None,
            artifacts: blobs
                .iter()
                .map(|b| Artifact {
                    name: "a.bin".into(),
                    sha256: (*b).into(),
                    size: 1,
                    format: ArtifactFormat::File,
                })
                .collect(),
            method: InstallMethod::Script,
            not_before: None,
            latest_start: None,
            reboot: false,
            est_minutes: 1,
            needs_backup: false,
            health_check: false,
            rollback_of: None,
            issued: "2026-11-27T10:00:00Z".parse().unwrap(),
        }
        .sign(&key)
        .to_json()
    }

    #[test]
    fn v6_backfills_job_artifacts_from_stored_tickets() {
        let (x, y) = ("a".repeat(64), "b".repeat(64));
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::MIGRATIONS.to_version(&mut c, 4).unwrap();
        for h in ["h-1", "h-2"] {
            c.execute(
                "INSERT INTO hosts (id, hostname, public_key, labels, enrolled_at)
                 VALUES (?1, ?1, ?1, '[]', 't')",
                [h],
            )
            .unwrap();
        }
        let jobs: [(&str, &str, Vec<u8>); 4] = [
            ("j-1", "h-1", ticket("j-1", "h-1", &[&x, &y, &x])),
            ("j-2", "h-2", ticket("j-2", "h-2", &[&y])),
            // Damaged: not an envelope; and one naming something that is not a hash.
            ("j-3", "h-2", b"{not json".to_vec()),
            (
                "j-4",
                "h-2",
                ticket("j-4", "h-2", &[&x, "../../etc/passwd"]),
            ),
        ];
        for (id, host, t) in &jobs {
            c.execute(
                "INSERT INTO jobs (id, host_id, feed, patch_id, state, ticket, created_at,
                 updated_at) VALUES (?1, ?2, 'f', 'p', 'offered', ?3, 't', 't')",
                rusqlite::params![id, host, t],
            )
            .unwrap();
        }
        super::MIGRATIONS.to_latest(&mut c).unwrap();
        let mut st = c
            .prepare("SELECT job_id, host_id, sha256 FROM job_artifacts ORDER BY 1, 3")
            .unwrap();
        let rows: Vec<(String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = |j: &str, h: &str, s: &str| (j.to_string(), h.to_string(), s.to_string());
        assert_eq!(
            rows,
            [
                row("j-1", "h-1", &x),
                row("j-1", "h-1", &y),
                row("j-2", "h-2", &y)
            ]
        );
        let may = |h: &str, s: &str| crate::db::jobs::host_may_fetch(&c, h, s).unwrap();
        assert!(may("h-1", &x) && may("h-1", &y) && may("h-2", &y));
        assert!(!may("h-2", &x));
        assert!(!may("h-3", &y));
    }

    fn facts(c: &rusqlite::Connection) -> Vec<(String, String, String, String, String)> {
        let mut st = c
            .prepare(
                "SELECT host_id, os_id, os_version_id, os_id_like, addresses
                 FROM inventory_facts ORDER BY host_id",
            )
            .unwrap();
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn fact(
        id: &str,
        os: &str,
        v: &str,
        like: &str,
        addr: &str,
    ) -> (String, String, String, String, String) {
        (id.into(), os.into(), v.into(), like.into(), addr.into())
    }

    #[test]
    fn v15_backfills_inventory_facts_and_triggers_keep_them_with_the_inventory() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::MIGRATIONS.to_version(&mut c, 14).unwrap();
        for h in ["h-1", "h-2", "h-3"] {
            c.execute(
                "INSERT INTO hosts (id, hostname, public_key, labels, enrolled_at)
                 VALUES (?1, ?1, ?1, '{}', 't')",
                [h],
            )
            .unwrap();
        }
        let inv = |os: &str, v: &str, like: &str, addr: &str| {
            serde_json::json!({"os": {"id": os, "version_id": v, "id_like": like},
                "addresses": [addr], "packages": [{"name": "x", "version": "1", "arch": "all"}]})
            .to_string()
        };
        let put = |c: &rusqlite::Connection, h: &str, json: &str| {
            c.execute(
                "INSERT INTO host_inventory (host_id, reported_at, inventory, packages_digest)
                 VALUES (?1, 't', ?2, '')
                 ON CONFLICT(host_id) DO UPDATE SET reported_at = 't2', inventory = ?2",
                rusqlite::params![h, json],
            )
            .unwrap();
        };
        put(&c, "h-1", &inv("debian", "10", "", "10.0.0.1/24"));
        // An old inventory without os-release or addresses: empty facts, not a failure.
        put(&c, "h-2", r#"{"kernel":"4.19"}"#);
        super::MIGRATIONS.to_latest(&mut c).unwrap();
        assert_eq!(
            facts(&c),
            [
                fact("h-1", "debian", "10", "", r#"["10.0.0.1/24"]"#),
                fact("h-2", "", "", "", "[]"),
            ],
            "the migration backfills from the stored inventories; h-3 has none"
        );
        // A new inventory (update and first insert) carries its facts with it.
        put(&c, "h-1", &inv("debian", "12", "", "192.0.2.7/24"));
        put(
            &c,
            "h-3",
            &inv("rocky", "9.4", "rhel centos fedora", "198.51.100.3/24"),
        );
        assert_eq!(
            facts(&c),
            [
                fact("h-1", "debian", "12", "", r#"["192.0.2.7/24"]"#),
                fact("h-2", "", "", "", "[]"),
                fact(
                    "h-3",
                    "rocky",
                    "9.4",
                    "rhel centos fedora",
                    r#"["198.51.100.3/24"]"#
                ),
            ]
        );
        // Touching other columns leaves the facts; removing the inventory removes them.
        c.execute(
            "UPDATE host_inventory SET reported_at = 't3' WHERE host_id = 'h-1'",
            [],
        )
        .unwrap();
        c.execute("DELETE FROM host_inventory WHERE host_id = 'h-2'", [])
            .unwrap();
        assert_eq!(
            facts(&c),
            [
                fact("h-1", "debian", "12", "", r#"["192.0.2.7/24"]"#),
                fact(
                    "h-3",
                    "rocky",
                    "9.4",
                    "rhel centos fedora",
                    r#"["198.51.100.3/24"]"#
                ),
            ]
        );
    }

    #[test]
    fn migrations_are_valid_and_latest_matches() {
        super::MIGRATIONS.validate().unwrap();
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::MIGRATIONS.to_latest(&mut c).unwrap();
        assert_eq!(super::schema_version(&c).unwrap(), super::LATEST);
        assert_eq!(
            super::LATEST,
            16,
            "8: planner inputs; 9: accounts of the admin page; 10: window entries; \
             11: agent clocks and replay floors; 12: apt clients; 13: legacy hosts; \
             14: legacy segment and monitor; 15: inventory facts; 16: segment export"
        );
        let idx: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'audit_by_subject'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(idx, 1, "a host's audit history reads by subject");
        for table in [
            "apt_clients",
            "users",
            "sessions",
            "login_attempts",
            "window_entries",
            "plan_inputs",
        ] {
            let n: i64 = c
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
    }
}
