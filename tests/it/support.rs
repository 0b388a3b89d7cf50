//! Shared helpers: run the real `patchward` binary, start a server fixture that is killed
//! on drop, and small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_patchward");

/// A `patchward` command with the data directory set and the caller's environment
/// cleaned of PATCHWARD_* so the host cannot leak settings into tests.
pub fn patchward(data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PATCHWARD_") {
            c.env_remove(k);
        }
    }
    c.env_remove("NOTIFY_SOCKET").env_remove("JOURNAL_STREAM");
    c.arg("--data-dir").arg(data_dir);
    c
}

/// Runs a command to completion (no stdin, so it cannot wait for input).
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output().expect("run patchward")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads the start-up block from a server's stdout and sends it once it is complete
/// (the blank line after its last line), then keeps draining the pipe.
pub fn read_banner(out: impl std::io::Read, tx: mpsc::Sender<String>) {
    let mut banner = String::new();
    let mut sent = false;
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        // The block begins after a blank line; leading blank lines are not its content.
        if banner.is_empty() && line.is_empty() {
            continue;
        }
        if !sent && line.is_empty() && banner.contains("stop with Ctrl-C") {
            sent = true;
            let _ = tx.send(banner.clone());
            continue;
        }
        banner.push_str(&line);
        banner.push('\n');
    }
    if !sent {
        let _ = tx.send(banner);
    }
}

/// A running `patchward serve`, killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    /// The HTTP listener (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The HTTPS listener, the admin page (`https://127.0.0.1:PORT`, no trailing slash).
    pub admin_url: String,
    /// The start-up block as printed.
    pub banner: String,
    /// The data directory it serves.
    pub data: std::path::PathBuf,
}

impl Server {
    /// Starts `patchward serve --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0` on
    /// `data_dir` and waits (bounded) for the start-up block.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let mut cmd = patchward(data_dir);
        cmd.args(extra)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-listen",
                "127.0.0.1:0",
            ])
            .env("PATCHWARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn patchward serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || read_banner(out, tx));
        let banner = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("patchward serve did not print its start-up block within 20 s");
            }
        };
        let url = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("listening on"))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("listening line")
            .to_string();
        let admin_url = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("admin page"))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("admin page line")
            .trim_end_matches('/')
            .to_string();
        Server {
            child,
            url,
            admin_url,
            banner,
            data: data_dir.to_path_buf(),
        }
    }

    /// The one-time password of `admin` printed at first start.
    pub fn admin_password(&self) -> String {
        self.banner_value("admin password")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// The HTTPS certificate's fingerprint as printed (`AB:CD:...`).
    pub fn tls_fingerprint(&self) -> String {
        self.banner_value("tls certificate")
            .trim_start_matches("SHA-256")
            .trim()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.pid()).unwrap();
        assert!(pid > 1);
        // SAFETY: plain syscall on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0);
    }

    /// Waits up to `limit` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The value after `label` in the start-up block.
    pub fn banner_value(&self, label: &str) -> String {
        self.banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} in banner:\n{}", self.banner))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::blocking::Client {
    patchward::tls::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// An HTTPS client for the admin page: accepts the self-signed certificate (tests check
/// its fingerprint separately), follows no redirects, keeps no cookies.
pub fn https() -> reqwest::blocking::Client {
    patchward::tls::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .build()
        .unwrap()
}

/// A signed-in browser session on the admin page, cookies kept by hand.
pub struct Admin {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub client: reqwest::blocking::Client,
}

/// The `__Host-patchward_session` value from a response's Set-Cookie, if any.
pub fn session_cookie(r: &reqwest::blocking::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-patchward_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty())
}

/// The CSRF token on an admin page (the `<meta name="csrf-token">`).
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf-token\" content=\"")
        .unwrap_or_else(|| panic!("no csrf meta in page:\n{html}"));
    let rest = &html[at + "name=\"csrf-token\" content=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

impl Admin {
    /// Signs in as `name` with `password`; panics unless it succeeds.
    pub fn sign_in(base: &str, name: &str, password: &str) -> Admin {
        let client = https();
        let r = client
            .post(format!("{base}/login"))
            .header("Origin", base)
            .form_data(&[("name", name), ("password", password), ("next", "/")])
            .send()
            .unwrap();
        assert_eq!(r.status(), 303, "sign-in as {name:?} failed");
        let cookie = session_cookie(&r).expect("a session cookie");
        let mut a = Admin {
            base: base.to_string(),
            cookie,
            csrf: String::new(),
            client,
        };
        a.refresh_csrf();
        a
    }

    /// Signs in as `admin` with the printed password (or, when this start did not
    /// create the account, one set with `users passwd admin`) and replaces it with `new`.
    pub fn first_sign_in(server: &Server, new: &str) -> Admin {
        let initial = if server.banner.contains("admin password") {
            server.admin_password()
        } else {
            let temporary = "a temporary password for tests";
            let mut c = patchward(&server.data);
            c.args(["users", "passwd", "admin", "--password-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
            let mut child = c.spawn().unwrap();
            use std::io::Write as _;
            writeln!(child.stdin.take().unwrap(), "{temporary}").unwrap();
            assert!(child.wait().unwrap().success());
            temporary.to_string()
        };
        let mut a = Admin::sign_in(&server.admin_url, "admin", &initial);
        let r = a.post_form(
            "/password",
            &[("current", initial.as_str()), ("new", new), ("repeat", new)],
        );
        assert_eq!(
            r.status(),
            303,
            "password change failed: {}",
            r.text().unwrap()
        );
        a.refresh_csrf();
        a
    }

    /// Reads the CSRF token from the password page (any signed-in account can open it).
    pub fn refresh_csrf(&mut self) {
        let html = self.get("/password").text().unwrap();
        self.csrf = csrf_of(&html);
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header(
                "Cookie",
                format!("__Host-patchward_session={}", self.cookie),
            )
            .send()
            .unwrap()
    }

    /// A form post from this site's own page: Origin set, the CSRF token in the form.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::blocking::Response {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &self.csrf));
        self.client
            .post(format!("{}{path}", self.base))
            .header(
                "Cookie",
                format!("__Host-patchward_session={}", self.cookie),
            )
            .header("Origin", &self.base)
            .form_data(&all)
            .send()
            .unwrap()
    }
}

/// `application/x-www-form-urlencoded` bodies without reqwest's `form` feature.
pub trait FormData {
    fn form_data<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self;
}

impl FormData for reqwest::blocking::RequestBuilder {
    fn form_data<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .finish();
        self.header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }
}
