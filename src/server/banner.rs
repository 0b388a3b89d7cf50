//! The start-up block an operator reads: addresses, keys and fingerprints, the admin
//! account's one-time password, and the next steps ([`super::Setup`]). Printed to stdout
//! in one write between blank lines, apart from the log lines on stderr.

use std::path::PathBuf;

use super::Setup;

/// What was started; printed as the start-up block.
#[derive(Debug, Clone)]
pub struct Started {
    pub url: String,
    pub data_dir: PathBuf,
    pub ed25519_key_id: String,
    pub apt_fingerprint: String,
    pub first_start: bool,
    /// The watched drop folder, if configured.
    pub drop_dir: Option<PathBuf>,
    /// Where to open the admin page (the first is printed on the `admin page` line).
    pub admin_urls: Vec<String>,
    /// SHA-256 fingerprint of the HTTPS certificate, as browsers show it.
    pub tls_fingerprint: String,
    /// Where the certificate came from (generated, or the operator's file).
    pub tls_source: String,
    /// The `admin` account's one-time password, when this start created the account.
    pub admin_password: Option<String>,
    /// What is set up already, for the "next steps" that end the block.
    pub setup: Setup,
}

/// The lines about the admin page shared by the start-up block and `patchward init`.
pub fn admin_lines(
    urls: &[String],
    fingerprint: &str,
    source: &str,
    admin_password: Option<&str>,
) -> String {
    let mut s = String::new();
    let mut urls = urls.iter();
    if let Some(first) = urls.next() {
        s.push_str(&format!("  admin page      {first}\n"));
    }
    for u in urls {
        s.push_str(&format!("                  {u}\n"));
    }
    s.push_str(&format!(
        "  tls certificate SHA-256 {fingerprint}\n                  ({source}; compare it with \
         what the browser shows before you sign in)\n"
    ));
    if let Some(pw) = admin_password {
        s.push_str(&format!(
            "  admin password  {pw}\n                  (user \"admin\"; shown only now: sign in \
             and choose a new one)\n"
        ));
    }
    s
}

/// A description of the certificate's origin for the operator.
pub fn tls_source(id: &crate::tls::TlsIdentity) -> String {
    match &id.source {
        crate::tls::cert::CertSource::Generated { dir, .. } => {
            format!("self-signed, generated in {}", dir.display())
        }
        crate::tls::cert::CertSource::Operator { cert, .. } => {
            format!("configured: {}", cert.display())
        }
    }
}

impl Started {
    /// The start-up block an operator reads (also parsed by tests for the bound port).
    pub fn block(&self) -> String {
        let mut s = format!(
            "Patchward {} is running\n  \
             listening on    {}  (health {}/healthz, metrics {}/metrics)\n  \
             data directory  {}\n  \
             appliance key   ed25519 {}\n  \
             apt signing key OpenPGP {}\n",
            env!("CARGO_PKG_VERSION"),
            self.url,
            self.url,
            self.url,
            self.data_dir.display(),
            self.ed25519_key_id,
            self.apt_fingerprint,
        );
        s.push_str(&admin_lines(
            &self.admin_urls,
            &self.tls_fingerprint,
            &self.tls_source,
            self.admin_password.as_deref(),
        ));
        if let Some(d) = &self.drop_dir {
            s.push_str(&format!("  drop folder     {}\n", d.display()));
        }
        if self.first_start {
            s.push_str("  first start: new keys were generated (mode 0600 under keys/)\n");
        }
        s.push_str("  stop with Ctrl-C or SIGTERM\n");
        s.push_str(&self.setup.next_steps());
        // Blank lines set the block apart from log lines around it in a terminal.
        format!("\n{s}\n")
    }
}
