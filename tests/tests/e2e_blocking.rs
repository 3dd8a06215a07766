//! End to end: the daemon on a router namespace, real TCP, UDP and ICMP from a client
//! namespace to a server namespace, IPv4 and IPv6.

use std::{net::IpAddr, time::Duration};

use borderfilter_tests::{
    daemon::Daemon,
    poll,
    topology::{exception, order, order_list, Topology, CLIENT_V4, CLIENT_V6},
    traffic::{ping, sock, tcp_connects, udp_send, Listeners, TCP_PORT, UDP_PORT},
};

const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(3);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid")
}

/// The list most tests start from.
fn standard_list() -> String {
    order_list(
        &[
            order(
                "DROP-1",
                "drop",
                &["198.51.100.0/24", "2001:db8:66::/48"],
                "",
            ),
            order(
                "MON-1",
                "monitor",
                &["203.0.113.64/26", "2001:db8:77::20"],
                "",
            ),
        ],
        &[
            exception("198.51.100.53", "shared resolver"),
            exception("2001:db8:66::53", "shared resolver"),
        ],
    )
}

/// Counter of one order, from `stats --json`.
fn order_packets(d: &Daemon, id: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["--json", "stats"])).expect("json");
    v["result"]["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["id"] == id)
        .and_then(|o| o["packets"].as_u64())
        .unwrap_or_else(|| panic!("no order {id} in stats: {v}"))
}

#[test]
fn blocked_addresses_are_unreachable_both_ways_and_the_rest_reachable() {
    let t = Topology::new("blocking");
    t.write_orders(&standard_list());
    let d = Daemon::start(&t, &[]);
    let server = Listeners::start(
        &t.server,
        borderfilter_tests::topology::SERVER_V4
            .iter()
            .chain(borderfilter_tests::topology::SERVER_V6)
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
    );
    let client = Listeners::start(&t.client, &[CLIENT_V4, CLIENT_V6]);

    // Allowed, exempt and monitored: reachable over TCP and ICMP.
    for addr in [
        "203.0.113.10",
        "198.51.100.53",
        "203.0.113.70",
        "2001:db8:77::10",
        "2001:db8:66::53",
        "2001:db8:77::20",
    ] {
        assert!(
            tcp_connects(&t.client, sock(addr, TCP_PORT), LONG),
            "TCP to {addr} should connect"
        );
        assert!(
            ping(&t.client, ip(addr), LONG),
            "ping {addr} should be answered"
        );
    }
    // Blocked: TCP times out, ICMP unanswered, and the server never sees a connection.
    for addr in ["198.51.100.10", "198.51.100.20", "2001:db8:66::10"] {
        assert!(
            !tcp_connects(&t.client, sock(addr, TCP_PORT), SHORT),
            "TCP to blocked {addr} connected"
        );
        assert!(
            !ping(&t.client, ip(addr), SHORT),
            "ping to blocked {addr} was answered"
        );
        assert_eq!(
            server.tcp(addr),
            0,
            "the server saw a connection to blocked {addr}"
        );
    }

    // UDP: datagrams to a blocked address never arrive; to a monitored one all arrive,
    // and the monitor order counts exactly them.
    let before = order_packets(&d, "MON-1");
    udp_send(&t.client, None, sock("198.51.100.10", UDP_PORT), 50, 100);
    udp_send(&t.client, None, sock("203.0.113.70", UDP_PORT), 40, 100);
    udp_send(&t.client, None, sock("2001:db8:66::10", UDP_PORT), 50, 100);
    poll::until("40 datagrams at the monitored address", LONG, || {
        (server.udp("203.0.113.70") == 40, server.udp("203.0.113.70"))
    });
    assert_eq!(
        order_packets(&d, "MON-1") - before,
        40,
        "the monitor order counts what it saw"
    );
    assert_eq!(server.udp("198.51.100.10"), 0);
    assert_eq!(server.udp("2001:db8:66::10"), 0);

    // The other way: traffic *from* a blocked address (its replies) is dropped too.
    udp_send(
        &t.server,
        Some(ip("198.51.100.10")),
        sock(CLIENT_V4, UDP_PORT),
        20,
        64,
    );
    udp_send(
        &t.server,
        Some(ip("2001:db8:66::10")),
        sock(CLIENT_V6, UDP_PORT),
        20,
        64,
    );
    udp_send(
        &t.server,
        Some(ip("203.0.113.10")),
        sock(CLIENT_V4, UDP_PORT),
        10,
        64,
    );
    udp_send(
        &t.server,
        Some(ip("2001:db8:77::10")),
        sock(CLIENT_V6, UDP_PORT),
        10,
        64,
    );
    poll::until("allowed datagrams at the client", LONG, || {
        let got = (client.udp(CLIENT_V4), client.udp(CLIENT_V6));
        (got == (10, 10), got)
    });
    assert_eq!(
        (client.udp(CLIENT_V4), client.udp(CLIENT_V6)),
        (10, 10),
        "datagrams from blocked sources reached the client"
    );

    let check = d.ok(&["check", "198.51.100.10"]);
    assert!(
        check.contains("drop by order DROP-1 (Test Court"),
        "{check}"
    );
    let check = d.ok(&["check", "198.51.100.53"]);
    assert!(
        check.contains("exempt by exception 198.51.100.53/32 (shared resolver)"),
        "{check}"
    );
}

#[test]
fn direction_limited_orders_block_one_way_only() {
    let t = Topology::new("direction");
    t.write_orders(&order_list(
        &[
            order(
                "DST-ONLY",
                "drop",
                &["198.51.100.10"],
                "\"direction\": \"dst\"",
            ),
            order(
                "SRC-ONLY",
                "drop",
                &["198.51.100.20"],
                "\"direction\": \"src\"",
            ),
        ],
        &[],
    ));
    let _d = Daemon::start(&t, &[]);
    let server = Listeners::start(&t.server, &["198.51.100.10", "198.51.100.20"]);
    let client = Listeners::start(&t.client, &[CLIENT_V4]);
    // To the dst-only address: dropped. From it: passes.
    udp_send(&t.client, None, sock("198.51.100.10", UDP_PORT), 10, 64);
    udp_send(
        &t.server,
        Some(ip("198.51.100.10")),
        sock(CLIENT_V4, UDP_PORT),
        10,
        64,
    );
    // To the src-only address: passes (TCP would not: its replies come from it).
    udp_send(&t.client, None, sock("198.51.100.20", UDP_PORT), 10, 64);
    poll::until("datagrams that must pass", LONG, || {
        let got = (client.udp(CLIENT_V4), server.udp("198.51.100.20"));
        (got == (10, 10), got)
    });
    assert_eq!(
        server.udp("198.51.100.10"),
        0,
        "dst-only order let traffic to its address pass"
    );
    // From the src-only address: dropped.
    udp_send(
        &t.server,
        Some(ip("198.51.100.20")),
        sock(CLIENT_V4, UDP_PORT),
        10,
        64,
    );
    udp_send(
        &t.server,
        Some(ip("203.0.113.10")),
        sock(CLIENT_V4, UDP_PORT),
        1,
        64,
    );
    poll::until("the marker datagram", LONG, || {
        (client.udp(CLIENT_V4) == 11, client.udp(CLIENT_V4))
    });
}
