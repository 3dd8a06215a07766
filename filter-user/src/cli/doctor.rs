//! `borderfilter doctor`: checks that this host can run the daemon with the given options
//! (or those in /etc/default/borderfilter, as the systemd unit passes them), one line per
//! check, each failure with its fix. It changes nothing.

mod netdev;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;
use serde::Serialize;

use super::{Cli, Command, DoctorArgs, RunArgs, EXIT_REFUSED};
use crate::{
    control::{self, report, Request},
    dataplane::{self, AttachMode},
    orders::{
        file,
        validate::{check as check_list, Policy, RedirectTarget},
    },
    paths,
};

/// The variable of the defaults file that holds the daemon's options; the unit runs
/// `borderfilter run $BORDERFILTER_OPTS`.
pub const OPTS_VAR: &str = "BORDERFILTER_OPTS";
/// The oldest kernel with what the daemon uses: CAP_BPF, batched map updates, atomic
/// replacement of an attached XDP program.
const MIN_KERNEL: (u32, u32) = (5, 10);
/// Since 5.11 BPF memory is charged to the memory cgroup, not to RLIMIT_MEMLOCK.
const MEMCG_KERNEL: (u32, u32) = (5, 11);
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// What the daemon needs, as (capability number, name).
const CAPABILITIES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (12, "CAP_NET_ADMIN"),
    (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];
const CAP_SYS_ADMIN: u32 = 21;
const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, check: &str, status: Status, detail: String, fix: Option<String>) {
        self.0.push(Check {
            check: check.to_string(),
            status,
            detail,
            fix,
        });
    }
    fn pass(&mut self, check: &str, detail: String) {
        self.add(check, Status::Pass, detail, None);
    }
    fn warn(&mut self, check: &str, detail: String, fix: impl Into<String>) {
        self.add(check, Status::Warn, detail, Some(fix.into()));
    }
    fn fail(&mut self, check: &str, detail: String, fix: impl Into<String>) {
        self.add(check, Status::Fail, detail, Some(fix.into()));
    }
    fn count(&self, status: Status) -> usize {
        self.0.iter().filter(|c| c.status == status).count()
    }
}

pub fn doctor(args: DoctorArgs, socket: PathBuf, json: bool) -> anyhow::Result<i32> {
    let mut report = Report::default();
    let source;
    let options = match &args.defaults {
        None => {
            source = "the command line".to_string();
            Some((args.run, socket))
        }
        Some(path) => {
            source = path.display().to_string();
            options_from_file(path, socket, &mut report)
        }
    };
    if let Some((run, socket)) = &options {
        checks(run, socket, &mut report);
    }
    let failed = report.count(Status::Fail);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": failed == 0,
                "options_from": source,
                "checks": report.0,
            }))?
        );
    } else {
        print!("{}", render(&report, &source));
    }
    Ok(if failed == 0 { 0 } else { EXIT_REFUSED })
}

fn render(report: &Report, source: &str) -> String {
    let width = report.0.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = format!("borderfilter doctor: options from {source}\n");
    for c in &report.0 {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        out += &format!("{tag}  {:width$}  {}\n", c.check, c.detail);
        if let Some(fix) = &c.fix {
            out += &format!("      {:width$}  fix: {fix}\n", "");
        }
    }
    out += &format!(
        "{} checks: {} passed, {} warning(s), {} failed\n",
        report.0.len(),
        report.count(Status::Pass),
        report.count(Status::Warn),
        report.count(Status::Fail)
    );
    out
}

