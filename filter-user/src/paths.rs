//! Every default path and address of a deployment, in one place.

/// The order list: the single source of truth.
pub const ORDERS: &str = "/etc/borderfilter/orders.json";
/// The daemon's control socket, which the CLI talks to.
pub const SOCKET: &str = "/run/borderfilter/control.sock";
/// bpffs directory holding the pinned maps (the program stays attached through netlink,
/// not through pinned links: see `dataplane::attach`).
pub const PIN_DIR: &str = "/sys/fs/bpf/borderfilter";
/// A fleet router's copy of the last list it read from etcd.
pub const FLEET_COPY: &str = "/var/lib/borderfilter/fleet-list.json";
/// What the names in orders resolved to, kept across restarts.
pub const NAMES_STATE: &str = "/var/lib/borderfilter/names.json";
/// Where the audit trail is appended.
pub const AUDIT_LOG: &str = "/var/lib/borderfilter/audit.jsonl";
/// The options file the systemd unit reads.
pub const DEFAULTS_FILE: &str = "/etc/default/borderfilter";
/// The group whose members may change the order list through the CLI.
pub const ADMIN_GROUP: &str = "borderfilter";
/// Prometheus metrics: loopback only by default. The exporter port allocation list
/// (github.com/prometheus/prometheus/wiki/Default-port-allocations) filled 9100-9999 in
/// 2023 and continues above 10000; 10431 was unclaimed there when chosen (see
/// docs/metrics.md).
pub const METRICS: &str = "127.0.0.1:10431";
/// The bpffs mount point the pin directory normally lives under.
pub const BPFFS: &str = "/sys/fs/bpf";
