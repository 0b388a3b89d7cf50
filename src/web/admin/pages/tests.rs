//! The pages in-process: `routes()` behind a stand-in for the guard that puts a
//! `Viewer` into the request, on a seeded database. Every page renders for both
//! roles; hostile names render escaped; auditors are refused every change and nothing
//! changes; bad input is refused with a clear message and nothing changes.
//! (The real binary, with sign-in, CSRF and TLS, is covered by `tests/it/web_pages.rs`.)

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jiff::Timestamp;
use tower::ServiceExt;

use crate::auth::Role;
use crate::clock::{ManualClock, SharedClock};
use crate::db::Db;
use crate::trust::keys::Ed25519Key;
use crate::web::admin::Viewer;
use crate::web::{AppState, FleetState, MirrorState, Scheduler};

pub(super) const EVIL: &str = "<script>alert(\"x\")</script>'\"&";

pub(super) struct Site {
    _dir: tempfile::TempDir,
    pub db: Db,
    pub state: AppState,
    pub now: Timestamp,
    /// The clock every handler reads (advance it to move the site in time).
    pub clock: ManualClock,
}

fn seed(db: &Db, now: Timestamp) {
    let mut evil = crate::feed::catalog::tests::entry("acme/evil-1", b"evil");
    evil.title = format!("Evil {EVIL}");
    evil.description = format!("desc {EVIL}");
    let plain = crate::feed::catalog::tests::entry("DSA-1/openssl", b"ok");
    db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO feeds (name, trust_state, updated_at) VALUES ('acme', '{}', 't')",
            [],
        )?;
        for p in [&evil, &plain] {
            tx.execute(
                "INSERT INTO patches (feed, id, catalog_version, title, kind, severity,
                    cvss_score, cves, released, entry, entry_sha256, first_seen)
                 VALUES ('acme', ?1, 1, ?2, 'security', 'high', 7.5, '[\"CVE-2025-12345\"]',
                         ?3, ?4, '', ?3)",
                rusqlite::params![
                    p.id,
                    p.title,
                    p.released.to_string(),
                    serde_json::to_string(p).unwrap()
                ],
            )?;
        }
        // Host names are validated at enrollment; these rows stand for a database
        // written by something less careful.
        for (id, name, ring) in [("h-1", "web1", Some("pilot")), ("h-2", EVIL, None)] {
            tx.execute(
                "INSERT INTO hosts (id, hostname, public_key, ring, labels, enrolled_at, last_seen)
                 VALUES (?1, ?2, ?1, ?3, ?4, ?5, ?5)",
                rusqlite::params![
                    id,
                    name,
                    ring,
                    serde_json::json!({ "site": EVIL }).to_string(),
                    now.to_string()
                ],
            )?;
            let inv = crate::fleet::inventory::sample(name);
            tx.execute(
                "INSERT INTO host_inventory (host_id, reported_at, inventory, packages_digest)
                 VALUES (?1, ?2, ?3, '')",
                rusqlite::params![id, now.to_string(), serde_json::to_string(&inv).unwrap()],
            )?;
        }
        crate::audit::append(
            tx,
            now,
            &crate::audit::NewEntry {
                actor: EVIL,
                action: "note",
                subject: EVIL,
                details: serde_json::json!({ "message": EVIL }),
            },
        )?;
        Ok::<_, crate::error::AuditError>(())
    })
    .unwrap();
}

pub(super) fn site() -> Site {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("t.db"), Default::default()).unwrap();
    let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
    seed(&db, now);
    let manual = ManualClock::new(now);
    let clock: SharedClock = Arc::new(manual.clone());
    let key = Ed25519Key::generate(&mut rand::rngs::OsRng);
    let (key_hex, key_id) = (key.public_hex(), key.key_id());
    let store = crate::store::Store::open(&dir.path().join("store"), Default::default()).unwrap();
    let scheduler = Arc::new(Scheduler::new(Default::default(), key));
    let state = AppState::new(
        db.clone(),
        Some(MirrorState {
            store: Arc::new(store),
            sources: vec![],
            clock: clock.clone(),
            max_upload_bytes: 1 << 20,
            drop_dir: None,
        }),
        Some(FleetState {
            appliance_key: key_hex,
            appliance_key_id: key_id,
            poll_seconds: 300,
            clock,
            replay: Arc::new(crate::web::agent_auth::ReplayGuard::new(100)),
            rate: Arc::new(crate::web::agent_auth::RateLimiter::new(60, 20)),
            limits: Default::default(),
            presence: Arc::new(crate::fleet::hosts::Presence::new()),
            scheduler,
            http_port: 8080,
            legacy: Default::default(),
        }),
    )
    .with_admin(crate::web::AdminState {
        clock: Arc::new(manual.clone()),
        settings: Default::default(),
        tls_port: 8443,
    });
    Site {
        _dir: dir,
        db,
        state,
        now,
        clock: manual,
    }
}

