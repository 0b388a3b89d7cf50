//! The published repository with this machine's real `apt-get`, in a sandbox
//! (`APT_CONFIG` sets `Dir::Etc::main "/dev/null"`, `Dir::Etc::parts` and every state,
//! cache and list directory into a temp dir), over HTTP from the real router: apt
//! accepts what the appliance signs and rejects what it should — a tampered index (hash
//! mismatch), a tampered InRelease (BADSIG), a repository signed by another key
//! (NO_PUBKEY) and an expired `Valid-Until` — so the appliance's signatures and hashes
//! are what apt checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::AptSettings;
use super::index::PackageEntry;
use super::publish::{AptDir, write_ring};
use crate::trust::openpgp::AptSigningKey;
use crate::web::{AppState, Limits};

fn key_created(at: Timestamp, seed: u64) -> AptSigningKey {
    use rand::SeedableRng;
    AptSigningKey::generate_at(
        "Patchward test <apt@patchward.invalid>",
        at,
        rand::rngs::StdRng::seed_from_u64(seed),
    )
    .unwrap()
}

fn entry() -> PackageEntry {
    entry_v("1.0-1")
}

fn entry_v(version: &str) -> PackageEntry {
    let deb = crate::deb::tests::build_deb(
        &format!("Package: hello\nVersion: {version}\nArchitecture: all\nDescription: hi\n"),
        "gz",
    );
    PackageEntry::from_meta(&crate::deb::read_meta_from(&deb[..]).unwrap()).unwrap()
}

/// A running router serving `<tmp>/apt`; dropped with the runtime.
struct Served {
    _rt: tokio::runtime::Runtime,
    url: String,
    dir: AptDir,
    db: crate::db::Db,
    clients: Arc<super::clients::AptClients>,
}

fn serve(tmp: &Path, key: &AptSigningKey) -> Served {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = crate::db::Db::open(&tmp.join("db"), crate::db::DbOptions::default()).unwrap();
    let store = Arc::new(
        crate::store::Store::open(&tmp.join("store"), crate::store::StoreOptions::default())
            .unwrap(),
    );
    let dir = AptDir::new(tmp.join("apt"));
    let clients = Arc::new(super::clients::AptClients::new());
    let state = AppState::new(db.clone(), None, None).with_apt(crate::web::apt::AptServe {
        dir: dir.clone(),
        store,
        settings: AptSettings::default(),
        public_key: key.public_key_armored().to_owned(),
        fingerprint: key.fingerprint(),
        clients: clients.clone(),
        clock: Arc::new(crate::clock::ManualClock::new(
            "2026-12-07T09:00:00Z".parse().unwrap(),
        )),
    });
    let limits = Limits {
        max_body_bytes: 1 << 20,
        request_timeout: Duration::from_secs(30),
        max_upload_bytes: 1 << 20,
    };
    let router = crate::web::router(state, &limits);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(crate::web::run(listener, router, std::future::pending()));
    Served {
        _rt: rt,
        url,
        dir,
        db,
        clients,
    }
}

/// `apt-get update` in a fresh sandbox trusting only `trusted`: (success, output).
fn apt_update(tmp: &Path, url: &str, trusted: &AptSigningKey) -> (bool, String) {
    let root = tempfile::tempdir_in(tmp).unwrap();
    let r = root.path();
    for d in [
        "etc/apt.conf.d",
        "etc/sources.list.d",
        "etc/preferences.d",
        "state/lists/partial",
        "cache/archives/partial",
        "log",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("state/status"), "").unwrap();
    let sources = super::client::sources(
        url,
        "pilot",
        "pilot",
        trusted.public_key_armored(),
        &trusted.fingerprint(),
    );
    std::fs::write(r.join("etc/sources.list.d/pw.sources"), sources).unwrap();
    let conf = sandbox_config(r);
    let out = Command::new("apt-get")
        .env("APT_CONFIG", &conf)
        .env("LC_ALL", "C")
        .args(["update", "-q"])
        .output()
        .expect("apt-get is missing; these tests need an apt-based system");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let clean = !log
        .lines()
        .any(|l| l.starts_with("W:") || l.starts_with("E:"));
    (out.status.success() && clean, log)
}