/// The daemon's options as the unit gives them: `run $BORDERFILTER_OPTS`. The socket is
/// the one in those options, else BORDERFILTER_SOCKET from the file, else `socket` (the
/// one doctor was given).
fn options_from_file(
    path: &Path,
    socket: PathBuf,
    report: &mut Report,
) -> Option<(RunArgs, PathBuf)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.fail(
                "options",
                format!("cannot read {}: {e}", path.display()),
                "the package installs it; restore it with `apt-get install --reinstall \
                 -o Dpkg::Options::=--force-confmiss borderfilter`",
            );
            return None;
        }
    };
    let vars = environment_file(&text);
    let get = |key: &str| vars.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    let socket = get("BORDERFILTER_SOCKET").map_or(socket, PathBuf::from);
    let mut argv: Vec<String> = vec![
        "borderfilter".into(),
        "--socket".into(),
        socket.display().to_string(),
        "run".into(),
    ];
    let opts = get(OPTS_VAR).cloned().unwrap_or_default();
    argv.extend(opts.split_whitespace().map(str::to_string));
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            socket,
            command: Command::Run(run),
            ..
        }) => {
            report.pass("options", format!("{OPTS_VAR}=\"{opts}\""));
            Some((run, socket))
        }
        Ok(_) => unreachable!("parsed as `run`"),
        Err(e) => {
            report.fail(
                "options",
                format!("{OPTS_VAR} in {} is not valid: {}", path.display(), {
                    let message = e.to_string();
                    message.lines().next().unwrap_or_default().to_string()
                }),
                format!(
                    "correct {OPTS_VAR} in {}: it takes the options of `borderfilter run` \
                     (see `borderfilter run --help`)",
                    path.display()
                ),
            );
            None
        }
    }
}

/// The variables of a systemd EnvironmentFile: `KEY=VALUE` lines, `#` and `;` comments,
/// values in single or double quotes, lines continued with a trailing backslash.
pub fn environment_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut joined = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            continue;
        }
        joined.push_str(line);
        let logical = std::mem::take(&mut joined);
        let logical = logical.trim();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with(';') {
            continue;
        }
        let Some((key, value)) = logical.split_once('=') else {
            continue;
        };
        out.push((key.trim().to_string(), unquote(value.trim())));
    }
    out
}

fn unquote(value: &str) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some(q @ ('"' | '\'')) => {
            let mut out = String::new();
            while let Some(c) = chars.next() {
                match c {
                    c if c == q => break,
                    '\\' if q == '"' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        _ => value.to_string(),
    }
}

fn checks(run: &RunArgs, socket: &Path, report: &mut Report) {
    let kernel = kernel_version();
    check_kernel(kernel.as_ref(), report);
    check_btf(report);
    check_bpffs(&run.pin_dir, report);
    check_memlock(kernel.as_ref(), report);
    check_capabilities(report);
    check_interfaces(run, report);
    check_orders(run, report);
    check_socket(socket, &run.pin_dir, report);
    check_metrics(run, report);
}

/// The release string and its (major, minor).
fn kernel_version() -> Option<(String, (u32, u32))> {
    // SAFETY: all-zero is a valid utsname; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let release: String = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    Some((release, (major, minor)))
}

fn check_kernel(kernel: Option<&(String, (u32, u32))>, report: &mut Report) {
    let needed = format!("{}.{} or newer is needed", MIN_KERNEL.0, MIN_KERNEL.1);
    match kernel {
        Some((release, version)) if *version >= MIN_KERNEL => {
            report.pass("kernel", format!("Linux {release} ({needed})"))
        }
        Some((release, _)) => report.fail(
            "kernel",
            format!("Linux {release} is too old ({needed}: CAP_BPF, batched map updates, atomic program replacement)"),
            "upgrade the kernel (Debian 12's 6.1 works)",
        ),
        None => report.warn(
            "kernel",
            "cannot read the kernel version".into(),
            format!("make sure the kernel is {}.{} or newer", MIN_KERNEL.0, MIN_KERNEL.1),
        ),
    }
}

fn check_btf(report: &mut Report) {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        report.pass(
            "btf",
            "/sys/kernel/btf/vmlinux is present (kernel type information)".into(),
        );
    } else {
        report.warn(
            "btf",
            "the kernel has no BTF (/sys/kernel/btf/vmlinux): the XDP program uses no \
             kernel-type relocations and is expected to load, but this is untested"
                .into(),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's kernels are)",
        );
    }
}

fn statfs_type(path: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: all-zero is a valid statfs; statfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a writable struct.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type as i64)
}

