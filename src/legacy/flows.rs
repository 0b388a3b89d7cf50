//! Flows: the allow-list of one legacy host, as people type it and as it is stored.
//!
//! A legacy host may talk only along the flows listed for it; the renderer
//! (`legacy::nft`) turns them into one nftables table and everything else is dropped.
//! This module is pure: it parses and validates the text form, and holds the plain
//! values the renderer takes (hosts, named sets, DNS answers), so the registry of
//! issue [9] can feed it from its tables later.
//!
//! The text form, one flow (also the stored form: serde reads and writes this text, so
//! what is stored was validated by the same parser):
//!
//! ```text
//! DIRECTION PROTO PEER [port PORTS] ["COMMENT"]
//!   DIRECTION  in (to the legacy host) | out (from it)
//!   PROTO      tcp | udp | icmp
//!   PEER       192.0.2.10 | 192.0.2.0/24 | 2001:db8::/32 | @lan-clients | backup.example.net
//!   PORTS      22,443,8000-8100   (tcp and udp need them; icmp takes none)
//!   COMMENT    printable text in double quotes, at most 200 characters
//! ```
//!
//! e.g. `in tcp 192.0.2.0/24 port 22,443,8000-8100 "admins and the web UI"`.
//! Ports are kept sorted with overlapping and adjacent ranges merged, so two spellings of
//! the same flow compare (and render) equal.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// At most this many flows per host: an allow-list longer than this is a network, not a
/// fence, and the limit keeps one host from growing the ruleset without bound.
pub const MAX_FLOWS_PER_HOST: usize = 256;
/// At most this many characters in a flow's comment.
pub const MAX_COMMENT_CHARS: usize = 200;
/// At most this many characters in a host or set name (they become nft object names).
pub const MAX_NAME_CHARS: usize = 48;

/// Named peer sets, defined once (e.g. `lan-clients`) and used by many flows.
pub type NamedSets = BTreeMap<String, Vec<IpNet>>;

/// DNS peers as the daemon resolved them: per name, each address with the time its
/// record has left. The renderer gives these elements an nft `timeout`.
pub type DnsAnswers = BTreeMap<String, Vec<(IpAddr, Duration)>>;

/// Which way a flow goes, seen from the legacy host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From the peer to the legacy host.
    In,
    /// From the legacy host to the peer.
    Out,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// The other end of a flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Addr(IpAddr),
    /// A network without host bits (`192.0.2.0/24`).
    Net(IpNet),
    /// A named set (`@lan-clients`), without the `@`.
    Set(String),
    /// A DNS name, resolved by the daemon (`DnsAnswers`).
    Dns(String),
}

/// An inclusive port range; a single port has `first == last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// One allowed flow of a legacy host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Flow {
    pub direction: Direction,
    pub proto: Proto,
    pub peer: Peer,
    /// Sorted, disjoint, non-adjacent; empty exactly for icmp.
    pub ports: Vec<PortRange>,
    pub comment: String,
}

/// A legacy host as the renderer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHost {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub flows: Vec<Flow>,
}

/// Why a flow (or a host's list of flows) was refused. Each message names the part that
/// is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("empty flow: expected `in|out tcp|udp|icmp PEER [port PORTS] [\"COMMENT\"]`")]
    Empty,
    #[error("unknown direction `{0}`: expected `in` (to the host) or `out` (from it)")]
    Direction(String),
    #[error("missing protocol after `{0}`: expected tcp, udp or icmp")]
    MissingProto(String),
    #[error("unknown protocol `{0}`: expected tcp, udp or icmp")]
    Proto(String),
    #[error("missing peer: expected an address, a CIDR, @SET or a DNS name")]
    MissingPeer,
    #[error("bad address `{0}`: expected an IPv4 or IPv6 address")]
    Address(String),
    #[error("bad CIDR `{text}`: {why}")]
    Cidr { text: String, why: String },
    #[error(
        "bad set name `{0}`: expected @ and 1-{MAX_NAME_CHARS} of a-z, 0-9 and -, starting with a letter"
    )]
    SetName(String),
    #[error("bad peer `{0}`: expected an address, a CIDR, @SET or a DNS name")]
    DnsName(String),
    #[error("{0} flows need ports: add `port 22` or `port 1-65535` for every port")]
    MissingPorts(&'static str),
    #[error("icmp has no ports: remove `port {0}`")]
    IcmpPorts(String),
    #[error("`port` needs a list: e.g. `port 22,443,8000-8100`")]
    EmptyPorts,
    #[error("bad port `{0}`: ports are 1-65535")]
    Port(String),
    #[error("reversed port range `{0}`: write the lower port first")]
    ReversedRange(String),
    #[error("unexpected `{0}`: after the peer only `port PORTS` and a \"COMMENT\" may follow")]
    Trailing(String),
    #[error("unterminated comment: it must end with `\"`")]
    UnterminatedComment,
    #[error("comment contains a control character (position {0}); use printable text only")]
    CommentControl(usize),
    #[error("comment is {0} characters long; at most {MAX_COMMENT_CHARS} are allowed")]
    CommentLength(usize),
    #[error("too many flows ({0}): a host may have at most {MAX_FLOWS_PER_HOST}")]
    TooMany(usize),
    #[error("flow {second} repeats flow {first} (`{text}`)")]
    Duplicate {
        first: usize,
        second: usize,
        text: String,
    },
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Net(n) => write!(f, "{n}"),
            Peer::Set(s) => write!(f, "@{s}"),
            Peer::Dns(d) => f.write_str(d),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// `22,443,8000-8100`
pub fn ports_text(ports: &[PortRange]) -> String {
    let parts: Vec<String> = ports.iter().map(PortRange::to_string).collect();
    parts.join(",")
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.direction, self.proto, self.peer)?;
        if !self.ports.is_empty() {
            write!(f, " port {}", ports_text(&self.ports))?;
        }
        if !self.comment.is_empty() {
            write!(f, " \"{}\"", self.comment)?;
        }
        Ok(())
    }
}

