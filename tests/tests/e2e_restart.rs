//! End to end: killing and restarting the daemon never lets a blocked packet through,
//! and allowed traffic keeps flowing.

use std::time::Duration;

use borderfilter_tests::{
    daemon::{verify, Daemon},
    poll,
    topology::{order, order_list, Topology},
    traffic::{sock, Listeners, Stream, UDP_PORT},
};

const BLOCKED: [&str; 2] = ["198.51.100.10", "2001:db8:66::10"];
const ALLOWED: [&str; 2] = ["203.0.113.10", "2001:db8:77::10"];

#[test]
fn sigkill_and_restart_never_leak_a_blocked_packet() {
    let t = Topology::new("restart");
    t.write_orders(&order_list(
        &[order(
            "KEEP",
            "drop",
            &["198.51.100.0/24", "2001:db8:66::/48"],
            "",
        )],
        &[],
    ));
    let mut d = Daemon::start(&t, &[]);
    let server = Listeners::start(&t.server, &[BLOCKED[0], BLOCKED[1], ALLOWED[0], ALLOWED[1]]);
    let targets: Vec<_> = BLOCKED
        .iter()
        .chain(&ALLOWED)
        .map(|a| sock(a, UDP_PORT))
        .collect();
    let mut stream = Stream::start(&t.client, &targets, Duration::from_millis(1));
    poll::until("allowed traffic to flow", Duration::from_secs(5), || {
        (server.udp(ALLOWED[0]) > 50, server.udp(ALLOWED[0]))
    });

    for round in 0..5 {
        if round % 2 == 0 {
            d.kill();
        } else {
            d.stop();
        }
        // While no daemon runs, the pinned maps and the attached program keep enforcing.
        let before = server.udp(ALLOWED[0]);
        poll::until(
            "allowed traffic while no daemon runs",
            Duration::from_secs(5),
            || (server.udp(ALLOWED[0]) > before + 50, server.udp(ALLOWED[0])),
        );
        d = Daemon::start(&t, &[]);
        let status = d.status();
        assert_eq!(status["in_sync"], true, "restart {round}: {status}");
        assert_eq!(
            status["attached"].as_array().map(Vec::len),
            Some(2),
            "both interfaces still attached: {status}"
        );
    }
    stream.stop();
    let settle = server.udp(ALLOWED[0]);
    poll::until(
        "the last datagrams to arrive",
        Duration::from_secs(2),
        || {
            let now = server.udp(ALLOWED[0]);
            let quiet = now == settle || now == stream.sent(targets[2]);
            (quiet, now)
        },
    );
    for b in BLOCKED {
        assert_eq!(
            server.udp(b),
            0,
            "datagrams to blocked {b} reached the server"
        );
    }
    for (i, a) in ALLOWED.iter().enumerate() {
        let sent = stream.sent(targets[2 + i]);
        let got = server.udp(a);
        eprintln!(
            "allowed {a}: sent {sent}, received {got}, lost {}",
            sent.saturating_sub(got)
        );
        assert!(
            got * 100 >= sent * 99,
            "allowed traffic to {a} must keep flowing: sent {sent}, received {got}"
        );
    }
    let audit = d.ok(&["audit"]);
    assert!(
        audit.matches("start").count() >= 6,
        "each start is in the audit trail:\n{audit}"
    );
}

/// `borderfilter verify` proves the maps equal the file, and catches it when they do not:
/// a file changed while no daemon runs differs (the pinned maps keep the old list) until
/// the daemon starts again.
#[test]
fn verify_compares_the_maps_with_the_file() {
    let t = Topology::new("verify");
    let list = |extra: &str| {
        let mut prefixes = vec!["198.51.100.0/24", "2001:db8:66::/48"];
        if !extra.is_empty() {
            prefixes.push(extra);
        }
        order_list(
            &[
                order("KEEP", "drop", &prefixes, ""),
                order("WATCH", "monitor", &["198.51.100.128/25"], ""),
            ],
            &[borderfilter_tests::topology::exception(
                "198.51.100.53/32",
                "resolver",
            )],
        )
    };
    t.write_orders(&list(""));
    let mut d = Daemon::start(&t, &[]);
    let (agrees, report) = verify(&t);
    assert!(agrees, "verify after start: {report:#}");
    assert_eq!(report["entries"], 4, "{report:#}");
    let digest = report["maps_sha256"].clone();

    d.kill();
    t.write_orders(&list("203.0.113.0/28"));
    let (agrees, report) = verify(&t);
    assert!(
        !agrees,
        "a prefix missing from the maps must be found: {report:#}"
    );
    assert_eq!(report["differences_total"], 1, "{report:#}");
    let diff = report["differences"][0].as_str().unwrap_or_default();
    assert!(
        diff.starts_with("203.0.113.0/28: the maps hold absent; the file says dst drop by KEEP"),
        "{diff}"
    );
    assert_eq!(report["maps_sha256"], digest, "verify changes nothing");

    let _d = Daemon::start(&t, &[]);
    let (agrees, report) = verify(&t);
    assert!(agrees, "verify after the restart: {report:#}");
    assert_ne!(report["maps_sha256"], digest, "the maps changed");
}