fn check_bpffs(pin_dir: &Path, report: &mut Report) {
    let Some(existing) = pin_dir.ancestors().find(|p| p.exists()) else {
        return;
    };
    if statfs_type(existing) != Some(BPF_FS_MAGIC) {
        let parent = pin_dir.parent().unwrap_or(Path::new(paths::BPFFS));
        report.fail(
            "bpffs",
            format!(
                "{} is not on a bpf filesystem: the pins that keep enforcement across \
                 restarts cannot be made",
                pin_dir.display()
            ),
            format!(
                "mount it: `mount -t bpf bpf {}` (systemd mounts {} at boot)",
                parent.display(),
                paths::BPFFS
            ),
        );
        return;
    }
    let pins = dataplane::SHAPES
        .iter()
        .filter(|s| pin_dir.join(s.name).exists())
        .count();
    if pins == 0 {
        report.pass(
            "bpffs",
            format!(
                "{} is on bpffs; no pins yet (the daemon creates them)",
                pin_dir.display()
            ),
        );
        return;
    }
    let mismatched: Vec<String> = dataplane::SHAPES
        .iter()
        .filter_map(|shape| {
            let info = aya::maps::MapInfo::from_pin(pin_dir.join(shape.name)).ok()?;
            (info.key_size() != shape.key_size || info.value_size() != shape.value_size).then(
                || {
                    format!(
                        "{} (key {} value {} bytes, this version needs {} and {})",
                        shape.name,
                        info.key_size(),
                        info.value_size(),
                        shape.key_size,
                        shape.value_size
                    )
                },
            )
        })
        .collect();
    if !mismatched.is_empty() {
        report.fail(
            "bpffs",
            format!(
                "{} holds maps of another borderfilter version, which this one refuses to \
                 reuse: {}",
                pin_dir.display(),
                mismatched.join("; ")
            ),
            format!(
                "`borderfilter detach --yes --pin-dir {}` (enforcement stops), then start \
                 the daemon: it loads the list again",
                pin_dir.display()
            ),
        );
        return;
    }
    let attached: Vec<String> = dataplane::pinned_attachments(pin_dir)
        .into_iter()
        .map(|a| format!("{} ({})", a.iface, a.mode))
        .collect();
    report.pass(
        "bpffs",
        format!(
            "{} holds the pinned maps: the daemon reuses them, enforcement continues; \
             enforcing on {}",
            pin_dir.display(),
            if attached.is_empty() {
                "no interface".to_string()
            } else {
                attached.join(", ")
            }
        ),
    );
}

fn check_memlock(kernel: Option<&(String, (u32, u32))>, report: &mut Report) {
    if kernel.is_some_and(|(_, v)| *v >= MEMCG_KERNEL) {
        report.pass(
            "memlock",
            "not needed: this kernel charges BPF memory to the memory cgroup".into(),
        );
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if limit.rlim_cur == libc::RLIM_INFINITY || has_capability(24) {
        report.pass(
            "memlock",
            "RLIMIT_MEMLOCK is unlimited or can be raised".into(),
        );
    } else {
        report.fail(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {} KiB: this kernel charges BPF maps to it",
                limit.rlim_cur / 1024
            ),
            "run the daemon with LimitMEMLOCK=infinity (borderfilter.service sets it) or \
             `ulimit -l unlimited`",
        );
    }
}

/// Whether this process has capability `cap` in its effective set.
fn has_capability(cap: u32) -> bool {
    effective_capabilities().is_some_and(|set| set & (1u64 << cap) != 0)
}

fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn check_capabilities(report: &mut Report) {
    let missing: Vec<&str> = CAPABILITIES
        .iter()
        .filter(|(cap, _)| !has_capability(*cap))
        .map(|(_, name)| *name)
        .collect();
    let all: Vec<&str> = CAPABILITIES.iter().map(|(_, n)| *n).collect();
    if missing.is_empty() {
        report.pass(
            "capabilities",
            format!("this process has what the daemon needs: {}", all.join(" ")),
        );
    } else {
        report.fail(
            "capabilities",
            format!(
                "this process lacks {}; the daemon needs {} (borderfilter.service grants \
                 exactly these), and without them doctor cannot check everything",
                missing.join(" "),
                all.join(" ")
            ),
            "run doctor as root, as the daemon runs: `sudo borderfilter doctor --defaults`",
        );
    }
}

