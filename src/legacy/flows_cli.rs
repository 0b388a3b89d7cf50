//! `patchward legacy flow add|remove|list` and `patchward legacy set add|remove|list`:
//! a legacy host's allow-list and the named peer sets from the command line. Writes go
//! through [`super::flows_store`] (validated, one transaction, audited); they change
//! what `legacy segment plan` shows, and `legacy segment apply` puts them in force.

use std::io::Write;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde::Serialize;

use super::LegacyError;
use super::flows_store;
use crate::config::Config;
use crate::db::Db;
use crate::timefmt::display;

/// `patchward legacy flow`.
#[derive(Debug, Args)]
pub struct FlowArgs {
    #[command(subcommand)]
    pub cmd: FlowCmd,
}

#[derive(Debug, Subcommand)]
pub enum FlowCmd {
    /// Allow a flow to or from a legacy host, e.g.
    /// `legacy flow add legacy-db in tcp @lan-clients port 1433 --comment "ERP"`.
    Add(FlowEdit),
    /// Remove one of a host's flows (the comment need not be given).
    Remove(FlowEdit),
    /// A host's flows.
    List(FlowList),
}

#[derive(Debug, Args)]
pub struct FlowEdit {
    /// Agentless name, or an enrolled host's id or hostname.
    pub host: String,
    /// The flow: `in|out tcp|udp|icmp PEER [port PORTS] ["COMMENT"]` (PEER: an address,
    /// a CIDR, @SET or a DNS name; PORTS: 22,443,8000-8100).
    #[arg(required = true, num_args = 1..)]
    pub flow: Vec<String>,
    /// The flow's comment (instead of a quoted "COMMENT" inside the flow text).
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct FlowList {
    pub host: String,
    #[arg(long)]
    pub json: bool,
}

/// `patchward legacy set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(subcommand)]
    pub cmd: SetCmd,
}

#[derive(Debug, Subcommand)]
pub enum SetCmd {
    /// Define (or replace) a named peer set, e.g. `legacy set add lan-clients 192.0.2.0/24`.
    Add(SetAdd),
    /// Remove a named set (refused while a flow uses it).
    Remove(SetRemove),
    /// Every named set.
    List(SetList),
}

#[derive(Debug, Args)]
pub struct SetAdd {
    /// 1-48 of a-z, 0-9 and -, starting with a letter; flows name it as @NAME.
    pub name: String,
    /// Addresses and CIDRs.
    #[arg(required = true, num_args = 1..)]
    pub members: Vec<String>,
    #[arg(long, default_value = "")]
    pub comment: String,
}

#[derive(Debug, Args)]
pub struct SetRemove {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SetList {
    #[arg(long)]
    pub json: bool,
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), LegacyError> {
    out.write_all(text.as_bytes())
        .map_err(|e| LegacyError::Refused(format!("cannot write the output: {e}")))
}

/// The flow text of an edit: the words as given, with `--comment` added in quotes.
fn flow_text(e: &FlowEdit) -> Result<String, LegacyError> {
    let mut text = e.flow.join(" ");
    if let Some(c) = &e.comment {
        if text.contains('"') {
            return Err(LegacyError::Invalid {
                field: "comment".into(),
                reason: "give the comment either in the flow text or with --comment, not both"
                    .into(),
            });
        }
        text.push_str(&format!(" \"{c}\""));
    }
    Ok(text)
}

const IN_FORCE: &str = "`patchward legacy segment plan` shows the change; `legacy segment apply --reason R` puts it in force";

/// Runs `legacy flow ...`.
pub fn flow(
    db: &Db,
    config: &Config,
    now: Timestamp,
    a: &FlowArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    match &a.cmd {
        FlowCmd::Add(e) => {
            let text = flow_text(e)?;
            let (h, f, added) =
                flows_store::add_flow_with(db, &config.legacy, now, &e.host, &text, actor)?;
            let name = h.display_name();
            if added {
                write_out(
                    out,
                    &format!("host {name}: flow `{f}` added; {IN_FORCE}.\n"),
                )
            } else {
                write_out(
                    out,
                    &format!("host {name} already has flow `{f}`; nothing changed.\n"),
                )
            }
        }
        FlowCmd::Remove(e) => {
            let text = flow_text(e)?;
            let (h, f) = flows_store::remove_flow(db, now, &e.host, &text, actor)?;
            write_out(
                out,
                &format!(
                    "host {}: flow `{f}` removed; {IN_FORCE}.\n",
                    h.display_name()
                ),
            )
        }
        FlowCmd::List(l) => {
            let h = db.read_blocking(|c| super::resolve(c, &l.host))?;
            let flows = db.read_blocking(|c| flows_store::flows_of(c, &h))?;
            if l.json {
                #[derive(Serialize)]
                struct Row<'a> {
                    flow: &'a str,
                    added_at: &'a str,
                    added_by: &'a str,
                }
                let rows: Vec<Row<'_>> = flows
                    .iter()
                    .map(|f| Row {
                        flow: &f.text,
                        added_at: &f.added_at,
                        added_by: &f.added_by,
                    })
                    .collect();
                let v = serde_json::json!({ "host": h, "flows": rows });
                return write_out(out, &format!("{v:#}\n"));
            }
            let name = h.display_name();
            if flows.is_empty() {
                return write_out(
                    out,
                    &format!(
                        "host {name} has no flows: it is not fenced. Add one with \
                         `patchward legacy flow add {name} in tcp PEER port PORT`.\n"
                    ),
                );
            }
            let mut s = format!("host {name}: {} flow(s)\n", flows.len());
            for f in &flows {
                s.push_str(&format!(
                    "  {}    (added {} by {})\n",
                    f.text,
                    display(&f.added_at),
                    f.added_by
                ));
            }
            write_out(out, &s)
        }
    }
}

/// Runs `legacy set ...`.
pub fn set(
    db: &Db,
    now: Timestamp,
    a: &SetArgs,
    actor: &str,
    out: &mut dyn Write,
) -> Result<(), LegacyError> {
    match &a.cmd {
        SetCmd::Add(s) => {
            flows_store::define_set(db, now, &s.name, &s.members, &s.comment, actor)?;
            write_out(
                out,
                &format!(
                    "set @{} defined with {} member(s); {IN_FORCE}.\n",
                    s.name.trim().to_ascii_lowercase(),
                    s.members.len()
                ),
            )
        }
        SetCmd::Remove(s) => {
            flows_store::remove_set(db, now, &s.name, actor)?;
            write_out(out, &format!("set @{} removed.\n", s.name))
        }
        SetCmd::List(l) => {
            let sets = db.read_blocking(flows_store::sets)?;
            if l.json {
                let v: Vec<serde_json::Value> = sets
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name,
                            "members": s.members.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                            "comment": s.comment,
                            "updated_at": s.updated_at,
                            "updated_by": s.updated_by,
                        })
                    })
                    .collect();
                return write_out(out, &format!("{:#}\n", serde_json::Value::from(v)));
            }
            if sets.is_empty() {
                return write_out(
                    out,
                    "no named sets; define one with `patchward legacy set add NAME CIDR...`\n",
                );
            }
            let mut text = String::new();
            for s in &sets {
                let m: Vec<String> = s.members.iter().map(|m| m.to_string()).collect();
                text.push_str(&format!("@{}  {}", s.name, m.join(", ")));
                if !s.comment.is_empty() {
                    text.push_str(&format!("  \"{}\"", s.comment));
                }
                text.push('\n');
            }
            write_out(out, &text)
        }
    }
}
