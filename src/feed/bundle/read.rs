//! Reading a bundle from hostile input, streaming, in two phases.
//!
//! The tar crate's `Archive::entries()` borrows the archive for the whole iteration,
//! which cannot span the two phases the importer needs (metadata, verify, then blobs).
//! So this reader walks the 512-byte tar blocks itself and uses `tar::Header` only to
//! decode fields. That also keeps the accepted subset small and explicit: ustar regular
//! files with short names, nothing else: no PAX or GNU long-name records, links,
//! devices or directories.
//!
//! Bounds: each metadata entry is capped by [`MAX_METADATA_ENTRY`] and all of them by
//! [`MAX_METADATA_TOTAL`]; every decompressed byte is counted, and once the catalog is
//! known the total may not exceed the catalog's blob sizes plus [`TAR_SLACK`], so a
//! decompression bomb stops early. Blob contents are never buffered: the callback gets
//! a reader limited to exactly the catalog's size and hashes as it streams.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read};

use tar::{EntryType, Header};

use super::{
    BLOB_PREFIX, BundleError, BundleHeader, BundleMetadata, CATALOG_NAME, FORMAT, HEADER_NAME,
    MAX_METADATA_ENTRY, MAX_METADATA_TOTAL, TAR_SLACK, TIMESTAMP_NAME,
};
use crate::feed::catalog::is_sha256_hex;

const BLOCK: u64 = 512;
/// Every bundle is one zstd stream, which starts with this frame magic.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// How much of the input [`sniff`] looks at: a tar header's `ustar` is at 257.
const SNIFF: usize = 512;

/// The input with its first bytes given back after [`sniff`] looked at them.
type Sniffed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads the first bytes of `r` and refuses, in plain words, input that is not a zstd
/// stream and so cannot be a bundle; gives back a reader of the whole input.
fn sniff<R: Read>(mut r: R) -> Result<Sniffed<R>, BundleError> {
    let mut head = vec![0u8; SNIFF];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BundleError::Io(e)),
        }
    }
    head.truncate(n);
    if !head.starts_with(&ZSTD_MAGIC) {
        return Err(BundleError::NotABundle(what_it_is(&head)));
    }
    Ok(io::Cursor::new(head).chain(r))
}

/// What a file that is not a zstd stream looks like, for the refusal.
fn what_it_is(head: &[u8]) -> String {
    let kind = if head.is_empty() {
        return "the file is empty".into();
    } else if head.starts_with(b"!<arch>\n") {
        "it is a Debian package or ar archive (add a .deb to a feed with `patchward feed \
         add`, then `patchward feed export` makes the bundle)"
    } else if head.starts_with(&[0x1f, 0x8b]) {
        "it is gzip-compressed"
    } else if head.starts_with(b"\xfd7zXZ\0") {
        "it is xz-compressed"
    } else if head.starts_with(b"BZh") {
        "it is bzip2-compressed"
    } else if head.starts_with(b"PK\x03\x04") {
        "it is a zip archive"
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        "it is an uncompressed tar archive"
    } else if head.starts_with(b"-----BEGIN PGP") {
        "it is an OpenPGP key or signature"
    } else if head
        .trim_ascii_start()
        .first()
        .is_some_and(|b| b"{[".contains(b))
    {
        "it looks like JSON (a root, catalog or timestamp file on its own?)"
    } else if std::str::from_utf8(head).is_ok_and(|s| {
        s.chars()
            .all(|c| !c.is_control() || c.is_ascii_whitespace())
    }) {
        "it looks like a text file"
    } else {
        "it does not start with the zstd signature every bundle starts with"
    };
    format!("{kind}; bundles are made with `patchward feed export`")
}

/// Counts decompressed bytes and refuses to go past a cap.
struct Capped<R> {
    inner: R,
    read: u64,
    cap: u64,
    exceeded: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for at most one byte past the cap: enough to know it was exceeded.
        let room = self.cap.saturating_sub(self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.cap {
            self.exceeded = true;
            return Err(io::Error::other("decompressed size cap exceeded"));
        }
        Ok(n)
    }
}

