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

mod banner;
mod setup;
pub use banner::{Started, admin_lines, tls_source};
pub use setup::Setup;

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
                        let (hosts, reopen) = sched.planner.warm(c, &sched.policy(), now)?;
                        return Ok((hosts, None, reopen));
                    }
                    let plan = sched.planner.refresh(c, &sched.policy(), now)?;
                    Ok::<_, crate::rollout::RolloutError>((plan.hosts(), Some(plan), vec![]))
                })
                .await;
            if let Ok((_, _, reopen)) = &built
                && !reopen.is_empty()
            {
                // Completed rollouts a host needs again (the plan of active ones
                // carries its own, acted on below).
                let reopen = reopen.clone();
                match db
                    .write(move |tx| {
                        crate::rollout::planner::complete_and_reopen(tx, &[], &reopen, now)
                    })
                    .await
                {
                    Ok(changes) => {
                        for c in changes {
                            tracing::info!(change = %c, "rollouts advanced");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot reopen rollouts"),
                }
            }
            if let Ok((hosts, plan, _)) = &built {
                metrics::gauge!("patchward_planner_hosts").set(*hosts as f64);
                metrics::gauge!("patchward_plan_rollouts")
                    .set(plan.as_ref().map_or(0, |p| p.patches.len()) as f64);
                metrics::gauge!("patchward_planner_tick_seconds")
                    .set(started.elapsed().as_secs_f64());
            }
            let plan = match built.map(|(_, plan, _)| plan) {
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
            // A brake, a finished rollout or one to reopen is acted on at once.
            let braked = plan
                .patches
                .iter()
                .any(|pp| pp.plan.halted.is_some() || pp.finished())
                || !plan.reopen.is_empty();
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

/// How often risk acceptances that have ended get their expiry audit entry.
const ACCEPTANCE_EXPIRY_EVERY: Duration = Duration::from_secs(30);

/// At start and then every [`ACCEPTANCE_EXPIRY_EVERY`]: records the expiry of each
/// legacy risk acceptance whose end passed on the server's clock
/// (`legacy::decide::expire_due`, audited once as `system`). The host reads as
/// unaccepted from that moment anyway; this puts the moment in the audit log.
fn spawn_acceptance_expiry(db: crate::db::Db, clock: SharedClock, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ACCEPTANCE_EXPIRY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = clock.now();
            match db
                .write(move |tx| crate::legacy::decide::expire_due(tx, now))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "legacy risk acceptances expired"),
                Err(e) => tracing::error!(error = %e, "cannot record expired risk acceptances"),
            }
        }
    });
}

/// The legacy segment's keeper (`legacy::keeper`), enforce mode only: at start, every
/// `legacy.dns_refresh` and when a DNS answer runs out sooner (`keeper::next_wake`), puts the applied fence back into the kernel when it is gone,
/// changed, or its DNS answers moved. A failure is logged once per streak.
fn spawn_segment_keeper(
    db: crate::db::Db,
    clock: SharedClock,
    cfg: crate::config::LegacyConfig,
    mut stop: watch::Receiver<bool>,
) {
    if cfg.segment_mode != crate::config::SegmentMode::Enforce {
        return;
    }
    tokio::spawn(async move {
        let mut wait = std::time::Duration::ZERO;
        let mut keeper = crate::legacy::keeper::Keeper::default();
        let resolver = match crate::legacy::dns::Resolver::from_config(&cfg) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "no DNS resolver: DNS-name peers keep their stored answers until they expire");
                None
            }
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            wait = cfg.dns_refresh;
            let now = clock.now();
            // The applied input's DNS names first, so the fence below renders fresh answers.
            if let Some(resolver) = &resolver {
                let names = db.read(crate::legacy::keeper::applied_dns_names).await;
                match names {
                    Ok(names) if names.is_empty() => {}
                    Ok(names) => {
                        let every = cfg.dns_refresh;
                        let r = crate::legacy::dns::refresh_due(&db, resolver, &names, now, every)
                            .await;
                        if let Err(e) = r {
                            tracing::error!(error = %e, "cannot refresh the DNS-name peers");
                        }
                        // Wake again when the first answer runs out, if before `every`.
                        let after = clock.now();
                        let expiries = db
                            .read(move |c| crate::legacy::keeper::dns_expiries(c, &names, after))
                            .await;
                        if let Ok(e) = expiries {
                            wait = crate::legacy::keeper::next_wake(e, after, every);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the segment keeper cannot read the database")
                    }
                }
            }
            let (d, c) = (db.clone(), cfg.clone());
            let done = tokio::task::spawn_blocking(move || {
                let r = keeper.tick(&d, &c, now);
                (keeper, r)
            })
            .await;
            let Ok((k, result)) = done else {
                tracing::error!("the segment keeper's task failed; it is restarted next tick");
                keeper = crate::legacy::keeper::Keeper::default();
                continue;
            };
            keeper = k;
            use crate::legacy::keeper::Tick;
            match result {
                Ok(Tick::Idle | Tick::Holding) => {}
                Ok(Tick::Restored { cause, sha256 }) => {
                    tracing::info!(cause = cause.as_str(), %sha256, "legacy segment fence re-applied")
                }
                Ok(Tick::Failed { error, first: true }) => {
                    tracing::warn!(%error, "cannot keep the legacy segment fence in place")
                }
                Ok(Tick::Failed { first: false, .. }) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the segment keeper cannot read the database")
                }
            }
        }
    });
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

