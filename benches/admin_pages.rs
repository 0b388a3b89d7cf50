//! The admin pages at fleet scale (BENCHMARKS.md, "Admin pages").
//!
//! Seeds a database directly (plain SQL, one transaction) with HOSTS hosts, each with a
//! realistic inventory of PACKAGES packages (like `benches/checkin.rs`), labels and a
//! ring; PATCHES patches across the four classes and five severities (every 20th with
//! a CVE on the KEV list); ROLLOUTS approved patches with active rollouts whose jobs
//! cover half the fleet (1 % of them failed); and one audit entry per host. Then it
//! renders pages in-process through the pages' real router (`web::admin::pages::
//! routes()`, with a stand-in for the sign-in guard that adds the viewer): the
//! dashboard, the host list's first page, and a filtered host list page, each RUNS
//! times after a warm-up, and reports p50/p95/max latency and the page weight (HTML
//! plus the CSS and JavaScript every page loads). The pages that evaluate every host's
//! inventory (a host's "why not yet", the rollouts with exact gates) are timed too:
//! their first request loads the shared rollout snapshot, the next ones reuse it.
//!
//! Run: `cargo bench --bench admin_pages` (one page: `PW_BENCH_PAGES=dashboard`, fewer
//! runs: `PW_BENCH_RUNS=20`)

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use jiff::Timestamp;
use patchward::auth::Role;
use patchward::clock::{ManualClock, SharedClock};
use patchward::db::{Db, DbOptions};
use patchward::feed::catalog::{
    Artifact, ArtifactFormat, InstallMethod, PatchEntry, PatchKind, Selector, Severity,
};
use patchward::fleet::inventory::{Inventory, OsRelease, Package};
use patchward::web::admin::Viewer;
use patchward::web::{AppState, FleetState, MirrorState, Scheduler};
use tower::ServiceExt;

const HOSTS: usize = 10_000;
const PACKAGES: usize = 300;
const PATCHES: usize = 1_000;
const ROLLOUTS: usize = 10;
const RUNS: usize = 200;

fn packages(n: usize) -> Vec<Package> {
    (0..PACKAGES)
        .map(|i| Package {
            name: format!(
                "lib{}-pkg{i}",
                ["ssl", "xml", "gtk", "c", "z", "curl"][i % 6]
            ),
            version: if i % 50 == 0 {
                format!("{}.{}.{}-1+deb12u{}", i % 7, i % 13, i % 5, n % 3)
            } else {
                format!("{}.{}.{}-1", i % 7, i % 13, i % 5)
            },
            arch: if i % 9 == 0 { "all" } else { "amd64" }.into(),
        })
        .collect()
}

fn patch(i: usize) -> PatchEntry {
    let kind = PatchKind::ALL[i % 4];
    let severity = Severity::ALL[(i / 4) % 5];
    PatchEntry {
        id: format!("DSA-{:04}-1/pkg{i}", 5000 + i),
        title: format!("Security update for pkg{i}: fixes several issues"),
        description: "A longer description of what the update fixes.".into(),
        kind,
        severity,
        cvss: None,
        cves: vec![format!("CVE-2026-{:05}", 10_000 + i)],
        released: Timestamp::from_second(1_780_000_000 + (i as i64) * 3_600).unwrap(),
        applies_to: vec![Selector {
            os: Some("debian".into()),
            ..Default::default()
        }],
        artifacts: vec![Artifact {
            name: format!("pkg{i}.tar.zst"),
            sha256: format!("{:064x}", i + 1),
            size: 10_000,
            format: ArtifactFormat::Script,
        }],
        install: InstallMethod::Script,
        requires: vec![],
        supersedes: vec![],
        conflicts: vec![],
        reboot: false,
        est_minutes: 5,
        needs_backup: None,
    }
}

