//! The `borderfilter` command line: the definitions (clap derive; each command's doc
//! comment is its help text) and the dispatch. Commands that need the daemon are in
//! `client`, those that work without it in `offline`.

mod client;
mod doctor;
mod fleet;
mod fleet_status;
mod generate;
mod names_args;
mod names_render;
mod offline;
pub mod table;
mod verify;

use std::{net::SocketAddr, path::PathBuf};

use clap::{builder::TypedValueParser, Args, Parser, Subcommand};

use crate::{dataplane::AttachMode, notice::server as notice, paths, prefix::Prefix};

/// Exit status: the operation was refused or failed (the reason is on stderr).
pub const EXIT_REFUSED: i32 = 1;

/// borderfilter enforces court-ordered blocking lists at line rate with XDP.
///
/// The order list file is the single source of truth. `borderfilter run` loads the XDP
/// program on the router's interfaces and keeps its maps equal to the file; the other
/// commands inspect and change the list through the running daemon.
///
/// Exit status: 0 on success, 1 when an operation is refused or fails (the reason is on
/// stderr), 2 on a usage error.
#[derive(Debug, Parser)]
#[command(name = "borderfilter", version, max_term_width = 100)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, value_name = "PATH", default_value = paths::SOCKET, env = "BORDERFILTER_SOCKET")]
    pub socket: PathBuf,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: attach the filter and keep it equal to the order list.
    ///
    /// The maps are pinned under --pin-dir and the program stays attached to the interfaces,
    /// so stopping or restarting the daemon (even with SIGKILL) never pauses enforcement;
    /// `borderfilter detach` removes the filter. A program removed from an interface behind
    /// the daemon's back is attached again within a second. The file is applied when it changes, on SIGHUP and on `reload`; a list
    /// with any error changes nothing.
    ///
    /// Example: borderfilter run --iface eth0 --iface eth1 --protect 192.0.2.0/24
    Run(RunArgs),
    /// Check an order list file without applying it (no daemon, no root needed).
    ///
    /// Prints every problem, one per line, naming the order, the field, the value and why;
    /// exits 1 if there is any error. Warnings alone exit 0.
    ///
    /// Example: borderfilter validate /etc/borderfilter/orders.json.new
    Validate(ValidateArgs),
    /// Show what the daemon enforces: interfaces, the list in force, sync state, refusals.
    ///
    /// Example: borderfilter status --json | jq .in_sync
    Status,
    /// List, show, add or remove orders.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Add prefixes to an order, or remove them.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Add or remove exceptions: allowed holes in the blocks.
    #[command(subcommand)]
    Exceptions(ExceptionsCommand),
    /// Explain what happens to traffic to and from an address, and which order decides.
    ///
    /// Example: borderfilter check 198.51.100.10
    Check(CheckArgs),
    /// Packet and byte counters per order and per verdict.
    ///
    /// Example: borderfilter stats --watch 5
    Stats(StatsArgs),
    /// Re-read the order list file now. --force applies a list that the mass-removal
    /// guard held back (one that stops enforcing more than half of the prefixes).
    ///
    /// Example: borderfilter reload --force
    Reload(ForceArg),
    /// Remove the filter from every interface and delete its pins. Enforcement stops.
    ///
    /// Asks the running daemon to detach and exit; without a daemon, removes the pins in
    /// --pin-dir directly.
    ///
    /// Example: borderfilter detach --yes
    Detach(DetachArgs),
    /// Run the block-notice host's web server: every HTTP request gets 451 and a page
    /// naming the order that blocks the address the client tried to reach.
    ///
    /// Every request that arrives is answered with the page, however malformed (no
    /// version, stray characters, bytes that are not HTTP, oversized heads); nothing from
    /// the request is put into the page. One answer per connection, then it is closed.
    /// HTTPS cannot be answered (no certificate can name a blocked site): connections to
    /// --reset-port on the same addresses are reset at once, so browsers fail fast.
    ///
    /// The notice host must accept traffic for addresses it does not own: add a local
    /// route for each redirected prefix (`ip route add local 198.51.100.0/24 dev lo`).
    ///
    /// Example: borderfilter notice --listen [::]:80 --templates /etc/borderfilter/notice
    Notice(NoticeArgs),
    /// Show the audit trail: every applied change, who made it, which orders started or
    /// stopped being enforced, and which prefixes each order gained or lost. With
    /// --prefix: the history of one address or prefix: which orders blocked it (or an
    /// exception exempted it), since when, and who changed it.
    ///
    /// Example: borderfilter audit --order BS-12345/2006 --since 2026-01-01
    ///
    /// Example: borderfilter audit --prefix 203.0.113.98
    Audit(AuditArgs),
    /// Prove that the data plane enforces exactly what the order list says (root; no
    /// daemon needed).
    ///
    /// Reads the pinned maps, compiles the file as it stands now and compares them entry by
    /// entry, by order and action; also checks the fast-path index. Exits 1 on any
    /// difference, listing the first ones. `maps_sha256` names the maps' whole contents:
    /// equal digests before and after an operation show it changed nothing.
    ///
    /// Example: borderfilter verify --orders /etc/borderfilter/orders.json --json
    Verify(VerifyArgs),
    /// Check that this host can run the daemon with these options, and say how to fix
    /// what it cannot.
    ///
    /// Checks the kernel (version, BTF), the bpffs mount, the memlock limit, capabilities,
    /// each --iface (exists, driver, the XDP modes it supports, what it runs now), the
    /// order list, and that the control socket and the metrics address are free or held
    /// by a running borderfilter. Takes the options of `run`; --defaults reads them from
    /// /etc/default/borderfilter instead, as the systemd unit does. Prints a PASS, WARN
    /// or FAIL line per check with the fix; exits 1 if any check fails. Run it as root
    /// (as the daemon runs) for a complete answer.
    ///
    /// Example: borderfilter doctor --defaults
    Doctor(DoctorArgs),
    /// Publish an order list to the fleet: every router that follows etcd enforces it.
    ///
    /// Checks FILE with the rules of `validate` (a list with any error publishes nothing),
    /// refuses a list that would stop enforcing more than half of the current version's
    /// prefixes (when more than 100) unless --force, then makes it the fleet's current
    /// version in one atomic step, whatever its size. Prints the new version.
    ///
    /// Say which version your list was made from with --base N: if someone published
    /// meanwhile, nothing is changed and the message names both versions. Without --base,
    /// the publish only succeeds when nothing is published yet; --base-any replaces
    /// whatever is current. Versions older than the --keep newest are removed. To change
    /// the fleet's list: pull it (the version is printed on stderr), edit it, publish it.
    ///
    /// Example: borderfilter fleet pull --etcd 10.0.0.5:2379 > orders.json
    ///
    /// Example: borderfilter publish orders.json --etcd 10.0.0.5:2379 --base 7
    Publish(PublishArgs),
    /// The fleet's list in etcd: pull a version to edit it and publish it again.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Write the man page or shell completions to stdout (used to build the package).
    #[command(hide = true, subcommand)]
    Generate(GenerateCommand),
}

