//! Test feeds built with the real MSP-side tools, appliances configured to trust them,
//! raw bundle surgery for hostile cases, and a snapshot of everything an import could
//! change (database rows, trust state, store files).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use patchward::feed::tools::{self, InitOptions};
use tar::{EntryType, Header};

use crate::support::{patchward, run};

/// An MSP-side feed directory.
pub struct Feed {
    pub dir: PathBuf,
    pub name: String,
    n: usize,
}

impl Feed {
    pub fn init(parent: &Path, name: &str, now: Timestamp) -> Feed {
        Self::init_with(parent, name, InitOptions::default(), now)
    }

    pub fn init_with(parent: &Path, name: &str, opts: InitOptions, now: Timestamp) -> Feed {
        let dir = parent.join(format!("feed-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = InitOptions {
            name: Some(name.into()),
            ..opts
        };
        tools::init(&dir, &opts, now).unwrap();
        Feed {
            dir,
            name: name.into(),
            n: 0,
        }
    }

    /// Adds a patch with one artifact of `size` pseudo-random bytes (seeded by `seed`).
    pub fn add(&mut self, id: &str, severity: &str, cve: &str, size: usize, seed: u64) {
        self.n += 1;
        let art = self.dir.join(format!("art-{}.bin", self.n));
        std::fs::write(&art, pseudo_random(size, seed)).unwrap();
        let toml = format!(
            "id = {id:?}\ntitle = \"test patch {id}\"\nkind = \"security\"\nseverity = {severity:?}\n\
             cves = [{cve:?}]\nreleased = \"2026-10-01T00:00:00Z\"\ninstall = \"script\"\n\
             est_minutes = 5\n[cvss]\nversion = \"3.1\"\nbase_score = 7.5\n\
             vector = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H\"\n\
             [[artifacts]]\nname = \"art-{}.bin\"\nformat = \"file\"\n",
            self.n
        );
        let p = self.dir.join(format!("patch-{}.toml", self.n));
        std::fs::write(&p, toml).unwrap();
        tools::add_patch(&self.dir, &p, &[art]).unwrap();
    }

    /// Records `file` as the feed's lifecycle catalog (`feed add --eol-catalog`);
    /// returns the blob's sha256.
    pub fn add_eol_catalog(&self, file: &Path) -> String {
        tools::add_eol_catalog(&self.dir, file)
            .unwrap()
            .reference
            .sha256
    }

    pub fn publish(&self, now: Timestamp) {
        tools::publish(&self.dir, &[], now).unwrap();
    }

    pub fn export(&self, out: &Path, base: Option<u64>, now: Timestamp) -> PathBuf {
        tools::export(&self.dir, out, base, now).unwrap();
        out.to_path_buf()
    }

    pub fn public(&self) -> PathBuf {
        self.dir.join("public")
    }

    pub fn pinned_root(&self) -> PathBuf {
        self.public().join("root/1.root.json")
    }
}

/// Deterministic filler bytes (xorshift), so tests need no RNG state.
pub fn pseudo_random(size: usize, seed: u64) -> Vec<u8> {
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

/// An appliance data directory with a config trusting `feeds` (pinned roots).
pub struct Site {
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Site {
    pub fn new(parent: &Path, name: &str, feeds: &[&Feed]) -> Site {
        let data = parent.join(format!("site-{name}"));
        let config = parent.join(format!("site-{name}.toml"));
        let mut text = String::from("[store]\nfree_space_reserve_mb = 0\ngc_grace_hours = 0\n");
        for f in feeds {
            text.push_str(&format!(
                "\n[[mirror.sources]]\nname = {:?}\nurl = \"file://{}\"\nroot = {:?}\n",
                f.name,
                f.public().display(),
                f.pinned_root().display().to_string()
            ));
        }
        std::fs::write(&config, text).unwrap();
        // First start creates the data directory, keys and database.
        drop(crate::support::Server::start_with(
            &data,
            &["--config", config.to_str().unwrap()],
        ));
        Site { data, config }
    }

    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = patchward(&self.data);
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    pub fn import(&self, bundle: &Path) -> std::process::Output {
        let mut c = self.cmd(&["import", "--json"]);
        c.arg(bundle);
        run(c)
    }

    pub fn patches(&self) -> serde_json::Value {
        let out = run(self.cmd(&["patches", "list", "--json"]));
        assert!(out.status.success(), "{}", crate::support::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Everything an import may change: DB rows that matter, and the store's files.
    pub fn snapshot(&self) -> Snapshot {
        let conn = rusqlite::Connection::open(self.data.join("patchward.db")).unwrap();
        let q = |sql: &str| -> Vec<String> {
            let mut st = conn.prepare(sql).unwrap();
            st.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let db = [
            q("SELECT name || trust_state FROM feeds ORDER BY name"),
            q("SELECT feed || version || sha256 FROM catalogs ORDER BY feed, version"),
            q("SELECT feed || id || entry_sha256 FROM patches ORDER BY feed, id"),
            q("SELECT feed || sha256 FROM patch_blobs ORDER BY feed, sha256"),
        ]
        .concat();
        Snapshot {
            db,
            store: store_files(&self.data.join("store")),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub db: Vec<String>,
    pub store: BTreeMap<String, u64>,
}

/// Every file under the store (relative path -> size), temp files included.
pub fn store_files(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, m.len());
            }
        }
    }
    out
}

/// The entries of a (well-formed) bundle, in order.
pub fn entries(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let raw = zstd::decode_all(std::fs::File::open(bundle).unwrap()).unwrap();
    let mut a = tar::Archive::new(&raw[..]);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// Builds a tar stream entry by entry with raw names, types and declared sizes.
#[derive(Default)]
pub struct RawTar(pub Vec<u8>);

impl RawTar {
    pub fn raw(&mut self, name: &str, ty: EntryType, data: &[u8], declared: u64) -> &mut Self {
        let mut h = Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(declared);
        h.set_mode(0o644);
        h.set_entry_type(ty);
        if matches!(ty, EntryType::Symlink | EntryType::Link) {
            h.as_old_mut().linkname[..11].copy_from_slice(b"/etc/passwd");
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name, EntryType::Regular, data, data.len() as u64)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        zstd::encode_all(&self.0[..], 3).unwrap()
    }
}

/// Rebuilds a bundle from entries (after a test changed them).
pub fn rebuild(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut t = RawTar::default();
    for (n, d) in entries {
        t.file(n, d);
    }
    t.finish()
}
