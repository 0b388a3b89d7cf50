//! Reading Debian packages: the `control` file inside a `.deb`.
//!
//! A `.deb` is an `ar` archive whose members are `debian-binary` ("2.0\n"),
//! `control.tar[.gz|.xz|.zst]` and `data.tar[...]`. The control member is a tar stream
//! holding `./control`, a deb822 stanza. Package files come from feeds the appliance
//! does not control, so everything is bounded: the control tar may unpack to at most
//! [`MAX_CONTROL_TAR`] bytes and the control file to [`MAX_CONTROL`], and a malformed
//! stanza is refused with the line it failed on.

use std::io::{self, Read};
use std::path::Path;

/// The control tar may unpack to at most this many bytes.
pub const MAX_CONTROL_TAR: u64 = 16 << 20;
/// The `control` file may be at most this many bytes.
pub const MAX_CONTROL: u64 = 1 << 20;

/// Why a package could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("not a Debian package: {0}")]
    Format(String),
    #[error("the package's control file is malformed: {0}")]
    Control(String),
    #[error("cannot read the package: {0}")]
    Io(io::Error),
}

// The cause is part of the message above, so it is not also exposed as `source()`
// (a chain printer would name it twice); hence these by hand instead of `#[from]`.
impl From<io::Error> for DebError {
    fn from(e: io::Error) -> Self {
        DebError::Io(e)
    }
}

fn format(why: impl Into<String>) -> DebError {
    DebError::Format(why.into())
}

/// A deb822 stanza: fields in file order. Continuation lines are kept as they are
/// (joined with `\n`), so the stanza can be written out again unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Control {
    pub fields: Vec<(String, String)>,
}

impl Control {
    /// A field's value by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Package`, `Version` and `Architecture`, which every binary package has.
    pub fn identity(&self) -> Result<(&str, &str, &str), DebError> {
        let need = |f: &str| {
            self.get(f)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| DebError::Control(format!("no {f} field")))
        };
        Ok((need("Package")?, need("Version")?, need("Architecture")?))
    }

    /// Parses one stanza. Field names are 1-64 printable ASCII characters other than
    /// `:`; a continuation line starts with a space or tab; blank lines are allowed
    /// only at the end.
    pub fn parse(text: &str) -> Result<Control, DebError> {
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut ended = false;
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            if line.trim().is_empty() {
                ended = !fields.is_empty();
                continue;
            }
            if ended {
                return Err(DebError::Control(format!("line {n}: more than one stanza")));
            }
            if line.starts_with([' ', '\t']) {
                let Some((_, v)) = fields.last_mut() else {
                    return Err(DebError::Control(format!(
                        "line {n}: continuation line before any field"
                    )));
                };
                v.push('\n');
                v.push_str(line);
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(DebError::Control(format!("line {n}: no `:` in {line:?}")));
            };
            if name.is_empty()
                || name.len() > 64
                || !name.bytes().all(|b| b.is_ascii_graphic())
                || name.starts_with(['#', '-'])
            {
                return Err(DebError::Control(format!(
                    "line {n}: {name:?} is not a field name"
                )));
            }
            if fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                return Err(DebError::Control(format!(
                    "line {n}: field {name} appears twice"
                )));
            }
            fields.push((name.to_string(), value.trim().to_string()));
        }
        if fields.is_empty() {
            return Err(DebError::Control("empty".into()));
        }
        Ok(Control { fields })
    }
}

/// The file name Debian's pools give a package: `package_version_arch.deb` with the
/// epoch dropped (`1:2.38.1-5` is stored as `2.38.1-5`) and any character outside
/// `[A-Za-z0-9.+~_-]` as `_`. `apt-get download` writes the epoch as `%3a` instead, a
/// name that is not a safe file name; the pool name comes from the control data alone,
/// so a package has one name however its file was called.
pub fn pool_file_name(package: &str, version: &str, arch: &str) -> String {
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    format!("{package}_{version}_{arch}.deb")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".+~_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Control {
    /// [`pool_file_name`] from this stanza's `Package`, `Version` and `Architecture`.
    pub fn pool_file_name(&self) -> Result<String, DebError> {
        let (p, v, a) = self.identity()?;
        Ok(pool_file_name(p, v, a))
    }
}

