//! The order list file on this router: read defensively together with its journal of
//! acknowledged CLI edits, watched (`watch`), and written back: whole and at once for a
//! list replaced as a whole or a small list's CLI edit, through the journal and a writer
//! thread (`compaction`) for a CLI edit to a large list, which is then durable in a
//! millisecond or two however large the list is.

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::{
    compaction::{self, lock, Pending, Shared, State},
    watch, ListSource, Revision, SourceError, Version, WriteFailure,
};
use crate::{
    daemon::audit::Origin,
    error_chain,
    orders::{
        edit::Edit,
        file::{self, fingerprint},
        journal,
        text::ListText,
    },
};

/// How long the daemon waits, when it stops, for acknowledged edits to be written whole.
const FLUSH_FOR: Duration = Duration::from_secs(5);

/// A list smaller than this is rewritten whole before a CLI edit is acknowledged (a few
/// milliseconds), so the file itself is current whenever the CLI returns; a larger one
/// through the journal. 1 MiB holds about 40,000 prefixes.
pub const JOURNAL_ABOVE_BYTES: usize = 1 << 20;

pub struct FileSource {
    path: PathBuf,
    journal: PathBuf,
    max_bytes: u64,
    shared: Shared,
}

impl FileSource {
    /// The source for the list at `path`, with its writer thread.
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        let shared: Shared = Arc::default();
        compaction::spawn(path.clone(), Arc::clone(&shared));
        Self {
            journal: journal::path_for(&path),
            path,
            max_bytes,
            shared,
        }
    }

    /// The revision the file holds now, as far as this process knows it.
    fn revision_locked(&self, state: &State) -> Option<Revision> {
        let now = fingerprint(&self.path)?;
        if let Some(p) = &state.pending {
            return Some(if p.base == now {
                Revision::List(p.sha256.clone())
            } else {
                Revision::File(now)
            });
        }
        Some(match &state.known {
            Some((fp, sha)) if *fp == now => Revision::List(sha.clone()),
            _ => Revision::File(now),
        })
    }

    /// The file identity `base` stands for, if the file still has it.
    fn base_file(&self, state: &State, base: Option<&Revision>) -> Option<file::Fingerprint> {
        let now = fingerprint(&self.path)?;
        (base.is_some() && self.revision_locked(state).as_ref() == base).then_some(now)
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
        self.revision_locked(&lock(&self.shared))
    }

    /// The digest this process knows for the file as it is now (or of the edits waiting
    /// to be written), reading the file only when it changed since.
    fn digest(&self) -> Result<String, SourceError> {
        {
            let state = lock(&self.shared);
            if let Some(Revision::List(sha)) = self.revision_locked(&state) {
                return Ok(sha);
            }
        }
        self.read().map(|v| v.sha256)
    }

    fn read(&self) -> Result<Version, SourceError> {
        let mut state = lock(&self.shared);
        if let Some(p) = &state.pending {
            if fingerprint(&self.path) == Some(p.base) {
                return Ok(Version {
                    bytes: p.pieces.iter().flat_map(|x| x.bytes()).collect(),
                    sha256: p.sha256.clone(),
                    revision: Some(Revision::List(p.sha256.clone())),
                    persist: false,
                    notes: Vec::new(),
                });
            }
        }
        let before = fingerprint(&self.path);
        let bytes = file::read(&self.path, self.max_bytes)?;
        let stable = before.filter(|b| fingerprint(&self.path) == Some(*b));
        let lines = journal::read(&self.journal)?;
        let replayed = journal::replay(bytes, &lines);
        let sha256 = file::digest(&replayed.bytes);
        let persist = replayed.made > 0 || !replayed.skipped.is_empty();
        for note in &replayed.skipped {
            log::warn!("{}: {note}", self.journal.display());
        }
        let revision = match (stable, persist) {
            (Some(fp), false) => {
                // The file holds every line of a journal left behind: it goes.
                if !lines.is_empty() {
                    if let Err(e) = journal::drop_first(&self.journal, &self.path, lines.len()) {
                        log::warn!("{}", error_chain(&e));
                    }
                    state.lines = 0;
                }
                state.known = Some((fp, sha256.clone()));
                Some(Revision::List(sha256.clone()))
            }
            (Some(fp), true) => {
                log::info!(
                    "{}: {} acknowledged CLI edit(s) not yet in {} made again on it",
                    self.journal.display(),
                    replayed.made,
                    self.path.display()
                );
                state.lines = lines.len();
                Some(Revision::File(fp))
            }
            (None, _) => None,
        };
        Ok(Version {
            bytes: replayed.bytes,
            sha256,
            revision,
            persist,
            notes: replayed.skipped,
        })
    }

    fn replace(
        &mut self,
        contents: &[u8],
        base: Option<Revision>,
    ) -> Result<Revision, WriteFailure> {
        let mut state = lock(&self.shared);
        let Some(base) = self.base_file(&state, base.as_ref()) else {
            return Err(WriteFailure::Changed);
        };
        let written = compaction::replace_unless_changed(&self.path, contents, base)?;
        let sha256 = file::digest(contents);
        // The file holds everything now: what waited in the journal too.
        state.pending = None;
        state.known = Some((written, sha256.clone()));
        if state.lines > 0 || self.journal.exists() {
            journal::drop_first(&self.journal, &self.path, usize::MAX)
                .map_err(|e| WriteFailure::Failed(e.into()))?;
            state.lines = 0;
        }
        Ok(Revision::List(sha256))
    }

    fn commit_edit(
        &mut self,
        edit: &Edit,
        base_sha256: &str,
        text: &ListText,
        base: Option<Revision>,
    ) -> Result<Revision, WriteFailure> {
        if text.len() < JOURNAL_ABOVE_BYTES {
            return self.replace(&text.to_bytes(), base);
        }
        let mut state = lock(&self.shared);
        let Some(file) = self.base_file(&state, base.as_ref()) else {
            return Err(WriteFailure::Changed);
        };
        let line = journal::Line {
            base: base_sha256.to_string(),
            after: text.sha256().to_string(),
            edit: edit.clone(),
        };
        journal::append(&self.journal, &self.path, &line)
            .map_err(|e| WriteFailure::Failed(e.into()))?;
        state.lines += 1;
        state.pending = Some(Pending {
            pieces: text.pieces(),
            sha256: text.sha256().to_string(),
            lines: state.lines,
            base: file,
        });
        state.dirty = true;
        self.shared.1.notify_all();
        Ok(Revision::List(text.sha256().to_string()))
    }

    fn flush(&self) {
        compaction::flush(&self.shared, FLUSH_FOR);
    }

    fn watch(&self, changed: mpsc::Sender<()>) {
        watch::spawn(self.path.clone(), changed);
    }
}