pub(super) fn app(site: &Site, role: Role) -> Router {
    let viewer = Viewer {
        user: format!("{role}-user"),
        role,
        csrf: "c".repeat(64),
        printed: crate::web::admin::printed_line(site.now),
    };
    super::routes()
        .with_state(site.state.clone())
        .layer(axum::middleware::from_fn(
            move |mut req: Request<Body>, next: axum::middleware::Next| {
                req.extensions_mut().insert(viewer.clone());
                next.run(req)
            },
        ))
}

pub(super) async fn call(
    app: &Router,
    req: Request<Body>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let r = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 10 << 20).await.unwrap();
    (
        parts.status,
        String::from_utf8_lossy(&bytes).into_owned(),
        parts.headers,
    )
}

pub(super) async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let (s, b, _) = call(app, Request::get(path).body(Body::empty()).unwrap()).await;
    (s, b)
}

pub(super) async fn post(
    app: &Router,
    path: &str,
    form: &str,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap();
    call(app, req).await
}

/// Everything a refused request must leave alone.
fn fingerprint(db: &Db) -> String {
    db.read_blocking(|c| {
        let q = |sql: &str| -> rusqlite::Result<String> {
            let mut st = c.prepare(sql)?;
            let rows: Vec<String> = st
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows.join("|"))
        };
        Ok::<_, crate::error::DbError>(
            [
                "SELECT count(*) || '' FROM audit_log",
                "SELECT feed || patch_id || approval FROM approvals",
                "SELECT feed || patch_id || state FROM rollouts",
                "SELECT id || coalesce(revoked_at, '') FROM hosts",
                "SELECT count(*) || '' FROM enrollment_tokens",
                "SELECT id || spec FROM window_entries",
                "SELECT feed || id FROM patches",
            ]
            .iter()
            .map(|s| q(s))
            .collect::<rusqlite::Result<Vec<_>>>()?
            .join("\n"),
        )
    })
    .unwrap()
}