/// Where the fleet's etcd is and how to authenticate to it.
#[derive(Clone, Debug, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated: host:port (https:// when a TLS option is given)
    /// or http(s)://host:port.
    #[arg(
        long = "etcd",
        value_name = "ENDPOINTS",
        env = "BORDERFILTER_ETCD",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// The prefix the fleet's keys live under.
    #[arg(long, value_name = "PREFIX", env = "BORDERFILTER_ETCD_PREFIX", default_value = crate::fleet::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// The CA certificate (PEM) that signed etcd's server certificate: turns TLS on.
    #[arg(long, value_name = "PATH", env = "BORDERFILTER_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// This client's certificate (PEM), for an etcd started with --client-cert-auth.
    #[arg(
        long,
        value_name = "PATH",
        env = "BORDERFILTER_ETCD_CERT",
        requires = "etcd_key"
    )]
    pub etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert (PEM).
    #[arg(
        long,
        value_name = "PATH",
        env = "BORDERFILTER_ETCD_KEY",
        requires = "etcd_cert"
    )]
    pub etcd_key: Option<PathBuf>,
    /// An etcd user (etcd's own authentication). The password is read from
    /// --etcd-password-file, else from the environment variable BORDERFILTER_ETCD_PASSWORD;
    /// never on the command line, where other users could see it.
    #[arg(long, value_name = "USER", env = "BORDERFILTER_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// A file holding the etcd user's password (a trailing newline is ignored).
    #[arg(
        long,
        value_name = "PATH",
        env = "BORDERFILTER_ETCD_PASSWORD_FILE",
        requires = "etcd_user"
    )]
    pub etcd_password_file: Option<PathBuf>,
    /// Seconds one request to etcd may take. A fraction is allowed: 2.5.
    #[arg(long, value_name = "SECONDS", default_value_t = notice::Seconds(crate::fleet::DEFAULT_TIMEOUT))]
    pub etcd_timeout: notice::Seconds,
}

