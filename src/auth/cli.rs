//! `patchward users ...`: accounts of the admin page. Every command works on an existing
//! data directory (also while the server runs) through `auth::users`, and is audited
//! with the invoking user as actor.

use std::io::{BufRead, Write};

use clap::Subcommand;
use jiff::Timestamp;

use super::users;
use super::{AuthError, Role, password};
use crate::db::Db;

/// `patchward users`.
#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Create an account; prints a generated password once (or reads one with
    /// --password-stdin). It must be changed at first sign-in.
    Add {
        name: String,
        /// admin (may change things) or auditor (reads everything, changes nothing).
        #[arg(long)]
        role: Role,
        /// Read the password from the first line of standard input instead.
        #[arg(long)]
        password_stdin: bool,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Set a new password (generated and printed once, or --password-stdin); it must be
    /// changed at the next sign-in, and the account's sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Disable an account; its sessions end at once.
    Disable {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled account again.
    Enable {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Accounts with role and state (never a password).
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Where a password comes from: generated (and printed) or read from `input`.
fn new_password(from_stdin: bool, input: &mut dyn BufRead) -> Result<(String, bool), AuthError> {
    if !from_stdin {
        return Ok((password::generate(), true));
    }
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| AuthError::Invalid(format!("cannot read the password from stdin: {e}")))?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    password::check_new(pw).map_err(AuthError::Invalid)?;
    Ok((pw.to_owned(), false))
}

/// Runs a `users` command on `db`; `input` is standard input (for --password-stdin).
pub fn run(
    cmd: &UsersCmd,
    db: &Db,
    now: Timestamp,
    actor: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AuthError> {
    match cmd {
        UsersCmd::Add {
            name,
            role,
            password_stdin,
            reason,
        } => {
            users::validate_name(name)?;
            let (pw, generated) = new_password(*password_stdin, input)?;
            let u = users::add(db, now, actor, name, *role, &pw, reason.as_deref())?;
            writeln!(out, "created user {:?} with role {}", u.name, u.role)?;
            if generated {
                writeln!(out, "password: {pw}")?;
                writeln!(out, "(shown only now; it must be changed at first sign-in)")?;
            }
        }
        UsersCmd::Passwd {
            name,
            password_stdin,
            reason,
        } => {
            let (pw, generated) = new_password(*password_stdin, input)?;
            users::set_password(db, now, actor, name, &pw, reason.as_deref())?;
            writeln!(
                out,
                "set a new password for {name:?}; its sessions ended and it must choose its own \
                 at the next sign-in"
            )?;
            if generated {
                writeln!(out, "password: {pw}")?;
                writeln!(out, "(shown only now)")?;
            }
        }
        UsersCmd::Disable { name, reason } => {
            let n = users::set_disabled(db, now, actor, name, true, reason.as_deref())?;
            writeln!(out, "disabled {name:?}; ended {n} session(s)")?;
        }
        UsersCmd::Enable { name, reason } => {
            users::set_disabled(db, now, actor, name, false, reason.as_deref())?;
            writeln!(out, "enabled {name:?}")?;
        }
        UsersCmd::List { json } => {
            let rows = users::list(db)?;
            if *json {
                let text = serde_json::to_string_pretty(&rows)
                    .map_err(|e| AuthError::Invalid(e.to_string()))?;
                writeln!(out, "{text}")?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<8} {:<9} {:<13} changed",
                    "name", "role", "state", "must change"
                )?;
                for u in &rows {
                    writeln!(
                        out,
                        "{:<24} {:<8} {:<9} {:<13} {}",
                        format!("{:?}", u.name),
                        u.role,
                        if u.disabled { "disabled" } else { "active" },
                        if u.must_change_password { "yes" } else { "no" },
                        crate::timefmt::display(&u.changed_at)
                    )?;
                }
            }
        }
    }
    Ok(())
}
