//! Who may do what on the control socket. The socket's mode keeps strangers out; the
//! daemon checks the peer's credentials before any change: root, or a member of the
//! `borderfilter` group. The credentials are those the kernel recorded when the peer
//! connected (SO_PEERCRED, SO_PEERGROUPS), never looked up later by pid: a client that
//! hands its connection to another process and exits cannot borrow the groups of
//! whichever process gets its pid next.

use std::{ffi::CString, fs, os::fd::RawFd, os::unix::fs::PermissionsExt, path::Path};

/// The peer of a connection, as the kernel recorded it when the peer connected.
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// The peer's supplementary groups (SO_PEERGROUPS).
    pub groups: Vec<u32>,
}

/// The gid of `group`, if the group exists.
pub fn group_id(group: &str) -> Option<u32> {
    let name = CString::new(group).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: all-zero is a valid `group` (pointers null, integers zero).
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` is as long as we say.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(entry.gr_gid)
}

/// The supplementary groups the peer of the connected socket `fd` had when it connected
/// (SO_PEERGROUPS, Linux 4.13). Empty if the kernel cannot say: then only the peer's
/// primary group counts, which refuses rather than allows.
pub fn peer_groups(fd: RawFd) -> Vec<u32> {
    let size = size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * size) as libc::socklen_t;
        // SAFETY: `groups` is writable for `len` bytes; the kernel writes at most that.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / size);
            return groups;
        }
        let err = std::io::Error::last_os_error();
        // ERANGE: the kernel says how much room it needs.
        if err.raw_os_error() == Some(libc::ERANGE) && len as usize > groups.len() * size {
            groups.resize(len as usize / size, 0);
            continue;
        }
        log::warn!(
            "cannot read the supplementary groups of a control client (SO_PEERGROUPS): {err}"
        );
        return Vec::new();
    }
}

/// Whether `peer` may change the order list or the filter.
pub fn may_change(peer: &Peer, admin_group: &str) -> bool {
    if peer.uid == 0 {
        return true;
    }
    let Some(gid) = group_id(admin_group) else {
        return false;
    };
    peer.gid == gid || peer.groups.contains(&gid)
}

/// Gives the socket its owner and mode: root and the admin group, 0660, when the group
/// exists, else 0600; 0666 with `public_read` (changes still need root or the group).
pub fn secure_socket(path: &Path, admin_group: &str, public_read: bool) -> std::io::Result<()> {
    let gid = group_id(admin_group);
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, Some(0), Some(gid))?;
    }
    let mode = match (public_read, gid) {
        (true, _) => 0o666,
        (false, Some(_)) => 0o660,
        (false, None) => 0o600,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
