//! Tests for the apt signing key. The ones that matter most hand our output to the real
//! clients of this machine (Debian 12): `/usr/bin/gpgv` for `InRelease` and `Release.gpg`,
//! and `apt-get update` against a `file:` repository whose `Signed-By` embeds our armored
//! public key. Both programs are part of every apt-based system, so these tests are not
//! behind the `system-tests` feature; they fail (rather than skip) if the binaries are gone.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const USER_ID: &str = "Patchward appliance <apt@patchward.invalid>";
const GPGV: &str = "/usr/bin/gpgv";

fn created() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

fn signed_at() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn key(seed: u64) -> AptSigningKey {
    AptSigningKey::generate_at(USER_ID, created(), StdRng::seed_from_u64(seed)).unwrap()
}

/// A Release file shaped like the ones `apt/` will render (ends with a newline).
const RELEASE: &str = "\
Origin: Patchward
Label: Patchward pilot
Suite: pilot
Codename: pilot
Date: Sun, 01 Jun 2025 12:00:00 UTC
Architectures: amd64
Components: main
Acquire-By-Hash: yes
SHA256:
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages
";

/// Result of one gpgv run: whether it exited 0, and its machine-readable status lines.
struct Gpgv {
    ok: bool,
    status: String,
}

/// Runs the real gpgv with only `keyring` trusted, isolated from any ~/.gnupg.
fn gpgv(dir: &Path, keyring: &[u8], files: &[&Path]) -> Gpgv {
    assert!(
        Path::new(GPGV).exists(),
        "{GPGV} is missing; install the `gpgv` package (apt depends on it)"
    );
    let keyring_path = dir.join("keyring.gpg");
    std::fs::write(&keyring_path, keyring).unwrap();
    let output = Command::new(GPGV)
        .env("GNUPGHOME", dir)
        .env("LC_ALL", "C")
        .args(["--status-fd", "1", "--keyring"])
        .arg(&keyring_path)
        .args(files)
        .output()
        .unwrap();
    Gpgv {
        ok: output.status.success(),
        status: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn secret_armor_round_trips() {
    let original = key(1);
    let armored = original.to_armored_secret();
    assert!(armored.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----\n"));

    let loaded = AptSigningKey::from_armored_secret(&armored).unwrap();
    assert_eq!(loaded.to_armored_secret(), armored);
    assert_eq!(loaded.public_key_armored(), original.public_key_armored());
    assert_eq!(loaded.public_key_binary(), original.public_key_binary());
    assert_eq!(loaded.created_at(), created());
    // Ed25519 is deterministic: the loaded key signs exactly like the original.
    assert_eq!(
        loaded.clearsign(RELEASE.as_bytes(), signed_at()).unwrap(),
        original.clearsign(RELEASE.as_bytes(), signed_at()).unwrap()
    );
}

#[test]
fn fingerprint_is_gpg_style_and_stable_across_load() {
    let original = key(2);
    let fingerprint = original.fingerprint();
    assert_eq!(fingerprint.len(), 40, "{fingerprint}");
    assert!(
        fingerprint
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)),
        "{fingerprint}"
    );
    let loaded = AptSigningKey::from_armored_secret(&original.to_armored_secret()).unwrap();
    assert_eq!(loaded.fingerprint(), fingerprint);
    assert_ne!(key(3).fingerprint(), fingerprint);
}

/// gpg itself must see a v4 EdDSA (algorithm 22) key with our fingerprint, user id and
/// sign capability; this is exactly what apt 2.6 hands to gpgv.
#[test]
fn gpg_sees_v4_eddsa_legacy_key_with_our_fingerprint() {
    let key = key(4);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "key.asc", key.public_key_armored().as_bytes());
    let output = Command::new("/usr/bin/gpg")
        .env("GNUPGHOME", dir.path())
        .env("LC_ALL", "C")
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let listing = String::from_utf8(output.stdout).unwrap();
    let field = |record: &str, index: usize| -> String {
        let line = listing
            .lines()
            .find(|l| l.starts_with(record))
            .unwrap_or_else(|| panic!("no {record} record in:\n{listing}"));
        line.split(':').nth(index).unwrap().to_owned()
    };
    assert_eq!(field("pub:", 3), "22", "algorithm:\n{listing}");
    assert_eq!(field("pub:", 16), "ed25519", "curve:\n{listing}");
    assert!(field("pub:", 11).contains('s'), "capabilities:\n{listing}");
    assert_eq!(
        field("pub:", 5),
        created().as_second().to_string(),
        "creation time:\n{listing}"
    );
    assert_eq!(field("fpr:", 9), key.fingerprint());
    assert_eq!(field("uid:", 9), USER_ID);
    assert!(!listing.contains("sub:"), "no subkeys expected:\n{listing}");
}

