//! The HTTP server: router, middleware, and [`run`].
//!
//! Handlers are thin: they parse, call a domain function, render. The stack around every
//! route: panic catching (500, the process survives), request tracing, per-route metrics
//! (labelled by the matched route template, never the raw path, so cardinality stays
//! bounded), a request timeout (408) and a body-size limit (413) on every route (the
//! admin page's streamed upload has its own, larger one; see `limits`).
//!
//! Both listeners set `TCP_NODELAY` on every accepted socket: a keep-alive answer
//! written in two segments (headers, then body) otherwise waits for the client's
//! delayed ACK, about 40 ms on Linux, per request.

pub mod admin;
mod agent;
pub mod agent_auth;
pub mod agent_rate;
pub mod agent_replay;
pub mod apt;
pub mod artifacts;
mod health;
mod limits;
mod metrics_layer;
mod mirror;
pub mod redirect;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::db::Db;

/// Everything handlers need; cloned per request (cheap: handles only).
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub inner: Arc<StateInner>,
}

/// Immutable facts fixed at start.
pub struct StateInner {
    pub prometheus: metrics_exporter_prometheus::PrometheusHandle,
    pub version: &'static str,
    /// The content store and the configured mirror sources, for `/api/v1/mirror`.
    pub mirror: Option<MirrorState>,
    /// The agent API's keys, clock and replay memory.
    pub fleet: Option<FleetState>,
    /// Download slots for the artifact endpoint, in all and per host (see `artifacts`).
    pub downloads: Arc<artifacts::DownloadSlots>,
    /// The per-ring apt repositories (`/apt/...`), when serving them.
    pub apt: Option<apt::AptServe>,
    /// The admin page (HTTPS), when serving it.
    pub admin: Option<AdminState>,
}

/// What the admin page needs.
pub struct AdminState {
    /// Session expiry and throttling read the time here.
    pub clock: crate::clock::SharedClock,
    pub settings: crate::auth::WebSettings,
    /// The HTTPS listener's port, for the HTTP listener's redirects.
    pub tls_port: u16,
}

/// What the agent API needs.
pub struct FleetState {
    /// The appliance's ed25519 public key (hex) and its key id, sent at enrollment.
    pub appliance_key: String,
    pub appliance_key_id: String,
    /// The check-in interval sent to agents.
    pub poll_seconds: u64,
    pub clock: crate::clock::SharedClock,
    /// Signatures accepted within the skew window, per host, and the floors of
    /// earlier runs (replay protection, `agent_replay`).
    pub replay: Arc<agent_auth::ReplayGuard>,
    /// Per-host request rates (`agent_rate`).
    pub rate: Arc<agent_auth::RateLimiter>,
    /// The `[agent_api]` shares (rates, download slots per host, stall timeout).
    pub limits: crate::config::AgentApiConfig,
    /// Quiet check-ins: stored inventories as last written, and `last_seen` times not
    /// yet flushed (see `fleet::hosts`).
    pub presence: Arc<crate::fleet::hosts::Presence>,
    /// Turns approved rollouts into jobs at check-ins.
    pub scheduler: Arc<Scheduler>,
    /// The plain HTTP listener's port, where agents enroll and check in (the admin
    /// page's enroll command names it).
    pub http_port: u16,
    /// `[legacy]`: how the Legacy pages judge end-of-life hosts and the longest risk
    /// acceptance they may record.
    pub legacy: crate::config::LegacyConfig,
}

/// What the scheduler needs at a check-in: the policy and the key that signs tickets.
pub struct Scheduler {
    /// The configured `[policy]`: the base that window entries added on the web page
    /// are laid over (`rollout::windows`).
    pub base: crate::policy::Policy,
    /// The effective policy and the window entries' revision it was built from;
    /// replaced whole when they change. A std lock: held only to clone or swap the
    /// `Arc`, never across an await.
    effective: std::sync::RwLock<(WindowsRevision, Arc<crate::policy::Policy>)>,
    pub key: crate::trust::keys::Ed25519Key,
    /// The fleet-wide plan, rebuilt about every second by the server's planning task.
    pub planner: Arc<crate::rollout::planner::Planner>,
}

type WindowsRevision = Option<(i64, i64, String)>;

impl Scheduler {
    /// A scheduler on the configured policy alone; call [`Scheduler::refresh`] to lay
    /// the stored window entries over it.
    pub fn new(base: crate::policy::Policy, key: crate::trust::keys::Ed25519Key) -> Self {
        let effective = std::sync::RwLock::new((None, Arc::new(base.clone())));
        Self {
            base,
            effective,
            key,
            planner: Arc::new(crate::rollout::planner::Planner::new()),
        }
    }

