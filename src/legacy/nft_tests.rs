use std::time::Duration;

use expect_test::{Expect, expect};

use super::*;
use crate::legacy::flows::Flow;

fn host(name: &str, addresses: &[&str], flows: &[&str]) -> SegmentHost {
    SegmentHost {
        name: name.into(),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        flows: flows.iter().map(|f| f.parse::<Flow>().unwrap()).collect(),
    }
}

fn lan_clients() -> NamedSets {
    let mut sets = NamedSets::new();
    sets.insert(
        "lan-clients".into(),
        vec![
            "192.0.2.0/25".parse().unwrap(),
            "2001:db8:100::/48".parse().unwrap(),
        ],
    );
    sets
}

fn check(hosts: &[SegmentHost], sets: &NamedSets, dns: &DnsAnswers, expected: Expect) {
    let text = render(Segment { hosts, sets, dns }).unwrap_or_else(|e| format!("error: {e}"));
    expected.assert_eq(&text);
}

fn check_err(hosts: &[SegmentHost], sets: &NamedSets, expected: &str) {
    let err = render(Segment {
        hosts,
        sets,
        dns: &DnsAnswers::new(),
    })
    .unwrap_err();
    assert_eq!(err.to_string(), expected);
}

#[test]
fn empty() {
    check(
        &[],
        &NamedSets::new(),
        &DnsAnswers::new(),
        expect![[r#"
            table inet patchward {
            }
        "#]],
    );
}

#[test]
fn one_host_one_flow() {
    check(
        &[host(
            "legacy-db",
            &["198.51.100.10"],
            &["in tcp 192.0.2.20 port 1433"],
        )],
        &NamedSets::new(),
        &DnsAnswers::new(),
        expect![[r#"
            table inet patchward {
            	counter drop_in_legacy-db {
            	}

            	counter drop_out_legacy-db {
            	}

            	set legacy4 {
            		type ipv4_addr
            		elements = {
            			198.51.100.10
            		}
            	}

            	map drop_in4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.10 : "drop_in_legacy-db"
            		}
            	}

            	map drop_out4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.10 : "drop_out_legacy-db"
            		}
            	}

            	set allow_in4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            		elements = {
            			192.0.2.20 . 198.51.100.10 . tcp . 1433
            		}
            	}

            	set allow_in4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set allow_out4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_out4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set blocked4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set blocked4_other {
            		type ipv4_addr . ipv4_addr . inet_proto
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	chain forward {
            		type filter hook forward priority filter; policy accept;
            		ct state established,related accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_in4 accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_out4 accept
            		meta l4proto icmp ip saddr . ip daddr @allow_in4_icmp accept
            		meta l4proto icmp ip saddr . ip daddr @allow_out4_icmp accept
            		ip saddr @legacy4 counter name ip saddr map @drop_out4 goto blocked4
            		ip daddr @legacy4 counter name ip daddr map @drop_in4 goto blocked4
            	}

            	chain blocked4 {
            		meta l4proto { tcp, udp } update @blocked4 { ip saddr . ip daddr . meta l4proto . th dport counter }
            		meta l4proto != { tcp, udp } update @blocked4_other { ip saddr . ip daddr . meta l4proto counter }
            		limit rate 10/minute log prefix "patchward blocked: " level info
            		drop
            	}
            }
        "#]],
    );
}