fn sandbox_config(r: &Path) -> PathBuf {
    let d = r.display();
    let conf = format!(
        "Dir::Etc::main \"/dev/null\";\nDir::Etc::parts \"{d}/etc/apt.conf.d\";\n\
         Dir::Etc::sourcelist \"/dev/null\";\nDir::Etc::sourceparts \"{d}/etc/sources.list.d\";\n\
         Dir::Etc::trusted \"/dev/null\";\nDir::Etc::trustedparts \"{d}/etc/trusted.gpg.d\";\n\
         Dir::Etc::preferences \"/dev/null\";\nDir::Etc::preferencesparts \"{d}/etc/preferences.d\";\n\
         Dir::State \"{d}/state\";\nDir::State::status \"{d}/state/status\";\n\
         Dir::Cache \"{d}/cache\";\nDir::Log \"{d}/log\";\nDebug::NoLocking \"true\";\n\
         APT::Sandbox::User \"root\";\nAPT::Architecture \"amd64\";\n\
         APT::Architectures {{ \"amd64\"; }};\nAcquire::Languages \"none\";\n\
         Acquire::Retries \"0\";\n"
    );
    let p = r.join("apt.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

fn settings() -> AptSettings {
    AptSettings::default()
}

#[test]
fn apt_accepts_the_published_repository_and_lists_its_package() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_created(Timestamp::now() - SignedDuration::from_hours(1), 1);
    let s = serve(tmp.path(), &key);
    write_ring(
        &s.dir,
        &settings(),
        &key,
        "pilot",
        &[entry()],
        Timestamp::now(),
    )
    .unwrap();
    let (ok, log) = apt_update(tmp.path(), &s.url, &key);
    assert!(ok, "{log}");
    // by-hash is what apt fetched.
    assert!(
        !log.contains("Ign:"),
        "apt ignored something it should have fetched: {log}"
    );
    // apt itself shows up as an apt client of the ring, dated by the appliance's clock,
    // in one row however many index files it fetched.
    assert_eq!(super::clients::flush(&s.db, &s.clients).unwrap(), 1);
    let rows = s.db.read_blocking(super::clients::list).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let c = &rows[0];
    assert_eq!(
        (c.ring.as_str(), c.address.as_str()),
        ("pilot", "127.0.0.1")
    );
    assert!(c.user_agent.starts_with("Debian APT"), "{c:?}");
    assert!(c.requests >= 2, "InRelease and an index: {c:?}");
    assert_eq!(c.last_seen, "2026-12-07T09:00:00Z");
}

#[test]
fn apt_rejects_a_tampered_index() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_created(Timestamp::now() - SignedDuration::from_hours(1), 2);
    let s = serve(tmp.path(), &key);
    write_ring(
        &s.dir,
        &settings(),
        &key,
        "pilot",
        &[entry()],
        Timestamp::now(),
    )
    .unwrap();
    // Flip one byte in every index file (same size), whichever compression apt picks.
    for e in std::fs::read_dir(s.dir.by_hash("pilot")).unwrap() {
        let p = e.unwrap().path();
        let mut b = std::fs::read(&p).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0x20;
        std::fs::write(&p, b).unwrap();
    }
    let (ok, log) = apt_update(tmp.path(), &s.url, &key);
    assert!(!ok, "{log}");
    assert!(log.contains("Hash Sum mismatch"), "{log}");
}

#[test]
fn apt_rejects_a_tampered_inrelease() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key_created(Timestamp::now() - SignedDuration::from_hours(1), 3);
    let s = serve(tmp.path(), &key);
    write_ring(
        &s.dir,
        &settings(),
        &key,
        "pilot",
        &[entry()],
        Timestamp::now(),
    )
    .unwrap();
    let p = s.dir.current("pilot").join("InRelease");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("Label: Patchward pilot", "Label: Evil pilot"),
    )
    .unwrap();
    let (ok, log) = apt_update(tmp.path(), &s.url, &key);
    assert!(!ok, "{log}");
    assert!(log.contains("BADSIG"), "{log}");
}

