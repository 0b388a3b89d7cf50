//! `patchward legacy segment plan|apply|export|status`: the fence from the command line
//! (`legacy::segment` does the work; this prints it).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde_json::json;

use super::LegacyError;
use super::segment::{self, FenceState, Plan, SegmentStatus};
use crate::config::{Config, SegmentMode};
use crate::db::Db;

/// `legacy segment`.
#[derive(Debug, Args)]
pub struct SegmentArgs {
    #[command(subcommand)]
    pub cmd: SegmentCmd,
}

#[derive(Debug, Subcommand)]
pub enum SegmentCmd {
    /// Show what `apply` would change: the diff of the wanted table against the applied one.
    Plan(JsonArg),
    /// Apply the fence through patchward-netd (enforce mode): a reason is required.
    Apply(ApplyArgs),
    /// Write patchward.nft, flows.csv and sets.csv for the site's firewall (any mode).
    Export(ExportArgs),
    /// Whether the kernel holds the fence as applied, and each host's place in it.
    Status(JsonArg),
}

#[derive(Debug, Clone, Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Why (kept in the audit log and on each host's events).
    #[arg(long, default_value = "")]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// An existing directory; its three files are replaced atomically.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

fn io(e: std::io::Error) -> LegacyError {
    LegacyError::Refused(format!("cannot write the output: {e}"))
}

fn print_json(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<(), LegacyError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| LegacyError::Refused(e.to_string()))?;
    writeln!(out, "{text}").map_err(io)
}

/// Runs one `legacy segment` command.
pub fn run(
    db: &Db,
    config: &Config,
    now: Timestamp,
    args: &SegmentArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    let cfg = &config.legacy;
    match &args.cmd {
        SegmentCmd::Plan(a) => {
            let p = segment::plan(db, cfg, now)?;
            if a.json {
                print_json(out, &p)
            } else {
                write!(out, "{}", plan_text(&p)).map_err(io)
            }
        }
        SegmentCmd::Apply(a) => {
            let o = segment::apply(db, cfg, now, actor, &a.reason)?;
            if a.json {
                return print_json(out, &o);
            }
            if o.changed {
                writeln!(out, "Applied the fence (sha256 {}).", o.sha256).map_err(io)
            } else {
                writeln!(
                    out,
                    "Nothing changed: the kernel already holds this fence (sha256 {}).",
                    o.sha256
                )
                .map_err(io)
            }
        }
        SegmentCmd::Export(a) => {
            let files = segment::export(db, cfg, now, actor, &a.out)?;
            if a.json {
                return print_json(out, &json!({ "files": files }));
            }
            for f in &files {
                writeln!(out, "wrote {}", f.display()).map_err(io)?;
            }
            Ok(())
        }
        SegmentCmd::Status(a) => {
            let s = segment::status(db, cfg, now)?;
            if a.json {
                print_json(out, &s)
            } else {
                write!(out, "{}", status_text(&s)).map_err(io)
            }
        }
    }
}

/// The text of `segment plan`.
pub fn plan_text(p: &Plan) -> String {
    let mut s = format!("Compared with {}.\n", p.against);
    if p.changed {
        s.push_str(&p.diff);
        s.push_str("Apply with: patchward legacy segment apply --reason \"...\"\n");
    } else {
        s.push_str("No changes: applying would do nothing.\n");
    }
    s
}

/// The text of `segment status`.
pub fn status_text(s: &SegmentStatus) -> String {
    let mut t = format!("Segment mode {}: {}\n", s.mode.as_str(), s.state.label());
    match &s.state {
        FenceState::HelperAbsent(why) => t.push_str(&format!("  {why}\n")),
        FenceState::Drifted => t.push_str(
            "  the kernel's table inet patchward is not the one applied (changed or gone): \
             the keeper restores it, or run `patchward legacy segment apply --reason ...`\n",
        ),
        FenceState::ExportOnly => t.push_str(
            "  the site's firewall fences: `patchward legacy segment export --out DIR`\n",
        ),
        _ => {}
    }
    if let (Some(at), Some(by)) = (&s.applied_at, &s.applied_by) {
        t.push_str(&format!(
            "  last applied {at} by {by}: {}\n",
            s.reason.as_deref().unwrap_or("")
        ));
    } else if s.mode == SegmentMode::Enforce {
        t.push_str("  never applied\n");
    }
    if let (Some(at), Some(by)) = (&s.exported_at, &s.exported_by) {
        t.push_str(&format!(
            "  last exported {at} by {by} to {}\n",
            s.exported_to.as_deref().unwrap_or("")
        ));
    } else if s.mode == SegmentMode::Export {
        t.push_str("  never exported\n");
    }
    if s.pending {
        t.push_str(if s.mode == SegmentMode::Export {
            "  pending: flows changed since the last export (run `patchward legacy segment export --out DIR`)\n"
        } else {
            "  pending: flows changed since the last apply (see `patchward legacy segment plan`)\n"
        });
    }
    if s.hosts.is_empty() {
        t.push_str("No legacy hosts.\n");
    } else {
        let w = s.hosts.keys().map(|k| k.len()).max().unwrap_or(0);
        t.push_str("Hosts:\n");
        for (k, f) in &s.hosts {
            t.push_str(&format!("  {k:<w$}  {}\n", f.label()));
        }
    }
    t
}