#[test]
fn ranges_cidr_and_a_named_set() {
    check(
        &[host(
            "legacy-db",
            &["198.51.100.10"],
            &[
                "in tcp 192.0.2.0/24 port 22,8000-8100",
                "in udp @lan-clients port 161",
                "out tcp 192.0.2.30 port 445 \"file server\"",
            ],
        )],
        &lan_clients(),
        &DnsAnswers::new(),
        expect![[r#"
            table inet patchward {
            	counter drop_in_legacy-db {
            	}

            	counter drop_out_legacy-db {
            	}

            	set legacy4 {
            		type ipv4_addr
            		elements = {
            			198.51.100.10
            		}
            	}

            	map drop_in4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.10 : "drop_in_legacy-db"
            		}
            	}

            	map drop_out4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.10 : "drop_out_legacy-db"
            		}
            	}

            	set allow_in4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            		elements = {
            			192.0.2.0/24 . 198.51.100.10 . tcp . 22,
            			192.0.2.0/24 . 198.51.100.10 . tcp . 8000-8100,
            			192.0.2.0/25 . 198.51.100.10 . udp . 161
            		}
            	}

            	set allow_in4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set allow_out4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            		elements = {
            			198.51.100.10 . 192.0.2.30 . tcp . 445
            		}
            	}

            	set allow_out4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set blocked4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set blocked4_other {
            		type ipv4_addr . ipv4_addr . inet_proto
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	chain forward {
            		type filter hook forward priority filter; policy accept;
            		ct state established,related accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_in4 accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_out4 accept
            		meta l4proto icmp ip saddr . ip daddr @allow_in4_icmp accept
            		meta l4proto icmp ip saddr . ip daddr @allow_out4_icmp accept
            		ip saddr @legacy4 counter name ip saddr map @drop_out4 goto blocked4
            		ip daddr @legacy4 counter name ip daddr map @drop_in4 goto blocked4
            	}

            	chain blocked4 {
            		meta l4proto { tcp, udp } update @blocked4 { ip saddr . ip daddr . meta l4proto . th dport counter }
            		meta l4proto != { tcp, udp } update @blocked4_other { ip saddr . ip daddr . meta l4proto counter }
            		limit rate 10/minute log prefix "patchward blocked: " level info
            		drop
            	}
            }
        "#]],
    );
}

