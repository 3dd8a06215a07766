//! The network's side: the interfaces, the order list, the control socket and the
//! metrics address.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use super::{
    defaults::OPTS_VAR,
    host::{has_capability, CAP_SYS_ADMIN},
    netdev, Report,
};
use crate::{
    cli::RunArgs,
    control::{self, report, Request},
    dataplane::{self, AttachMode},
    orders::{
        file,
        validate::{check as check_list, Policy, RedirectTarget},
    },
    paths,
};

const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn check_interfaces(run: &RunArgs, report: &mut Report) {
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

pub(super) fn check_orders(run: &RunArgs, report: &mut Report) {
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

pub(super) fn check_socket(socket: &Path, pin_dir: &Path, report: &mut Report) {
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

pub(super) fn check_metrics(run: &RunArgs, report: &mut Report) {
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