impl EtcdArgs {
    pub fn options(&self) -> crate::fleet::EtcdOptions {
        crate::fleet::EtcdOptions {
            endpoints: self.endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            cacert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
            timeout: self.etcd_timeout.0,
        }
    }
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("base_group").args(["base", "base_any"]))]
#[command(mut_arg("endpoints", |a| a.required(true)))]
pub struct PublishArgs {
    /// The order list file to publish.
    pub file: PathBuf,
    /// The version the list was made from: the publish is refused if another version is
    /// current by then.
    #[arg(long, value_name = "N")]
    pub base: Option<u64>,
    /// Replace whatever version is current (after the guard has compared with it).
    #[arg(long)]
    pub base_any: bool,
    /// Versions kept in etcd (the newest); older ones and their chunks are removed.
    #[arg(long, value_name = "N", default_value_t = crate::fleet::DEFAULT_KEEP,
          value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n: u32| n as usize))]
    pub keep: usize,
    /// Publish even if the list stops enforcing more than half of the prefixes the
    /// current version enforces.
    #[arg(long)]
    pub force: bool,
    /// Largest file accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::orders::file::DEFAULT_MAX_BYTES)]
    pub max_list_bytes: u64,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Print the fleet's current list (or version N) to stdout, checked against its
    /// digests; the version is printed on stderr (in --json, with the list as text).
    ///
    /// Example: borderfilter fleet pull --etcd 10.0.0.5:2379 > orders.json
    Pull(PullArgs),
    /// Every router that follows the fleet's list: the version it enforces, and which
    /// lag, refuse (their own rails), cannot reach etcd, or stopped reporting. Exits 1
    /// unless every router enforces the current version.
    ///
    /// Example: borderfilter fleet status --etcd 10.0.0.5:2379
    Status(FleetStatusArgs),
    /// Since when each router enforces an order (from the routers' own reports).
    ///
    /// Example: borderfilter fleet audit --order BS-12345/2006 --etcd 10.0.0.5:2379
    Audit(FleetAuditArgs),
}

