//! A small DNS server for tests: UDP on a loopback address, A and AAAA answers from a
//! table the test edits while it runs. Used by `legacy::dns`'s unit tests and, through
//! `#[path]`, by the integration tests that resolve DNS-name peers for a real fence.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// What the test server answers for one name.
#[derive(Clone, Debug)]
pub(crate) enum Zone {
    Records(Vec<(IpAddr, u32)>),
    NxDomain,
    /// Never answers (the lookup times out).
    Silent,
}

/// A small DNS server on 127.0.0.1 (UDP) answering A and AAAA from `zones`.
pub(crate) struct TestDns {
    pub addr: SocketAddr,
    pub zones: Arc<Mutex<HashMap<String, Zone>>>,
    pub queries: Arc<Mutex<usize>>,
}

/// The name of a query packet (lower case, without the final dot), its type and the
/// end of its question section.
fn question(p: &[u8]) -> Option<(String, u16, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let n = *p.get(i)? as usize;
        i += 1;
        if n == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(p.get(i..i + n)?).to_ascii_lowercase());
        i += n;
    }
    let qtype = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

/// The answer packet to `query` (hand-written: header, the question, answer records
/// pointing at the question's name).
fn answer(query: &[u8], zone: Option<&Zone>) -> Option<Vec<u8>> {
    let (_, qtype, end) = question(query)?;
    let (rcode, records): (u8, Vec<(IpAddr, u32)>) = match zone {
        None | Some(Zone::NxDomain) => (3, vec![]),
        Some(Zone::Silent) => return None,
        Some(Zone::Records(r)) => (
            0,
            r.iter()
                .filter(|(a, _)| (qtype == 1 && a.is_ipv4()) || (qtype == 28 && a.is_ipv6()))
                .cloned()
                .collect(),
        ),
    };
    let mut out = Vec::new();
    out.extend_from_slice(&query[0..2]);
    out.extend_from_slice(&[0x81, 0x80 | rcode]);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    for (addr, ttl) in records {
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        match addr {
            IpAddr::V4(a) => {
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&a.octets());
            }
        }
    }
    Some(out)
}

impl TestDns {
    /// Starts the server on `bind` (127.0.0.1:0 picks a port) on the current runtime.
    pub(crate) async fn start(bind: &str) -> TestDns {
        let sock = tokio::net::UdpSocket::bind(bind).await.unwrap();
        let addr = sock.local_addr().unwrap();
        let zones: Arc<Mutex<HashMap<String, Zone>>> = Arc::default();
        let queries: Arc<Mutex<usize>> = Arc::default();
        let (z, q) = (zones.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let pkt = &buf[..n];
                let reply = question(pkt).and_then(|(name, _, _)| {
                    *q.lock().unwrap() += 1;
                    let zone = z.lock().unwrap().get(&name).cloned();
                    answer(pkt, zone.as_ref())
                });
                if let Some(r) = reply {
                    let _ = sock.send_to(&r, from).await;
                }
            }
        });
        TestDns {
            addr,
            zones,
            queries,
        }
    }

    pub(crate) fn set(&self, name: &str, zone: Zone) {
        self.zones.lock().unwrap().insert(name.to_string(), zone);
    }
}
