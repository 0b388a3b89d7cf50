//! The [10] Legacy pages in real headless Chromium (helpers from `browser`): a flow
//! added in a host's flows editor (its comment carries markup) is listed as text; the
//! fence page shows it in the plan's diff; Apply in export mode (the default) is
//! refused with the export message; and the host's timeline shows the flow's event.
//! Screenshots go to `<target dir>/screenshots/legacy-fence-*.png`.

use crate::browser::{Browser, Driver};
use crate::jobs::ok;
use crate::support::run;
use crate::web_pages::{NEW_PW, fresh};

const FLOW: &str = "in tcp 192.0.2.0/24 port 22 \"<img src=x onerror=window.__xss=1> admins\"";

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs chromium and chromium-driver: cargo test --features system-tests"
)]
fn the_flows_editor_diff_and_apply_in_headless_chromium() {
    let site = fresh();
    let mut c = crate::support::patchward(&site.data);
    c.arg("--config").arg(&site.config).args([
        "legacy",
        "add",
        "old-scada",
        "--address",
        "192.0.2.88",
        "--product",
        "debian",
        "--cycle",
        "10",
    ]);
    ok(run(c));
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

        // The list: not fenced yet, unwatched, no event.
        b.go("/legacy").await;
        b.wait_for("/legacy", "old-scada").await;
        let row = b.text_of("tbody tr").await;
        assert!(
            row.contains("not fenced") && row.contains("unwatched"),
            "{row}"
        );

        // Add a flow in the editor.
        b.go("/legacy/old-scada").await;
        b.wait_for("/legacy/old-scada", "Add flow").await;
        b.fill("#fl-flow", FLOW).await;
        b.shot("legacy-fence-01-editor").await;
        b.click("#add-flow button[type=submit]").await;
        b.wait_for("/legacy/old-scada", "added to old-scada").await;
        let flows = b.text_of("#flows").await;
        assert!(flows.contains("192.0.2.0/24"), "{flows}");
        assert!(
            flows.contains("<img src=x onerror=window.__xss=1> admins"),
            "{flows}"
        );
        assert!(untouched().await, "the flow's comment ran as markup");
        assert_eq!(b.text_of("#host-fence").await, "pending export");
        assert_eq!(b.text_of("#host-monitor").await, "PENDING");
        b.shot("legacy-fence-02-flow").await;

        // The fence page: the diff adds the host's address.
        b.go("/legacy/segment").await;
        b.wait_for("/legacy/segment", "fence-diff").await;
        let diff = b.text_of("#fence-diff").await;
        assert!(diff.contains("192.0.2.88"), "{diff}");
        assert_eq!(b.text_of("#fence-state").await, "export only");
        b.shot("legacy-fence-03-diff").await;

        // Apply in export mode: refused, saying what to do instead.
        b.fill("#f-reason", "first fence for the SCADA box").await;
        b.click("#fence-apply button[type=submit]").await;
        b.wait_for("/legacy/segment/apply", "segment_mode is export")
            .await;
        b.shot("legacy-fence-04-refused").await;

        // Export mode's way: the files went into the site firewall; record that.
        b.go("/legacy/segment").await;
        b.wait_for("/legacy/segment", "Mark as loaded").await;
        b.click("#fence-exported button[type=submit]").await;
        b.wait_for(
            "/legacy/segment",
            "Recorded: the site firewall holds this fence",
        )
        .await;
        b.shot("legacy-fence-04b-exported").await;

        // The timeline has the flow's event.
        b.go("/legacy/old-scada").await;
        b.wait_for("/legacy/old-scada", "flow_added").await;
        let events = b.text_of("#events").await;
        assert!(
            events.contains("flow_added") && events.contains("web:admin"),
            "{events}"
        );
        assert!(events.contains("fence_exported"), "{events}");
        assert_eq!(b.text_of("#host-fence").await, "exported");
        assert!(untouched().await);
        b.shot("legacy-fence-05-timeline").await;
        b.c.close().await.unwrap();
    });
    drop(driver);
}
