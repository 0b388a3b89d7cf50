//! Legacy end-of-life hosts: hosts that cannot be patched, fenced in and watched (DESIGN §5).

pub mod monitor;
