//! Legacy end-of-life hosts (DESIGN §5): hosts that can no longer be patched are fenced
//! in on the network and watched instead.
pub mod flows;
pub mod netd;
pub mod nft;
mod nft_diff;
mod nft_elems;
mod nft_export;
