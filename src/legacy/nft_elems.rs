//! Allow-list elements, made disjoint before they are rendered.
//!
//! The kernel's set type for concatenated intervals (pipapo) refuses an element whose
//! first or last key falls inside an element already in the set ("File exists"), so two
//! flows whose peers or ports overlap (`192.0.2.0/25` from a named set and `192.0.2.1`,
//! or `port 20-30` and `port 22`) cannot both be written as they are. The property test
//! in `tests/it/netns.rs` found this. Here every element is a box (peer range x port
//! range) in a group of one direction, one legacy address and one protocol (elements of
//! different groups can never overlap: the host side is a single address, and `in` and
//! `out` live in separate sets), and each new box is cut down to what no earlier box
//! covers. Boxes are taken permanent first, then by longest timeout, so an overlap gets
//! the most lasting element, as one nft element per key would. Pieces may be ranges that
//! are not CIDRs; nft writes those as `a-b`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::flows::{Direction, PortRange, Proto};

/// An inclusive range of addresses of one family, as integers.
type Span = (u128, u128);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Piece {
    peer: Span,
    /// (0, 0) for icmp.
    ports: (u16, u16),
    timeout: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    v4: bool,
    direction: Direction,
    host: IpAddr,
    proto: Proto,
}

/// All allow-list elements of a segment.
#[derive(Debug, Default)]
pub(super) struct Elements {
    groups: BTreeMap<Key, Vec<Piece>>,
}

impl Elements {
    /// One flow's element between `host` and `peer` (same family).
    pub(super) fn add(
        &mut self,
        direction: Direction,
        host: IpAddr,
        proto: Proto,
        peer: IpNet,
        ports: Option<PortRange>,
        timeout: Option<u64>,
    ) {
        let key = Key {
            v4: host.is_ipv4(),
            direction,
            host,
            proto,
        };
        let ports = ports.map_or((0, 0), |p| (p.first, p.last));
        self.groups.entry(key).or_default().push(Piece {
            peer: span(peer),
            ports,
            timeout,
        });
    }

    /// The rendered elements of one set: family, direction, and ported (tcp/udp) or not
    /// (icmp); sorted by host, protocol, peer, ports.
    pub(super) fn lines(&self, v4: bool, direction: Direction, ported: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (key, boxes) in &self.groups {
            if key.v4 != v4 || key.direction != direction || (key.proto != Proto::Icmp) != ported {
                continue;
            }
            let mut pieces = disjoint(boxes);
            pieces.sort();
            for p in pieces {
                let peer = span_text(p.peer, v4);
                let host = key.host.to_string();
                let (src, dst) = match direction {
                    Direction::In => (peer, host),
                    Direction::Out => (host, peer),
                };
                let mut line = if ported {
                    let ports = PortRange {
                        first: p.ports.0,
                        last: p.ports.1,
                    };
                    format!("{src} . {dst} . {} . {ports}", key.proto)
                } else {
                    format!("{src} . {dst}")
                };
                if let Some(t) = p.timeout {
                    line.push_str(&format!(" timeout {t}s"));
                }
                out.push(line);
            }
        }
        out
    }
}

fn span(n: IpNet) -> Span {
    match n {
        IpNet::V4(n) => (
            u32::from(n.network()).into(),
            u32::from(n.broadcast()).into(),
        ),
        IpNet::V6(n) => (n.network().into(), n.broadcast().into()),
    }
}

fn addr(x: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(x))
    }
}

/// `192.0.2.5`, `192.0.2.0/25` when the range is a prefix, else `192.0.2.1-192.0.2.9`.
fn span_text((lo, hi): Span, v4: bool) -> String {
    let bits: u32 = if v4 { 32 } else { 128 };
    if lo == hi {
        return addr(lo, v4).to_string();
    }
    let size_minus_one = hi - lo;
    // A prefix: the size is a power of two and the start is aligned to it.
    if (size_minus_one & (size_minus_one.wrapping_add(1))) == 0 && lo & size_minus_one == 0 {
        let host_bits = 128 - size_minus_one.leading_zeros();
        return format!("{}/{}", addr(lo, v4), bits - host_bits);
    }
    format!("{}-{}", addr(lo, v4), addr(hi, v4))
}

/// The boxes cut so that none overlaps another, most lasting first.
fn disjoint(boxes: &[Piece]) -> Vec<Piece> {
    let mut order: Vec<Piece> = boxes.to_vec();
    // Permanent (None) first, then the longest timeout; ties in a fixed order.
    order.sort_by_key(|p| (p.timeout.map_or(0, |t| u64::MAX - t), p.peer, p.ports));
    let mut done: Vec<Piece> = Vec::new();
    for b in order {
        let mut pieces = vec![b];
        for d in &done {
            pieces = pieces.into_iter().flat_map(|p| subtract(p, d)).collect();
            if pieces.is_empty() {
                break;
            }
        }
        done.extend(pieces);
    }
    done
}

