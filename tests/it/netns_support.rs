//! Network namespaces for the segmentation tests, always removed.
//!
//! Every namespace is named `pw-<pid>-<n>-<role>` (unique per test process and lab) and
//! deleted in `Drop`, also when the test panics; the veth pairs live inside them, so
//! they go too. Nothing here touches the init namespace: links are created inside a
//! namespace (`ip -n`), forwarding is enabled in the router's namespace only, and the
//! helper and every listener and client run through `ip netns exec`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub const NETD: &str = env!("CARGO_BIN_EXE_patchward-netd");
/// The system python (not a per-user shim) so that `nobody` can run it too.
pub const PYTHON: &str = "/usr/bin/python3";

pub fn require_root_and_tools() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the segmentation tests create network namespaces and need root"
    );
    for tool in ["ip", "nft", PYTHON, "setpriv"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing (install nftables, iproute2, python3, util-linux)"
        );
    }
}

/// Runs a command and insists that it succeeds.
pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whole ruleset of the init namespace (the host's own; must never change).
pub fn host_ruleset() -> String {
    ok(Command::new("nft").args(["list", "ruleset"]))
}

/// One namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(lab: usize, role: &str) -> Netns {
        let name = format!("pw-{}-{lab}-{role}", std::process::id());
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(&mut self.cmd(args))
    }

    /// `nft list ruleset` inside the namespace.
    pub fn ruleset(&self) -> String {
        self.ok(&["nft", "list", "ruleset"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .status();
    }
}

/// A child process killed and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three namespaces: the LAN client (192.0.2.2), the appliance as router (192.0.2.1 and
/// 198.51.100.1, forwarding on) running the real helper, and the legacy host
/// (198.51.100.10). Fields drop in order: the helper and listeners before the
/// namespaces.
pub struct Lab {
    /// Held for its `Drop`: the helper is killed before its namespace goes.
    pub _netd: Proc,
    pub listeners: Vec<Proc>,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    pub client: Netns,
    pub router: Netns,
    pub legacy: Netns,
}

pub const CLIENT: &str = "192.0.2.2";
pub const LEGACY: &str = "198.51.100.10";

impl Lab {
    /// `group`: the group the helper lets in besides root.
    pub fn new(group: &str) -> Lab {
        require_root_and_tools();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let client = Netns::new(n, "client");
        let router = Netns::new(n, "router");
        let legacy = Netns::new(n, "legacy");
        // veth pairs created inside the router's namespace, one end moved to the other.
        for (local, peer, other) in [("r-lan", "c-lan", &client), ("r-leg", "l-leg", &legacy)] {
            router.ok(&[
                "ip",
                "link",
                "add",
                local,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                &other.name,
            ]);
            router.ok(&["ip", "link", "set", local, "up"]);
            other.ok(&["ip", "link", "set", peer, "up"]);
        }
        router.ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "r-lan"]);
        router.ok(&["ip", "addr", "add", "198.51.100.1/24", "dev", "r-leg"]);
        router.ok(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        client.ok(&["ip", "addr", "add", "192.0.2.2/24", "dev", "c-lan"]);
        client.ok(&["ip", "route", "add", "default", "via", "192.0.2.1"]);
        legacy.ok(&["ip", "addr", "add", "198.51.100.10/24", "dev", "l-leg"]);
        legacy.ok(&["ip", "route", "add", "default", "via", "198.51.100.1"]);

        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("netd.sock");
        let child = router
            .cmd(&[NETD, "--socket", socket.to_str().unwrap(), "--group", group])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start patchward-netd");
        let netd = Proc(child);
        wait_for(&socket);
        Lab {
            _netd: netd,
            listeners: Vec::new(),
            socket,
            dir,
            client,
            router,
            legacy,
        }
    }

    /// TCP listeners on the legacy host that answer `hello` (for at most 60 s).
    pub fn listen_on_legacy(&mut self, ports: &[u16]) {
        let child = listen(&self.legacy, LEGACY, ports);
        self.listeners.push(child);
    }

    /// TCP listeners on the LAN client that answer `hello` (for at most 60 s).
    pub fn listen_on_client(&mut self, ports: &[u16]) {
        let child = listen(&self.client, CLIENT, ports);
        self.listeners.push(child);
    }

    /// From the LAN client: `hello` if the connection got through, else why not.
    pub fn connect_from_client(&self, port: u16) -> String {
        connect(&self.client, LEGACY, port)
    }

    /// From the legacy host to `addr`: `hello` if the connection got through, else why
    /// not.
    pub fn connect_from_legacy(&self, addr: &str, port: u16) -> String {
        connect(&self.legacy, addr, port)
    }
}

/// Listeners in `ns` on `addr` answering `hello`, until the returned process is dropped
/// (or 60 s pass).
fn listen(ns: &Netns, addr: &str, ports: &[u16]) -> Proc {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let script = format!(
        "import socket, select, time\n\
         socks = []\n\
         for p in [{}]:\n\
         \x20   s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         \x20   s.bind(('{addr}', p)); s.listen(16); socks.append(s)\n\
         print('ready', flush=True)\n\
         end = time.time() + 60\n\
         while time.time() < end:\n\
         \x20   r, _, _ = select.select(socks, [], [], 0.5)\n\
         \x20   for s in r:\n\
         \x20       c, _ = s.accept(); c.sendall(b'hello'); c.close()\n",
        ports.join(", ")
    );
    let mut child = ns
        .cmd(&[PYTHON, "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "listener did not start");
    Proc(child)
}

/// One connection from `ns` to `addr:port`: `hello`, `timeout`, or `error ERRNO`.
fn connect(ns: &Netns, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket\n\
         try:\n\
         \x20   s = socket.create_connection(('{addr}', {port}), timeout=1.5)\n\
         \x20   print(s.recv(16).decode())\n\
         except socket.timeout:\n\
         \x20   print('timeout')\n\
         except OSError as e:\n\
         \x20   print('error', e.errno)\n"
    );
    ns.ok(&[PYTHON, "-c", &script]).trim().to_string()
}

/// Waits (at most 10 s) for the helper's socket to appear.
pub fn wait_for(socket: &Path) {
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "patchward-netd did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