/// Where an entry belongs in the required order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Start,
    Header,
    Root(u64),
    Catalog,
    Timestamp,
    Blobs,
}

/// What an entry name means.
enum Kind {
    Header,
    Root(u64),
    Catalog,
    Timestamp,
    Blob(String),
}

struct Entry {
    name: String,
    kind: Kind,
    size: u64,
}

/// Streaming bundle reader: [`Self::metadata`] first, then [`Self::blobs`].
pub struct BundleReader<R: Read> {
    src: Capped<Source<R>>,
    stage: Stage,
    /// The first blob's header, read while looking for the end of the metadata.
    pending: Option<Entry>,
    seen: BTreeSet<String>,
    metadata_done: bool,
    finished: bool,
}

/// What [`BundleReader::blobs`] delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobsSummary {
    /// Each blob received (sha256 -> size). Blobs of `allowed` not in here were not in
    /// the bundle; whether that is fine (the base has them) is the importer's call.
    pub blobs: BTreeMap<String, u64>,
    /// Total decompressed bytes of the bundle.
    pub decompressed_bytes: u64,
}

/// Where decompressed bytes come from: inline, or from a read-ahead thread.
enum Source<R: Read> {
    Inline(zstd::stream::read::Decoder<'static, BufReader<Sniffed<R>>>),
    Ahead(super::ahead::ReadAhead),
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Inline(d) => d.read(buf),
            Source::Ahead(a) => a.read(buf),
        }
    }
}

impl<R: Read + Send + 'static> BundleReader<R> {
    /// Like [`Self::new`], but decompresses on a background thread (bounded read-ahead)
    /// so decompression overlaps with the importer's hashing and writing.
    pub fn new_read_ahead(r: R) -> Result<Self, BundleError> {
        let dec = zstd::stream::read::Decoder::new(sniff(r)?).map_err(BundleError::Io)?;
        Ok(Self::from_source(Source::Ahead(
            super::ahead::ReadAhead::spawn(dec),
        )))
    }
}

impl<R: Read> BundleReader<R> {
    /// Starts reading a `*.pwb` stream: only its first bytes are read, to refuse a file
    /// that is not a bundle at all; the rest waits for [`Self::metadata`].
    pub fn new(r: R) -> Result<Self, BundleError> {
        let dec = zstd::stream::read::Decoder::new(sniff(r)?).map_err(BundleError::Io)?;
        Ok(Self::from_source(Source::Inline(dec)))
    }

    fn from_source(src: Source<R>) -> Self {
        Self {
            src: Capped {
                inner: src,
                read: 0,
                // Before the catalog is known only metadata may be read.
                cap: MAX_METADATA_TOTAL + TAR_SLACK,
                exceeded: false,
            },
            stage: Stage::Start,
            pending: None,
            seen: BTreeSet::new(),
            metadata_done: false,
            finished: false,
        }
    }

