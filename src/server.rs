//! The appliance server: open the data directory, bind, announce, serve, stop cleanly.
//!
//! [`serve`] is `patchward serve` (binds the configured addresses, stops on SIGTERM or
//! SIGINT); [`run`] is the same on listeners the caller bound, stopping when the
//! caller's future resolves, which is how tests run it on `127.0.0.1:0`.
//!
//! Two listeners: HTTP (`server.listen`) for `/apt/...`, `/healthz`, `/metrics` and the
//! agent API, redirecting everything else to HTTPS; HTTPS (`server.tls_listen`) for the
//! admin page and everything the HTTP one serves.
//!
//! Order matters for systemd: READY=1 is sent only after migrations ran and the socket
//! is bound, so "active" means "answering". The watchdog is pinged only while the
//! database answers, so a wedged database gets the service restarted. On SIGTERM or
//! SIGINT the listener stops accepting, in-flight requests get `shutdown_grace` to
//! finish, and the process exits 0.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::appliance::Appliance;
use crate::audit::{self, NewEntry};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::{ApplianceError, AuditError};
use crate::web::{self, AppState, Limits};

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Appliance(#[from] ApplianceError),
    #[error(
        "cannot listen on {addr}: {cause}; is another patchward already running there? \
         choose another address with --listen or PATCHWARD_LISTEN"
    )]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("HTTPS certificate: {0}")]
    Tls(crate::tls::TlsError),
    #[error("HTTP server failed: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("start-up work was interrupted: {0}")]
    Join(String),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<crate::tls::TlsError> for ServeError {
    fn from(e: crate::tls::TlsError) -> Self {
        ServeError::Tls(e)
    }
}

/// What was started; printed as the start-up block.
#[derive(Debug, Clone)]
pub struct Started {
    pub url: String,
    pub data_dir: PathBuf,
    pub ed25519_key_id: String,
    pub apt_fingerprint: String,
    pub first_start: bool,
    /// The watched drop folder, if configured.
    pub drop_dir: Option<PathBuf>,
    /// Where to open the admin page (the first is printed on the `admin page` line).
    pub admin_urls: Vec<String>,
    /// SHA-256 fingerprint of the HTTPS certificate, as browsers show it.
    pub tls_fingerprint: String,
    /// Where the certificate came from (generated, or the operator's file).
    pub tls_source: String,
    /// The `admin` account's one-time password, when this start created the account.
    pub admin_password: Option<String>,
}

/// The lines about the admin page shared by the start-up block and `patchward init`.
pub fn admin_lines(
    urls: &[String],
    fingerprint: &str,
    source: &str,
    admin_password: Option<&str>,
) -> String {
    let mut s = String::new();
    let mut urls = urls.iter();
    if let Some(first) = urls.next() {
        s.push_str(&format!("  admin page      {first}\n"));
    }
    for u in urls {
        s.push_str(&format!("                  {u}\n"));
    }
    s.push_str(&format!(
        "  tls certificate SHA-256 {fingerprint}\n                  ({source}; compare it with \
         what the browser shows before you sign in)\n"
    ));
    if let Some(pw) = admin_password {
        s.push_str(&format!(
            "  admin password  {pw}\n                  (user \"admin\"; shown only now: sign in \
             and choose a new one)\n"
        ));
    }
    s
}

/// A description of the certificate's origin for the operator.
pub fn tls_source(id: &crate::tls::TlsIdentity) -> String {
    match &id.source {
        crate::tls::cert::CertSource::Generated { dir, .. } => {
            format!("self-signed, generated in {}", dir.display())
        }
        crate::tls::cert::CertSource::Operator { cert, .. } => {
            format!("configured: {}", cert.display())
        }
    }
}

