//! Mirror operations on an appliance's data directory: importing bundles, syncing
//! configured sources, status, and the KEV catalog. The CLI and the server's scheduler
//! call these; they are thin glue around [`crate::feed::import`].

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use crate::appliance::{Appliance, DataDir};
use crate::audit::{self, NewEntry};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::config::{Config, MirrorSource};
use crate::db::Db;
use crate::db::feeds::{self, FeedStatus, KevEntry, PatchRow};
use crate::error::{ApplianceError, AuditError, DbError};
use crate::feed::import::{
    self, BundleTransport, DirTransport, FeedSource, HttpTransport, ImportError, ImportSummary,
    Progress, Transport,
};
use crate::store::{Store, StoreError, StoreOptions};

/// Errors of mirror operations.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Appliance(#[from] ApplianceError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("no mirror source named {0:?} is configured (see `patchward mirror status`)")]
    NoSuchSource(String),
    #[error(
        "mirror source {0:?} has no url: it is bundle-only (offline by design); import its \
         bundles with `patchward import`, the web page or the drop folder"
    )]
    BundleOnly(String),
    #[error("{url}: unsupported URL; use file://, http:// or https://")]
    Url { url: String },
    /// The upstream could not be reached or served an error: a normal state for an
    /// appliance that is often offline. Nothing changed.
    #[error("{error}; the appliance keeps serving {serving}")]
    Upstream {
        error: Box<ImportError>,
        serving: String,
    },
    #[error("cannot read the KEV catalog {path}: {reason}")]
    Kev { path: String, reason: String },
}

/// One source's name and the outcome of syncing it.
pub type SyncOutcome = (String, Result<ImportSummary, MirrorError>);

/// An opened data directory with what mirror operations need.
pub struct Context {
    pub config: Config,
    pub db: Db,
    pub store: Arc<Store>,
    /// The appliance's clock: every decision of these operations (expiry, audit and
    /// sync times) takes its time from here, never from a bundle or an upstream.
    pub clock: SharedClock,
}

/// Opens the content store of a data directory with the configured options.
pub fn open_store(config: &Config) -> Result<Store, StoreError> {
    Store::open(
        &DataDir::new(&config.data_dir).store(),
        StoreOptions {
            free_space_reserve: config.store.free_space_reserve,
            verify_on_read: config.store.verify_on_read,
        },
    )
}

impl Context {
    /// Opens an existing data directory (admin commands) and its store.
    pub fn open(config: &Config) -> Result<Self, MirrorError> {
        let db = Appliance::open_existing(config)?;
        let store = open_store(config)?;
        Ok(Self {
            config: config.clone(),
            db,
            store: Arc::new(store),
            clock: Arc::new(SystemClock),
        })
    }

    /// Imports a bundle file for the feed its header names (which must be configured).
    pub fn import_bundle(
        &self,
        path: &Path,
        actor: &str,
        progress: &dyn Progress,
    ) -> Result<ImportSummary, MirrorError> {
        import_bundle_file(
            &self.db,
            &self.store,
            &self.config,
            path,
            self.clock.now(),
            actor,
            progress,
        )
    }

    /// Syncs one configured source (or all that have a URL); an unreachable upstream is
    /// a recorded outcome, not a crash. Naming a bundle-only source is an error that
    /// says how its content arrives; syncing "all" skips such sources.
    pub fn sync(&self, only: Option<&str>, actor: &str) -> Result<Vec<SyncOutcome>, MirrorError> {
        let sources: Vec<&MirrorSource> = match only {
            Some(name) => {
                let src = self
                    .config
                    .mirror
                    .sources
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| MirrorError::NoSuchSource(name.into()))?;
                if src.url.is_none() {
                    return Err(MirrorError::BundleOnly(name.into()));
                }
                vec![src]
            }
            None => self
                .config
                .mirror
                .sources
                .iter()
                .filter(|s| s.url.is_some())
                .collect(),
        };
        let mut out = Vec::new();
        for src in sources {
            let r = sync_source(
                &self.db,
                &self.store,
                src,
                actor,
                &import::NoProgress,
                self.clock.as_ref(),
            );
            out.push((src.name.clone(), r));
        }
        Ok(out)
    }

    /// Status of every configured source.
    pub fn status(&self, now: Timestamp) -> Result<MirrorStatus, MirrorError> {
        status(&self.db, &self.store, &self.config.mirror.sources, now)
    }

    /// Loads the CISA KEV catalog (replacing the previous one); audited.
    pub fn import_kev(&self, path: &Path, actor: &str) -> Result<usize, MirrorError> {
        let err = |reason: String| MirrorError::Kev {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let entries = parse_kev(&text).map_err(err)?;
        let now = self.clock.now();
        let n = self.db.write_blocking(|tx| {
            let n = feeds::replace_kev(tx, &entries)?;
            audit::append(
                tx,
                now,
                &NewEntry {
                    actor,
                    action: "kev.imported",
                    subject: "kev",
                    details: serde_json::json!({"entries": n, "file": path.display().to_string()}),
                },
            )?;
            Ok::<_, MirrorError>(n)
        })?;
        Ok(n)
    }
}

