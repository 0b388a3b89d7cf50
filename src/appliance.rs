//! Opening the appliance's data directory: layout, first-start key generation, database.
//!
//! Layout under the data directory:
//!
//! ```text
//! patchward.db            SQLite state (WAL: also patchward.db-wal, -shm)
//! keys/                   mode 0700
//!   appliance.ed25519     ed25519 secret (job tickets, summaries), mode 0600
//!   apt.pgp               OpenPGP v4 Ed25519Legacy secret (apt indexes), mode 0600
//!   apt.asc               its public key, armored (what apt clients pin)
//! tls/                    mode 0700 (absent when the operator configures a certificate)
//!   cert.pem              the self-signed HTTPS certificate
//!   key.pem               its ECDSA P-256 key, mode 0600
//! ```
//!
//! `serve` and `init` create what is missing ([`Appliance::init`]): keys, the HTTPS
//! certificate, and the first account (`admin`, with a generated one-time password).
//! Admin commands only open an existing directory ([`Appliance::open_existing`]) so a
//! typo in `--data-dir` cannot silently create a second, empty appliance.

use std::path::{Path, PathBuf};

use crate::audit::{self, NewEntry};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::db::{Db, DbOptions};
use crate::error::{ApplianceError, AuditError, KeyError};
use crate::fsutil;
use crate::trust::keys::Ed25519Key;
use crate::trust::openpgp::AptSigningKey;

/// The user id on the apt signing key.
pub const APT_KEY_USER_ID: &str = "Patchward appliance apt signing key <apt@patchward.invalid>";

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("patchward.db")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn ed25519_key(&self) -> PathBuf {
        self.keys().join("appliance.ed25519")
    }
    pub fn apt_key(&self) -> PathBuf {
        self.keys().join("apt.pgp")
    }
    pub fn apt_public_key(&self) -> PathBuf {
        self.keys().join("apt.asc")
    }
    /// The content-addressed blob store.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
}

/// The appliance's own keys.
pub struct ApplianceKeys {
    pub ed25519: Ed25519Key,
    pub apt: AptSigningKey,
}

impl std::fmt::Debug for ApplianceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceKeys")
            .field("ed25519", &self.ed25519.key_id())
            .field("apt", &self.apt.fingerprint())
            .finish()
    }
}

/// An opened data directory with its database and keys.
pub struct Appliance {
    pub dir: DataDir,
    pub db: Db,
    pub keys: ApplianceKeys,
    /// True when this start generated the keys.
    pub first_start: bool,
    /// The HTTPS listener's certificate.
    pub tls: crate::tls::TlsIdentity,
    /// The password of the `admin` account when this start created it (shown once).
    pub admin_password: Option<String>,
}

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the one-time password.
        f.debug_struct("Appliance")
            .field("dir", &self.dir)
            .field("keys", &self.keys)
            .field("first_start", &self.first_start)
            .field("tls", &self.tls)
            .field("admin_created", &self.admin_password.is_some())
            .finish()
    }
}

fn db_options(config: &Config) -> DbOptions {
    DbOptions {
        busy_timeout: config.database.busy_timeout,
        readers: config.database.readers,
    }
}

