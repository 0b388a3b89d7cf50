//! Facts about this machine the operator needs to reach the appliance: its host name
//! (also a name in the generated TLS certificate) and its non-loopback IP addresses
//! (for the URLs `patchward init` prints). Read from /proc; nothing is sent anywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kernel's host name, or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The machine's own IPv4 addresses from `/proc/net/fib_trie` (the `/32 host LOCAL`
/// entries), without loopback.
fn ipv4_from_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(a) = last.take()
            && !a.is_loopback()
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// Global-scope IPv6 addresses from `/proc/net/if_inet6`.
fn ipv6_from_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // address, ifindex, prefix length, scope, flags, name; scope 00 = global.
        if f.len() < 6 || f[3] != "00" || f[0].len() != 32 {
            continue;
        }
        if let Ok(bits) = u128::from_str_radix(f[0], 16) {
            let a = Ipv6Addr::from(bits);
            if !a.is_loopback() && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// This machine's non-loopback addresses, IPv4 first.
pub fn local_addresses() -> Vec<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    ipv4_from_fib_trie(&v4)
        .into_iter()
        .map(IpAddr::V4)
        .chain(ipv6_from_if_inet6(&v6).into_iter().map(IpAddr::V6))
        .collect()
}

/// The URLs an operator can open for a listener bound to `addr` with scheme `scheme`:
/// the address itself, or for a wildcard address the host name and every local address.
pub fn urls(scheme: &str, addr: std::net::SocketAddr) -> Vec<String> {
    let fmt = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}/", addr.port()),
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{}/", addr.port()),
    };
    if !addr.ip().is_unspecified() {
        return vec![fmt(addr.ip())];
    }
    let mut out = vec![format!("{scheme}://{}:{}/", hostname(), addr.port())];
    out.extend(
        local_addresses()
            .into_iter()
            .filter(|ip| addr.is_ipv6() || ip.is_ipv4())
            .map(fmt),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_proc_files() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                    \x20    +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\n\
                    \x20    |-- 192.0.2.10\n              /32 host LOCAL\n\
                    \x20    |-- 192.0.2.255\n              /32 link BROADCAST\n\
                    Local:\n     |-- 192.0.2.10\n              /32 host LOCAL\n";
        assert_eq!(ipv4_from_fib_trie(trie), vec![Ipv4Addr::new(192, 0, 2, 10)]);
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
                     20010db8000000000000000000000007 02 40 00 00     eth0\n\
                     fe800000000000000000000000000007 02 40 20 80     eth0\n";
        assert_eq!(
            ipv6_from_if_inet6(inet6),
            vec!["2001:db8::7".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            urls("https", "127.0.0.1:8443".parse().unwrap()),
            vec!["https://127.0.0.1:8443/"]
        );
        assert!(urls("https", "[::]:8443".parse().unwrap())[0].ends_with(":8443/"));
    }
}