/// `a` without what `b` covers: at most four boxes.
fn subtract(a: Piece, b: &Piece) -> Vec<Piece> {
    let overlap = |x: (u128, u128), y: (u128, u128)| x.0 <= y.1 && y.0 <= x.1;
    let (ap, bp) = (
        (a.ports.0 as u128, a.ports.1 as u128),
        (b.ports.0 as u128, b.ports.1 as u128),
    );
    if !overlap(a.peer, b.peer) || !overlap(ap, bp) {
        return vec![a];
    }
    let mut out = Vec::new();
    if a.peer.0 < b.peer.0 {
        out.push(Piece {
            peer: (a.peer.0, b.peer.0 - 1),
            ..a
        });
    }
    if a.peer.1 > b.peer.1 {
        out.push(Piece {
            peer: (b.peer.1 + 1, a.peer.1),
            ..a
        });
    }
    let middle = (a.peer.0.max(b.peer.0), a.peer.1.min(b.peer.1));
    if a.ports.0 < b.ports.0 {
        out.push(Piece {
            peer: middle,
            ports: (a.ports.0, b.ports.0 - 1),
            ..a
        });
    }
    if a.ports.1 > b.ports.1 {
        out.push(Piece {
            peer: middle,
            ports: (b.ports.1 + 1, a.ports.1),
            ..a
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (peer, ports, timeout) of `in` flows to one host; icmp without ports.
    type TestFlow<'a> = (&'a str, Option<(u16, u16)>, Option<u64>);

    fn lines(flows: &[TestFlow<'_>]) -> Vec<String> {
        let mut e = Elements::default();
        for (peer, ports, timeout) in flows {
            let ports = ports.map(|(first, last)| PortRange { first, last });
            let proto = if ports.is_some() {
                Proto::Tcp
            } else {
                Proto::Icmp
            };
            let host = "198.51.100.10".parse().unwrap();
            e.add(
                Direction::In,
                host,
                proto,
                peer.parse().unwrap(),
                ports,
                *timeout,
            );
        }
        let mut all = e.lines(true, Direction::In, true);
        all.extend(e.lines(true, Direction::In, false));
        all
    }

    #[test]
    fn overlapping_boxes_are_cut_into_disjoint_pieces() {
        // An address inside a CIDR, same port: the CIDR covers it.
        assert_eq!(
            lines(&[
                ("192.0.2.1/32", Some((22, 22)), None),
                ("192.0.2.0/25", Some((22, 22)), None)
            ]),
            ["192.0.2.0/25 . 198.51.100.10 . tcp . 22"]
        );
        // Overlapping ports: the second range keeps what the first does not cover.
        assert_eq!(
            lines(&[
                ("192.0.2.0/24", Some((20, 30)), None),
                ("192.0.2.5/32", Some((25, 40)), None)
            ]),
            [
                "192.0.2.0/24 . 198.51.100.10 . tcp . 20-30",
                "192.0.2.5 . 198.51.100.10 . tcp . 31-40",
            ]
        );
        // A CIDR with a hole punched by an earlier (permanent) element: ranges, not CIDRs.
        assert_eq!(
            lines(&[
                ("192.0.2.5/32", None, None),
                ("192.0.2.0/28", None, Some(60))
            ]),
            [
                "192.0.2.0-192.0.2.4 . 198.51.100.10 timeout 60s",
                "192.0.2.5 . 198.51.100.10",
                "192.0.2.6-192.0.2.15 . 198.51.100.10 timeout 60s",
            ]
        );
        // The longer timeout wins the overlap; identical boxes collapse.
        assert_eq!(
            lines(&[
                ("192.0.2.7/32", Some((873, 873)), Some(30)),
                ("192.0.2.7/32", Some((873, 873)), Some(300)),
                ("192.0.2.7/32", Some((873, 873)), Some(300)),
            ]),
            ["192.0.2.7 . 198.51.100.10 . tcp . 873 timeout 300s"]
        );
    }

    #[test]
    fn spans_print_as_addresses_prefixes_or_ranges() {
        assert_eq!(
            span_text(span("0.0.0.0/0".parse().unwrap()), true),
            "0.0.0.0/0"
        );
        assert_eq!(span_text(span("::/0".parse().unwrap()), false), "::/0");
        assert_eq!(
            span_text(span("2001:db8::/32".parse().unwrap()), false),
            "2001:db8::/32"
        );
        assert_eq!(span_text((1, 1), true), "0.0.0.1");
        assert_eq!(span_text((2, 5), true), "0.0.0.2-0.0.0.5");
        assert_eq!(span_text((4, 7), true), "0.0.0.4/30");
    }
}