/// Reads the control stanza of the `.deb` at `path`.
pub fn read_control(path: &Path) -> Result<Control, DebError> {
    read_control_from(std::fs::File::open(path)?)
}

/// Reads the control stanza of a `.deb` stream.
pub fn read_control_from(r: impl Read) -> Result<Control, DebError> {
    let mut archive = ar::Archive::new(r);
    let mut index = 0;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| format(format!("bad ar archive: {e}")))?;
        let name = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        index += 1;
        match (index, name.as_str()) {
            (1, "debian-binary") => {
                let mut v = String::new();
                (&mut entry).take(16).read_to_string(&mut v)?;
                if !v.starts_with("2.") {
                    return Err(format(format!("unsupported format version {:?}", v.trim())));
                }
            }
            (1, other) => {
                return Err(format(format!(
                    "the first member is {other:?}, not debian-binary"
                )));
            }
            (_, n) if n.starts_with("control.tar") => {
                let tar: Box<dyn Read> = match n {
                    "control.tar" => Box::new(entry),
                    "control.tar.gz" => Box::new(flate2::read::GzDecoder::new(entry)),
                    "control.tar.xz" => Box::new(liblzma::read::XzDecoder::new(entry)),
                    "control.tar.zst" => Box::new(zstd::Decoder::new(entry)?),
                    other => return Err(format(format!("unsupported member {other:?}"))),
                };
                return control_from_tar(tar.take(MAX_CONTROL_TAR));
            }
            // `_gpgorigin` and other optional members before control.tar.
            _ => {}
        }
    }
    Err(format("no control.tar member"))
}

/// What the apt indexes need to know about a package file: its control stanza and the
/// size and digests of the whole file (`Size`, `MD5sum`, `SHA256` in `Packages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebMeta {
    pub control: Control,
    pub size: u64,
    /// Lowercase hex.
    pub md5: String,
    /// Lowercase hex.
    pub sha256: String,
}

/// Reads the control stanza and hashes the whole file in one pass over `r`: the `ar`
/// reader stops after `control.tar`, and the rest of the stream (the data member) is
/// drained through the same hashers. `Package`, `Version` and `Architecture` must be
/// present.
pub fn read_meta_from(r: impl Read) -> Result<DebMeta, DebError> {
    use sha2::Digest;
    struct Hashing<R> {
        inner: R,
        md5: md5::Md5,
        sha: sha2::Sha256,
        size: u64,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.md5.update(&buf[..n]);
            self.sha.update(&buf[..n]);
            self.size += n as u64;
            Ok(n)
        }
    }
    let mut h = Hashing {
        inner: r,
        md5: md5::Md5::new(),
        sha: sha2::Sha256::new(),
        size: 0,
    };
    let control = read_control_from(&mut h)?;
    control.identity()?;
    io::copy(&mut h, &mut io::sink())?;
    Ok(DebMeta {
        control,
        size: h.size,
        md5: hex::encode(h.md5.finalize()),
        sha256: hex::encode(h.sha.finalize()),
    })
}

/// [`read_meta_from`] on the file at `path`.
pub fn read_meta(path: &Path) -> Result<DebMeta, DebError> {
    read_meta_from(io::BufReader::with_capacity(
        256 * 1024,
        std::fs::File::open(path)?,
    ))
}

