//! `patchward legacy include|exclude|accept|revoke-acceptance`: the same
//! `legacy::decide` functions as the web page, each in one transaction with its audit
//! entry.
//!
//! Risk acceptance is for admins only, on the command line too. The CLI already runs
//! with write access to the data directory (admin power in itself), so a shell account
//! without an admin-page account may accept; but when the invoking account (the
//! kernel-verified caller, `alice` in `alice (as root)`, see `auth::actor`) has an
//! admin-page account, that account's role decides: an auditor (or a disabled account)
//! is refused, so an auditor cannot get through `sudo` what the page denies it.

use std::io::Write;

use clap::Args;
use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::Connection;

use super::decide::{self, AcceptRequest};
use super::{LegacyError, resolve};
use crate::config::Config;
use crate::db::Db;

/// `patchward legacy include HOST --reason R` and `legacy exclude HOST --reason R`.
#[derive(Debug, Args)]
pub struct IncludeArgs {
    /// The agent host (id or hostname).
    pub host: String,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: String,
}

/// `patchward legacy accept HOST --reason R --controls a,b --until YYYY-MM-DD`.
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The host (agentless name, or an agent host's id or hostname).
    pub host: String,
    /// Why the host may run as it is (1-500 characters).
    #[arg(long)]
    pub reason: String,
    /// Compensating controls, comma-separated: segmented, isolated-vlan, no-internet,
    /// monitored, app-firewall, backup-verified, vendor-extended-support,
    /// replacement-planned.
    #[arg(long)]
    pub controls: String,
    /// The UTC day at whose start the acceptance ends (at most
    /// legacy.max_acceptance_days away).
    #[arg(long)]
    pub until: String,
}

/// `patchward legacy revoke-acceptance HOST --reason R`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    pub host: String,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: String,
}

/// The account an audit actor of the CLI names: `cli:alice (as root)` -> `alice`.
pub fn account_of(actor: &str) -> &str {
    let a = actor.strip_prefix("cli:").unwrap_or(actor);
    a.split(" (as ").next().unwrap_or(a)
}

/// Whether `account` may record a risk acceptance from the CLI: refused when it has an
/// admin-page account that is an auditor or disabled (see the module comment).
pub fn may_accept(conn: &Connection, account: &str) -> Result<(), LegacyError> {
    match crate::db::users::user_by_name(conn, account)? {
        Some(u) if !u.role.is_admin() => Err(LegacyError::Refused(format!(
            "risk acceptance needs an admin: account {account} is an {}",
            u.role
        ))),
        Some(u) if u.disabled => Err(LegacyError::Refused(format!(
            "risk acceptance needs an admin: account {account} is disabled"
        ))),
        _ => Ok(()),
    }
}

fn until_of(text: &str) -> Result<Date, LegacyError> {
    text.trim()
        .parse::<Date>()
        .map_err(|e| LegacyError::Invalid {
            field: "until".into(),
            reason: format!("{text:?} is not a date (YYYY-MM-DD): {e}"),
        })
}

/// `legacy include`.
pub fn include(
    db: &Db,
    now: Timestamp,
    a: &IncludeArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let host = db.write_blocking(|tx| {
        let host = resolve(tx, &a.host)?;
        decide::include(tx, now, &host, &a.reason, actor)?;
        Ok::<_, LegacyError>(host)
    })?;
    say(
        out,
        &format!(
            "included {}: it is offered rollouts whatever its lifecycle state",
            host.display_name()
        ),
    )
}

/// `legacy exclude`.
pub fn exclude(
    db: &Db,
    now: Timestamp,
    a: &IncludeArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let host = db.write_blocking(|tx| {
        let host = resolve(tx, &a.host)?;
        decide::exclude(tx, now, &host, &a.reason, actor)?;
        Ok::<_, LegacyError>(host)
    })?;
    say(
        out,
        &format!(
            "excluded {}: its lifecycle state decides again whether it is offered rollouts",
            host.display_name()
        ),
    )
}

/// `legacy accept` (admin only, see [`may_accept`]).
pub fn accept(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &AcceptArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let req = AcceptRequest {
        reason: a.reason.clone(),
        controls: decide::parse_controls(&a.controls)?,
        until: until_of(&a.until)?,
    };
    let host = db.write_blocking(|tx| {
        may_accept(tx, account_of(actor))?;
        let host = resolve(tx, &a.host)?;
        decide::accept(tx, now, &config.legacy, &host, &req, actor)?;
        Ok::<_, LegacyError>(host)
    })?;
    say(
        out,
        &format!(
            "accepted the risk of {} under {} until {} (it ends at 00:00 UTC that day)",
            host.display_name(),
            req.controls.join(", "),
            req.until
        ),
    )
}

/// `legacy revoke-acceptance`.
pub fn revoke(
    db: &Db,
    now: Timestamp,
    a: &RevokeArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let host = db.write_blocking(|tx| {
        let host = resolve(tx, &a.host)?;
        decide::revoke_acceptance(tx, now, &host, &a.reason, actor)?;
        Ok::<_, LegacyError>(host)
    })?;
    say(
        out,
        &format!("revoked the risk acceptance of {}", host.display_name()),
    )
}

fn say(out: &mut dyn Write, line: &str) -> Result<(), LegacyError> {
    writeln!(out, "{line}").map_err(|e| LegacyError::Refused(format!("cannot write output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn the_invoking_account_is_read_from_the_cli_actor() {
        assert_eq!(account_of("cli:alice (as root)"), "alice");
        assert_eq!(account_of("cli:root"), "root");
        assert_eq!(account_of("cli:uid 1234"), "uid 1234");
    }

    #[test]
    fn only_admins_or_shell_accounts_may_accept() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("t.db"), Default::default()).unwrap();
        let now: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        for (name, role) in [("ann", Role::Admin), ("otto", Role::Auditor)] {
            crate::auth::users::add(
                &db,
                now,
                "test",
                name,
                role,
                "correct horse battery 9",
                None,
            )
            .unwrap();
        }
        db.read_blocking(|c| {
            may_accept(c, "ann")?;
            may_accept(c, "shelluser")?;
            let e = may_accept(c, "otto").unwrap_err().to_string();
            assert_eq!(
                e,
                "risk acceptance needs an admin: account otto is an auditor"
            );
            Ok::<_, LegacyError>(())
        })
        .unwrap();
    }
}