    /// The effective policy: the configuration with the web page's window entries.
    pub fn policy(&self) -> Arc<crate::policy::Policy> {
        self.effective
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Rebuilds the effective policy if the window entries changed since the last
    /// build (one small query otherwise). Called at start, after every change made on
    /// the web page, and by the server's minute tick (changes by another process).
    pub fn refresh(&self, conn: &rusqlite::Connection) -> Result<(), crate::error::DbError> {
        let rev = Some(crate::db::windows::revision(conn)?);
        if self.effective.read().unwrap_or_else(|p| p.into_inner()).0 == rev {
            return Ok(());
        }
        let policy = crate::rollout::windows::effective(conn, &self.base)?.policy;
        *self.effective.write().unwrap_or_else(|p| p.into_inner()) = (rev, Arc::new(policy));
        Ok(())
    }
}

/// What the mirror status endpoint reads.
pub struct MirrorState {
    pub store: Arc<crate::store::Store>,
    pub sources: Vec<crate::config::MirrorSource>,
    pub clock: crate::clock::SharedClock,
    /// The admin page's bundle uploads: the size cap (`import.max_upload_mb`).
    pub max_upload_bytes: u64,
    /// The watched drop folder (`import.drop_dir`), shown on the mirror page.
    pub drop_dir: Option<std::path::PathBuf>,
}

/// Server limits from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// The bundle upload's own bound (`import.max_upload_mb`), see `limits`.
    pub max_upload_bytes: u64,
}

impl AppState {
    pub fn new(db: Db, mirror: Option<MirrorState>, fleet: Option<FleetState>) -> Self {
        let agent_api = fleet.as_ref().map(|f| f.limits.clone()).unwrap_or_default();
        Self {
            db,
            inner: Arc::new(StateInner {
                prometheus: crate::telemetry::prometheus(),
                version: env!("CARGO_PKG_VERSION"),
                mirror,
                fleet,
                downloads: Arc::new(artifacts::DownloadSlots::new(
                    artifacts::MAX_CONCURRENT_DOWNLOADS,
                    &agent_api,
                )),
                apt: None,
                admin: None,
            }),
        }
    }

    /// Serves the apt repositories too. Call right after [`AppState::new`], before the
    /// state is cloned (it is a no-op on a shared state, which never happens then).
    pub fn with_apt(mut self, serve: apt::AptServe) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.apt = Some(serve);
        }
        self
    }

    /// Serves the admin page too (see [`AppState::with_apt`] for when to call it).
    pub fn with_admin(mut self, admin: AdminState) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.admin = Some(admin);
        }
        self
    }
}

/// The routes both listeners serve: health, metrics, the agent API (its requests and
/// answers are signed) and the apt repositories (signed indexes).
fn common_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/agent/v1/appliance-key", get(agent::appliance_key))
        .route("/api/agent/v1/enroll", post(agent::enroll))
        .route("/api/agent/v1/checkin", post(agent::checkin))
        .route(
            "/api/agent/v1/artifacts/sha256/{hex}",
            get(artifacts::get_artifact),
        )
        .route("/apt/key.asc", get(apt::key))
        .route("/apt/{ring}/{*rest}", get(apt::ring_file))
}

/// The HTTP listener: the common routes; every other path is redirected to the HTTPS
/// listener (GET, HEAD) or refused.
pub fn router(state: AppState, limits: &Limits) -> Router {
    let routes = common_routes()
        .fallback(redirect::to_https)
        .with_state(state);
    with_middleware(routes, limits)
}

/// The HTTPS listener: the common routes and the admin page.
pub fn tls_router(state: AppState, limits: &Limits) -> Router {
    let routes = common_routes()
        .merge(admin::router(state.clone()))
        .with_state(state);
    with_middleware(routes, limits)
}

/// Wraps routes in the standard middleware stack (outermost last).
fn with_middleware(routes: Router, limits: &Limits) -> Router {
    routes
        .layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            limits::enforce,
        ))
        .layer(axum::middleware::from_fn(metrics_layer::record))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::new())
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish. The caller bounds how long that may take.
pub async fn run(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    // The client's address reaches handlers (apt clients are recorded by address).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves `router` over TLS on `listener` (with the client's address available to
/// handlers) until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish. The caller bounds how long that may take.
pub async fn run_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(None);
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_lets_in_flight_requests_finish() {
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, router, async {
            let _ = rx.await;
        }));
        crate::tls::install_crypto_provider();
        let req = tokio::spawn(async move {
            reqwest::get(format!("http://{addr}/slow"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        // Shut down while the request is being handled.
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(()).unwrap();
        assert_eq!(req.await.unwrap(), "done");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops after the in-flight request")
            .unwrap()
            .unwrap();
        // And it no longer accepts connections.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_is_a_500_not_a_dead_server() {
        let limits = Limits {
            max_body_bytes: 1024,
            request_timeout: Duration::from_secs(5),
            max_upload_bytes: 1 << 20,
        };
        let routes = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    ""
                }),
            )
            .route("/ok", get(|| async { "fine" }));
        let app = with_middleware(routes, &limits);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, app, async {
            let _ = rx.await;
        }));
        crate::tls::install_crypto_provider();
        let r = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
        assert_eq!(r.status(), 500);
        let r = reqwest::get(format!("http://{addr}/ok")).await.unwrap();
        assert_eq!(r.status(), 200);
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
