//! Bundle round trip, and a hostile bundle per attack the reader must stop. Hostile
//! tars are built here from raw headers (the tar crate's path setters refuse `..` and
//! absolute names, which is exactly what these cases need).

use std::collections::BTreeMap;
use std::io::Read;

use tar::{EntryType, Header};

use super::*;
use crate::feed::catalog::tests::entry;
use crate::feed::hashing::{HashingReader, sha256_hex};
use crate::trust::state::TrustState;
use crate::trust::testkit::*;

const NOW: &str = "2026-11-21T00:00:00Z";

fn header_json(base: Option<u64>) -> Vec<u8> {
    serde_json::to_vec(&BundleHeader {
        format: 1,
        feed: "example-msp".into(),
        base_catalog_version: base,
        created: ts(NOW),
    })
    .unwrap()
}

/// Collects blobs through the callback, hashing as a store would.
fn read_all(
    bytes: &[u8],
    allowed: Option<&BTreeMap<String, u64>>,
) -> Result<(BundleMetadata, BTreeMap<String, Vec<u8>>), BundleError> {
    let mut r = BundleReader::new(bytes)?;
    let meta = r.metadata()?;
    let empty = BTreeMap::new();
    let mut got = BTreeMap::new();
    r.blobs(
        allowed.unwrap_or(&empty),
        |sha, _size, rd: &mut dyn Read| {
            let mut h = HashingReader::new(rd);
            let mut buf = Vec::new();
            h.read_to_end(&mut buf).map_err(BundleError::Io)?;
            let (found, _) = h.finish();
            assert_eq!(found, sha, "reader delivered other bytes");
            got.insert(sha.to_string(), buf);
            Ok::<(), BundleError>(())
        },
    )?;
    Ok((meta, got))
}

#[test]
fn round_trip_metadata_then_blobs_verified_through_trust_state() {
    let k = Keys::new();
    let root = sign_root(&k.root(1), &[&k.root[0], &k.root[1]]);
    let c = catalog(
        1,
        "2026-11-20T00:00:00Z",
        "2027-02-18T00:00:00Z",
        vec![entry("a", b"first blob"), entry("b", &[7u8; 100_000])],
    );
    let cat_bytes = sign_catalog(&c, &k.catalog);
    let t = sign_timestamp(&timestamp_for(1, &cat_bytes, 1), &k.timestamp);
    let contents: BTreeMap<String, Vec<u8>> = [b"first blob".to_vec(), vec![7u8; 100_000]]
        .into_iter()
        .map(|b| (sha256_hex(&b), b))
        .collect();
    let meta = BundleMetadata {
        header: BundleHeader {
            format: 1,
            feed: "example-msp".into(),
            base_catalog_version: None,
            created: ts(NOW),
        },
        roots: vec![root.clone()],
        catalog: cat_bytes.clone(),
        timestamp: Some(t.clone()),
    };
    let out = write_bundle(Vec::new(), &meta, &c.blobs(), |sha| {
        Ok(Box::new(std::io::Cursor::new(contents[sha].clone())) as Box<dyn Read>)
    })
    .unwrap();

    let mut r = BundleReader::new(&out[..]).unwrap();
    let got = r.metadata().unwrap();
    assert_eq!(got, meta);
    let state = TrustState::from_pinned_root(&got.roots[0]).unwrap();
    let (tdoc, state) = state
        .verify_timestamp(got.timestamp.as_ref().unwrap(), ts(NOW))
        .unwrap();
    let (verified, _) = state
        .verify_catalog(&got.catalog, ts(NOW), Some(&tdoc.catalog))
        .unwrap();
    let mut blobs = BTreeMap::new();
    let summary = r
        .blobs(&verified.blobs(), |sha, size, rd: &mut dyn Read| {
            let mut buf = Vec::new();
            rd.read_to_end(&mut buf).map_err(BundleError::Io)?;
            assert_eq!(buf.len() as u64, size);
            blobs.insert(sha.to_string(), buf);
            Ok::<_, BundleError>(())
        })
        .unwrap();
    assert_eq!(blobs, contents);
    assert_eq!(summary.blobs, verified.blobs());
}

