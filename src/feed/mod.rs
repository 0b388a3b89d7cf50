//! Feeds: the catalog of patches, bundles for offline transfer, and the MSP-side tools
//! that build a feed.
//!
//! - [`catalog`]: catalog and patch-entry wire types, content validation.
pub mod catalog;
pub mod import;
