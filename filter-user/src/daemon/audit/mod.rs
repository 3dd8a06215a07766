//! The audit trail: one JSON line per applied change, appended and synced, never
//! rewritten. It lets compliance staff show when each order started (and stopped) being
//! enforced, which prefixes each change gave to or took from which order, who changed
//! what, and which version of the list was in force.
//!
//! - this file: the record, appending and reading;
//! - `prefixes`: the prefixes a change handed over, and the side files of large changes;
//! - `query`: the history of one address or prefix (`audit --prefix`).

pub mod prefixes;
pub mod query;

use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Who or what caused a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// The daemon starting (reconciling the maps with the file).
    Start,
    /// The file changed on disk.
    File,
    /// The fleet's list (etcd) changed: another version was published.
    Fleet,
    /// SIGHUP.
    Signal,
    /// `borderfilter reload`.
    Reload { uid: u32, pid: i32, force: bool },
    /// A CLI edit.
    Cli { uid: u32, pid: i32, command: String },
    /// An order's validity window opened or closed.
    Clock,
    /// A name in an order resolved to other addresses, or an address's grace ended.
    Dns,
}

impl Origin {
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Start => "start",
            Origin::File => "file",
            Origin::Fleet => "fleet",
            Origin::Signal => "signal",
            Origin::Reload { .. } => "reload",
            Origin::Cli { .. } => "cli",
            Origin::Clock => "clock",
            Origin::Dns => "dns",
        }
    }
}

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    pub who: Origin,
    /// SHA-256 of the list in force before and after.
    pub sha256_before: Option<String>,
    pub sha256_after: String,
    pub orders_added: Vec<String>,
    pub orders_removed: Vec<String>,
    pub orders_changed: Vec<String>,
    /// Orders whose prefixes the data plane started / stopped enforcing with this change.
    pub enforcement_started: Vec<String>,
    pub enforcement_ended: Vec<String>,
    pub prefixes_added: usize,
    pub prefixes_changed: usize,
    pub prefixes_removed: usize,
    /// The prefixes each order (or the exceptions) gained and lost; empty when they are
    /// in `prefixes_file`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<prefixes::PrefixChanges>,
    /// For a change of more than [`prefixes::INLINE_PREFIXES`] prefixes: the side file
    /// that holds them, relative to the log's directory (one JSON line per order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefixes_file: Option<String>,
    /// What names in orders resolved to: the addresses each added, put in grace and
    /// released, and the ones the collateral guard kept out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<NameEvent>,
}

/// What one name did in a change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameEvent {
    pub name: String,
    /// The orders that list it.
    pub orders: Vec<String>,
    /// The TTL of the answer (seconds), when the event is an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// No longer returned: enforced through the grace period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Grace over: no longer enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    /// Returned, but not blocked: the collateral guard's reason for each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guarded: Vec<GuardedAddress>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardedAddress {
    pub address: String,
    pub order: String,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{op} the audit log {path} failed")]
pub struct AuditError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Appends `record` to the log at `path`, creating it (mode 0640) and its directory.
pub fn append(path: &Path, record: &Record) -> Result<(), AuditError> {
    let err = |op| {
        let path = path.to_path_buf();
        move |source| AuditError { op, path, source }
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err("creating the directory of"))?;
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(err("opening"))?;
    crate::jsonl::append(&mut file, record).map_err(err("appending to"))
}

use std::os::unix::fs::OpenOptionsExt;

/// Reads the log, keeping the records at or after `since` (an RFC 3339 prefix or date
/// compared as text, which orders correctly for UTC timestamps) that mention `order`.
pub fn read(
    path: &Path,
    since: Option<&str>,
    order: Option<&str>,
) -> Result<Vec<Record>, AuditError> {
    let records: Vec<Record> = crate::jsonl::read(path)
        .map_err(|(op, source)| AuditError {
            op,
            path: path.to_path_buf(),
            source,
        })?
        .unwrap_or_default();
    let mut out = Vec::new();
    // A torn last line (power loss mid-append) is skipped, not fatal.
    for record in records {
        if since.is_some_and(|s| record.time.as_str() < s) {
            continue;
        }
        if let Some(id) = order {
            let mentions = [
                &record.orders_added,
                &record.orders_removed,
                &record.orders_changed,
                &record.enforcement_started,
                &record.enforcement_ended,
            ]
            .iter()
            .any(|list| list.iter().any(|o| o == id))
                || record
                    .names
                    .iter()
                    .any(|n| n.orders.iter().any(|o| o == id));
            if !mentions {
                continue;
            }
        }
        out.push(record);
    }
    Ok(out)
}

/// For every order the trail says is enforced at its end, when its enforcement started
/// (RFC 3339): replayed from `enforcement_started` and `enforcement_ended`.
pub fn enforcing_since(path: &Path) -> Result<BTreeMap<String, String>, AuditError> {
    let mut since = BTreeMap::new();
    for r in read(path, None, None)? {
        for id in &r.enforcement_ended {
            since.remove(id);
        }
        for id in &r.enforcement_started {
            since.insert(id.clone(), r.time.clone());
        }
    }
    Ok(since)
}
