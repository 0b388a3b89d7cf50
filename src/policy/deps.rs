//! Dependencies between patches (DESIGN §4 "Dependencies"): `requires` orders installs
//! on a host, `supersedes` retires older patches, `conflicts` block with a reason, and
//! cycles are refused at import.
//!
//! Decisions where DESIGN is silent:
//! - A requirement counts as met when the required patch, or any patch that supersedes
//!   it (transitively), is installed or queued earlier on the host.
//! - Approving a patch retires every patch it supersedes, transitively; the retired
//!   patch's replacement is the newest approved superseder (the one no other approved
//!   patch supersedes; ties go to the latest `released`, then the id). A host that
//!   lacks the retired patch is offered the replacement instead.
//! - `conflicts` is symmetric. Between two queued patches the one earlier in the install
//!   order (requires first, then the caller's priority order) goes ahead.
//! - `supersedes` cycles are refused at import like `requires` cycles.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::why::WhyNot;
use crate::feed::catalog::PatchEntry;

/// Which reference a cycle runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    Requires,
    Supersedes,
}

/// A dependency cycle, as a path that starts and ends with the same id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} cycle: {}", match .edge { Edge::Requires => "requires", Edge::Supersedes => "supersedes" }, .path.join(" -> "))]
pub struct Cycle {
    pub edge: Edge,
    pub path: Vec<String>,
}

fn refs(p: &PatchEntry, edge: Edge) -> &[String] {
    match edge {
        Edge::Requires => &p.requires,
        Edge::Supersedes => &p.supersedes,
    }
}