impl From<Flow> for String {
    fn from(f: Flow) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for Flow {
    type Error = FlowError;
    fn try_from(s: String) -> Result<Flow, FlowError> {
        s.parse()
    }
}

impl FromStr for Flow {
    type Err = FlowError;

    fn from_str(text: &str) -> Result<Flow, FlowError> {
        // The comment is the quoted tail; everything before it is whitespace-separated.
        let (head, comment) = match text.find('"') {
            Some(i) => {
                let rest = &text[i + 1..];
                let end = rest.find('"').ok_or(FlowError::UnterminatedComment)?;
                if !rest[end + 1..].trim().is_empty() {
                    return Err(FlowError::Trailing(rest[end + 1..].trim().to_string()));
                }
                (&text[..i], parse_comment(&rest[..end])?)
            }
            None => (text, String::new()),
        };
        let mut words = head.split_whitespace();
        let direction = match words.next() {
            None => return Err(FlowError::Empty),
            Some("in") => Direction::In,
            Some("out") => Direction::Out,
            Some(other) => return Err(FlowError::Direction(other.to_string())),
        };
        let proto = match words.next() {
            None => return Err(FlowError::MissingProto(direction.to_string())),
            Some("tcp") => Proto::Tcp,
            Some("udp") => Proto::Udp,
            Some("icmp") => Proto::Icmp,
            Some(other) => return Err(FlowError::Proto(other.to_string())),
        };
        let peer = parse_peer(words.next().ok_or(FlowError::MissingPeer)?)?;
        let ports = match words.next() {
            None => Vec::new(),
            Some("port") | Some("ports") => {
                let list = words.next().ok_or(FlowError::EmptyPorts)?;
                if proto == Proto::Icmp {
                    return Err(FlowError::IcmpPorts(list.to_string()));
                }
                parse_ports(list)?
            }
            Some(other) => return Err(FlowError::Trailing(other.to_string())),
        };
        if let Some(other) = words.next() {
            return Err(FlowError::Trailing(other.to_string()));
        }
        if ports.is_empty() && proto != Proto::Icmp {
            return Err(FlowError::MissingPorts(proto.as_str()));
        }
        Ok(Flow {
            direction,
            proto,
            peer,
            ports,
            comment,
        })
    }
}

fn parse_comment(text: &str) -> Result<String, FlowError> {
    if let Some((i, _)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(FlowError::CommentControl(i + 1));
    }
    let n = text.chars().count();
    if n > MAX_COMMENT_CHARS {
        return Err(FlowError::CommentLength(n));
    }
    Ok(text.trim().to_string())
}

/// An address, a CIDR, `@set` or a DNS name.
pub fn parse_peer(text: &str) -> Result<Peer, FlowError> {
    if let Some(name) = text.strip_prefix('@') {
        return if valid_name(name) {
            Ok(Peer::Set(name.to_string()))
        } else {
            Err(FlowError::SetName(text.to_string()))
        };
    }
    if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| FlowError::Cidr {
            text: text.to_string(),
            why: "expected ADDRESS/PREFIX, prefix at most 32 (IPv4) or 128 (IPv6)".into(),
        })?;
        if net.trunc() != net {
            return Err(FlowError::Cidr {
                text: text.to_string(),
                why: format!("host bits are set; did you mean {}?", net.trunc()),
            });
        }
        return Ok(Peer::Net(net));
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(Peer::Addr(addr));
    }
    // Something made of digits, dots and colons was meant as an address.
    if text.contains(':') || text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(FlowError::Address(text.to_string()));
    }
    if valid_dns_name(text) {
        Ok(Peer::Dns(text.to_ascii_lowercase()))
    } else {
        Err(FlowError::DnsName(text.to_string()))
    }
}

/// A host or set name usable as (part of) an nft object name: a letter, then letters,
/// digits and `-`, at most `MAX_NAME_CHARS`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= MAX_NAME_CHARS
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `22,443,8000-8100` into sorted, merged ranges.
pub fn parse_ports(list: &str) -> Result<Vec<PortRange>, FlowError> {
    let mut ranges = Vec::new();
    for item in list.split(',') {
        if item.is_empty() {
            return Err(FlowError::EmptyPorts);
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_port(a, item)?, parse_port(b, item)?),
            None => {
                let p = parse_port(item, item)?;
                (p, p)
            }
        };
        if first > last {
            return Err(FlowError::ReversedRange(item.to_string()));
        }
        ranges.push(PortRange { first, last });
    }
    ranges.sort();
    let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(prev) if u32::from(r.first) <= u32::from(prev.last) + 1 => {
                prev.last = prev.last.max(r.last);
            }
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

fn parse_port(text: &str, item: &str) -> Result<u16, FlowError> {
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(FlowError::Port(item.to_string())),
    }
}

/// Checks one host's list as a whole: the count, and no flow twice.
pub fn validate_flows(flows: &[Flow]) -> Result<(), FlowError> {
    if flows.len() > MAX_FLOWS_PER_HOST {
        return Err(FlowError::TooMany(flows.len()));
    }
    let mut seen: BTreeMap<(Direction, Proto, &Peer, &[PortRange]), usize> = BTreeMap::new();
    for (i, f) in flows.iter().enumerate() {
        let key = (f.direction, f.proto, &f.peer, f.ports.as_slice());
        if let Some(first) = seen.insert(key, i + 1) {
            return Err(FlowError::Duplicate {
                first,
                second: i + 1,
                text: f.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "flows_tests.rs"]
mod tests;
