//! Feeds: the catalog of patches, bundles for offline transfer, and the MSP-side tools
//! that build a feed.
//!
//! - [`catalog`]: catalog and patch-entry wire types, content validation.
//! - [`bundle`]: the `*.pwb` offline bundle: writer and streaming, hostile-safe reader.
//! - [`hashing`]: sha256 while streaming.
//! - [`import`]: the one import pipeline (bundle, directory, HTTP) on the appliance.
//! - [`dropfolder`]: watches `[import] drop_dir` and imports bundles that appear there.
//! - [`tools`]: `patchward feed init|add|publish|export|rotate-root` (MSP side; never
//!   touches an appliance's data directory), and [`cli`], their clap definitions.

pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod dropfolder;
pub mod hashing;
pub mod import;
pub mod tools;