impl Started {
    /// The start-up block an operator reads (also parsed by tests for the bound port).
    pub fn block(&self) -> String {
        let mut s = format!(
            "Patchward {} is running\n  \
             listening on    {}  (health {}/healthz, metrics {}/metrics)\n  \
             data directory  {}\n  \
             appliance key   ed25519 {}\n  \
             apt signing key OpenPGP {}\n",
            env!("CARGO_PKG_VERSION"),
            self.url,
            self.url,
            self.url,
            self.data_dir.display(),
            self.ed25519_key_id,
            self.apt_fingerprint,
        );
        s.push_str(&admin_lines(
            &self.admin_urls,
            &self.tls_fingerprint,
            &self.tls_source,
            self.admin_password.as_deref(),
        ));
        if let Some(d) = &self.drop_dir {
            s.push_str(&format!("  drop folder     {}\n", d.display()));
        }
        if self.first_start {
            s.push_str("  first start: new keys were generated (mode 0600 under keys/)\n");
        }
        s.push_str("  stop with Ctrl-C or SIGTERM\n");
        s
    }
}

/// Installs the SIGTERM/SIGINT handlers now (so a signal that arrives while starting is
/// not lost to the default action) and returns a future that resolves on the first.
fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Pings the systemd watchdog at half its interval while the database answers.
fn spawn_watchdog(db: crate::db::Db) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match db.check().await {
                Ok(()) => {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
                Err(e) => {
                    tracing::error!(error = %e, "database check failed; not pinging the watchdog")
                }
            }
        }
    });
}

/// How often jobs whose window passed unstarted are expired.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// At start and then every [`EXPIRE_EVERY`]: expires `offered` jobs whose
/// `latest_start` passed (with a grace of two poll intervals for reports in flight),
/// applies the auto-approval rules to new patches, and halts rollouts whose error brake
/// fired (check-ins do that too; this covers a fleet that has gone quiet).
fn spawn_job_expiry(
    db: crate::db::Db,
    clock: SharedClock,
    scheduler: Arc<crate::web::Scheduler>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let grace = jiff::SignedDuration::from_secs(2 * crate::fleet::POLL_SECONDS as i64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = clock.now();
            match db
                .write(move |tx| crate::fleet::jobs::expire_overdue(tx, now, grace))
                .await
            {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(count = ids.len(), jobs = ?ids, "expired jobs whose window passed unstarted")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot expire overdue jobs"),
            }
            let sched = scheduler.clone();
            let advanced = db
                .write(move |tx| {
                    // Window entries changed by another process since the last tick.
                    sched.refresh(tx)?;
                    let policy = sched.policy();
                    let approved = crate::rollout::approvals::auto_approve_all(tx, now, &policy)?;
                    // Inventory changes the planner has read are no longer needed.
                    crate::db::rollout::prune_inventory_changes(
                        tx,
                        sched.planner.applied_change(),
                    )?;
                    // Withdrawals of aborted or declined apt patches (the planner
                    // handles active rollouts every second).
                    if !crate::db::rollout::needs_attention(tx)? {
                        return Ok((approved, vec![]));
                    }
                    let plan = sched.planner.current();
                    let changes =
                        crate::rollout::planner::advance(tx, &policy, plan.as_deref(), now)?;
                    Ok::<_, crate::rollout::RolloutError>((approved, changes))
                })
                .await;
            match advanced {
                Ok((approved, halted)) => {
                    for d in approved {
                        tracing::info!(patch = %d.patch, "auto-approved");
                    }
                    for h in halted {
                        tracing::info!(change = %h, "rollouts advanced");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot advance rollouts"),
            }
        }
    })
}

/// How often the fleet plan is rebuilt while a rollout needs attention.
const PLAN_EVERY: Duration = Duration::from_secs(1);