#[test]
fn inrelease_layout_is_what_gpg_writes_and_apt_parses() {
    let signed = key(5).clearsign(RELEASE.as_bytes(), signed_at()).unwrap();
    let text = String::from_utf8(signed).unwrap();
    let expected_start = format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{RELEASE}");
    assert!(text.starts_with(&expected_start), "{text}");
    // The last Release line sits directly on top of the signature, as with gpg --clearsign.
    let rest = &text[expected_start.len()..];
    assert!(
        rest.starts_with("-----BEGIN PGP SIGNATURE-----\n"),
        "{text}"
    );
    assert!(text.ends_with("-----END PGP SIGNATURE-----\n"), "{text}");
    assert_eq!(text.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
}

/// gpg treats the final newline as framing, so "text\n" and "text" sign identically.
#[test]
fn trailing_newline_of_body_is_framing() {
    let key = key(6);
    let with = key.clearsign(RELEASE.as_bytes(), signed_at()).unwrap();
    let without = key
        .clearsign(RELEASE.trim_end_matches('\n').as_bytes(), signed_at())
        .unwrap();
    assert_eq!(with, without);
}

#[test]
fn gpgv_accepts_inrelease() {
    let key = key(7);
    let dir = tempfile::tempdir().unwrap();
    let inrelease = write(
        dir.path(),
        "InRelease",
        &key.clearsign(RELEASE.as_bytes(), signed_at()).unwrap(),
    );
    let run = gpgv(dir.path(), key.public_key_binary(), &[&inrelease]);
    assert!(run.ok, "{}", run.status);
    assert!(run.status.contains("[GNUPG:] GOODSIG "), "{}", run.status);
    let validsig = format!("[GNUPG:] VALIDSIG {} ", key.fingerprint());
    assert!(run.status.contains(&validsig), "{}", run.status);
    // The signature carries our time, not the wall clock.
    let date = format!(" {} ", signed_at().as_second());
    assert!(run.status.contains(&date), "{}", run.status);
}

/// Bodies that need dash escaping, have no trailing newline, or are empty still verify.
#[test]
fn gpgv_accepts_unusual_bodies() {
    let key = key(8);
    let dir = tempfile::tempdir().unwrap();
    let bodies: [&str; 5] = [
        "-----BEGIN PGP SIGNATURE-----\nnot a signature\n",
        "- starts with a dash\n--\nFrom the start\n",
        "no trailing newline",
        "blank lines\n\n\ninside\n\n",
        "",
    ];
    for body in bodies {
        let signed = key.clearsign(body.as_bytes(), signed_at()).unwrap();
        let inrelease = write(dir.path(), "InRelease", &signed);
        let run = gpgv(dir.path(), key.public_key_binary(), &[&inrelease]);
        assert!(run.ok, "body {body:?}:\n{}", run.status);
    }
}

#[test]
fn gpgv_accepts_release_gpg() {
    let key = key(9);
    let dir = tempfile::tempdir().unwrap();
    let release = write(dir.path(), "Release", RELEASE.as_bytes());
    let signature = key
        .detached_armored(RELEASE.as_bytes(), signed_at())
        .unwrap();
    assert!(signature.starts_with(b"-----BEGIN PGP SIGNATURE-----\n"));
    let release_gpg = write(dir.path(), "Release.gpg", &signature);
    let run = gpgv(
        dir.path(),
        key.public_key_binary(),
        &[&release_gpg, &release],
    );
    assert!(run.ok, "{}", run.status);
    let validsig = format!("[GNUPG:] VALIDSIG {} ", key.fingerprint());
    assert!(run.status.contains(&validsig), "{}", run.status);
}

/// Attack: a mirror or proxy edits one byte of a signed InRelease (e.g. a hash line).
#[test]
fn gpgv_rejects_tampered_inrelease() {
    let key = key(10);
    let dir = tempfile::tempdir().unwrap();
    let mut signed = key.clearsign(RELEASE.as_bytes(), signed_at()).unwrap();
    let at = signed
        .windows(b"Suite: pilot".len())
        .position(|w| w == b"Suite: pilot")
        .unwrap();
    signed[at + "Suite: ".len()] = b'P';
    let inrelease = write(dir.path(), "InRelease", &signed);
    let run = gpgv(dir.path(), key.public_key_binary(), &[&inrelease]);
    assert!(!run.ok, "{}", run.status);
    assert!(run.status.contains("[GNUPG:] BADSIG "), "{}", run.status);
}

/// Attack: a Release file swapped under an unchanged Release.gpg.
#[test]
fn gpgv_rejects_release_changed_after_signing() {
    let key = key(11);
    let dir = tempfile::tempdir().unwrap();
    let signature = key
        .detached_armored(RELEASE.as_bytes(), signed_at())
        .unwrap();
    let release_gpg = write(dir.path(), "Release.gpg", &signature);
    let release = write(
        dir.path(),
        "Release",
        RELEASE.replace("pilot", "broad").as_bytes(),
    );
    let run = gpgv(
        dir.path(),
        key.public_key_binary(),
        &[&release_gpg, &release],
    );
    assert!(!run.ok, "{}", run.status);
    assert!(run.status.contains("[GNUPG:] BADSIG "), "{}", run.status);
}

/// Attack: someone with their own key signs an InRelease for our repository.
#[test]
fn gpgv_rejects_signature_by_another_key() {
    let trusted = key(12);
    let intruder = key(13);
    let dir = tempfile::tempdir().unwrap();
    let inrelease = write(
        dir.path(),
        "InRelease",
        &intruder.clearsign(RELEASE.as_bytes(), signed_at()).unwrap(),
    );
    let run = gpgv(dir.path(), trusted.public_key_binary(), &[&inrelease]);
    assert!(!run.ok, "{}", run.status);
    assert!(run.status.contains("[GNUPG:] NO_PUBKEY "), "{}", run.status);

    let release = write(dir.path(), "Release", RELEASE.as_bytes());
    let release_gpg = write(
        dir.path(),
        "Release.gpg",
        &intruder
            .detached_armored(RELEASE.as_bytes(), signed_at())
            .unwrap(),
    );
    let run = gpgv(
        dir.path(),
        trusted.public_key_binary(),
        &[&release_gpg, &release],
    );
    assert!(!run.ok, "{}", run.status);
    assert!(run.status.contains("[GNUPG:] NO_PUBKEY "), "{}", run.status);
}

/// The `Signed-By:` value apt accepts for an embedded key: the armored key, each line
/// indented by one space and empty lines written as " .".
fn signed_by_field(armored: &str) -> String {
    armored
        .lines()
        .map(|line| {
            if line.is_empty() {
                " .".to_owned()
            } else {
                format!(" {line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `apt-get update` for a one-suite `file:` repository signed by `signer`, with only
/// `trusted`'s key in `Signed-By`, sealed off from the host's apt configuration.
fn apt_update(signer: &AptSigningKey, trusted: &AptSigningKey) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let suite = root.join("repo/dists/pilot");
    std::fs::create_dir_all(suite.join("main/binary-amd64")).unwrap();
    // An empty Packages file: its sha256 is the one RELEASE lists.
    write(&suite.join("main/binary-amd64"), "Packages", b"");
    // apt refuses Release files dated in the future, so date everything "now".
    let now = Timestamp::now();
    let date = now.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string();
    let release = RELEASE.replace("Sun, 01 Jun 2025 12:00:00 UTC", &date);
    write(
        &suite,
        "InRelease",
        &signer.clearsign(release.as_bytes(), now).unwrap(),
    );

    for sub in [
        "etc/apt.conf.d",
        "etc/sources.list.d",
        "etc/trusted.gpg.d",
        "etc/preferences.d",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for sub in ["state/lists/partial", "cache/archives/partial", "log"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    write(root, "state/status", b"");
    let sources = format!(
        "Types: deb\nURIs: file:{}\nSuites: pilot\nComponents: main\nSigned-By:\n{}\n",
        root.join("repo").display(),
        signed_by_field(trusted.public_key_armored())
    );
    write(
        root,
        "etc/sources.list.d/patchward.sources",
        sources.as_bytes(),
    );
    let r = root.display();
    let config = format!(
        "Dir::Etc::main \"/dev/null\";\n\
         Dir::Etc::parts \"{r}/etc/apt.conf.d\";\n\
         Dir::Etc::sourcelist \"/dev/null\";\n\
         Dir::Etc::sourceparts \"{r}/etc/sources.list.d\";\n\
         Dir::Etc::trusted \"/dev/null\";\n\
         Dir::Etc::trustedparts \"{r}/etc/trusted.gpg.d\";\n\
         Dir::Etc::preferences \"/dev/null\";\n\
         Dir::Etc::preferencesparts \"{r}/etc/preferences.d\";\n\
         Dir::State \"{r}/state\";\n\
         Dir::State::status \"{r}/state/status\";\n\
         Dir::Cache \"{r}/cache\";\n\
         Dir::Log \"{r}/log\";\n\
         Debug::NoLocking \"true\";\n\
         APT::Sandbox::User \"root\";\n\
         APT::Architecture \"amd64\";\n\
         APT::Architectures {{ \"amd64\"; }};\n\
         Acquire::Languages \"none\";\n"
    );
    let config_path = write(root, "apt.conf", config.as_bytes());
    let output = Command::new("apt-get")
        .env("APT_CONFIG", &config_path)
        .env("LC_ALL", "C")
        .args(["update", "-q"])
        .output()
        .expect("apt-get is missing; these tests need an apt-based system");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let got_lists = std::fs::read_dir(root.join("state/lists"))
        .unwrap()
        .any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("_InRelease")
        });
    let clean = !log
        .lines()
        .any(|l| l.starts_with("W:") || l.starts_with("E:"));
    (output.status.success() && clean && got_lists, log)
}

/// apt 2.6 itself fetches, splits and verifies our InRelease, trusting our armored key
/// embedded in a deb822 `Signed-By:` field.
#[test]
fn apt_get_update_accepts_our_repository() {
    let key = key(14);
    let (ok, log) = apt_update(&key, &key);
    assert!(ok, "{log}");
}

/// Same harness with a different key trusted: proves the test above is not passing
/// because verification was skipped.
#[test]
fn apt_get_update_rejects_repository_signed_by_another_key() {
    let (ok, log) = apt_update(&key(15), &key(16));
    assert!(!ok, "{log}");
    assert!(log.contains("NO_PUBKEY"), "{log}");
}

#[test]
fn refuses_lines_gpg_would_read_differently() {
    let key = key(17);
    for (text, line) in [
        ("Origin: x \nLabel: y\n", 1),
        ("Origin: x\nLabel: y\t\n", 2),
        ("Origin: x\r\nLabel: y\n", 1),
        ("Origin: x\nLabel: y ", 2),
    ] {
        let err = key.clearsign(text.as_bytes(), signed_at()).unwrap_err();
        assert!(
            matches!(err, OpenPgpError::UnsignableLine { line: l, .. } if l == line),
            "{text:?}: {err}"
        );
    }
    let err = key.clearsign(b"Origin: \xff\n", signed_at()).unwrap_err();
    assert!(
        matches!(err, OpenPgpError::NotUtf8 { valid_up_to: 8 }),
        "{err}"
    );
}

#[test]
fn refuses_signing_before_key_creation() {
    let key = key(18);
    let before = "2024-12-31T23:59:59Z".parse().unwrap();
    for result in [
        key.clearsign(RELEASE.as_bytes(), before),
        key.detached_armored(RELEASE.as_bytes(), before),
    ] {
        assert!(
            matches!(result, Err(OpenPgpError::SignedBeforeKeyCreation { .. })),
            "{result:?}"
        );
    }
}

#[test]
fn refuses_bad_generation_inputs() {
    let rng = || StdRng::seed_from_u64(19);
    for user_id in ["", "  ", "two\nlines <a@b.invalid>"] {
        let err = AptSigningKey::generate_at(user_id, created(), rng()).unwrap_err();
        assert!(matches!(err, OpenPgpError::InvalidUserId { .. }), "{err}");
    }
    let future = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let err = AptSigningKey::generate_at(USER_ID, future, rng()).unwrap_err();
    assert!(matches!(err, OpenPgpError::CreatedInFuture { .. }), "{err}");
    let err = AptSigningKey::generate_at(USER_ID, "1969-12-31T00:00:00Z".parse().unwrap(), rng())
        .unwrap_err();
    assert!(matches!(err, OpenPgpError::TimeOutOfRange { .. }), "{err}");
}

#[test]
fn refuses_to_load_what_is_not_our_kind_of_key() {
    let err = AptSigningKey::from_armored_secret("not a key").unwrap_err();
    assert!(matches!(err, OpenPgpError::Parse(_)), "{err}");
    // A public key is not a secret key.
    let err = AptSigningKey::from_armored_secret(key(20).public_key_armored()).unwrap_err();
    assert!(matches!(err, OpenPgpError::Parse(_)), "{err}");
}

#[test]
fn generate_uses_the_current_time() {
    let before = Timestamp::now().as_second();
    let key = AptSigningKey::generate(USER_ID, StdRng::seed_from_u64(21)).unwrap();
    let after = Timestamp::now().as_second();
    assert!((before..=after).contains(&key.created_at().as_second()));
}

#[test]
fn debug_output_hides_the_secret() {
    let key = key(22);
    let debug = format!("{key:?}");
    assert!(debug.contains(&key.fingerprint()), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
}