#[test]
fn apt_rejects_a_repository_signed_by_another_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = key_created(Timestamp::now() - SignedDuration::from_hours(1), 4);
    let other = key_created(Timestamp::now() - SignedDuration::from_hours(1), 5);
    let s = serve(tmp.path(), &ours);
    write_ring(
        &s.dir,
        &settings(),
        &other,
        "pilot",
        &[entry()],
        Timestamp::now(),
    )
    .unwrap();
    let (ok, log) = apt_update(tmp.path(), &s.url, &ours);
    assert!(!ok, "{log}");
    assert!(log.contains("NO_PUBKEY"), "{log}");
}

#[test]
fn apt_rejects_an_expired_release() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let key = key_created(now - SignedDuration::from_hours(30 * 24), 6);
    let s = serve(tmp.path(), &key);
    // Signed ten days ago, valid for seven: expired three days ago.
    let signed = now - SignedDuration::from_hours(10 * 24);
    write_ring(&s.dir, &settings(), &key, "pilot", &[entry()], signed).unwrap();
    let (ok, log) = apt_update(tmp.path(), &s.url, &key);
    assert!(!ok, "{log}");
    assert!(log.contains("is expired"), "{log}");
    // The scheduled re-sign fixes it without any change of content.
    write_ring(&s.dir, &settings(), &key, "pilot", &[entry()], now).unwrap();
    let (ok, log) = apt_update(tmp.path(), &s.url, &key);
    assert!(ok, "{log}");
}

#[test]
fn publish_switches_atomically_and_keeps_old_by_hash_for_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = AptDir::new(tmp.path().join("apt"));
    let t0 = Timestamp::now() - SignedDuration::from_hours(72);
    let key = key_created(t0, 7);
    let st = settings();
    let first = write_ring(&dir, &st, &key, "pilot", &[], t0).unwrap();
    let old_release = std::fs::read_to_string(dir.current("pilot").join("Release")).unwrap();
    let second = write_ring(
        &dir,
        &st,
        &key,
        "pilot",
        &[entry()],
        t0 + SignedDuration::from_hours(1),
    )
    .unwrap();
    assert_eq!(second.generation, first.generation + 1);
    // Every file the old Release named is still there by hash (inside the grace).
    let named = |release: &str| -> Vec<String> {
        release
            .lines()
            .filter_map(|l| l.strip_prefix(' '))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    for h in named(&old_release) {
        assert!(dir.by_hash("pilot").join(&h).exists(), "{h}");
    }
    // A crashed publish (a half-written generation, no switch) changes nothing served,
    // and the next publish cleans it up.
    let crashed = tmp.path().join("apt/pilot/gen/99");
    std::fs::create_dir_all(crashed.join("main")).unwrap();
    assert_eq!(dir.current_generation("pilot"), Some(second.generation));
    // Two days later (past the 24 h grace) the first publish's files go, the current
    // and previous generations' stay.
    let new_release = std::fs::read_to_string(dir.current("pilot").join("Release")).unwrap();
    let third = write_ring(
        &dir,
        &st,
        &key,
        "pilot",
        &[entry_v("2.0-1")],
        t0 + SignedDuration::from_hours(49),
    )
    .unwrap();
    assert!(!crashed.exists());
    for h in named(&old_release) {
        assert!(!dir.by_hash("pilot").join(&h).exists(), "expired {h}");
    }
    assert_eq!(dir.current_generation("pilot"), Some(third.generation));
    for h in named(&new_release) {
        assert!(
            dir.by_hash("pilot").join(&h).exists(),
            "previous generation's {h}"
        );
    }
    let gens: Vec<_> = std::fs::read_dir(tmp.path().join("apt/pilot/gen"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(gens.len(), 2, "{gens:?}");
}