#[test]
fn writer_refuses_a_blob_whose_content_does_not_match() {
    let c = catalog(1, NOW, "2027-01-01T00:00:00Z", vec![entry("a", b"right")]);
    let meta = BundleMetadata {
        header: serde_json::from_slice(&header_json(None)).unwrap(),
        roots: vec![],
        catalog: b"{}".to_vec(),
        timestamp: None,
    };
    let e = write_bundle(Vec::new(), &meta, &c.blobs(), |_| {
        Ok(Box::new(&b"wrong"[..]) as Box<dyn Read>)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("store corrupt?"), "{e}");
}

// ---- hostile bundles ----------------------------------------------------------------

const BLOB: &[u8] = b"hello";

fn blob_sha() -> String {
    sha256_hex(BLOB)
}

fn allowed() -> BTreeMap<String, u64> {
    [(blob_sha(), BLOB.len() as u64)].into()
}

/// A tar stream built entry by entry with raw names and types.
struct RawTar(Vec<u8>);

impl RawTar {
    /// Starts with a valid header and catalog entry.
    fn new() -> Self {
        let mut t = RawTar(Vec::new());
        t.file(HEADER_NAME, &header_json(None));
        t.file(
            CATALOG_NAME,
            b"{\"catalog\": \"not verified by the reader\"}",
        );
        t
    }

    fn raw(&mut self, name: &[u8], ty: EntryType, data: &[u8], declared: u64) -> &mut Self {
        let mut h = Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(declared);
        h.set_mode(0o644);
        h.set_entry_type(ty);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), EntryType::Regular, data, data.len() as u64)
    }

    fn blob(&mut self) -> &mut Self {
        self.file(&format!("{BLOB_PREFIX}{}", blob_sha()), BLOB)
    }

    fn finish(&mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        zstd::encode_all(&self.0[..], 3).unwrap()
    }
}

/// Reads a hostile bundle to its first error; also returns how many blobs the
/// callback saw (nothing may reach the store before or after a refusal it could cause).
fn check(bundle: &[u8]) -> (String, usize) {
    let mut calls = 0;
    let result = (|| {
        let mut r = BundleReader::new(bundle)?;
        r.metadata()?;
        r.blobs(&allowed(), |_, _, rd: &mut dyn Read| {
            calls += 1;
            std::io::copy(rd, &mut std::io::sink()).map_err(BundleError::Io)?;
            Ok::<_, BundleError>(())
        })
    })();
    (result.unwrap_err().to_string(), calls)
}

fn blob_name() -> String {
    format!("{BLOB_PREFIX}{}", blob_sha())
}

#[test]
fn a_well_formed_raw_bundle_is_accepted() {
    let b = RawTar::new().blob().finish();
    let (_, got) = read_all(&b, Some(&allowed())).unwrap();
    assert_eq!(got[&blob_sha()], BLOB);
}

#[test]
fn path_traversal_is_refused() {
    let b = RawTar::new().file("../x", b"x").finish();
    assert_eq!(check(&b).0, "entry \"../x\" contains `..` (path traversal)");
    let b = RawTar::new()
        .file("blobs/../../etc/cron.d/x", b"x")
        .finish();
    assert_eq!(
        check(&b).0,
        "entry \"blobs/../../etc/cron.d/x\" contains `..` (path traversal)"
    );
}

#[test]
fn absolute_path_is_refused() {
    let b = RawTar::new().file("/etc/passwd", b"x").finish();
    assert_eq!(
        check(&b).0,
        "entry \"/etc/passwd\" has an absolute path (path traversal)"
    );
}

#[test]
fn links_and_devices_are_refused() {
    for (ty, kind) in [
        (EntryType::Symlink, "symbolic link"),
        (EntryType::Link, "hard link"),
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
        (EntryType::Directory, "directory"),
        (EntryType::XHeader, "PAX extension header"),
        (EntryType::GNULongName, "GNU long-name record"),
    ] {
        let b = RawTar::new()
            .raw(blob_name().as_bytes(), ty, b"", 0)
            .finish();
        let (e, calls) = check(&b);
        assert_eq!(
            e,
            format!(
                "entry \"{}\" is a {kind}; bundles contain only regular files",
                blob_name()
            )
        );
        assert_eq!(calls, 0);
    }
}