/// Imports the bundle file at `path` for the feed its header names, which must be one
/// of `config`'s mirror sources. The one bundle import used by `patchward import` and
/// the drop folder.
pub fn import_bundle_file(
    db: &Db,
    store: &Store,
    config: &Config,
    path: &Path,
    now: Timestamp,
    actor: &str,
    progress: &dyn Progress,
) -> Result<ImportSummary, MirrorError> {
    import_bundle_from(
        db,
        store,
        &config.mirror.sources,
        path,
        now,
        actor,
        progress,
    )
}

/// [`import_bundle_file`] with the configured sources given directly (the web page's
/// upload, which holds the sources but not the whole configuration).
pub fn import_bundle_from(
    db: &Db,
    store: &Store,
    sources: &[MirrorSource],
    path: &Path,
    now: Timestamp,
    actor: &str,
    progress: &dyn Progress,
) -> Result<ImportSummary, MirrorError> {
    let mut t = BundleTransport::open(path)?;
    let src =
        sources
            .iter()
            .find(|s| s.name == t.feed())
            .ok_or_else(|| ImportError::UnknownFeed {
                feed: t.feed().into(),
            })?;
    let source = FeedSource::from_config(src)?;
    Ok(import::import(
        &mut t, &source, db, store, now, actor, progress,
    )?)
}

/// What the store holds, re-counted: imports through other handles (the CLI in another
/// process, the drop folder's own handle in this one) change it behind any one handle's
/// counters. The one source of the store figures of `mirror status`, the Mirror page
/// and the mirror API.
pub fn store_usage(store: &Store) -> Result<crate::store::StoreUsage, StoreError> {
    store.rescan()
}

/// Status of `sources` and the store (see [`store_usage`]).
pub fn status(
    db: &Db,
    store: &Store,
    sources: &[MirrorSource],
    now: Timestamp,
) -> Result<MirrorStatus, MirrorError> {
    let usage = store_usage(store)?;
    let mut out = Vec::new();
    for src in sources {
        let name = src.name.clone();
        let st = db.read_blocking(|c| feeds::feed_status(c, &name))?;
        out.push(SourceStatus::new(src, st, now));
    }
    Ok(MirrorStatus {
        sources: out,
        store_blobs: usage.blobs,
        store_bytes: usage.bytes,
    })
}

/// Builds the transport for a source URL (a bundle-only source has none).
pub fn transport_for(src: &MirrorSource) -> Result<Box<dyn Transport>, MirrorError> {
    let Some(url) = &src.url else {
        return Err(MirrorError::BundleOnly(src.name.clone()));
    };
    if let Some(t) = DirTransport::from_url(url) {
        return Ok(Box::new(t));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Box::new(HttpTransport::new(url)?));
    }
    Err(MirrorError::Url { url: url.clone() })
}

/// One sync of one source, with its outcome recorded in `mirror_status`. `clock` is the
/// appliance's (the server passes its own). A bundle-only source is refused before
/// anything is recorded: it has no sync attempts to fail.
pub fn sync_source(
    db: &Db,
    store: &Store,
    src: &MirrorSource,
    actor: &str,
    progress: &dyn Progress,
    clock: &dyn Clock,
) -> Result<ImportSummary, MirrorError> {
    if src.url.is_none() {
        return Err(MirrorError::BundleOnly(src.name.clone()));
    }
    let now = clock.now();
    let result = (|| {
        let source = FeedSource::from_config(src)?;
        let mut t = transport_for(src)?;
        Ok::<_, MirrorError>(import::import(
            t.as_mut(),
            &source,
            db,
            store,
            now,
            actor,
            progress,
        )?)
    })();
    let name = src.name.clone();
    let result = match result {
        Err(MirrorError::Import(error @ ImportError::Fetch { .. })) => {
            let st = db.read_blocking(|c| feeds::feed_status(c, &name))?;
            let serving = match st.catalog_version {
                Some(v) => format!("catalog version {v}"),
                None => "what it has (no catalog from this source yet)".to_string(),
            };
            Err(MirrorError::Upstream {
                error: Box::new(error),
                serving,
            })
        }
        other => other,
    };
    let outcome = match &result {
        Ok(s) => Ok(s.bytes_stored),
        Err(e) => Err(e.to_string()),
    };
    db.write_blocking(|tx| {
        feeds::record_sync(
            tx,
            &name,
            clock.now(),
            outcome.as_ref().map(|b| *b).map_err(String::as_str),
        )
    })?;
    if let Err(e) = &result {
        tracing::warn!(source = %src.name, error = %e, "sync failed; will retry on schedule");
    }
    result
}

