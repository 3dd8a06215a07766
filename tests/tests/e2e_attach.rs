//! End to end: the filter stays on the interfaces it is configured for. If its XDP
//! program is removed from an interface behind the daemon's back (`ip link set dev IF xdp
//! off`), the daemon notices within its heartbeat, attaches it again, says so in its log
//! and metrics, and blocked traffic is blocked again.

use std::time::Duration;

use borderfilter_tests::{
    daemon::Daemon,
    poll,
    topology::{order, order_list, Topology, ROUTER_IFACES},
    traffic::{sock, tcp_connects, Listeners, TCP_PORT},
};

const BLOCKED: &str = "198.51.100.10";

fn attached(d: &Daemon) -> Vec<String> {
    d.status()["attached"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["iface"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_program_removed_behind_the_daemons_back_is_attached_again() {
    let t = Topology::new("reattach");
    t.write_orders(&order_list(
        &[order("KEEP", "drop", &["198.51.100.0/24"], "")],
        &[],
    ));
    let d = Daemon::start(&t, &["--metrics", "127.0.0.1:10439"]);
    let _server = Listeners::start(&t.server, &[BLOCKED]);
    assert!(!tcp_connects(
        &t.client,
        sock(BLOCKED, TCP_PORT),
        Duration::from_millis(500)
    ));
    assert_eq!(attached(&d).len(), 2);

    // Someone removes the program from the client-facing interface (both modes).
    for mode in ["xdp", "xdpgeneric", "xdpdrv"] {
        let _ = t
            .router
            .ip(&["link", "set", "dev", ROUTER_IFACES[0], mode, "off"]);
    }
    let log = poll::until(
        "the daemon to attach the filter again",
        Duration::from_secs(10),
        || {
            let log = d.log_text();
            (log.contains("attached it again"), log)
        },
    );
    assert!(
        log.contains(&format!("{}: the filter was removed", ROUTER_IFACES[0])),
        "the log names the interface:\n{log}"
    );
    assert_eq!(
        attached(&d).len(),
        2,
        "status shows both interfaces attached again"
    );
    poll::until(
        "the blocked address to be blocked again",
        Duration::from_secs(5),
        || {
            let reached = tcp_connects(
                &t.client,
                sock(BLOCKED, TCP_PORT),
                Duration::from_millis(500),
            );
            (!reached, reached)
        },
    );
    let metrics = t
        .router
        .exec("curl", &["-s", "http://127.0.0.1:10439/metrics"]);
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("borderfilter_reattached_total{iface=\"rc\"} 1")),
        "the metrics count the re-attachment:\n{text}"
    );
}
