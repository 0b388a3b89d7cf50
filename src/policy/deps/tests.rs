//! Table-driven tests of dependency ordering, supersedes, conflicts and cycles.

use super::*;
use crate::feed::catalog::tests::entry;

/// A patch from a compact spec: `"b: requires a; supersedes x; conflicts c; released 3"`.
fn p(spec: &str) -> PatchEntry {
    let (id, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let mut e = entry(id.trim(), id.as_bytes());
    for part in rest.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (what, ids) = part.split_once(' ').unwrap();
        let list: Vec<String> = ids.split(',').map(|s| s.trim().to_string()).collect();
        match what {
            "requires" => e.requires = list,
            "supersedes" => e.supersedes = list,
            "conflicts" => e.conflicts = list,
            "released" => {
                e.released = e
                    .released
                    .checked_add(jiff::SignedDuration::from_hours(
                        24 * list[0].parse::<i64>().unwrap(),
                    ))
                    .unwrap()
            }
            _ => panic!("bad spec {part}"),
        }
    }
    e
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// `want` lists the queue as `id` (go) or `id!reason` (blocked, reason = WhyNot text).
#[track_caller]
fn check(catalog: &[&str], approved: &[&str], wanted: &[&str], installed: &[&str], want: &[&str]) {
    let patches: Vec<PatchEntry> = catalog.iter().map(|s| p(s)).collect();
    let graph = DepGraph::new(&patches, &set(approved));
    let wanted: Vec<&PatchEntry> = wanted
        .iter()
        .map(|w| patches.iter().find(|p| p.id == *w).unwrap())
        .collect();
    let got: Vec<String> = host_queue(&wanted, &set(installed), &graph)
        .into_iter()
        .map(|q| match q.status {
            Ok(()) => q.id,
            Err(w) => format!("{}!{w}", q.id),
        })
        .collect();
    assert_eq!(got, want, "catalog {catalog:?}, wanted {wanted:?}");
}

#[test]
fn requires_orders_installs() {
    let cat = ["a", "b: requires a", "c: requires b", "d"];
    // Urgency order is kept where requires allow it.
    check(&cat, &[], &["c", "b", "a", "d"], &[], &["a", "b", "c", "d"]);
    check(&cat, &[], &["d", "a"], &[], &["d", "a"]);
    // Already installed requirement.
    check(&cat, &[], &["b"], &["a"], &["b"]);
    // Missing requirement (not installed, not queued).
    check(&cat, &[], &["c"], &["a"], &["c!requires b first"]);
    // A blocked requirement blocks what needs it.
    check(
        &["a: conflicts z", "b: requires a", "z"],
        &[],
        &["b", "a"],
        &["z"],
        &["a!conflicts with z", "b!requires a first"],
    );
    // Diamond.
    check(
        &["a", "b: requires a", "c: requires a", "d: requires b, c"],
        &[],
        &["d", "c", "b", "a"],
        &[],
        &["a", "c", "b", "d"],
    );
}

#[test]
fn requires_is_met_by_a_superseder() {
    let cat = ["old", "new: supersedes old", "app: requires old"];
    check(&cat, &["new"], &["app"], &["new"], &["app"]);
    check(&cat, &["new"], &["new", "app"], &[], &["new", "app"]);
    check(&cat, &["new"], &["app"], &[], &["app!requires old first"]);
}

#[test]
fn conflicts_block_either_way() {
    let cat = ["a: conflicts b", "b", "c"];
    check(&cat, &[], &["b"], &["a"], &["b!conflicts with a"]);
    check(&cat, &[], &["a"], &["b"], &["a!conflicts with b"]);
    // Between two queued patches the earlier (more urgent) one goes ahead.
    check(
        &cat,
        &[],
        &["b", "a", "c"],
        &[],
        &["b", "a!conflicts with b", "c"],
    );
    check(
        &cat,
        &[],
        &["a", "b", "c"],
        &[],
        &["a", "b!conflicts with a", "c"],
    );
}

#[test]
fn cycles_in_a_queue_are_reported_not_looped() {
    check(
        &["a: requires b", "b: requires a", "c"],
        &[],
        &["a", "b", "c"],
        &[],
        &[
            "c",
            "a!requires cycle: a -> b -> a",
            "b!requires cycle: a -> b -> a",
        ],
    );
}

#[track_caller]
fn check_retired(catalog: &[&str], approved: &[&str], want: &[(&str, &str)]) {
    let patches: Vec<PatchEntry> = catalog.iter().map(|s| p(s)).collect();
    let g = DepGraph::new(&patches, &set(approved));
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(g.replaced_by, want, "{catalog:?} approved {approved:?}");
    for (old, new) in &want {
        assert_eq!(
            g.check(old),
            Err(WhyNot::SupersededBy { patch: new.clone() })
        );
    }
}

#[test]
fn supersedes_retires_to_the_newest_approved() {
    let chain = ["v1", "v2: supersedes v1", "v3: supersedes v2"];
    check_retired(&chain, &[], &[]);
    check_retired(&chain, &["v1"], &[]);
    check_retired(&chain, &["v2"], &[("v1", "v2")]);
    check_retired(&chain, &["v3"], &[("v1", "v3"), ("v2", "v3")]);
    check_retired(&chain, &["v2", "v3"], &[("v1", "v3"), ("v2", "v3")]);
    // A superseded id absent from the catalog is still retired.
    check_retired(&["n: supersedes gone"], &["n"], &[("gone", "n")]);
    // Two independent replacements: the later release wins.
    check_retired(
        &[
            "old",
            "x: supersedes old; released 1",
            "y: supersedes old; released 2",
        ],
        &["x", "y"],
        &[("old", "y")],
    );
    let g = DepGraph::new(&chain.map(p), &set(&["v3"]));
    assert_eq!(g.check("v3"), Ok(()));
    // A host with v3 has what v1 provided; one with v1 has not got v3.
    assert!(g.provided("v1", &set(&["v3"])));
    assert!(!g.provided("v3", &set(&["v1"])));
}

#[track_caller]
fn check_cycle(catalog: &[&str], want: Option<&str>) {
    let patches: Vec<PatchEntry> = catalog.iter().map(|s| p(s)).collect();
    assert_eq!(
        check_import(&patches)
            .map_err(|c| c.to_string())
            .err()
            .as_deref(),
        want,
        "{catalog:?}"
    );
}

#[test]
fn import_refuses_cycles_and_names_them() {
    check_cycle(&["a", "b: requires a", "c: requires a, b"], None);
    check_cycle(&["a: requires a"], Some("requires cycle: a -> a"));
    check_cycle(
        &["d", "a: requires d, b", "b: requires c", "c: requires a"],
        Some("requires cycle: a -> b -> c -> a"),
    );
    check_cycle(
        &["x: supersedes y", "y: supersedes x"],
        Some("supersedes cycle: x -> y -> x"),
    );
    // References to absent patches are not cycles.
    check_cycle(&["a: requires zzz; supersedes yyy"], None);
    // A long chain does not overflow the stack.
    let long: Vec<String> = (0..20_000)
        .map(|i| {
            if i == 0 {
                "p0".to_string()
            } else {
                format!("p{i}: requires p{}", i - 1)
            }
        })
        .collect();
    let refs: Vec<&str> = long.iter().map(String::as_str).collect();
    check_cycle(&refs, None);
}
