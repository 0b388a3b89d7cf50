//! MSP-side tools that build a feed: `patchward feed init | add | publish | export |
//! rotate-root`. The CLI (`feed::cli`) only calls these functions; tests and benchmarks
//! call them directly.
//!
//! A feed directory:
//!
//! ```text
//! feed.toml                  name and expiry periods (days): root 365, catalog 90
//!                            (long, for sites that stay offline), timestamp 7
//! keys/                      mode 0700; secret key files, mode 0600:
//!   OFFLINE-root-<id16>.ed25519    root keys: move them to offline storage after init
//!                                  (and after rotate-root); bring a threshold back only
//!                                  to rotate
//!   catalog-<id16>.ed25519         signs each publish; keep it off the web server
//!   timestamp-<id16>.ed25519       signs each publish; may live on the publishing host
//! patches/<slug>.toml        one complete catalog entry per patch (written by `add`)
//! blobs/sha256/<hex>         artifact contents, stored atomically under their sha256
//! eol-catalog.toml           the lifecycle catalog the feed ships (`add --eol-catalog`):
//!                            its blob's sha256, size and version (export date)
//! history/<N>.json           which root version catalog N was published under
//!                            (so `export --base N` knows which roots the site has)
//! public/                    the static directory to host (any web server/object store)
//!   root/<N>.root.json       every root version (clients walk N+1, N+2, ...)
//!   catalog/<N>.catalog.json every published catalog version (kept for `--base`)
//!   catalog.json             the latest catalog (convenience; clients should fetch
//!                            the version the timestamp names)
//!   blobs/sha256/<hex>       artifacts
//!   timestamp.json           written LAST by atomic rename, so it never names a
//!                            catalog that is not there yet
//! ```
//!
//! `PATCH.toml` (input to `feed add`) is a catalog patch entry whose artifacts carry
//! only `name` and `format`; `add` takes the files named on its command line (matched
//! by file name), hashes and stores them, and fills in `sha256` and `size`:
//!
//! ```toml
//! id = "DSA-5912-1/openssl"
//! title = "openssl security update"
//! description = "Fixes a denial of service in TLS handshakes."
//! kind = "security"            # security | maintenance | firmware | application
//! severity = "high"            # critical | high | medium | low | none
//! cves = ["CVE-2025-12345"]
//! released = "2026-11-01T00:00:00Z"
//! install = "apt"              # apt | script
//! requires = []                # patch ids that must be installed first
//! supersedes = []
//! conflicts = []
//! reboot = false
//! est_minutes = 5
//! # needs_backup = true       # default: true for firmware, false otherwise
//!
//! [cvss]                       # optional
//! version = "3.1"              # "3.1" | "4.0"
//! base_score = 7.5
//! vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
//!
//! [[applies_to]]               # {os, version, arch} and/or {package, below_version} or labels
//! os = "debian"
//! version = "12"
//!
//! [[artifacts]]
//! name = "openssl_3.0.16-1~deb12u1_amd64.deb"
//! format = "deb"               # deb | script | firmware | file
//! ```
//!
//! `mirror/examples/patch-example.toml` is the same example as a file.

mod add;
mod eol;
mod export;
mod init;
mod publish;
mod rotate;
mod workspace;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use add::{AddReport, ArtifactSource, PatchSource, add_patch};
pub use eol::{EolAddReport, add_eol_catalog};
pub use export::{ExportReport, export};
pub use init::{InitOptions, InitReport, init};
pub use publish::{PublishReport, publish};
pub use rotate::{RotateOptions, RotateReport, rotate_root};
pub use workspace::{Expiry, FeedConfig, Workspace};

use crate::error::KeyError;
use crate::feed::bundle::BundleError;
use crate::feed::catalog::InvalidCatalog;
use crate::trust::error::TrustError;

/// Why a feed tool failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot access {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path} is not a feed directory (no feed.toml); run `patchward feed init {path}`")]
    NotAFeed { path: PathBuf },
    #[error("{path} already holds a feed (feed.toml exists); choose another directory")]
    AlreadyExists { path: PathBuf },
    #[error("{path} is invalid: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("invalid options: {0}")]
    Options(String),
    #[error("patch file {path} is invalid: {reason}")]
    PatchFile { path: PathBuf, reason: String },
    #[error("{path} is not a lifecycle catalog: {cause}")]
    EolCatalog {
        path: PathBuf,
        cause: crate::legacy::catalog::CatalogError,
    },
    #[error("artifacts do not match the patch file: {0}")]
    Artifacts(String),
    #[error("the feed's catalog would be invalid: {0}")]
    Invalid(InvalidCatalog),
    #[error(
        "only {have} of the {need} needed {role} keys are available; copy them into keys/ \
         or pass --keys DIR (e.g. the offline media holding them)"
    )]
    MissingKeys {
        role: String,
        have: usize,
        need: u32,
    },
    #[error(
        "blob {sha256} is missing from blobs/ or has the wrong size; run `patchward feed add` again for the patch that names it"
    )]
    MissingBlob { sha256: String },
    #[error("nothing is published yet; run `patchward feed publish` first")]
    NotPublished,
    #[error(
        "catalog version {base} was never published here (published: {available}); pick one of those as --base"
    )]
    UnknownBase { base: u64, available: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("self-check failed, nothing was written: {0}")]
    Trust(TrustError),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<InvalidCatalog> for FeedError {
    fn from(e: InvalidCatalog) -> Self {
        FeedError::Invalid(e)
    }
}
impl From<TrustError> for FeedError {
    fn from(e: TrustError) -> Self {
        FeedError::Trust(e)
    }
}
