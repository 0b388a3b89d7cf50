//! The rules for a `script` patch's archive (a zstd-compressed tar), in one place: the
//! agent unpacks with [`extract`] and `feed add` checks with [`inspect`], and both walk
//! the archive with the same function, so an archive the MSP could add is one every
//! host can unpack, and a broken one is refused on the MSP's machine, not after it was
//! shipped.
//!
//! The archive was hash-checked against a signed ticket, but a feed's content is still
//! not trusted to touch anything outside its own directory. Accepted, as tar itself
//! extracts them: regular files, directories (also repeated, as `a/` and `./a/`), the
//! archive's own root (`./`, which `tar -C dir -cf - .` writes first), a `./` prefix or
//! doubled slashes in names, pax global headers (metadata only), and hard links to a
//! regular file stored earlier in the same archive (what tar writes for files that
//! share an inode). Refused: absolute paths, `..`, symbolic links, hard links to
//! anything else, devices and fifos, a second file at the same path, a file where a
//! directory is (or under a file), and archives over the entry or byte caps.
//!
//! The steps (`install`, `verify`, optional `backup`, `rollback`, `health`) are
//! executables at the archive's top level; [`Contents::require_steps`] checks them.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// Caps on an archive's extracted content.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_bytes: 2 << 30,
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("archive entry {name:?}: {reason}")]
    Entry { name: String, reason: String },
    #[error("the archive holds more than {0} entries")]
    TooManyEntries(usize),
    #[error("the archive unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error(
        "the archive has no `{0}` executable at its top level (make it with \
         `tar -C DIR -cf - . | zstd`, DIR holding `install`, `verify` and the other steps)"
    )]
    MissingStep(String),
    #[error("the archive's `{0}` is not an executable file (chmod +x it before packing)")]
    NotExecutable(String),
    #[error("cannot read the archive: {0}")]
    Io(io::Error),
}

// The cause is part of the message, so it is not also exposed as `source()` (a chain
// printer would name it twice); hence by hand instead of `#[from]`.
impl From<io::Error> for ExtractError {
    fn from(e: io::Error) -> Self {
        ExtractError::Io(e)
    }
}

fn refuse(name: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Entry {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// What kind of thing a path in the archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { size: u64, executable: bool },
}

/// What an archive holds once unpacked: every path (relative to the root) and its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub nodes: BTreeMap<PathBuf, Node>,
}

impl Contents {
    /// Whether the top-level `step` exists (as anything).
    pub fn has(&self, step: &str) -> bool {
        self.nodes.contains_key(Path::new(step))
    }

    /// Each of `steps` must be an executable regular file at the top level.
    pub fn require_steps(&self, steps: &[&str]) -> Result<(), ExtractError> {
        for step in steps {
            match self.nodes.get(Path::new(step)) {
                None => return Err(ExtractError::MissingStep(step.to_string())),
                Some(Node::File {
                    executable: true, ..
                }) => {}
                Some(_) => return Err(ExtractError::NotExecutable(step.to_string())),
            }
        }
        Ok(())
    }

    /// Every step that is present must be executable (a `rollback` that cannot run is
    /// found when it is needed most).
    pub fn check_present_steps(&self) -> Result<(), ExtractError> {
        let present: Vec<&str> = STEPS.iter().copied().filter(|s| self.has(s)).collect();
        self.require_steps(&present)
    }
}

/// The step executables the agent knows, in the order a job may run them.
pub const STEPS: [&str; 5] = ["backup", "install", "verify", "health", "rollback"];

/// A safe relative path for `raw` (empty for the archive's root `./`), or why not.
fn safe_path(raw: &[u8]) -> Result<PathBuf, ExtractError> {
    let name = String::from_utf8_lossy(raw).into_owned();
    let s = std::str::from_utf8(raw).map_err(|_| refuse(&name, "name is not UTF-8"))?;
    if s.is_empty() || s.contains('\0') {
        return Err(refuse(&name, "empty name"));
    }
    if s.starts_with('/') {
        return Err(refuse(&name, "absolute path"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse(&name, "path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(&name, "absolute path"));
            }
        }
    }
    Ok(out)
}

/// One entry as [`walk`] hands it to its caller, after every check passed.
enum Item<'a> {
    Dir,
    File {
        reader: &'a mut dyn Read,
        size: u64,
        executable: bool,
    },
    /// A hard link to the earlier regular file `target`.
    Link {
        target: &'a Path,
    },
}

