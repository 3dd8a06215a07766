//! Commands that work without the daemon: `run` (which is the daemon), `validate`, and
//! `check --orders FILE`.

use std::path::Path;

use serde_json::json;
use time::OffsetDateTime;

use super::{RunArgs, ValidateArgs, EXIT_REFUSED};
use crate::{
    daemon::{self, Config},
    orders::{
        file,
        validate::{check as check_list, Policy, RedirectTarget},
        Side,
    },
    semantics::{decide, Decision},
};

pub fn run_daemon(args: RunArgs, socket: std::path::PathBuf) -> anyhow::Result<i32> {
    if args.ifaces.is_empty() {
        log::warn!("no --iface given: the daemon keeps the maps in sync but filters no interface");
    }
    let names = args.names.config()?;
    daemon::run(Config {
        names,
        ifaces: args.ifaces,
        orders: args.orders,
        socket,
        pin_dir: args.pin_dir,
        xdp_mode: args.xdp_mode,
        protect: args.protect,
        metrics: (!args.no_metrics).then_some(args.metrics),
        capacity_v4: args.capacity_v4,
        capacity_v6: args.capacity_v6,
        max_list_bytes: args.max_list_bytes,
        public_read: args.public_read,
        audit_log: args.audit_log,
        redirect: args
            .redirect_iface
            .map(|iface| daemon::config::RedirectConfig {
                iface,
                to: match (args.redirect_mac, args.redirect_neighbor) {
                    (Some(mac), _) => daemon::config::RedirectTo::Mac(mac),
                    (None, Some(ip)) => daemon::config::RedirectTo::Neighbor(ip),
                    (None, None) => unreachable!("clap requires one of them"),
                },
            }),
        fleet: match Some(args.fleet).filter(|e| !e.endpoints.is_empty()) {
            Some(etcd) => Some(daemon::source::etcd::FleetConfig {
                etcd: etcd.options(),
                router: match args.router_name.or_else(crate::fleet::hostname) {
                    Some(name) => name,
                    None => anyhow::bail!("this host has no name: give --router-name"),
                },
                copy: args.fleet_copy,
                keep: crate::fleet::DEFAULT_KEEP,
            }),
            None => None,
        },
    })?;
    Ok(0)
}

pub fn validate(args: &ValidateArgs, json: bool) -> anyhow::Result<i32> {
    let policy = Policy {
        protect: args.protect.clone(),
        redirect: RedirectTarget::Unknown,
        capacity_v4: args.capacity_v4,
        capacity_v6: args.capacity_v6,
    };
    let (list, problems) = match file::read(&args.file, args.max_list_bytes) {
        Ok(bytes) => check_list(&bytes, &policy),
        Err(e) => {
            let message = crate::error_chain(&e);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"valid": false, "error": message}))?
                );
            } else {
                eprintln!("error: {message}");
            }
            return Ok(EXIT_REFUSED);
        }
    };
    let valid = list.is_some();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "valid": valid,
                "orders": list.as_ref().map(|l| l.orders.len()),
                "exceptions": list.as_ref().map(|l| l.exceptions.len()),
                "problems": problems,
            }))?
        );
    } else {
        eprint!("{problems}");
        if let Some(l) = &list {
            let prefixes: usize = l.orders.iter().map(|o| o.prefixes.len()).sum();
            println!(
                "{}: valid ({} orders, {prefixes} prefixes, {} exceptions{})",
                args.file.display(),
                l.orders.len(),
                l.exceptions.len(),
                match problems.warning_count() {
                    0 => String::new(),
                    n => format!(", {n} warning(s)"),
                }
            );
        } else {
            eprintln!(
                "{}: {} error(s); nothing would be applied",
                args.file.display(),
                problems.error_count()
            );
        }
    }
    Ok(if valid { 0 } else { EXIT_REFUSED })
}

pub fn check(address: &str, path: &Path, json: bool) -> anyhow::Result<i32> {
    let addr: std::net::IpAddr = address
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{address:?} is not an IPv4 or IPv6 address"))?;
    let bytes = file::read(path, file::DEFAULT_MAX_BYTES)?;
    let (list, problems) = check_list(&bytes, &Policy::default());
    let Some(list) = list else {
        eprint!("{problems}");
        anyhow::bail!("{} is not a valid order list", path.display());
    };
    let now = OffsetDateTime::now_utc();
    // Names are resolved by the daemon only: this answer knows their addresses not.
    let naming: Vec<&str> = list
        .orders
        .iter()
        .filter(|o| !o.domains.is_empty())
        .map(|o| o.id.as_str())
        .collect();
    let sides: Vec<(Side, Decision)> = Side::BOTH
        .iter()
        .map(|&s| (s, decide(&list, now, addr, s)))
        .collect();
    if json {
        let sides: Vec<_> = sides
            .iter()
            .map(|(s, d)| {
                let verdict = match d {
                    Decision::Pass => "pass".to_string(),
                    Decision::Exempt { .. } => "exempt".to_string(),
                    Decision::Order { order, .. } => {
                        verdict_text(list.orders[*order].action, *s == Side::Src)
                    }
                };
                json!({"side": s, "verdict": verdict, "decision": d})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"address": addr, "sides": sides, "orders_naming_domains": naming})
            )?
        );
    } else {
        for (side, d) in &sides {
            let side = if *side == Side::Dst {
                "destination"
            } else {
                "source"
            };
            match d {
                Decision::Pass => println!("{addr} as {side}: pass (no order covers it)"),
                Decision::Exempt { exception, prefix } => {
                    println!(
                        "{addr} as {side}: exempt by exception {prefix} ({})",
                        list.exceptions[*exception].reason
                    )
                }
                Decision::Order { order, prefix, .. } => {
                    let o = &list.orders[*order];
                    println!(
                        "{addr} as {side}: {} by order {} ({}, issued {}), prefix {prefix}",
                        verdict_text(o.action, side == "source"),
                        o.id,
                        o.authority,
                        o.issued.text
                    )
                }
            }
        }
        if !naming.is_empty() {
            println!(
                "note: {} order(s) name domains ({}); what the names resolve to is known to the daemon only: ask it with `borderfilter check {addr}`",
                naming.len(),
                naming.join(", ")
            );
        }
    }
    Ok(0)
}

/// What the data plane does for an order's action on one side: a redirect order sends
/// requests *to* the service to the notice host, and drops traffic *from* it.
fn verdict_text(action: crate::orders::Action, source: bool) -> String {
    if source && action == crate::orders::Action::Redirect {
        "drop".to_string()
    } else {
        action.to_string()
    }
}