fn control_from_tar(r: impl Read) -> Result<Control, DebError> {
    let mut tar = tar::Archive::new(r);
    for entry in tar
        .entries()
        .map_err(|e| format(format!("bad control tar: {e}")))?
    {
        let entry = entry.map_err(|e| format(format!("bad control tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| format(format!("bad control tar entry: {e}")))?
            .into_owned();
        let is_control = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .map(|c| c.as_os_str().to_owned())
            .eq([std::ffi::OsString::from("control")]);
        if !is_control || !entry.header().entry_type().is_file() {
            continue;
        }
        if entry.size() > MAX_CONTROL {
            return Err(DebError::Control(format!(
                "{} bytes (at most {MAX_CONTROL})",
                entry.size()
            )));
        }
        let mut bytes = Vec::new();
        entry.take(MAX_CONTROL).read_to_end(&mut bytes)?;
        let text = String::from_utf8(bytes).map_err(|_| DebError::Control("not UTF-8".into()))?;
        return Control::parse(&text);
    }
    Err(format("the control tar has no `control` file"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a `.deb` in memory: `debian-binary`, `control.tar.<comp>` with `control`,
    /// and an empty `data.tar`.
    pub(crate) fn build_deb(control: &str, comp: &str) -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(control.len() as u64);
        h.set_mode(0o644);
        t.append_data(&mut h, "./control", control.as_bytes())
            .unwrap();
        let tar = t.into_inner().unwrap();
        let packed = match comp {
            "gz" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                io::Write::write_all(&mut e, &tar).unwrap();
                e.finish().unwrap()
            }
            "xz" => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                io::Write::write_all(&mut e, &tar).unwrap();
                e.finish().unwrap()
            }
            "zst" => zstd::encode_all(&tar[..], 3).unwrap(),
            _ => tar,
        };
        let member = if comp.is_empty() {
            "control.tar".to_string()
        } else {
            format!("control.tar.{comp}")
        };
        let data = tar::Builder::new(Vec::new()).into_inner().unwrap();
        let mut out = ar::Builder::new(Vec::new());
        for (name, body) in [
            ("debian-binary", b"2.0\n".to_vec()),
            (member.as_str(), packed),
            ("data.tar", data),
        ] {
            let h = ar::Header::new(name.as_bytes().to_vec(), body.len() as u64);
            out.append(&h, &body[..]).unwrap();
        }
        out.into_inner().unwrap()
    }

    const CONTROL: &str = "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\n\
        Depends: libc6 (>= 2.34)\nDescription: greets\n a longer text\n .\n more\n";

    #[test]
    fn reads_control_in_every_compression() {
        for comp in ["", "gz", "xz", "zst"] {
            let c = read_control_from(&build_deb(CONTROL, comp)[..]).unwrap();
            assert_eq!(
                c.identity().unwrap(),
                ("hello", "2.10-3", "amd64"),
                "{comp}"
            );
            assert_eq!(c.get("depends"), Some("libc6 (>= 2.34)"));
            assert_eq!(
                c.get("Description"),
                Some("greets\n a longer text\n .\n more")
            );
        }
    }

    #[test]
    fn meta_hashes_the_whole_file() {
        use sha2::Digest;
        let deb = build_deb(CONTROL, "gz");
        let m = read_meta_from(&deb[..]).unwrap();
        assert_eq!(m.size, deb.len() as u64);
        assert_eq!(m.sha256, hex::encode(sha2::Sha256::digest(&deb)));
        assert_eq!(m.md5, hex::encode(md5::Md5::digest(&deb)));
        assert_eq!(m.control.identity().unwrap().0, "hello");
        // A package without an Architecture is refused here, not later in an index.
        let e = read_meta_from(&build_deb("Package: a\nVersion: 1\n", "gz")[..]).unwrap_err();
        assert!(e.to_string().contains("no Architecture"), "{e}");
    }

    #[test]
    fn refuses_what_is_not_a_sound_package() {
        let check = |bytes: &[u8], want: &str| {
            let e = read_control_from(bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        };
        check(b"not an ar archive at all", "not a Debian package");
        check(&build_deb("Package hello\n", "gz"), "no `:`");
        check(
            &build_deb("Package: a\nPackage: b\nVersion: 1\n", "gz"),
            "appears twice",
        );
        check(&build_deb(" lead\nPackage: a\n", "gz"), "continuation");
        check(
            &build_deb("Package: a\n\nPackage: b\n", "gz"),
            "more than one stanza",
        );
        let no_arch = read_control_from(&build_deb("Package: a\nVersion: 1\n", "xz")[..])
            .unwrap()
            .identity()
            .unwrap_err()
            .to_string();
        assert!(no_arch.contains("no Architecture"), "{no_arch}");
        // A truncated package.
        let deb = build_deb(CONTROL, "xz");
        assert!(read_control_from(&deb[..150]).is_err());
        // A control file over the cap.
        let huge = format!("Package: a\nDescription: x\n{}", " y\n".repeat(400_000));
        check(&build_deb(&huge, ""), "at most");
    }
}