fn check_interfaces(run: &RunArgs, report: &mut Report) {
    if run.ifaces.is_empty() {
        report.warn(
            "interfaces",
            "no --iface: the daemon would keep the maps but filter no interface".into(),
            format!(
                "add `--iface IF` for each interface to filter to {OPTS_VAR} in {}",
                paths::DEFAULTS_FILE
            ),
        );
    }
    let links = dataplane::netlink::links().unwrap_or_default();
    let ours: Vec<String> = dataplane::pinned_attachments(&run.pin_dir)
        .into_iter()
        .map(|a| a.iface)
        .collect();
    for iface in &run.ifaces {
        check_interface(iface, run.xdp_mode, &links, &ours, report);
    }
    if let Some(iface) = &run.redirect_iface {
        check_redirect_interface(iface, report);
    }
}

fn check_interface(
    iface: &str,
    mode: AttachMode,
    links: &[dataplane::netlink::LinkXdp],
    ours: &[String],
    report: &mut Report,
) {
    let name = format!("interface {iface}");
    let Some(index) = dataplane::ifindex(iface) else {
        report.fail(
            &name,
            format!("there is no interface {iface}"),
            "check the name with `ip link` (a VLAN interface is named like eth0.100); \
             if it appears later in boot, the unit retries every 5 seconds",
        );
        return;
    };
    let driver = netdev::driver(iface).unwrap_or_else(|| "unknown".into());
    let features = netdev::xdp_features(index).ok().flatten();
    let native = features.map(|f| f & netdev::XDP_ACT_BASIC != 0);
    let mut detail = format!("driver {driver}; ");
    detail += match native {
        Some(true) => "native XDP supported",
        Some(false) => "no native XDP: generic mode only (slower)",
        None => "the kernel cannot say whether the driver has native XDP (Linux < 6.3)",
    };
    let running = links.iter().find(|l| l.index == index).and_then(|l| l.prog);
    match running {
        Some((_, how)) if ours.iter().any(|o| o == iface) => {
            detail += &format!(
                "; runs borderfilter now ({}), which a new daemon replaces in place",
                attached_mode(how)
            );
        }
        Some((id, how)) if !has_capability(CAP_SYS_ADMIN) => {
            report.warn(
                &name,
                format!(
                    "{detail}; runs an XDP program (id {id}, {}) that doctor cannot identify \
                     without CAP_SYS_ADMIN",
                    attached_mode(how)
                ),
                "run doctor as root",
            );
            return;
        }
        Some((id, how)) => {
            report.fail(
                &name,
                format!(
                    "{detail}; runs another XDP program ({}, id {id}, {}): borderfilter will \
                     not replace it",
                    program_name(id).unwrap_or_else(|| "name unknown".into()),
                    attached_mode(how)
                ),
                format!(
                    "remove it if nothing needs it: `ip link set dev {iface} xdp off` \
                     (or `xdpgeneric off`)"
                ),
            );
            return;
        }
        None => detail += "; no XDP program attached",
    }
    let vlan_hint = if driver.contains("VLAN") {
        " On a VLAN interface XDP runs in generic mode: filter the parent interface \
         instead (the program reads up to two VLAN tags)."
    } else {
        ""
    };
    match (native, mode) {
        (Some(false), AttachMode::Native) => report.fail(
            &name,
            detail,
            format!(
                "use --xdp-mode auto or generic for {iface}, or a NIC whose driver has native \
                 XDP.{vlan_hint}"
            ),
        ),
        (Some(false), _) => report.warn(
            &name,
            detail,
            format!(
                "generic XDP filters correctly but costs more CPU per packet; for line rate \
                 use a NIC whose driver has native XDP.{vlan_hint}"
            ),
        ),
        _ => report.pass(&name, detail),
    }
}

