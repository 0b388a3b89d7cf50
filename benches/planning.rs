//! Rollout planning at fleet scale (BENCHMARKS.md, "Rollout planning").
//!
//! A fleet of HOSTS hosts on four platforms (Debian 12 and 11 amd64, Debian 12 arm64,
//! Ubuntu 24.04 amd64), each with PACKAGES installed packages drawn from a pool of
//! 2,000 names at one of four versions, and PATCHES patches, **every one approved for
//! pilot and broad with an active rollout** (the worst case: real sites have a few
//! dozen). Each patch names one platform and one package `below_version`; a fifth of
//! them have jobs: the pilot ring's hosts succeeded, a few broad hosts are in progress.
//! Rings are the defaults: `pilot` (5% of hosts, assigned at enrollment) then `broad`.
//!
//! Measured, each over ITERATIONS runs (median and max):
//! - `index`: building the fleet index from parsed inventories (the server does this
//!   once at start, then host by host as inventories change);
//! - `plan`: `Plan::build` for every active rollout (applicability, ring results, gates)
//!   — the figure the target ("< 250 ms for 10,000 hosts x 1,000 patches") is about;
//! - `may_offer x HOSTS`: the check-in test for every host against that plan.
//!
//! Run: `cargo bench --bench planning`

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::Timestamp;
use patchward::db::rollout::{JobBrief, RolloutRow};
use patchward::feed::catalog::{
    Artifact, ArtifactFormat, InstallMethod, PatchEntry, PatchKind, Selector, Severity,
};
use patchward::fleet::inventory::{Inventory, OsRelease, Package};
use patchward::policy::{Approval, Policy};
use patchward::rollout::fleet_index::{FleetIndex, HostInput};
use patchward::rollout::plan::Plan;
use patchward::rollout::{Patch, World};

const HOSTS: usize = 10_000;
const PATCHES: usize = 1_000;
const PACKAGES: usize = 400;
const POOL: usize = 2_000;
const ITERATIONS: usize = 7;

/// A small deterministic generator (xorshift), so every run plans the same fleet.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PLATFORMS: [(&str, &str, &str); 4] = [
    ("debian", "12", "amd64"),
    ("debian", "11", "amd64"),
    ("debian", "12", "arm64"),
    ("ubuntu", "24.04", "amd64"),
];

fn inventory(rng: &mut Rng, i: usize) -> Inventory {
    let (os, ver, arch) = PLATFORMS[i % PLATFORMS.len()];
    let mut names: Vec<usize> = (0..PACKAGES).map(|_| rng.below(POOL)).collect();
    names.sort_unstable();
    names.dedup();
    Inventory {
        os: OsRelease {
            id: os.into(),
            version_id: ver.into(),
            id_like: String::new(),
        },
        kernel: "6.1.0-28-amd64".into(),
        arch: arch.into(),
        hostname: format!("host-{i:05}"),
        addresses: vec![],
        packages: Some(
            names
                .into_iter()
                .map(|n| Package {
                    name: format!("pkg{n}"),
                    version: format!("1.{}-1", rng.below(4) * 2),
                    arch: arch.into(),
                })
                .collect(),
        ),
        packages_digest: None,
        uptime_s: 1000,
        last_boot: None,
        reboot_required: false,
    }
}

fn patch(rng: &mut Rng, i: usize) -> PatchEntry {
    let (os, ver, arch) = PLATFORMS[i % PLATFORMS.len()];
    PatchEntry {
        id: format!("acme/patch-{i:04}"),
        title: format!("Patch {i}"),
        description: String::new(),
        kind: PatchKind::Security,
        severity: [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ][i % 4],
        cvss: None,
        cves: vec![],
        released: "2026-11-01T00:00:00Z".parse().unwrap(),
        applies_to: vec![Selector {
            os: Some(os.into()),
            version: Some(ver.into()),
            arch: Some(arch.into()),
            package: Some(format!("pkg{}", rng.below(POOL))),
            below_version: Some("1.5-1".into()),
            labels: vec![],
        }],
        artifacts: vec![Artifact {
            name: format!("patch-{i}.sh"),
            sha256: format!("{i:064x}"),
            size: 1,
            format: ArtifactFormat::Script,
        }],
        install: InstallMethod::Script,
        requires: vec![],
        supersedes: vec![],
        conflicts: vec![],
        reboot: false,
        est_minutes: 10,
        needs_backup: None,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:7.1} ms  max {:7.1} ms",
        v[v.len() / 2] * 1e3,
        v[v.len() - 1] * 1e3
    )
}

