//! Rendering the legacy segment's fence: one nftables table `inet patchward`.
//!
//! Pure: hosts, named sets and DNS answers in, nft text out, always the same text for
//! the same input (everything is sorted), so `segment plan` diffs are meaningful and
//! `patchward-netd` can tell an unchanged ruleset by its hash.
//!
//! Shape, per address family that has legacy hosts (4 and 6 are separate because nft
//! set types are):
//!
//! - `legacy4`: the legacy hosts' addresses.
//! - `allow_in4`, `allow_out4`: the allow-list as concatenated interval sets
//!   `saddr . daddr . l4proto . dport`; an `in` flow is `peer . host`, an `out` flow
//!   `host . peer`. CIDRs and port ranges are intervals, made disjoint first
//!   (`nft_elems`: the kernel refuses overlapping elements). Named sets are expanded
//!   into them (a set element cannot refer to another set); DNS answers become elements
//!   with a `timeout`, so they leave the set when the record expires even if nobody
//!   re-renders. `allow_in4_icmp`, `allow_out4_icmp` are the same without ports
//!   (`th dport` means nothing for ICMP).
//! - the forward chain accepts established/related, then the allow-lists; whatever else
//!   comes from or goes to a legacy host is counted in the host's named counter
//!   (`drop_out_HOST`, `drop_in_HOST`, chosen by a counter map) and sent to `blocked4`.
//! - `blocked4`: remembers each refused (source, destination, protocol, port) in a
//!   dynamic set with a per-element counter (at most 65,536 keys, each forgotten an hour
//!   after its last packet), logs at most 10 packets a minute, and drops. This gives the
//!   per (host, peer, port) counts the monitor reports without one rule or counter per
//!   combination, so the ruleset grows with the allow-list, not with what is blocked.
//!
//! Traffic of other hosts is not touched (the chain's policy is accept), and nothing
//! outside the table is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use super::nft_elems::Elements;

use super::flows::{
    Direction, DnsAnswers, FlowError, NamedSets, Peer, PortRange, Proto, SegmentHost, valid_name,
    validate_flows,
};

pub use super::nft_diff::diff;
pub use super::nft_export::{flows_csv, sets_csv};

/// The table's family and name; `patchward-netd` accepts nothing else.
pub const TABLE: &str = "inet patchward";
/// Keys the dynamic `blocked` sets keep at most, per family.
pub const BLOCKED_SET_SIZE: u32 = 65_536;

/// Everything the renderer needs.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub hosts: &'a [SegmentHost],
    pub sets: &'a NamedSets,
    pub dns: &'a DnsAnswers,
}

/// Why a segment cannot be rendered. Nothing is rendered then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "host name `{0}` cannot name nft counters: use 1-48 of a-z, 0-9 and -, starting with a letter"
    )]
    HostName(String),
    #[error("host `{0}` is listed twice")]
    DuplicateHost(String),
    #[error("host `{0}` has no addresses: a fence needs the host's IP addresses")]
    NoAddresses(String),
    #[error("address {address} belongs to both `{first}` and `{second}`")]
    SharedAddress {
        address: IpAddr,
        first: String,
        second: String,
    },
    #[error("host `{host}`: {cause}")]
    Flows { host: String, cause: FlowError },
    #[error("host `{host}`, flow `{flow}`: no set `@{set}` is defined (defined: {known})")]
    UnknownSet {
        host: String,
        flow: String,
        set: String,
        known: String,
    },
    #[error("set `@{set}`: `{member}` has host bits set; did you mean {}?", member.trunc())]
    SetMember { set: String, member: IpNet },
    #[error(
        "host `{host}`, flow `{flow}`: the peer is IPv{peer_family} but the host has no IPv{peer_family} address"
    )]
    NoSameFamily {
        host: String,
        flow: String,
        peer_family: u8,
    },
}