fn attached_mode(how: dataplane::netlink::Attached) -> &'static str {
    use dataplane::netlink::Attached;
    match how {
        Attached::Driver => "native mode",
        Attached::Generic => "generic mode",
        Attached::Hardware => "offloaded",
        Attached::Multi => "several modes",
    }
}

fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
}

fn check_redirect_interface(iface: &str, report: &mut Report) {
    let name = format!("redirect {iface}");
    let Some(index) = dataplane::ifindex(iface) else {
        report.fail(
            &name,
            format!("there is no interface {iface} (--redirect-iface)"),
            "check the name with `ip link`",
        );
        return;
    };
    match netdev::xdp_features(index).ok().flatten() {
        Some(f) if f & netdev::XDP_ACT_NDO_XMIT == 0 => report.warn(
            &name,
            format!(
                "driver {} does not accept redirected frames now: redirect orders drop \
                 instead",
                netdev::driver(iface).unwrap_or_else(|| "unknown".into())
            ),
            "use an interface whose driver implements ndo_xdp_xmit; a veth accepts them \
             once its peer has GRO on (`ethtool -K PEER gro on`) or an XDP program",
        ),
        _ => report.pass(
            &name,
            "exists and accepts redirected frames (or the kernel cannot say)".into(),
        ),
    }
}

fn check_orders(run: &RunArgs, report: &mut Report) {
    let policy = Policy {
        protect: run.protect.clone(),
        redirect: if run.redirect_iface.is_some() {
            RedirectTarget::Configured
        } else {
            RedirectTarget::NotConfigured
        },
        capacity_v4: run.capacity_v4,
        capacity_v6: run.capacity_v6,
    };
    let path = run.orders.display();
    let bytes = match file::read(&run.orders, run.max_list_bytes) {
        Ok(b) => b,
        Err(e) => {
            report.fail(
                "order list",
                format!("{path}: {}", crate::error_chain(&e)),
                format!(
                    "create it (the package installs an empty list in {}) or point --orders \
                     at it",
                    paths::ORDERS
                ),
            );
            return;
        }
    };
    let (list, problems) = check_list(&bytes, &policy);
    match list {
        Some(list) => {
            let prefixes: usize = list.orders.iter().map(|o| o.prefixes.len()).sum();
            let warnings = problems.warnings().count();
            let detail = format!(
                "{path}: valid ({} orders, {prefixes} prefixes, {} exceptions)",
                list.orders.len(),
                list.exceptions.len()
            );
            if warnings == 0 {
                report.pass("order list", detail);
            } else {
                report.warn(
                    "order list",
                    format!("{detail}; {warnings} warning(s)"),
                    format!("read them: `borderfilter validate {path}`"),
                );
            }
        }
        None => {
            let errors: Vec<String> = problems.errors().map(|p| p.to_string()).collect();
            report.fail(
                "order list",
                format!(
                    "{path}: {} error(s), the daemon would apply nothing; first: {}",
                    errors.len(),
                    errors.first().map_or("", String::as_str)
                ),
                format!("see them all with `borderfilter validate {path}` and correct the file"),
            );
        }
    }
}

fn check_socket(socket: &Path, pin_dir: &Path, report: &mut Report) {
    let path = socket.display();
    if !socket.exists() {
        let parent = socket.parent().unwrap_or(Path::new("/"));
        match parent.ancestors().find(|p| p.exists()) {
            Some(p) if p.is_dir() => {
                report.pass("control socket", format!("{path} is free"));
            }
            _ => report.fail(
                "control socket",
                format!("{} cannot be created", parent.display()),
                "choose another --socket",
            ),
        }
        return;
    }
    match control::call(socket, &Request::Status, Duration::from_secs(5)) {
        Ok(r) if r.ok => {
            let status: Option<report::Status> = serde_json::from_value(r.result).ok();
            let Some(status) = status else {
                report.pass(
                    "control socket",
                    format!("{path} is held by a running borderfilter daemon"),
                );
                return;
            };
            if Path::new(&status.pin_dir) == pin_dir {
                report.pass(
                    "control socket",
                    format!(
                        "{path} is held by the running daemon (borderfilter {}, pins in {})",
                        status.version, status.pin_dir
                    ),
                );
            } else {
                report.warn(
                    "control socket",
                    format!(
                        "{path} is held by a borderfilter daemon with other pins ({})",
                        status.pin_dir
                    ),
                    "give each daemon its own --socket and --pin-dir",
                );
            }
        }
        Ok(r) => report.pass(
            "control socket",
            format!(
                "{path} is held by a running borderfilter daemon ({})",
                r.error.unwrap_or_default()
            ),
        ),
        Err(control::ClientError::NotRunning { .. }) => report.pass(
            "control socket",
            format!("{path} is a stale socket file (no daemon): the daemon replaces it"),
        ),
        Err(e) => report.fail(
            "control socket",
            format!("{path} exists but does not answer as borderfilter: {e}"),
            "stop what listens there, or choose another --socket",
        ),
    }
}

