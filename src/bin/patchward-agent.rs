//! `patchward-agent`: runs on each managed server, talks to the appliance.
//!
//! Enrollment, check-in and the apply backends arrive with the fleet work; until then
//! this binary only identifies itself, so nothing claims to work that does not.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "patchward-agent",
    version,
    about = "Patchward agent for managed servers (enrollment and patch jobs are not available in this version)"
)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!(
        "patchward-agent {}: this version has no commands yet; see `patchward-agent --help`",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
