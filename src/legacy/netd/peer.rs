//! Who is asking: the peer of a connection (SO_PEERCRED) and its groups.
//!
//! The socket file is already `root:patchward 0660` (systemd's `SocketGroup=`), so this
//! is the second fence: it still holds when the file's mode is wrong. The uid, gid and
//! pid come from the kernel as of `connect()`; the supplementary groups from
//! `/proc/PID/status` when the request is read (a peer that exits first is refused).
//! The group's gid is looked up in `/etc/group` once at start: the helper uses no NSS.

use std::io;
use std::os::unix::net::UnixStream;

/// The peer's credentials, as the kernel gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The group whose members may use the helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedGroup {
    pub name: String,
    pub gid: u32,
}

pub fn peer_cred(stream: &UnixStream) -> io::Result<PeerCred> {
    let c = rustix::net::sockopt::socket_peercred(stream)?;
    Ok(PeerCred {
        pid: c.pid.as_raw_nonzero().get(),
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
    })
}

/// The supplementary groups of a running process.
pub fn proc_groups(pid: i32) -> io::Result<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_groups(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/status has no Groups: line"),
        )
    })
}

/// The `Groups:` line of `/proc/PID/status`.
pub fn parse_status_groups(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_whitespace().map(|g| g.parse().ok()).collect()
}

/// The gid of `name` in the text of an `/etc/group` file.
pub fn group_gid(group_file: &str, name: &str) -> Option<u32> {
    group_file.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Looks `name` up in `/etc/group`.
pub fn lookup_group(name: &str) -> Result<AllowedGroup, String> {
    let text = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group: {e}"))?;
    match group_gid(&text, name) {
        Some(gid) => Ok(AllowedGroup {
            name: name.to_string(),
            gid,
        }),
        None => Err(format!(
            "group {name} does not exist: create it (systemd-sysusers installs it with the package) or pass --group"
        )),
    }
}

/// Root, or a member of the group (primary or supplementary), may ask.
pub fn authorize(peer: PeerCred, groups: &[u32], allowed: &AllowedGroup) -> Result<(), String> {
    if peer.uid == 0 || peer.gid == allowed.gid || groups.contains(&allowed.gid) {
        Ok(())
    } else {
        Err(format!(
            "refused: uid {} is neither root nor a member of group {} (add the account that runs patchward to group {})",
            peer.uid, allowed.name, allowed.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "patchward";

    fn allowed() -> AllowedGroup {
        AllowedGroup {
            name: GROUP.into(),
            gid: 990,
        }
    }

    #[test]
    fn root_and_members_may_ask_others_may_not() {
        let peer = |uid, gid| PeerCred { pid: 1, uid, gid };
        assert_eq!(authorize(peer(0, 0), &[], &allowed()), Ok(()));
        assert_eq!(authorize(peer(1000, 990), &[], &allowed()), Ok(()));
        assert_eq!(authorize(peer(1000, 1000), &[27, 990], &allowed()), Ok(()));
        assert_eq!(
            authorize(peer(65534, 65534), &[27], &allowed()).unwrap_err(),
            "refused: uid 65534 is neither root nor a member of group patchward (add the account that runs patchward to group patchward)"
        );
    }

    #[test]
    fn groups_and_gids_are_read_from_their_files() {
        let status = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 990 \nNSpid:\t9\n";
        assert_eq!(parse_status_groups(status), Some(vec![24, 27, 990]));
        assert_eq!(parse_status_groups("Groups:\t\n"), Some(vec![]));
        assert_eq!(parse_status_groups("Name:\tx\n"), None);
        let group = "root:x:0:\npatchwarden:x:5:\npatchward:x:990:alice,bob\n";
        assert_eq!(group_gid(group, "patchward"), Some(990));
        assert_eq!(group_gid(group, "root"), Some(0));
        assert_eq!(group_gid(group, "nope"), None);
    }

    #[test]
    fn the_own_process_has_credentials_and_groups() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_cred(&a).unwrap();
        assert_eq!(cred.pid as u32, std::process::id());
        assert!(proc_groups(cred.pid).is_ok());
    }
}