fn dir_error(path: &Path, reason: impl Into<String>) -> ApplianceError {
    ApplianceError::DataDir {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks that `path` is a directory this process can write, creating it if `create`.
pub fn check_data_dir(path: &Path, create: bool) -> Result<(), ApplianceError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => {
            return Err(dir_error(
                path,
                "it exists but is not a directory; choose another path with --data-dir",
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            fsutil::ensure_dir(path, 0o750).map_err(|e| {
                dir_error(
                    path,
                    format!("cannot create it ({e}); create it yourself or choose another path with --data-dir"),
                )
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(dir_error(
                path,
                "it does not exist; start the appliance once with `patchward serve` \
                 or point --data-dir at the appliance's data directory",
            ));
        }
        Err(e) => return Err(dir_error(path, format!("cannot read it: {e}"))),
    }
    // Permission bits do not tell the whole story (ACLs, read-only mounts): try it.
    let probe = path.join(format!(".write-probe.{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        dir_error(
            path,
            format!("cannot write in it ({e}); fix its ownership or mount, or choose another path with --data-dir"),
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// What `config check` can say about a data directory without creating it: an existing
/// one must be a writable directory; a missing one must be creatable (its nearest
/// existing ancestor is a writable directory).
pub fn preflight_data_dir(path: &Path) -> Result<(), ApplianceError> {
    if path.exists() {
        return check_data_dir(path, false);
    }
    let mut ancestor = path.parent();
    while let Some(a) = ancestor {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        if a.exists() {
            return check_data_dir(a, false).map_err(|e| match e {
                ApplianceError::DataDir { reason, .. } => dir_error(
                    path,
                    format!(
                        "it does not exist and cannot be created under {}: {reason}",
                        a.display()
                    ),
                ),
                other => other,
            });
        }
        ancestor = a.parent();
    }
    Ok(())
}

impl Appliance {
    /// Opens the data directory for serving, creating it, the database and the keys on
    /// first start. Key generation is audited.
    pub fn init(config: &Config, clock: &SharedClock) -> Result<Appliance, ApplianceError> {
        let dir = DataDir::new(&config.data_dir);
        // The operator's certificate is checked before anything is created, so a wrong
        // path or key leaves no half-initialised data directory behind.
        let operator_tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::cert::ensure(
                &dir.root,
                Some((cert, key)),
                "",
                clock.now(),
            )?),
            _ => None,
        };
        check_data_dir(&dir.root, true)?;
        // No database yet: a first start, which ends by creating the admin account. Its
        // password's argon2id hash is most of the CPU time of a first start, so it is
        // computed on another thread while the database is created and the keys and the
        // certificate are generated (on a slow first boot the daemon waits for this).
        let first_admin = (!dir.db().exists())
            .then(|| std::thread::spawn(crate::auth::users::FirstAdminPassword::generate));
        let db = Db::open(&dir.db(), db_options(config))?;
        fsutil::ensure_dir(&dir.keys(), 0o700).map_err(|source| KeyError::Write {
            path: dir.keys(),
            cause: source,
        })?;

        let mut generated = Vec::new();
        let ed25519 = if dir.ed25519_key().exists() {
            Ed25519Key::load(&dir.ed25519_key())?
        } else {
            let k = Ed25519Key::generate(&mut rand::rngs::OsRng);
            k.save(&dir.ed25519_key())?;
            generated.push(("appliance.ed25519", k.key_id()));
            k
        };
        let apt = if dir.apt_key().exists() {
            let text = crate::trust::keys::read_secret_file(&dir.apt_key())?;
            AptSigningKey::from_armored_secret(&text).map_err(|e| KeyError::Malformed {
                path: dir.apt_key(),
                reason: e.to_string(),
            })?
        } else {
            let k = AptSigningKey::generate(APT_KEY_USER_ID, rand::rngs::OsRng)
                .map_err(|e| KeyError::OpenPgp(e.to_string()))?;
            let secret = k.to_armored_secret();
            fsutil::write_atomic(&dir.apt_key(), secret.as_bytes(), 0o600).map_err(|source| {
                KeyError::Write {
                    path: dir.apt_key(),
                    cause: source,
                }
            })?;
            generated.push(("apt.pgp", k.fingerprint()));
            k
        };
        // The public key is derived data: rewrite it if it is missing or stale.
        let public = apt.public_key_armored();
        if std::fs::read_to_string(dir.apt_public_key())
            .ok()
            .as_deref()
            != Some(public)
        {
            fsutil::write_atomic(&dir.apt_public_key(), public.as_bytes(), 0o644).map_err(
                |source| KeyError::Write {
                    path: dir.apt_public_key(),
                    cause: source,
                },
            )?;
        }

        let first_start = !generated.is_empty();
        let now = clock.now();
        let tls = match operator_tls {
            Some(t) => t,
            None => crate::tls::cert::ensure(&dir.root, None, &crate::hostinfo::hostname(), now)?,
        };
        if matches!(
            tls.source,
            crate::tls::cert::CertSource::Generated { fresh: true, .. }
        ) {
            generated.push(("tls/cert.pem", tls.fingerprint.clone()));
        }
        if !generated.is_empty() {
            db.write_blocking(|tx| {
                for (name, id) in &generated {
                    audit::append(
                        tx,
                        now,
                        &NewEntry {
                            actor: "system",
                            action: "key.generated",
                            subject: name,
                            details: serde_json::json!({ "fingerprint": id }),
                        },
                    )?;
                }
                Ok::<_, AuditError>(())
            })?;
        }
        // After the keys' audit entries: the account is the last first-start step.
        let prepared = match first_admin {
            Some(handle) => Some(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            ),
            None => None,
        };
        let admin_password = crate::auth::users::ensure_first_admin_with(&db, now, prepared)?;
        Ok(Appliance {
            dir,
            db,
            keys: ApplianceKeys { ed25519, apt },
            first_start,
            tls,
            admin_password,
        })
    }

    /// Opens an existing data directory's database for admin commands (no keys needed).
    pub fn open_existing(config: &Config) -> Result<Db, ApplianceError> {
        let dir = DataDir::new(&config.data_dir);
        check_data_dir(&dir.root, false)?;
        if !dir.db().exists() {
            return Err(dir_error(
                &dir.root,
                "it holds no patchward.db; start the appliance once with `patchward serve` \
                 or point --data-dir at the appliance's data directory",
            ));
        }
        Ok(Db::open(&dir.db(), db_options(config))?)
    }
}

/// The plain-text block `patchward init --banner` prints for a console login prompt
/// (an agetty `/etc/issue.d/*.issue` snippet): where the admin page is, the
/// certificate's fingerprint, and the one-time password if this run created the
/// account. It contains no backslash, because agetty reads `\x` as an escape.
pub fn console_banner(urls: &[String], fingerprint: &str, admin_password: Option<&str>) -> String {
    let mut s = String::from("Patchward patch appliance\n\n");
    let mut urls = urls.iter();
    if let Some(u) = urls.next() {
        s.push_str(&format!("  Admin page:   {u}\n"));
    }
    for u in urls {
        s.push_str(&format!("                {u}\n"));
    }
    s.push_str(&format!(
        "  Certificate:  SHA-256 {fingerprint}\n                \
         (compare it with what the browser shows)\n"
    ));
    match admin_password {
        Some(pw) => s.push_str(&format!(
            "  Sign in as:   admin\n  Password:     {pw}\n                \
             (shown only until you choose a new one at first sign-in)\n"
        )),
        None => s.push_str(
            "  Sign in as:   admin (its password was shown at first start;\n                \
             to set a new one, run: patchward users passwd admin)\n",
        ),
    }
    s.push('\n');
    // The tests below hold this for the fixed text; names and URLs come from the
    // machine, so strip the one character agetty would misread.
    s.replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_an_admin_whose_hash_matches_the_shown_password() {
        let d = tempfile::tempdir().unwrap();
        let config = Config::load(
            None,
            &crate::config::Overrides {
                data_dir: Some(d.path().join("data")),
                ..Default::default()
            },
        )
        .unwrap();
        let clock: SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
        let first = Appliance::init(&config, &clock).unwrap();
        let pw = first
            .admin_password
            .clone()
            .expect("first start creates the admin");
        let hash = first
            .db
            .read_blocking(|c| {
                let id = crate::db::users::user_by_name(c, "admin")?
                    .expect("admin account")
                    .id;
                crate::db::users::password_hash(c, id)
            })
            .unwrap()
            .expect("admin password hash");
        assert!(crate::auth::password::verify(&hash, &pw));
        drop(first);
        // A second start creates no account and shows no password.
        let second = Appliance::init(&config, &clock).unwrap();
        assert!(second.admin_password.is_none());
    }

    #[test]
    fn console_banner_is_plain_text() {
        let urls = vec![
            "https://pw:8443/".to_string(),
            "https://192.0.2.10:8443/".to_string(),
        ];
        let with = console_banner(&urls, "AB:CD", Some("Pw23456789abcdefghijkmno"));
        assert!(
            with.contains("  Admin page:   https://pw:8443/\n"),
            "{with}"
        );
        assert!(with.contains("                https://192.0.2.10:8443/\n"));
        assert!(with.contains("SHA-256 AB:CD"));
        assert!(with.contains("Password:     Pw23456789abcdefghijkmno"));
        let without = console_banner(&urls, "AB:CD", None);
        assert!(!without.contains("Password:"));
        assert!(without.contains("patchward users passwd admin"));
        for b in [&with, &without] {
            assert!(!b.contains('\\'), "{b}");
            assert!(b.chars().all(|c| c == '\n' || !c.is_control()), "{b}");
        }
    }
}
