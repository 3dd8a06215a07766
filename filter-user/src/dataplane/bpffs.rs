//! The BPF filesystem: the only place pins can be made. The pin directory is checked
//! before anything is loaded, so that one elsewhere is named as the cause instead of
//! surfacing as a failed BPF_OBJ_PIN ("Operation not permitted") after the load; `doctor`
//! runs the same check.
//!
//! The daemon does not mount bpffs itself when nothing is mounted at /sys/fs/bpf, as
//! systemd would at boot: under the unit's sandbox (and under `ip netns exec`) it runs in
//! a mount namespace of its own, where a bpffs it mounted would vanish when it exits,
//! pins included, and the next daemon would find its program attached and no maps to
//! reuse. Mounting is the host's job (systemd, fstab, `cargo xtask setup` on build
//! machines); the error says how.

use std::path::{Path, PathBuf};

use crate::paths;

/// `statfs` types (`linux/magic.h`), the one checked and the ones worth naming.
const FILESYSTEMS: &[(libc::c_long, &str)] = &[
    (libc::BPF_FS_MAGIC, "bpffs"),
    (libc::SYSFS_MAGIC, "sysfs"),
    (libc::TMPFS_MAGIC, "tmpfs"),
    (libc::PROC_SUPER_MAGIC, "proc"),
    (libc::EXT4_SUPER_MAGIC, "ext2/3/4"),
    (0x5846_5342, "xfs"),
    (libc::BTRFS_SUPER_MAGIC, "btrfs"),
    (libc::OVERLAYFS_SUPER_MAGIC, "overlayfs"),
    (0x8584_58f6, "ramfs"),
    (libc::NFS_SUPER_MAGIC, "nfs"),
    (libc::CGROUP2_SUPER_MAGIC, "cgroup2"),
    (libc::FUSE_SUPER_MAGIC, "fuse"),
];

/// A pin directory that is not on a bpf filesystem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pin directory {} is not on a bpf filesystem (it is on {filesystem}); {}", .pin_dir.display(), self.fix())]
pub struct NotBpffs {
    pub pin_dir: PathBuf,
    /// The filesystem it is on instead (of its nearest existing ancestor when it does
    /// not exist yet): a name, or the statfs type in hex.
    pub filesystem: String,
}

impl NotBpffs {
    /// What to do about it.
    pub fn fix(&self) -> String {
        let bpffs = Path::new(paths::BPFFS);
        if self.pin_dir.starts_with(bpffs) {
            format!(
                "mount one: `mount -t bpf bpf {}` (systemd mounts it at boot), or choose a \
                 --pin-dir under a bpffs mount",
                bpffs.display()
            )
        } else {
            format!(
                "choose a --pin-dir under a bpffs mount (the default is {}), or mount one \
                 there: `mkdir -p {dir} && mount -t bpf bpf {dir}`",
                paths::PIN_DIR,
                dir = self.pin_dir.display()
            )
        }
    }
}

/// Checks that `pin_dir`, or its nearest existing ancestor when it does not exist yet,
/// is on a bpf filesystem. A path that cannot be examined passes: creating and pinning
/// there will say what is wrong.
pub fn check_pin_dir(pin_dir: &Path) -> Result<(), NotBpffs> {
    let absolute = std::path::absolute(pin_dir).unwrap_or_else(|_| pin_dir.to_path_buf());
    let Some(existing) = absolute.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    match statfs_type(existing) {
        None => Ok(()),
        Some(libc::BPF_FS_MAGIC) => Ok(()),
        Some(t) => Err(NotBpffs {
            pin_dir: pin_dir.to_path_buf(),
            filesystem: name(t),
        }),
    }
}

/// The name of a filesystem type, or its number.
fn name(fs_type: libc::c_long) -> String {
    FILESYSTEMS.iter().find(|(t, _)| *t == fs_type).map_or_else(
        || format!("a filesystem of type {fs_type:#x}"),
        |(_, n)| n.to_string(),
    )
}

/// The statfs type of the filesystem `path` is on.
fn statfs_type(path: &Path) -> Option<libc::c_long> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: all-zero is a valid statfs; statfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a writable struct.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type as libc::c_long)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_on_another_filesystem_is_named_with_its_filesystem() {
        // /proc is procfs wherever these tests run.
        let err = check_pin_dir(Path::new("/proc/self/borderfilter-pins")).unwrap_err();
        assert_eq!(err.filesystem, "proc");
        let message = err.to_string();
        assert!(
            message.starts_with(
                "pin directory /proc/self/borderfilter-pins is not on a bpf filesystem (it \
                 is on proc); "
            ) && message.contains("choose a --pin-dir under a bpffs mount"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_directory_is_judged_by_its_nearest_existing_ancestor() {
        let dir = std::env::temp_dir().join(format!("bf-bpffs-{}", std::process::id()));
        let missing = dir.join("x/pins");
        let expected = name(statfs_type(&std::env::temp_dir()).expect("statfs of the temp dir"));
        let err = check_pin_dir(&missing).expect_err("the temp dir is not bpffs");
        assert_eq!(err.filesystem, expected);
        assert!(!dir.exists(), "the check created {}", dir.display());
    }

    #[test]
    fn the_fix_depends_on_where_the_pin_directory_is() {
        let under_sys = NotBpffs {
            pin_dir: PathBuf::from(paths::PIN_DIR),
            filesystem: "sysfs".into(),
        };
        assert_eq!(
            under_sys.to_string(),
            "pin directory /sys/fs/bpf/borderfilter is not on a bpf filesystem (it is on \
             sysfs); mount one: `mount -t bpf bpf /sys/fs/bpf` (systemd mounts it at boot), \
             or choose a --pin-dir under a bpffs mount"
        );
        let elsewhere = NotBpffs {
            pin_dir: PathBuf::from("/tmp/x/pins"),
            filesystem: "tmpfs".into(),
        };
        assert!(
            elsewhere
                .fix()
                .contains("`mkdir -p /tmp/x/pins && mount -t bpf bpf /tmp/x/pins`"),
            "{}",
            elsewhere.fix()
        );
        assert_eq!(name(0x1234), "a filesystem of type 0x1234");
    }

    #[test]
    fn sys_fs_bpf_passes_when_bpffs_is_mounted_there() {
        if statfs_type(Path::new(paths::BPFFS)) != Some(libc::BPF_FS_MAGIC) {
            eprintln!(
                "skipped: nothing is mounted at {} (`cargo xtask setup` mounts it)",
                paths::BPFFS
            );
            return;
        }
        assert_eq!(check_pin_dir(Path::new(paths::PIN_DIR)), Ok(()));
    }
}
