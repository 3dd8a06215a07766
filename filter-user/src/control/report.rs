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
    /// Names in orders: how their resolution goes (absent when no order names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<NamesStatus>,
}

/// The names of the list in force, as the daemon resolves them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamesStatus {
    pub names: usize,
    /// Addresses enforced because a name returns them now / returned them within the
    /// grace period.
    pub addresses_current: usize,
    pub addresses_in_grace: usize,
    /// Names whose last resolution failed: their last known addresses stay enforced.
    pub failing: Vec<NameFailure>,
    /// Addresses names returned that are not blocked, and why.
    pub guarded: Vec<GuardedReport>,
    /// Names never resolved yet (nothing enforced for them).
    pub unresolved: Vec<String>,
    pub resolvers: Vec<String>,
    /// Why names cannot be resolved at all, or their addresses not kept on disk.
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NameFailure {
    pub name: String,
    pub orders: Vec<String>,
    pub error: String,
    pub since: String,
    pub attempts: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardedReport {
    pub address: String,
    pub order: String,
    pub names: Vec<String>,
    pub why: String,
}

/// One name of an order, with its addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainDetail {
    /// As resolved (IDNA ASCII form).
    pub name: String,
    /// As a person reads it (Unicode), when it differs.
    pub unicode: Option<String>,
    pub resolved_at: Option<String>,
    pub ttl: Option<u32>,
    pub next_resolution: Option<String>,
    pub failure: Option<NameFailure>,
    pub addresses: Vec<AddressDetail>,
    /// Addresses the last answer held beyond the per-name limit (64 per family): not
    /// blocked.
    #[serde(default)]
    pub dropped: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AddressDetail {
    pub address: String,
    /// `current`, `grace` (no longer returned; enforced until `grace_until`) or
    /// `guarded` (returned, not blocked: see `guarded`).
    pub state: String,
    pub first_seen: String,
    pub last_seen: String,
    pub ttl: u32,
    pub grace_until: Option<String>,
    pub guarded: Option<String>,
}

/// Why an address is blocked by a name: what it resolved to, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedFrom {
    pub name: String,
    pub first_seen: String,
    pub last_seen: String,
    pub ttl: u32,
    pub grace_until: Option<String>,
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
    #[serde(default)]
    pub domains: usize,
    pub packets: u64,
    pub bytes: u64,
}

/// `orders show`: the row and the full order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub row: OrderRow,
    pub prefix_list: Vec<String>,
    #[serde(default)]
    pub domains: Vec<DomainDetail>,
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
    /// When the prefix is an address the order holds through its names: which names
    /// resolved to it, and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_from: Vec<ResolvedFrom>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub address: String,
    pub sides: Vec<SideReport>,
    /// Whether the kernel's maps give the same answer as the list (always true unless
    /// something is badly wrong; `check` says so loudly if not).
    pub dataplane_agrees: bool,
    /// Names that resolved to the address without it being blocked, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guarded: Vec<GuardedReport>,
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
