//! `patchward serve`, `init` and `healthcheck`: running the appliance, preparing its
//! data directory without running it, and probing a running one (the container's and
//! the service's health check).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use patchward::appliance::Appliance;
use patchward::clock::{SharedClock, SystemClock};
use patchward::config::{Config, Overrides};

use super::{Globals, cli_command, load_config, overrides, runtime};

#[derive(Args)]
pub struct ServeArgs {
    /// HTTP listen address, e.g. 0.0.0.0:8080; overrides `server.listen`.
    #[arg(long, env = "PATCHWARD_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// HTTPS (admin page) listen address, e.g. [::]:8443; overrides
    /// `server.tls_listen`.
    #[arg(long, env = "PATCHWARD_TLS_LISTEN", value_name = "ADDR")]
    tls_listen: Option<String>,
}

#[derive(Args)]
pub struct InitArgs {
    /// Print a plain-text block for a console login prompt (/etc/issue.d snippet).
    #[arg(long)]
    banner: bool,
}

#[derive(Args)]
pub struct HealthcheckArgs {
    /// URL to probe (default: /healthz on the configured listen address).
    #[arg(long)]
    url: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

pub fn serve(g: &Globals, a: &ServeArgs) -> anyhow::Result<ExitCode> {
    let listen = Overrides {
        listen: a.listen.clone(),
        tls_listen: a.tls_listen.clone(),
        ..overrides(g)
    };
    let config = Config::load(g.config.as_deref(), &listen)?;
    patchward::telemetry::init_logging(config.log.format, &config.log.level);
    let clock: SharedClock = Arc::new(SystemClock);
    let rt = runtime()?;
    let mut out = std::io::stdout();
    let command = cli_command(g);
    rt.block_on(patchward::server::serve(config, clock, &mut out, &command))?;
    // In-flight work got its grace period inside serve(); don't wait on stragglers.
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(ExitCode::SUCCESS)
}

pub fn init(g: &Globals, a: &InitArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(g)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let app = Appliance::init(&config, &clock)?;
    let urls = patchward::hostinfo::urls("https", config.server.tls_listen);
    if a.banner {
        print!(
            "{}",
            patchward::appliance::console_banner(
                &urls,
                &app.tls.fingerprint,
                app.admin_password.as_deref()
            )
        );
    } else {
        println!("Patchward appliance ready in {}", config.data_dir.display());
        print!(
            "{}",
            patchward::server::admin_lines(
                &urls,
                &app.tls.fingerprint,
                &patchward::server::tls_source(&app.tls),
                app.admin_password.as_deref()
            )
        );
        if app.admin_password.is_none() {
            println!(
                "  the admin password was shown at first start; to set a new one run \
                 `patchward users passwd admin`"
            );
        }
        println!("  start it with `patchward serve` (or the patchward service)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn healthcheck(g: &Globals, a: &HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(g)?;
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| patchward::health::default_url(config.server.listen));
    let rt = runtime()?;
    match rt.block_on(patchward::health::probe(
        &url,
        Duration::from_secs(a.timeout),
    )) {
        patchward::health::Probe::Healthy => {
            println!("healthy: {url}");
            Ok(ExitCode::SUCCESS)
        }
        patchward::health::Probe::Unhealthy(why) => {
            eprintln!("unhealthy: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}