#[derive(Debug, Args)]
#[command(mut_arg("endpoints", |a| a.required(true)))]
pub struct FleetStatusArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
#[command(mut_arg("endpoints", |a| a.required(true)))]
pub struct FleetAuditArgs {
    /// The order's id.
    #[arg(long, value_name = "ID")]
    pub order: String,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
#[command(mut_arg("endpoints", |a| a.required(true)))]
pub struct PullArgs {
    /// The version to print instead of the current one.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Read the daemon's options from the BORDERFILTER_OPTS line of FILE (default
    /// /etc/default/borderfilter), as the systemd unit does, instead of from this command
    /// line. A --socket given here counts unless the file sets one.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = paths::DEFAULTS_FILE, conflicts_with = "RunArgs")]
    pub defaults: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// The man page, borderfilter(8), in roff.
    Man,
    /// A completion script for SHELL.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The order list file to compare with.
    #[arg(long, value_name = "PATH", default_value = paths::ORDERS)]
    pub orders: PathBuf,
    /// The daemon's bpffs pin directory.
    #[arg(long, value_name = "PATH", default_value = paths::PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Largest file accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::orders::file::DEFAULT_MAX_BYTES)]
    pub max_list_bytes: u64,
    /// The daemon's record of what the names in orders resolved to: their addresses are
    /// part of what the maps must hold.
    #[arg(long, value_name = "PATH", default_value = paths::NAMES_STATE)]
    pub names_state: PathBuf,
    /// The daemon's --protect ranges (names' addresses in them are not blocked).
    #[arg(long, value_name = "PREFIX")]
    pub protect: Vec<Prefix>,
    /// The daemon's --shared-ranges file.
    #[arg(long, value_name = "FILE")]
    pub shared_ranges: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to filter (repeat for several).
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// The order list file (without --etcd).
    #[arg(long, value_name = "PATH", default_value = paths::ORDERS)]
    pub orders: PathBuf,
    /// Follow the fleet's list in etcd instead of a file: this router enforces the
    /// version `borderfilter publish` made current, watches for the next, reports what it
    /// enforces under `PREFIX/routers/NAME`, and publishes CLI edits as new versions.
    #[command(flatten)]
    pub fleet: EtcdArgs,
    /// This router's name in the fleet (with --etcd). Default: the host name.
    #[arg(long, value_name = "NAME", requires = "endpoints")]
    pub router_name: Option<String>,
    /// Where the last list read from etcd is kept (with --etcd): a start while etcd cannot
    /// be reached enforces it.
    #[arg(long, value_name = "PATH", default_value = paths::FLEET_COPY)]
    pub fleet_copy: PathBuf,
    /// bpffs directory for the pinned maps.
    #[arg(long, value_name = "PATH", default_value = paths::PIN_DIR)]
    pub pin_dir: PathBuf,
    /// XDP mode: native (in the driver), generic (works everywhere, slower), or auto
    /// (native, falling back to generic with a warning).
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub xdp_mode: AttachMode,
    /// A range no order may touch: management network, resolvers, exchange points
    /// (repeat for several). Loopback, link-local and multicast are always protected.
    #[arg(long, value_name = "PREFIX")]
    pub protect: Vec<Prefix>,
    /// Serve Prometheus metrics on this address (loopback by default).
    #[arg(long, value_name = "ADDR:PORT", default_value = paths::METRICS)]
    pub metrics: SocketAddr,
    /// Do not serve metrics.
    #[arg(long, conflicts_with = "metrics")]
    pub no_metrics: bool,
    /// Capacity of the IPv4 prefix map (takes effect when the maps are created; 64 to
    /// 16,777,216). The fast path's slot table is allocated whole with it: 64 bytes times
    /// 1.5 N rounded up to a power of two (128 MiB at the default).
    #[arg(long, value_name = "N", default_value_t = filter_common::maps::DEFAULT_PREFIX_CAPACITY,
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub capacity_v4: u32,
    /// Capacity of the IPv6 prefix map.
    #[arg(long, value_name = "N", default_value_t = filter_common::maps::DEFAULT_PREFIX_CAPACITY)]
    pub capacity_v6: u32,
    /// Largest order list file accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::orders::file::DEFAULT_MAX_BYTES)]
    pub max_list_bytes: u64,
    /// Let any local user run read-only commands (status, check, stats). Changes still
    /// need root or the `borderfilter` group.
    #[arg(long)]
    pub public_read: bool,
    /// The audit trail file.
    #[arg(long, value_name = "PATH", default_value = paths::AUDIT_LOG)]
    pub audit_log: PathBuf,
    /// Interface towards the block-notice host: packets to addresses under a redirect
    /// order leave through it (XDP_REDIRECT). It must not be one of the --iface.
    #[arg(long, value_name = "IF", requires = "notice_host")]
    pub redirect_iface: Option<String>,
    /// The notice host's MAC address.
    #[arg(long, value_name = "MAC", group = "notice_host", requires = "redirect_iface", value_parser = crate::daemon::config::parse_mac)]
    pub redirect_mac: Option<[u8; 6]>,
    /// The notice host's IP address; its MAC is taken from the kernel's neighbour table
    /// and followed when it changes.
    #[arg(
        long,
        value_name = "IP",
        group = "notice_host",
        requires = "redirect_iface"
    )]
    pub redirect_neighbor: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub names: names_args::NamesArgs,
}

