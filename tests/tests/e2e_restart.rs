//! End to end: killing and restarting the daemon never lets a blocked packet through,
//! and allowed traffic keeps flowing.

use std::time::Duration;

use borderfilter_tests::{
    daemon::Daemon,
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
