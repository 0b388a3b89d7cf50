//! `patchward store verify|gc`: re-hash the content store and check every referenced
//! blob is present (exit 1 if not), and remove blobs no current catalog references.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Globals, invoking_user, load_config};

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Re-hash every blob and check referenced blobs are present; exit 1 if not.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Remove blobs no current catalog references (after `store.gc_grace_hours`).
    Gc {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Globals, cmd: &StoreCmd) -> anyhow::Result<ExitCode> {
    let config = load_config(g)?;
    let ctx = patchward::mirror::Context::open(&config)?;
    match cmd {
        StoreCmd::Verify { json } => {
            let check = ctx.verify_store()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&check)?);
            } else if check.consistent() {
                println!(
                    "store consistent: {} blobs ({} bytes) re-hashed, every referenced blob present",
                    check.blobs_checked, check.bytes_checked
                );
            } else {
                println!("store NOT consistent:");
                for c in &check.corrupt {
                    println!("  corrupt: {c}");
                }
                for m in &check.misnamed {
                    println!("  misnamed file: {m}");
                }
                for r in &check.referenced_missing {
                    println!("  referenced but missing: {r} (import the content again)");
                }
            }
            Ok(if check.consistent() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        StoreCmd::Gc { json } => {
            let r = ctx.gc(&invoking_user())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "removed {} unreferenced blobs ({} bytes); {} kept within the grace period",
                    r.removed, r.bytes_freed, r.kept_in_grace
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