/// Every [`PLAN_EVERY`] while a rollout is active (or has packages in an apt ring):
/// rebuilds the fleet plan that check-ins read, and acts on it when it changed what
/// should happen (a fired error brake, apt rings to release or withdraw).
fn spawn_planner(
    db: crate::db::Db,
    clock: SharedClock,
    scheduler: Arc<crate::web::Scheduler>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PLAN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // What the last `advance` acted on: halts and apt rings per rollout.
        let mut acted: Option<String> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = clock.now();
            let sched = scheduler.clone();
            let started = std::time::Instant::now();
            let built = db
                .read(move |c| {
                    if !crate::db::rollout::needs_attention(c)? {
                        sched.planner.clear();
                        let hosts = sched.planner.warm(c, &sched.policy())?;
                        return Ok((hosts, None));
                    }
                    let plan = sched.planner.refresh(c, &sched.policy(), now)?;
                    Ok::<_, crate::rollout::RolloutError>((plan.hosts(), Some(plan)))
                })
                .await;
            if let Ok((hosts, plan)) = &built {
                metrics::gauge!("patchward_planner_hosts").set(*hosts as f64);
                metrics::gauge!("patchward_plan_rollouts")
                    .set(plan.as_ref().map_or(0, |p| p.patches.len()) as f64);
                metrics::gauge!("patchward_planner_tick_seconds")
                    .set(started.elapsed().as_secs_f64());
            }
            let plan = match built.map(|(_, plan)| plan) {
                Ok(Some(plan)) => plan,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot plan rollouts; offers wait for the next plan");
                    continue;
                }
            };
            let fingerprint = format!(
                "{:?}",
                plan.patches
                    .iter()
                    .map(|pp| (pp.patch.key(), plan.apt_rings(&pp.patch)))
                    .collect::<Vec<_>>()
            );
            let braked = plan.patches.iter().any(|pp| pp.plan.halted.is_some());
            if !braked && acted.as_deref() == Some(fingerprint.as_str()) {
                continue;
            }
            let sched = scheduler.clone();
            let p = plan.clone();
            match db
                .write(move |tx| {
                    crate::rollout::planner::advance(tx, &sched.policy(), Some(&p), now)
                })
                .await
            {
                Ok(changes) => {
                    for c in changes {
                        tracing::info!(change = %c, "rollouts advanced");
                    }
                    acted = Some(fingerprint);
                }
                Err(e) => tracing::error!(error = %e, "cannot advance rollouts"),
            }
        }
    })
}

/// Writes the `last_seen` of quiet check-ins every `SEEN_FLUSH_EVERY` until `stop`
/// (the final flush, after in-flight requests finished, is `run`'s).
fn spawn_seen_flusher(
    db: crate::db::Db,
    presence: Arc<crate::fleet::hosts::Presence>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::fleet::hosts::SEEN_FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if presence.pending() == 0 {
                continue;
            }
            let (db, p) = (db.clone(), presence.clone());
            match tokio::task::spawn_blocking(move || crate::fleet::hosts::flush_seen(&db, &p))
                .await
            {
                Ok(Ok(n)) => tracing::debug!(hosts = n, "last_seen written"),
                Ok(Err(e)) => tracing::warn!(error = %e, "could not write last_seen; retrying"),
                Err(e) => tracing::warn!(error = %e, "last_seen flush interrupted"),
            }
        }
    });
}

fn audit_blocking(
    db: &crate::db::Db,
    clock: &SharedClock,
    action: &str,
    details: serde_json::Value,
) -> Result<(), AuditError> {
    let now = clock.now();
    db.write_blocking(|tx| {
        audit::append(
            tx,
            now,
            &NewEntry {
                actor: "system",
                action,
                subject: "appliance",
                details,
            },
        )
    })?;
    Ok(())
}

/// Runs the appliance on the configured addresses until SIGTERM/SIGINT.
/// `announce` receives the start-up block.
pub async fn serve(
    config: Config,
    clock: SharedClock,
    announce: &mut (dyn Write + Send),
) -> Result<(), ServeError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr,
                cause: source,
            })
    };
    let listener = bind(config.server.listen).await?;
    let tls_listener = bind(config.server.tls_listen).await?;
    let signals = shutdown_signal().map_err(ServeError::Server)?;
    run(listener, tls_listener, config, clock, signals, announce).await
}