fn parse_kev(text: &[u8]) -> Result<Vec<KevEntry>, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        vulnerabilities: Vec<Vuln>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Vuln {
        #[serde(rename = "cveID")]
        cve_id: String,
        date_added: String,
        due_date: Option<String>,
        known_ransomware_campaign_use: Option<String>,
    }
    let doc: Doc = serde_json::from_slice(text)
        .map_err(|e| format!("not a KEV catalog (expected {{\"vulnerabilities\": [...]}}): {e}"))?;
    let mut out = Vec::with_capacity(doc.vulnerabilities.len());
    for v in doc.vulnerabilities {
        let ok = v.cve_id.starts_with("CVE-") && v.cve_id.len() <= 32;
        if !ok {
            return Err(format!("{:?} is not a CVE id", v.cve_id));
        }
        out.push(KevEntry {
            cve: v.cve_id,
            date_added: v.date_added,
            due_date: v.due_date,
            ransomware: v.known_ransomware_campaign_use,
        });
    }
    Ok(out)
}

/// `mirror status` output.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorStatus {
    pub sources: Vec<SourceStatus>,
    pub store_blobs: u64,
    pub store_bytes: u64,
}

/// One source's status, with derived ages.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub name: String,
    /// The sync URL; `None` for a bundle-only source.
    pub url: Option<String>,
    /// True for a source without a URL: offline by design, never synced; its freshness
    /// is its content age and catalog expiry alone.
    pub bundle_only: bool,
    #[serde(flatten)]
    pub feed: FeedStatus,
    /// Hours since the accepted catalog was signed (content age), never negative.
    pub content_age_hours: Option<i64>,
    /// True when the accepted catalog has expired: new content is needed.
    pub expired: bool,
}

impl SourceStatus {
    /// `now` is the appliance's clock. Age and expiry are judged against
    /// max(now, newest signed time seen), the time the import pipeline uses (DESIGN §3):
    /// a clock set back neither revives an expired catalog nor shows a negative age.
    pub fn new(src: &MirrorSource, mut feed: FeedStatus, now: Timestamp) -> Self {
        if src.url.is_none() {
            // Never synced: an error recorded while it still had a URL says nothing now.
            feed.last_attempt = None;
            feed.last_error = None;
        }
        let parse = |s: &Option<String>| s.as_ref().and_then(|t| t.parse::<Timestamp>().ok());
        let effective = parse(&feed.newest_signed_time).map_or(now, |t| now.max(t));
        let age =
            parse(&feed.catalog_issued).map(|t| effective.duration_since(t).as_hours().max(0));
        let expired = parse(&feed.catalog_expires).is_some_and(|e| e <= effective);
        Self {
            name: src.name.clone(),
            url: src.url.clone(),
            bundle_only: src.url.is_none(),
            feed,
            content_age_hours: age,
            expired,
        }
    }

    /// The URL, or what stands in for it, for people.
    pub fn url_text(&self) -> &str {
        self.url
            .as_deref()
            .unwrap_or("bundle-only, offline by design")
    }
}

/// A byte count for people: `512 B`, `3.4 MiB`.
pub fn bytes_h(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Human summary of an import.
pub fn render_summary(s: &ImportSummary) -> String {
    let mut out = String::new();
    if s.already_current {
        out.push_str(&format!(
            "{}: catalog version {} is already current; nothing changed ({}).\n",
            s.feed, s.catalog_version, s.via
        ));
    } else {
        out.push_str(&format!(
            "{}: imported catalog version {} (was {}) from {}\n  patches: {} new, {} updated, {} removed, {} unchanged\n  stored:  {} blobs, {} in {:.1} s\n",
            s.feed,
            s.catalog_version,
            s.previous_version.map_or("none".to_string(), |v| v.to_string()),
            s.via,
            s.patches.new,
            s.patches.updated,
            s.patches.removed,
            s.patches.unchanged,
            s.blobs_stored,
            bytes_h(s.bytes_stored),
            s.seconds
        ));
    }
    for n in &s.notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    out
}

/// Human table of patches.
pub fn render_patches(rows: &[PatchRow]) -> String {
    let mut out = format!(
        "{:<28} {:<12} {:<9} {:>5} {:<4} {:<20} {}\n",
        "ID", "KIND", "SEVERITY", "CVSS", "KEV", "RELEASED", "CVES"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:<12} {:<9} {:>5} {:<4} {:<20} {}\n",
            r.id,
            r.kind,
            r.severity,
            r.cvss.map_or("-".into(), |c| format!("{c:.1}")),
            if r.kev { "KEV" } else { "" },
            &r.released[..r.released.len().min(20)],
            r.cves.join(",")
        ));
    }
    if rows.is_empty() {
        out.push_str("(no patches: import a bundle or sync a mirror source)\n");
    }
    out
}

