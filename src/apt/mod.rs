//! apt repositories per ring (DESIGN.md §7): what unmodified `apt` on a site's Debian
//! and Ubuntu servers fetches from the appliance.
//!
//! - [`index`]: pure rendering of `Packages`, its compressed forms and `Release`.
//! - [`db`]: the boundary the rollout engine calls ([`release_to_ring`],
//!   [`withdraw_from_ring`]), the packages' control data read at import, and each
//!   ring's publish state.
//! - [`publish`]: writes a ring's signed repository to disk, atomically, one publisher
//!   at a time; [`Publisher`] decides which rings are due (changed content, or the
//!   scheduled re-sign that keeps `Valid-Until` in the future).
//! - [`client`]: the deb822 `.sources` file a server needs, with the key embedded.
//! - [`clients`]: which machines fetch which ring's index (apt clients, agent or not),
//!   noted in memory and written in bounded batches.
//!
//! A package version is in a ring's repository only while a row of `apt_ring_packages`
//! says it was released to that ring **and** a current catalog still references the
//! blob. Who decides the release (approval, gate) is the rollout engine's business.

pub mod client;
pub mod clients;
pub mod db;
pub mod index;
pub mod publish;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use db::{release_to_ring, withdraw_from_ring};
pub use publish::Publisher;

use crate::error::AuditError;
use crate::error::DbError;

/// The `[apt]` configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSettings {
    /// `Origin:` of every ring's Release (stable: apt pins and unattended-upgrades
    /// match on it).
    pub origin: String,
    /// `Label:` prefix; the ring name is appended.
    pub label: String,
    /// The suite (and codename) of a ring: `{ring}` is replaced by the ring name.
    pub suite: String,
    /// Architectures every ring lists; `all` packages appear in each.
    pub architectures: Vec<String>,
    /// Rings that always have a repository, even an empty one.
    pub rings: Vec<String>,
    /// How long a signed Release stays valid.
    pub valid_until: Duration,
    /// How often every ring is re-signed even when nothing changed (well inside
    /// `valid_until`, so an air-gapped site never expires).
    pub resign_every: Duration,
    /// How long index files of older publishes stay fetchable by hash.
    pub by_hash_grace: Duration,
    /// `Packages.xz` is written only for indexes up to this size.
    pub xz_max_bytes: u64,
}

impl Default for AptSettings {
    fn default() -> Self {
        Self {
            origin: "Patchward".into(),
            label: "Patchward".into(),
            suite: "{ring}".into(),
            architectures: vec!["amd64".into(), "arm64".into()],
            rings: vec!["pilot".into(), "broad".into()],
            valid_until: Duration::from_secs(7 * 86400),
            resign_every: Duration::from_secs(86400),
            by_hash_grace: Duration::from_secs(86400),
            xz_max_bytes: 1 << 20,
        }
    }
}

impl AptSettings {
    /// The suite name of `ring`.
    pub fn suite_of(&self, ring: &str) -> String {
        self.suite.replace("{ring}", ring)
    }
}

/// The component, for callers that render sources.
pub use index::COMPONENT;

/// Why an apt operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error(transparent)]
    Ring(#[from] crate::fleet::FleetError),
    #[error(
        "no patch {patch_id:?} in feed {feed:?}{hint}; `patchward patches list` shows the \
         patches of the current catalogs"
    )]
    UnknownPatch {
        feed: String,
        patch_id: String,
        hint: crate::suggest::DidYouMean,
    },
    #[error(
        "patch {patch_id:?} has no deb artifacts, so there is nothing to put into an apt \
         repository"
    )]
    NoDebs { patch_id: String },
    #[error(
        "the package {sha256} of patch {patch_id:?} has no recorded control data; import \
         the feed again so the appliance reads it"
    )]
    NoMetadata { patch_id: String, sha256: String },
    #[error("deb artifact {name:?} of patch {patch_id:?} is not a usable Debian package: {cause}")]
    BadPackage {
        patch_id: String,
        name: String,
        cause: crate::deb::DebError,
    },
    #[error("cannot {what} {}: {cause}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("signing the Release file failed: {0}")]
    Sign(crate::trust::openpgp::OpenPgpError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("a time computation overflowed: {0}")]
    Time(String),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<crate::trust::openpgp::OpenPgpError> for AptError {
    fn from(e: crate::trust::openpgp::OpenPgpError) -> Self {
        AptError::Sign(e)
    }
}

impl From<rusqlite::Error> for AptError {
    fn from(e: rusqlite::Error) -> Self {
        AptError::Db(DbError::Sqlite(e))
    }
}

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> AptError {
    let path = path.into();
    move |source| AptError::Io {
        what,
        path,
        cause: source,
    }
}