fn main() {
    let now: Timestamp = "2026-11-27T03:00:00Z".parse().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let policy = Policy::default();
    let inventories: Vec<Inventory> = (0..HOSTS).map(|i| inventory(&mut rng, i)).collect();
    let ids: Vec<String> = (0..HOSTS).map(|i| format!("h-{i:08x}")).collect();
    let ring = |i: usize| i.is_multiple_of(20).then(|| "pilot".to_string());

    let rss0 = rss_kib();
    let mut times = Vec::new();
    let mut index = FleetIndex::new();
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        index = FleetIndex::new();
        for (i, inv) in inventories.iter().enumerate() {
            index.upsert(
                &policy,
                HostInput {
                    id: &ids[i],
                    assigned_ring: ring(i),
                    labels: BTreeMap::new(),
                    last_seen: Some(now),
                    inventory: inv,
                    eol: false,
                },
            );
        }
        times.push(t.elapsed().as_secs_f64());
    }
    println!(
        "index      {HOSTS} hosts x ~{PACKAGES} packages: {}",
        stats(times)
    );
    println!(
        "           resident memory with inventories and index: {} MiB (inventories alone ~{} MiB before)",
        rss_kib() / 1024,
        rss0 / 1024
    );

    // The world: every patch approved for both rings with an active rollout.
    let mut world = World::default();
    let stamp = "2026-11-20T00:00:00Z".to_string();
    for i in 0..PATCHES {
        let entry = patch(&mut rng, i);
        let key = ("acme".to_string(), entry.id.clone());
        world.approvals.insert(
            key.clone(),
            Approval::Approved {
                rings: vec!["pilot".into(), "broad".into()],
                expedite: None,
            },
        );
        world.rollouts.insert(
            key.clone(),
            RolloutRow {
                feed: "acme".into(),
                patch_id: entry.id.clone(),
                state: "active".into(),
                started_at: stamp.clone(),
                updated_at: stamp.clone(),
                acknowledged_at: None,
                note: String::new(),
            },
        );
        if i.is_multiple_of(5) {
            // The pilot hosts it applies to succeeded; three broad hosts are installing.
            let applies = index.applies(&entry);
            let mut jobs = Vec::new();
            let mut broad = 0;
            for pos in applies {
                let host = index.host(pos).unwrap();
                let (state, ring_name) = if host.assigned_ring.is_some() {
                    ("succeeded", "pilot")
                } else if broad < 3 {
                    broad += 1;
                    ("installing", "broad")
                } else {
                    continue;
                };
                jobs.push(JobBrief {
                    id: format!("j-{i}-{pos}"),
                    host_id: host.id.clone(),
                    feed: "acme".into(),
                    patch_id: entry.id.clone(),
                    state: state.into(),
                    ring: Some(ring_name.into()),
                    created_at: stamp.clone(),
                    updated_at: stamp.clone(),
                });
            }
            world.jobs.insert(key.clone(), jobs);
        }
        world.patches.push(Patch {
            feed: "acme".into(),
            entry,
            kev: false,
            kev_due: None,
            first_seen: None,
        });
    }

    let mut times = Vec::new();
    let mut plan = None;
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        plan = Some(Plan::build(&world, &index, &policy, now));
        times.push(t.elapsed().as_secs_f64());
    }
    let plan = plan.unwrap();
    let open = plan
        .patches
        .iter()
        .filter(|pp| pp.plan.steps.iter().any(|s| s.open && s.capacity > 0))
        .count();
    let pending: usize = plan
        .patches
        .iter()
        .flat_map(|pp| pp.results.iter().map(|r| r.len()))
        .sum();
    println!(
        "plan       {HOSTS} hosts x {PATCHES} active rollouts: {}  ({open} rollouts with room, {pending} (host, patch) pairs in rings)",
        stats(times)
    );

    let mut times = Vec::new();
    let mut offerable = 0;
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        offerable = ids
            .iter()
            .filter(|id| plan.may_offer(&policy, id, now))
            .count();
        times.push(t.elapsed().as_secs_f64());
    }
    println!(
        "may_offer  x {HOSTS} hosts: {}  ({offerable} hosts could be offered a job at {now})",
        stats(times)
    );
}
