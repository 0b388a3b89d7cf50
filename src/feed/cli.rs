//! `patchward feed ...`: the MSP-side feed commands. Parsing only; the work is in
//! `feed::tools`. `main.rs` embeds [`FeedCmd`] and calls [`run`].

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use jiff::Timestamp;

use crate::feed::tools::{self, Expiry, FeedError, InitOptions, RotateOptions};
use crate::trust::dsse::short_id;

#[derive(Debug, Clone, Subcommand)]
pub enum FeedCmd {
    /// Create a feed directory with new root, catalog and timestamp keys.
    Init {
        dir: PathBuf,
        /// Feed name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Number of root keys.
        #[arg(long, default_value_t = 3)]
        root_keys: usize,
        /// Root keys needed to approve a new root.
        #[arg(long, default_value_t = 2)]
        root_threshold: u32,
        #[arg(long, default_value_t = 1)]
        catalog_keys: usize,
        #[arg(long, default_value_t = 1)]
        catalog_threshold: u32,
    },
    /// Add or replace a patch: hash and store its artifacts, record its entry. With
    /// --eol-catalog instead: record the lifecycle catalog the feed ships.
    Add {
        dir: PathBuf,
        /// The patch description (TOML; see mirror/examples/patch-example.toml).
        #[arg(long, required_unless_present = "eol_catalog")]
        patch: Option<PathBuf>,
        /// A lifecycle catalog (endoflife.date JSON) to ship as the feed's `eol-catalog`
        /// artifact; it replaces the one recorded before.
        #[arg(long, conflicts_with_all = ["patch", "artifacts"])]
        eol_catalog: Option<PathBuf>,
        /// Artifact files, matched to the patch's [[artifacts]] by file name.
        artifacts: Vec<PathBuf>,
    },
    /// Sign a new catalog and timestamp into DIR/public.
    Publish {
        dir: PathBuf,
        /// Extra directory holding keys (repeatable), e.g. offline media.
        #[arg(long = "keys")]
        key_dirs: Vec<PathBuf>,
    },
    /// Write a bundle (*.pwb) of the latest catalog for offline sites.
    Export {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Make an incremental bundle for sites that have this catalog version.
        #[arg(long)]
        base: Option<u64>,
    },
    /// Publish root version N+1, signed by a threshold of old and all new root keys.
    RotateRoot {
        dir: PathBuf,
        #[arg(long)]
        root_keys: Option<usize>,
        #[arg(long)]
        root_threshold: Option<u32>,
        /// Keep the root keys; only extend the root's expiry.
        #[arg(long)]
        keep_root_keys: bool,
        /// Also replace the catalog keys.
        #[arg(long)]
        rotate_catalog: bool,
        /// Also replace the timestamp keys.
        #[arg(long)]
        rotate_timestamp: bool,
        /// Extra directory holding the current root keys (repeatable).
        #[arg(long = "keys")]
        key_dirs: Vec<PathBuf>,
    },
}