#[test]
fn duplicate_entries_are_refused() {
    let b = RawTar::new().blob().blob().finish();
    let (e, calls) = check(&b);
    assert_eq!(e, format!("duplicate entry \"{}\"", blob_name()));
    assert_eq!(
        calls, 1,
        "the first copy was delivered, the duplicate refused"
    );
    let b = RawTar::new().file(CATALOG_NAME, b"{}").finish();
    assert_eq!(check(&b).0, "duplicate entry \"catalog.json\"");
}

#[test]
fn unknown_entries_are_refused() {
    let b = RawTar::new().file("notes.txt", b"hi").finish();
    assert_eq!(
        check(&b).0,
        "unknown entry \"notes.txt\" (not part of the bundle format)"
    );
    let b = RawTar::new().file("blobs/sha256/ABC", b"hi").finish();
    assert_eq!(
        check(&b).0,
        "unknown entry \"blobs/sha256/ABC\" (not part of the bundle format)"
    );
    let b = RawTar::new().file("root/01.root.json", b"{}").finish();
    assert!(
        check(&b)
            .0
            .starts_with("unknown entry \"root/01.root.json\"")
    );
}

#[test]
fn blob_not_in_catalog_is_refused() {
    let other = b"not in the catalog";
    let b = RawTar::new()
        .file(&format!("{BLOB_PREFIX}{}", sha256_hex(other)), other)
        .finish();
    let (e, calls) = check(&b);
    assert_eq!(
        e,
        format!(
            "blob {} is not referenced by the verified catalog",
            sha256_hex(other)
        )
    );
    assert_eq!(calls, 0);
}

#[test]
fn blob_larger_than_the_catalog_size_is_refused_before_reading() {
    // A bomb in one entry: the tar header claims 1 GiB of zeros for a 5-byte blob.
    let big = vec![0u8; 1 << 20];
    let b = RawTar::new()
        .raw(blob_name().as_bytes(), EntryType::Regular, &big, 1 << 30)
        .finish();
    let (e, calls) = check(&b);
    assert_eq!(
        e,
        format!(
            "blob {} is 1073741824 bytes in the bundle but the catalog says 5 (size mismatch)",
            blob_sha()
        )
    );
    assert_eq!(calls, 0);
}

#[test]
fn truncated_stream_is_refused() {
    let mut t = RawTar::new();
    t.file(
        &format!("{BLOB_PREFIX}{}", sha256_hex(&[1u8; 200_000])),
        &[1u8; 200_000],
    );
    let whole = t.finish();
    let allowed: BTreeMap<String, u64> = [(sha256_hex(&[1u8; 200_000]), 200_000)].into();
    read_all(&whole, Some(&allowed)).unwrap();
    for cut in [whole.len() - 1, whole.len() - 20, whole.len() / 2, 10] {
        let e = read_all(&whole[..cut], Some(&allowed))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bundle is truncated: "), "cut at {cut}: {e}");
    }
    // A tar without its end-of-archive marker, in a complete zstd frame.
    let mut t = RawTar::new();
    t.blob();
    let no_end = zstd::encode_all(&t.0[..], 3).unwrap();
    assert_eq!(
        check(&no_end).0,
        "bundle is truncated: the stream ended before the end-of-archive marker"
    );
}

#[test]
fn decompression_bomb_is_stopped_at_the_cap() {
    // Valid entries, then 64 MiB of zeros that compress to almost nothing.
    let mut t = RawTar::new();
    t.blob();
    t.0.extend(std::iter::repeat_n(0u8, 64 << 20));
    let b = zstd::encode_all(&t.0[..], 3).unwrap();
    assert!(b.len() < 100_000);
    let (e, calls) = check(&b);
    assert!(e.starts_with("bundle decompresses to more than "), "{e}");
    assert!(
        e.ends_with(" bytes, more than its catalog's sizes allow (decompression bomb?)"),
        "{e}"
    );
    assert_eq!(calls, 1);

    // A metadata entry that claims to be huge is refused from its header.
    let b = RawTar::new()
        .raw(b"timestamp.json", EntryType::Regular, b"", 1 << 30)
        .finish();
    assert_eq!(
        check(&b).0,
        "entry \"timestamp.json\" is 1073741824 bytes, over the 16777216-byte metadata limit"
    );
}