    /// Reads the metadata entries, stopping before the first blob.
    pub fn metadata(&mut self) -> Result<BundleMetadata, BundleError> {
        if self.metadata_done {
            return Err(BundleError::Misuse("metadata() called twice"));
        }
        self.metadata_done = true;
        let mut header = None;
        let mut roots = Vec::new();
        let mut catalog = None;
        let mut timestamp = None;
        let mut total = 0u64;
        loop {
            let Some(entry) = self.next_entry()? else {
                self.finished = true;
                break;
            };
            if let Kind::Blob(_) = entry.kind {
                if catalog.is_none() {
                    return Err(out_of_order(&entry.name, "blobs must follow catalog.json"));
                }
                self.stage = Stage::Blobs;
                self.pending = Some(entry);
                break;
            }
            if entry.size > MAX_METADATA_ENTRY {
                return Err(BundleError::MetadataTooLarge {
                    name: entry.name,
                    size: entry.size,
                    max: MAX_METADATA_ENTRY,
                });
            }
            total += entry.size;
            if total > MAX_METADATA_TOTAL {
                return Err(BundleError::MetadataTooLarge {
                    name: entry.name,
                    size: total,
                    max: MAX_METADATA_TOTAL,
                });
            }
            let bytes = self.read_data(&entry)?;
            match entry.kind {
                Kind::Header => header = Some(parse_header(&bytes)?),
                Kind::Root(_) => roots.push(bytes),
                Kind::Catalog => catalog = Some(bytes),
                Kind::Timestamp => timestamp = Some(bytes),
                Kind::Blob(_) => unreachable!("handled above"),
            }
        }
        Ok(BundleMetadata {
            header: header.ok_or_else(|| BundleError::Truncated("bundle is empty".into()))?,
            roots,
            catalog: catalog.ok_or(BundleError::NoCatalog)?,
            timestamp,
        })
    }

    /// Streams the blobs to `on_blob` after the caller verified the catalog. `allowed`
    /// is the verified catalog's blob list (sha256 -> size); anything else is refused.
    /// `on_blob` gets the sha256, the size and a reader of exactly that many bytes, and
    /// must read it to the end (it hashes and stores; a hash mismatch is its error).
    /// If the stream itself fails (truncated, corrupt, over the size cap), that error is
    /// returned rather than the callback's report of it.
    pub fn blobs<E: From<BundleError>>(
        mut self,
        allowed: &BTreeMap<String, u64>,
        mut on_blob: impl FnMut(&str, u64, &mut dyn Read) -> Result<(), E>,
    ) -> Result<BlobsSummary, E> {
        if !self.metadata_done {
            return Err(BundleError::Misuse("blobs() called before metadata()").into());
        }
        let sum = allowed.values().fold(0u64, |a, &s| a.saturating_add(s));
        let overhead = (allowed.len() as u64).saturating_mul(2 * BLOCK);
        self.src.cap = self
            .src
            .read
            .saturating_add(sum)
            .saturating_add(overhead)
            .saturating_add(TAR_SLACK);
        let mut received = BTreeMap::new();
        loop {
            let entry = match self.pending.take() {
                Some(e) => e,
                None if self.finished => break,
                None => match self.next_entry()? {
                    Some(e) => e,
                    None => break,
                },
            };
            let Kind::Blob(sha256) = &entry.kind else {
                return Err(
                    out_of_order(&entry.name, "metadata must come before the blobs").into(),
                );
            };
            let Some(&expected) = allowed.get(sha256) else {
                return Err(BundleError::NotInCatalog {
                    sha256: sha256.clone(),
                }
                .into());
            };
            if entry.size != expected {
                return Err(BundleError::SizeMismatch {
                    sha256: sha256.clone(),
                    found: entry.size,
                    expected,
                }
                .into());
            }
            let mut limited = Limited {
                inner: &mut self.src,
                left: entry.size,
                failure: None,
            };
            let result = on_blob(sha256, entry.size, &mut limited);
            let (left, failure) = (limited.left, limited.failure.take());
            if let Some(io) = failure {
                return Err(self.stream_error(io, &entry.name).into());
            }
            result?;
            if left != 0 {
                return Err(BundleError::BlobNotConsumed {
                    sha256: sha256.clone(),
                    left,
                }
                .into());
            }
            self.skip_padding(&entry)?;
            received.insert(sha256.clone(), entry.size);
        }
        Ok(BlobsSummary {
            blobs: received,
            decompressed_bytes: self.src.read,
        })
    }

