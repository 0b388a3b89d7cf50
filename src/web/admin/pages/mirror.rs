//! `/mirror`: each configured source (catalog version, last sync, content age,
//! expiry, last error), the store's size, the history of imports (upload, CLI, sync,
//! drop folder) with rejection reasons from the audit log, "sync now", and a bundle
//! upload.
//!
//! An upload is streamed to `<data>/uploads/` with the `import.max_upload_mb` cap,
//! then imported by `mirror::import_bundle_from`, the pipeline of `patchward import`
//! and the drop folder (verify everything first, one transaction at the end): a bad
//! bundle is refused with the pipeline's reason and changes nothing. The temporary
//! file is removed either way; leftovers of a crash are removed by the next upload.

use crate::mirror::bytes_h;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::Response;
use jiff::Timestamp;

use super::patches::field;
use super::{Ctx, Flash, ago, done, done_htmx, internal, show};
use crate::audit::AuditEntry;
use crate::mirror::SourceStatus;
use crate::web::admin::{AdminViewer, Viewer};
use crate::web::{AppState, MirrorState};

/// One source's line.
pub(super) struct SourceLine {
    pub s: SourceStatus,
    pub age: String,
    pub last_success: String,
    pub last_attempt: String,
    pub expires: String,
}

/// One import in the history.
pub(super) struct ImportLine {
    pub e: AuditEntry,
    pub when: String,
    /// imported | unchanged | rejected
    pub outcome: &'static str,
    /// What happened, from the entry's details.
    pub text: String,
}

pub(super) struct MirrorView {
    pub sources: Vec<SourceLine>,
    pub blobs: u64,
    pub bytes: String,
    pub history: Vec<ImportLine>,
    /// The watched drop folder, if one is configured.
    pub drop_dir: Option<String>,
    pub max_upload_mb: u64,
}

/// "bundle /long/path/name.pwb" as "bundle name.pwb" (uploads are stored under
/// `upload-<random>-<name>`, which keeps the uploaded file's name).
fn via_text(via: &str) -> String {
    match via.strip_prefix("bundle ") {
        Some(path) => {
            let name = Path::new(path)
                .file_name()
                .map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
            match name.strip_prefix("upload-").and_then(|r| r.split_once('-')) {
                Some((_, original)) => format!("upload of {original}"),
                None => format!("bundle {name}"),
            }
        }
        None => via.to_string(),
    }
}

fn import_line(e: AuditEntry) -> ImportLine {
    let d: serde_json::Value = serde_json::from_str(&e.details).unwrap_or_default();
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let n = |k: &str| d.get(k).and_then(serde_json::Value::as_u64);
    let (outcome, text) = match e.action.as_str() {
        "feed.imported" => (
            "imported",
            format!(
                "catalog version {} of {} ({} new, {} updated, {} removed) via {}",
                n("catalog_version").unwrap_or(0),
                e.subject,
                n("new").unwrap_or(0),
                n("updated").unwrap_or(0),
                n("removed").unwrap_or(0),
                via_text(&s("via")),
            ),
        ),
        "feed.import_unchanged" => (
            "unchanged",
            format!(
                "{}: already current (catalog version {})",
                e.subject,
                n("catalog_version").unwrap_or(0)
            ),
        ),
        _ => ("rejected", format!("{}: {}", e.subject, s("reason"))),
    };
    ImportLine {
        when: super::when(&e.at),
        outcome,
        text,
        e,
    }
}

/// The page's data. `usage` is the store as [`crate::mirror::store_usage`] counts it,
/// the figures `mirror status` shows (this handle's in-memory counters miss what the
/// CLI and the drop folder stored through their own handles).
pub(super) fn load(
    conn: &rusqlite::Connection,
    m: &MirrorState,
    usage: crate::store::StoreUsage,
    now: Timestamp,
) -> Result<MirrorView, crate::error::AuditError> {
    let mut sources = Vec::new();
    for src in &m.sources {
        let st = crate::db::feeds::feed_status(conn, &src.name)?;
        let s = SourceStatus::new(src, st, now);
        let t = |v: &Option<String>| {
            v.as_deref()
                .and_then(|x| x.parse::<Timestamp>().ok())
                .map_or_else(
                    || "never".to_string(),
                    |t| format!("{} ({})", super::when_ts(t), ago(now, t)),
                )
        };
        sources.push(SourceLine {
            age: s.content_age_hours.map_or_else(
                || "no content yet".into(),
                |h| {
                    if h < 48 {
                        format!("{h} h")
                    } else {
                        format!("{} days", h / 24)
                    }
                },
            ),
            last_success: t(&s.feed.last_success),
            last_attempt: t(&s.feed.last_attempt),
            expires: s
                .feed
                .catalog_expires
                .as_deref()
                .map_or_else(|| "-".into(), super::when),
            s,
        });
    }
    let f = crate::audit::Filter {
        action: Some("feed.import".into()),
        ..Default::default()
    };
    let (entries, _) = crate::audit::search(conn, &f, 0, 20)?;
    Ok(MirrorView {
        sources,
        blobs: usage.blobs,
        bytes: bytes_h(usage.bytes),
        history: entries.into_iter().map(import_line).collect(),
        drop_dir: m.drop_dir.as_ref().map(|d| d.display().to_string()),
        max_upload_mb: m.max_upload_bytes >> 20,
    })
}

