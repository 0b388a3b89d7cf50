//! `patchward keys show`: the appliance's key fingerprints (feed-signing ed25519 key, apt
//! OpenPGP key, HTTPS certificate), for checking them against what hosts and browsers see.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{Globals, load_config};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Print the appliance's key ids and where the public keys are.
    Show,
}

pub fn run(g: &Globals, cmd: &KeysCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCmd::Show => {
            let config = load_config(g)?;
            let dir = patchward::appliance::DataDir::new(&config.data_dir);
            let key = patchward::trust::keys::Ed25519Key::load(&dir.ed25519_key())?;
            println!("appliance key   ed25519 {}", key.key_id());
            println!("  public key    {}", key.public_hex());
            let secret = patchward::trust::keys::read_secret_file(&dir.apt_key())?;
            let apt = patchward::trust::openpgp::AptSigningKey::from_armored_secret(&secret)
                .with_context(|| format!("cannot load {}", dir.apt_key().display()))?;
            println!("apt signing key OpenPGP {}", apt.fingerprint());
            println!("  public key    {}", dir.apt_public_key().display());
            let cert = patchward::tls::cert::cert_path(&config);
            let fp = patchward::tls::cert::fingerprint_of_file(&cert)?;
            println!("tls certificate SHA-256 {fp}");
            println!("  certificate   {}", cert.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
