use super::*;

fn check(text: &str, expected: &str) {
    let got = match validate(text) {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expected, "input: {text:?}");
}

#[test]
fn the_three_statement_forms_are_accepted() {
    check("table inet patchward {\n}\n", "ok");
    check(
        "add table inet patchward\ndelete table inet patchward\ntable inet patchward {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n",
        "ok",
    );
    check(
        "add table inet patchward; delete table inet patchward; table inet patchward { }",
        "ok",
    );
    // Braces and `#` inside strings and comments do not count.
    check(
        "# a comment with } and table ip filter\ntable inet patchward {\n\tchain c { log prefix \"} table x { \" }\n}\n",
        "ok",
    );
    check(
        "table inet patchward { }\ntable inet patchward { set s { type ipv4_addr; } }",
        "ok",
    );
}

#[test]
fn anything_else_is_refused_with_the_reason() {
    check(
        "",
        "the ruleset is empty: send a complete `table inet patchward { ... }`",
    );
    check(
        "\n  \n# only a comment\n",
        "the ruleset is empty: send a complete `table inet patchward { ... }`",
    );
    check(
        "add table inet patchward\n",
        "the ruleset has no `table inet patchward { ... }` block",
    );
    check(
        "table inet patchward { }\ntable ip filter { chain input { } }",
        "line 2: `table ip filter` names another table: only table inet patchward may be changed",
    );
    check(
        "delete table inet sentinel\ntable inet patchward { }",
        "line 1: `delete table inet sentinel` names another table: only table inet patchward may be changed",
    );
    check(
        "add rule inet sentinel input drop\ntable inet patchward { }",
        "line 1: `add rule inet sentinel input drop` is not allowed: only `add table inet patchward`, `delete table inet patchward` and `table inet patchward { ... }` are accepted",
    );
    check(
        "flush ruleset\ntable inet patchward { }",
        "line 1: `flush ruleset` is refused: it would remove every table, and only table inet patchward may be changed",
    );
    check(
        "table inet patchward { }\n  FLUSH   RULESET",
        "line 2: `flush ruleset` is refused: it would remove every table, and only table inet patchward may be changed",
    );
    check(
        "include \"/etc/nftables.conf\"\ntable inet patchward { }",
        "line 1: `include` is refused: send the whole ruleset inline",
    );
    check(
        "table inet patchward {\n\tinclude \"/etc/x.nft\"\n}",
        "line 2: `include` is not allowed inside table inet patchward",
    );
    check(
        "table inet patchward {\n\tdefine x = 1\n}",
        "line 2: `define` is not allowed inside table inet patchward",
    );
    check(
        "table inet patchward { chain c { } } }",
        "line 1: `}` without a matching `{`",
    );
    check(
        "\ntable inet patchward {\n chain c {\n}\n",
        "line 2: `{` is never closed",
    );
    check(
        "table inet patchward { chain c { log prefix \"open } }\n",
        "line 1: unterminated string",
    );
    check(
        "table inet patchward {\r\n}",
        "line 1: character '\\r' is not allowed (only printable ASCII, tabs and newlines)",
    );
    check(
        "table inet patchward { chain c { log prefix \"caf\u{e9}\" } }",
        "line 1: character 'é' is not allowed (only printable ASCII, tabs and newlines)",
    );
    check(
        "table inet patchward extra { }",
        "line 1: `table inet patchward extra` is not allowed: only `add table inet patchward`, `delete table inet patchward` and `table inet patchward { ... }` are accepted",
    );
    check(
        "\u{0}garbage",
        "line 1: character '\\0' is not allowed (only printable ASCII, tabs and newlines)",
    );
    check(
        "table inet patchward { chain c { log prefix x'y }' } }",
        "line 1: `'` outside a string is refused: only \"...\" quoting, no escapes",
    );
    check(
        "table inet patchward { }\\\ndelete table ip filter",
        "line 1: `\\` outside a string is refused: only \"...\" quoting, no escapes",
    );
    check(
        "this is not nft at all",
        "line 1: `this is not nft at all` is not allowed: only `add table inet patchward`, `delete table inet patchward` and `table inet patchward { ... }` are accepted",
    );
}

#[test]
fn rendered_rulesets_pass() {
    use crate::legacy::flows::{DnsAnswers, Flow, NamedSets, SegmentHost};
    use crate::legacy::nft::{Segment, render};
    let hosts = [SegmentHost {
        name: "legacy-db".into(),
        addresses: vec![
            "198.51.100.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        flows: vec![
            "in tcp 192.0.2.0/24 port 22,443".parse::<Flow>().unwrap(),
            "in icmp 2001:db8:1::/48".parse::<Flow>().unwrap(),
        ],
    }];
    let text = render(Segment {
        hosts: &hosts,
        sets: &NamedSets::new(),
        dns: &DnsAnswers::new(),
    })
    .unwrap();
    assert_eq!(validate(&text), Ok(()));
}
