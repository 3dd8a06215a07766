//! Noticing that the order list changed. inotify on the file's directory catches editors
//! that replace the file by rename as well as in-place writes (on close, never half
//! written); a once-a-second look at the file's identity and times backs it up for
//! whatever inotify misses (network file systems, a directory replaced wholesale).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use inotify::{Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// Starts watching `path`; sends `()` on `changed` when it may have changed.
pub fn spawn(path: PathBuf, changed: mpsc::Sender<()>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name().map(|n| n.to_os_string());
    let inotify = Inotify::init()?;
    inotify.watches().add(
        &dir,
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ATTRIB,
    )?;
    let mut events = inotify.into_event_stream(vec![0u8; 4096])?;
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Ok(e) if e.name.as_deref() == name.as_deref() => {
                    // A full channel means a sync is already due: nothing is lost.
                    let _ = changed.try_send(());
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!(
                        "watching {}: {e}; relying on the once-a-second check",
                        dir.display()
                    );
                    break;
                }
            }
        }
    });
    Ok(())
}

/// What identifies a version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path).ok().map(|m| fingerprint_of(&m))
}

/// The fingerprint of a file already open or stat'ed.
pub fn fingerprint_of(m: &std::fs::Metadata) -> Fingerprint {
    Fingerprint {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    }
}
