//! Results the daemon returns and the CLI renders. Every field is meant to be read by
//! scripts as they are (`--json`), so names are stable and spelled out.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub orders_file: String,
    pub pin_dir: String,
    pub attached: Vec<AttachedIface>,
    /// The list the data plane enforces.
    pub applied: Option<AppliedList>,
    /// SHA-256 of the file as it is on disk now, if it can be read.
    pub file_sha256: Option<String>,
    /// Why the file cannot be read, if it cannot.
    pub file_error: Option<String>,
    /// True when the data plane enforces exactly the file on disk.
    pub in_sync: bool,
    /// The last list refused, until a list is applied again.
    pub refusal: Option<Refusal>,
    /// What keeps the list's source from being followed now (e.g. etcd unreachable since
    /// a time); the filter keeps enforcing the list in force meanwhile.
    #[serde(default)]
    pub source_problem: Option<String>,
    /// When the next order starts or ends (RFC 3339).
    pub next_change: Option<String>,
    /// The way to the block-notice host, when configured.
    pub redirect: Option<RedirectStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RedirectStatus {
    pub iface: String,
    /// The notice host's MAC, or the IP address it is resolved from.
    pub notice_host: String,
    /// True when redirect orders send their packets there; false: they drop them.
    pub ready: bool,
    pub problem: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttachedIface {
    pub iface: String,
    pub mode: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedList {
    pub sha256: String,
    /// When it was applied (RFC 3339).
    pub applied_at: String,
    /// What applied it: start, file, signal, reload, cli, clock.
    pub origin: String,
    pub orders_active: usize,
    pub orders_pending: usize,
    pub orders_expired: usize,
    pub exceptions: usize,
    /// Entries in the data plane, per family.
    pub prefixes_ipv4: usize,
    pub prefixes_ipv6: usize,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub at: String,
    pub origin: String,
    /// SHA-256 of the refused list, when it could be read.
    pub sha256: Option<String>,
    /// One line per problem.
    pub problems: Vec<String>,
    /// True when the list is valid but was held back by the mass-removal guard:
    /// `borderfilter reload --force` applies it.
    pub needs_force: bool,
}

/// One order as `orders list` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderRow {
    pub id: String,
    pub state: String,
    pub action: String,
    pub direction: String,
    pub authority: String,
    pub basis: Option<String>,
    pub issued: String,
    pub valid_from: Option<String>,
    pub expires: Option<String>,
    pub prefixes: usize,
    pub packets: u64,
    pub bytes: u64,
}

/// `orders show`: the row and the full order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub row: OrderRow,
    pub prefix_list: Vec<String>,
    pub note: Option<String>,
}

/// What an order is, as `check` cites it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRef {
    pub id: String,
    pub action: String,
    pub authority: String,
    pub basis: Option<String>,
    pub issued: String,
    pub expires: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideReport {
    /// "destination" or "source".
    pub side: String,
    /// pass, exempt, drop, redirect or monitor.
    pub verdict: String,
    pub prefix: Option<String>,
    pub order: Option<OrderRef>,
    /// For exempt: the exception's reason.
    pub exception_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub address: String,
    pub sides: Vec<SideReport>,
    /// Whether the kernel's maps give the same answer as the list (always true unless
    /// something is badly wrong; `check` says so loudly if not).
    pub dataplane_agrees: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderStat {
    pub id: String,
    pub action: String,
    pub state: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VerdictStat {
    pub verdict: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// When the counters were read (RFC 3339), and the same in seconds for rates.
    pub at: String,
    pub at_unix_ms: u64,
    pub orders: Vec<OrderStat>,
    pub verdicts: Vec<VerdictStat>,
}

/// Result of a change: what it did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeReport {
    /// applied, or unchanged when the list was already in force.
    pub result: String,
    pub sha256: String,
    pub orders_added: Vec<String>,
    pub orders_removed: Vec<String>,
    pub orders_changed: Vec<String>,
    pub prefixes_added: usize,
    pub prefixes_changed: usize,
    pub prefixes_removed: usize,
    pub duration_ms: u64,
    pub warnings: Vec<String>,
}