fn seed(db: &Db, now: Timestamp) {
    let t = Instant::now();
    db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO feeds (name, trust_state, updated_at) VALUES ('acme', '{}', ?1)",
            [now.to_string()],
        )?;
        let mut ins_patch = tx.prepare(
            "INSERT INTO patches (feed, id, catalog_version, title, kind, severity, cvss_score,
                cves, released, entry, entry_sha256, first_seen)
             VALUES ('acme', ?1, 1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, '', ?6)",
        )?;
        for i in 0..PATCHES {
            let p = patch(i);
            ins_patch.execute(rusqlite::params![
                p.id,
                p.title,
                p.kind.as_str(),
                p.severity.as_str(),
                serde_json::to_string(&p.cves).unwrap(),
                p.released.to_string(),
                serde_json::to_string(&p).unwrap(),
            ])?;
            if i % 20 == 0 {
                tx.execute(
                    "INSERT INTO kev (cve, date_added, due_date) VALUES (?1, '2026-01-01', '2026-02-01')",
                    [&p.cves[0]],
                )?;
            }
        }
        let mut ins_host = tx.prepare(
            "INSERT INTO hosts (id, hostname, public_key, ring, labels, enrolled_at, last_seen)
             VALUES (?1, ?2, ?1, ?3, ?4, ?5, ?6)",
        )?;
        let mut ins_inv = tx.prepare(
            "INSERT INTO host_inventory (host_id, reported_at, inventory, packages_digest)
             VALUES (?1, ?2, ?3, '')",
        )?;
        let mut ins_audit = 0;
        for n in 0..HOSTS {
            let id = format!("h-{n:012x}");
            let name = format!("srv{n:05}");
            let ring = (n % 10 == 0).then_some("pilot");
            let labels = format!(r#"{{"site":"{}","role":"{}"}}"#, ["hq", "branch"][n % 2], ["web", "db", "app"][n % 3]);
            // 2 % have not checked in for an hour (stale).
            let seen = if n % 50 == 0 { now - jiff::SignedDuration::from_hours(1) } else { now };
            ins_host.execute(rusqlite::params![id, name, ring, labels, now.to_string(), seen.to_string()])?;
            let inv = Inventory {
                os: OsRelease {
                    id: "debian".into(),
                    version_id: "12".into(),
                    id_like: String::new(),
                },
                kernel: "6.1.0-28-amd64".into(),
                arch: "x86_64".into(),
                hostname: name.clone(),
                addresses: vec![format!("10.0.{}.{}/16", n / 256, n % 256)],
                packages: Some(packages(n)),
                packages_digest: None,
                uptime_s: 86_400,
                last_boot: None,
                reboot_required: n % 7 == 0,
            };
            ins_inv.execute(rusqlite::params![id, now.to_string(), serde_json::to_string(&inv).unwrap()])?;
            ins_audit += 1;
        }
        drop((ins_patch, ins_host, ins_inv));
        // Rollouts of the first ROLLOUTS security patches, with jobs on half the fleet.
        let mut ins_job = tx.prepare(
            "INSERT INTO jobs (id, host_id, feed, patch_id, state, ticket, created_at, updated_at, ring)
             VALUES (?1, ?2, 'acme', ?3, ?4, x'', ?5, ?5, ?6)",
        )?;
        for r in 0..ROLLOUTS {
            let p = patch(r * 4);
            let approval = r#"{"state":"approved","rings":["pilot","broad"],"expedite":null}"#;
            tx.execute(
                "INSERT INTO approvals (feed, patch_id, approval, decided_at, decided_by)
                 VALUES ('acme', ?1, ?2, ?3, 'bench')",
                rusqlite::params![p.id, approval, now.to_string()],
            )?;
            tx.execute(
                "INSERT INTO rollouts (feed, patch_id, state, started_at, updated_at, note)
                 VALUES ('acme', ?1, 'active', ?2, ?2, 'approved by bench')",
                rusqlite::params![p.id, now.to_string()],
            )?;
            for n in (r % 2..HOSTS).step_by(2) {
                let state = match n % 100 {
                    0 => "failed",
                    1..=9 => "installing",
                    _ => "succeeded",
                };
                let ring = if n % 10 == 0 { "pilot" } else { "broad" };
                ins_job.execute(rusqlite::params![
                    format!("j-{r}-{n}"),
                    format!("h-{n:012x}"),
                    p.id,
                    state,
                    now.to_string(),
                    ring
                ])?;
            }
        }
        drop(ins_job);
        for n in 0..ins_audit {
            patchward::audit::append(
                tx,
                now,
                &patchward::audit::NewEntry {
                    actor: "bench",
                    action: "host.enrolled",
                    subject: &format!("h-{n:012x}"),
                    details: serde_json::json!({ "hostname": format!("srv{n:05}") }),
                },
            )
            .unwrap();
        }
        Ok::<_, patchward::error::DbError>(())
    })
    .unwrap();
    eprintln!(
        "seeded {HOSTS} hosts, {PATCHES} patches, {ROLLOUTS} rollouts in {:.1?}",
        t.elapsed()
    );
}