    /// The next entry's header, checked; `None` at a proper end of archive.
    fn next_entry(&mut self) -> Result<Option<Entry>, BundleError> {
        let mut block = [0u8; BLOCK as usize];
        let got = self.fill(&mut block, "the end-of-archive marker")?;
        if got == 0 {
            return Err(BundleError::Truncated(
                "the stream ended before the end-of-archive marker".into(),
            ));
        }
        if block.iter().all(|&b| b == 0) {
            self.read_trailer()?;
            return Ok(None);
        }
        let h = Header::from_byte_slice(&block);
        if self.stage == Stage::Start && check_cksum(h).is_err() {
            return Err(BundleError::NotABundle(
                "it is zstd-compressed, but holds no tar archive".into(),
            ));
        }
        check_cksum(h)?;
        let raw = h.path_bytes();
        let name = String::from_utf8(raw.to_vec()).map_err(|_| BundleError::NotUtf8 {
            name: String::from_utf8_lossy(&raw).into_owned(),
        })?;
        if name.starts_with('/') {
            return Err(BundleError::AbsolutePath { name });
        }
        if name.split('/').any(|c| c == "..") {
            return Err(BundleError::Traversal { name });
        }
        if let Some(kind) = not_regular(h.entry_type()) {
            return Err(BundleError::NotRegular {
                name,
                kind: kind.to_string(),
            });
        }
        let size = h
            .entry_size()
            .map_err(|e| BundleError::Corrupt(format!("entry {name:?} has a bad size: {e}")))?;
        let kind = match classify(&name) {
            Some(k) => k,
            None if self.stage == Stage::Start => {
                return Err(BundleError::NotABundle(format!(
                    "it is a zstd-compressed tar archive, but its first entry is {name:?}, \
                     not {HEADER_NAME}"
                )));
            }
            None => return Err(BundleError::Unknown { name }),
        };
        if !self.seen.insert(name.clone()) {
            return Err(BundleError::Duplicate { name });
        }
        let stage = match &kind {
            Kind::Header => Stage::Header,
            Kind::Root(n) => Stage::Root(*n),
            Kind::Catalog => Stage::Catalog,
            Kind::Timestamp => Stage::Timestamp,
            Kind::Blob(_) => Stage::Blobs,
        };
        if self.stage == Stage::Start && stage != Stage::Header {
            return Err(out_of_order(
                &name,
                "a bundle starts with patchward-bundle.json",
            ));
        }
        if stage < self.stage || (stage == self.stage && stage != Stage::Blobs) {
            let reason = if self.stage == Stage::Blobs {
                "metadata must come before the blobs"
            } else {
                "expected patchward-bundle.json, root/<N>.root.json ascending, catalog.json, timestamp.json, blobs"
            };
            return Err(out_of_order(&name, reason));
        }
        self.stage = stage;
        Ok(Some(Entry { name, kind, size }))
    }

    /// Reads a metadata entry's data (size already capped) and its padding.
    fn read_data(&mut self, entry: &Entry) -> Result<Vec<u8>, BundleError> {
        // Capped by MAX_METADATA_ENTRY before this is called; checked all the same.
        let len = usize::try_from(entry.size).map_err(|_| BundleError::MetadataTooLarge {
            name: entry.name.clone(),
            size: entry.size,
            max: MAX_METADATA_ENTRY,
        })?;
        let mut buf = vec![0u8; len];
        let got = self.fill(&mut buf, &entry.name)?;
        if got < buf.len() {
            return Err(BundleError::Truncated(format!(
                "{:?} ended after {got} of {} bytes",
                entry.name, entry.size
            )));
        }
        self.skip_padding(entry)?;
        Ok(buf)
    }

    fn skip_padding(&mut self, entry: &Entry) -> Result<(), BundleError> {
        let pad = (BLOCK - entry.size % BLOCK) % BLOCK;
        let mut buf = [0u8; BLOCK as usize];
        let got = self.fill(&mut buf[..pad as usize], &entry.name)?;
        if got < pad as usize {
            return Err(BundleError::Truncated(format!(
                "the stream ended in the padding after {:?}",
                entry.name
            )));
        }
        Ok(())
    }

