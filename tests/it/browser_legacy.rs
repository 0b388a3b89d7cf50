//! The Legacy pages in real headless Chromium (helpers from `browser`): an agentless
//! host registered with the CLI, whose owner and notes carry script and markup, is
//! listed and shown with that text literally and no script run; a risk acceptance made
//! through the form shows on its page and in its history. Screenshots go to
//! `<target dir>/screenshots/legacy-*.png`.

use crate::browser::{Browser, Driver};
use crate::jobs::ok;
use crate::support::run;
use crate::web_pages::{NEW_PW, fresh};

/// Sets `window.__xss` if it ever runs; CSP forbids inline script as well, so this
/// checks the escaping, not only the policy.
const OWNER: &str = "<script>window.__xss = 1</script> Facilities & 'ops'";
const NOTES: &str = "<img src=x onerror=\"window.__xss = 2\"> 3rd floor \"print room\"";

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs chromium and chromium-driver: cargo test --features system-tests"
)]
fn the_legacy_pages_in_headless_chromium() {
    let site = fresh();
    // Host names are validated (hostname rules), so the closest a name comes to markup
    // is its words; owner and notes are free text and keep their markup as typed.
    let cmd = |args: &[&str]| {
        let mut c = crate::support::patchward(&site.data);
        c.arg("--config").arg(&site.config).args(args);
        c
    };
    ok(run(cmd(&[
        "legacy",
        "add",
        "script-alert-printer",
        "--address",
        "192.0.2.77",
        "--product",
        "debian",
        "--cycle",
        "10",
        "--owner",
        OWNER,
        "--notes",
        NOTES,
    ])));
    let today = patchward::legacy::active::day(jiff::Timestamp::now());
    let until = (today + jiff::Span::new().days(30)).to_string();
    let driver = Driver::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Browser::connect(&driver, &site.server.admin_url).await;
        b.first_sign_in(&site.server.admin_password(), NEW_PW).await;
        let untouched = || async {
            let v =
                b.c.execute("return window.__xss === undefined;", vec![])
                    .await
                    .unwrap();
            v.as_bool() == Some(true)
        };

        // The dashboard counts it; the list shows it, red, with no acceptance.
        b.wait_text("Legacy hosts").await;
        b.click("nav a[href='/legacy']").await;
        b.wait_for("/legacy", "script-alert-printer").await;
        assert_eq!(b.text_of("tbody tr .lc-bad").await, "eol");
        assert_eq!(b.text_of("tbody tr .acc-missing").await, "missing");
        assert!(
            b.text_of("tbody tr").await.contains("not fenced"),
            "a host without flows is not fenced"
        );
        b.shot("legacy-01-list").await;

        // Its page: owner and notes as text, nothing ran.
        b.click("a[href='/legacy/script-alert-printer']").await;
        b.wait_for("/legacy/script-alert-printer", "Risk acceptance")
            .await;
        let facts = b.text_of("dl.facts").await;
        assert!(facts.contains(OWNER), "{facts}");
        assert!(facts.contains(NOTES), "{facts}");
        assert!(untouched().await, "a script from the host's fields ran");
        assert_eq!(
            b.c.execute(
                "return document.querySelectorAll('main script, main img').length;",
                vec![]
            )
            .await
            .unwrap()
            .as_u64(),
            Some(0),
            "markup from the host's fields became elements"
        );
        b.shot("legacy-02-host").await;

        // Accept the risk through the form.
        b.fill("#a-reason", "print VLAN, no internet").await;
        b.click("#a-c-segmented").await;
        b.click("#a-c-no-internet").await;
        b.set("a-until", &until).await;
        b.click("form[action$='/accept'] button[type=submit]").await;
        b.wait_for(
            "/legacy/script-alert-printer",
            "Risk accepted for script-alert-printer",
        )
        .await;
        assert_eq!(b.text_of("h2 .acc-accepted").await, "accepted");
        let history = b.text_of("#h-history + ul").await;
        assert!(history.contains("legacy.accept"), "{history}");
        assert!(history.contains("web:admin"), "{history}");
        b.shot("legacy-03-accepted").await;
        b.go("/legacy").await;
        b.wait_for("/legacy", &format!("until {until}")).await;
        assert!(untouched().await);
        assert_eq!(b.c.title().await.unwrap(), "Legacy hosts · Patchward");
        b.c.close().await.unwrap();
    });
    drop(driver);
}
