//! End to end: a real HTTP scrape of the daemon's /metrics counts exactly the packets
//! sent, passes promtool, and /healthz follows the state of the order list.

use std::{
    io::Write,
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use borderfilter_tests::{
    daemon::Daemon,
    poll,
    topology::{exception, order, order_list, Topology},
    traffic::{body, http_get, sock, udp_send, Listeners, UDP_PORT},
};

const METRICS: &str = "127.0.0.1:10431";

fn scrape(t: &Topology) -> String {
    let addr: SocketAddr = METRICS.parse().unwrap();
    let (status, text) =
        http_get(&t.router, addr, "/metrics", None).expect("the metrics endpoint answers");
    assert_eq!(status, 200, "{text}");
    body(&text).to_string()
}

/// The value of the sample `name{labels}` in a scrape (labels as written, in order).
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
        .trim()
        .parse()
        .expect("a number")
}

fn healthz(t: &Topology) -> (u16, String) {
    let (status, text) =
        http_get(&t.router, METRICS.parse().unwrap(), "/healthz", None).expect("healthz answers");
    (status, body(&text).to_string())
}

#[test]
fn scrape_counts_exactly_what_was_sent_and_passes_promtool() {
    let t = Topology::new("metrics");
    t.write_orders(&order_list(
        &[
            order("X-1", "drop", &["198.51.100.0/24"], ""),
            order("M-1", "monitor", &["203.0.113.80"], ""),
        ],
        &[exception("198.51.100.53", "shared resolver")],
    ));
    let _d = Daemon::start(&t, &["--metrics", METRICS]);
    let server = Listeners::start(&t.server, &["198.51.100.53"]);

    let before = scrape(&t);
    let x_packets = "borderfilter_order_packets_total{order=\"X-1\",action=\"drop\"}";
    let x_bytes = "borderfilter_order_bytes_total{order=\"X-1\",action=\"drop\"}";
    let exempt = "borderfilter_verdicts_total{verdict=\"exempt\"}";
    assert_eq!(
        sample(
            &before,
            "borderfilter_order_packets_total{order=\"M-1\",action=\"monitor\"}"
        ),
        0.0,
        "every order appears, even at zero"
    );

    let (n, m, payload) = (37u64, 23u64, 100usize);
    udp_send(&t.client, None, sock("198.51.100.10", UDP_PORT), n, payload);
    udp_send(&t.client, None, sock("198.51.100.53", UDP_PORT), m, payload);
    poll::until(
        "the exempt datagrams to arrive",
        Duration::from_secs(3),
        || {
            (
                server.udp("198.51.100.53") == m,
                server.udp("198.51.100.53"),
            )
        },
    );
    let after = poll::until(
        "the scrape to show the dropped packets",
        Duration::from_secs(3),
        || {
            let s = scrape(&t);
            (
                sample(&s, x_packets) - sample(&before, x_packets) >= n as f64,
                s,
            )
        },
    );
    // Ethernet 14 + IPv4 20 + UDP 8 + payload, as the XDP program sees the frame.
    let frame = (14 + 20 + 8 + payload) as f64;
    assert_eq!(
        sample(&after, x_packets) - sample(&before, x_packets),
        n as f64,
        "order X-1 counted exactly the {n} datagrams"
    );
    assert_eq!(
        sample(&after, x_bytes) - sample(&before, x_bytes),
        n as f64 * frame,
        "and their bytes"
    );
    assert_eq!(
        sample(&after, exempt) - sample(&before, exempt),
        m as f64,
        "the exempt verdict counted the {m} datagrams"
    );
    assert_eq!(sample(&after, "borderfilter_orderlist_in_sync"), 1.0);
    assert_eq!(
        sample(
            &after,
            "borderfilter_attached{iface=\"rc\",mode=\"native\"}"
        ),
        1.0
    );
    assert_eq!(sample(&after, "borderfilter_orders{state=\"active\"}"), 2.0);
    assert_eq!(
        sample(
            &after,
            "borderfilter_prefixes{family=\"ipv4\",kind=\"exception\"}"
        ),
        1.0
    );
    assert!(!after.contains("198.51.100.10"), "no per-address series");

    // promtool reads the scrape as Prometheus would.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by `cargo xtask setup`");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(after.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/prometheus/alerts.yml"),
        ])
        .output()
        .unwrap();
    assert!(
        rules.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&rules.stdout)
    );

    // OpenMetrics when asked for.
    let (status, text) = http_get(
        &t.router,
        METRICS.parse().unwrap(),
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("application/openmetrics-text") && text.trim_end().ends_with("# EOF"),
        "{text}"
    );
}

#[test]
fn a_rejected_list_shows_in_metrics_and_healthz_within_a_second() {
    let t = Topology::new("health");
    let good = order_list(&[order("H-1", "drop", &["198.51.100.0/24"], "")], &[]);
    t.write_orders(&good);
    let d = Daemon::start(&t, &["--metrics", METRICS]);
    assert_eq!(healthz(&t).0, 200, "{:?}", healthz(&t));
    let rejected = "borderfilter_sync_total{result=\"rejected\"}";
    let before = sample(&scrape(&t), rejected);

    // A mistyped CLI command is refused, but the list in force is fine: no rejected
    // list, no failing health, only the count of refused edits.
    let out = d.cli(&["block", "add", "198.51.100.0/33", "--order", "H-1"]);
    assert_eq!(out.status.code(), Some(1));
    let s = scrape(&t);
    assert_eq!(sample(&s, rejected), before);
    assert_eq!(sample(&s, "borderfilter_cli_edits_refused_total"), 1.0);
    assert_eq!(healthz(&t).0, 200, "{:?}", healthz(&t));

    t.write_orders(&good.replace("198.51.100.0/24", "198.51.100.0/33"));
    let (status, text) = poll::until(
        "healthz to turn 503 and say why",
        Duration::from_secs(1),
        || {
            let h = healthz(&t);
            (h.0 == 503 && h.1.contains("refused"), h)
        },
    );
    assert_eq!(status, 503);
    assert!(
        text.contains("refused") && text.contains("198.51.100.0/33"),
        "{text}"
    );
    let s = scrape(&t);
    assert_eq!(sample(&s, rejected) - before, 1.0);
    assert_eq!(sample(&s, "borderfilter_orderlist_in_sync"), 0.0);

    t.write_orders(&good);
    poll::until("healthz to turn 200 again", Duration::from_secs(1), || {
        let h = healthz(&t);
        (h.0 == 200, h)
    });
    assert_eq!(sample(&scrape(&t), "borderfilter_orderlist_in_sync"), 1.0);
}