    /// After the first zero block: only zero blocks may follow, up to the end.
    fn read_trailer(&mut self) -> Result<(), BundleError> {
        self.finished = true;
        let mut buf = [0u8; 8192];
        loop {
            let got = self.fill(&mut buf, "the end-of-archive marker")?;
            if got == 0 {
                return Ok(());
            }
            if buf[..got].iter().any(|&b| b != 0) {
                return Err(BundleError::Corrupt(
                    "data after the end-of-archive marker".into(),
                ));
            }
        }
    }

    /// Reads until `buf` is full or the stream ends; returns the count.
    fn fill(&mut self, buf: &mut [u8], context: &str) -> Result<usize, BundleError> {
        let mut got = 0;
        while got < buf.len() {
            match self.src.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.stream_error(e, context)),
            }
        }
        Ok(got)
    }

    /// Names a failure of the underlying stream.
    fn stream_error(&self, e: io::Error, context: &str) -> BundleError {
        if self.src.exceeded {
            BundleError::TooLarge { cap: self.src.cap }
        } else if e.kind() == io::ErrorKind::UnexpectedEof || is_zstd_truncation(&e) {
            BundleError::Truncated(format!("the stream ended inside {context:?}"))
        } else if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::InvalidData {
            BundleError::Corrupt(format!("inside {context:?}: {e}"))
        } else {
            BundleError::Io(e)
        }
    }
}

/// zstd reports a frame cut short as a plain error with this text.
fn is_zstd_truncation(e: &io::Error) -> bool {
    e.to_string().contains("incomplete frame")
}

/// A reader of exactly `left` more bytes; remembers a failure of the stream beneath
/// so the reader can report it precisely whatever the callback makes of it.
struct Limited<'a, R> {
    inner: &'a mut R,
    left: u64,
    failure: Option<io::Error>,
}

impl<R: Read> Read for Limited<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "bundle truncated in a blob");
                self.failure = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failure = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

fn out_of_order(name: &str, reason: &str) -> BundleError {
    BundleError::OutOfOrder {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

fn classify(name: &str) -> Option<Kind> {
    match name {
        HEADER_NAME => return Some(Kind::Header),
        CATALOG_NAME => return Some(Kind::Catalog),
        TIMESTAMP_NAME => return Some(Kind::Timestamp),
        _ => {}
    }
    if let Some(hex) = name.strip_prefix(BLOB_PREFIX) {
        return is_sha256_hex(hex).then(|| Kind::Blob(hex.to_string()));
    }
    let n = name.strip_prefix("root/")?.strip_suffix(".root.json")?;
    // Canonical decimal only, so `01` and `1` cannot both appear.
    if n.is_empty() || n.len() > 19 || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok().map(Kind::Root)
}

fn not_regular(t: EntryType) -> Option<&'static str> {
    Some(match t {
        EntryType::Regular => return None,
        EntryType::Link => "hard link",
        EntryType::Symlink => "symbolic link",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Directory => "directory",
        EntryType::Fifo => "fifo",
        EntryType::XHeader | EntryType::XGlobalHeader => "PAX extension header",
        EntryType::GNULongName | EntryType::GNULongLink => "GNU long-name record",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    })
}

fn check_cksum(h: &Header) -> Result<(), BundleError> {
    let stored = h
        .cksum()
        .map_err(|e| BundleError::Corrupt(format!("bad header checksum field: {e}")))?;
    let bytes = h.as_bytes();
    let sum: u32 = bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    if sum != stored {
        return Err(BundleError::Corrupt(
            "an entry header's checksum does not match".into(),
        ));
    }
    Ok(())
}

fn parse_header(bytes: &[u8]) -> Result<BundleHeader, BundleError> {
    let h: BundleHeader =
        serde_json::from_slice(bytes).map_err(|e| BundleError::Header(e.to_string()))?;
    if h.format != FORMAT {
        return Err(BundleError::Header(format!(
            "format {} is not supported (this binary reads format {FORMAT}); upgrade patchward",
            h.format
        )));
    }
    Ok(h)
}
