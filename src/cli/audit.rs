//! `patchward audit verify|list|note`: check the audit trail's hash chain (exit 1 and
//! name the first broken entry), read its newest entries, and record an operator note.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;

use patchward::audit;
use patchward::clock::{Clock, SystemClock};
use patchward::timefmt;

use super::{Globals, invoking_user, open};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain; exit 1 and name the first broken entry if tampered.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Show the newest entries.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Record an operator note (e.g. "replaced the core switch") in the audit trail.
    Note {
        /// The note's text.
        #[arg(long)]
        message: String,
        /// On whose behalf (recorded as `cli:ACCOUNT for NAME`; the account is always
        /// the invoking one).
        #[arg(long)]
        actor: Option<String>,
        /// What the note is about.
        #[arg(long, default_value = "site")]
        subject: String,
    },
}

pub fn run(g: &Globals, cmd: &AuditCmd) -> anyhow::Result<ExitCode> {
    let (_, db) = open(g)?;
    match cmd {
        AuditCmd::Verify { json } => {
            let report = db.read_blocking(audit::verify)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                match &report.first_broken {
                    None => println!(
                        "audit chain intact: {} entries, head {}",
                        report.entries,
                        report.head.as_deref().unwrap_or("(empty)")
                    ),
                    Some(b) => println!(
                        "audit chain BROKEN at entry {}: {} ({} entries checked); \
                         entries before {} are intact",
                        b.seq, b.reason, report.entries, b.seq
                    ),
                }
            }
            Ok(if report.first_broken.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCmd::List { limit, json } => {
            let entries = db.read_blocking(|c| audit::recent(c, *limit))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                let mut out = std::io::stdout().lock();
                for e in entries.iter().rev() {
                    writeln!(
                        out,
                        "{:>6}  {}  {:<16} {:<24} {:<20} {}",
                        e.seq,
                        timefmt::display(&e.at),
                        e.actor,
                        e.action,
                        e.subject,
                        e.details
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Note {
            message,
            actor,
            subject,
        } => {
            if message.trim().is_empty() {
                anyhow::bail!("--message must not be empty");
            }
            // A name given with --actor is recorded beside the real caller, never instead.
            let actor = match actor {
                Some(name) => format!("{} for {name}", invoking_user()),
                None => invoking_user(),
            };
            let now = SystemClock.now();
            let seq = db.write_blocking(|tx| {
                audit::append(
                    tx,
                    now,
                    &audit::NewEntry {
                        actor: &actor,
                        action: "note",
                        subject,
                        details: serde_json::json!({ "message": message }),
                    },
                )
            })?;
            println!("recorded audit entry {seq}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
