//! The order list file on this router: read defensively, watched (inotify on its
//! directory, which catches editors that replace the file by rename as well as in-place
//! writes, backed by a once-a-second look at its identity for whatever inotify misses:
//! network file systems, a directory replaced wholesale), and written back atomically.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use inotify::{Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::{ListSource, Revision, SourceError, Version, WriteFailure};
use crate::{
    daemon::audit::Origin,
    orders::file::{self, fingerprint, fingerprint_of, Fingerprint},
};

/// How often the file's identity is looked at, besides inotify.
const LOOK_EVERY: Duration = Duration::from_secs(1);

pub struct FileSource {
    path: PathBuf,
    max_bytes: u64,
}

impl FileSource {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self { path, max_bytes }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        fingerprint(&self.path)
    }
}

impl ListSource for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn origin(&self) -> Origin {
        Origin::File
    }

    fn revision(&self) -> Option<Revision> {
        self.fingerprint().map(Revision::File)
    }

    fn read(&self) -> Result<Version, SourceError> {
        let before = self.fingerprint();
        let bytes = file::read(&self.path, self.max_bytes)?;
        let revision = before
            .filter(|b| self.fingerprint() == Some(*b))
            .map(Revision::File);
        Ok(Version { bytes, revision })
    }

    fn replace(
        &mut self,
        contents: &[u8],
        base: Option<Revision>,
    ) -> Result<Revision, WriteFailure> {
        let Some(Revision::File(base)) = base else {
            return Err(WriteFailure::Changed);
        };
        replace_unless_changed(&self.path, contents, base).map(Revision::File)
    }

    fn watch(&self, changed: mpsc::Sender<()>) {
        if let Err(e) = spawn_inotify(&self.path, changed.clone()) {
            log::warn!(
                "cannot watch {} ({e}); relying on the once-a-second look",
                self.path.display()
            );
        }
        let path = self.path.clone();
        tokio::spawn(async move {
            let mut seen = fingerprint(&path);
            let mut every = tokio::time::interval(LOOK_EVERY);
            loop {
                every.tick().await;
                let now = fingerprint(&path);
                if now != seen {
                    seen = now;
                    // A full channel means a sync is already due: nothing is lost.
                    let _ = changed.try_send(());
                }
            }
        });
    }
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

/// Replaces the order list file with `contents` (atomically and durably, keeping its
/// owner and mode) unless it changed since it had the fingerprint `base`, and returns
/// the fingerprint of what it wrote. The new version is written and synced under
/// another name first; the file is compared with `base` just before the rename that puts
/// the new version in its place, so another writer's version can only be lost if it
/// lands between a `stat` and a `rename`. The fingerprint returned is taken from the
/// written file itself, so a version written just after this one is never mistaken for
/// the daemon's own.
fn replace_unless_changed(
    path: &Path,
    contents: &[u8],
    base: Fingerprint,
) -> Result<Fingerprint, WriteFailure> {
    let unchanged = || {
        let same = fingerprint(path) == Some(base);
        if !same {
            log::info!(
                "{} changed while a CLI edit was being made: making the edit again on the new version",
                path.display()
            );
        }
        same
    };
    if !unchanged() {
        return Err(WriteFailure::Changed);
    }
    // Written and synced under another name, with the list's owner and mode.
    let staged = file::stage(path, contents).map_err(|e| WriteFailure::Failed(e.into()))?;
    let result = (|| {
        let written = std::fs::File::open(&staged)
            .map_err(file::write_error("opening", &staged))
            .map_err(|e| WriteFailure::Failed(e.into()))?;
        if !unchanged() {
            return Err(WriteFailure::Changed);
        }
        file::put_in_place(&staged, path).map_err(|e| WriteFailure::Failed(e.into()))?;
        written
            .metadata()
            .map(|m| fingerprint_of(&m))
            .map_err(file::write_error("reading the identity of", path))
            .map_err(|e| WriteFailure::Failed(e.into()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}
