//! The one import pipeline, shared by offline bundles, feed directories and HTTP sync.
//!
//! Order is the security argument (DESIGN §3): metadata is fetched and verified first
//! (root chain, timestamp, catalog) against the stored [`TrustState`]; only blobs the
//! verified catalog names are fetched, each hashed while it streams into a staging area;
//! they join the store only after every needed blob arrived and every `.deb` was read,
//! and the new catalog becomes visible in one SQLite transaction together with the new
//! trust state. A refused import leaves the store as it was; a crash anywhere before
//! that commit leaves the previous catalog serving, and a rerun skips blobs already
//! stored.
//!
//! Transports ([`Transport`]) only move bytes; they never decide what is trusted.

mod bundle;
mod dir;
mod http;
mod layout;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::{self, NewEntry};
use crate::db::Db;
use crate::db::feeds::{self, CatalogCommit, CommitCounts};
use crate::error::{AuditError, DbError};
use crate::feed::catalog::Catalog;
use crate::store::{Sha256Hex, Staging, Store, StoreError};
use crate::trust::error::TrustError;
use crate::trust::state::TrustState;

pub use bundle::BundleTransport;
pub use dir::DirTransport;
pub use http::{HttpTransport, RetryPolicy, TransferTotals};

/// Why an import failed. Nothing was made visible when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("verification failed: {0}")]
    Trust(TrustError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{0}")]
    Bundle(String),
    #[error("{file} is not a Patchward bundle (*.pwb): {reason}")]
    NotABundle { file: String, reason: String },
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("cannot fetch {what}: {reason}")]
    Fetch { what: String, reason: String },
    #[error(
        "the catalog is for feed {found:?}, but this source is configured as {expected:?}; \
         check the [[mirror.sources]] entry"
    )]
    WrongFeed { expected: String, found: String },
    #[error(
        "feed {feed:?} is not configured on this appliance; add a [[mirror.sources]] entry \
         with its pinned root to trust it"
    )]
    UnknownFeed { feed: String },
    #[error("cannot read the pinned root {path}: {reason}")]
    PinnedRoot { path: String, reason: String },
    #[error(
        "this bundle is incremental on catalog version {base} of feed {feed:?}, but the \
         appliance lacks content it needs ({accepted}); import the full bundle (`patchward \
         feed export` without --base) or one built on a version this appliance has. \
         {what} ({count}): {list}"
    )]
    MissingBase {
        feed: String,
        base: u64,
        accepted: String,
        what: &'static str,
        count: usize,
        list: String,
    },
    #[error(
        "after the transfer {count} blob(s) the catalog references are still missing: {list}; \
         nothing was imported or stored"
    )]
    MissingBlobs { count: usize, list: String },
    #[error(
        "the feed's lifecycle catalog (eol-catalog blob {sha256}) was refused: {reason}; \
         nothing was imported"
    )]
    EolCatalog { sha256: String, reason: String },
    #[error(
        "patch {patch_id:?}: the deb artifact {name:?} is not a usable Debian package \
         ({cause}); nothing was imported"
    )]
    BadDeb {
        patch_id: String,
        name: String,
        cause: crate::deb::DebError,
    },
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<TrustError> for ImportError {
    fn from(e: TrustError) -> Self {
        ImportError::Trust(e)
    }
}