#[test]
fn ipv4_and_ipv6_hosts() {
    check(
        &[
            host(
                "scada",
                &["198.51.100.20", "2001:db8:200::20"],
                &[
                    "in tcp @lan-clients port 502",
                    "in tcp 2001:db8:1::/64 port 22",
                ],
            ),
            host(
                "printer",
                &["2001:db8:200::30"],
                &["in tcp @lan-clients port 9100"],
            ),
        ],
        &lan_clients(),
        &DnsAnswers::new(),
        expect![[r#"
            table inet patchward {
            	counter drop_in_printer {
            	}

            	counter drop_out_printer {
            	}

            	counter drop_in_scada {
            	}

            	counter drop_out_scada {
            	}

            	set legacy4 {
            		type ipv4_addr
            		elements = {
            			198.51.100.20
            		}
            	}

            	map drop_in4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.20 : "drop_in_scada"
            		}
            	}

            	map drop_out4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.20 : "drop_out_scada"
            		}
            	}

            	set allow_in4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            		elements = {
            			192.0.2.0/25 . 198.51.100.20 . tcp . 502
            		}
            	}

            	set allow_in4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set allow_out4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_out4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set blocked4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set blocked4_other {
            		type ipv4_addr . ipv4_addr . inet_proto
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set legacy6 {
            		type ipv6_addr
            		elements = {
            			2001:db8:200::20,
            			2001:db8:200::30
            		}
            	}

            	map drop_in6 {
            		type ipv6_addr : counter
            		elements = {
            			2001:db8:200::20 : "drop_in_scada",
            			2001:db8:200::30 : "drop_in_printer"
            		}
            	}

            	map drop_out6 {
            		type ipv6_addr : counter
            		elements = {
            			2001:db8:200::20 : "drop_out_scada",
            			2001:db8:200::30 : "drop_out_printer"
            		}
            	}

            	set allow_in6 {
            		type ipv6_addr . ipv6_addr . inet_proto . inet_service
            		flags interval,timeout
            		elements = {
            			2001:db8:1::/64 . 2001:db8:200::20 . tcp . 22,
            			2001:db8:100::/48 . 2001:db8:200::20 . tcp . 502,
            			2001:db8:100::/48 . 2001:db8:200::30 . tcp . 9100
            		}
            	}

            	set allow_in6_icmp {
            		type ipv6_addr . ipv6_addr
            		flags interval,timeout
            	}

            	set allow_out6 {
            		type ipv6_addr . ipv6_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_out6_icmp {
            		type ipv6_addr . ipv6_addr
            		flags interval,timeout
            	}

            	set blocked6 {
            		type ipv6_addr . ipv6_addr . inet_proto . inet_service
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set blocked6_other {
            		type ipv6_addr . ipv6_addr . inet_proto
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	chain forward {
            		type filter hook forward priority filter; policy accept;
            		ct state established,related accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_in4 accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_out4 accept
            		meta l4proto icmp ip saddr . ip daddr @allow_in4_icmp accept
            		meta l4proto icmp ip saddr . ip daddr @allow_out4_icmp accept
            		ip saddr @legacy4 counter name ip saddr map @drop_out4 goto blocked4
            		ip daddr @legacy4 counter name ip daddr map @drop_in4 goto blocked4
            		ip6 saddr . ip6 daddr . meta l4proto . th dport @allow_in6 accept
            		ip6 saddr . ip6 daddr . meta l4proto . th dport @allow_out6 accept
            		meta l4proto ipv6-icmp ip6 saddr . ip6 daddr @allow_in6_icmp accept
            		meta l4proto ipv6-icmp ip6 saddr . ip6 daddr @allow_out6_icmp accept
            		ip6 saddr @legacy6 counter name ip6 saddr map @drop_out6 goto blocked6
            		ip6 daddr @legacy6 counter name ip6 daddr map @drop_in6 goto blocked6
            	}

            	chain blocked4 {
            		meta l4proto { tcp, udp } update @blocked4 { ip saddr . ip daddr . meta l4proto . th dport counter }
            		meta l4proto != { tcp, udp } update @blocked4_other { ip saddr . ip daddr . meta l4proto counter }
            		limit rate 10/minute log prefix "patchward blocked: " level info
            		drop
            	}

            	chain blocked6 {
            		meta l4proto { tcp, udp } update @blocked6 { ip6 saddr . ip6 daddr . meta l4proto . th dport counter }
            		meta l4proto != { tcp, udp } update @blocked6_other { ip6 saddr . ip6 daddr . meta l4proto counter }
            		limit rate 10/minute log prefix "patchward blocked: " level info
            		drop
            	}
            }
        "#]],
    );
}

#[test]
fn dns_elements_carry_their_ttl_as_timeout() {
    let mut dns = DnsAnswers::new();
    dns.insert(
        "backup.example.net".into(),
        vec![
            ("192.0.2.40".parse().unwrap(), Duration::from_secs(300)),
            ("192.0.2.41".parse().unwrap(), Duration::from_millis(2500)),
            // Expired: left out rather than rendered with `timeout 0s`.
            ("192.0.2.42".parse().unwrap(), Duration::from_millis(400)),
        ],
    );
    // Also a static flow with the same key: the permanent element wins.
    check(
        &[host(
            "legacy-db",
            &["198.51.100.10"],
            &[
                "out tcp backup.example.net port 873",
                "out tcp 192.0.2.41 port 873",
                "out tcp unresolved.example.net port 873",
            ],
        )],
        &NamedSets::new(),
        &dns,
        expect![[r#"
            table inet patchward {
            	counter drop_in_legacy-db {
            	}

            	counter drop_out_legacy-db {
            	}

            	set legacy4 {
            		type ipv4_addr
            		elements = {
            			198.51.100.10
            		}
            	}

            	map drop_in4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.10 : "drop_in_legacy-db"
            		}
            	}

            	map drop_out4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.10 : "drop_out_legacy-db"
            		}
            	}

            	set allow_in4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_in4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set allow_out4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            		elements = {
            			198.51.100.10 . 192.0.2.40 . tcp . 873 timeout 300s,
            			198.51.100.10 . 192.0.2.41 . tcp . 873
            		}
            	}

            	set allow_out4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            	}

            	set blocked4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set blocked4_other {
            		type ipv4_addr . ipv4_addr . inet_proto
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	chain forward {
            		type filter hook forward priority filter; policy accept;
            		ct state established,related accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_in4 accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_out4 accept
            		meta l4proto icmp ip saddr . ip daddr @allow_in4_icmp accept
            		meta l4proto icmp ip saddr . ip daddr @allow_out4_icmp accept
            		ip saddr @legacy4 counter name ip saddr map @drop_out4 goto blocked4
            		ip daddr @legacy4 counter name ip daddr map @drop_in4 goto blocked4
            	}

            	chain blocked4 {
            		meta l4proto { tcp, udp } update @blocked4 { ip saddr . ip daddr . meta l4proto . th dport counter }
            		meta l4proto != { tcp, udp } update @blocked4_other { ip saddr . ip daddr . meta l4proto counter }
            		limit rate 10/minute log prefix "patchward blocked: " level info
            		drop
            	}
            }
        "#]],
    );
}

