//! Artifact serving against nginx (BENCHMARKS.md, "Artifact serving against nginx").
//!
//! Builds a feed of BLOBS artifacts of BLOB_MIB MiB, imports it into a fresh appliance,
//! enrolls an agent with the real `patchward-agent`, and starts the release
//! `patchward serve` and nginx (sendfile on, 2 workers, serving the same store's
//! `sha256/` directory) side by side. One async reqwest client with CLIENTS tasks
//! downloads every blob ROUNDS times from each server, alternating servers; appliance
//! requests are signed one by one (the replay guard refuses reused signatures), and the
//! agent's host has one job per patch (the endpoint serves a host only the blobs its
//! jobs name), so signing, the signature check and the job lookup are part of the
//! measured cost. Reports MB/s of each (median over ROUNDS), the ratio,
//! and the peak RSS (VmHWM) of each server after the run.
//!
//! Run: `cargo bench --bench artifacts`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchward::feed::tools::{self, InitOptions};
use patchward::fleet::signing;
use patchward::trust::keys::Ed25519Key;

const BLOBS: usize = 32;
const BLOB_MIB: usize = 4;
const CLIENTS: usize = 64;
/// Downloads per client per measured round (each client walks the blob set).
const PER_CLIENT: usize = 16;
const ROUNDS: usize = 3;

const BIN: &str = env!("CARGO_BIN_EXE_patchward");
const AGENT: &str = env!("CARGO_BIN_EXE_patchward-agent");

fn filler(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v
}

fn ok(mut c: Command) -> String {
    let o = c.stdin(Stdio::null()).output().unwrap();
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn patchward(data: &Path, config: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("PATCHWARD_LOG", "warn")
        .env_remove("NOTIFY_SOCKET");
    c
}

/// Starts `patchward serve` on a free port; returns the child and its base URL.
fn serve(data: &Path, config: &Path) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut c = patchward(data, config);
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut url = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("listening on") {
            url = rest.split_whitespace().next().map(str::to_string);
        }
        if line.contains("stop with Ctrl-C") {
            break;
        }
    }
    (child, url.expect("listening line"))
}

