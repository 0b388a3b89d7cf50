//! The admin page in real headless Chromium, driven over WebDriver (fantoccini) against
//! the real `patchward serve`: the first sign-in with the printed password and the
//! forced change, a bundle upload, an enrollment token (a real agent enrolls with it),
//! approving a patch and seeing its rollout (whose rings htmx refreshes in place),
//! halting and resuming it, adding a maintenance window and seeing its preview, and
//! signing out. A screenshot of every page goes to `<target dir>/screenshots/`.
//!
//! chromedriver is started by the test on a free 127.0.0.1 port and killed when the
//! test ends; the browser (and only it) accepts the appliance's self-signed
//! certificate. Needs the Debian packages `chromium` and `chromium-driver`: run by
//! `.ci/run` with `--features system-tests`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::jobs::{agent, ok};
use crate::web_pages::{EVIL, NEW_PW, export, fresh};

/// How long a page may take to show what a step expects. Generous: CI runs this next to
/// the other integration tests on two cores.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// A chromedriver on a free loopback port, killed on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub(crate) fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed");
        let d = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `<target dir>/screenshots`, next to the test binary's `debug/` directory.
pub(crate) fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) struct Browser {
    pub(crate) c: Client,
    pub(crate) base: String,
    pub(crate) shots: PathBuf,
}