/// Renews the stored replay horizon every `HORIZON_RENEW` until `stop` (see
/// `web::agent_replay`). A failed renewal only makes more requests commit a floor.
fn spawn_replay_horizon(
    db: crate::db::Db,
    clock: crate::clock::SharedClock,
    replay: Arc<crate::web::agent_auth::ReplayGuard>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::web::agent_replay::HORIZON_RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let (db, r, now) = (db.clone(), replay.clone(), clock.now());
            match tokio::task::spawn_blocking(move || r.renew(&db, now)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the replay horizon"),
                Err(e) => tracing::warn!(error = %e, "replay horizon renewal interrupted"),
            }
        }
    });
}

/// Writes the noted apt index fetches every `apt::clients::FLUSH_EVERY` until `stop`
/// (the final flush, after in-flight requests finished, is `run`'s).
fn spawn_apt_clients_flusher(
    db: crate::db::Db,
    clients: Arc<crate::apt::clients::AptClients>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::apt::clients::FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if clients.pending() == 0 {
                continue;
            }
            let (db, c) = (db.clone(), clients.clone());
            match tokio::task::spawn_blocking(move || crate::apt::clients::flush(&db, &c)).await {
                Ok(Ok(n)) => tracing::debug!(clients = n, "apt clients written"),
                Ok(Err(e)) => tracing::warn!(error = %e, "could not write apt clients; retrying"),
                Err(e) => tracing::warn!(error = %e, "apt clients flush interrupted"),
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
/// `announce` receives the start-up block; `command` is how the operator runs the CLI
/// on this appliance (`patchward --data-dir ...`), for the block's next steps.
pub async fn serve(
    config: Config,
    clock: SharedClock,
    announce: &mut (dyn Write + Send),
    command: &str,
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
    run(
        listener,
        tls_listener,
        config,
        clock,
        signals,
        announce,
        command,
    )
    .await
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
    command: &str,
) -> Result<(), ServeError> {
    let cfg = config.clone();
    let ck = clock.clone();
    let app = tokio::task::spawn_blocking(move || Appliance::init(&cfg, &ck))
        .await
        .map_err(|e| ServeError::Join(e.to_string()))??;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    let tls_addr = tls_listener.local_addr().map_err(ServeError::Server)?;
    let tls_config = app.tls.server_config()?;
    let setup = {
        let (db, cfg, command) = (app.db.clone(), config.clone(), command.to_owned());
        tokio::task::spawn_blocking(move || {
            db.read_blocking(|c| Ok::<_, crate::error::DbError>(Setup::read(c, &cfg, command)?))
        })
        .await
        .map_err(|e| ServeError::Join(e.to_string()))?
        .map_err(|e| ServeError::Appliance(ApplianceError::from(e)))?
    };

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
        setup,
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
    let replay = {
        // Room for every signature a host within its rate can have live at once (its
        // burst, and its rate over the date window both ways), so only a host beyond
        // its rate ever fills its own memory.
        let a = &config.agent_api;
        let window_s = 2 * crate::fleet::signing::MAX_SKEW.as_secs().unsigned_abs();
        let per_host = usize::try_from(
            u64::from(a.burst) + u64::from(a.requests_per_minute) * window_s / 60 + 16,
        )
        .unwrap_or(usize::MAX);
        let (db, now) = (app.db.clone(), clock.now());
        tokio::task::spawn_blocking(move || {
            crate::web::agent_auth::ReplayGuard::open(&db, per_host, now)
        })
        .await
        .map_err(|e| ServeError::Join(e.to_string()))?
        .map(Arc::new)
        .map_err(|e| ServeError::Appliance(ApplianceError::from(e)))?
    };
    // After a crash: serve once the previous run's replay horizon has passed, so that
    // honest requests are not refused as possibly replayed (at most a few seconds).
    tokio::time::sleep(replay.settle(clock.now())).await;
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
            replay: replay.clone(),
            rate: Arc::new(crate::web::agent_auth::RateLimiter::from_config(
                &config.agent_api,
            )),
            limits: config.agent_api.clone(),
            scheduler: scheduler.clone(),
            presence: presence.clone(),
            http_port: addr.port(),
            legacy: config.legacy.clone(),
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
    let apt_clients = Arc::new(crate::apt::clients::AptClients::new());
    let state = state.with_apt(crate::web::apt::AptServe {
        dir: publisher.dir.clone(),
        store: store.clone(),
        settings: config.apt.clone(),
        public_key: app.keys.apt.public_key_armored().to_owned(),
        fingerprint: app.keys.apt.fingerprint(),
        clients: apt_clients.clone(),
        clock: clock.clone(),
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
        crate::mirror_schedule::spawn(
            &config,
            app.db.clone(),
            store.clone(),
            clock.clone(),
            stop_rx.clone(),
        );
    }
    let expiry = spawn_job_expiry(
        app.db.clone(),
        clock.clone(),
        scheduler.clone(),
        stop_rx.clone(),
    );
    spawn_seen_flusher(app.db.clone(), presence.clone(), stop_rx.clone());
    spawn_acceptance_expiry(app.db.clone(), clock.clone(), stop_rx.clone());
    spawn_segment_keeper(
        app.db.clone(),
        clock.clone(),
        config.legacy.clone(),
        stop_rx.clone(),
    );
    spawn_replay_horizon(
        app.db.clone(),
        clock.clone(),
        replay.clone(),
        stop_rx.clone(),
    );
    spawn_apt_clients_flusher(app.db.clone(), apt_clients.clone(), stop_rx.clone());
    // The legacy host monitor (issue [10]): probes, state, events, blocked flows.
    let legacy_monitor = crate::legacy::watch_task::spawn(
        app.db.clone(),
        config.legacy.clone(),
        clock.clone(),
        stop_rx.clone(),
    );
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

    // One write of the whole block (stdout; logs go to stderr), so no log line lands
    // inside it.
    let _ = announce.write_all(started.block().as_bytes());
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
    let _ = legacy_monitor.await;
    let _ = apt_publisher.await;
    let _ = clock_monitor.await;
    if let Some(d) = drop_folder {
        d.stop(config.server.shutdown_grace).await;
    }
    // The requests have finished: lower the replay horizon to the newest date
    // accepted, so that after a restart honest requests pass at once.
    let (db, r) = (app.db.clone(), replay.clone());
    match tokio::task::spawn_blocking(move || r.close(&db)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not store the replay horizon"),
        Err(e) => tracing::error!(error = %e, "could not store the replay horizon"),
    }
    // The requests have finished: write the last apt client notes and the last_seen of
    // the last quiet check-ins.
    let (db, c) = (app.db.clone(), apt_clients.clone());
    match tokio::task::spawn_blocking(move || crate::apt::clients::flush(&db, &c)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not write apt clients at shutdown"),
        Err(e) => tracing::error!(error = %e, "could not write apt clients at shutdown"),
    }
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
