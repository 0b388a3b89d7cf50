//! Tests of the script archive rules: archives made by real `tar`, hostile entries, and
//! the check `feed add` runs agreeing with what the agent unpacks.

use super::*;
use std::process::Command;

/// Builds a `.tar.zst` from `(name, mode, content)` regular files.
pub(crate) fn archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(EntryType::Regular);
        b.append_data(&mut h, name, *content).unwrap();
    }
    zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
}

/// One raw tar header block (plus content) whose name and type are set byte by byte
/// (the `tar` builder refuses `..`, absolute names and empty names).
fn raw_block(name: &[u8], kind: EntryType, link: &[u8], content: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_mode(0o755);
    h.set_size(content.len() as u64);
    h.set_entry_type(kind);
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(content);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// A `.tar.zst` of raw blocks, with the end-of-archive marker.
fn raw_archive(blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut v: Vec<u8> = blocks.concat();
    v.extend_from_slice(&[0u8; 1024]);
    zstd::encode_all(&v[..], 3).unwrap()
}

fn raw_entry(name: &[u8], kind: EntryType, link: &[u8], content: &[u8]) -> Vec<u8> {
    raw_archive(&[raw_block(name, kind, link, content)])
}

fn try_extract(
    bytes: &[u8],
    limits: Limits,
) -> (tempfile::TempDir, Result<Contents, ExtractError>) {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.tar.zst");
    std::fs::write(&a, bytes).unwrap();
    let r = extract(&a, &d.path().join("out"), limits);
    // The check `feed add` runs gives the same verdict without writing anything.
    let checked = inspect(&a, limits);
    match (&r, &checked) {
        (Ok(x), Ok(y)) => assert_eq!(x, y),
        (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string()),
        _ => panic!("extract {r:?} and inspect {checked:?} disagree"),
    }
    (d, r)
}

fn write_exec(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `tar -C dir -cf - .` (GNU tar, as an MSP technician runs it), compressed with zstd.
pub(crate) fn real_tar(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(extra)
        .arg("-C")
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    zstd::encode_all(&out.stdout[..], 3).unwrap()
}

#[test]
fn extracts_regular_files_with_modes() {
    let a = archive(&[
        ("install", 0o755, b"#!/bin/sh\necho hi\n"),
        ("payload/data.txt", 0o600, b"x"),
    ]);
    let (d, r) = try_extract(&a, Limits::default());
    let contents = r.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(d.path().join("out/install")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read(d.path().join("out/payload/data.txt")).unwrap(),
        b"x"
    );
    assert_eq!(contents.nodes.get(Path::new("payload")), Some(&Node::Dir));
}

#[test]
fn an_archive_made_with_tar_dash_c_dir_dot_unpacks() {
    let src = tempfile::tempdir().unwrap();
    write_exec(src.path(), "install", "#!/bin/sh\necho install\n");
    write_exec(src.path(), "verify", "#!/bin/sh\ntrue\n");
    std::fs::create_dir_all(src.path().join("payload/fw")).unwrap();
    std::fs::write(src.path().join("payload/fw/image.bin"), b"firmware").unwrap();
    // Two names for one file: tar stores the second as a hard link.
    std::fs::hard_link(
        src.path().join("payload/fw/image.bin"),
        src.path().join("payload/image.bin"),
    )
    .unwrap();
    for format in [
        &[][..],
        &["--format=gnu"],
        &["--format=pax"],
        &["--format=ustar"],
    ] {
        let bytes = real_tar(src.path(), format);
        let (d, r) = try_extract(&bytes, Limits::default());
        let contents = r.unwrap_or_else(|e| panic!("{format:?}: {e}"));
        contents.require_steps(&["install", "verify"]).unwrap();
        let out = d.path().join("out");
        assert_eq!(
            std::fs::read(out.join("payload/image.bin")).unwrap(),
            b"firmware"
        );
        assert_eq!(
            std::fs::read(out.join("payload/fw/image.bin")).unwrap(),
            b"firmware"
        );
        let o = Command::new(out.join("install")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "install\n");
    }
}

#[test]
fn harmless_entries_are_accepted_as_tar_does() {
    let bytes = raw_archive(&[
        raw_block(b"./", EntryType::Directory, b"", b""),
        raw_block(b".", EntryType::Directory, b"", b""),
        raw_block(b"./lib/", EntryType::Directory, b"", b""),
        raw_block(b"lib", EntryType::Directory, b"", b""),
        raw_block(b".//lib//a.sh", EntryType::Regular, b"", b"echo a"),
        raw_block(b"lib/b.sh", EntryType::Link, b"./lib/a.sh", b""),
        raw_block(
            b"pax_global_header",
            EntryType::XGlobalHeader,
            b"",
            b"20 comment=abcdef\n",
        ),
        raw_block(b"./install", EntryType::Continuous, b"", b"#!/bin/sh\n"),
    ]);
    let (d, r) = try_extract(&bytes, Limits::default());
    let c = r.unwrap();
    let out = d.path().join("out");
    assert_eq!(std::fs::read(out.join("lib/b.sh")).unwrap(), b"echo a");
    assert!(out.join("install").is_file());
    assert!(!out.join("pax_global_header").exists());
    assert!(c.has("install") && !c.has("verify"));
}

#[test]
fn hostile_archives_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute path",
            raw_entry(b"/tmp/evil", EntryType::Regular, b"", b"x"),
        ),
        (
            "`..`",
            raw_entry(b"a/../../evil", EntryType::Regular, b"", b"x"),
        ),
        (
            "symbolic link",
            raw_entry(b"ln", EntryType::Symlink, b"/etc/passwd", b""),
        ),
        (
            "symbolic link",
            raw_entry(b"ln", EntryType::Symlink, b"install", b""),
        ),
        (
            "outside the archive",
            raw_entry(b"hl", EntryType::Link, b"/etc/passwd", b""),
        ),
        (
            "outside the archive",
            raw_entry(b"hl", EntryType::Link, b"../x", b""),
        ),
        (
            "not a file stored earlier",
            raw_entry(b"hl", EntryType::Link, b"install", b""),
        ),
        (
            "not a file stored earlier",
            raw_archive(&[
                raw_block(b"d/", EntryType::Directory, b"", b""),
                raw_block(b"hl", EntryType::Link, b"d", b""),
            ]),
        ),
        (
            "character device",
            raw_entry(b"dev", EntryType::Char, b"", b""),
        ),
        (
            "block device",
            raw_entry(b"blk", EntryType::Block, b"", b""),
        ),
        ("fifo", raw_entry(b"fifo", EntryType::Fifo, b"", b"")),
        (
            "empty name",
            raw_entry(b"./", EntryType::Regular, b"", b"x"),
        ),
        (
            "duplicate",
            archive(&[("install", 0o755, b"a"), ("./install", 0o755, b"b")]),
        ),
        (
            "is a file",
            archive(&[("install", 0o755, b"a"), ("install/x", 0o755, b"b")]),
        ),
        (
            "where a file already is",
            raw_archive(&[
                raw_block(b"a", EntryType::Regular, b"", b"x"),
                raw_block(b"a/", EntryType::Directory, b"", b""),
            ]),
        ),
        (
            "where a directory already is",
            archive(&[("a/b", 0o644, b"x"), ("a", 0o644, b"y")]),
        ),
    ];
    for (want, bytes) in cases {
        let (d, r) = try_extract(&bytes, Limits::default());
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(!Path::new("/tmp/evil").exists());
        assert!(!d.path().join("evil").exists());
    }
    let big = archive(&[("a", 0o644, &[0u8; 4096]), ("b", 0o644, &[0u8; 4096])]);
    let small = Limits {
        max_entries: 10,
        max_bytes: 5000,
    };
    let e = try_extract(&big, small).1.unwrap_err();
    assert!(matches!(e, ExtractError::TooLarge(_)), "{e}");
    let few = Limits {
        max_entries: 1,
        max_bytes: 1 << 20,
    };
    let e = try_extract(&big, few).1.unwrap_err();
    assert!(matches!(e, ExtractError::TooManyEntries(_)), "{e}");
    // Not zstd at all.
    assert!(try_extract(b"not an archive", Limits::default()).1.is_err());
    // Cut off in the middle of a file.
    let whole = archive(&[("install", 0o755, &[b'x'; 5000])]);
    let raw = zstd::decode_all(&whole[..]).unwrap();
    let cut = zstd::encode_all(&raw[..2000], 3).unwrap();
    assert!(try_extract(&cut, Limits::default()).1.is_err());
}

#[test]
fn steps_must_be_present_and_executable() {
    let a = archive(&[
        ("install", 0o755, b"#!/bin/sh\n"),
        ("verify", 0o644, b"#!/bin/sh\n"),
        ("rollback/x", 0o755, b""),
    ]);
    let (_d, r) = try_extract(&a, Limits::default());
    let c = r.unwrap();
    c.require_steps(&["install"]).unwrap();
    let e = c
        .require_steps(&["install", "verify"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`verify` is not an executable file"), "{e}");
    let e = c.require_steps(&["backup"]).unwrap_err().to_string();
    assert!(e.contains("no `backup` executable"), "{e}");
    // A present step that cannot run (here a directory) is refused too.
    let e = c.check_present_steps().unwrap_err().to_string();
    assert!(e.contains("`verify`"), "{e}");
}
