//! `feed add` on real inputs: `.deb` files named as `apt-get download` names them, and
//! script archives checked with the agent's rules before anything is stored.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::feed::tools::{InitOptions, init};

fn feed(tmp: &Path) -> PathBuf {
    let f = tmp.join("feed");
    init(
        &f,
        &InitOptions::default(),
        "2026-11-20T10:00:00Z".parse().unwrap(),
    )
    .unwrap();
    f
}

/// The names of everything under the feed's `blobs/` and `patches/`.
fn stored(feed: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["blobs/sha256", "patches"] {
        for e in fs::read_dir(feed.join(d)).unwrap() {
            out.push(format!("{d}/{}", e.unwrap().file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

/// A real package built with dpkg-deb, whose version has an epoch.
fn epoch_deb(dir: &Path) -> PathBuf {
    let root = dir.join("pkg");
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc/bsdutils")).unwrap();
    fs::write(root.join("usr/share/doc/bsdutils/README"), "tiny\n").unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        "Package: bsdutils\nVersion: 1:2.38.1-5+deb12u3\nArchitecture: amd64\n\
         Maintainer: Test <test@example.invalid>\nDescription: a tiny test package\n",
    )
    .unwrap();
    // The name `apt-get download` gives it: the epoch's colon as %3a.
    let deb = dir.join("bsdutils_1%3a2.38.1-5+deb12u3_amd64.deb");
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}

fn patch_toml(
    dir: &Path,
    name: &str,
    install: &str,
    kind: &str,
    artifacts: &[(&str, &str)],
) -> PathBuf {
    let mut t = format!(
        "id = \"{name}\"\ntitle = \"{name}\"\nkind = \"{kind}\"\nseverity = \"high\"\n\
         released = \"2026-11-01T00:00:00Z\"\ninstall = \"{install}\"\nest_minutes = 5\n"
    );
    for (n, f) in artifacts {
        t.push_str(&format!(
            "[[artifacts]]\nname = \"{n}\"\nformat = \"{f}\"\n"
        ));
    }
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, t).unwrap();
    p
}

#[test]
fn a_deb_named_as_apt_get_download_names_it_is_added_under_its_pool_name() {
    let tmp = tempfile::tempdir().unwrap();
    let f = feed(tmp.path());
    let deb = epoch_deb(tmp.path());
    let pool = "bsdutils_2.38.1-5+deb12u3_amd64.deb";
    // PATCH.toml may name it as the file is called, or by its pool name.
    for (id, name) in [
        ("DSA-1/bsdutils", "bsdutils_1%3a2.38.1-5+deb12u3_amd64.deb"),
        ("DSA-2/bsdutils", pool),
    ] {
        let p = patch_toml(
            tmp.path(),
            &id.replace('/', "-"),
            "apt",
            "security",
            &[(name, "deb")],
        );
        let text = fs::read_to_string(&p)
            .unwrap()
            .replace(&id.replace('/', "-"), id);
        fs::write(&p, text).unwrap();
        let r =
            add_patch(&f, &p, std::slice::from_ref(&deb)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.artifacts[0].name, pool, "{name}");
        let entry: PatchEntry = toml::from_str(&fs::read_to_string(&r.file).unwrap()).unwrap();
        assert_eq!(entry.artifacts[0].name, pool);
        // The same name the appliance's ring repositories serve it under.
        let path = crate::apt::index::pool_filename(
            &r.artifacts[0].sha256,
            "bsdutils",
            "1:2.38.1-5+deb12u3",
            "amd64",
        );
        assert!(path.ends_with(&format!("/{pool}")), "{path}");
    }
    // Another name still matches nothing, and nothing more is stored.
    let before = stored(&f);
    let p = patch_toml(
        tmp.path(),
        "other",
        "apt",
        "security",
        &[("bsdutils_9_amd64.deb", "deb")],
    );
    let e = add_patch(&f, &p, std::slice::from_ref(&deb))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no file named \"bsdutils_9_amd64.deb\""), "{e}");
    assert_eq!(stored(&f), before);
}

fn write_exec(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn script_archives_are_checked_with_the_agents_rules_before_anything_is_stored() {
    use crate::agent::archive::tests::{archive, real_tar};
    let tmp = tempfile::tempdir().unwrap();
    let f = feed(tmp.path());
    let steps = tmp.path().join("steps");
    fs::create_dir(&steps).unwrap();
    write_exec(&steps, "install", "#!/bin/sh\ntrue\n");
    write_exec(&steps, "verify", "#!/bin/sh\ntrue\n");
    let good = tmp.path().join("good.tar.zst");
    fs::write(&good, real_tar(&steps, &[])).unwrap();
    let p = patch_toml(
        tmp.path(),
        "good",
        "script",
        "application",
        &[("good.tar.zst", "script")],
    );
    add_patch(&f, &p, std::slice::from_ref(&good)).unwrap();
    let before = stored(&f);

    let bad = |name: &str, bytes: Vec<u8>| {
        let a = tmp.path().join(name);
        fs::write(&a, bytes).unwrap();
        a
    };
    let x = 0o755;
    let cases: Vec<(&str, &str, PathBuf, &str)> = vec![
        (
            "application",
            "script",
            bad(
                "noverify.tar.zst",
                archive(&[("install", x, b"#!/bin/sh\n")]),
            ),
            "no `verify` executable",
        ),
        (
            "application",
            "script",
            bad(
                "plain.tar.zst",
                archive(&[("install", 0o644, b"#!/bin/sh\n"), ("verify", x, b"")]),
            ),
            "`install` is not an executable file",
        ),
        (
            "application",
            "script",
            bad(
                "dup.tar.zst",
                archive(&[
                    ("install", x, b"a"),
                    ("verify", x, b""),
                    ("./install", x, b"b"),
                ]),
            ),
            "duplicate entry",
        ),
        (
            // Firmware needs a verified backup first: without `backup` every host fails.
            "firmware",
            "script",
            bad(
                "nobackup.tar.zst",
                archive(&[("install", x, b""), ("verify", x, b"")]),
            ),
            "no `backup` executable",
        ),
        (
            "application",
            "script",
            bad("junk.tar.zst", b"not zstd".to_vec()),
            "cannot read",
        ),
    ];
    for (kind, format, file, want) in cases {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let p = patch_toml(tmp.path(), "bad", "script", kind, &[(&name, format)]);
        let e = add_patch(&f, &p, std::slice::from_ref(&file))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("not a script archive the agent can run"),
            "{name}: {e}"
        );
        assert_eq!(stored(&f), before, "{name}");
    }
    // A script patch has one archive: the agent would refuse a job with two.
    let second = bad("second.tar.zst", fs::read(&good).unwrap());
    let p = patch_toml(
        tmp.path(),
        "two",
        "script",
        "application",
        &[("good.tar.zst", "script"), ("second.tar.zst", "script")],
    );
    let e = add_patch(&f, &p, &[good.clone(), second])
        .unwrap_err()
        .to_string();
    assert!(e.contains("this one has 2"), "{e}");
    assert_eq!(stored(&f), before);
    // An unsafe id is refused before any artifact is copied: nothing is staged.
    let other = bad(
        "other.tar.zst",
        archive(&[
            ("install", x, b"#!/bin/sh\n"),
            ("verify", x, b"#!/bin/sh\necho 2\n"),
        ]),
    );
    let p = patch_toml(
        tmp.path(),
        "bad id",
        "script",
        "application",
        &[("other.tar.zst", "script")],
    );
    let e = add_patch(&f, &p, &[other]).unwrap_err().to_string();
    assert!(e.contains("is not a safe patch id"), "{e}");
    assert_eq!(stored(&f), before);
}