#[derive(Template)]
#[template(path = "pages/mirror.html")]
pub(super) struct MirrorPage {
    pub viewer: Viewer,
    pub nav: &'static str,
    pub flash: Option<Flash>,
    pub m: MirrorView,
}

fn mirror_state(st: &AppState) -> Option<&MirrorState> {
    st.inner.mirror.as_ref()
}

/// `GET /mirror`
pub async fn page(State(st): State<AppState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if mirror_state(&st).is_none() {
        return internal(viewer, "mirror", "no mirror state");
    }
    let now = ctx.now;
    let store = mirror_state(&st).expect("checked").store.clone();
    let usage = match tokio::task::spawn_blocking(move || crate::mirror::store_usage(&store)).await
    {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return internal(viewer, "mirror", e),
        Err(e) => return internal(viewer, "mirror", e),
    };
    let s2 = st.clone();
    let r = ctx
        .db
        .read(move |c| load(c, mirror_state(&s2).expect("checked"), usage, now))
        .await;
    match r {
        Ok(m) => {
            let flash = Flash::from_headers(&headers);
            show(
                &MirrorPage {
                    viewer,
                    nav: "mirror",
                    flash: flash.clone(),
                    m,
                },
                &flash,
            )
        }
        Err(e) => internal(viewer, "mirror", e),
    }
}

/// Sources with a sync started here and not finished (one at a time per source).
static SYNCING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// `POST /mirror/sync`: starts a sync of one source (`source`) or of all, in the
/// background; the page shows the outcome when it is done.
pub async fn sync(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let Some(m) = mirror_state(&st) else {
        return internal(viewer, "mirror", "no mirror state");
    };
    let only = field(&form, "source");
    if let Some(s) = m.sources.iter().find(|s| s.name == only && s.url.is_none()) {
        return done(
            "/mirror",
            false,
            &crate::mirror::MirrorError::BundleOnly(s.name.clone()).to_string(),
        );
    }
    // "Sync all" syncs the sources that have a URL; bundle-only ones are never synced.
    let picked: Vec<crate::config::MirrorSource> = m
        .sources
        .iter()
        .filter(|s| (only.is_empty() || s.name == only) && s.url.is_some())
        .cloned()
        .collect();
    if picked.is_empty() {
        let text = if m.sources.is_empty() {
            "No mirror source is configured; add one under [[mirror.sources]] in the configuration."
                .to_string()
        } else if only.is_empty() {
            "Every mirror source is bundle-only (no url): import bundles instead.".to_string()
        } else {
            format!("No mirror source is called {only:?}.")
        };
        return done("/mirror", false, &text);
    }
    let mut started = Vec::new();
    let mut busy = Vec::new();
    for src in picked {
        {
            let mut set = SYNCING.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(src.name.clone()) {
                busy.push(src.name.clone());
                continue;
            }
        }
        started.push(src.name.clone());
        let (db, store, actor) = (st.db.clone(), m.store.clone(), super::actor(&viewer));
        let clock = m.clock.clone();
        tokio::task::spawn_blocking(move || {
            let r = crate::mirror::sync_source(
                &db,
                &store,
                &src,
                &actor,
                &crate::feed::import::NoProgress,
                clock.as_ref(),
            );
            if let Err(e) = r {
                tracing::warn!(source = %src.name, error = %e, "sync started on the web page failed");
            }
            SYNCING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&src.name);
        });
    }
    let mut text = String::new();
    if !started.is_empty() {
        text.push_str(&format!(
            "Sync started for {}. Reload this page to see the outcome.",
            started.join(", ")
        ));
    }
    if !busy.is_empty() {
        text.push_str(&format!(" Already syncing: {}.", busy.join(", ")));
    }
    done("/mirror", !started.is_empty(), text.trim())
}

/// The upload folder, and removal of leftovers older than an hour (a crash mid-upload).
fn upload_dir(store_root: &Path) -> std::io::Result<PathBuf> {
    let dir = store_root.parent().unwrap_or(store_root).join("uploads");
    std::fs::create_dir_all(&dir)?;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(dir)
}

/// Removes the temporary file when dropped.
struct TempUpload(PathBuf);

impl Drop for TempUpload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Why an upload was refused (shown to the operator).
enum Refused {
    Bad(String),
    Internal(String),
}

/// How much more than the cap an upload may carry (multipart framing, small fields) and
/// is read and discarded before answering, so the client gets the answer rather than a
/// reset connection; the same bound `web::limits` puts on this route's body.
const DRAIN_MAX: u64 = crate::web::limits::UPLOAD_FRAMING;