#[derive(Debug, Args)]
pub struct NoticeArgs {
    /// Address to listen on (repeat for several). `[::]:80` also accepts IPv4.
    #[arg(long, value_name = "ADDR:PORT", default_value = "[::]:80")]
    pub listen: Vec<SocketAddr>,
    /// The order list (the same file the filter enforces, or a copy).
    #[arg(long, value_name = "PATH", default_value = paths::ORDERS)]
    pub orders: PathBuf,
    /// Follow the fleet's list in etcd instead of --orders, as the routers do, so that
    /// the page names the order in force.
    #[command(flatten)]
    pub fleet: EtcdArgs,
    /// Directory of templates: BASIS.html and BASIS.txt per legal basis, default.html and
    /// default.txt otherwise. Built-in pages stand in for missing files.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// URL for the `Link: <URL>; rel="blocked-by"` header; `{authority}` is replaced by
    /// the order's authority.
    #[arg(long, value_name = "URL")]
    pub blocked_by: Option<String>,
    /// Largest order list file accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::orders::file::DEFAULT_MAX_BYTES)]
    pub max_list_bytes: u64,
    /// Most connections open at once. When full, each new connection closes the one that
    /// has waited longest for its client (idle, or sending its request slowly), so a flood
    /// of idle connections cannot lock subscribers out. Lowered to fit the open files
    /// limit, with a warning.
    #[arg(long, value_name = "N", default_value_t = notice::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n: u32| n as usize))]
    pub max_connections: usize,
    /// Largest request head (request line and headers) read, in bytes. A longer head
    /// still gets the page, chosen from what was read.
    #[arg(long, value_name = "BYTES", default_value_t = notice::DEFAULT_MAX_HEADER_BYTES,
          value_parser = clap::value_parser!(u32).range(256..=1_048_576).map(|n: u32| n as usize))]
    pub max_header_bytes: usize,
    /// Seconds a client has to send its whole request head, from the connection (not
    /// between bytes: trickling does not extend it). Then it gets the page if it sent
    /// anything, and the connection is closed. Also bounds writing the answer and reading
    /// a body after it. A fraction is allowed: 2.5.
    #[arg(long, value_name = "SECONDS", default_value_t = notice::Seconds(notice::DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout: notice::Seconds,
    /// Bytes of a request body read and discarded after the answer (so that the client
    /// receives the answer before the connection closes); past them the connection is
    /// closed at once.
    #[arg(long, value_name = "BYTES", default_value_t = notice::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: u64,
    /// Port whose connections are reset at once on each --listen address (HTTPS cannot
    /// be answered; a reset makes the browser fail at once instead of waiting). 0 picks
    /// a free port.
    #[arg(long, value_name = "PORT", default_value_t = notice::DEFAULT_RESET_PORT)]
    pub reset_port: u16,
    /// Do not listen on --reset-port.
    #[arg(long, conflicts_with = "reset_port")]
    pub no_reset: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The file to check.
    pub file: PathBuf,
    /// Ranges to treat as protected, as the daemon's --protect does.
    #[arg(long, value_name = "PREFIX")]
    pub protect: Vec<Prefix>,
    /// Map capacities to check against.
    #[arg(long, value_name = "N", default_value_t = filter_common::maps::DEFAULT_PREFIX_CAPACITY)]
    pub capacity_v4: u32,
    #[arg(long, value_name = "N", default_value_t = filter_common::maps::DEFAULT_PREFIX_CAPACITY)]
    pub capacity_v6: u32,
    /// Largest file accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::orders::file::DEFAULT_MAX_BYTES)]
    pub max_list_bytes: u64,
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List the orders with their state and counters.
    ///
    /// Example: borderfilter orders list
    List,
    /// Show one order in full.
    ///
    /// Example: borderfilter orders show BS-12345/2006
    Show { id: String },
    /// Add an order (written to the order list file, then applied).
    ///
    /// Example: borderfilter orders add --id BS-1/2026 --authority "Københavns Byret"
    ///   --issued 2026-11-20 --action drop --basis copyright 198.51.100.0/24 2001:db8:66::/48
    ///
    /// An order that names domains (the daemon resolves them and blocks their addresses):
    /// borderfilter orders add --id BS-2/2026 --authority "Københavns Byret"
    ///   --issued 2026-11-20 --action drop --domain allofmp3.com --domain www.allofmp3.com
    Add(Box<OrderAddArgs>),
    /// Remove an order.
    ///
    /// Example: borderfilter orders remove BS-1/2026
    Remove {
        id: String,
        #[command(flatten)]
        force: ForceArg,
    },
}

#[derive(Debug, Args)]
pub struct OrderAddArgs {
    /// The order's case reference, unique in the list.
    #[arg(long)]
    pub id: String,
    /// The court or authority that issued it.
    #[arg(long)]
    pub authority: String,
    /// Date of issue, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub issued: String,
    /// drop, redirect (to the block-notice host) or monitor (count only).
    #[arg(long)]
    pub action: String,
    /// Prefixes to block (CIDR or single addresses).
    #[arg(value_name = "PREFIX", required_unless_present = "domains")]
    pub prefixes: Vec<String>,
    /// A domain name whose addresses the order blocks (repeat for several): resolved by
    /// the daemon, followed as its records change.
    #[arg(long = "domain", value_name = "NAME")]
    pub domains: Vec<String>,
    /// Block a name's addresses even inside the daemon's --shared-ranges.
    #[arg(long)]
    pub allow_shared: bool,
    /// First day enforced (YYYY-MM-DD, or an RFC 3339 time).
    #[arg(long, value_name = "DATE")]
    pub valid_from: Option<String>,
    /// Last day enforced (YYYY-MM-DD, or an RFC 3339 time).
    #[arg(long, value_name = "DATE")]
    pub expires: Option<String>,
    /// Legal basis: copyright, gambling, sanctions, ...
    #[arg(long)]
    pub basis: Option<String>,
    /// dst, src or both (default both).
    #[arg(long)]
    pub direction: Option<String>,
    /// Allow prefixes broader than /16 (IPv4) or /32 (IPv6).
    #[arg(long)]
    pub allow_broad: bool,
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub force: ForceArg,
}