/// Progress reporting (a progress bar in the CLI, nothing in the server).
pub trait Progress: Sync {
    /// Total bytes that will be transferred (blobs not yet stored).
    fn start(&self, _total_bytes: u64) {}
    /// More bytes arrived.
    fn advance(&self, _bytes: u64) {}
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// A reader that reports bytes to a [`Progress`].
pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Where feed content comes from. Implementations move bytes; all checks are in
/// [`import`].
pub trait Transport {
    /// A short description for messages and the audit log ("bundle /media/x.pwb").
    fn describe(&self) -> String;
    /// The feed a bundle says it carries (unverified; used only for an early error).
    fn claimed_feed(&self) -> Option<String> {
        None
    }
    /// The catalog version an incremental bundle builds on.
    fn base_catalog_version(&self) -> Option<u64> {
        None
    }
    /// True when metadata comes from removable media, where an expired timestamp is
    /// normal and the catalog's own (long) expiry is what counts.
    fn offline(&self) -> bool {
        false
    }
    /// Root envelopes with versions above `known` (in order, possibly none).
    fn roots_after(&mut self, known: u64) -> Result<Vec<Vec<u8>>, ImportError>;
    /// The timestamp envelope, if the source has one.
    fn timestamp(&mut self) -> Result<Option<Vec<u8>>, ImportError>;
    /// The catalog envelope: `version` when a verified timestamp named it, else latest.
    fn catalog(&mut self, version: Option<u64>) -> Result<Vec<u8>, ImportError>;
    /// Stages every blob in `needed` (hash -> size; all named by the verified catalog,
    /// none present in the store yet) into `staging`; nothing joins the store here.
    /// `all` is every blob the catalog references: a stream transport (a bundle) that
    /// carries blobs the store already has verifies them too, so a damaged or tampered
    /// copy is refused even when nothing from it is needed. Called on every import,
    /// also when `needed` is empty. Returns bytes transferred.
    fn fetch_blobs(
        &mut self,
        needed: &BTreeMap<String, u64>,
        all: &BTreeMap<String, u64>,
        staging: &Staging<'_>,
        progress: &dyn Progress,
    ) -> Result<u64, ImportError>;
}

/// A trusted feed: its name and pinned root.
#[derive(Debug, Clone)]
pub struct FeedSource {
    pub name: String,
    pub pinned_root: Vec<u8>,
}

impl FeedSource {
    /// Reads the pinned root of a configured source.
    pub fn from_config(src: &crate::config::MirrorSource) -> Result<Self, ImportError> {
        let pinned_root = std::fs::read(&src.root).map_err(|e| ImportError::PinnedRoot {
            path: src.root.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            name: src.name.clone(),
            pinned_root,
        })
    }
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub feed: String,
    pub via: String,
    pub catalog_version: u64,
    pub previous_version: Option<u64>,
    /// True when this catalog was already the accepted one (nothing changed).
    pub already_current: bool,
    pub patches: CommitCounts,
    pub blobs_stored: usize,
    pub bytes_stored: u64,
    pub seconds: f64,
    /// Notes for the operator (e.g. an expired timestamp ignored offline).
    pub notes: Vec<String>,
    /// What became of the lifecycle catalog the feed ships (absent: it ships none, or
    /// the feed's catalog was already current). Its message is also one of the notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eol_catalog: Option<crate::legacy::eol_import::EolImport>,
}

fn short_list(v: &[String]) -> String {
    let mut s = v.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > 10 {
        s.push_str(&format!(", ... ({} more)", v.len() - 10));
    }
    s
}

/// Runs one import from `transport` for `source`. `now` is the appliance's clock.
pub fn import(
    transport: &mut dyn Transport,
    source: &FeedSource,
    db: &Db,
    store: &Store,
    now: Timestamp,
    actor: &str,
    progress: &dyn Progress,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let via = transport.describe();
    if let Some(claimed) = transport.claimed_feed()
        && claimed != source.name
    {
        return Err(ImportError::WrongFeed {
            expected: source.name.clone(),
            found: claimed,
        });
    }

    // 1. Where trust stands: the stored state, or the pinned root on first import.
    let name = source.name.clone();
    let stored = db.read_blocking(|c| feeds::trust_state(c, &name))?;
    let state = match stored {
        Some(s) => s,
        None => TrustState::from_pinned_root(&source.pinned_root)?,
    };
    let previous_version = state.catalog_version;

    // 2. Root rotations, then timestamp, then catalog: each verified before the next
    //    is even parsed.
    let roots = transport.roots_after(state.root.version)?;
    let state = state.update_root_chain(&roots)?;
    let mut notes = Vec::new();
    let mut expected = None;
    let mut state = state;
    if let Some(ts) = transport.timestamp()? {
        match state.verify_timestamp(&ts, now) {
            Ok((doc, next)) => {
                expected = Some(doc.catalog.clone());
                state = next;
            }
            Err(TrustError::Expired { .. }) if transport.offline() => notes.push(
                "the bundle's timestamp has expired (normal for media carried offline); \
                 the catalog's own expiry was checked instead"
                    .into(),
            ),
            Err(e) => return Err(e.into()),
        }
    }
    // The timestamp names the catalog this appliance already accepted, byte for byte:
    // reuse the stored envelope instead of downloading it again (an idle sync of a big
    // catalog then costs a timestamp, not megabytes). It is verified again all the same.
    let stored_envelope = match (&expected, previous_version) {
        (Some(m), Some(prev)) if m.version == prev => db
            .read_blocking(|c| feeds::catalog_envelope(c, &name, prev))?
            .filter(|env| {
                env.len() as u64 == m.size && hex::encode(Sha256::digest(env)) == m.sha256
            }),
        _ => None,
    };
    let envelope = match stored_envelope {
        Some(env) => env,
        None => transport.catalog(expected.as_ref().map(|m| m.version))?,
    };
    let (catalog, state) = state.verify_catalog(&envelope, now, expected.as_ref())?;
    if catalog.feed != source.name {
        return Err(ImportError::WrongFeed {
            expected: source.name.clone(),
            found: catalog.feed.clone(),
        });
    }

    let all = catalog.blobs();
    let mut needed = BTreeMap::new();
    for (hash, size) in &all {
        let h = Sha256Hex::parse(hash)?;
        // touch, not contains: it refreshes the blob's mtime, so a GC running now
        // cannot remove a blob this import counts on before the catalog commits.
        if !store.touch(&h)? {
            needed.insert(hash.clone(), *size);
        }
    }

    // Re-import of the accepted catalog with everything stored: nothing will change,
    // but the source is still read and checked in full below (a bundle's whole stream,
    // every blob it carries re-hashed), so a broken copy is never called current.
    let current = previous_version == Some(catalog.version) && needed.is_empty();

    // 3. An incremental bundle must build on content this appliance has.
    if !current && let Some(base) = transport.base_catalog_version() {
        check_base(db, &source.name, base, &catalog, &needed)?;
    }

    // 4. Blobs, each verified against the catalog's hash and size while it streams into
    //    a staging area: nothing joins the store until every check below has passed, so
    //    a refused import leaves the store's blob list exactly as it was.
    let staging = store.staging()?;
    progress.start(needed.values().sum());
    let transferred = transport.fetch_blobs(&needed, &all, &staging, progress)?;
    if current {
        return Ok(ImportSummary {
            feed: source.name.clone(),
            via,
            catalog_version: catalog.version,
            previous_version,
            already_current: true,
            patches: CommitCounts {
                unchanged: catalog.patches.len(),
                ..Default::default()
            },
            blobs_stored: 0,
            bytes_stored: 0,
            seconds: started.elapsed().as_secs_f64(),
            notes,
            eol_catalog: None,
        });
    }
    let mut missing = Vec::new();
    for hash in needed.keys() {
        let h = Sha256Hex::parse(hash)?;
        // Another import may have stored it meanwhile; touch keeps GC off it.
        if !staging.contains(&h) && !store.touch(&h)? {
            missing.push(hash.clone());
        }
    }
    if !missing.is_empty() {
        return Err(ImportError::MissingBlobs {
            count: missing.len(),
            list: short_list(&missing),
        });
    }

    // 4b. Every deb artifact's control data, read from the verified package itself (the
    //     apt indexes are built from it); a package that is not sound refuses the import
    //     while its bytes are still only staged.
    let debs = read_new_debs(db, store, &staging, &catalog)?;
    // 4b'. The lifecycle catalog the feed ships, verified like every blob above, must
    //      parse as one (and be the version signed for) before anything is stored.
    let eol = read_eol_catalog(store, &staging, &catalog)?;

    // 4c. Everything checked: the staged blobs join the store (durably), then the
    //     catalog that references them commits. A crash between the two leaves complete,
    //     unreferenced blobs that a rerun reuses and `store gc` removes otherwise.
    staging.commit()?;

    // 5. One transaction makes it visible: patches, blobs, catalog, trust state, audit.
    let envelope_sha256 = hex::encode(Sha256::digest(&envelope));
    let (counts, eol_catalog) = commit(
        db,
        &debs,
        eol.as_ref(),
        &source.name,
        &state,
        &catalog,
        &envelope,
        &envelope_sha256,
        now,
        &via,
        actor,
        previous_version,
    )?;
    Ok(ImportSummary {
        feed: source.name.clone(),
        via,
        catalog_version: catalog.version,
        previous_version,
        already_current: false,
        patches: counts,
        blobs_stored: needed.len(),
        bytes_stored: transferred,
        seconds: started.elapsed().as_secs_f64(),
        notes: notes
            .into_iter()
            .chain(eol_catalog.iter().map(|e| e.message.clone()))
            .collect(),
        eol_catalog,
    })
}

/// A verified lifecycle catalog blob, checked: its reference, parsed form and bytes.
type EolBlob = (
    crate::feed::catalog::EolCatalogRef,
    crate::legacy::catalog::Catalog,
    Vec<u8>,
);

/// Reads and checks the lifecycle catalog the verified catalog names (staged by this
/// import, or already in the store); a blob that is not one refuses the import.
fn read_eol_catalog(
    store: &Store,
    staging: &Staging<'_>,
    catalog: &Catalog,
) -> Result<Option<EolBlob>, ImportError> {
    let Some(r) = &catalog.eol_catalog else {
        return Ok(None);
    };
    let h = Sha256Hex::parse(&r.sha256)?;
    let path = staging.staged_path(&h).unwrap_or_else(|| store.path(&h));
    let body = std::fs::read(&path).map_err(|e| ImportError::Io {
        what: format!("cannot read the lifecycle catalog blob {}", path.display()),
        cause: e,
    })?;
    let parsed =
        crate::legacy::eol_import::check(r, &body).map_err(|reason| ImportError::EolCatalog {
            sha256: r.sha256.clone(),
            reason,
        })?;
    Ok(Some((r.clone(), parsed, body)))
}

/// Reads the control data of the catalog's deb artifacts that the database does not
/// have yet, from the verified blobs (staged by this import, or already in the store).
fn read_new_debs(
    db: &Db,
    store: &Store,
    staging: &Staging<'_>,
    catalog: &Catalog,
) -> Result<Vec<crate::deb::DebMeta>, ImportError> {
    use crate::feed::catalog::ArtifactFormat;
    let debs: BTreeMap<&str, (&str, &str)> = catalog
        .patches
        .iter()
        .flat_map(|p| p.artifacts.iter().map(move |a| (p, a)))
        .filter(|(_, a)| a.format == ArtifactFormat::Deb)
        .map(|(p, a)| (a.sha256.as_str(), (p.id.as_str(), a.name.as_str())))
        .collect();
    let shas: Vec<String> = debs.keys().map(|s| s.to_string()).collect();
    let known = db
        .read_blocking(|c| crate::apt::db::known_debs(c, &shas))
        .map_err(|e| match e {
            crate::apt::AptError::Db(d) => ImportError::Db(d),
            other => ImportError::Db(DbError::Worker(other.to_string())),
        })?;
    let mut out = Vec::new();
    for (sha, (patch_id, name)) in debs {
        if known.contains(sha) {
            continue;
        }
        let h = Sha256Hex::parse(sha)?;
        let path = staging.staged_path(&h).unwrap_or_else(|| store.path(&h));
        let meta = crate::deb::read_meta(&path).map_err(|source| ImportError::BadDeb {
            patch_id: patch_id.to_owned(),
            name: name.to_owned(),
            cause: source,
        })?;
        out.push(meta);
    }
    Ok(out)
}

fn check_base(
    db: &Db,
    feed: &str,
    base: u64,
    catalog: &Catalog,
    needed: &BTreeMap<String, u64>,
) -> Result<(), ImportError> {
    let feed_s = feed.to_string();
    let (versions, base_env) = db.read_blocking(|c| {
        Ok::<_, DbError>((
            feeds::catalog_versions(c, &feed_s)?,
            feeds::catalog_envelope(c, &feed_s, base)?,
        ))
    })?;
    let accepted = match versions.last() {
        Some(v) => format!("it has accepted catalog versions up to {v}"),
        None => "it has never imported this feed".to_string(),
    };
    let base_blobs: Option<BTreeMap<String, u64>> = base_env.and_then(|env| {
        // The stored envelope was verified when it was accepted; re-read its payload.
        let env = crate::trust::dsse::Envelope::from_json(&env).ok()?;
        Catalog::parse(&env.payload).ok().map(|c| c.blobs())
    });
    let missing: Vec<String> = match &base_blobs {
        // The bundle carries what the new catalog has beyond the base: anything the
        // base had that this store lacks cannot arrive.
        Some(base_blobs) => needed
            .keys()
            .filter(|h| base_blobs.contains_key(*h))
            .cloned()
            .collect(),
        // Without the base we cannot tell what the bundle left out: every blob not
        // stored here is at risk, so refuse before writing anything.
        None => needed.keys().cloned().collect(),
    };
    let _ = catalog;
    if base_blobs.is_none() || !missing.is_empty() {
        return Err(ImportError::MissingBase {
            feed: feed.to_string(),
            base,
            accepted,
            what: if base_blobs.is_some() {
                "Missing blobs"
            } else {
                "Blobs the new catalog needs that this appliance does not have"
            },
            count: missing.len(),
            list: short_list(&missing),
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn commit(
    db: &Db,
    debs: &[crate::deb::DebMeta],
    eol: Option<&EolBlob>,
    feed: &str,
    state: &TrustState,
    catalog: &Catalog,
    envelope: &[u8],
    envelope_sha256: &str,
    now: Timestamp,
    via: &str,
    actor: &str,
    previous: Option<u64>,
) -> Result<(CommitCounts, Option<crate::legacy::eol_import::EolImport>), ImportError> {
    db.write_blocking(|tx| {
        let counts = feeds::commit_catalog(
            tx,
            &CatalogCommit {
                feed,
                state,
                catalog,
                envelope,
                envelope_sha256,
                now,
                via,
            },
        )?;
        crate::apt::db::record_debs(tx, debs, now).map_err(|e| match e {
            crate::apt::AptError::Db(d) => ImportError::Db(d),
            other => ImportError::Db(DbError::Worker(other.to_string())),
        })?;
        audit::append(
            tx,
            now,
            &NewEntry {
                actor,
                action: "feed.imported",
                subject: feed,
                details: serde_json::json!({
                    "catalog_version": catalog.version,
                    "previous_version": previous,
                    "via": via,
                    "new": counts.new,
                    "updated": counts.updated,
                    "removed": counts.removed,
                }),
            },
        )?;
        // The lifecycle catalog in the same transaction: replaced, or (older than the
        // one in force) refused on its own, with its audit entry either way.
        let eol = match eol {
            Some((r, parsed, body)) => Some(
                crate::legacy::eol_import::apply(tx, now, feed, r, parsed, body, actor).map_err(
                    |e| match e {
                        crate::legacy::LegacyError::Db(d) => ImportError::Db(d),
                        crate::legacy::LegacyError::Audit(a) => ImportError::Audit(a),
                        other => ImportError::Db(DbError::Worker(other.to_string())),
                    },
                )?,
            ),
            None => None,
        };
        Ok::<_, ImportError>((counts, eol))
    })
}