/// The first cycle along `edge`, if any. Iterative depth-first search (a hostile catalog
/// with a long chain cannot overflow the stack); references to absent ids are ignored.
pub fn find_cycle(patches: &[PatchEntry], edge: Edge) -> Option<Cycle> {
    let index: BTreeMap<&str, usize> = patches
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let next: Vec<Vec<usize>> = patches
        .iter()
        .map(|p| {
            refs(p, edge)
                .iter()
                .filter_map(|r| index.get(r.as_str()).copied())
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; patches.len()];
    for start in 0..patches.len() {
        if state[start] != 0 {
            continue;
        }
        state[start] = 1;
        let mut stack = vec![(start, 0usize)];
        while let Some((node, i)) = stack.last().copied() {
            let Some(&to) = next[node].get(i) else {
                state[node] = 2;
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match state[to] {
                0 => {
                    state[to] = 1;
                    stack.push((to, 0));
                }
                1 => {
                    let from = stack.iter().position(|&(n, _)| n == to).unwrap_or(0);
                    let mut path: Vec<String> = stack[from..]
                        .iter()
                        .map(|&(n, _)| patches[n].id.clone())
                        .collect();
                    path.push(patches[to].id.clone());
                    return Some(Cycle { edge, path });
                }
                _ => {}
            }
        }
    }
    None
}

/// The import-time check: no `requires` and no `supersedes` cycle.
pub fn check_import(patches: &[PatchEntry]) -> Result<(), Cycle> {
    match find_cycle(patches, Edge::Requires).or_else(|| find_cycle(patches, Edge::Supersedes)) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// The catalog's references resolved for one set of approvals: which patches are
/// retired by approved newer ones, what supersedes what, and what conflicts with what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DepGraph {
    /// Retired patch id -> the approved patch that replaces it.
    pub replaced_by: BTreeMap<String, String>,
    /// Patch id -> every patch it supersedes, transitively (approved or not).
    covers: BTreeMap<String, BTreeSet<String>>,
    /// Patch id -> the patches it conflicts with, either way round.
    conflicts: BTreeMap<String, BTreeSet<String>>,
}

impl DepGraph {
    /// Works out the retirements for the catalog `patches` and the `approved` ids.
    pub fn new(patches: &[PatchEntry], approved: &BTreeSet<String>) -> Self {
        let by_id: BTreeMap<&str, &PatchEntry> =
            patches.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut covers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in patches {
            // Transitive closure by a bounded walk (each id is visited once).
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&str> = p.supersedes.iter().map(String::as_str).collect();
            while let Some(id) = todo.pop() {
                if id == p.id || !seen.insert(id.to_string()) {
                    continue;
                }
                if let Some(q) = by_id.get(id) {
                    todo.extend(q.supersedes.iter().map(String::as_str));
                }
            }
            covers.insert(p.id.clone(), seen);
        }
        let approved_entries: Vec<&PatchEntry> = patches
            .iter()
            .filter(|p| approved.contains(&p.id))
            .collect();
        // The newest approved patches: no other approved patch supersedes them.
        let newest: Vec<&PatchEntry> = approved_entries
            .iter()
            .copied()
            .filter(|p| {
                !approved_entries
                    .iter()
                    .any(|q| q.id != p.id && covers[&q.id].contains(&p.id))
            })
            .collect();
        let mut replaced_by: BTreeMap<String, String> = BTreeMap::new();
        for n in &newest {
            for old in &covers[&n.id] {
                let better = match replaced_by.get(old).and_then(|cur| by_id.get(cur.as_str())) {
                    Some(cur) => (n.released, &n.id) > (cur.released, &cur.id),
                    None => true,
                };
                if better {
                    replaced_by.insert(old.clone(), n.id.clone());
                }
            }
        }
        let mut conflicts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in patches {
            for c in &p.conflicts {
                conflicts.entry(p.id.clone()).or_default().insert(c.clone());
                conflicts.entry(c.clone()).or_default().insert(p.id.clone());
            }
        }
        Self {
            replaced_by,
            covers,
            conflicts,
        }
    }

    /// `Err(SupersededBy)` when `id` is retired.
    pub fn check(&self, id: &str) -> Result<(), WhyNot> {
        match self.replaced_by.get(id) {
            Some(newer) => Err(WhyNot::SupersededBy {
                patch: newer.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether `a` and `b` conflict (either may name the other).
    pub fn conflict(&self, a: &str, b: &str) -> bool {
        self.conflicts.get(a).is_some_and(|c| c.contains(b))
    }

    /// Whether `id` is provided by one of `present` (itself, or a superseder).
    pub fn provided(&self, id: &str, present: &BTreeSet<String>) -> bool {
        present.contains(id)
            || present
                .iter()
                .any(|p| self.covers.get(p).is_some_and(|c| c.contains(id)))
    }
}

/// One patch in a host's queue: install now (`Ok`) or blocked, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    pub id: String,
    pub status: Result<(), WhyNot>,
}

/// Orders `wanted` (the patches to install on one host, most urgent first) so that
/// every patch comes after what it requires, and blocks those whose requirements are
/// missing or that conflict with something installed or queued earlier.
/// `installed` holds the host's installed patch ids.
pub fn host_queue(
    wanted: &[&PatchEntry],
    installed: &BTreeSet<String>,
    deps: &DepGraph,
) -> Vec<Queued> {
    let index: BTreeMap<&str, usize> = wanted
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    // Kahn's algorithm, taking the most urgent ready patch each round (stable order).
    let mut indegree = vec![0usize; wanted.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); wanted.len()];
    for (i, p) in wanted.iter().enumerate() {
        for r in &p.requires {
            if let Some(&j) = index.get(r.as_str())
                && j != i
            {
                indegree[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..wanted.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(wanted.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    let mut present = installed.clone();
    let mut going: Vec<&PatchEntry> = Vec::new();
    for &i in &order {
        let p = wanted[i];
        let status = if let Some(r) = p.requires.iter().find(|r| !deps.provided(r, &present)) {
            Err(WhyNot::Requires { patch: r.clone() })
        } else if let Some(c) = installed.iter().find(|c| deps.conflict(&p.id, c)) {
            Err(WhyNot::Conflicts { patch: c.clone() })
        } else if let Some(other) = going.iter().find(|o| deps.conflict(&p.id, &o.id)) {
            Err(WhyNot::Conflicts {
                patch: other.id.clone(),
            })
        } else {
            Ok(())
        };
        if status.is_ok() {
            present.insert(p.id.clone());
            going.push(p);
        }
        out.push(Queued {
            id: p.id.clone(),
            status,
        });
    }
    // Patches left out by Kahn's algorithm sit on a requires cycle.
    let placed: BTreeSet<usize> = order.into_iter().collect();
    let stuck: Vec<PatchEntry> = (0..wanted.len())
        .filter(|i| !placed.contains(i))
        .map(|i| wanted[i].clone())
        .collect();
    let path = find_cycle(&stuck, Edge::Requires)
        .map(|c| c.path)
        .unwrap_or_default();
    for p in &stuck {
        out.push(Queued {
            id: p.id.clone(),
            status: Err(WhyNot::RequiresCycle { path: path.clone() }),
        });
    }
    out
}

#[cfg(test)]
mod tests;
