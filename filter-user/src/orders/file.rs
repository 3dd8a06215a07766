//! Reading the order list defensively (a FIFO, a directory or a huge file in its place
//! is an error, never a hang) and writing it atomically (temporary file, fsync, rename,
//! fsync of the directory), keeping its owner and mode.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use sha2::{Digest, Sha256};

/// Largest order list read by default: a million IPv4 and a hundred thousand IPv6
/// prefixes, pretty-printed, take about 40 MB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than the limit of {limit} bytes (--max-list-bytes)")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("reading {path} failed")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op} {path} failed")]
    Write {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Reads the file at `path` (following symlinks), refusing anything but a regular file
/// of at most `max_bytes`.
pub fn read(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileError> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| FileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind(&meta),
        });
    }
    if meta.len() > max_bytes {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells a file that grew since the stat.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit: max_bytes,
        });
    }
    Ok(bytes)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces the file at `path` with `contents` so that a reader sees the old file or the
/// new one, never a mix, and a crash leaves one of the two. Owner, group and mode of the
/// existing file are kept (new files get 0644).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let staged = stage(path, contents)?;
    put_in_place(&staged, path).inspect_err(|_| {
        let _ = fs::remove_file(&staged);
    })
}

/// Turns an I/O error of `op` on `p` into a [`FileError::Write`].
pub fn write_error(op: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let p = p.to_path_buf();
    move |source| FileError::Write {
        op,
        path: p,
        source,
    }
}

/// The first half of [`write_atomic`]: writes `contents` to a new file beside `path`,
/// synced, with the owner, group and mode of the file at `path` (0644 when there is
/// none), and returns its name. The caller puts it in place ([`put_in_place`]) or
/// removes it.
pub fn stage(path: &Path, contents: &[u8]) -> Result<PathBuf, FileError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = directory_of(path).join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let existing = fs::metadata(path).ok();
    let mode = existing
        .as_ref()
        .map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(write_error("creating", &temp))?;
        if let Some(m) = &existing {
            std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))
                .map_err(write_error("setting the owner of", &temp))?;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(write_error("setting the mode of", &temp))?;
        }
        file.write_all(contents)
            .map_err(write_error("writing", &temp))?;
        file.sync_all().map_err(write_error("syncing", &temp))
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// The second half of [`write_atomic`]: renames the file [`stage`] wrote over `path` and
/// syncs the directory, so that the rename survives a crash.
pub fn put_in_place(staged: &Path, path: &Path) -> Result<(), FileError> {
    fs::rename(staged, path).map_err(write_error("renaming the new list to", path))?;
    sync_directory_of(path)
}

/// Syncs the directory of `path`, so that a rename or removal in it survives a crash.
pub fn sync_directory_of(path: &Path) -> Result<(), FileError> {
    File::open(directory_of(path))
        .and_then(|d| d.sync_all())
        .map_err(write_error("syncing the directory of", path))
}

fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// SHA-256 of a list's bytes, in hex: how logs, status and the audit trail name a
/// version of the list.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What identifies a version of a file without reading it: a rename over it, an
/// in-place write or a `touch` all change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The fingerprint of the file at `path` now (`None`: there is none).
pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    fs::metadata(path).ok().map(|m| fingerprint_of(&m))
}

/// The fingerprint of a file already open or stat'ed.
pub fn fingerprint_of(m: &fs::Metadata) -> Fingerprint {
    Fingerprint {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bf-file-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = temp_dir("kinds");
        let err = read(&dir, 1000).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is a directory, not a regular file"),
            "{err}"
        );
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read(&fifo, 1000).unwrap_err();
        assert!(
            err.to_string().ends_with("is a FIFO, not a regular file"),
            "{err}"
        );
        let err = read(&dir.join("missing"), 1000).unwrap_err();
        assert!(matches!(err, FileError::Open { .. }), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_files_over_the_limit() {
        let dir = temp_dir("size");
        let path = dir.join("big");
        fs::write(&path, vec![b' '; 1001]).unwrap();
        assert!(matches!(read(&path, 1000), Err(FileError::TooLarge { .. })));
        assert_eq!(read(&path, 1001).unwrap().len(), 1001);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_keeps_the_mode() {
        let dir = temp_dir("write");
        let path = dir.join("orders.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "temporary files left behind: {leftovers:?}"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