fn state(dir: &std::path::Path, db: Db, now: Timestamp) -> AppState {
    let clock: SharedClock = Arc::new(ManualClock::new(now));
    let key = patchward::trust::keys::Ed25519Key::generate(&mut rand::rngs::OsRng);
    let (hex, id) = (key.public_hex(), key.key_id());
    let store = patchward::store::Store::open(&dir.join("store"), Default::default()).unwrap();
    AppState::new(
        db,
        Some(MirrorState {
            store: Arc::new(store),
            sources: vec![],
            clock: clock.clone(),
            max_upload_bytes: 1 << 30,
            drop_dir: None,
        }),
        Some(FleetState {
            appliance_key: hex,
            appliance_key_id: id,
            poll_seconds: 300,
            clock,
            replay: Arc::new(patchward::web::agent_auth::ReplayGuard::new(10)),
            rate: Arc::new(patchward::web::agent_auth::RateLimiter::new(60, 20)),
            limits: Default::default(),
            presence: Arc::new(patchward::fleet::hosts::Presence::new()),
            scheduler: Arc::new(Scheduler::new(Default::default(), key)),
            http_port: 8080,
            legacy: Default::default(),
        }),
    )
}

fn app(st: AppState) -> Router {
    let viewer = Viewer {
        user: "admin".into(),
        role: Role::Admin,
        csrf: "c".repeat(64),
        printed: patchward::web::admin::printed_line(jiff::Timestamp::UNIX_EPOCH),
    };
    patchward::web::admin::pages::routes()
        .with_state(st)
        .layer(axum::middleware::from_fn(
            move |mut req: Request<Body>, next: axum::middleware::Next| {
                req.extensions_mut().insert(viewer.clone());
                next.run(req)
            },
        ))
}

async fn get(app: &Router, path: &str) -> (Duration, usize) {
    let t = Instant::now();
    let r = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    let body = axum::body::to_bytes(r.into_body(), 50 << 20).await.unwrap();
    (t.elapsed(), body.len())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn measure(app: &Router, name: &str, path: &str, runs: usize, assets: usize) {
    // `PW_BENCH_PAGES=dashboard` measures only the pages whose name contains it, and
    // `PW_BENCH_RUNS=N` caps the runs (for a profile of one page: `perf record`).
    if std::env::var("PW_BENCH_PAGES").is_ok_and(|only| !name.contains(only.as_str())) {
        return;
    }
    let runs = std::env::var("PW_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(runs, |n: usize| n.min(runs));
    let (first, bytes) = get(app, path).await; // warm-up (and, for the pages that read the
    // rollout snapshot, its load)
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(get(app, path).await.0);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} {path:<44} first {:>8.1} ms  runs {runs:>4}  p50 {:>7.2} ms  p95 {:>7.2} ms  \
         max {:>7.2} ms  HTML {:>6.1} KiB  + CSS/JS = {:>6.1} KiB",
        ms(first),
        ms(pct(&times, 0.50)),
        ms(pct(&times, 0.95)),
        ms(*times.last().unwrap()),
        bytes as f64 / 1024.0,
        (bytes + assets) as f64 / 1024.0,
    );
}

fn main() {
    let dir = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
    let db = Db::open(&dir.path().join("patchward.db"), DbOptions::default()).unwrap();
    seed(&db, now);
    let assets = ["app.css", "htmx.min.js"]
        .iter()
        .map(|n| patchward::web::admin::assets::get(n).unwrap().bytes.len())
        .sum::<usize>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = app(state(dir.path(), db, now));
        println!(
            "{HOSTS} hosts x {PACKAGES} packages, {PATCHES} patches, {ROLLOUTS} active rollouts; \
             CSS + JS every page loads: {:.1} KiB",
            assets as f64 / 1024.0
        );
        measure(&app, "dashboard", "/", RUNS, assets).await;
        measure(&app, "hosts, first page", "/hosts", RUNS, assets).await;
        measure(
            &app,
            "hosts, filtered",
            "/hosts?q=srv0&ring=broad&state=ok&label=site%3Dhq&page=3",
            RUNS,
            assets,
        )
        .await;
        measure(&app, "hosts, last page", "/hosts?page=200", RUNS, assets).await;
        measure(&app, "patches, first page", "/patches", RUNS, assets).await;
        measure(&app, "audit, first page", "/audit", 20, assets).await;
        measure(
            &app,
            "host (explain, all hosts)",
            "/hosts/h-000000000001",
            3,
            assets,
        )
        .await;
        measure(&app, "rollouts (exact gates)", "/rollouts", 3, assets).await;
    });
}
