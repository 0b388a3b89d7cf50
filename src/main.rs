//! `patchward`: the appliance daemon and its admin CLI. Parses arguments, then calls the
//! library; nothing else lives here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use patchward::appliance::Appliance;
use patchward::audit;
use patchward::clock::{Clock, SharedClock, SystemClock};
use patchward::config::{Config, Overrides};
use patchward::timefmt;

#[derive(Parser)]
#[command(
    name = "patchward",
    version,
    about = "Patchward patch appliance and admin CLI"
)]
struct Cli {
    /// Configuration file (TOML), laid over the embedded defaults.
    #[arg(long, global = true, env = "PATCHWARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database, keys, content); overrides `data_dir`.
    #[arg(long, global = true, env = "PATCHWARD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format: text or json; overrides `log.format`.
    #[arg(
        long,
        global = true,
        env = "PATCHWARD_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    log_format: Option<String>,
    /// Log filter, e.g. info or patchward=debug; overrides `log.level`.
    #[arg(long, global = true, env = "PATCHWARD_LOG", value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance (creates the data directory, keys, HTTPS certificate and the
    /// first admin account on first start).
    Serve {
        /// HTTP listen address, e.g. 0.0.0.0:8080; overrides `server.listen`.
        #[arg(long, env = "PATCHWARD_LISTEN", value_name = "ADDR")]
        listen: Option<String>,
        /// HTTPS (admin page) listen address, e.g. [::]:8443; overrides
        /// `server.tls_listen`.
        #[arg(long, env = "PATCHWARD_TLS_LISTEN", value_name = "ADDR")]
        tls_listen: Option<String>,
    },
    /// Create the data directory, keys, HTTPS certificate and the admin account if
    /// missing (what `serve` does at first start), and print where to sign in.
    Init {
        /// Print a plain-text block for a console login prompt (/etc/issue.d snippet).
        #[arg(long)]
        banner: bool,
    },
    /// Accounts of the web admin page.
    #[command(subcommand)]
    Users(patchward::auth::cli::UsersCmd),
    /// Exit 0 if a running appliance answers /healthz with 200, else 1.
    Healthcheck {
        /// URL to probe (default: /healthz on the configured listen address).
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Show the appliance's key fingerprints.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Import a signed offline bundle (*.pwb), e.g. from USB media.
    Import {
        /// The bundle file.
        file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Patches known to this appliance.
    #[command(subcommand)]
    Patches(PatchesCmd),
    /// Mirror sources: status and sync.
    #[command(subcommand)]
    Mirror(MirrorCmd),
    /// The CISA Known Exploited Vulnerabilities catalog used to flag patches.
    #[command(subcommand)]
    Kev(KevCmd),
    /// The content store: usage, integrity scrub, garbage collection.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Enrolled hosts and enrollment tokens.
    #[command(subcommand)]
    Hosts(HostsCmd),
    /// Create a job: install one patch on one host (until rollouts create jobs).
    Deploy {
        /// Patch id (`FEED:ID` when several feeds have it).
        #[arg(long)]
        patch: String,
        /// Host id or hostname.
        #[arg(long)]
        host: String,
        /// Earliest start (RFC 3339).
        #[arg(long, value_name = "TIME")]
        not_before: Option<jiff::Timestamp>,
        /// Latest start (RFC 3339); after it the job expires unstarted.
        #[arg(long, value_name = "TIME")]
        latest_start: Option<jiff::Timestamp>,
    },
    /// Jobs and their states.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Approve a patch for rings (all by default); its rollout starts (audited).
    Approve(patchward::rollout::cli::ApproveArgs),
    /// Approve a critical or KEV patch with a shorter soak and the emergency window.
    Expedite(patchward::rollout::cli::ExpediteArgs),
    /// Decline a patch: it is never offered (a running rollout is aborted).
    Decline(patchward::rollout::cli::DeclineArgs),
    /// Defer a patch until a date (a running rollout is halted until then).
    Defer(patchward::rollout::cli::DeferArgs),
    /// Rollouts: progress per ring, gates, halt/resume/abort.
    #[command(subcommand)]
    Rollout(patchward::rollout::cli::RolloutCmd),
    /// Maintenance windows.
    #[command(subcommand)]
    Windows(patchward::rollout::windows_cli::WindowsCmd),
    /// Why a host has (not yet) been offered a patch.
    Explain(patchward::rollout::cli::ExplainArgs),
    /// MSP-side tools that build and publish a signed feed (never on the appliance's data).
    #[command(subcommand)]
    Feed(patchward::feed::cli::FeedCmd),
    /// The apt repositories per ring (`/apt/<ring>/`).
    #[command(subcommand)]
    Apt(AptCmd),
    /// End-of-life ("legacy") hosts: the lifecycle catalog, hosts without an agent,
    /// decisions about them.
    #[command(subcommand)]
    Legacy(patchward::legacy::cli::LegacyCmd),
}

#[derive(Subcommand)]
enum AptCmd {
    /// Print the deb822 .sources file for a ring (key embedded) with install instructions.
    ClientConfig {
        /// The ring whose repository the server should use.
        #[arg(long)]
        ring: String,
        /// The appliance's URL as servers reach it (default: from `server.listen`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Publish (re-sign) every ring's repository now.
    Publish {
        #[arg(long)]
        json: bool,
    },
    /// Each ring's repository: packages, last publish, Valid-Until, errors.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Put a patch's debs into a ring's repository (until the rollout engine does it).
    Release {
        #[arg(long)]
        ring: String,
        /// Patch id (`FEED:ID` when several feeds have it).
        #[arg(long)]
        patch: String,
    },
    /// Take a patch's debs out of a ring's repository.
    Withdraw {
        #[arg(long)]
        ring: String,
        #[arg(long)]
        patch: String,
    },
}

#[derive(Subcommand)]
enum JobsCmd {
    /// Jobs with their state and last change; `--json` adds every event.
    List {
        /// Only this host's jobs (id or hostname).
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job the host has not started installing; audited with your reason.
    Cancel {
        /// The job id (`patchward jobs list`).
        job: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum HostsCmd {
    /// Enrolled hosts: id, hostname, ring, labels, OS, last seen, stale flag.
    List {
        /// List the machines that fetched a ring's apt index instead (with or without
        /// an agent): address, ring, user agent, requests, first and last seen.
        #[arg(long)]
        apt_clients: bool,
        #[arg(long)]
        json: bool,
    },
    /// One host (by id or hostname): latest inventory and recent changes.
    Show {
        host: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a host: its next signed request is refused (403).
    Revoke {
        host: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Enrollment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print it (only its sha256 is stored).
    Create {
        /// Ring the enrolled hosts join.
        #[arg(long)]
        ring: Option<String>,
        /// Labels for the enrolled hosts: k=v,k2=v2.
        #[arg(long, default_value = "")]
        labels: String,
        /// Lifetime: 30m, 12h, 7d.
        #[arg(long, default_value = "7d")]
        expires: String,
        /// How many hosts may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long)]
        json: bool,
    },
    /// Tokens with their expiry and uses (never the secret).
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PatchesCmd {
    /// List patches with kind, severity, CVSS, CVEs, KEV flag and release date.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MirrorCmd {
    /// Per source: last success, catalog version, content age, expiry, bytes, last error.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Sync now from one source (default: all configured sources).
    Sync {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
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

#[derive(Subcommand)]
enum KevCmd {
    /// Load a KEV catalog JSON file (known_exploited_vulnerabilities.json).
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file (default: the --config file) and print what is wrong.
    Check { file: Option<PathBuf> },
    /// Print the effective configuration (defaults + file + environment + flags).
    Show,
    /// Print the embedded defaults, documented: a starting point for a config file.
    Defaults,
}

#[derive(Subcommand)]
enum AuditCmd {
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

#[derive(Subcommand)]
enum KeysCmd {
    /// Print the appliance's key ids and where the public keys are.
    Show,
}

fn overrides(cli: &Cli, listen: Option<String>) -> Overrides {
    let tls_listen = match &cli.command {
        Command::Serve { tls_listen, .. } => tls_listen.clone(),
        _ => None,
    };
    Overrides {
        data_dir: cli.data_dir.clone(),
        listen,
        tls_listen,
        log_format: cli.log_format.clone(),
        log_level: cli.log_level.clone(),
    }
}

fn load_config(cli: &Cli, listen: Option<String>) -> anyhow::Result<Config> {
    Ok(Config::load(
        cli.config.as_deref(),
        &overrides(cli, listen),
    )?)
}

/// `patchward` with the `--config` and `--data-dir` this process was given, so
/// commands printed for the operator act on the same appliance.
fn cli_command(cli: &Cli) -> String {
    let quote = |p: &std::path::Path| {
        let s = p.display().to_string();
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@".contains(&b))
        {
            s
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut c = String::from("patchward");
    if let Some(f) = &cli.config {
        c.push_str(&format!(" --config {}", quote(f)));
    }
    if let Some(d) = &cli.data_dir {
        c.push_str(&format!(" --data-dir {}", quote(d)));
    }
    c
}

/// The audit actor: the real account, from the kernel's view (see `auth::actor`).
fn invoking_user() -> String {
    patchward::auth::actor::cli_actor()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    patchward::tls::install_crypto_provider();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve { listen, .. } => {
            let config = load_config(&cli, listen.clone())?;
            patchward::telemetry::init_logging(config.log.format, &config.log.level);
            let clock: SharedClock = Arc::new(SystemClock);
            let rt = runtime()?;
            let mut out = std::io::stdout();
            let command = cli_command(&cli);
            rt.block_on(patchward::server::serve(config, clock, &mut out, &command))?;
            // In-flight work got its grace period inside serve(); don't wait on stragglers.
            rt.shutdown_timeout(Duration::from_millis(200));
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { url, timeout } => {
            let config = load_config(&cli, None)?;
            let url = url
                .clone()
                .unwrap_or_else(|| patchward::health::default_url(config.server.listen));
            let rt = runtime()?;
            match rt.block_on(patchward::health::probe(
                &url,
                Duration::from_secs(*timeout),
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
        Command::Config(ConfigCmd::Check { file }) => {
            let file = file.clone().or_else(|| cli.config.clone());
            let config = Config::load(file.as_deref(), &overrides(&cli, None))?;
            patchward::appliance::preflight_data_dir(&config.data_dir)?;
            match file {
                Some(f) => println!("{}: configuration is valid", f.display()),
                None => println!("embedded defaults are valid"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCmd::Show) => {
            print!("{}", load_config(&cli, None)?.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCmd::Defaults) => {
            print!("{}", patchward::config::DEFAULT_CONFIG);
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { banner } => {
            let config = load_config(&cli, None)?;
            let clock: SharedClock = Arc::new(SystemClock);
            let app = Appliance::init(&config, &clock)?;
            let urls = patchward::hostinfo::urls("https", config.server.tls_listen);
            if *banner {
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
        Command::Users(cmd) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut out = std::io::stdout();
            patchward::auth::cli::run(
                cmd,
                &db,
                SystemClock.now(),
                &invoking_user(),
                &mut input,
                &mut out,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(cmd) => audit_cmd(&cli, cmd),
        Command::Apt(cmd) => apt_cmd(&cli, cmd),
        Command::Hosts(cmd) => hosts_cmd(&cli, cmd),
        Command::Deploy {
            patch,
            host,
            not_before,
            latest_start,
        } => {
            use patchward::fleet::jobs;
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            let dir = patchward::appliance::DataDir::new(&config.data_dir);
            let key = patchward::trust::keys::Ed25519Key::load(&dir.ed25519_key())?;
            let (_, entry) = db.read_blocking(|c| jobs::find_patch(c, patch))?;
            let req = jobs::NewJob {
                patch: patch.clone(),
                host: host.clone(),
                not_before: *not_before,
                latest_start: *latest_start,
                health_check: config.policy.classes.get(entry.kind).health_check,
                rollback_of: None,
            };
            let actor = invoking_user();
            let now = SystemClock.now();
            let (row, _) = db.write_blocking(|tx| jobs::create(tx, now, &key, &req, &actor))?;
            println!(
                "created job {} ({} on host {}); the agent receives it at its next check-in",
                row.id, row.patch_id, row.host_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs(JobsCmd::List { host, json }) => {
            use patchward::fleet::jobs;
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            let rows = db.read_blocking(|c| jobs::list(c, host.as_deref()))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<20} {:<20} {:<32} {:<16} updated",
                    "id", "host", "patch", "state"
                );
                for j in &rows {
                    println!(
                        "{:<20} {:<20} {:<32} {:<16} {}",
                        j.id,
                        j.hostname,
                        j.patch_id,
                        j.state,
                        timefmt::display(&j.updated_at)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve(a) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            patchward::rollout::cli::approve(&db, &config, SystemClock.now(), a, &invoking_user())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Expedite(a) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            patchward::rollout::cli::expedite(
                &db,
                &config,
                SystemClock.now(),
                a,
                &invoking_user(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Decline(a) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            patchward::rollout::cli::decline(&db, &config, SystemClock.now(), a, &invoking_user())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Defer(a) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            patchward::rollout::cli::defer(&db, &config, SystemClock.now(), a, &invoking_user())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollout(cmd) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            patchward::rollout::cli::rollout(
                &db,
                &config,
                SystemClock.now(),
                cmd,
                &invoking_user(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Windows(cmd) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            patchward::rollout::windows_cli::window_entries(
                &db,
                &config,
                SystemClock.now(),
                cmd,
                &invoking_user(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain(a) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            patchward::rollout::cli::explain(&db, &config, SystemClock.now(), a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs(JobsCmd::Cancel { job, reason }) => {
            use patchward::fleet::jobs;
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            let actor = invoking_user();
            let now = SystemClock.now();
            let row = db.write_blocking(|tx| jobs::cancel(tx, now, job, &actor, reason))?;
            println!(
                "cancelled job {} ({} on host {}); the agent will not start it",
                row.id, row.patch_id, row.host_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, json } => {
            let config = load_config(&cli, None)?;
            let ctx = patchward::mirror::Context::open(&config)?;
            let bar = patchward::mirror::progress_bar();
            let summary = ctx.import_bundle(file, &invoking_user(), &bar)?;
            bar.finish_and_clear();
            if *json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", patchward::mirror::render_summary(&summary));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Patches(PatchesCmd::List { json }) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            let rows = db.read_blocking(patchward::db::feeds::list_patches)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", patchward::mirror::render_patches(&rows));
            }
            // Approved patches no enrolled host matches (on stderr: the list stays clean).
            let now = SystemClock.now();
            for w in patchward::rollout::cli::no_host_warnings(&db, &config, now, None)? {
                eprintln!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Mirror(MirrorCmd::Status { json }) => {
            let config = load_config(&cli, None)?;
            let ctx = patchward::mirror::Context::open(&config)?;
            let status = ctx.status(SystemClock.now())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", patchward::mirror::render_status(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Mirror(MirrorCmd::Sync { source, json }) => {
            let config = load_config(&cli, None)?;
            let ctx = patchward::mirror::Context::open(&config)?;
            let results = ctx.sync(source.as_deref(), &invoking_user())?;
            if results.is_empty() && !*json {
                println!(
                    "no mirror source has a url to sync; bundle-only sources get their content \
                     by `patchward import`, the web page or the drop folder"
                );
            }
            let mut failed = false;
            for (name, r) in &results {
                match r {
                    Ok(summary) if *json => println!("{}", serde_json::to_string_pretty(summary)?),
                    Ok(summary) => print!("{}", patchward::mirror::render_summary(summary)),
                    Err(e) => {
                        failed = true;
                        eprintln!("{name}: sync failed: {e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Store(StoreCmd::Verify { json }) => {
            let config = load_config(&cli, None)?;
            let ctx = patchward::mirror::Context::open(&config)?;
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
        Command::Store(StoreCmd::Gc { json }) => {
            let config = load_config(&cli, None)?;
            let ctx = patchward::mirror::Context::open(&config)?;
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
        Command::Kev(KevCmd::Import { file }) => {
            let config = load_config(&cli, None)?;
            let ctx = patchward::mirror::Context::open(&config)?;
            let n = ctx.import_kev(file, &invoking_user())?;
            println!(
                "loaded {n} known exploited vulnerabilities from {}",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Legacy(cmd) => {
            let config = load_config(&cli, None)?;
            let db = Appliance::open_existing(&config)?;
            let mut out = std::io::stdout();
            patchward::legacy::cli::run(
                &db,
                &config,
                SystemClock.now(),
                cmd,
                &invoking_user(),
                &mut out,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Feed(cmd) => {
            let mut out = std::io::stdout();
            patchward::feed::cli::run(cmd, SystemClock.now(), &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCmd::Show) => {
            let config = load_config(&cli, None)?;
            let dir = patchward::appliance::DataDir::new(&config.data_dir);
            let key = patchward::trust::keys::Ed25519Key::load(&dir.ed25519_key())?;
            println!("appliance key   ed25519 {}", key.key_id());
            println!("  public key    {}", key.public_hex());
            let secret = patchward::trust::keys::read_secret_file(&dir.apt_key())?;
            let apt = patchward::trust::openpgp::AptSigningKey::from_armored_secret(&secret)
                .with_context(|| format!("cannot load {}", dir.apt_key().display()))?;
            println!("apt signing key OpenPGP {}", apt.fingerprint());
            println!("  public key    {}", dir.apt_public_key().display());
            let cert = patchward::tls::cert::cert_path(&config);
            let fp = patchward::tls::cert::fingerprint_of_file(&cert)?;
            println!("tls certificate SHA-256 {fp}");
            println!("  certificate   {}", cert.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn apt_publisher(config: &Config) -> anyhow::Result<patchward::apt::Publisher> {
    let db = Appliance::open_existing(config)?;
    let dir = patchward::appliance::DataDir::new(&config.data_dir);
    let secret = patchward::trust::keys::read_secret_file(&dir.apt_key())?;
    let key = patchward::trust::openpgp::AptSigningKey::from_armored_secret(&secret)
        .with_context(|| format!("cannot load {}", dir.apt_key().display()))?;
    Ok(patchward::apt::Publisher {
        db,
        key,
        dir: patchward::apt::publish::AptDir::of_data_dir(&config.data_dir),
        settings: config.apt.clone(),
    })
}

/// The URL servers use when `--url` is not given: the listen address, or this
/// machine's host name when it listens on every address.
fn default_url(config: &Config) -> String {
    let addr = config.server.listen;
    if addr.ip().is_unspecified() {
        format!("http://{}:{}", patchward::hostinfo::hostname(), addr.port())
    } else {
        format!("http://{addr}")
    }
}

fn apt_cmd(cli: &Cli, cmd: &AptCmd) -> anyhow::Result<ExitCode> {
    use patchward::apt;
    let config = load_config(cli, None)?;
    match cmd {
        AptCmd::ClientConfig { ring, url } => {
            patchward::fleet::validate_ring(ring)?;
            let p = apt_publisher(&config)?;
            let url = url.clone().unwrap_or_else(|| default_url(&config));
            print!(
                "{}",
                apt::client::sources(
                    &url,
                    ring,
                    &config.apt.suite_of(ring),
                    p.key.public_key_armored(),
                    &p.key.fingerprint()
                )
            );
        }
        AptCmd::Publish { json } => {
            let p = apt_publisher(&config)?;
            let done = p.publish_due(SystemClock.now(), true)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                for d in &done {
                    println!(
                        "published ring {} (suite {}, generation {}): {} packages, valid until {}",
                        d.ring,
                        d.suite,
                        d.generation,
                        d.packages,
                        timefmt::display(&d.valid_until.to_string())
                    );
                }
            }
        }
        AptCmd::Status { json } => {
            let p = apt_publisher(&config)?;
            let rows = p.status()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16} {:>8} {:>5} {:<6} {:<22} {:<22} error",
                    "ring", "packages", "gen", "dirty", "published", "valid until"
                );
                for r in &rows {
                    println!(
                        "{:<16} {:>8} {:>5} {:<6} {:<22} {:<22} {}",
                        r.ring,
                        r.packages,
                        r.generation,
                        r.dirty,
                        timefmt::display_or(r.published_at.as_deref(), "never"),
                        timefmt::display_or(r.valid_until.as_deref(), "-"),
                        r.last_error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        AptCmd::Release { ring, patch } | AptCmd::Withdraw { ring, patch } => {
            let release = matches!(cmd, AptCmd::Release { .. });
            let db = Appliance::open_existing(&config)?;
            let actor = invoking_user();
            let now = SystemClock.now();
            let (feed, id, n) = db.write_blocking(|tx| {
                let (feed, id) = apt::db::resolve_patch(tx, patch)?;
                let n = if release {
                    apt::release_to_ring(tx, now, ring, &feed, &id, &actor)?
                } else {
                    apt::withdraw_from_ring(tx, now, ring, &feed, &id, &actor)?
                };
                Ok::<_, apt::AptError>((feed, id, n))
            })?;
            if release {
                println!(
                    "released {feed}:{id} ({n} deb file(s)) to ring {ring}; the running \
                     appliance republishes within seconds (or run `patchward apt publish`)"
                );
            } else {
                println!("withdrew {feed}:{id} from ring {ring} ({n} deb file(s))");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hosts_cmd(cli: &Cli, cmd: &HostsCmd) -> anyhow::Result<ExitCode> {
    use patchward::fleet::{hosts, tokens};
    let config = load_config(cli, None)?;
    let db = Appliance::open_existing(&config)?;
    let now = SystemClock.now();
    match cmd {
        HostsCmd::List {
            apt_clients: true,
            json,
        } => {
            let rows = db.read_blocking(patchward::apt::clients::list)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!(
                    "no machine has fetched a ring's apt index yet (apt clients are written \
                     every few seconds)"
                );
            } else {
                println!(
                    "{:<40} {:<10} {:<20} {:>8} {:<20} {:<20} user agent",
                    "address", "ring", "enrolled host", "requests", "first seen", "last seen"
                );
                for c in &rows {
                    println!(
                        "{:<40} {:<10} {:<20} {:>8} {:<20} {:<20} {}",
                        c.address,
                        c.ring,
                        c.host.as_deref().unwrap_or("(no agent)"),
                        c.requests,
                        timefmt::display(&c.first_seen),
                        timefmt::display(&c.last_seen),
                        c.user_agent
                    );
                }
            }
        }
        HostsCmd::List { json, .. } => {
            let rows = db.read_blocking(|c| hosts::list(c, now))?;
            // The ring the scheduler puts each host in, not only the one assigned at
            // enrollment (a host without one is in a labelled or the catch-all ring).
            let ring_of = |h: &hosts::HostSummary| {
                config
                    .policy
                    .ring_name_of(&h.id, h.ring.as_deref(), &h.labels)
                    .map(str::to_owned)
            };
            if *json {
                let mut out = Vec::with_capacity(rows.len());
                for h in &rows {
                    let mut v = serde_json::to_value(h)?;
                    v["effective_ring"] = ring_of(h).into();
                    out.push(v);
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<20} {:<24} {:<10} {:<16} {:<20} status",
                    "id", "hostname", "ring", "os", "last seen"
                );
                for h in &rows {
                    let status = if h.revoked_at.is_some() {
                        "revoked"
                    } else if h.stale {
                        "STALE"
                    } else {
                        "ok"
                    };
                    println!(
                        "{:<20} {:<24} {:<10} {:<16} {:<20} {status}",
                        h.id,
                        h.hostname,
                        ring_of(h).unwrap_or_else(|| "(none)".into()),
                        h.os.as_deref().unwrap_or("-"),
                        timefmt::display_or(h.last_seen.as_deref(), "never"),
                    );
                }
            }
        }
        HostsCmd::Show { host, json } => {
            let d = db.read_blocking(|c| hosts::show(c, host, now))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let s = &d.summary;
                println!("host        {} ({})", s.hostname, s.id);
                let ring = config
                    .policy
                    .ring_name_of(&s.id, s.ring.as_deref(), &s.labels)
                    .unwrap_or("(none)");
                println!("ring        {ring}");
                println!("labels      {}", serde_json::to_string(&s.labels)?);
                println!("key id      {}", d.public_key_id);
                println!("enrolled    {}", timefmt::display(&s.enrolled_at));
                println!(
                    "last seen   {}{}",
                    timefmt::display_or(s.last_seen.as_deref(), "never"),
                    if s.stale { " (STALE)" } else { "" }
                );
                if let Some(r) = &s.revoked_at {
                    println!("revoked     {}", timefmt::display(r));
                }
                if let Some(i) = &d.inventory {
                    println!("os          {} {}", i.os.id, i.os.version_id);
                    println!("kernel      {} ({})", i.kernel, i.arch);
                    println!("addresses   {}", i.addresses.join(" "));
                    println!("packages    {}", i.packages.as_ref().map_or(0, Vec::len));
                    println!("uptime      {} s", i.uptime_s);
                    println!("reboot req. {}", i.reboot_required);
                }
                println!("recent changes:");
                for c in &d.recent_changes {
                    println!("  {}  {}", timefmt::display(&c.at), c.fields.join(", "));
                }
            }
        }
        HostsCmd::Revoke { host, reason } => {
            let actor = invoking_user();
            let id = db.write_blocking(|tx| hosts::revoke(tx, host, now, &actor, reason))?;
            println!("revoked host {id}; its next request will be refused");
        }
        HostsCmd::Token(TokenCmd::Create {
            ring,
            labels,
            expires,
            uses,
            json,
        }) => {
            let new = tokens::NewToken {
                ring: ring.clone(),
                labels: patchward::fleet::parse_labels(labels)?,
                expires_in: tokens::parse_duration(expires)?,
                max_uses: *uses,
            };
            let actor = invoking_user();
            let t = db.write_blocking(|tx| tokens::create(tx, now, &actor, &new))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("{}", t.token);
                eprintln!(
                    "token {} valid until {} for {} enrollment(s); it is shown only now",
                    t.id,
                    timefmt::display(&t.expires_at.to_string()),
                    t.max_uses
                );
            }
        }
        HostsCmd::Token(TokenCmd::List { json }) => {
            let rows = db.read_blocking(tokens::list)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:>4} {:<10} {:<26} {:>9} labels",
                    "id", "ring", "expires", "uses"
                );
                for t in &rows {
                    println!(
                        "{:>4} {:<10} {:<26} {:>4}/{:<4} {}",
                        t.id,
                        t.ring.as_deref().unwrap_or("-"),
                        timefmt::display(&t.expires_at.to_string()),
                        t.uses,
                        t.max_uses,
                        t.labels
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_cmd(cli: &Cli, cmd: &AuditCmd) -> anyhow::Result<ExitCode> {
    let config = load_config(cli, None)?;
    let db = Appliance::open_existing(&config)?;
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
