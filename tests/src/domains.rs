//! What the tests of orders that name domains share (`e2e_domains*.rs`): the zone the DNS
//! server serves, orders of names, the daemon started with it as resolver, and the
//! questions the tests ask the daemon about names.

use std::time::Duration;

use serde_json::Value;

use crate::{
    daemon::Daemon,
    dns::DnsServer,
    poll,
    topology::{Topology, SERVER_V4, SERVER_V6},
};

/// The zone the tests' DNS server serves.
pub const ZONE: &str = "allofmp3.example";

/// An order of names only.
pub fn domain_order(id: &str, action: &str, domains: &[&str], extra: &str) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "{{\"id\": \"{id}\", \"authority\": \"Test Court\", \"issued\": \"2026-01-01\", \"basis\": \"copyright\", \"action\": \"{action}\", \"domains\": [{}]{extra}}}",
        domains.join(", ")
    )
}

/// Every address the server answers on.
pub fn all_server_addrs() -> Vec<&'static str> {
    SERVER_V4.iter().chain(SERVER_V6).copied().collect()
}

/// The addresses of `name` in `orders show ID`, with their states.
pub fn addresses(d: &Daemon, order: &str, name: &str) -> Vec<(String, String)> {
    let v = d.result(&["orders", "show", order]);
    v["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["name"] == name)
        .flat_map(|n| n["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["address"].as_str().unwrap_or("").to_string(),
                a["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Whether the data plane blocks `addr` as a destination (from `check`, which also
/// compares the kernel's maps with the list).
pub fn blocked(d: &Daemon, addr: &str) -> bool {
    let v = d.result(&["check", addr]);
    assert_eq!(v["dataplane_agrees"], true, "check {addr}: {v}");
    v["sides"][0]["verdict"] == "drop"
}

/// Waits until the data plane blocks `addr` (a name is resolved, an answer moved).
#[track_caller]
pub fn wait_blocked(d: &Daemon, addr: &str, timeout: Duration, what: &str) {
    poll::until(what, timeout, || {
        let b = blocked(d, addr);
        (b, b)
    });
}

/// Every name event of the audit trail.
pub fn audit_names(d: &Daemon) -> Vec<Value> {
    d.result(&["audit"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Starts the daemon resolving through `dns`.
pub fn start(t: &Topology, dns: &DnsServer, extra: &[&str]) -> Daemon {
    let resolver = dns.resolver_arg();
    let mut args = vec!["--resolver", resolver.as_str()];
    args.extend_from_slice(extra);
    Daemon::start(t, &args)
}