async fn receive(
    mp: &mut Multipart,
    file: &mut std::fs::File,
    cap: u64,
) -> Result<(String, u64), Refused> {
    let too_large = || {
        Refused::Bad(format!(
            "the file is larger than the upload limit of {} MiB (import.max_upload_mb); \
             copy it to the drop folder or use `patchward import` instead",
            cap >> 20
        ))
    };
    // A read that fails past the cap is the body bound of `web::limits` at work.
    let cut = |size: u64| {
        move |e: axum::extract::multipart::MultipartError| {
            if size > cap {
                too_large()
            } else {
                Refused::Bad(format!("the upload was cut off or malformed: {e}"))
            }
        }
    };
    let mut name = None;
    let mut size = 0u64;
    let mut over = false;
    while let Some(mut field) = mp.next_field().await.map_err(cut(size))? {
        if field.name() != Some("bundle") || name.is_some() {
            // Other fields (and a second file) are read and ignored.
            while let Some(c) = field.chunk().await.map_err(cut(size))? {
                size += c.len() as u64;
                if size > cap + DRAIN_MAX {
                    return Err(too_large());
                }
            }
            continue;
        }
        name = Some(field.file_name().unwrap_or("bundle.pwb").to_string());
        while let Some(chunk) = field.chunk().await.map_err(cut(size))? {
            size += chunk.len() as u64;
            if size > cap {
                // Keep reading (up to DRAIN_MAX more) without storing, then refuse.
                over = true;
                if size > cap + DRAIN_MAX {
                    return Err(too_large());
                }
                continue;
            }
            file.write_all(&chunk)
                .map_err(|e| Refused::Internal(format!("cannot write the upload: {e}")))?;
        }
    }
    match name {
        _ if over => Err(too_large()),
        Some(n) if size > 0 => Ok((n, size)),
        Some(_) => Err(Refused::Bad("the uploaded file is empty".into())),
        None => Err(Refused::Bad(
            "choose a bundle file (*.pwb) to upload".into(),
        )),
    }
}

/// `POST /mirror/upload` (multipart, field `bundle`).
pub async fn upload(
    State(st): State<AppState>,
    AdminViewer(viewer): AdminViewer,
    headers: HeaderMap,
    mut mp: Multipart,
) -> Response {
    let ctx = match Ctx::new(&st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(m) = mirror_state(&st) else {
        return internal(viewer, "mirror", "no mirror state");
    };
    let refuse = |text: &str| {
        done_htmx(
            &headers,
            "/mirror",
            false,
            &format!("Bundle not imported: {text}"),
        )
    };
    // A declared length over the cap is refused before a byte is read or stored.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > m.max_upload_bytes.saturating_add(DRAIN_MAX)) {
        return refuse(&format!(
            "the file is larger than the upload limit of {} MiB (import.max_upload_mb); \
             copy it to the drop folder or use `patchward import` instead",
            m.max_upload_bytes >> 20
        ));
    }
    let dir = match upload_dir(m.store.root()) {
        Ok(d) => d,
        Err(e) => return internal(viewer, "mirror", e),
    };
    let mut rnd = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rnd);
    let path = dir.join(format!("upload-{}", hex::encode(rnd)));
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => return internal(viewer, "mirror", e),
    };
    let mut guard = TempUpload(path.clone());
    let (name, size) = match receive(&mut mp, &mut file, m.max_upload_bytes).await {
        Ok(x) => x,
        Err(Refused::Bad(why)) => return refuse(&why),
        Err(Refused::Internal(why)) => return internal(viewer, "mirror", why),
    };
    drop(file);
    // Keep the uploaded file's name in the temporary one: the import's audit entry
    // names its path.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let named = path.with_file_name(format!("upload-{}-{safe}", hex::encode(rnd)));
    if std::fs::rename(&path, &named).is_ok() {
        guard.0 = named;
    }
    let (db, store, sources) = (st.db.clone(), m.store.clone(), m.sources.clone());
    let (now, actor) = (ctx.now, super::actor(&viewer));
    let r = tokio::task::spawn_blocking(move || {
        let r = crate::mirror::import_bundle_from(
            &db,
            &store,
            &sources,
            &guard.0,
            now,
            &actor,
            &crate::feed::import::NoProgress,
        );
        drop(guard);
        r
    })
    .await;
    match r {
        Ok(Ok(s)) => {
            let text = if s.already_current {
                format!(
                    "{name} ({}): feed {} is already at catalog version {}; nothing changed.",
                    bytes_h(size),
                    s.feed,
                    s.catalog_version
                )
            } else {
                format!(
                    "{name} ({}) imported: feed {} catalog version {}.",
                    bytes_h(size),
                    s.feed,
                    s.catalog_version
                )
            };
            done_htmx(&headers, "/mirror", true, &text)
        }
        // The uploaded file's own name, not the temporary one it was stored under.
        Ok(Err(crate::mirror::MirrorError::Import(
            crate::feed::import::ImportError::NotABundle { reason, .. },
        ))) => refuse(&format!(
            "{name} is not a Patchward bundle (*.pwb): {reason}"
        )),
        Ok(Err(e)) => refuse(&format!("{name}: {e}")),
        Err(e) => internal(viewer, "mirror", e),
    }
}