/// Runs one feed command, writing what it did for the operator to `out`.
pub fn run(cmd: &FeedCmd, now: Timestamp, out: &mut dyn Write) -> Result<(), FeedError> {
    let mut say = |s: String| writeln!(out, "{s}").map_err(FeedError::Output);
    match cmd {
        FeedCmd::Init {
            dir,
            name,
            root_keys,
            root_threshold,
            catalog_keys,
            catalog_threshold,
        } => {
            let opts = InitOptions {
                name: name.clone(),
                root_keys: *root_keys,
                root_threshold: *root_threshold,
                catalog_keys: *catalog_keys,
                catalog_threshold: *catalog_threshold,
                expiry: Expiry::default(),
            };
            let r = tools::init(dir, &opts, now)?;
            say(format!("created feed {:?} in {}", r.name, dir.display()))?;
            say(format!(
                "\nMOVE THESE ROOT KEYS OFFLINE NOW (separate media, separate people); any {} of them \
                 are needed only for `patchward feed rotate-root`:",
                r.root_threshold
            ))?;
            for f in &r.root_key_files {
                say(format!("  {}", f.display()))?;
            }
            say("\nCatalog keys (sign each publish; keep them off the web server):".into())?;
            for f in &r.catalog_key_files {
                say(format!("  {}", f.display()))?;
            }
            say("Timestamp key (online, short expiry; may stay on the publishing host):".into())?;
            for f in &r.timestamp_key_files {
                say(format!("  {}", f.display()))?;
            }
            say(format!(
                "\nPin {} on each appliance (it is the trust anchor).",
                r.root_file.display()
            ))
        }
        FeedCmd::Add {
            dir,
            eol_catalog: Some(file),
            ..
        } => {
            let r = tools::add_eol_catalog(dir, file)?;
            let was = match &r.previous {
                Some(p) => format!("replacing version {}", p.version),
                None => "the feed's first".into(),
            };
            say(format!(
                "recorded lifecycle catalog version {} ({was}): {} products from {}",
                r.reference.version, r.products, r.source
            ))?;
            say(format!(
                "  {} bytes sha256 {}",
                r.reference.size, r.reference.sha256
            ))?;
            say("run `patchward feed publish` to sign a catalog that ships it".into())
        }
        FeedCmd::Add {
            dir,
            patch,
            artifacts,
            ..
        } => {
            let Some(patch) = patch else {
                return Err(FeedError::Options(
                    "give --patch FILE (with its artifacts) or --eol-catalog FILE".into(),
                ));
            };
            let r = tools::add_patch(dir, patch, artifacts)?;
            let verb = if r.replaced { "replaced" } else { "added" };
            say(format!("{verb} patch {:?} ({})", r.id, r.file.display()))?;
            for a in &r.artifacts {
                say(format!("  {} {} bytes sha256 {}", a.name, a.size, a.sha256))?;
            }
            say("run `patchward feed publish` to sign a catalog that includes it".into())
        }
        FeedCmd::Publish { dir, key_dirs } => {
            let r = tools::publish(dir, key_dirs, now)?;
            say(format!(
                "published catalog version {} ({} patches, {} blobs, expires {}) and timestamp version {} under root version {}",
                r.catalog_version,
                r.patches,
                r.blobs,
                r.expires,
                r.timestamp_version,
                r.root_version
            ))
        }
        FeedCmd::Export {
            dir,
            out: path,
            base,
        } => {
            let r = tools::export(dir, path, *base, now)?;
            let kind = match r.base {
                Some(b) => format!("incremental from catalog {b}"),
                None => "full".into(),
            };
            say(format!(
                "wrote {} ({kind}): catalog version {}, roots {:?}, {} blobs ({} bytes), {} bytes compressed",
                r.path.display(),
                r.catalog_version,
                r.root_versions,
                r.blobs,
                r.blob_bytes,
                r.bundle_bytes
            ))
        }
        FeedCmd::RotateRoot {
            dir,
            root_keys,
            root_threshold,
            keep_root_keys,
            rotate_catalog,
            rotate_timestamp,
            key_dirs,
        } => {
            let opts = RotateOptions {
                root_keys: *root_keys,
                root_threshold: *root_threshold,
                keep_root_keys: *keep_root_keys,
                rotate_catalog: *rotate_catalog,
                rotate_timestamp: *rotate_timestamp,
                key_dirs: key_dirs.clone(),
            };
            let r = tools::rotate_root(dir, &opts, now)?;
            say(format!(
                "published root version {} ({})",
                r.version,
                r.root_file.display()
            ))?;
            for f in &r.new_key_files {
                say(format!("  new key {}", f.display()))?;
            }
            if r.new_key_files.iter().any(|f| {
                f.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("OFFLINE-root-"))
            }) {
                say("MOVE THE NEW OFFLINE-root-* KEYS OFFLINE NOW.".into())?;
            }
            for id in &r.retired_keyids {
                say(format!(
                    "  key {} is no longer trusted; its file may be destroyed",
                    short_id(id)
                ))?;
            }
            say("run `patchward feed publish` to sign a catalog under the new root".into())
        }
    }
}
