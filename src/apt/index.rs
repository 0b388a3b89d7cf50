//! Rendering apt indexes: `Packages` stanzas, their compressed forms, and the `Release`
//! file that names them by size and SHA256. Pure functions of their inputs (no clock, no
//! disk), so they are snapshot-tested and benchmarked as they are.
//!
//! Compression follows DESIGN.md §7: plain and `.gz` always; `.xz` only while the plain
//! index is at most `xz_max_bytes` (xz -6 costs ~0.45 s per MB here, 22 s for Debian's
//! 50 MB index, while the small per-ring indexes of a site take milliseconds).

use std::io::Write;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::deb::DebMeta;

/// The one component every ring repository has.
pub const COMPONENT: &str = "main";

/// Fields a `Packages` stanza gets from the repository, never from the package's own
/// control file (a package claiming them would mislead apt).
const REPOSITORY_FIELDS: [&str; 6] = ["Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512"];

/// One package in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// The control stanza as it goes into `Packages`, `Package` first, every line ending
    /// in `\n`, without the repository fields.
    pub control: String,
    /// Path of the file relative to the repository root (`pool/...`).
    pub filename: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

impl PackageEntry {
    /// The entry for a package file read by [`crate::deb::read_meta`].
    pub fn from_meta(meta: &DebMeta) -> Result<PackageEntry, crate::deb::DebError> {
        let (package, version, architecture) = meta.control.identity()?;
        let mut control = format!("Package: {package}\n");
        for (name, value) in &meta.control.fields {
            if name.eq_ignore_ascii_case("Package")
                || REPOSITORY_FIELDS
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(name))
            {
                continue;
            }
            control.push_str(name);
            control.push_str(": ");
            control.push_str(value);
            control.push('\n');
        }
        Ok(PackageEntry {
            filename: pool_filename(&meta.sha256, package, version, architecture),
            package: package.to_owned(),
            version: version.to_owned(),
            architecture: architecture.to_owned(),
            control,
            size: meta.size,
            md5: meta.md5.clone(),
            sha256: meta.sha256.clone(),
        })
    }

    /// Parses one stanza of an existing `Packages` file (benchmarks and tests use
    /// Debian's own index as a large, realistic input).
    pub fn from_stanza(stanza: &str) -> Option<PackageEntry> {
        let mut control = String::with_capacity(stanza.len());
        let (mut package, mut version, mut arch) = (None, None, None);
        let (mut filename, mut size, mut md5, mut sha256) = (None, None, None, None);
        let mut keep = true;
        for line in stanza.lines().filter(|l| !l.is_empty()) {
            if line.starts_with([' ', '\t']) {
                if keep {
                    control.push_str(line);
                    control.push('\n');
                }
                continue;
            }
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            keep = !REPOSITORY_FIELDS.contains(&name);
            match name {
                "Package" => package = Some(value.to_owned()),
                "Version" => version = Some(value.to_owned()),
                "Architecture" => arch = Some(value.to_owned()),
                "Filename" => filename = Some(value.to_owned()),
                "Size" => size = value.parse().ok(),
                "MD5sum" => md5 = Some(value.to_owned()),
                "SHA256" => sha256 = Some(value.to_owned()),
                _ => {}
            }
            if keep {
                control.push_str(line);
                control.push('\n');
            }
        }
        Some(PackageEntry {
            package: package?,
            version: version?,
            architecture: arch?,
            control,
            filename: filename?,
            size: size?,
            md5: md5?,
            sha256: sha256?,
        })
    }
}

/// Where a package lives in a ring repository: `pool/main/<aa>/<sha256>/<name>`, with
/// `<name>` = [`crate::deb::pool_file_name`] (epoch dropped, as in Debian's pools). The
/// web handler serves the blob by the hash alone; the name is for people reading apt's
/// output.
pub fn pool_filename(sha256: &str, package: &str, version: &str, arch: &str) -> String {
    let name = crate::deb::pool_file_name(package, version, arch);
    format!(
        "pool/{COMPONENT}/{}/{sha256}/{name}",
        &sha256[..2.min(sha256.len())]
    )
}

/// The `Packages` text for `entries`, in the order given.
pub fn render_packages<'a>(entries: impl IntoIterator<Item = &'a PackageEntry>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.reserve(e.control.len() + 200);
        out.extend_from_slice(e.control.as_bytes());
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "Filename: {}\nSize: {}\nMD5sum: {}\nSHA256: {}\n\n",
            e.filename, e.size, e.md5, e.sha256
        );
    }
    out
}

/// One file under `dists/<suite>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Relative to `dists/<suite>/`, e.g. `main/binary-amd64/Packages.gz`.
    pub path: String,
    pub bytes: Vec<u8>,
    /// Lowercase hex.
    pub sha256: String,
}

impl IndexFile {
    fn new(path: String, bytes: Vec<u8>) -> IndexFile {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        IndexFile {
            path,
            bytes,
            sha256,
        }
    }

