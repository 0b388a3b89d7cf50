//! `export` mode: the allow-list as CSV, for a site whose own firewall does the fencing.
//!
//! One line per allowed flow (`host,direction,peer,proto,ports,comment`), the flow as
//! written (a set stays `@name`, a DNS name stays a name), and the named sets' members
//! in a second file, so a firewall admin can turn both into rules. RFC 4180 quoting
//! (CRLF line ends, fields with `,` `"` CR LF quoted, `"` doubled), written by hand: no
//! CSV crate is in the tree and this is all of it. A field that a spreadsheet would run
//! as a formula (starting with `=`, `+`, `-`, `@`) gets a leading `'`, as OWASP advises
//! for CSV files opened in spreadsheets; `@lan-clients` reads `'@lan-clients` there.

use super::flows::{NamedSets, SegmentHost, ports_text};

const FLOWS_HEADER: [&str; 6] = ["host", "direction", "peer", "proto", "ports", "comment"];

/// The flows of all hosts, sorted by host then in the host's order.
pub fn flows_csv(hosts: &[SegmentHost]) -> String {
    let mut hosts: Vec<&SegmentHost> = hosts.iter().collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    row(&mut out, &FLOWS_HEADER.map(str::to_string));
    for h in hosts {
        for f in &h.flows {
            row(
                &mut out,
                &[
                    h.name.clone(),
                    f.direction.to_string(),
                    f.peer.to_string(),
                    f.proto.to_string(),
                    ports_text(&f.ports),
                    f.comment.clone(),
                ],
            );
        }
    }
    out
}

/// One line per member of each named set: `set,member`.
pub fn sets_csv(sets: &NamedSets) -> String {
    let mut out = String::new();
    row(&mut out, &["set".to_string(), "member".to_string()]);
    for (name, members) in sets {
        let mut members = members.clone();
        members.sort();
        for m in members {
            row(&mut out, &[format!("@{name}"), m.to_string()]);
        }
    }
    out
}

fn row(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

fn field(out: &mut String, text: &str) {
    let guarded;
    let text = if text.starts_with(['=', '+', '-', '@']) {
        guarded = format!("'{text}");
        &guarded
    } else {
        text
    };
    if text.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::flows::Flow;

    fn host(name: &str, flows: &[&str]) -> SegmentHost {
        SegmentHost {
            name: name.into(),
            addresses: vec!["198.51.100.10".parse().unwrap()],
            flows: flows.iter().map(|f| f.parse::<Flow>().unwrap()).collect(),
        }
    }

    #[test]
    fn one_line_per_flow_with_rfc4180_quoting() {
        let hosts = [
            host("plc", &["in icmp 192.0.2.0/24"]),
            host(
                "legacy-db",
                &[
                    r#"in tcp @lan-clients port 1433,5000-5010 "ERP, reports""#,
                    r#"out udp ntp.example.net port 123 "=cmd()""#,
                ],
            ),
        ];
        assert_eq!(
            flows_csv(&hosts),
            "host,direction,peer,proto,ports,comment\r\n\
             legacy-db,in,'@lan-clients,tcp,\"1433,5000-5010\",\"ERP, reports\"\r\n\
             legacy-db,out,ntp.example.net,udp,123,'=cmd()\r\n\
             plc,in,192.0.2.0/24,icmp,,\r\n"
        );
    }

    #[test]
    fn sets_list_their_members_sorted() {
        let mut sets = NamedSets::new();
        sets.insert(
            "lan-clients".into(),
            vec![
                "192.0.2.128/25".parse().unwrap(),
                "192.0.2.0/25".parse().unwrap(),
            ],
        );
        assert_eq!(
            sets_csv(&sets),
            "set,member\r\n'@lan-clients,192.0.2.0/25\r\n'@lan-clients,192.0.2.128/25\r\n"
        );
    }
}