/// Human mirror status.
pub fn render_status(s: &MirrorStatus) -> String {
    let mut out = String::new();
    if s.sources.is_empty() {
        out.push_str("no mirror sources configured (add [[mirror.sources]] to the config)\n");
    }
    for src in &s.sources {
        let f = &src.feed;
        out.push_str(&format!("{} ({})\n", src.name, src.url_text()));
        out.push_str(&format!(
            "  catalog version  {}\n",
            f.catalog_version
                .map_or("none yet".into(), |v| v.to_string())
        ));
        if let Some(age) = src.content_age_hours {
            out.push_str(&format!(
                "  content age      {} h ({} days)\n",
                age,
                age / 24
            ));
        }
        if let Some(e) = &f.catalog_expires {
            out.push_str(&format!(
                "  expires          {}{}\n",
                crate::timefmt::display(&e.to_string()),
                if src.expired {
                    "  EXPIRED: new content needed"
                } else {
                    ""
                }
            ));
        }
        out.push_str(&format!(
            "  patches          {} ({} referenced)\n",
            f.patches,
            bytes_h(f.blob_bytes)
        ));
        if src.bundle_only {
            out.push_str(
                "  sync             none (bundle-only: freshness is content age and expiry)\n",
            );
        } else {
            out.push_str(&format!(
                "  last success     {}\n",
                crate::timefmt::display_or(f.last_success.as_deref(), "never")
            ));
        }
        if let Some(e) = &f.last_error {
            out.push_str(&format!("  last error       {e}\n"));
        }
    }
    out.push_str(&format!(
        "store: {} blobs, {}\n",
        s.store_blobs,
        bytes_h(s.store_bytes)
    ));
    out
}

/// A terminal progress bar (bytes, rate, ETA) for imports.
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    pub fn finish_and_clear(&self) {
        self.0.finish_and_clear();
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar() -> Bar {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} {bar:30} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Bar(pb)
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// `store verify`: every blob re-hashed, and every blob a current catalog references
/// present. Consistent means both lists are empty.
#[derive(Debug, Clone, Serialize)]
pub struct StoreCheck {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub corrupt: Vec<String>,
    pub misnamed: Vec<String>,
    pub referenced_missing: Vec<String>,
}

impl StoreCheck {
    pub fn consistent(&self) -> bool {
        self.corrupt.is_empty() && self.misnamed.is_empty() && self.referenced_missing.is_empty()
    }
}

/// `store gc` result.
#[derive(Debug, Clone, Serialize)]
pub struct GcSummary {
    pub removed: u64,
    pub bytes_freed: u64,
    pub kept_in_grace: u64,
    pub referenced: usize,
}

impl Context {
    /// Re-hashes the whole store and checks that referenced blobs are present.
    pub fn verify_store(&self) -> Result<StoreCheck, MirrorError> {
        let r = self.store.verify_all()?;
        let referenced = self.db.read_blocking(feeds::referenced_blobs)?;
        let mut missing = Vec::new();
        for h in referenced {
            if !self.store.contains(&crate::store::Sha256Hex::parse(&h)?)? {
                missing.push(h);
            }
        }
        Ok(StoreCheck {
            blobs_checked: r.checked,
            bytes_checked: r.bytes,
            corrupt: r.corrupt.iter().map(|c| format!("{c:?}")).collect(),
            misnamed: r.misnamed.iter().map(|p| p.display().to_string()).collect(),
            referenced_missing: missing,
        })
    }

    /// Removes blobs no current catalog references and no unfinished job names, once
    /// older than the grace period.
    pub fn gc(&self, actor: &str) -> Result<GcSummary, MirrorError> {
        let referenced: std::collections::HashSet<String> = self
            .db
            .read_blocking(feeds::blobs_in_use)?
            .into_iter()
            .collect();
        let now = self.clock.now();
        let r = self.store.gc(
            &referenced,
            self.config.store.gc_grace,
            std::time::SystemTime::try_from(now).unwrap_or_else(|_| std::time::SystemTime::now()),
        )?;
        let summary = GcSummary {
            removed: r.removed,
            bytes_freed: r.bytes_freed,
            kept_in_grace: r.kept_in_grace,
            referenced: referenced.len(),
        };
        if r.removed > 0 {
            let details = serde_json::to_value(&summary).unwrap_or_default();
            self.db.write_blocking(|tx| {
                audit::append(
                    tx,
                    now,
                    &NewEntry {
                        actor,
                        action: "store.gc",
                        subject: "store",
                        details,
                    },
                )
            })?;
        }
        Ok(summary)
    }
}