/// Runs the appliance on `listener` (HTTP) and `tls_listener` (HTTPS) until `shutdown`
/// resolves (yielding a name for the log and the audit entry), then lets in-flight
/// requests finish within the configured grace period.
pub async fn run(
    listener: TcpListener,
    tls_listener: TcpListener,
    config: Config,
    clock: SharedClock,
    shutdown: impl Future<Output = &'static str>,
    announce: &mut (dyn Write + Send),
) -> Result<(), ServeError> {
    let cfg = config.clone();
    let ck = clock.clone();
    let app = tokio::task::spawn_blocking(move || Appliance::init(&cfg, &ck))
        .await
        .map_err(|e| ServeError::Join(e.to_string()))??;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    let tls_addr = tls_listener.local_addr().map_err(ServeError::Server)?;
    let tls_config = app.tls.server_config()?;

    let started = Started {
        url: format!("http://{addr}"),
        data_dir: std::fs::canonicalize(&app.dir.root).unwrap_or(app.dir.root.clone()),
        ed25519_key_id: app.keys.ed25519.key_id(),
        apt_fingerprint: app.keys.apt.fingerprint(),
        first_start: app.first_start,
        drop_dir: config.import.drop_dir.clone(),
        admin_urls: crate::hostinfo::urls("https", tls_addr),
        tls_fingerprint: app.tls.fingerprint.clone(),
        tls_source: tls_source(&app.tls),
        admin_password: app.admin_password.clone(),
    };
    {
        let db = app.db.clone();
        let ck = clock.clone();
        let details = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "listen": addr.to_string(),
            "tls_listen": tls_addr.to_string(),
            "tls_fingerprint": app.tls.fingerprint,
        });
        tokio::task::spawn_blocking(move || audit_blocking(&db, &ck, "appliance.started", details))
            .await
            .map_err(|e| ServeError::Join(e.to_string()))??;
    }

    let cfg = config.clone();
    let store = tokio::task::spawn_blocking(move || crate::mirror::open_store(&cfg))
        .await
        .map_err(|e| ServeError::Join(e.to_string()))?
        .map(Arc::new)?;
    let dir = crate::appliance::DataDir::new(&config.data_dir);
    let scheduler = Arc::new(crate::web::Scheduler::new(
        config.policy.clone(),
        crate::trust::keys::Ed25519Key::load(&dir.ed25519_key()).map_err(ApplianceError::from)?,
    ));
    {
        // The window entries added on the web page, laid over the configuration.
        let (db, s) = (app.db.clone(), scheduler.clone());
        tokio::task::spawn_blocking(move || db.read_blocking(|c| s.refresh(c)))
            .await
            .map_err(|e| ServeError::Join(e.to_string()))?
            .map_err(|e| ServeError::Appliance(ApplianceError::from(e)))?;
    }
    let presence = Arc::new(crate::fleet::hosts::Presence::new());
    let state = AppState::new(
        app.db.clone(),
        Some(crate::web::MirrorState {
            store: store.clone(),
            sources: config.mirror.sources.clone(),
            clock: clock.clone(),
            max_upload_bytes: config.import.max_upload_bytes,
            drop_dir: config.import.drop_dir.clone(),
        }),
        Some(crate::web::FleetState {
            appliance_key: app.keys.ed25519.public_hex(),
            appliance_key_id: app.keys.ed25519.key_id(),
            poll_seconds: crate::fleet::POLL_SECONDS,
            clock: clock.clone(),
            replay: Arc::new(crate::web::agent_auth::ReplayGuard::new(100_000)),
            scheduler: scheduler.clone(),
            presence: presence.clone(),
            http_port: addr.port(),
        }),
    );
    // The apt repositories: publish what is due before serving, so every configured
    // ring has a signed repository from the first request on.
    let publisher = crate::apt::Publisher {
        db: app.db.clone(),
        key: app.keys.apt.clone(),
        dir: crate::apt::publish::AptDir::of_data_dir(&app.dir.root),
        settings: config.apt.clone(),
    };
    {
        let p = publisher.clone();
        let now = clock.now();
        if let Err(e) = tokio::task::spawn_blocking(move || p.publish_due(now, false))
            .await
            .map_err(|e| ServeError::Join(e.to_string()))?
        {
            tracing::error!(error = %e, "initial apt publish failed; retrying in the background");
        }
    }
    let state = state.with_apt(crate::web::apt::AptServe {
        dir: publisher.dir.clone(),
        store: store.clone(),
        settings: config.apt.clone(),
        public_key: app.keys.apt.public_key_armored().to_owned(),
        fingerprint: app.keys.apt.fingerprint(),
    });
    let limits = Limits {
        max_body_bytes: config.server.max_body_bytes,
        request_timeout: config.server.request_timeout,
        max_upload_bytes: config.import.max_upload_bytes,
    };
    let state = state.with_admin(crate::web::AdminState {
        clock: clock.clone(),
        settings: config.web,
        tls_port: tls_addr.port(),
    });
    let router = web::router(state.clone(), &limits);
    let tls_router = web::tls_router(state, &limits);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    if !config.mirror.sources.is_empty() {
        crate::mirror_schedule::spawn(&config, app.db.clone(), store.clone(), stop_rx.clone());
    }
    let expiry = spawn_job_expiry(
        app.db.clone(),
        clock.clone(),
        scheduler.clone(),
        stop_rx.clone(),
    );
    spawn_seen_flusher(app.db.clone(), presence.clone(), stop_rx.clone());
    spawn_planner(
        app.db.clone(),
        clock.clone(),
        scheduler.clone(),
        stop_rx.clone(),
    );
    // Clock synchronisation: a warning at start and hourly while unsynchronised.
    let clock_monitor = crate::timesync::spawn_monitor(stop_rx.clone());
    let apt_publisher = crate::apt::publish::spawn(publisher, clock.clone(), stop_rx.clone());
    let mut stop_tls = stop_rx.clone();
    let graceful = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let graceful_tls = async move {
        let _ = stop_tls.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(async move {
        tokio::try_join!(
            web::run(listener, router, graceful),
            web::run_tls(tls_listener, tls_config, tls_router, graceful_tls),
        )
        .map(|_| ())
    });

    let _ = write!(announce, "{}", started.block());
    let _ = announce.flush();
    tracing::info!(url = %started.url, tls = %tls_addr, data_dir = %started.data_dir.display(), "ready");
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("serving on {addr} and {tls_addr} (https)")),
        ],
    );
    spawn_watchdog(app.db.clone());
    let drop_folder = crate::feed::dropfolder::spawn(&config, app.db.clone(), clock.clone());

    let mut server = server;
    let signal = tokio::select! {
        s = shutdown => s,
        r = &mut server => {
            // The server ended on its own: that is a failure.
            return match r {
                Ok(Ok(())) => Err(ServeError::Server(std::io::Error::other("server stopped unexpectedly"))),
                Ok(Err(e)) => Err(ServeError::Server(e)),
                Err(e) => Err(ServeError::Join(e.to_string())),
            };
        }
    };
    tracing::info!(signal, "shutting down; finishing in-flight requests");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    match tokio::time::timeout(config.server.shutdown_grace, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(ServeError::Server(e)),
        Ok(Err(e)) => return Err(ServeError::Join(e.to_string())),
        Err(_) => {
            tracing::warn!(
                grace_secs = config.server.shutdown_grace.as_secs(),
                "requests still running after the grace period; closing them"
            );
            server.abort();
        }
    }
    let _ = expiry.await;
    let _ = apt_publisher.await;
    let _ = clock_monitor.await;
    if let Some(d) = drop_folder {
        d.stop(config.server.shutdown_grace).await;
    }
    // The requests have finished: write the last_seen of the last quiet check-ins.
    let (db, p) = (app.db.clone(), presence.clone());
    match tokio::task::spawn_blocking(move || crate::fleet::hosts::flush_seen(&db, &p)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not write last_seen at shutdown"),
        Err(e) => tracing::error!(error = %e, "could not write last_seen at shutdown"),
    }
    let db = app.db.clone();
    let ck = clock.clone();
    let details = serde_json::json!({ "signal": signal });
    tokio::task::spawn_blocking(move || audit_blocking(&db, &ck, "appliance.stopped", details))
        .await
        .map_err(|e| ServeError::Join(e.to_string()))??;
    tracing::info!("stopped");
    Ok(())
}
