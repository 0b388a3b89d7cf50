//! Patchward: an offline-capable patch appliance for small sites.
//!
//! Module map (grows with the code; see DESIGN.md §2 for the full plan):
//! - [`trust`]: keys and signatures; today the OpenPGP key that signs apt repositories.

pub mod trust;