/// Walks the archive at `archive`, checking every entry against the rules in the
/// module comment, and hands each accepted entry to `on` (path relative to the root).
fn walk(
    archive: &Path,
    limits: Limits,
    mut on: impl FnMut(&Path, &str, Item<'_>) -> Result<(), ExtractError>,
) -> Result<Contents, ExtractError> {
    let file = std::fs::File::open(archive)?;
    let decoder = zstd::Decoder::new(file)?;
    // Headers add at most 1.5 KiB per entry on top of the content.
    let raw_cap = limits.max_bytes + (limits.max_entries as u64 + 2) * 1536;
    let mut ar = tar::Archive::new(decoder.take(raw_cap));
    let mut contents = Contents::default();
    let mut total = 0u64;
    for (n, entry) in ar.entries()?.enumerate() {
        if n >= limits.max_entries {
            return Err(ExtractError::TooManyEntries(limits.max_entries));
        }
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            // Archive-wide pax metadata (times, charset, `git archive`'s commit id).
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = safe_path(&raw)?;
        let what = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => None,
            EntryType::Link => None,
            EntryType::Symlink => Some(
                "symbolic links are not allowed (pack the file itself, e.g. with \
                 `tar --dereference`)",
            ),
            EntryType::Char => Some("character devices are not allowed"),
            EntryType::Block => Some("block devices are not allowed"),
            EntryType::Fifo => Some("fifos are not allowed"),
            EntryType::GNUSparse => Some("sparse files are not allowed (pack without --sparse)"),
            _ => Some("unsupported entry types are not allowed"),
        };
        if let Some(w) = what {
            return Err(refuse(&name, w));
        }
        if rel.as_os_str().is_empty() {
            // `./`: the directory being unpacked into.
            if kind != EntryType::Directory {
                return Err(refuse(&name, "empty name"));
            }
            continue;
        }
        // Every ancestor is (or becomes) a directory: none may be a file.
        for anc in rel.ancestors().skip(1) {
            if anc.as_os_str().is_empty() {
                break;
            }
            match contents.nodes.get(anc) {
                Some(Node::File { .. }) => {
                    return Err(refuse(
                        &name,
                        format!("its parent {} is a file", anc.display()),
                    ));
                }
                Some(Node::Dir) => break,
                None => {}
            }
        }
        if kind == EntryType::Directory {
            match contents.nodes.get(&rel) {
                Some(Node::File { .. }) => {
                    return Err(refuse(&name, "a directory where a file already is"));
                }
                // A directory listed again changes nothing, as with tar.
                Some(Node::Dir) => continue,
                None => {}
            }
            on(&rel, &name, Item::Dir)?;
            add_dir(&mut contents, &rel);
            continue;
        }
        if let Some(prev) = contents.nodes.get(&rel) {
            let reason = match prev {
                Node::Dir => "a file where a directory already is",
                Node::File { .. } => "duplicate entry",
            };
            return Err(refuse(&name, reason));
        }
        let node = if kind == EntryType::Link {
            let raw_target = entry
                .link_name_bytes()
                .map(|b| b.into_owned())
                .unwrap_or_default();
            let target = safe_path(&raw_target)
                .map_err(|_| refuse(&name, "a hard link pointing outside the archive"))?;
            let Some(node @ Node::File { .. }) = contents.nodes.get(&target).copied() else {
                return Err(refuse(
                    &name,
                    format!(
                        "a hard link to {:?}, which is not a file stored earlier in the \
                         archive",
                        String::from_utf8_lossy(&raw_target)
                    ),
                ));
            };
            on(&rel, &name, Item::Link { target: &target })?;
            node
        } else {
            let size = entry.size();
            total = total.saturating_add(size);
            if total > limits.max_bytes {
                return Err(ExtractError::TooLarge(limits.max_bytes));
            }
            let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
            on(
                &rel,
                &name,
                Item::File {
                    reader: &mut entry,
                    size,
                    executable,
                },
            )?;
            Node::File { size, executable }
        };
        if let Some(parent) = rel.parent() {
            add_dir(&mut contents, parent);
        }
        contents.nodes.insert(rel, node);
    }
    Ok(contents)
}

/// Records `dir` and its ancestors as directories.
fn add_dir(contents: &mut Contents, dir: &Path) {
    for anc in dir.ancestors() {
        if anc.as_os_str().is_empty() {
            break;
        }
        contents.nodes.entry(anc.to_path_buf()).or_insert(Node::Dir);
    }
}

/// Copies exactly `size` bytes of `reader` to `out`; fewer is a truncated archive.
fn copy_exact(
    reader: &mut dyn Read,
    size: u64,
    out: &mut dyn io::Write,
    name: &str,
) -> Result<(), ExtractError> {
    let copied = io::copy(&mut reader.take(size), out)?;
    if copied != size {
        return Err(refuse(name, "truncated"));
    }
    Ok(())
}

/// Checks the archive at `archive` by reading it through (every rule [`extract`]
/// applies, nothing written) and returns what it holds.
pub fn inspect(archive: &Path, limits: Limits) -> Result<Contents, ExtractError> {
    walk(archive, limits, |_, name, item| match item {
        Item::File { reader, size, .. } => copy_exact(reader, size, &mut io::sink(), name),
        Item::Dir | Item::Link { .. } => Ok(()),
    })
}

/// Extracts the archive at `archive` into `dest`, which must not exist yet, and
/// returns what it holds. Files are written with mode 0755 when any execute bit was
/// set, 0644 otherwise, and fsynced.
pub fn extract(archive: &Path, dest: &Path, limits: Limits) -> Result<Contents, ExtractError> {
    std::fs::create_dir(dest)?;
    walk(archive, limits, |rel, name, item| {
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match item {
            Item::Dir => std::fs::create_dir_all(&target)?,
            Item::Link { target: to } => {
                // Both paths were checked and only regular files and directories exist
                // under `dest`, so the link cannot point anywhere else.
                std::fs::hard_link(dest.join(to), &target)
                    .map_err(|e| refuse(name, e.to_string()))?;
            }
            Item::File {
                reader,
                size,
                executable,
            } => {
                use std::os::unix::fs::OpenOptionsExt;
                let mode = if executable { 0o755 } else { 0o644 };
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&target)
                    .map_err(|e| refuse(name, e.to_string()))?;
                copy_exact(reader, size, &mut out, name)?;
                out.sync_all()?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
#[path = "archive_tests.rs"]
pub(crate) mod tests;