fn stop(mut child: Child) {
    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn vm_hwm_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nginx(dir: &Path, store: &Path, sendfile: bool) -> (Child, String) {
    let port = free_port();
    let conf = dir.join("nginx.conf");
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let d = dir.display();
    let sendfile = if sendfile { "on" } else { "off" };
    std::fs::write(
        &conf,
        format!(
            "{user}worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile {sendfile};\n  tcp_nopush on;\n\
             client_body_temp_path {d}/cb;\n  proxy_temp_path {d}/px;\n\
             fastcgi_temp_path {d}/fc;\n  uwsgi_temp_path {d}/uw;\n  scgi_temp_path {d}/sc;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {};\n\
             location /sha256/ {{ }}\n  }}\n}}\n",
            store.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, url);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("nginx did not start");
}

/// How a request is made: nginx by path, the appliance by signed agent path.
#[derive(Clone)]
enum Target {
    Nginx(String),
    Appliance {
        url: String,
        host: String,
        key: Arc<Ed25519Key>,
    },
}

impl Target {
    fn request(&self, c: &reqwest::Client, hex: &str) -> reqwest::RequestBuilder {
        match self {
            Target::Nginx(url) => c.get(format!("{url}/sha256/{}/{hex}", &hex[..2])),
            Target::Appliance { url, host, key } => {
                let path = format!("/api/agent/v1/artifacts/sha256/{hex}");
                let h = signing::sign(key, host, "GET", &path, jiff::Timestamp::now(), b"");
                let mut r = c.get(format!("{url}{path}"));
                for (k, v) in h.pairs() {
                    r = r.header(k, v);
                }
                r
            }
        }
    }
}

/// One measured round: CLIENTS tasks, PER_CLIENT downloads each; returns MB/s.
async fn round(client: &reqwest::Client, target: &Target, hexes: &Arc<Vec<String>>) -> f64 {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (c, target, hexes) = (client.clone(), target.clone(), hexes.clone());
        tasks.push(tokio::spawn(async move {
            let mut total = 0u64;
            for j in 0..PER_CLIENT {
                let hex = &hexes[(i + j) % hexes.len()];
                let mut r = target.request(&c, hex).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let mut n = 0u64;
                while let Some(chunk) = r.chunk().await.unwrap() {
                    n += chunk.len() as u64;
                }
                assert_eq!(n, (BLOB_MIB << 20) as u64);
                total += n;
            }
            total
        }));
    }
    let mut bytes = 0u64;
    for t in tasks {
        bytes += t.await.unwrap();
    }
    bytes as f64 / 1e6 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    patchward::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let now = jiff::Timestamp::now();

    // A feed of BLOBS artifacts, exported and imported.
    let t = Instant::now();
    let feed = root.join("feed");
    std::fs::create_dir_all(&feed).unwrap();
    let opts = InitOptions {
        name: Some("bench".into()),
        ..InitOptions::default()
    };
    tools::init(&feed, &opts, now).unwrap();
    for n in 0..BLOBS {
        let art = feed.join(format!("art-{n}.bin"));
        std::fs::write(&art, filler(BLOB_MIB << 20, n as u64 + 1)).unwrap();
        let toml = format!(
            "id = \"DSA-{n}/pkg\"\ntitle = \"bench {n}\"\nkind = \"security\"\n\
             severity = \"high\"\ncves = [\"CVE-2099-{n:04}\"]\n\
             released = \"2026-10-01T00:00:00Z\"\ninstall = \"script\"\nest_minutes = 5\n\
             [[artifacts]]\nname = \"art-{n}.bin\"\nformat = \"file\"\n"
        );
        let p = feed.join(format!("patch-{n}.toml"));
        std::fs::write(&p, toml).unwrap();
        tools::add_patch(&feed, &p, &[art]).unwrap();
    }
    tools::publish(&feed, &[], now).unwrap();
    let bundle = root.join("full.pwb");
    tools::export(&feed, &bundle, None, now).unwrap();
    let data = root.join("data");
    let config = root.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nfree_space_reserve_mb = 0\n\n[[mirror.sources]]\nname = \"bench\"\n\
             url = \"file://{}\"\nroot = {:?}\n",
            feed.join("public").display(),
            feed.join("public/root/1.root.json").display().to_string()
        ),
    )
    .unwrap();
    let (first, _) = serve(&data, &config);
    stop(first);
    ok({
        let mut c = patchward(&data, &config);
        c.arg("import").arg(&bundle);
        c
    });
    let store = data.join("store");
    let mut hexes = Vec::new();
    for e in walk(&store.join("sha256")) {
        hexes.push(e.file_name().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(hexes.len(), BLOBS);
    let hexes = Arc::new(hexes);
    println!(
        "setup (feed, export, import): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The appliance, an enrolled agent, and nginx.
    let (server, url) = serve(&data, &config);
    let token = ok({
        let mut c = patchward(&data, &config);
        c.args(["hosts", "token", "create"]);
        c
    });
    let state = root.join("agent");
    ok({
        let mut c = Command::new(AGENT);
        c.arg("--state-dir").arg(&state);
        c.args(["enroll", "--server", &url, "--token", token.trim()])
            .args(["--hostname", "bench"]);
        c
    });
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    // One job per patch for this host: the endpoint serves a host only its jobs' blobs.
    for n in 0..BLOBS {
        ok({
            let mut c = patchward(&data, &config);
            c.args([
                "deploy",
                "--patch",
                &format!("DSA-{n}/pkg"),
                "--host",
                "bench",
            ]);
            c
        });
    }
    let appliance = Target::Appliance {
        url: url.clone(),
        host: st["host_id"].as_str().unwrap().to_string(),
        key: Arc::new(Ed25519Key::load(&state.join("host.ed25519")).unwrap()),
    };
    let ngx_dir = root.join("nginx");
    std::fs::create_dir_all(&ngx_dir).unwrap();
    let (ngx, ngx_url) = nginx(&ngx_dir, &store, true);
    let nginx_t = Target::Nginx(ngx_url);
    // The same nginx copying through user space (read + write), as the appliance does.
    let copy_dir = root.join("nginx-copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let (ngx_copy, copy_url) = nginx(&copy_dir, &store, false);
    let copy_t = Target::Nginx(copy_url);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let (mut a, mut n, mut nc) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        // Warm-up: page cache and connections for both.
        round(&client, &nginx_t, &hexes).await;
        round(&client, &appliance, &hexes).await;
        round(&client, &copy_t, &hexes).await;
        for _ in 0..ROUNDS {
            n.push(round(&client, &nginx_t, &hexes).await);
            nc.push(round(&client, &copy_t, &hexes).await);
            a.push(round(&client, &appliance, &hexes).await);
        }
    });
    let (am, nm, cm) = (median(a.clone()), median(n.clone()), median(nc.clone()));
    let per_round_mib = CLIENTS * PER_CLIENT * BLOB_MIB;
    println!(
        "{CLIENTS} clients x {PER_CLIENT} downloads of {BLOB_MIB} MiB ({BLOBS} distinct blobs, \
         {per_round_mib} MiB per round), median of {ROUNDS} rounds"
    );
    println!("nginx               {nm:>8.0} MB/s   rounds {n:.0?}");
    println!("nginx, sendfile off {cm:>8.0} MB/s   rounds {nc:.0?}");
    println!("appliance           {am:>8.0} MB/s   rounds {a:.0?}");
    println!("ratio appliance/nginx: {:.2}x", am / nm);
    println!("ratio appliance/nginx with sendfile off: {:.2}x", am / cm);
    println!(
        "appliance VmHWM after the run: {:.1} MiB",
        vm_hwm_mib(server.id())
    );
    stop(server);
    stop(ngx);
    stop(ngx_copy);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
