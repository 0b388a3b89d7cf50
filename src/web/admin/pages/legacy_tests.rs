//! The Legacy pages in-process (see `tests.rs` for the site): the list and a host's
//! page show an agentless host with its state; an acceptance made through the form
//! shows, and once the manual clock passes its end and `expire_due` runs, it is red
//! and its expiry is in the host's history; auditors and CSRF-less posts change
//! nothing; hostile text is escaped. The view model's colours and day counts are
//! tested on their own.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jiff::SignedDuration;
use jiff::civil::date;

use super::legacy::{days_from, row, state_class};
use super::tests::{EVIL, Site, app, call, get, post, site};
use crate::auth::Role;
use crate::clock::Clock;
use crate::legacy::catalog::State as Lc;

/// An agentless debian 10 host (eol since 2024-06-30) with markup in its owner and
/// notes, written as `legacy add` stores it.
fn add_printer(s: &Site) {
    s.db.write_blocking(|tx| {
        tx.execute(
            "INSERT INTO legacy_hosts (name, addresses, product, cycle, owner, notes, added_at, added_by)
             VALUES ('printer-3f', '[\"192.0.2.30\"]', 'debian', '10', ?1, ?2, ?3, 'test')",
            rusqlite::params![format!("owner {EVIL}"), format!("notes {EVIL}"), s.now.to_string()],
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap();
}

/// Makes enrolled host `id` report `os` `version` (the seeded ones run debian 12, whose
/// security support ended in 2026: `extended_only`).
fn set_os(s: &Site, id: &str, os: &str, version: &str) {
    s.db.write_blocking(|tx| {
        let mut inv = crate::fleet::inventory::sample(id);
        inv.os.id = os.into();
        inv.os.version_id = version.into();
        tx.execute(
            "UPDATE host_inventory SET inventory = ?1 WHERE host_id = ?2",
            rusqlite::params![serde_json::to_string(&inv).unwrap(), id],
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap();
}

/// What a refused request must leave alone here.
fn legacy_state(s: &Site) -> String {
    s.db.read_blocking(|c| {
        c.query_row(
            "SELECT (SELECT count(*) FROM audit_log) || '|' ||
                    (SELECT count(*) FROM legacy_acceptances) || '|' ||
                    (SELECT count(*) FROM legacy_includes)",
            [],
            |r| r.get::<_, String>(0),
        )
        .map_err(crate::error::DbError::from)
    })
    .unwrap()
}

const ESCAPED: &str = "&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_and_the_host_page_show_an_agentless_host_with_its_state() {
    let s = site();
    let admin = app(&s, Role::Admin);
    for id in ["h-1", "h-2"] {
        set_os(&s, id, "debian", "13");
    }
    let (st, empty) = get(&admin, "/legacy").await;
    assert_eq!(st, StatusCode::OK);
    assert!(empty.contains("patchward legacy add"), "{empty}");
    add_printer(&s);
    for role in [Role::Admin, Role::Auditor] {
        let (st, body) = get(&app(&s, role), "/legacy").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let row = &body[body.find("href=\"/legacy/printer-3f\"").expect("the host")..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains("<span class=\"badge lc-bad\">eol</span>"),
            "{row}"
        );
        assert!(
            row.contains("agentless") && row.contains("2024-06-30"),
            "{row}"
        );
        // 2024-06-30 to 2026-11-27.
        assert!(row.contains("880 days ago"), "{row}");
        assert!(row.contains("badge acc-missing"), "{row}");
        assert!(row.contains(">not fenced<"), "{row}");
        assert!(row.contains("no agent: never offered patches"), "{row}");
        assert!(body.contains("<span class=\"num\">1</span> eol"), "{body}");
    }
    let (st, page) = get(&admin, "/legacy/printer-3f").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("192.0.2.30"), "{page}");
    assert!(
        page.contains("action=\"/legacy/printer-3f/accept\""),
        "{page}"
    );
    assert!(
        page.contains("max=\"2027-11-27\""),
        "the latest allowed day: {page}"
    );
    // An agentless host cannot be included (it is never offered patches).
    assert!(!page.contains("/include\""), "{page}");
    // The auditor sees it all but gets no form (the sign-out form is the layout's).
    let (_, page) = get(&app(&s, Role::Auditor), "/legacy/printer-3f").await;
    assert_eq!(page.matches("method=\"post\"").count(), 1, "{page}");
    // The dashboard counts it.
    let (_, dash) = get(&admin, "/").await;
    let panel = &dash[dash.find("id=\"h-legacy\"").unwrap()..];
    let panel = &panel[..panel.find("</section>").unwrap()];
    assert!(
        panel.contains("<span class=\"num\">1</span> eol"),
        "{panel}"
    );
    assert!(
        panel.contains("<span class=\"num\">1</span> no acceptance"),
        "{panel}"
    );
    let (st, body) = get(&admin, "/legacy/nope").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_escaped_on_both_pages() {
    let s = site();
    add_printer(&s);
    let admin = app(&s, Role::Admin);
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(page.contains(&format!("owner {ESCAPED}")), "{page}");
    assert!(page.contains(&format!("notes {ESCAPED}")), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    // An enrolled host named with markup (a database written by something careless)
    // whose OS is a legacy one is listed escaped.
    set_os(&s, "h-2", "debian", "10");
    let (_, list) = get(&admin, "/legacy").await;
    assert!(list.contains(ESCAPED), "{list}");
    assert!(!list.contains("<script>alert"), "{list}");
    let (st, page) = get(&admin, "/legacy/h-2").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains(ESCAPED) && !page.contains("<script>alert"));
    assert!(page.contains("action=\"/legacy/h-2/include\""), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptance_from_the_form_shows_then_expires_red_and_is_audited() {
    let s = site();
    add_printer(&s);
    let admin = app(&s, Role::Admin);
    let (st, _, h) = post(
        &admin,
        "/legacy/printer-3f/accept",
        "reason=isolated+print+VLAN&controls=segmented&controls=monitored&until=2027-01-15",
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/legacy/printer-3f");
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(page.contains("badge acc-accepted"), "{page}");
    assert!(page.contains("isolated print VLAN"), "{page}");
    assert!(page.contains("2027-01-15 00:00 UTC"), "{page}");
    assert!(page.contains("web:admin-user"), "{page}");
    assert!(
        page.contains("legacy.accept"),
        "the history lists it: {page}"
    );
    let (_, list) = get(&admin, "/legacy").await;
    assert!(list.contains("badge acc-accepted") && list.contains("until 2027-01-15"));

    // Past its end, and the expiry task has run: red, and audited once.
    s.clock.advance(SignedDuration::from_hours(24 * 50));
    let n =
        s.db.write_blocking(|tx| crate::legacy::decide::expire_due(tx, s.clock.now()))
            .unwrap();
    assert_eq!(n, 1);
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(page.contains("badge acc-expired"), "{page}");
    assert!(
        page.contains("(expired: the host counts as unaccepted)"),
        "{page}"
    );
    let history = &page[page.find("id=\"h-history\"").unwrap()..];
    assert!(history.contains("legacy.acceptance_expired"), "{history}");
    let (_, list) = get(&admin, "/legacy").await;
    assert!(list.contains("badge acc-expired"), "{list}");
    assert!(
        list.contains("<span class=\"err\">ended 2027-01-15</span>"),
        "{list}"
    );

    // Revoked through its form: gone, and audited.
    let (st, _, _) = post(
        &admin,
        "/legacy/printer-3f/revoke-acceptance",
        "reason=moved",
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, page) = get(&admin, "/legacy/printer-3f").await;
    assert!(page.contains("badge acc-missing") && page.contains("legacy.revoke_acceptance"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_and_bad_forms_are_refused_and_nothing_changes() {
    let s = site();
    add_printer(&s);
    let before = legacy_state(&s);
    let form = "reason=r&controls=segmented&until=2027-01-15";
    let auditor = app(&s, Role::Auditor);
    for path in [
        "/legacy/printer-3f/accept",
        "/legacy/printer-3f/revoke-acceptance",
        "/legacy/h-1/include",
        "/legacy/h-1/exclude",
    ] {
        let (st, body, _) = post(&auditor, path, form).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    assert_eq!(legacy_state(&s), before);
    let admin = app(&s, Role::Admin);
    for (path, form, want) in [
        (
            "/legacy/printer-3f/accept",
            "reason=r&until=2027-01-15",
            "compensating control",
        ),
        (
            "/legacy/printer-3f/accept",
            "reason=r&controls=prayer&until=2027-01-15",
            "prayer",
        ),
        (
            "/legacy/printer-3f/accept",
            "reason=r&controls=segmented&until=soon",
            "not a date",
        ),
        (
            "/legacy/printer-3f/accept",
            "reason=r&controls=segmented&until=2030-01-01",
            "2027-11-27",
        ),
        (
            "/legacy/printer-3f/accept",
            "controls=segmented&until=2027-01-15",
            "reason",
        ),
        ("/legacy/printer-3f/revoke-acceptance", "reason=x", ""),
        ("/legacy/printer-3f/include", "reason=x", ""),
        ("/legacy/nope/accept", form, "no host"),
    ] {
        let (st, body, _) = post(&admin, path, form).await;
        assert!(st.is_client_error(), "{path} {form}: {st} {body}");
        assert!(body.contains(want), "{path} {form}: {body}");
        assert!(body.contains("class=\"alert error\""), "{path} {form}");
    }
    assert_eq!(legacy_state(&s), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_csrf_token_is_refused_by_the_guard() {
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
    let origin = "https://pw.test:8443";
    let req = |path: &str, cookie: Option<&str>, body: String| {
        let mut b = Request::post(path)
            .header(header::HOST, "pw.test:8443")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(body)).unwrap()
    };
    let (st, _, h) = call(
        &app,
        req(
            "/login",
            None,
            "name=ada&password=a+good+long+password&next=%2Flegacy".into(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let cookie = h[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let before = legacy_state(&s);
    let (st, body, _) = call(
        &app,
        req(
            "/legacy/printer-3f/accept",
            Some(&cookie),
            "reason=r&controls=segmented&until=2027-01-15".into(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(legacy_state(&s), before);
    // The same request with the session's token goes through.
    let csrf: String =
        s.db.read_blocking(|c| {
            c.query_row("SELECT csrf FROM sessions", [], |r| r.get(0))
                .map_err(crate::error::DbError::from)
        })
        .unwrap();
    let (st, body, _) = call(
        &app,
        req(
            "/legacy/printer-3f/accept",
            Some(&cookie),
            format!("csrf={csrf}&reason=r&controls=segmented&until=2027-01-15"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    assert_ne!(legacy_state(&s), before);
}

#[test]
fn days_and_colours() {
    let today = date(2026, 12, 7);
    assert_eq!(days_from(today, date(2024, 6, 30)), "890 days ago");
    assert_eq!(days_from(today, date(2026, 12, 6)), "1 day ago");
    assert_eq!(days_from(today, today), "today");
    assert_eq!(days_from(today, date(2026, 12, 8)), "in 1 day");
    assert_eq!(days_from(today, date(2027, 1, 6)), "in 30 days");
    assert_eq!(state_class(Lc::Eol), "bad");
    assert_eq!(state_class(Lc::EolSoon), "warn");
    assert_eq!(state_class(Lc::ExtendedOnly), "warn");
    assert_eq!(state_class(Lc::Unknown), "grey");
    assert_eq!(state_class(Lc::Supported), "ok");
}

#[test]
fn the_row_of_an_unknown_appliance_says_what_it_lacks() {
    use crate::legacy::catalog::Lifecycle;
    use crate::legacy::decisions::AcceptanceStatus;
    let v = crate::legacy::hosts::LegacyHostView {
        host: crate::legacy::HostRef::Agentless {
            name: "nas-1".into(),
        },
        name: "nas-1".into(),
        addresses: vec!["192.0.2.9".into()],
        product: "acme-nas".into(),
        cycle: "4".into(),
        lifecycle: Lifecycle {
            product: "acme-nas".into(),
            cycle: "4".into(),
            state: Lc::Unknown,
            title: None,
            codename: None,
            security_end: None,
            eol_date: None,
        },
        owner: String::new(),
        notes: String::new(),
        include: None,
        acceptance: None,
        acceptance_status: AcceptanceStatus::Missing,
        excluded: false,
        ring: None,
        last_seen: None,
        added_at: None,
        added_by: None,
    };
    let r = row(&v, date(2026, 12, 7));
    assert_eq!(
        (r.state, r.state_class, r.product.as_str(), r.href.as_str()),
        ("unknown", "grey", "acme-nas 4", "/legacy/nas-1")
    );
    assert!(r.eol_when.contains("does not know"), "{}", r.eol_when);
    assert!(r.acceptance_bad && r.until.is_none());
}