const PAGES: &[&str] = &[
    "/",
    "/hosts",
    "/hosts?q=web&state=all&ring=pilot&label=site%3Dx&page=3",
    "/hosts/h-1",
    "/hosts/h-2",
    "/patches",
    "/patches?kind=security&severity=high&kev=no&state=new&q=evil",
    "/patches/acme%3Aacme%2Fevil-1",
    "/patches/DSA-1%2Fopenssl",
    "/rollouts",
    "/windows",
    "/mirror",
    "/audit",
    "/audit?actor=x&action=patch.&from=2026-01-01&until=2026-12-31&page=2",
    "/legacy",
    "/legacy/h-2",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_for_both_roles_and_escapes_what_it_shows() {
    let s = site();
    for role in [Role::Admin, Role::Auditor] {
        let app = app(&s, role);
        for path in PAGES {
            let (st, body) = get(&app, path).await;
            assert_eq!(st, StatusCode::OK, "{role} {path}: {body}");
            assert!(body.contains("<title>"), "{path}");
            assert!(
                !body.contains("<script>alert"),
                "{role} {path} shows raw markup"
            );
            assert!(
                !body.contains("alert(\"x\")"),
                "{role} {path} shows raw quotes"
            );
            // Auditors get no action forms (the sign-out form is the layout's).
            let actions = body.matches("method=\"post\"").count();
            if role == Role::Auditor {
                assert_eq!(actions, 1, "{path} offers an auditor an action");
            }
        }
    }
    let app = app(&s, Role::Admin);
    for path in [
        "/hosts/h-2",
        "/patches/acme%3Aacme%2Fevil-1",
        "/audit",
        "/hosts",
    ] {
        let (_, body) = get(&app, path).await;
        let escaped = "&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;&#39;&#34;&#38;";
        assert!(body.contains(escaped), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_are_404_with_a_page_that_says_so() {
    let s = site();
    let app = app(&s, Role::Admin);
    for path in [
        "/hosts/nope",
        "/patches/nope",
        "/rollouts/DSA-1%2Fopenssl",
        "/windows/99",
    ] {
        let (st, body) = get(&app, path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body.contains("class=\"alert error\""), "{path}");
    }
}

/// Every state-changing route, with a form that an admin's request would carry out.
fn changes() -> Vec<(&'static str, String)> {
    vec![
        (
            "/hosts/tokens",
            "ring=pilot&labels=site%3Dhq&expires=7d&uses=2".into(),
        ),
        ("/hosts/h-1/revoke", "reason=gone&confirm=yes".into()),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=approve&rings=pilot&rings=broad".into(),
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=decline&reason=no".into(),
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=defer&until=2027-01-01T00%3A00".into(),
        ),
        (
            "/rollouts/DSA-1%2Fopenssl/control",
            "action=halt&reason=stop".into(),
        ),
        (
            "/windows",
            "kind=weekly&set=default&days=sat&start=10%3A00&duration=2h".into(),
        ),
        (
            "/windows/1",
            "kind=weekly&set=default&days=sun&start=10%3A00&duration=2h".into(),
        ),
        ("/windows/1/remove", "reason=x".into()),
        ("/mirror/sync", "".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_are_refused_every_change_and_nothing_changes() {
    let s = site();
    let before = fingerprint(&s.db);
    let app = app(&s, Role::Auditor);
    for (path, form) in changes() {
        let (st, body, _) = post(&app, path, &form).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let req = Request::post("/mirror/upload")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
        .body(Body::from("--x\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"a.pwb\"\r\n\r\nzz\r\n--x--\r\n"))
        .unwrap();
    let (st, _, _) = call(&app, req).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(fingerprint(&s.db), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let s = site();
    let app = app(&s, Role::Admin);
    let before = fingerprint(&s.db);
    for (path, form, want) in [
        ("/hosts/tokens", "ring=moon", "not a configured ring"),
        ("/hosts/tokens", "labels=site", "labels"),
        ("/hosts/tokens", "expires=soon", "duration"),
        ("/hosts/h-1/revoke", "reason=gone", "confirmation"),
        ("/hosts/h-1/revoke", "confirm=yes", "reason"),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=approve&rings=moon",
            "not a configured ring",
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=approve",
            "at least one ring",
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=defer&until=someday",
            "not a date",
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=defer&until=2001-01-01T00%3A00",
            "not in the future",
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=decline",
            "needs a reason",
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=expedite&rings=pilot&reason=now",
            "expedited",
        ),
        (
            "/patches/DSA-1%2Fopenssl/decide",
            "action=bless",
            "not a decision",
        ),
        (
            "/rollouts/DSA-1%2Fopenssl/control",
            "action=halt&reason=x",
            "approve the patch first",
        ),
        ("/rollouts/DSA-1%2Fopenssl/control", "action=halt", "reason"),
        (
            "/windows",
            "kind=weekly&set=default&days=sat&start=10%3A00&duration=9d",
            "between 1m and 7d",
        ),
        (
            "/windows",
            "kind=weekly&set=default&days=caturday&start=10%3A00&duration=1h",
            "caturday",
        ),
        (
            "/windows",
            "kind=weekly&set=moon&days=sat&start=10%3A00&duration=1h",
            "not defined",
        ),
        (
            "/windows",
            "kind=once&set=default&start=2026-13-01T00%3A00&duration=1h",
            "start",
        ),
        (
            "/windows",
            "kind=blackout&set=default&from=2026-12-02T00%3A00&until=2026-12-01T00%3A00",
            "must be after",
        ),
        (
            "/windows/7",
            "kind=weekly&set=default&days=sat&start=10%3A00&duration=1h",
            "no window entry 7",
        ),
    ] {
        let (st, body, _) = post(&app, path, form).await;
        assert!(st.is_client_error(), "{path} {form}: {st}");
        assert!(body.contains(want), "{path} {form}: {body}");
        assert!(body.contains("class=\"alert error\""), "{path} {form}");
    }
    let (st, body) = get(&app, "/audit?from=yesterday").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a date"), "{body}");
    // A bundle that is not one, and one over the cap (1 MiB here).
    for (content, want) in [
        (b"not a bundle".to_vec(), "Bundle not imported"),
        (vec![0u8; (1 << 20) + 10], "larger than the upload limit"),
    ] {
        let mut body =
            b"--x\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"a.pwb\"\r\n\r\n"
                .to_vec();
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\r\n--x--\r\n");
        let req = Request::post("/mirror/upload")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x")
            .body(Body::from(body))
            .unwrap();
        let (st, _, h) = call(&app, req).await;
        assert_eq!(st, StatusCode::SEE_OTHER);
        let cookie = h.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        let mut hm = axum::http::HeaderMap::new();
        hm.insert(
            header::COOKIE,
            cookie.split(';').next().unwrap().parse().unwrap(),
        );
        let f = super::Flash::from_headers(&hm).unwrap();
        assert!(!f.ok && f.text.contains(want), "{f:?}");
    }
    let uploads = s._dir.path().join("uploads");
    assert_eq!(
        std::fs::read_dir(uploads).unwrap().count(),
        0,
        "temporary files are removed"
    );
    assert_eq!(fingerprint(&s.db), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_halt_resume_and_a_window_that_the_scheduler_uses() {
    let s = site();
    let app = app(&s, Role::Admin);
    let (st, _, h) = post(
        &app,
        "/patches/DSA-1%2Fopenssl/decide",
        "action=approve&rings=pilot&reason=ok",
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/rollouts/acme%3ADSA-1%2Fopenssl");
    let (st, body) = get(&app, "/rollouts/acme%3ADSA-1%2Fopenssl").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("hx-trigger=\"every 5s\"") && body.contains("<progress"),
        "{body}"
    );
    let (st, frag) = get(&app, "/rollouts/acme%3ADSA-1%2Fopenssl/rings").await;
    assert_eq!(st, StatusCode::OK);
    assert!(frag.starts_with("<section id=\"rings\""), "{frag}");
    for action in ["halt", "resume"] {
        let (st, _, _) = post(
            &app,
            "/rollouts/acme%3ADSA-1%2Fopenssl/control",
            &format!("action={action}&reason=checking"),
        )
        .await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{action}");
    }
    let actions: Vec<String> =
        s.db.read_blocking(|c| crate::audit::recent(c, 3))
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.actor, e.action))
            .collect();
    assert_eq!(
        actions,
        [
            "web:admin-user rollout.resumed",
            "web:admin-user rollout.halted",
            "web:admin-user patch.approved"
        ]
    );
    // A window added here is in the scheduler's policy at once.
    let sched = s.state.inner.fleet.as_ref().unwrap().scheduler.clone();
    assert_eq!(sched.policy().windows["default"].windows.weekly.len(), 1);
    let (st, _, h) = post(
        &app,
        "/windows",
        "kind=weekly&set=default&days=sat&days=sun&start=10%3A00&duration=2h&reason=weekend",
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(
        h[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/windows")
    );
    assert_eq!(sched.policy().windows["default"].windows.weekly.len(), 2);
    let (_, body) = get(&app, "/windows").await;
    assert!(body.contains("every Sat, Sun at 10:00 for 2h"), "{body}");
    assert!(
        body.contains("Sat 2026-11-28 02:00"),
        "the preview lists the next openings"
    );
    let (st, body) = get(&app, "/windows/1").await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("value=\"10:00\""), "{body}");
    // Roll back from the rollout page: no reason is refused and changes nothing; with
    // one, the rollout ends rolled_back (no host had installed it: no rollback jobs).
    let (st, _, _) = post(
        &app,
        "/rollouts/acme%3ADSA-1%2Fopenssl/control",
        "action=rollback&reason=",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let state = || {
        s.db.read_blocking(|c| crate::db::rollout::rollouts(c, None))
            .unwrap()[0]
            .state
            .clone()
    };
    assert_eq!(state(), "active");
    let (_, page) = get(&app, "/rollouts/acme%3ADSA-1%2Fopenssl").await;
    assert!(page.contains("value=\"rollback\""), "{page}");
    let (st, _, _) = post(
        &app,
        "/rollouts/acme%3ADSA-1%2Fopenssl/control",
        "action=rollback&reason=regression",
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(state(), "rolled_back");
    let last = s.db.read_blocking(|c| crate::audit::recent(c, 1)).unwrap();
    assert_eq!(
        format!("{} {}", last[0].actor, last[0].action),
        "web:admin-user rollout.rolled_back"
    );
    let _ = s.now;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_page_lists_apt_clients_with_and_without_an_agent() {
    let s = site();
    let app = app(&s, Role::Auditor);
    let (_, before) = get(&app, "/hosts").await;
    assert!(before.contains("No machine has fetched a ring"), "{before}");
    let clients = crate::apt::clients::AptClients::new();
    clients.note("pilot", "192.0.2.44", "Debian APT-HTTP/1.3 (2.6.1)", s.now);
    crate::apt::clients::flush(&s.db, &clients).unwrap();
    let (st, body) = get(&app, "/hosts").await;
    assert_eq!(st, StatusCode::OK);
    let section = &body[body
        .find("id=\"apt-clients\"")
        .expect("apt clients section")..];
    assert!(
        section.contains("apt clients <span class=\"muted\">(1)</span>"),
        "{section}"
    );
    assert!(section.contains("192.0.2.44"), "{section}");
    assert!(section.contains("Debian APT-HTTP/1.3 (2.6.1)"), "{section}");
    assert!(section.contains("no agent"), "{section}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_counts_hosts_checking_in() {
    let s = site();
    let (_, body) = get(&app(&s, Role::Admin), "/").await;
    assert!(body.contains("</span> checking in</a>"), "{body}");
    assert!(!body.contains("up to date with check-ins"), "{body}");
}
