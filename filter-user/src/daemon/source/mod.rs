//! Where the order list comes from. The engine reads the list, learns whether it changed,
//! and writes CLI edits back through [`ListSource`], without knowing which source it has:
//! today the file on the router (`file`); a fleet's shared store or a list of resolved
//! domain names plug in beside it.

pub mod file;

use tokio::sync::mpsc;

use super::audit::Origin;
use crate::orders::file::{FileError, Fingerprint};

/// Which version of the list a source holds: compared, never looked into, by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    /// The order list file's identity (device, inode, size, times).
    File(Fingerprint),
}

/// A version of the list, as read.
pub struct Version {
    pub bytes: Vec<u8>,
    /// What it was read from; `None` when it changed while it was read (the next look
    /// at the source then sees a change and reads it again).
    pub revision: Option<Revision>,
}

/// Why a source could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] FileError),
}

/// Why a CLI edit was not written back.
#[derive(Debug)]
pub enum WriteFailure {
    /// The source no longer holds the version the edit was made on: someone replaced it
    /// meanwhile, and writing would throw their version away.
    Changed,
    Failed(SourceError),
}

/// The list's home, as the engine sees it.
pub trait ListSource: Send {
    /// Where the list is, for messages and `status` (the file's path).
    fn name(&self) -> String;
    /// What a change noticed in this source is recorded as in the audit trail.
    fn origin(&self) -> Origin;
    /// The version the source holds now, without reading it (`None`: it holds none, or
    /// cannot say).
    fn revision(&self) -> Option<Revision>;
    /// Reads the version the source holds now.
    fn read(&self) -> Result<Version, SourceError>;
    /// Replaces the list with `contents`, durably, unless the source no longer holds
    /// `base`; returns the revision written.
    fn replace(
        &mut self,
        contents: &[u8],
        base: Option<Revision>,
    ) -> Result<Revision, WriteFailure>;
    /// Starts telling `changed` whenever the list may have changed (a full channel
    /// means a look is already due). Runs on the daemon's runtime.
    fn watch(&self, changed: mpsc::Sender<()>);
}