    /// The directory apt fetches it from by hash (`main/binary-amd64/by-hash/SHA256/`).
    pub fn by_hash_path(&self) -> String {
        let dir = self.path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/by-hash/SHA256/{}", self.sha256)
    }
}

/// gzip level for `Packages.gz`: zlib's default; level 9 costs ~2x for ~3 % smaller.
const GZIP_LEVEL: u32 = 6;
/// xz preset for `Packages.xz` (only on small indexes, see the module doc).
const XZ_PRESET: u32 = 6;

/// Builds every index of one suite: per architecture `Packages`, `Packages.gz` and (when
/// small) `Packages.xz`. `Architecture: all` packages appear in every architecture's
/// index (the Release says `No-Support-for-Architecture-all: Packages`); packages of an
/// architecture the suite does not list are left out. Entries are sorted by package,
/// version and hash so the output depends only on the set. The architectures are built
/// on parallel threads (compression dominates).
pub fn build_indexes(
    entries: &[PackageEntry],
    architectures: &[String],
    xz_max_bytes: u64,
) -> Vec<IndexFile> {
    let mut sorted: Vec<&PackageEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.package, &a.version, &a.architecture, &a.sha256).cmp(&(
            &b.package,
            &b.version,
            &b.architecture,
            &b.sha256,
        ))
    });
    sorted.dedup_by(|a, b| a.sha256 == b.sha256);
    let per_arch = |arch: &String| -> Vec<IndexFile> {
        let plain = render_packages(
            sorted
                .iter()
                .copied()
                .filter(|e| e.architecture == *arch || e.architecture == "all"),
        );
        let dir = format!("{COMPONENT}/binary-{arch}");
        let (gz, xz) = std::thread::scope(|s| {
            let xz = (plain.len() as u64 <= xz_max_bytes).then(|| s.spawn(|| xz(&plain)));
            let gz = gzip(&plain);
            (gz, xz.map(|h| h.join().unwrap_or_default()))
        });
        let mut files = vec![IndexFile::new(format!("{dir}/Packages.gz"), gz)];
        if let Some(xz) = xz {
            files.push(IndexFile::new(format!("{dir}/Packages.xz"), xz));
        }
        files.insert(0, IndexFile::new(format!("{dir}/Packages"), plain));
        files
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = architectures
            .iter()
            .map(|a| s.spawn(move || per_arch(a)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::new(GZIP_LEVEL),
    );
    // Writing into a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::with_capacity(data.len() / 5), XZ_PRESET);
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// The fixed facts of a `Release` file.
#[derive(Debug, Clone)]
pub struct ReleaseMeta {
    pub origin: String,
    pub label: String,
    pub suite: String,
    pub codename: String,
    pub date: Timestamp,
    pub valid_until: Timestamp,
    pub architectures: Vec<String>,
    pub description: String,
}

/// The date format apt expects (RFC 1123, always UTC).
pub fn apt_date(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string()
}

/// Renders the `Release` text naming `files` by size and SHA256 (apt ≥ 1.2 needs only
/// SHA256; MD5/SHA1 would add weak hashes apt ignores). No line has trailing whitespace,
/// which clearsigning requires.
pub fn render_release(meta: &ReleaseMeta, files: &[IndexFile]) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ").trim().to_owned();
    let mut out = format!(
        "Origin: {}\nLabel: {}\nSuite: {}\nCodename: {}\nDate: {}\nValid-Until: {}\n\
         Architectures: {}\nComponents: {COMPONENT}\nDescription: {}\n\
         Acquire-By-Hash: yes\nNo-Support-for-Architecture-all: Packages\nSHA256:\n",
        one_line(&meta.origin),
        one_line(&meta.label),
        meta.suite,
        meta.codename,
        apt_date(meta.date),
        apt_date(meta.valid_until),
        meta.architectures.join(" "),
        one_line(&meta.description),
    );
    let width = files
        .iter()
        .map(|f| f.bytes.len().to_string().len())
        .max()
        .unwrap_or(1);
    for f in files {
        out.push_str(&format!(
            " {} {:>width$} {}\n",
            f.sha256,
            f.bytes.len(),
            f.path
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn entry(package: &str, version: &str, arch: &str, sha: char) -> PackageEntry {
        let sha256: String = std::iter::repeat_n(sha, 64).collect();
        PackageEntry {
            package: package.into(),
            version: version.into(),
            architecture: arch.into(),
            control: format!(
                "Package: {package}\nVersion: {version}\nArchitecture: {arch}\n\
                 Depends: libc6 (>= 2.36)\nDescription: test package\n more text\n .\n end\n"
            ),
            filename: pool_filename(&sha256, package, version, arch),
            size: 1234,
            md5: std::iter::repeat_n('5', 32).collect(),
            sha256,
        }
    }

    fn meta() -> ReleaseMeta {
        ReleaseMeta {
            origin: "Patchward".into(),
            label: "Patchward pilot".into(),
            suite: "pilot".into(),
            codename: "pilot".into(),
            date: "2026-11-02T10:00:00Z".parse().unwrap(),
            valid_until: "2026-11-09T10:00:00Z".parse().unwrap(),
            architectures: vec!["amd64".into(), "arm64".into()],
            description: "Patchward ring pilot".into(),
        }
    }

    #[test]
    fn packages_snapshot() {
        let entries = [
            entry("zlib1g", "1:1.2.13.dfsg-1", "amd64", 'b'),
            entry("base-files", "12.4+deb12u8", "all", 'a'),
            entry("armonly", "1.0", "arm64", 'c'),
        ];
        let files = build_indexes(&entries, &["amd64".into()], 1 << 20);
        let names: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "main/binary-amd64/Packages",
                "main/binary-amd64/Packages.gz",
                "main/binary-amd64/Packages.xz"
            ]
        );
        expect![[r#"
            Package: base-files
            Version: 12.4+deb12u8
            Architecture: all
            Depends: libc6 (>= 2.36)
            Description: test package
             more text
             .
             end
            Filename: pool/main/aa/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/base-files_12.4+deb12u8_all.deb
            Size: 1234
            MD5sum: 55555555555555555555555555555555
            SHA256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa

            Package: zlib1g
            Version: 1:1.2.13.dfsg-1
            Architecture: amd64
            Depends: libc6 (>= 2.36)
            Description: test package
             more text
             .
             end
            Filename: pool/main/bb/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/zlib1g_1.2.13.dfsg-1_amd64.deb
            Size: 1234
            MD5sum: 55555555555555555555555555555555
            SHA256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb

        "#]]
        .assert_eq(std::str::from_utf8(&files[0].bytes).unwrap());
        // The compressed forms hold the same bytes.
        let mut gz = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&files[1].bytes[..]),
            &mut gz,
        )
        .unwrap();
        assert_eq!(gz, files[0].bytes);
        let mut xz = Vec::new();
        std::io::Read::read_to_end(
            &mut liblzma::read::XzDecoder::new(&files[2].bytes[..]),
            &mut xz,
        )
        .unwrap();
        assert_eq!(xz, files[0].bytes);
    }

    #[test]
    fn xz_only_for_small_indexes() {
        let entries = [entry("a", "1", "amd64", 'a')];
        let files = build_indexes(&entries, &["amd64".into()], 10);
        assert!(files.iter().all(|f| !f.path.ends_with(".xz")));
    }

    #[test]
    fn release_snapshot() {
        let files = build_indexes(&[], &["amd64".into(), "arm64".into()], 1 << 20);
        expect![[r#"
            Origin: Patchward
            Label: Patchward pilot
            Suite: pilot
            Codename: pilot
            Date: Mon, 02 Nov 2026 10:00:00 UTC
            Valid-Until: Mon, 09 Nov 2026 10:00:00 UTC
            Architectures: amd64 arm64
            Components: main
            Description: Patchward ring pilot
            Acquire-By-Hash: yes
            No-Support-for-Architecture-all: Packages
            SHA256:
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  0 main/binary-amd64/Packages
             ac73670af3abed54ac6fb4695131f4099be9fbe39d6076c5d0264a6bbdae9d83 20 main/binary-amd64/Packages.gz
             0040f94d11d0039505328a90b2ff48968db873e9e7967307631bf40ef5679275 32 main/binary-amd64/Packages.xz
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  0 main/binary-arm64/Packages
             ac73670af3abed54ac6fb4695131f4099be9fbe39d6076c5d0264a6bbdae9d83 20 main/binary-arm64/Packages.gz
             0040f94d11d0039505328a90b2ff48968db873e9e7967307631bf40ef5679275 32 main/binary-arm64/Packages.xz
        "#]]
        .assert_eq(&render_release(&meta(), &files));
    }

    #[test]
    fn control_fields_of_the_repository_are_never_taken_from_the_package() {
        let control = crate::deb::Control::parse(
            "Version: 2\nPackage: p\nArchitecture: amd64\nFilename: ../../etc/passwd\n\
             SHA256: 00\nDepends: q\n",
        )
        .unwrap();
        let meta = DebMeta {
            control,
            size: 9,
            md5: "m".repeat(32),
            sha256: "ab".repeat(32),
        };
        let e = PackageEntry::from_meta(&meta).unwrap();
        assert_eq!(
            e.control,
            "Package: p\nVersion: 2\nArchitecture: amd64\nDepends: q\n"
        );
        assert_eq!(
            e.filename,
            format!("pool/main/ab/{}/p_2_amd64.deb", "ab".repeat(32))
        );
        let parsed =
            PackageEntry::from_stanza(std::str::from_utf8(&render_packages([&e])).unwrap())
                .unwrap();
        assert_eq!(parsed, e);
    }
}