fn check_metrics(run: &RunArgs, report: &mut Report) {
    if run.no_metrics {
        report.pass("metrics", "disabled (--no-metrics)".into());
        return;
    }
    let addr = run.metrics;
    match TcpListener::bind(addr) {
        Ok(_) => report.pass("metrics", format!("{addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if serves_borderfilter_metrics(addr) {
                report.pass(
                    "metrics",
                    format!("{addr} is served by a running borderfilter daemon"),
                );
            } else {
                report.fail(
                    "metrics",
                    format!("{addr} is taken by another program"),
                    "choose another address with --metrics ADDR:PORT, or --no-metrics",
                );
            }
        }
        Err(e) => report.fail(
            "metrics",
            format!("cannot listen on {addr}: {e}"),
            "use an address of this host with --metrics ADDR:PORT, or --no-metrics",
        ),
    }
}

/// Whether `addr` answers `GET /metrics` with borderfilter's metrics.
fn serves_borderfilter_metrics(addr: SocketAddr) -> bool {
    let answer = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, METRICS_TIMEOUT)?;
        s.set_read_timeout(Some(METRICS_TIMEOUT))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: doctor\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.take(4 << 20).read_to_string(&mut body)?;
        Ok(body)
    };
    answer().is_ok_and(|b| b.contains("borderfilter_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_files_are_read_as_systemd_reads_them() {
        let text = "# comment\n; also\n\nBORDERFILTER_OPTS=\"--iface eth0 \\\"x\\\"\"\n\
                    OTHER='a b'\nPLAIN=c d \nLONG=one \\\ntwo\n";
        assert_eq!(
            environment_file(text),
            vec![
                ("BORDERFILTER_OPTS".into(), "--iface eth0 \"x\"".into()),
                ("OTHER".into(), "a b".into()),
                ("PLAIN".into(), "c d".into()),
                ("LONG".into(), "one two".into()),
            ]
        );
    }

    #[test]
    fn options_in_the_defaults_file_are_parsed_as_run_options() {
        let dir = std::env::temp_dir().join(format!("bf-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("defaults");
        std::fs::write(
            &file,
            "BORDERFILTER_OPTS=\"--iface eth0 --iface eth1 --protect 192.0.2.0/24\"\n",
        )
        .expect("write");
        let mut report = Report::default();
        let given = PathBuf::from(paths::SOCKET);
        let (run, socket) =
            options_from_file(&file, given.clone(), &mut report).expect("valid options");
        assert_eq!(run.ifaces, ["eth0", "eth1"]);
        assert_eq!(run.protect.len(), 1);
        assert_eq!(socket, given);

        std::fs::write(
            &file,
            "BORDERFILTER_SOCKET=/run/a.sock\nBORDERFILTER_OPTS=\"--socket /run/b.sock\"\n",
        )
        .expect("write");
        let (_, socket) =
            options_from_file(&file, given.clone(), &mut report).expect("valid options");
        assert_eq!(socket, Path::new("/run/b.sock"), "the options win");

        std::fs::write(&file, "BORDERFILTER_OPTS=\"--iface\"\n").expect("write");
        let mut report = Report::default();
        assert!(options_from_file(&file, given, &mut report).is_none());
        assert_eq!(report.0[0].status, Status::Fail, "{:?}", report.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