#[test]
fn icmp() {
    check(
        &[host(
            "plc",
            &["198.51.100.30", "2001:db8:200::30"],
            &[
                "in icmp 192.0.2.0/24",
                "in icmp 2001:db8:1::5",
                "out icmp 192.0.2.1",
            ],
        )],
        &NamedSets::new(),
        &DnsAnswers::new(),
        expect![[r#"
            table inet patchward {
            	counter drop_in_plc {
            	}

            	counter drop_out_plc {
            	}

            	set legacy4 {
            		type ipv4_addr
            		elements = {
            			198.51.100.30
            		}
            	}

            	map drop_in4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.30 : "drop_in_plc"
            		}
            	}

            	map drop_out4 {
            		type ipv4_addr : counter
            		elements = {
            			198.51.100.30 : "drop_out_plc"
            		}
            	}

            	set allow_in4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_in4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            		elements = {
            			192.0.2.0/24 . 198.51.100.30
            		}
            	}

            	set allow_out4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_out4_icmp {
            		type ipv4_addr . ipv4_addr
            		flags interval,timeout
            		elements = {
            			198.51.100.30 . 192.0.2.1
            		}
            	}

            	set blocked4 {
            		type ipv4_addr . ipv4_addr . inet_proto . inet_service
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set blocked4_other {
            		type ipv4_addr . ipv4_addr . inet_proto
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set legacy6 {
            		type ipv6_addr
            		elements = {
            			2001:db8:200::30
            		}
            	}

            	map drop_in6 {
            		type ipv6_addr : counter
            		elements = {
            			2001:db8:200::30 : "drop_in_plc"
            		}
            	}

            	map drop_out6 {
            		type ipv6_addr : counter
            		elements = {
            			2001:db8:200::30 : "drop_out_plc"
            		}
            	}

            	set allow_in6 {
            		type ipv6_addr . ipv6_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_in6_icmp {
            		type ipv6_addr . ipv6_addr
            		flags interval,timeout
            		elements = {
            			2001:db8:1::5 . 2001:db8:200::30
            		}
            	}

            	set allow_out6 {
            		type ipv6_addr . ipv6_addr . inet_proto . inet_service
            		flags interval,timeout
            	}

            	set allow_out6_icmp {
            		type ipv6_addr . ipv6_addr
            		flags interval,timeout
            	}

            	set blocked6 {
            		type ipv6_addr . ipv6_addr . inet_proto . inet_service
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	set blocked6_other {
            		type ipv6_addr . ipv6_addr . inet_proto
            		size 65536
            		flags dynamic,timeout
            		timeout 1h
            	}

            	chain forward {
            		type filter hook forward priority filter; policy accept;
            		ct state established,related accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_in4 accept
            		ip saddr . ip daddr . meta l4proto . th dport @allow_out4 accept
            		meta l4proto icmp ip saddr . ip daddr @allow_in4_icmp accept
            		meta l4proto icmp ip saddr . ip daddr @allow_out4_icmp accept
            		ip saddr @legacy4 counter name ip saddr map @drop_out4 goto blocked4
            		ip daddr @legacy4 counter name ip daddr map @drop_in4 goto blocked4
            		ip6 saddr . ip6 daddr . meta l4proto . th dport @allow_in6 accept
            		ip6 saddr . ip6 daddr . meta l4proto . th dport @allow_out6 accept
            		meta l4proto ipv6-icmp ip6 saddr . ip6 daddr @allow_in6_icmp accept
            		meta l4proto ipv6-icmp ip6 saddr . ip6 daddr @allow_out6_icmp accept
            		ip6 saddr @legacy6 counter name ip6 saddr map @drop_out6 goto blocked6
            		ip6 daddr @legacy6 counter name ip6 daddr map @drop_in6 goto blocked6
            	}

            	chain blocked4 {
            		meta l4proto { tcp, udp } update @blocked4 { ip saddr . ip daddr . meta l4proto . th dport counter }
            		meta l4proto != { tcp, udp } update @blocked4_other { ip saddr . ip daddr . meta l4proto counter }
            		limit rate 10/minute log prefix "patchward blocked: " level info
            		drop
            	}

            	chain blocked6 {
            		meta l4proto { tcp, udp } update @blocked6 { ip6 saddr . ip6 daddr . meta l4proto . th dport counter }
            		meta l4proto != { tcp, udp } update @blocked6_other { ip6 saddr . ip6 daddr . meta l4proto counter }
            		limit rate 10/minute log prefix "patchward blocked: " level info
            		drop
            	}
            }
        "#]],
    );
}

#[test]
fn output_does_not_depend_on_input_order() {
    let a = host(
        "a-host",
        &["198.51.100.1"],
        &["in tcp 192.0.2.1 port 22", "in tcp 192.0.2.2 port 22"],
    );
    let b = host("b-host", &["198.51.100.2"], &["in udp 192.0.2.3 port 53"]);
    let mut a_rev = a.clone();
    a_rev.flows.reverse();
    let sets = NamedSets::new();
    let dns = DnsAnswers::new();
    let one = render(Segment {
        hosts: &[a, b.clone()],
        sets: &sets,
        dns: &dns,
    })
    .unwrap();
    let two = render(Segment {
        hosts: &[b, a_rev],
        sets: &sets,
        dns: &dns,
    })
    .unwrap();
    assert_eq!(one, two);
}

#[test]
fn bad_segments_are_refused_with_the_reason() {
    let none = NamedSets::new();
    check_err(
        &[host("Legacy DB", &["198.51.100.10"], &[])],
        &none,
        "host name `Legacy DB` cannot name nft counters: use 1-48 of a-z, 0-9 and -, starting with a letter",
    );
    check_err(
        &[
            host("db", &["198.51.100.10"], &[]),
            host("db", &["198.51.100.11"], &[]),
        ],
        &none,
        "host `db` is listed twice",
    );
    check_err(
        &[host("db", &[], &[])],
        &none,
        "host `db` has no addresses: a fence needs the host's IP addresses",
    );
    check_err(
        &[
            host("a", &["198.51.100.10"], &[]),
            host("b", &["198.51.100.10"], &[]),
        ],
        &none,
        "address 198.51.100.10 belongs to both `a` and `b`",
    );
    check_err(
        &[host("db", &["198.51.100.10"], &["in tcp @admins port 22"])],
        &lan_clients(),
        "host `db`, flow `in tcp @admins port 22`: no set `@admins` is defined (defined: @lan-clients)",
    );
    check_err(
        &[host(
            "db",
            &["198.51.100.10"],
            &["in tcp 2001:db8::/32 port 22"],
        )],
        &none,
        "host `db`, flow `in tcp 2001:db8::/32 port 22`: the peer is IPv6 but the host has no IPv6 address",
    );
    let mut dup = host("db", &["198.51.100.10"], &["in tcp 192.0.2.1 port 22"]);
    dup.flows.push(dup.flows[0].clone());
    check_err(
        &[dup],
        &none,
        "host `db`: flow 2 repeats flow 1 (`in tcp 192.0.2.1 port 22`)",
    );
    let mut bad_set = NamedSets::new();
    bad_set.insert("lan".into(), vec!["192.0.2.5/24".parse().unwrap()]);
    check_err(
        &[],
        &bad_set,
        "set `@lan`: `192.0.2.5/24` has host bits set; did you mean 192.0.2.0/24?",
    );
}
