//! Writing the order list file behind the CLI's back: a CLI edit is acknowledged once
//! its journal line is synced (`orders::journal`), and this thread writes the whole list
//! afterwards, then drops the journal lines the file now holds. Edits that arrive while it
//! writes are folded into the next write: a burst of edits costs one or two rewrites.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::WriteFailure;
use crate::{
    error_chain,
    orders::{
        file::{self, fingerprint, fingerprint_of, Fingerprint},
        journal,
    },
};

/// What the file source and its writer share.
#[derive(Default)]
pub struct State {
    /// The file as this process last read or wrote it: its identity, and the SHA-256 of
    /// the list it holds.
    pub known: Option<(Fingerprint, String)>,
    /// The newest list acknowledged through the journal and not yet in the file.
    pub pending: Option<Pending>,
    /// Lines in the journal.
    pub lines: usize,
    /// `pending` changed since the writer last took it.
    pub dirty: bool,
}

#[derive(Clone)]
pub struct Pending {
    pub pieces: Vec<Arc<str>>,
    pub sha256: String,
    /// The journal lines it holds (all of them when it was acknowledged).
    pub lines: usize,
    /// The file it replaces.
    pub base: Fingerprint,
}

pub type Shared = Arc<(Mutex<State>, Condvar)>;

pub fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the writer of the list at `path`.
pub fn spawn(path: PathBuf, shared: Shared) {
    std::thread::Builder::new()
        .name("list-writer".into())
        .spawn(move || loop {
            let job = {
                let mut state = lock(&shared);
                while !state.dirty {
                    state = shared.1.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                state.dirty = false;
                state.pending.clone()
            };
            if let Some(job) = job {
                if let Err(e) = write(&path, &shared, &job) {
                    log::error!(
                        "writing the order list after a CLI edit failed: {}; the edit is kept in {} and written at the next change or start",
                        error_chain(&e),
                        journal::path_for(&path).display()
                    );
                }
            }
            shared.1.notify_all();
        })
        .expect("starting the list writer thread");
}

/// Writes `job` over the file, unless someone else replaced it meanwhile (their version
/// then gets the pending edits when the daemon reads it), and drops the journal lines it
/// holds.
fn write(path: &Path, shared: &Shared, job: &Pending) -> Result<(), file::FileError> {
    let started = Instant::now();
    let text: Vec<u8> = job.pieces.iter().flat_map(|p| p.bytes()).collect();
    let staged = file::stage(path, &text)?;
    let mut state = lock(shared);
    if fingerprint(path) != Some(job.base) {
        let _ = std::fs::remove_file(&staged);
        log::info!(
            "{} changed while CLI edits waited to be written; they are made again on the new version",
            path.display()
        );
        return Ok(());
    }
    // Opened before the rename, read after it (a rename changes the inode's ctime): the
    // identity of what this thread wrote, never of a file put there just after.
    let handle = std::fs::File::open(&staged).map_err(file::write_error("opening", &staged));
    let handle = match handle {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    if let Err(e) = file::put_in_place(&staged, path) {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    let written = handle
        .metadata()
        .map_err(file::write_error("reading the identity of", path))?;
    let written = fingerprint_of(&written);
    state.known = Some((written, job.sha256.clone()));
    let journal = journal::path_for(path);
    let dropped = journal::drop_first(&journal, path, job.lines);
    state.lines = state.lines.saturating_sub(job.lines);
    match &mut state.pending {
        Some(p) if p.sha256 == job.sha256 => state.pending = None,
        Some(p) => {
            // A newer edit: its text replaces what was just written.
            p.base = written;
            p.lines = p.lines.saturating_sub(job.lines);
        }
        None => {}
    }
    log::debug!(
        "wrote the order list ({} bytes, {} journal line(s)) in {:?}",
        text.len(),
        job.lines,
        started.elapsed()
    );
    dropped
}

/// Waits until nothing acknowledged is waiting to be written, for `timeout` at most.
pub fn flush(shared: &Shared, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut state = lock(shared);
    while state.pending.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        state = shared
            .1
            .wait_timeout(state, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Replaces the order list file with `contents` (atomically and durably, keeping its
/// owner and mode) unless it no longer has the fingerprint `base`, and returns the
/// fingerprint of what it wrote. The new version is written and synced under another
/// name first; the file is compared with `base` just before the rename that puts the new
/// version in its place, so another writer's version can only be lost if it lands between
/// a `stat` and a `rename`. The fingerprint returned is taken from the written file
/// itself, so a version written just after this one is never mistaken for the daemon's
/// own.
pub fn replace_unless_changed(
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
