//! The process's one rustls crypto provider: ring (builds without cmake, unlike aws-lc).
//!
//! reqwest is built with `rustls-no-provider`, so every HTTP client (mirror sync, the
//! `healthcheck` probe, tests) needs a provider installed before it is built; call
//! [`install_crypto_provider`] first. Later TLS users (the admin listener) share it.

/// Installs ring as the process-wide provider. Idempotent: installing fails only when a
/// provider is already installed, which is just as good.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub mod cert;

pub use cert::{TlsError, TlsIdentity};