/// The whole table as nft text, or why not.
pub fn render(seg: Segment<'_>) -> Result<String, RenderError> {
    for (name, members) in seg.sets {
        if let Some(m) = members.iter().find(|m| m.trunc() != **m) {
            return Err(RenderError::SetMember {
                set: name.clone(),
                member: *m,
            });
        }
    }
    let mut hosts: Vec<&SegmentHost> = seg.hosts.iter().collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut owner: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for pair in hosts.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(RenderError::DuplicateHost(pair[0].name.clone()));
        }
    }
    for h in &hosts {
        if !valid_name(&h.name) {
            return Err(RenderError::HostName(h.name.clone()));
        }
        if h.addresses.is_empty() {
            return Err(RenderError::NoAddresses(h.name.clone()));
        }
        validate_flows(&h.flows).map_err(|cause| RenderError::Flows {
            host: h.name.clone(),
            cause,
        })?;
        for a in &h.addresses {
            if let Some(first) = owner.insert(*a, &h.name)
                && first != h.name
            {
                return Err(RenderError::SharedAddress {
                    address: *a,
                    first: first.to_string(),
                    second: h.name.clone(),
                });
            }
        }
    }
    let mut elems = Elements::default();
    for h in &hosts {
        expand_host(h, seg, &mut elems)?;
    }

    let mut out = String::from("table inet patchward {\n");
    if !hosts.is_empty() {
        for h in &hosts {
            let _ = write!(out, "\tcounter drop_in_{0} {{\n\t}}\n\n", h.name);
            let _ = write!(out, "\tcounter drop_out_{0} {{\n\t}}\n\n", h.name);
        }
        let families: Vec<Family> = [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| owner.keys().any(|a| f.has(a)))
            .collect();
        for f in &families {
            render_family_sets(&mut out, *f, &owner, &elems);
        }
        out.push_str("\tchain forward {\n");
        out.push_str("\t\ttype filter hook forward priority filter; policy accept;\n");
        out.push_str("\t\tct state established,related accept\n");
        for f in &families {
            let (ip, n, icmp) = (f.ip(), f.n(), f.icmp());
            for dir in ["in", "out"] {
                let _ = writeln!(
                    out,
                    "\t\t{ip} saddr . {ip} daddr . meta l4proto . th dport @allow_{dir}{n} accept"
                );
            }
            for dir in ["in", "out"] {
                let _ = writeln!(
                    out,
                    "\t\tmeta l4proto {icmp} {ip} saddr . {ip} daddr @allow_{dir}{n}_icmp accept"
                );
            }
            let _ = writeln!(
                out,
                "\t\t{ip} saddr @legacy{n} counter name {ip} saddr map @drop_out{n} goto blocked{n}"
            );
            let _ = writeln!(
                out,
                "\t\t{ip} daddr @legacy{n} counter name {ip} daddr map @drop_in{n} goto blocked{n}"
            );
        }
        out.push_str("\t}\n");
        for f in &families {
            let (ip, n) = (f.ip(), f.n());
            let _ = write!(
                out,
                "\n\tchain blocked{n} {{\n\
                 \t\tmeta l4proto {{ tcp, udp }} update @blocked{n} {{ {ip} saddr . {ip} daddr . meta l4proto . th dport counter }}\n\
                 \t\tmeta l4proto != {{ tcp, udp }} update @blocked{n}_other {{ {ip} saddr . {ip} daddr . meta l4proto counter }}\n\
                 \t\tlimit rate 10/minute log prefix \"patchward blocked: \" level info\n\
                 \t\tdrop\n\
                 \t}}\n"
            );
        }
    }
    out.push_str("}\n");
    Ok(out)
}

