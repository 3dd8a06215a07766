//! Where the order list comes from. The engine reads the list, learns whether it changed,
//! and writes CLI edits back through [`ListSource`], without knowing which source it has:
//! today the file on the router (`file`); a fleet's shared store or a list of resolved
//! domain names plug in beside it.

mod compaction;
pub mod etcd;
pub mod file;
mod watch;

use tokio::sync::mpsc;

use super::audit::Origin;
use crate::orders::{
    edit::Edit,
    file::{FileError, Fingerprint},
    text::ListText,
};

/// Which version of the list a source holds: compared, never looked into, by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revision {
    /// A list this process read or wrote, by its SHA-256, while the source still holds it
    /// (the file may have been rewritten since with the same list).
    List(String),
    /// An order list file this process has not read or written in this form: its
    /// identity (device, inode, size, times).
    File(Fingerprint),
}

/// A version of the list, as read.
pub struct Version {
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, in hex.
    pub sha256: String,
    /// What it was read from; `None` when it changed while it was read (the next look
    /// at the source then sees a change and reads it again).
    pub revision: Option<Revision>,
    /// The source holds this list only in part (edits acknowledged before the crash of an
    /// earlier daemon, made again on the file): once applied, write it back whole.
    pub persist: bool,
    /// What reading found that did not stop it (a pending edit that no longer applies).
    pub notes: Vec<String>,
}

/// What the daemon tells its source after each change it applied or refused: a shared
/// source publishes it, so that the fleet can see which router enforces what.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Enforcing {
    /// SHA-256 of the list in force.
    pub sha256: Option<String>,
    /// When it was applied (RFC 3339).
    pub applied_at: Option<String>,
    /// True when the list in force is the one the source holds now.
    pub in_sync: bool,
    /// Why the source's list was refused, if it was (the first problems).
    pub refusal: Option<String>,
    /// Each order enforced, with when its enforcement started (RFC 3339).
    pub enforcing_since: std::collections::BTreeMap<String, String>,
}

/// Why a source could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(
        "no order list has been published to {place} yet (borderfilter publish FILE --etcd ...)"
    )]
    NothingPublished { place: String },
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
    /// Makes a CLI edit durable, unless the source no longer holds `base`: `edit`, made on
    /// the list whose SHA-256 is `base_sha256`, gave `text`. Returns once the edit would
    /// survive a crash; the source may write the whole list later. By default the whole
    /// list is written at once.
    fn commit_edit(
        &mut self,
        edit: &Edit,
        base_sha256: &str,
        text: &ListText,
        base: Option<Revision>,
    ) -> Result<Revision, WriteFailure> {
        let _ = (edit, base_sha256);
        self.replace(&text.to_bytes(), base)
    }
    /// Waits (a few seconds at most) until what `commit_edit` acknowledged is written
    /// whole: before the daemon exits.
    fn flush(&self) {}
    /// SHA-256 of the list the source holds now, for `status` (and so every scrape and
    /// health check): without reading the whole list where the source can tell.
    fn digest(&self) -> Result<String, SourceError> {
        self.read().map(|v| v.sha256)
    }
    /// What keeps the source from being followed now, if anything (a store that cannot be
    /// reached, and since when): shown in `status` and the metrics.
    fn problem(&self) -> Option<String> {
        None
    }
    /// Told after every change applied or refused.
    fn report(&self, enforcing: &Enforcing) {
        let _ = enforcing;
    }
    /// Starts telling `changed` whenever the list may have changed (a full channel
    /// means a look is already due). Runs on the daemon's runtime.
    fn watch(&self, changed: mpsc::Sender<()>);
}