#[test]
fn metadata_after_a_blob_and_other_order_errors_are_refused() {
    let b = RawTar::new().blob().file(TIMESTAMP_NAME, b"{}").finish();
    let (e, calls) = check(&b);
    assert_eq!(
        e,
        "entry \"timestamp.json\" is out of order: metadata must come before the blobs"
    );
    assert_eq!(calls, 1);

    let mut t = RawTar(Vec::new());
    t.file(CATALOG_NAME, b"{}");
    assert_eq!(
        check(&t.finish()).0,
        "entry \"catalog.json\" is out of order: a bundle starts with patchward-bundle.json"
    );

    let mut t = RawTar(Vec::new());
    t.file(HEADER_NAME, &header_json(None)).blob();
    assert_eq!(
        check(&t.finish()).0,
        format!(
            "entry \"{}\" is out of order: blobs must follow catalog.json",
            blob_name()
        )
    );

    let b = RawTar::new().file("root/2.root.json", b"{}").finish();
    assert!(
        check(&b)
            .0
            .starts_with("entry \"root/2.root.json\" is out of order: expected"),
    );
}

#[test]
fn corrupt_headers_and_unknown_formats_are_refused() {
    let mut t = RawTar::new();
    t.blob();
    t.0[512 * 4 + 10] ^= 0x20; // flip a bit in the blob's header name
    assert_eq!(
        check(&t.finish()).0,
        "bundle is corrupt: an entry header's checksum does not match"
    );

    let mut t = RawTar(Vec::new());
    t.file(
        HEADER_NAME,
        br#"{"format":2,"feed":"x","base_catalog_version":null,"created":"2026-11-21T00:00:00Z"}"#,
    );
    t.file(CATALOG_NAME, b"{}");
    assert_eq!(
        check(&t.finish()).0,
        "patchward-bundle.json is invalid: format 2 is not supported (this binary reads format 1); upgrade patchward"
    );

    // A zstd frame that breaks off inside is corrupt (it is a bundle, damaged).
    let mut t = RawTar::new();
    t.blob();
    let mut z = zstd::encode_all(&t.0[..], 3).unwrap();
    let mid = z.len() / 2;
    z[mid..].iter_mut().for_each(|b| *b ^= 0x5a);
    assert!(check(&z).0.starts_with("bundle is"), "{}", check(&z).0);
}

#[test]
fn files_that_are_not_bundles_are_named_so() {
    let mut tar_plain = vec![0u8; 1024];
    tar_plain[257..262].copy_from_slice(b"ustar");
    let cases: [(&[u8], &str); 8] = [
        (b"", "the file is empty"),
        (b"not zstd at all\n", "it looks like a text file"),
        (b"!<arch>\ndebian-binary   ", "it is a Debian package"),
        (&[0x1f, 0x8b, 8, 0, 0, 0], "it is gzip-compressed"),
        (b"{\"payload\": \"x\"}", "it looks like JSON"),
        (b"PK\x03\x04rest", "it is a zip archive"),
        (&tar_plain, "it is an uncompressed tar archive"),
        (
            &[0, 1, 2, 3, 0xff, 0xfe],
            "does not start with the zstd signature",
        ),
    ];
    for (input, what) in cases {
        let e = check(input).0;
        assert!(
            e.starts_with("not a Patchward bundle (*.pwb): ") && e.contains(what),
            "{what}: {e}"
        );
    }
    // zstd, but not a bundle inside: a compressed JSON file, another tar.zst.
    let e = check(&zstd::encode_all(&b"{}"[..], 3).unwrap()).0;
    assert!(
        e.starts_with("not a Patchward bundle (*.pwb): it is zstd-compressed, but holds no tar"),
        "{e}"
    );
    let mut t = RawTar(Vec::new());
    t.file("etc/hosts", b"127.0.0.1 localhost\n");
    let e = check(&t.finish()).0;
    assert!(
        e.contains("not a Patchward bundle (*.pwb): it is a zstd-compressed tar archive, but its first entry is \"etc/hosts\""),
        "{e}"
    );
}
