//! Who runs the CLI, as the audit log records it (`cli:NAME`), from the kernel's view
//! of the process, never from the environment: `USER`, `LOGNAME` and `SUDO_USER` are
//! whatever the caller set them to.
//!
//! - The account is the real uid's (its passwd name).
//! - When the process was started through `sudo`, `su`, `doas` or `pkexec`, the caller
//!   is recorded too, as `alice (as root)` or `alice (as patchward)` for
//!   `sudo -u patchward`. The kernel keeps the caller in the process tree: those tools
//!   are started by the caller's own shell, and only a root process can start one of
//!   another account. So the parents are walked up (`/proc/<pid>/status`: `PPid` and
//!   the real `Uid`) past root and this process's own account; the first other
//!   account is the caller. A root login, a systemd unit or a cron job has no such
//!   ancestor and is recorded as the account alone.
//!
//! `/proc/self/loginuid` was the other candidate and is not used: it names the account
//! that logged in, not the one that ran sudo after `su - bob`, and it is unset in
//! containers and on systems without pam_loginuid. An account that has no passwd
//! entry is recorded as `uid N`. A root caller can still hide behind a detached process
//! (then it is recorded as `root`), but no caller can name another account: no
//! environment variable is read, and a process cannot choose its parents' uids.

use std::ffi::CStr;

/// The audit actor of this CLI process: `cli:NAME`.
pub fn cli_actor() -> String {
    format!("cli:{}", invoking_account())
}

/// The account running this process, with the caller that started it through a
/// change of account (`alice (as root)`), see the module comment.
pub fn invoking_account() -> String {
    let uid = rustix::process::getuid().as_raw();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    match caller(uid, parent, proc_status) {
        Some(c) => format!("{} (as {})", account_name(c), account_name(uid)),
        None => account_name(uid),
    }
}

/// How far up the process tree the walk goes (a tree is never this deep in practice;
/// the bound only keeps a cycle in a fake or racing `/proc` from looping).
const MAX_DEPTH: usize = 64;

/// Starting at `pid` and walking up the parents, the real uid of the first process
/// that is neither root nor `uid`; `None` when the walk reaches the top (pid 1, or a
/// process whose parent is outside this pid namespace) without one. `status` gives a
/// process's (parent pid, real uid).
pub fn caller(uid: u32, mut pid: u32, status: impl Fn(u32) -> Option<(u32, u32)>) -> Option<u32> {
    for _ in 0..MAX_DEPTH {
        if pid == 0 {
            return None;
        }
        let (ppid, ruid) = status(pid)?;
        if ruid != 0 && ruid != uid {
            return Some(ruid);
        }
        if pid == 1 {
            return None;
        }
        pid = ppid;
    }
    None
}

/// (parent pid, real uid) of `pid` from `/proc/<pid>/status`.
fn proc_status(pid: u32) -> Option<(u32, u32)> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// (parent pid, real uid) from the text of a `/proc/<pid>/status` file.
pub fn parse_status(text: &str) -> Option<(u32, u32)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
    };
    // `Uid:` holds the real, effective, saved and file-system uids: the real one first.
    Some((field("PPid:")?, field("Uid:")?))
}

/// The passwd name of `uid`, or `uid N` when it has none.
pub fn account_name(uid: u32) -> String {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    loop {
        // SAFETY: every pointer is valid for the call and `buf` outlives `pwd`'s use.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        break;
    }
    if found.is_null() || pwd.pw_name.is_null() {
        return format!("uid {uid}");
    }
    // SAFETY: getpwuid_r succeeded, so `pw_name` points to a NUL-terminated string
    // inside `buf`, which is still alive.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    match name.to_str() {
        Ok(n) if !n.is_empty() => n.to_string(),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_caller_is_the_first_ancestor_of_another_account() {
        // 1 systemd (root) <- 500 sshd (root) <- 600 bash (alice, 1000) <- 700 sudo
        // (root) <- 800 patchward (root); 810 patchward (999) for `sudo -u patchward`;
        // 900 a shell of the service account 999 under 500, 910 its patchward.
        let tree: HashMap<u32, (u32, u32)> = [
            (1, (0, 0)),
            (500, (1, 0)),
            (600, (500, 1000)),
            (700, (600, 0)),
            (800, (700, 0)),
            (810, (700, 999)),
            (900, (500, 999)),
            (910, (900, 999)),
        ]
        .into();
        let status = |p: u32| tree.get(&p).copied();
        assert_eq!(caller(0, 700, status), Some(1000));
        assert_eq!(caller(999, 700, status), Some(1000));
        // The service account's own shell: no change of account.
        assert_eq!(caller(999, 900, status), None);
        // A root login: only root up to pid 1.
        assert_eq!(caller(0, 500, status), None);
        // A parent that vanished (or is outside the pid namespace).
        assert_eq!(caller(0, 4000, status), None);
        assert_eq!(caller(0, 0, status), None);
        // A cycle in a racing /proc ends.
        let cycle = |p: u32| Some((p + 1 - 2 * (p % 2), 0));
        assert_eq!(caller(0, 10, cycle), None);
    }

    #[test]
    fn status_files_are_read_by_their_real_uid() {
        let text = "Name:\tsudo\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nPid:\t7\n\
                    PPid:\t6\nTracerPid:\t0\nUid:\t1000\t0\t0\t0\nGid:\t1000\t0\t0\t0\n";
        assert_eq!(parse_status(text), Some((6, 1000)));
        assert_eq!(parse_status("Name:\tx\n"), None);
        let me = std::process::id();
        let (_, ruid) = proc_status(me).unwrap();
        assert_eq!(ruid, rustix::process::getuid().as_raw());
    }

    #[test]
    fn account_names_come_from_the_passwd_database() {
        assert_eq!(account_name(0), "root");
        // No passwd entry: the uid itself.
        assert_eq!(account_name(3_999_999_999), "uid 3999999999");
    }
}