impl Browser {
    /// A headless Chromium session on `driver` that accepts the appliance's
    /// self-signed certificate, for the admin page at `base`.
    pub(crate) async fn connect(driver: &Driver, base: &str) -> Browser {
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--ignore-certificate-errors", "--window-size=1280,900", "--lang=en-GB",
                    "--force-device-scale-factor=1", "--hide-scrollbars",
                ],
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a Chromium session");
        Browser {
            c,
            base: base.to_string(),
            shots: screenshot_dir(),
        }
    }

    /// The first sign-in with the printed password, then the forced change to `new`;
    /// ends on the dashboard.
    pub(crate) async fn first_sign_in(&self, printed: &str, new: &str) {
        self.go("/").await;
        self.wait_for("/login", "Sign in").await;
        self.fill("#name", "admin").await;
        self.fill("#password", printed).await;
        self.click("button[type=submit]").await;
        self.wait_for("/password", "new").await;
        self.fill("#current", printed).await;
        self.fill("#new", new).await;
        self.fill("#repeat", new).await;
        self.click("form[action='/password'] button[type=submit]")
            .await;
        self.wait_for("/", "Waiting for approval").await;
    }

    /// Opens `path` and waits until the browser has left the page it was on (a
    /// navigation still settling from the previous click can swallow a `goto`; it is
    /// then repeated). Redirects (to the sign-in page) are fine.
    pub(crate) async fn go(&self, path: &str) {
        let want = path.split(['?', '#']).next().unwrap_or(path);
        let was = self.path().await;
        for _ in 0..3 {
            self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                let now = self.path().await;
                if now == want || now != was {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.fail(&format!("could not open {path}")).await
    }

    pub(crate) async fn source(&self) -> String {
        self.c.source().await.unwrap()
    }

    pub(crate) async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    /// Types `text` into the field `css` (cleared first). Retried a few times: a
    /// WebDriver call can meet an element that a navigation or an htmx swap replaced.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let mut last = String::new();
        for _ in 0..5 {
            let typed = async {
                let e = self.c.find(Locator::Css(css)).await?;
                e.clear().await?;
                e.send_keys(text).await
            };
            match typed.await {
                Ok(()) => return,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.fail(&format!("cannot type into {css}: {last}")).await
    }

    /// Sets a field's value by script (time and date inputs take typed text in the
    /// browser's locale format).
    pub(crate) async fn set(&self, id: &str, value: &str) {
        self.c
            .execute(
                "document.getElementById(arguments[0]).value = arguments[1];",
                vec![json!(id), json!(value)],
            )
            .await
            .unwrap();
    }

    /// Clicks the element `css`, retried like `fill`.
    pub(crate) async fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..5 {
            let clicked = async { self.c.find(Locator::Css(css)).await?.click().await };
            match clicked.await {
                Ok(_) => return,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.fail(&format!("cannot click {css}: {last}")).await
    }

    /// Waits until the page at `path` has loaded and contains `text`.
    pub(crate) async fn wait_for(&self, path: &str, text: &str) {
        let start = Instant::now();
        loop {
            if self.path().await == path && self.source().await.contains(text) {
                return;
            }
            if start.elapsed() > WAIT {
                self.fail(&format!("no {text:?} at {path}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page (wherever it is) contains `text`.
    pub(crate) async fn wait_text(&self, text: &str) {
        let start = Instant::now();
        while !self.source().await.contains(text) {
            if start.elapsed() > WAIT {
                self.fail(&format!("no {text:?}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css`, read in one script call: htmx
    /// swaps parts of the page in place, and an element found by one WebDriver call can
    /// be gone ("stale") by the next.
    pub(crate) async fn text_of(&self, css: &str) -> String {
        let v = self
            .c
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await
            .unwrap();
        match v.as_str() {
            Some(t) => t.trim().to_string(),
            None => self.fail(&format!("no element {css}")).await,
        }
    }

    /// Fails the test with a short message; the page's source goes to a file next to
    /// the screenshots (a whole page in the panic message would push the message itself
    /// out of a CI log's tail).
    pub(crate) async fn fail(&self, what: &str) -> ! {
        let at = self.path().await;
        let page = self.source().await;
        let file = self.shots.join("failed-page.html");
        let _ = std::fs::write(&file, &page);
        let _ = self
            .c
            .screenshot()
            .await
            .map(|png| std::fs::write(self.shots.join("failed-page.png"), png));
        // The visible text too, so a CI log shows what the page said.
        let text = self
            .c
            .execute(
                "const m = document.querySelector('main') || document.body; return m ? m.innerText : '';",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let text: String = text.chars().take(1500).collect();
        panic!(
            "{what} (now at {at}; the page is in {}, with a screenshot next to it); \
             the page says:\n{text}",
            file.display()
        );
    }

    /// A full-page screenshot (the window is resized to the page's height).
    pub(crate) async fn shot(&self, name: &str) {
        self.c
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        let h = self
            .c
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900)
            .clamp(700, 4000) as u32;
        self.c.set_window_size(1280, h + 90).await.unwrap();
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        self.c.set_window_size(1280, 900).await.unwrap();
    }
}

#[test]
#[cfg_attr(
    not(feature = "system-tests"),
    ignore = "needs chromium and chromium-driver: cargo test --features system-tests"
)]
fn the_admin_page_in_headless_chromium() {
    let site = fresh();
    let driver = Driver::start();
    let bundle = export(&site.feed, site.dir.path(), "acme-full.pwb");
    let agent_state = site.dir.path().join("agent");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Browser::connect(&driver, &site.server.admin_url).await;

        // First sign-in: the printed password, then the forced change.
        b.go("/").await;
        b.wait_for("/login", "Sign in").await;
        b.shot("01-login").await;
        b.fill("#name", "admin").await;
        b.fill("#password", &site.server.admin_password()).await;
        b.click("button[type=submit]").await;
        b.wait_for("/password", "new").await;
        b.shot("02-password-forced").await;
        b.fill("#current", &site.server.admin_password()).await;
        b.fill("#new", NEW_PW).await;
        b.fill("#repeat", NEW_PW).await;
        b.click("form[action='/password'] button[type=submit]")
            .await;
        b.wait_for("/", "Waiting for approval").await;

        // Upload a bundle on the mirror page (htmx sends it with the CSRF header).
        b.go("/mirror").await;
        b.c.find(Locator::Css("#bundle"))
            .await
            .unwrap()
            .send_keys(bundle.to_str().unwrap())
            .await
            .unwrap();
        b.click("form[action^='/mirror/upload'] button[type=submit]")
            .await;
        // The server's scheduler syncs the same feed from its directory at start, and
        // under load it can import catalog version 1 before the upload does: then the
        // upload is "already at catalog version 1". Either way the flash names the
        // uploaded file and the history holds the import of version 1.
        b.wait_for("/mirror", "acme-full.pwb (").await;
        let page = b.source().await;
        let uploaded = page.contains("imported: feed acme catalog version 1.");
        let raced = page.contains("feed acme is already at catalog version 1; nothing changed.");
        if !uploaded && !raced {
            b.fail("the upload's flash says neither imported nor already current")
                .await;
        }
        let row = b
            .text_of("section[aria-labelledby=h-history] tbody tr")
            .await;
        if !row.contains("catalog version 1 of acme") {
            b.fail(&format!(
                "the newest import is not version 1 of acme: {row:?}"
            ))
            .await;
        }
        b.shot("03-mirror").await;

        // An enrollment token; a real agent enrolls with the command shown.
        b.go("/hosts").await;
        b.c.find(Locator::Css("#t-ring"))
            .await
            .unwrap()
            .select_by_value("pilot")
            .await
            .unwrap();
        b.fill("#t-labels", "site=hq").await;
        b.click("form[action='/hosts/tokens'] button[type=submit]")
            .await;
        b.wait_for("/hosts/tokens", "patchward-agent enroll").await;
        b.shot("04-token").await;
        let cmd = b.text_of("pre.command code").await;
        assert!(
            cmd.starts_with("patchward-agent enroll --server http://127.0.0.1:"),
            "{cmd}"
        );
        let token = cmd
            .split("--token ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        ok(agent(
            &agent_state,
            &[
                "enroll",
                "--server",
                &site.server.url,
                "--token",
                token,
                "--hostname",
                "pilot1",
            ],
        ));
        b.go("/hosts").await;
        b.wait_for("/hosts", "pilot1").await;
        b.shot("05-hosts").await;
        b.click("table a[href^='/hosts/']").await;
        b.wait_text("Patches not installed yet").await;
        b.shot("06-host").await;

        // Patches: the catalog, then approve one for the pilot ring.
        b.go("/patches").await;
        b.wait_for("/patches", "acme/good-1").await;
        assert!(!b.source().await.contains(EVIL), "titles are escaped");
        b.shot("07-patches").await;
        b.go("/patches/acme%3Aacme%2Fgood-1").await;
        b.wait_for("/patches/acme%3Aacme%2Fgood-1", "Approve").await;
        b.shot("08-patch").await;
        b.click("#a-ring-broad").await; // pilot only
        b.fill("#a-reason", "tested in the lab").await;
        b.click("button[value=approve]").await;
        let rollout = "/rollouts/acme%3Aacme%2Fgood-1";
        b.wait_for(rollout, "acme:acme/good-1 is approved.").await;
        assert!(b.source().await.contains("<progress"));

        // htmx refreshes the rings in place every 5 s.
        let first = b.text_of("#rings h2 .small").await;
        let start = Instant::now();
        while b.text_of("#rings h2 .small").await == first {
            if start.elapsed() > WAIT {
                b.fail("the rings were not refreshed").await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        b.shot("09-rollout").await;

        // Halt, then resume.
        b.fill("#c-reason", "checking the canary").await;
        b.click("button[value=halt]").await;
        b.wait_for(rollout, "is halted").await;
        b.shot("10-rollout-halted").await;
        b.fill("#c-reason", "canary is fine").await;
        b.click("button[value=resume]").await;
        b.wait_for(rollout, "is resumed").await;
        b.go("/rollouts").await;
        b.wait_for("/rollouts", "acme:acme/good-1").await;
        b.shot("11-rollouts").await;

        // A weekly window, and its preview.
        b.go("/windows").await;
        for d in ["sat", "sun"] {
            b.click(&format!("#w-day-{d}")).await;
        }
        b.set("w-start", "10:00").await;
        b.fill("#w-duration", "2h").await;
        b.fill("#w-reason", "weekend slot").await;
        b.click("form:has(#w-start) button[type=submit]").await;
        b.wait_for("/windows", "every Sat, Sun at 10:00 for 2h")
            .await;
        let page = b.source().await;
        assert!(page.contains("added to the set default"), "{page}");
        assert!(page.contains("<ol class=\"openings\">"), "{page}");
        b.shot("12-windows").await;

        b.go("/audit").await;
        b.wait_for("/audit", "Hash chain verified").await;
        b.shot("13-audit").await;
        b.go("/").await;
        b.wait_for("/", "Rollouts in progress").await;
        b.shot("14-dashboard").await;

        // Keyboard: the first Tab reaches the skip link.
        b.c.active_element()
            .await
            .unwrap()
            .send_keys("\u{E004}")
            .await
            .unwrap();
        let focused = b.c.active_element().await.unwrap().text().await.unwrap();
        assert_eq!(focused, "Skip to content");

        // Sign out.
        b.click("form[action='/logout'] button").await;
        b.wait_for("/login", "Sign in").await;
        // Signed out: a page sends the browser back to the sign-in form.
        b.c.goto(&format!("{}/hosts", b.base)).await.unwrap();
        b.wait_for("/login", "Sign in").await;
        b.c.close().await.unwrap();
    });
    drop(driver);
}