#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Add prefixes to an existing order.
    ///
    /// Example: borderfilter block add 203.0.113.7 203.0.113.8 --order BS-1/2026
    Add(BlockArgs),
    /// Remove prefixes from an order.
    ///
    /// Example: borderfilter block remove 203.0.113.7 --order BS-1/2026
    Remove(BlockArgs),
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    #[arg(required = true, value_name = "PREFIX")]
    pub prefixes: Vec<String>,
    /// The order to change.
    #[arg(long, value_name = "ID")]
    pub order: String,
    #[command(flatten)]
    pub force: ForceArg,
}

#[derive(Debug, Subcommand)]
pub enum ExceptionsCommand {
    /// Add an exception: traffic to and from PREFIX passes even inside a block.
    ///
    /// Example: borderfilter exceptions add 198.51.100.53 --reason "shared resolver"
    Add {
        prefix: String,
        /// Why (kept in the list for the next person to read).
        #[arg(long)]
        reason: String,
    },
    /// Remove an exception.
    ///
    /// Example: borderfilter exceptions remove 198.51.100.53
    Remove {
        prefix: String,
        #[command(flatten)]
        force: ForceArg,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The address to explain.
    pub address: String,
    /// Answer from this file instead of asking the daemon (no root needed).
    #[arg(long, value_name = "PATH")]
    pub orders: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Refresh every N seconds and show rates.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ForceArg {
    /// Apply even if the change stops enforcing more than half of the enforced prefixes.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Confirm: enforcement stops.
    #[arg(long)]
    pub yes: bool,
    /// The pin directory, when no daemon is running.
    #[arg(long, value_name = "PATH", default_value = paths::PIN_DIR)]
    pub pin_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only changes at or after this date or time (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only changes that concern this order.
    #[arg(long, value_name = "ID", conflicts_with = "prefix")]
    pub order: Option<String>,
    /// The history of this address or prefix: every change to a prefix that covers it or
    /// lies inside it, and what holds it now.
    #[arg(long, value_name = "ADDR_OR_PREFIX")]
    pub prefix: Option<String>,
}

/// Runs the command; returns the process exit status.
pub fn execute(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run(args) => offline::run_daemon(args, cli.socket),
        Command::Validate(args) => offline::validate(&args, cli.json),
        Command::Verify(args) => verify::verify(&args, cli.json),
        Command::Notice(args) => crate::notice::run(crate::notice::NoticeConfig {
            listen: args.listen,
            orders: args.orders,
            templates: args.templates,
            blocked_by: args.blocked_by,
            max_list_bytes: args.max_list_bytes,
            limits: crate::notice::Limits {
                max_connections: args.max_connections,
                max_header_bytes: args.max_header_bytes,
                header_timeout: args.header_timeout.0,
                max_body_bytes: args.max_body_bytes,
            },
            reset_port: (!args.no_reset).then_some(args.reset_port),
            fleet: Some(args.fleet.options()).filter(|o| !o.endpoints.is_empty()),
        })
        .map(|()| 0),
        Command::Check(CheckArgs {
            address,
            orders: Some(file),
        }) => offline::check(&address, &file, cli.json),
        Command::Detach(args) => client::detach(&cli.socket, &args, cli.json),
        Command::Doctor(args) => doctor::doctor(args, cli.socket, cli.json),
        Command::Generate(what) => generate::generate(&what),
        Command::Publish(args) => fleet::publish(&args, cli.json),
        Command::Fleet(FleetCommand::Pull(args)) => fleet::pull(&args, cli.json),
        Command::Fleet(FleetCommand::Status(args)) => fleet_status::status(&args, cli.json),
        Command::Fleet(FleetCommand::Audit(args)) => fleet_status::audit(&args, cli.json),
        other => client::run(&cli.socket, other, cli.json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("borderfilter: {}", crate::error_chain(e.as_ref()));
            EXIT_REFUSED
        }
    }
}
