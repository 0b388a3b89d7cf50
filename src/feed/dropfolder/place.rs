//! Where a handled file goes, and the plain-words note beside it.
//!
//! Imported files move to `imported/`, refused ones to `rejected/` with
//! `<name>.reason.txt`. Names never overwrite: `a.pwb` becomes `a-1.pwb`, `a-2.pwb`, ...
//! when taken. Moves are renames inside the drop folder's filesystem, so a file is
//! always in exactly one place.

use std::io;
use std::path::{Path, PathBuf};

use crate::feed::import::{ImportError, ImportSummary};
use crate::mirror::MirrorError;

/// The first of `name`, `stem-1.ext`, `stem-2.ext`, ... for which `taken` is false
/// (also considering the `.reason.txt` beside it).
pub fn free_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let is_free = |n: &str| !taken(n) && !taken(&format!("{n}.reason.txt"));
    if is_free(name) {
        return name.to_string();
    }
    (1u64..)
        .map(|i| format!("{stem}-{i}{ext}"))
        .find(|n| is_free(n))
        .expect("some suffix is free")
}

/// Moves `file` into `dir` (created if missing) under a free name; returns the new path.
pub fn move_into(file: &Path, dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file name is not UTF-8"))?;
    let target = dir.join(free_name(name, |n| dir.join(n).exists()));
    std::fs::rename(file, &target)?;
    // Best effort: the rename is already visible; a flush failure must not undo it.
    let _ = crate::fsutil::sync_dir(dir);
    Ok(target)
}

/// Writes the note for `moved` (`<moved>.reason.txt`).
pub fn write_note(moved: &Path, text: &str) -> io::Result<()> {
    let mut p = moved.as_os_str().to_owned();
    p.push(".reason.txt");
    crate::fsutil::write_atomic(Path::new(&p), text.as_bytes(), 0o644)
}

/// What the operator should do about a refused bundle.
fn advice(e: &MirrorError) -> &'static str {
    use ImportError as I;
    match e {
        MirrorError::Import(I::UnknownFeed { .. } | I::WrongFeed { .. } | I::PinnedRoot { .. })
        | MirrorError::NoSuchSource(_) => {
            "The appliance is not set up to trust this feed. An administrator must add or \
             fix its [[mirror.sources]] entry; then copy the bundle into the drop folder again."
        }
        MirrorError::Import(I::MissingBase { .. }) => {
            "Ask your provider for a bundle that fits this appliance (a full bundle always \
             does); then copy it into the drop folder."
        }
        MirrorError::Import(I::Io { .. }) => {
            "The file could not be read to the end. If the media was removed or is damaged, \
             copy the bundle again; if that keeps failing, ask your provider for a new bundle."
        }
        MirrorError::Import(I::Store(_) | I::Db(_) | I::Audit(_))
        | MirrorError::Store(_)
        | MirrorError::Db(_)
        | MirrorError::Audit(_)
        | MirrorError::Appliance(_) => {
            "This is a problem on the appliance, not in the bundle. Fix the problem named \
             above (for example free disk space), then copy the bundle into the drop folder \
             again."
        }
        _ => {
            "The bundle is damaged, incomplete, not signed by keys this appliance trusts, \
             or older than what the appliance already has. Ask your provider for a new \
             bundle."
        }
    }
}

/// The text of `rejected/<name>.reason.txt`.
pub fn rejection_text(name: &str, error: &MirrorError, at: &str) -> String {
    format!(
        "Patchward did not import {name}.\n\n\
         This bundle was refused and nothing on the appliance changed.\n\n\
         Reason: {error}\n\n\
         What to do: {}\n\n\
         (Checked by the drop folder at {at}.)\n",
        advice(error)
    )
}

/// The text of `imported/<name>.reason.txt` for a bundle that changed nothing.
pub fn already_current_text(name: &str, s: &ImportSummary, at: &str) -> String {
    format!(
        "{name} is valid, but the appliance already had catalog version {} of feed {:?}, \
         so nothing changed. No action is needed.\n\n(Checked by the drop folder at {at}.)\n",
        s.catalog_version, s.feed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn check(name: &str, taken: &[&str], want: &str) {
        let set: BTreeSet<&str> = taken.iter().copied().collect();
        assert_eq!(
            free_name(name, |n| set.contains(n)),
            want,
            "{name} {taken:?}"
        );
    }

    #[test]
    fn collisions_get_a_numeric_suffix() {
        check("a.pwb", &[], "a.pwb");
        check("a.pwb", &["a.pwb"], "a-1.pwb");
        check("a.pwb", &["a.pwb", "a-1.pwb", "a-2.pwb"], "a-3.pwb");
        check("a.pwb", &["a-1.pwb"], "a.pwb");
        // A leftover note also blocks a name, so a note never describes another file.
        check("a.pwb", &["a.pwb.reason.txt"], "a-1.pwb");
        check("noext", &["noext"], "noext-1");
        check(".hidden", &[".hidden"], ".hidden-1");
        check("v1.2.pwb", &["v1.2.pwb"], "v1.2-1.pwb");
    }

    #[test]
    fn moves_never_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let into = d.path().join("imported");
        for body in ["one", "two"] {
            let f = d.path().join("b.pwb");
            std::fs::write(&f, body).unwrap();
            let to = move_into(&f, &into).unwrap();
            assert!(!f.exists());
            assert_eq!(std::fs::read_to_string(&to).unwrap(), body);
        }
        assert_eq!(std::fs::read_to_string(into.join("b.pwb")).unwrap(), "one");
        assert_eq!(
            std::fs::read_to_string(into.join("b-1.pwb")).unwrap(),
            "two"
        );
        write_note(&into.join("b-1.pwb"), "why").unwrap();
        assert_eq!(
            std::fs::read_to_string(into.join("b-1.pwb.reason.txt")).unwrap(),
            "why"
        );
    }

    #[test]
    fn rejection_says_what_happened_and_what_to_do() {
        let e = MirrorError::Import(ImportError::Bundle("the bundle is truncated".into()));
        let t = rejection_text("x.pwb", &e, "2026-11-20T10:00:00Z");
        assert!(t.contains("nothing on the appliance changed"), "{t}");
        assert!(t.contains("Reason: the bundle is truncated"), "{t}");
        assert!(t.contains("Ask your provider for a new bundle"), "{t}");
        let e = MirrorError::Import(ImportError::UnknownFeed { feed: "f".into() });
        assert!(rejection_text("x.pwb", &e, "now").contains("[[mirror.sources]]"));
    }
}
