//! Noticing that the order list file may have changed: inotify on its directory (which
//! catches editors that replace the file by rename as well as in-place writes, on close,
//! never half written), backed by a once-a-second look at its identity for whatever
//! inotify misses (network file systems, a directory replaced wholesale).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use inotify::{Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::orders::file::fingerprint;

/// How often the file's identity is looked at, besides inotify.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Tells `changed` whenever the file at `path` may have changed (a full channel means a
/// look is already due: nothing is lost). Runs on the daemon's runtime.
pub fn spawn(path: PathBuf, changed: mpsc::Sender<()>) {
    if let Err(e) = spawn_inotify(&path, changed.clone()) {
        log::warn!(
            "cannot watch {} ({e}); relying on the once-a-second look",
            path.display()
        );
    }
    tokio::spawn(async move {
        let mut seen = fingerprint(&path);
        let mut every = tokio::time::interval(LOOK_EVERY);
        loop {
            every.tick().await;
            let now = fingerprint(&path);
            if now != seen {
                seen = now;
                let _ = changed.try_send(());
            }
        }
    });
}

/// Sends `()` on `changed` when inotify says the file at `path` may have changed.
fn spawn_inotify(path: &Path, changed: mpsc::Sender<()>) -> std::io::Result<()> {
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
                    let _ = changed.try_send(());
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!(
                        "watching {}: {e}; relying on the once-a-second look",
                        dir.display()
                    );
                    break;
                }
            }
        }
    });
    Ok(())
}
