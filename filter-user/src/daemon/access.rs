//! Who may do what on the control socket. The socket's mode keeps strangers out; the
//! daemon checks the peer's credentials (SO_PEERCRED) before any change: root, or a
//! member of the `borderfilter` group.

use std::{ffi::CString, fs, os::unix::fs::PermissionsExt, path::Path};

/// The peer of a connection, as the kernel reports it.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
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

/// The supplementary groups of process `pid`, from `/proc/PID/status`.
fn groups_of(pid: i32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Whether `peer` may change the order list or the filter.
pub fn may_change(peer: &Peer, admin_group: &str) -> bool {
    if peer.uid == 0 {
        return true;
    }
    let Some(gid) = group_id(admin_group) else {
        return false;
    };
    peer.gid == gid || peer.pid.is_some_and(|pid| groups_of(pid).contains(&gid))
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
