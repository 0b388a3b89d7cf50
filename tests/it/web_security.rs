//! The admin page's security against the real binary over HTTPS: first sign-in and the
//! forced password change, cookie flags, CSRF and Origin, roles, throttling, the
//! listener split, the operator's certificate, escaping. Every refusal is checked for
//! its answer AND for having changed nothing.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{
    Admin, FormData, Server, http, https, patchward, run, session_cookie, stderr, stdout,
};

const NEW_PW: &str = "correct horse battery staple";

/// Runs `patchward users ...` on `data` with `stdin` as standard input.
fn users(data: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = patchward(data);
    c.arg("users").args(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn audit_count(data: &Path) -> usize {
    let out = run({
        let mut c = patchward(data);
        c.args(["audit", "list", "--limit", "100000", "--json"]);
        c
    });
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v.as_array().unwrap().len()
}

fn audit_actions(data: &Path) -> String {
    stdout(&run({
        let mut c = patchward(data);
        c.args(["audit", "list", "--limit", "1000"]);
        c
    }))
}

/// POST /login from this site's page; returns (status, Set-Cookie session value, body).
fn login(base: &str, name: &str, password: &str) -> (u16, Option<String>, String) {
    let r = https()
        .post(format!("{base}/login"))
        .header("Origin", base)
        .form_data(&[("name", name), ("password", password), ("next", "/")])
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let cookie = session_cookie(&r);
    (status, cookie, r.text().unwrap())
}

const SIGN_IN_FAILED: &str =
    "Sign-in failed: the user name or password is wrong, or the account is disabled.";

#[test]
fn first_sign_in_forces_a_password_change_and_the_session_cookie_is_strict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let base = server.admin_url.clone();
    let printed = server.admin_password();
    assert!(printed.len() >= 20, "{printed}");

    // The certificate served is the one whose fingerprint was printed.
    let r = https().get(format!("{base}/login")).send().unwrap();
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("peer certificate")
        .to_vec();
    assert_eq!(
        patchward::tls::cert::fingerprint(&der),
        server.tls_fingerprint()
    );

    // Nothing without a session: pages redirect to the sign-in form, the API says 401.
    let c = https();
    let r = c.get(format!("{base}/")).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/");
    let r = c.get(format!("{base}/api/v1/mirror")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/"))
        .header(
            "Cookie",
            format!("__Host-patchward_session={}", "A".repeat(43)),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "a made-up cookie is no session");

    // Wrong password and unknown user: the same answer, no cookie.
    let (s1, c1, b1) = login(&base, "admin", "wrong password!");
    let (s2, c2, b2) = login(&base, "nobody", "wrong password!");
    assert_eq!((s1, s2), (401, 401));
    assert!(c1.is_none() && c2.is_none());
    assert!(b1.contains(SIGN_IN_FAILED) && b2.contains(SIGN_IN_FAILED));

    // The printed password works once and leads to the password page.
    let r = https()
        .post(format!("{base}/login"))
        .header("Origin", &base)
        .form_data(&[
            ("name", "admin"),
            ("password", &printed),
            ("next", "/hosts"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/password");
    let set_cookie: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(set_cookie.len(), 1, "{set_cookie:?}");
    let (name_value, flags) = set_cookie[0].split_once("; ").unwrap();
    assert!(name_value.starts_with("__Host-patchward_session="));
    assert_eq!(name_value.len(), "__Host-patchward_session=".len() + 43);
    assert_eq!(flags, "Path=/; Secure; HttpOnly; SameSite=Strict");
    let mut admin = Admin {
        base: base.clone(),
        cookie: session_cookie(&r).unwrap(),
        csrf: String::new(),
        client: https(),
    };
    admin.refresh_csrf();

    // Until the password is changed, every other page leads back to the form.
    for path in ["/", "/api/v1/mirror", "/hosts"] {
        let r = admin.get(path);
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/password", "{path}");
    }
    // A new password that is too short, or mistyped, is refused and changes nothing.
    for (new, repeat, msg) in [
        ("short", "short", "at least 12 characters"),
        (NEW_PW, "correct horse battery stapler", "differ"),
        (
            printed.as_str(),
            printed.as_str(),
            "differs from the current one",
        ),
    ] {
        let r = admin.post_form(
            "/password",
            &[("current", &printed), ("new", new), ("repeat", repeat)],
        );
        assert_eq!(r.status(), 400);
        assert!(r.text().unwrap().contains(msg), "{msg}");
    }
    let r = admin.post_form(
        "/password",
        &[
            ("current", "not the password"),
            ("new", NEW_PW),
            ("repeat", NEW_PW),
        ],
    );
    assert_eq!(r.status(), 403);
    assert_eq!(admin.get("/").headers()["location"], "/password");

    let r = admin.post_form(
        "/password",
        &[("current", &printed), ("new", NEW_PW), ("repeat", NEW_PW)],
    );
    assert_eq!(r.status(), 303);
    let page = admin.get("/");
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    let body = page.text().unwrap();
    assert!(
        body.contains("<title>Dashboard · Patchward</title>"),
        "{body}"
    );
    assert!(body.contains("<span class=\"user\">admin</span>"));
    assert!(body.contains("aria-current=\"page\">Dashboard<"));
    assert!(body.contains("<form method=\"post\" action=\"/logout\""));
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
         object-src 'none'"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["strict-transport-security"], "max-age=31536000");
    assert_eq!(h["cache-control"], "no-store");
    assert!(!body.contains("<script>"), "no inline script");
    // Static files: long cache, content-hashed URL.
    let css_url = body
        .split("href=\"")
        .find(|s| s.starts_with("/static/app.css?v="))
        .map(|s| &s[..s.find('"').unwrap()])
        .unwrap();
    let css = admin.get(css_url);
    assert_eq!(css.status(), 200);
    assert_eq!(
        css.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );

    // The printed password is now useless, the new one works.
    assert_eq!(login(&base, "admin", &printed).0, 401);
    let (s, cookie2, _) = login(&base, "admin", NEW_PW);
    assert_eq!(s, 303);

    // Sign out ends this session only; sign out everywhere ends the others too.
    let r = admin.post_form("/logout", &[]);
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(admin.get("/").status(), 303, "signed out");
    let mut second = Admin {
        base: base.clone(),
        cookie: cookie2.unwrap(),
        csrf: String::new(),
        client: https(),
    };
    second.refresh_csrf();
    assert_eq!(second.get("/").status(), 200);
    let third = Admin::sign_in(&base, "admin", NEW_PW);
    assert_eq!(third.post_form("/logout-all", &[]).status(), 303);
    assert_eq!(second.get("/").status(), 303, "ended everywhere");
    assert_eq!(third.get("/").status(), 303);

    let actions = audit_actions(&data);
    for a in [
        "user.created",
        "user.signed_in",
        "user.password_changed",
        "user.signed_out_everywhere",
    ] {
        assert!(actions.contains(a), "{a} in\n{actions}");
    }
    assert!(!actions.contains(&printed), "the password is never audited");
}

#[test]
fn wrong_csrf_or_foreign_origin_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let admin = Admin::first_sign_in(&server, NEW_PW);
    let base = &server.admin_url;
    let cookie = format!("__Host-patchward_session={}", admin.cookie);
    let before = audit_count(&data);
    let change = [
        ("current", NEW_PW),
        ("new", "a different long password"),
        ("repeat", "a different long password"),
    ];
    /// (why, extra headers, CSRF token in the form)
    type Attempt<'a> = (&'a str, Vec<(&'a str, String)>, Option<String>);
    let attempts: Vec<Attempt> = vec![
        ("no token", vec![("Origin", base.clone())], None),
        (
            "wrong token",
            vec![("Origin", base.clone())],
            Some("0".repeat(64)),
        ),
        (
            "foreign origin",
            vec![("Origin", "https://evil.example".into())],
            Some(admin.csrf.clone()),
        ),
        (
            "http origin",
            vec![("Origin", base.replace("https://", "http://"))],
            Some(admin.csrf.clone()),
        ),
        (
            "foreign referer",
            vec![("Referer", "https://evil.example/form".into())],
            Some(admin.csrf.clone()),
        ),
        (
            "neither origin nor referer",
            vec![],
            Some(admin.csrf.clone()),
        ),
    ];
    for (why, headers, token) in attempts {
        let mut form: Vec<(&str, &str)> = change.to_vec();
        if let Some(t) = &token {
            form.push(("csrf", t));
        }
        for path in ["/password", "/logout-all", "/logout"] {
            let mut req = https()
                .post(format!("{base}{path}"))
                .header("Cookie", &cookie)
                .form_data(&form);
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            let r = req.send().unwrap();
            assert_eq!(r.status(), 403, "{why} {path}");
            let text = r.text().unwrap();
            assert!(text.starts_with("Refused:"), "{why}: {text}");
        }
    }
    // Nothing changed: the session lives, the password is the old one, no audit entry.
    assert_eq!(admin.get("/").status(), 200);
    assert_eq!(audit_count(&data), before);
    assert_eq!(login(base, "admin", NEW_PW).0, 303);
    assert_eq!(login(base, "admin", "a different long password").0, 401);

    // The header form of the token (what htmx sends) with the right Origin works.
    let r = https()
        .post(format!("{base}/password"))
        .header("Cookie", &cookie)
        .header("Origin", base)
        .header("X-CSRF-Token", &admin.csrf)
        .form_data(&change)
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(login(base, "admin", "a different long password").0, 303);
}

#[test]
fn an_auditor_is_refused_every_change_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let admin = Admin::first_sign_in(&server, NEW_PW);
    let out = users(
        &data,
        &[
            "add",
            "carol",
            "--role",
            "auditor",
            "--password-stdin",
            "--reason",
            "insurer",
        ],
        "carol's first password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("password:"),
        "a given password is not echoed"
    );
    let mut carol = Admin::sign_in(&server.admin_url, "carol", "carol's first password");
    // An auditor may change its own password (and must, first).
    assert_eq!(carol.get("/").headers()["location"], "/password");
    let r = carol.post_form(
        "/password",
        &[
            ("current", "carol's first password"),
            ("new", "carol's own password"),
            ("repeat", "carol's own password"),
        ],
    );
    assert_eq!(r.status(), 303);
    carol.refresh_csrf();
    let page = carol.get("/").text().unwrap();
    assert!(page.contains("<span class=\"role role-auditor\">auditor</span>"));
    // Reads work.
    assert_eq!(carol.get("/api/v1/mirror").status(), 200);

    // Every state change is refused centrally, with a valid token and origin, even on
    // a route that does not take POST at all.
    let before = audit_count(&data);
    for path in ["/api/v1/mirror", "/", "/hosts", "/anything"] {
        let r = carol.post_form(path, &[("x", "1")]);
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.text().unwrap().contains("auditor role"), "{path}");
    }
    let r = carol
        .client
        .delete(format!("{}/api/v1/mirror", server.admin_url))
        .header(
            "Cookie",
            format!("__Host-patchward_session={}", carol.cookie),
        )
        .header("Origin", &server.admin_url)
        .header("X-CSRF-Token", &carol.csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        audit_count(&data),
        before,
        "nothing recorded, nothing changed"
    );
    assert_eq!(carol.get("/").status(), 200, "still signed in");
    // The same request from an admin passes the guard (and meets the router's 405).
    assert_eq!(admin.post_form("/api/v1/mirror", &[]).status(), 405);

    // Disabling an account ends its sessions at once; its sign-in fails like any other.
    let out = users(&data, &["disable", "carol", "--reason", "left"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ended 1 session(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(carol.get("/").status(), 303);
    let (s, _, body) = login(&server.admin_url, "carol", "carol's own password");
    assert_eq!(s, 401);
    assert!(body.contains(SIGN_IN_FAILED));
    // `users passwd` sets a new password that must be changed again.
    assert!(users(&data, &["enable", "carol"], "").status.success());
    let out = users(&data, &["passwd", "carol"], "");
    let pw = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_string();
    assert!(pw.len() >= 20);
    let again = Admin::sign_in(&server.admin_url, "carol", &pw);
    assert_eq!(again.get("/").headers()["location"], "/password");
    let list = stdout(&run({
        let mut c = patchward(&data);
        c.args(["users", "list"]);
        c
    }));
    assert!(list.contains("\"carol\""), "{list}");
    assert!(list.contains("auditor"), "{list}");
    let actions = audit_actions(&data);
    for a in ["user.disabled", "user.enabled", "user.password_set"] {
        assert!(actions.contains(a), "{a}");
    }
    assert!(actions.contains("insurer"), "the reason is audited");
}

#[test]
fn sign_in_throttling_engages_refuses_the_right_password_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("site.toml");
    std::fs::write(&cfg, "[web]\nlogin_lockout_secs = 6\n").unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let server = Server::start_with(&data, &args);
    let base = server.admin_url.clone();
    let printed = server.admin_password();
    for i in 0..5 {
        let (s, _, _) = login(&base, "admin", &format!("guess number {i}"));
        assert_eq!(s, 401, "attempt {i}");
    }
    let last_failure = Instant::now();
    // Now even the right password is refused, without a session.
    let (s, cookie, body) = login(&base, "admin", &printed);
    assert_eq!(s, 429);
    assert!(cookie.is_none());
    assert!(body.contains("Too many failed sign-ins"), "{body}");
    // An unknown name gets the same treatment after as many failures.
    for _ in 0..5 {
        assert_eq!(login(&base, "mallory", "whatever it is").0, 401);
    }
    let (s, _, body_unknown) = login(&base, "mallory", "whatever it is");
    assert_eq!(s, 429);
    assert!(body_unknown.contains("Too many failed sign-ins"));

    // A restart does not reset it.
    drop(server);
    let server = Server::start_with(&data, &args);
    let base = server.admin_url.clone();
    assert!(
        last_failure.elapsed() < Duration::from_secs(5),
        "the restart took too long for this test's lockout"
    );
    assert_eq!(login(&base, "admin", &printed).0, 429);
    let actions = audit_actions(&data);
    assert!(actions.contains("user.sign_in_locked"), "{actions}");

    // After the lockout the right password works again.
    let wait = Duration::from_millis(6300).saturating_sub(last_failure.elapsed());
    std::thread::sleep(wait);
    let (s, cookie, _) = login(&base, "admin", &printed);
    assert_eq!(s, 303);
    assert!(cookie.is_some());
}

#[test]
fn http_redirects_to_https_while_apt_health_metrics_and_the_agent_api_stay() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let tls_port = server.admin_url.rsplit(':').next().unwrap().to_string();
    let plain = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/",
        "/login",
        "/hosts?ring=pilot",
        "/api/v1/mirror",
        "/static/app.css",
    ] {
        let r = plain.get(format!("{}{path}", server.url)).send().unwrap();
        assert_eq!(r.status(), 308, "{path}");
        assert_eq!(
            r.headers()["location"],
            format!("https://127.0.0.1:{tls_port}{path}").as_str()
        );
    }
    // The redirect keeps the name the browser used.
    let r = plain
        .get(format!("{}/hosts", server.url))
        .header("Host", "patchward.site.example:8080")
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("https://patchward.site.example:{tls_port}/hosts").as_str()
    );
    // Forms are never taken over plain HTTP.
    let r = plain
        .post(format!("{}/login", server.url))
        .form_data(&[("name", "admin"), ("password", "x")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // What machines use stays on HTTP (and is on HTTPS too).
    for path in [
        "/healthz",
        "/metrics",
        "/apt/key.asc",
        "/apt/pilot/dists/pilot/InRelease",
        "/api/agent/v1/appliance-key",
    ] {
        let r = http().get(format!("{}{path}", server.url)).send().unwrap();
        assert_eq!(r.status(), 200, "http {path}");
        let r = https()
            .get(format!("{}{path}", server.admin_url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "https {path}");
    }
}

#[test]
fn an_operator_certificate_is_used_and_a_mismatched_one_is_refused() {
    patchward::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let names = vec!["patchward.site.example".to_string()];
    let (cert, key) = patchward::tls::cert::generate(&names, now).unwrap();
    let (_, other_key) = patchward::tls::cert::generate(&names, now).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        p
    };
    let cert_p = write("cert.pem", &cert);
    write("key.pem", &key);
    let other_p = write("other.pem", &other_key);
    let der = rustls_der(&cert);
    let expected = patchward::tls::cert::fingerprint(&der);

    // A key that does not belong to the certificate: refused before anything is made.
    let bad_cfg = dir.path().join("bad.toml");
    std::fs::write(
        &bad_cfg,
        format!(
            "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert_p.display().to_string(),
            other_p.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = run({
        let mut c = patchward(&data);
        c.args(["--config", bad_cfg.to_str().unwrap(), "serve"])
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"]);
        c
    });
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not belong to the certificate"),
        "{}",
        stderr(&out)
    );
    assert!(!data.exists(), "nothing was created");
    // Only one of the two: a configuration error naming the key.
    let half = dir.path().join("half.toml");
    std::fs::write(&half, "[server]\ntls_cert = \"cert.pem\"\n").unwrap();
    let out = run({
        let mut c = patchward(&data);
        c.args(["--config", half.to_str().unwrap(), "serve"]);
        c
    });
    assert!(
        stderr(&out).contains("key `server.tls_cert`"),
        "{}",
        stderr(&out)
    );
    assert!(!data.exists());

    let good_cfg = dir.path().join("good.toml");
    std::fs::write(
        &good_cfg,
        "[server]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
    )
    .unwrap();
    let server = Server::start_with(&data, &["--config", good_cfg.to_str().unwrap()]);
    assert_eq!(server.tls_fingerprint(), expected);
    let r = https()
        .get(format!("{}/login", server.admin_url))
        .send()
        .unwrap();
    let served = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec();
    assert_eq!(served, der);
    assert!(!data.join("tls").exists(), "no certificate generated");
    let keys = stdout(&run({
        let mut c = patchward(&data);
        c.args(["--config", good_cfg.to_str().unwrap(), "keys", "show"]);
        c
    }));
    assert!(
        keys.contains(&format!("tls certificate SHA-256 {expected}")),
        "{keys}"
    );
}

/// The DER of the first certificate in a PEM text.
fn rustls_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn user_names_with_markup_and_quotes_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let name = "<script>alert(1)</script>\"q'";
    let out = users(
        &data,
        &["add", name, "--role", "admin", "--password-stdin"],
        "an initial password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut a = Admin::sign_in(&server.admin_url, name, "an initial password");
    let page = a.get("/password").text().unwrap();
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;&#34;q&#39;"),
        "{page}"
    );
    let r = a.post_form(
        "/password",
        &[
            ("current", "an initial password"),
            ("new", NEW_PW),
            ("repeat", NEW_PW),
        ],
    );
    assert_eq!(r.status(), 303);
    a.refresh_csrf();
    let page = a.get("/").text().unwrap();
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(page.contains(
        "<span class=\"user\">&#60;script&#62;alert(1)&#60;/script&#62;&#34;q&#39;</span>"
    ));
    // A failed sign-in shows the typed name back, escaped.
    let (_, _, body) = login(
        &server.admin_url,
        "\"><script>x()</script>",
        "nope nope nope",
    );
    assert!(!body.contains("<script>x()"), "{body}");
    assert!(
        body.contains("value=\"&#34;&#62;&#60;script&#62;x()&#60;/script&#62;\""),
        "{body}"
    );
    // Names with control characters are refused and nothing is created.
    let out = users(&data, &["add", "bad\nname", "--role", "admin"], "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("control characters"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stdout(&run({
            let mut c = patchward(&data);
            c.args(["users", "list", "--json"]);
            c
        }))
        .contains("bad")
    );
}

#[test]
fn init_prints_the_sign_in_facts_once_and_serve_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = run({
        let mut c = patchward(&data);
        c.args(["init", "--banner"]);
        c
    });
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    assert!(!text.contains('\\'), "no agetty escapes: {text}");
    let pw = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Password:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(pw.len() >= 20);
    let fp = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Certificate:  SHA-256 "))
        .unwrap()
        .to_string();
    assert!(
        text.contains("Admin page:   https://127.0.0.1:8443/"),
        "{text}"
    );

    let second = stdout(&run({
        let mut c = patchward(&data);
        c.args(["init", "--banner"]);
        c
    }));
    assert!(!second.contains("Password:"), "{second}");
    assert!(second.contains("patchward users passwd admin"));
    assert!(second.contains(&fp), "the same certificate");

    let server = Server::start(&data);
    assert_eq!(server.tls_fingerprint(), fp);
    assert!(
        !server.banner.contains("admin password"),
        "{}",
        server.banner
    );
    let a = Admin::sign_in(&server.admin_url, "admin", &pw);
    assert_eq!(a.get("/").headers()["location"], "/password");
}
