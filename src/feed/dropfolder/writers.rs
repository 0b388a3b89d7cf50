//! Best effort: does any process this one can inspect have a file open for writing?
//!
//! Walks `/proc/<pid>/fd` (Linux) and reads each matching descriptor's access mode from
//! `/proc/<pid>/fdinfo/<fd>`. Processes of other users are invisible to an unprivileged
//! appliance, and writers on another machine (a share) are invisible to everyone, so a
//! "no" here is only a hint; the stability period is what always applies.

use std::fs;
use std::path::Path;

/// True when some visible process holds `path` open with write access.
pub fn open_for_writing(path: &Path) -> bool {
    let Ok(target) = fs::canonicalize(path) else {
        return false;
    };
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l == target) {
                let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
                if fs::read_to_string(info).is_ok_and(|t| writable(&t)) {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether an fdinfo text's `flags:` (octal) carry O_WRONLY or O_RDWR.
fn writable(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o3 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_access_mode() {
        assert!(writable("pos:\t0\nflags:\t0100001\nmnt_id:\t1\n"));
        assert!(writable("pos:\t0\nflags:\t02100002\n"));
        assert!(!writable("pos:\t0\nflags:\t0100000\n"));
        assert!(!writable("garbage"));
    }

    #[test]
    fn sees_our_own_writer() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.pwb");
        let mut f = fs::File::create(&p).unwrap();
        f.write_all(b"half").unwrap();
        assert!(open_for_writing(&p));
        drop(f);
        assert!(!open_for_writing(&p));
        let _reader = fs::File::open(&p).unwrap();
        assert!(!open_for_writing(&p));
    }
}
