//! The [10] Legacy pages in-process (hW): the flows editor adds and removes flows
//! through `legacy::flows_store` and the timeline shows their events; the list, the
//! host page, the fence page and the dashboard show fence and monitor state; every
//! refusal (bad flow, bad port, no reason, export mode, auditor, no CSRF token) says why
//! and leaves the state as it was; hostile host names and flow comments are escaped.
//! The view models' words and colours are tested on their own.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use super::legacy_fence::{banner, event_class, fence_badge, monitor_cell};
use super::tests::{EVIL, Site, app, call, get, post, site};
use crate::auth::Role;
use crate::config::SegmentMode;
use crate::legacy::segment::{FenceState, HostFence, SegmentStatus};
use crate::legacy::watch::MonitorView;

const ESCAPED: &str = "&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;";

/// An agentless debian 10 host (eol) at 192.0.2.30, as `legacy add` stores it.
fn add_printer(s: &Site) {
    s.db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO legacy_hosts (name, addresses, product, cycle, owner, notes, added_at, added_by)
             VALUES ('printer-3f', '[\"192.0.2.30\"]', 'debian', '10', '', '', ?1, 'test')",
            rusqlite::params![s.now.to_string()],
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap();
}

/// Everything a refused request must leave alone.
fn state(s: &Site) -> String {
    s.db.read_blocking(|c| {
        c.query_row(
            "SELECT (SELECT count(*) FROM audit_log) || '|' ||
                    (SELECT count(*) FROM legacy_flows) || '|' ||
                    (SELECT count(*) FROM legacy_events) || '|' ||
                    (SELECT count(*) FROM legacy_segment) || '|' ||
                    (SELECT count(*) FROM legacy_monitor_ports)",
            [],
            |r| r.get::<_, String>(0),
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap()
}

fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let s = &page[page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("{id}: {page}"))..];
    &s[..s.find("</section>").unwrap_or(s.len())]
}

const FLOW: &str = "flow=in+tcp+192.0.2.0%2F24+port+22+%22admins+%3Cb%3Ebold%3C%2Fb%3E%22";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_added_in_the_editor_is_listed_planned_and_in_the_timeline() {
    let s = site();
    add_printer(&s);
    let admin = app(&s, Role::Admin);
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(
        page.contains("id=\"no-flows\"") && page.contains("id=\"no-events\""),
        "{page}"
    );
    assert!(
        page.contains("DIRECTION PROTO PEER"),
        "the syntax is shown: {page}"
    );
    let (st, body, h) = post(&admin, "/legacy/printer-3f/flows", FLOW).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(h[header::LOCATION], "/legacy/printer-3f");
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    let flows = section(&page, "h-flows");
    assert!(
        flows.contains("192.0.2.0/24") && flows.contains(">22<"),
        "{flows}"
    );
    assert!(
        flows.contains("admins &#60;b&#62;bold&#60;/b&#62;"),
        "escaped: {flows}"
    );
    assert!(!flows.contains("<b>bold"), "{flows}");
    assert!(flows.contains("pending export"), "{flows}");
    assert!(
        flows.contains("action=\"/legacy/printer-3f/flows/remove\""),
        "{flows}"
    );
    let events = section(&page, "h-events");
    assert!(
        events.contains("flow_added") && events.contains("web:admin-user"),
        "{events}"
    );
    // Port 22 of an `in tcp` flow is watched; the monitor has not probed it yet.
    let mon = section(&page, "h-monitor");
    assert!(
        mon.contains("PENDING") && mon.contains("from a flow"),
        "{mon}"
    );

    // The list: pending export, and the last event.
    let (_, list) = get(&admin, "/legacy").await;
    let row = &list[list.find("href=\"/legacy/printer-3f\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(">pending export<") && row.contains(">PENDING<"),
        "{row}"
    );
    assert!(row.contains("flow_added"), "{row}");
    assert!(list.contains("(mode export)"), "{list}");

    // The fence page: the diff names the host's address, inside a <pre>, escaped.
    let (st, fence) = get(&admin, "/legacy/segment").await;
    assert_eq!(st, StatusCode::OK, "{fence}");
    let diff = &fence[fence.find("id=\"fence-diff\"").unwrap()..];
    let diff = &diff[..diff.find("</pre>").unwrap()];
    assert!(diff.contains("+") && diff.contains("192.0.2.30"), "{diff}");
    assert!(!diff.contains("<b>"), "{diff}");
    assert!(fence.contains("segment_mode is export"), "{fence}");

    // Removed again through its button: gone, and a second event.
    let (st, _, _) = post(
        &admin,
        "/legacy/printer-3f/flows/remove",
        "flow=in+tcp+192.0.2.0%2F24+port+22",
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(page.contains("id=\"no-flows\""), "{page}");
    let events = section(&page, "h-events");
    let (removed, added) = (
        events.find("flow_removed").unwrap(),
        events.find("flow_added").unwrap(),
    );
    assert!(removed < added, "newest first: {events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_says_why_and_changes_nothing() {
    let s = site();
    add_printer(&s);
    let admin = app(&s, Role::Admin);
    let (st, _, _) = post(&admin, "/legacy/printer-3f/flows", FLOW).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let before = state(&s);
    for (path, form, status, want) in [
        (
            "/legacy/printer-3f/flows",
            "flow=sideways+tcp+192.0.2.1+port+22",
            400,
            "invalid flow",
        ),
        ("/legacy/printer-3f/flows", "flow=", 400, "invalid flow"),
        (
            "/legacy/printer-3f/flows",
            "flow=in+tcp+192.0.2.0%2F24+port+22+%22other%22",
            409,
            "already has this flow",
        ),
        ("/legacy/nope/flows", FLOW, 404, "no host"),
        (
            "/legacy/printer-3f/flows/remove",
            "flow=out+udp+192.0.2.9+port+53",
            0,
            "no flow",
        ),
        ("/legacy/printer-3f/ports", "port=http", 400, "not a port"),
        ("/legacy/printer-3f/ports", "port=0", 400, "not a port"),
        ("/legacy/printer-3f/ports/remove", "port=8080", 0, "8080"),
        ("/legacy/segment/apply", "reason=", 400, "invalid reason"),
        (
            "/legacy/segment/apply",
            "reason=go",
            409,
            "segment_mode is export",
        ),
    ] {
        let (st, body, _) = post(&admin, path, form).await;
        if status == 0 {
            assert!(st.is_client_error(), "{path} {form}: {st} {body}");
        } else {
            assert_eq!(st.as_u16(), status, "{path} {form}: {body}");
        }
        assert!(body.contains(want), "{path} {form}: {body}");
        assert!(body.contains("class=\"alert error\""), "{path} {form}");
        assert_eq!(state(&s), before, "{path} {form}");
    }
    // An auditor is refused every change (403) and sees the Apply form disabled.
    let auditor = app(&s, Role::Auditor);
    for (path, form) in [
        ("/legacy/segment/apply", "reason=go"),
        ("/legacy/printer-3f/flows", FLOW),
        (
            "/legacy/printer-3f/flows/remove",
            "flow=in+tcp+192.0.2.0%2F24+port+22",
        ),
        ("/legacy/printer-3f/ports", "port=8080"),
        ("/legacy/printer-3f/ports/remove", "port=8080"),
    ] {
        let (st, body, _) = post(&auditor, path, form).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    assert_eq!(state(&s), before);
    let (_, fence) = get(&auditor, "/legacy/segment").await;
    assert!(fence.contains("Only an admin can apply"), "{fence}");
    assert!(
        fence.contains("<button type=\"submit\" disabled>Apply</button>"),
        "{fence}"
    );
    let (_, page) = get(&auditor, "/legacy/printer-3f").await;
    assert!(
        !page.contains("id=\"add-flow\"") && !page.contains("/flows/remove"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_port_is_added_and_removed_and_exports_download() {
    let s = site();
    add_printer(&s);
    let admin = app(&s, Role::Admin);
    let (st, body, _) = post(&admin, "/legacy/printer-3f/ports", "port=8080&banner=off").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    let ports = section(&page, "h-monitor");
    assert!(
        ports.contains(">8080<") && ports.contains("(added)"),
        "{ports}"
    );
    let (st, _, _) = post(&admin, "/legacy/printer-3f/ports/remove", "port=8080").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(!section(&page, "h-monitor").contains(">8080<"), "{page}");

    let (st, _, _) = post(&admin, "/legacy/printer-3f/flows", FLOW).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let auditor = app(&s, Role::Auditor);
    let req = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    let (st, csv, h) = call(&auditor, req("/legacy/segment/export/flows.csv")).await;
    assert_eq!(st, StatusCode::OK, "{csv}");
    assert!(
        h[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("flows.csv")
    );
    assert!(
        csv.starts_with("host,direction,peer,proto,ports,comment"),
        "{csv}"
    );
    assert!(
        csv.contains("192.0.2.0/24") && csv.contains("<b>bold</b>"),
        "raw CSV: {csv}"
    );
    let (st, nft, _) = call(&auditor, req("/legacy/segment/export/patchward.nft")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        nft.contains("table inet patchward") && nft.contains("192.0.2.30"),
        "{nft}"
    );
    let (st, body, _) = call(&auditor, req("/legacy/segment/export/passwd")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body.contains("patchward.nft, flows.csv, sets.csv"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_host_names_are_escaped_in_the_list_timeline_and_dashboard() {
    let s = site();
    // h-2's hostname is markup (see `tests::seed`); debian 10 makes it a legacy host.
    s.db.write_blocking(|tx| {
        let mut inv = crate::fleet::inventory::sample("h-2");
        inv.os.id = "debian".into();
        inv.os.version_id = "10".into();
        tx.execute(
            "UPDATE host_inventory SET inventory = ?1 WHERE host_id = 'h-2'",
            rusqlite::params![serde_json::to_string(&inv).unwrap()],
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap();
    let admin = app(&s, Role::Admin);
    let (st, body, _) = post(&admin, "/legacy/h-2/ports", "port=2222").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    s.db.write_blocking(|tx| {
        crate::db::legacy_monitor::insert_event(
            tx,
            "h-2",
            &s.now.to_string(),
            "blocked_flow",
            &format!("host {EVIL} tried to reach 192.0.2.10:445 37 times in the last hour"),
            "{}",
        )
    })
    .unwrap();
    for path in ["/legacy", "/legacy/h-2", "/"] {
        let (st, page) = get(&admin, path).await;
        assert_eq!(st, StatusCode::OK, "{path}: {page}");
        assert!(page.contains(ESCAPED), "{path}: {page}");
        assert!(!page.contains("<script>alert"), "{path}: {page}");
    }
    let (_, dash) = get(&admin, "/").await;
    let panel = section(&dash, "h-legacy");
    assert!(
        panel.contains("<span class=\"num\">1</span> blocked flows (24 h)"),
        "{panel}"
    );
    assert!(
        panel.contains("<span class=\"num\">0</span> down"),
        "{panel}"
    );
    assert!(
        panel.contains("href=\"/legacy/h-2\"") && panel.contains("blocked_flow"),
        "{panel}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_pages_fifty_at_a_time() {
    let s = site();
    add_printer(&s);
    s.db.write_blocking(|tx| {
        for i in 0..60 {
            crate::db::legacy_monitor::insert_event(
                tx,
                "printer-3f",
                &s.now.to_string(),
                "port_opened",
                &format!("event number {i}"),
                "{}",
            )?;
        }
        Ok::<_, crate::error::DbError>(())
    })
    .unwrap();
    let admin = app(&s, Role::Admin);
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    let ev = section(&page, "h-events");
    assert_eq!(ev.matches("<li>").count(), 50, "{ev}");
    assert!(
        ev.contains("event number 59") && !ev.contains("event number 9<"),
        "{ev}"
    );
    assert!(ev.contains("?page=2") && ev.contains("?events=all"), "{ev}");
    let (_, page) = get(&admin, "/legacy/printer-3f?page=2").await;
    let ev = section(&page, "h-events");
    assert_eq!(ev.matches("<li>").count(), 10, "{ev}");
    assert!(
        ev.contains("event number 0<") && ev.contains("?page=1"),
        "{ev}"
    );
    let (_, page) = get(&admin, "/legacy/printer-3f?events=all").await;
    assert_eq!(section(&page, "h-events").matches("<li>").count(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    crate::tls::install_crypto_provider();
    let s = site();
    add_printer(&s);
    crate::auth::users::add(
        &s.db,
        s.now,
        "test",
        "ada",
        Role::Admin,
        "a good long password",
        None,
    )
    .unwrap();
    s.db.write_blocking(|tx| {
        tx.execute("UPDATE users SET must_change_password = 0", [])
            .map_err(crate::error::DbError::from)
    })
    .unwrap();
    let app = crate::web::admin::router(s.state.clone()).with_state(s.state.clone());
    let req = |path: &str, cookie: Option<&str>, body: String| {
        let mut b = Request::post(path)
            .header(header::HOST, "pw.test:8443")
            .header(header::ORIGIN, "https://pw.test:8443")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(body)).unwrap()
    };
    let login = "name=ada&password=a+good+long+password&next=%2Flegacy".to_string();
    let (st, _, h) = call(&app, req("/login", None, login)).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let cookie = h[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let before = state(&s);
    for (path, form) in [
        ("/legacy/printer-3f/flows", FLOW.to_string()),
        ("/legacy/segment/apply", "reason=go".to_string()),
        ("/legacy/printer-3f/ports", "port=8080".to_string()),
    ] {
        let (st, body, _) = call(&app, req(path, Some(&cookie), form)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(state(&s), before, "{path}");
    }
    let csrf: String =
        s.db.read_blocking(|c| {
            c.query_row("SELECT csrf FROM sessions", [], |r| r.get(0))
                .map_err(crate::error::DbError::from)
        })
        .unwrap();
    let (st, body, _) = call(
        &app,
        req(
            "/legacy/printer-3f/flows",
            Some(&cookie),
            format!("csrf={csrf}&{FLOW}"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert_ne!(state(&s), before);
}

fn status(mode: SegmentMode, state: FenceState, hosts: &[(&str, HostFence)]) -> SegmentStatus {
    SegmentStatus {
        mode,
        state,
        applied_at: None,
        applied_by: None,
        reason: None,
        pending: false,
        wanted_input_sha256: String::new(),
        exported_at: None,
        exported_by: None,
        exported_to: None,
        hosts: hosts
            .iter()
            .map(|(k, f)| (k.to_string(), *f))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn fence_cells_say_what_the_fence_does_for_each_host() {
    use HostFence::*;
    let hosts = [
        ("a", Fenced),
        ("p", Pending),
        ("n", NotFenced),
        ("e", Exported),
    ];
    let cell = |st: FenceState, key: &str| {
        let b = fence_badge(&status(SegmentMode::Enforce, st, &hosts), key);
        (b.text, b.class)
    };
    assert_eq!(cell(FenceState::Applied, "a"), ("applied", "ok"));
    assert_eq!(cell(FenceState::Applied, "p"), ("pending", "warn"));
    assert_eq!(cell(FenceState::Applied, "n"), ("not fenced", "grey"));
    assert_eq!(
        cell(FenceState::Applied, "unknown-key"),
        ("not fenced", "grey")
    );
    assert_eq!(cell(FenceState::NotApplied, "p"), ("pending", "warn"));
    assert_eq!(cell(FenceState::Drifted, "a"), ("drifted", "bad"));
    assert_eq!(cell(FenceState::Drifted, "n"), ("not fenced", "grey"));
    assert_eq!(
        cell(FenceState::HelperAbsent("x".into()), "a"),
        ("helper absent", "bad")
    );
    assert_eq!(
        cell(FenceState::ExportOnly, "p"),
        ("pending export", "warn")
    );
    assert_eq!(cell(FenceState::ExportOnly, "e"), ("exported", "ok"));
    assert_eq!(cell(FenceState::ExportOnly, "n"), ("not fenced", "grey"));

    assert!(banner(&status(SegmentMode::Export, FenceState::ExportOnly, &hosts)).is_none());
    assert!(banner(&status(SegmentMode::Enforce, FenceState::Applied, &hosts)).is_none());
    let b = banner(&status(SegmentMode::Enforce, FenceState::Drifted, &hosts)).unwrap();
    assert!(b.text.contains("segment apply"), "{}", b.text);
    let why = "patchward-netd is not reachable: enable it with `systemctl enable --now patchward-netd.socket`";
    let b = banner(&status(
        SegmentMode::Enforce,
        FenceState::HelperAbsent(why.into()),
        &hosts,
    ))
    .unwrap();
    assert_eq!(b.title, "The fence helper is absent");
    assert!(b.text.contains("systemctl enable"), "{}", b.text);
}

#[test]
fn monitor_cells_and_event_colours() {
    let v = |state: &str, since: Option<&str>| MonitorView {
        state: state.into(),
        since: since.map(String::from),
        last_cycle: None,
        ports: vec![],
    };
    let c = monitor_cell(Some(&v("down", Some("2026-12-07T20:00:00Z"))));
    assert_eq!((c.b.text, c.b.class), ("DOWN", "bad"));
    assert_eq!(c.since.as_deref(), Some("2026-12-07 20:00 UTC"));
    assert_eq!(monitor_cell(Some(&v("up", None))).b.text, "UP");
    assert_eq!(monitor_cell(Some(&v("pending", None))).b.class, "warn");
    assert_eq!(
        monitor_cell(Some(&v("unwatched", None))).b.text,
        "unwatched"
    );
    assert_eq!(monitor_cell(None).b.text, "unwatched");
    assert_eq!(event_class("host_down"), "bad");
    assert_eq!(event_class("blocked_flow"), "bad");
    assert_eq!(event_class("port_opened"), "warn");
    assert_eq!(event_class("host_up"), "ok");
    assert_eq!(event_class("flow_added"), "grey");
}

/// The `input` value of the "Mark as loaded" form on the fence page.
fn mark_input(fence: &str) -> String {
    let f = &fence[fence.find("id=\"fence-exported\"").expect("the mark form")..];
    let v = &f[f.find("name=\"input\" value=\"").unwrap() + 20..];
    v[..v.find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_the_downloads_loaded_makes_hosts_exported_and_a_stale_mark_changes_nothing() {
    let s = site();
    add_printer(&s);
    let admin = app(&s, Role::Admin);
    let (st, _, _) = post(&admin, "/legacy/printer-3f/flows", FLOW).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, fence) = get(&admin, "/legacy/segment").await;
    assert!(fence.contains("0 exported, 1 pending export"), "{fence}");
    let seen = mark_input(&fence);

    // An auditor cannot; an edit after the page was read makes the mark stale.
    let auditor = app(&s, Role::Auditor);
    let before = state(&s);
    let (st, _, _) = post(
        &auditor,
        "/legacy/segment/exported",
        &format!("input={seen}"),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(state(&s), before);
    let (st, _, _) = post(
        &admin,
        "/legacy/printer-3f/flows",
        "flow=in+tcp+192.0.2.0%2F24+port+9100",
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let before = state(&s);
    let (st, body, _) = post(&admin, "/legacy/segment/exported", &format!("input={seen}")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(
        body.contains("the flows changed since these files were made"),
        "{body}"
    );
    assert_eq!(state(&s), before);

    // With the page as it is now: recorded, and the host is exported.
    let (_, fence) = get(&admin, "/legacy/segment").await;
    let (st, _, _) = post(
        &admin,
        "/legacy/segment/exported",
        &format!("input={}", mark_input(&fence)),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, fence) = get(&admin, "/legacy/segment").await;
    assert!(fence.contains("1 exported, 0 pending export"), "{fence}");
    assert!(fence.contains("by web:admin-user to"), "{fence}");
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(
        section(&page, "h-flows").contains(">exported</span>"),
        "{page}"
    );
}
