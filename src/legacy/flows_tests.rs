use super::*;

/// Parses `text` and compares the canonical form (or the error) with `expected`.
fn check(text: &str, expected: &str) {
    let got = match text.parse::<Flow>() {
        Ok(f) => f.to_string(),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expected, "input: {text:?}");
}

#[test]
fn good_flows_parse_to_their_canonical_form() {
    check(
        r#"in tcp 192.0.2.0/24 port 22,443,8000-8100 "admins""#,
        r#"in tcp 192.0.2.0/24 port 22,443,8000-8100 "admins""#,
    );
    check("out udp 192.0.2.53 port 53", "out udp 192.0.2.53 port 53");
    check("in icmp @lan-clients", "in icmp @lan-clients");
    check(
        "out tcp Backup.Example.NET port 873",
        "out tcp backup.example.net port 873",
    );
    check(
        "in tcp 2001:db8::/32 port 22 \"v6 admins\"",
        "in tcp 2001:db8::/32 port 22 \"v6 admins\"",
    );
    // Ports are sorted, overlapping and adjacent ranges merged.
    check(
        "in tcp 192.0.2.1 port 443,22,23,20-22,1000-2000,1500",
        "in tcp 192.0.2.1 port 20-23,443,1000-2000",
    );
    check(
        "in  tcp\t192.0.2.1   port 1-65535",
        "in tcp 192.0.2.1 port 1-65535",
    );
}

#[test]
fn bad_flows_are_refused_with_what_is_allowed() {
    check(
        "",
        "error: empty flow: expected `in|out tcp|udp|icmp PEER [port PORTS] [\"COMMENT\"]`",
    );
    check(
        "up tcp 192.0.2.1 port 22",
        "error: unknown direction `up`: expected `in` (to the host) or `out` (from it)",
    );
    check(
        "in",
        "error: missing protocol after `in`: expected tcp, udp or icmp",
    );
    check(
        "in sctp 192.0.2.1 port 22",
        "error: unknown protocol `sctp`: expected tcp, udp or icmp",
    );
    check(
        "in tcp",
        "error: missing peer: expected an address, a CIDR, @SET or a DNS name",
    );
    check(
        "in tcp 192.0.2.300 port 22",
        "error: bad address `192.0.2.300`: expected an IPv4 or IPv6 address",
    );
    check(
        "in tcp 2001:db8::zz port 22",
        "error: bad address `2001:db8::zz`: expected an IPv4 or IPv6 address",
    );
    check(
        "in tcp 192.0.2.0/33 port 22",
        "error: bad CIDR `192.0.2.0/33`: expected ADDRESS/PREFIX, prefix at most 32 (IPv4) or 128 (IPv6)",
    );
    check(
        "in tcp 192.0.2.5/24 port 22",
        "error: bad CIDR `192.0.2.5/24`: host bits are set; did you mean 192.0.2.0/24?",
    );
    check(
        "in tcp @LAN port 22",
        "error: bad set name `@LAN`: expected @ and 1-48 of a-z, 0-9 and -, starting with a letter",
    );
    check(
        "in tcp bad_name.example port 22",
        "error: bad peer `bad_name.example`: expected an address, a CIDR, @SET or a DNS name",
    );
    check(
        "in tcp 192.0.2.1",
        "error: tcp flows need ports: add `port 22` or `port 1-65535` for every port",
    );
    check(
        "in icmp 192.0.2.1 port 8",
        "error: icmp has no ports: remove `port 8`",
    );
    check(
        "in tcp 192.0.2.1 port",
        "error: `port` needs a list: e.g. `port 22,443,8000-8100`",
    );
    check(
        "in tcp 192.0.2.1 port 22,,23",
        "error: `port` needs a list: e.g. `port 22,443,8000-8100`",
    );
    check(
        "in tcp 192.0.2.1 port 0",
        "error: bad port `0`: ports are 1-65535",
    );
    check(
        "in tcp 192.0.2.1 port 65536",
        "error: bad port `65536`: ports are 1-65535",
    );
    check(
        "in tcp 192.0.2.1 port 22-x",
        "error: bad port `22-x`: ports are 1-65535",
    );
    check(
        "in tcp 192.0.2.1 port 100-10",
        "error: reversed port range `100-10`: write the lower port first",
    );
    check(
        "in tcp 192.0.2.1 port 22 extra",
        "error: unexpected `extra`: after the peer only `port PORTS` and a \"COMMENT\" may follow",
    );
    check(
        "in tcp 192.0.2.1 port 22 \"a\" b",
        "error: unexpected `b`: after the peer only `port PORTS` and a \"COMMENT\" may follow",
    );
    check(
        "in tcp 192.0.2.1 port 22 \"open",
        "error: unterminated comment: it must end with `\"`",
    );
    check(
        "in tcp 192.0.2.1 port 22 \"bell\u{7}\"",
        "error: comment contains a control character (position 5); use printable text only",
    );
    let long = format!("in tcp 192.0.2.1 port 22 \"{}\"", "x".repeat(201));
    check(
        &long,
        "error: comment is 201 characters long; at most 200 are allowed",
    );
}

#[test]
fn serde_stores_the_canonical_text_and_validates_on_load() {
    let f: Flow = "in tcp 192.0.2.0/24 port 443,22 \"web\"".parse().unwrap();
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(json, r#""in tcp 192.0.2.0/24 port 22,443 \"web\"""#);
    let back: Flow = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f);
    let err = serde_json::from_str::<Flow>(r#""in tcp 192.0.2.1 port 0""#).unwrap_err();
    assert!(
        err.to_string().contains("bad port `0`: ports are 1-65535"),
        "{err}"
    );
}

#[test]
fn a_host_list_is_bounded_and_free_of_repeats() {
    let one: Flow = "in tcp 192.0.2.1 port 22".parse().unwrap();
    let other: Flow = "in tcp 192.0.2.1 port 23".parse().unwrap();
    assert_eq!(validate_flows(&[one.clone(), other.clone()]), Ok(()));
    let err = validate_flows(&[one.clone(), other, one.clone()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "flow 3 repeats flow 1 (`in tcp 192.0.2.1 port 22`)"
    );
    let many: Vec<Flow> = (1..=257u16)
        .map(|p| format!("in tcp 192.0.2.1 port {p}").parse().unwrap())
        .collect();
    assert_eq!(
        validate_flows(&many).unwrap_err().to_string(),
        "too many flows (257): a host may have at most 256"
    );
    assert_eq!(validate_flows(&many[..256]), Ok(()));
}