/// Adds one host's flows to the allow-list elements.
fn expand_host(h: &SegmentHost, seg: Segment<'_>, elems: &mut Elements) -> Result<(), RenderError> {
    let own: Vec<IpNet> = h.addresses.iter().map(|a| IpNet::from(*a)).collect();
    for flow in &h.flows {
        let peers: Vec<(IpNet, Option<u64>)> = match &flow.peer {
            Peer::Addr(a) => vec![(IpNet::from(*a), None)],
            Peer::Net(n) => vec![(*n, None)],
            Peer::Set(name) => match seg.sets.get(name) {
                Some(members) => members.iter().map(|m| (*m, None)).collect(),
                None => {
                    let known: Vec<String> = seg.sets.keys().map(|k| format!("@{k}")).collect();
                    return Err(RenderError::UnknownSet {
                        host: h.name.clone(),
                        flow: flow.to_string(),
                        set: name.clone(),
                        known: if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        },
                    });
                }
            },
            // A name that does not resolve now allows nothing now; not an error.
            Peer::Dns(name) => seg
                .dns
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(_, ttl)| ttl.as_secs() > 0)
                .map(|(a, ttl)| (IpNet::from(*a), Some(ttl.as_secs())))
                .collect(),
        };
        let mut paired = false;
        for host_net in &own {
            for (peer, timeout) in &peers {
                if host_net.addr().is_ipv4() != peer.addr().is_ipv4() {
                    continue;
                }
                paired = true;
                let ranges: Vec<Option<PortRange>> = if flow.proto == Proto::Icmp {
                    vec![None]
                } else {
                    flow.ports.iter().copied().map(Some).collect()
                };
                for ports in ranges {
                    elems.add(
                        flow.direction,
                        host_net.addr(),
                        flow.proto,
                        *peer,
                        ports,
                        *timeout,
                    );
                }
            }
        }
        if let (false, Peer::Addr(_) | Peer::Net(_)) = (paired, &flow.peer) {
            return Err(RenderError::NoSameFamily {
                host: h.name.clone(),
                flow: flow.to_string(),
                peer_family: if peers[0].0.addr().is_ipv4() { 4 } else { 6 },
            });
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn has(self, a: &IpAddr) -> bool {
        a.is_ipv4() == (self == Family::V4)
    }
    fn n(self) -> u8 {
        if self == Family::V4 { 4 } else { 6 }
    }
    fn ip(self) -> &'static str {
        if self == Family::V4 { "ip" } else { "ip6" }
    }
    fn icmp(self) -> &'static str {
        if self == Family::V4 {
            "icmp"
        } else {
            "ipv6-icmp"
        }
    }
    fn addr_type(self) -> &'static str {
        if self == Family::V4 {
            "ipv4_addr"
        } else {
            "ipv6_addr"
        }
    }
}

fn render_family_sets(
    out: &mut String,
    f: Family,
    owner: &BTreeMap<IpAddr, &str>,
    elems: &Elements,
) {
    let (n, t) = (f.n(), f.addr_type());
    let addrs: Vec<(&IpAddr, &&str)> = owner.iter().filter(|(a, _)| f.has(a)).collect();
    let legacy: Vec<String> = addrs.iter().map(|(a, _)| a.to_string()).collect();
    set_block(
        out,
        &format!("set legacy{n}"),
        &[format!("type {t}")],
        &legacy,
    );
    for dir in ["in", "out"] {
        let items: Vec<String> = addrs
            .iter()
            .map(|(a, h)| format!("{a} : \"drop_{dir}_{h}\""))
            .collect();
        set_block(
            out,
            &format!("map drop_{dir}{n}"),
            &[format!("type {t} : counter")],
            &items,
        );
    }
    let interval = "flags interval,timeout".to_string();
    let four = format!("type {t} . {t} . inet_proto . inet_service");
    let two = format!("type {t} . {t}");
    for (dir, name) in [(Direction::In, "in"), (Direction::Out, "out")] {
        let ported = elems.lines(f == Family::V4, dir, true);
        set_block(
            out,
            &format!("set allow_{name}{n}"),
            &[four.clone(), interval.clone()],
            &ported,
        );
        let icmp = elems.lines(f == Family::V4, dir, false);
        set_block(
            out,
            &format!("set allow_{name}{n}_icmp"),
            &[two.clone(), interval.clone()],
            &icmp,
        );
    }
    let dynamic = [
        format!("size {BLOCKED_SET_SIZE}"),
        "flags dynamic,timeout".to_string(),
        "timeout 1h".to_string(),
    ];
    let mut lines = vec![four];
    lines.extend(dynamic.iter().cloned());
    set_block(out, &format!("set blocked{n}"), &lines, &[]);
    let mut lines = vec![format!("type {t} . {t} . inet_proto")];
    lines.extend(dynamic.iter().cloned());
    set_block(out, &format!("set blocked{n}_other"), &lines, &[]);
}

/// A set or map with its declaration lines and its elements, one per line.
fn set_block(out: &mut String, head: &str, decl: &[String], elements: &[String]) {
    let _ = writeln!(out, "\t{head} {{");
    for d in decl {
        let _ = writeln!(out, "\t\t{d}");
    }
    if !elements.is_empty() {
        out.push_str("\t\telements = {\n");
        let last = elements.len() - 1;
        for (i, e) in elements.iter().enumerate() {
            let _ = writeln!(out, "\t\t\t{e}{}", if i == last { "" } else { "," });
        }
        out.push_str("\t\t}\n");
    }
    out.push_str("\t}\n\n");
}

#[cfg(test)]
#[path = "nft_tests.rs"]
mod tests;
