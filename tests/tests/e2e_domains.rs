//! End to end: orders that name domains, resolved through a real authoritative DNS
//! server (knot, in a namespace of its own behind the router), enforced on real TCP and
//! UDP from the client, followed as the zone changes, kept while DNS is down and across a
//! SIGKILL, with provenance in check, orders show, status, metrics and the audit trail.
//! The collateral guard, bad input and the notice page: `e2e_domains_guard.rs`.

use std::time::{Duration, Instant};

use borderfilter_tests::{
    daemon::verify_with,
    dns::{DnsServer, Record},
    domains::{
        addresses, all_server_addrs, audit_names, blocked, domain_order, start, wait_blocked, ZONE,
    },
    poll,
    topology::{order_list, Topology},
    traffic::{
        body, http_get, sock, tcp_connects, udp_send, Listeners, Stream, TCP_PORT, UDP_PORT,
    },
};

const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(3);

#[test]
fn both_names_addresses_are_blocked_and_check_says_which_name_gave_them() {
    let t = Topology::new("dom-block");
    let dns = DnsServer::start(
        &t,
        ZONE,
        &[
            Record::a("@", "198.51.100.10", 300),
            Record::a("www", "198.51.100.20", 120),
            Record::aaaa("www", "2001:db8:66::10", 120),
        ],
    );
    t.write_orders(&order_list(
        &[domain_order(
            "DOM-1",
            "drop",
            &["allofmp3.example", "WWW.AllOfMP3.example."],
            "",
        )],
        &[],
    ));
    let d = start(&t, &dns, &[]);
    let server = Listeners::start(&t.server, &all_server_addrs());
    poll::until("both names resolved", LONG, || {
        let n = addresses(&d, "DOM-1", "www.allofmp3.example").len()
            + addresses(&d, "DOM-1", "allofmp3.example").len();
        (n == 3, n)
    });
    for addr in ["198.51.100.10", "198.51.100.20", "2001:db8:66::10"] {
        assert!(
            !tcp_connects(&t.client, sock(addr, TCP_PORT), SHORT),
            "TCP to {addr} passed"
        );
        udp_send(&t.client, None, sock(addr, UDP_PORT), 20, 64);
    }
    for addr in [
        "198.51.100.53",
        "203.0.113.10",
        "2001:db8:66::53",
        "2001:db8:77::10",
    ] {
        assert!(
            tcp_connects(&t.client, sock(addr, TCP_PORT), LONG),
            "TCP to {addr} (no name gives it) was blocked"
        );
        udp_send(&t.client, None, sock(addr, UDP_PORT), 5, 64);
    }
    poll::until("UDP to unnamed addresses to arrive", LONG, || {
        let n = server.udp("203.0.113.10");
        (n == 5, n)
    });
    for addr in ["198.51.100.10", "198.51.100.20", "2001:db8:66::10"] {
        assert_eq!(server.udp(addr), 0, "UDP to {addr} passed");
    }

    // Provenance: check names the name, when it resolved and the TTL.
    let v = d.result(&["check", "198.51.100.20"]);
    let side = &v["sides"][0];
    assert_eq!(side["verdict"], "drop", "{v}");
    assert_eq!(side["order"]["id"], "DOM-1", "{v}");
    assert_eq!(
        side["resolved_from"][0]["name"], "www.allofmp3.example",
        "{v}"
    );
    assert_eq!(side["resolved_from"][0]["ttl"], 120, "{v}");
    let text = d.ok(&["check", "198.51.100.10"]);
    assert!(
        text.contains("DOM-1")
            && text.contains("because allofmp3.example resolved to it")
            && text.contains("TTL 300"),
        "{text}"
    );
    let show = d.ok(&["orders", "show", "DOM-1"]);
    assert!(
        show.contains("www.allofmp3.example") && show.contains("2001:db8:66::10"),
        "{show}"
    );
    // Status, and the audit trail: who added which address.
    let status = d.result(&["status"]);
    assert_eq!(status["names"]["names"], 2, "{status}");
    assert_eq!(status["names"]["addresses_current"], 3, "{status}");
    let events = audit_names(&d);
    assert!(
        events.iter().any(|e| e["name"] == "www.allofmp3.example"
            && e["orders"][0] == "DOM-1"
            && e["added"].as_array().is_some_and(|a| a.len() == 2)),
        "{events:?}"
    );
    let text = d.ok(&["audit"]);
    assert!(
        text.contains("www.allofmp3.example (TTL 120): +198.51.100.20 +2001:db8:66::10"),
        "{text}"
    );
    let audit = d.result(&["audit", "--prefix", "198.51.100.10"]);
    assert!(audit.to_string().contains("\"dns\""), "{audit}");

    // The CLI adds an order of names; one another order resolved already holds its
    // addresses as soon as the command returns.
    let add = |name: &str| {
        d.cli(&[
            "orders",
            "add",
            "--id",
            "DOM-2",
            "--authority",
            "Test Court",
            "--issued",
            "2026-01-01",
            "--action",
            "monitor",
            "--domain",
            name,
        ])
    };
    let out = add("*.allofmp3.example");
    assert!(!out.status.success(), "a wildcard was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wildcards are not supported"),
        "{out:?}"
    );
    assert!(add("allofmp3.example").status.success());
    assert_eq!(
        addresses(&d, "DOM-2", "allofmp3.example"),
        vec![("198.51.100.10".to_string(), "current".to_string())]
    );
    assert!(d.ok(&["orders", "list"]).contains("0 + 1 name(s)"));
}

#[test]
fn a_changed_record_is_followed_and_the_old_address_released_after_its_grace() {
    let t = Topology::new("dom-follow");
    let dns = DnsServer::start(&t, ZONE, &[Record::a("@", "198.51.100.10", 2)]);
    t.write_orders(&order_list(
        &[domain_order("DOM-F", "drop", &["allofmp3.example"], "")],
        &[],
    ));
    let d = start(&t, &dns, &["--dns-min-ttl", "1", "--dns-grace", "4"]);
    let server = Listeners::start(&t.server, &all_server_addrs());
    wait_blocked(&d, "198.51.100.10", LONG, "the name resolved");
    let mut stream = Stream::start(
        &t.client,
        &[sock("198.51.100.10", UDP_PORT)],
        Duration::from_millis(5),
    );

    dns.set_records(&[Record::a("@", "198.51.100.20", 2)]);
    let changed = Instant::now();
    wait_blocked(
        &d,
        "198.51.100.20",
        Duration::from_secs(3),
        "the new address blocked within TTL + 1 s",
    );
    let took = changed.elapsed();
    borderfilter_tests::measured(
        "e2e_domains",
        format!("new address enforced {took:?} after the zone changed (TTL 2 s)"),
    );
    assert!(!tcp_connects(
        &t.client,
        sock("198.51.100.20", TCP_PORT),
        SHORT
    ));
    // The old address is in grace: still blocked, and says until when.
    let state = addresses(&d, "DOM-F", "allofmp3.example");
    assert!(
        state.contains(&("198.51.100.10".into(), "grace".into())),
        "{state:?}"
    );
    assert!(
        state.contains(&("198.51.100.20".into(), "current".into())),
        "{state:?}"
    );
    // Not one datagram to it passes until the grace ends...
    poll::until(
        "the old address released after its grace",
        Duration::from_secs(10),
        || {
            let passed = server.udp("198.51.100.10");
            let held = addresses(&d, "DOM-F", "allofmp3.example")
                .iter()
                .any(|(a, _)| a == "198.51.100.10");
            assert!(held || !blocked(&d, "198.51.100.10") || passed == 0);
            if held {
                assert_eq!(passed, 0, "a datagram to the address in grace passed");
            }
            (!held, passed)
        },
    );
    let released = changed.elapsed();
    assert!(
        released >= Duration::from_secs(4),
        "released after {released:?}, before the grace of 4 s"
    );
    // ... and then it reaches the server.
    poll::until("traffic to the released address to arrive", LONG, || {
        let n = server.udp("198.51.100.10");
        (n > 0, n)
    });
    stream.stop();
    assert!(tcp_connects(
        &t.client,
        sock("198.51.100.10", TCP_PORT),
        LONG
    ));
    let (agrees, report) = verify_with(&t, &[]);
    assert!(agrees, "{report}");
    let events = audit_names(&d);
    for key in ["added", "missing", "released"] {
        assert!(
            events
                .iter()
                .any(|e| e[key].to_string().contains("198.51.100.")),
            "no audit event with {key}: {events:?}"
        );
    }
}

#[test]
fn dns_down_keeps_the_addresses_blocked_across_a_sigkill_and_says_so() {
    let t = Topology::new("dom-down");
    let mut dns = DnsServer::start(
        &t,
        ZONE,
        &[
            Record::a("@", "198.51.100.10", 1),
            Record::aaaa("@", "2001:db8:66::10", 1),
        ],
    );
    t.write_orders(&order_list(
        &[domain_order("DOM-D", "drop", &["allofmp3.example"], "")],
        &[],
    ));
    let extra = [
        "--dns-min-ttl",
        "1",
        "--dns-timeout",
        "1",
        "--metrics",
        METRICS,
    ];
    let mut d = start(&t, &dns, &extra);
    poll::until("the name resolved", LONG, || {
        let n = addresses(&d, "DOM-D", "allofmp3.example").len();
        (n == 2, n)
    });
    dns.stop();
    let status = poll::until(
        "status to report the failure",
        Duration::from_secs(10),
        || {
            let s = d.result(&["status"]);
            (
                s["names"]["failing"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty()),
                s,
            )
        },
    );
    let failing = &status["names"]["failing"][0];
    assert_eq!(failing["name"], "allofmp3.example", "{status}");
    assert!(
        failing["error"].as_str().unwrap().contains("timed out"),
        "{status}"
    );
    assert!(d.ok(&["status"]).contains("FAILING allofmp3.example"));
    for addr in ["198.51.100.10", "2001:db8:66::10"] {
        assert!(blocked(&d, addr), "{addr} released while DNS is down");
        assert!(!tcp_connects(&t.client, sock(addr, TCP_PORT), SHORT));
    }
    // Metrics count resolutions and failures per order.
    let scrape = metric_lines(&t);
    for want in [
        "borderfilter_dns_names_failing{order=\"DOM-D\"} 1",
        "borderfilter_dns_addresses{order=\"DOM-D\",state=\"current\"} 2",
        "borderfilter_dns_guarded_addresses{order=\"DOM-D\"} 0",
    ] {
        assert!(scrape.contains(want), "no {want:?} in\n{scrape}");
    }
    assert!(
        scrape.lines().any(
            |l| l.starts_with("borderfilter_dns_failures_total{order=\"DOM-D\"} ")
                && !l.ends_with(" 0")
        ),
        "{scrape}"
    );
    assert!(
        scrape.contains("borderfilter_dns_resolutions_total{order=\"DOM-D\"} "),
        "{scrape}"
    );

    // SIGKILL, and a start while DNS is still down: the same addresses, at once.
    d.kill();
    let d = start(&t, &dns, &extra);
    for addr in ["198.51.100.10", "2001:db8:66::10"] {
        assert!(
            blocked(&d, addr),
            "{addr} not blocked after a restart without DNS"
        );
        assert!(!tcp_connects(&t.client, sock(addr, TCP_PORT), SHORT));
    }
    let v = d.result(&["check", "198.51.100.10"]);
    assert_eq!(
        v["sides"][0]["resolved_from"][0]["name"], "allofmp3.example",
        "{v}"
    );
    poll::until(
        "the restarted daemon to report the failure",
        Duration::from_secs(10),
        || {
            let s = d.result(&["status"]);
            (
                s["names"]["failing"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty()),
                s,
            )
        },
    );
    // DNS back: the failure clears, the addresses are current again.
    dns.restart();
    poll::until("the failure to clear", Duration::from_secs(10), || {
        let s = d.result(&["status"]);
        (
            s["names"]["failing"]
                .as_array()
                .is_some_and(|f| f.is_empty()),
            s,
        )
    });
    assert!(blocked(&d, "198.51.100.10"));
}

const METRICS: &str = "127.0.0.1:10431";

fn metric_lines(t: &Topology) -> String {
    let response = http_get(&t.router, METRICS.parse().unwrap(), "/metrics", None)
        .expect("the metrics endpoint answers");
    body(&response.1).to_string()
}

#[test]
fn no_packet_to_a_blocked_address_passes_while_the_answer_moves() {
    let t = Topology::new("dom-nogap");
    let addrs = ["198.51.100.10", "198.51.100.20", "203.0.113.80"];
    let dns = DnsServer::start(&t, ZONE, &[Record::a("@", addrs[0], 1)]);
    t.write_orders(&order_list(
        &[domain_order("DOM-N", "drop", &["allofmp3.example"], "")],
        &[],
    ));
    let d = start(&t, &dns, &["--dns-min-ttl", "1", "--dns-grace", "600"]);
    let server = Listeners::start(&t.server, &all_server_addrs());
    wait_blocked(&d, addrs[0], LONG, "the name resolved");
    let targets: Vec<_> = addrs.iter().map(|a| sock(a, UDP_PORT)).collect();
    let mut flood = Stream::start(&t.client, &targets, Duration::from_micros(200));
    // The answer moves 0 -> 1 -> 2 -> 0: an address once returned stays blocked (grace
    // 600 s), a new one is blocked from the moment the daemon enforces it.
    let mut blocked_since: Vec<Option<u64>> = vec![Some(0), None, None];
    for step in [1usize, 2, 0] {
        dns.set_records(&[Record::a("@", addrs[step], 1)]);
        wait_blocked(
            &d,
            addrs[step],
            Duration::from_secs(4),
            "the new address enforced",
        );
        if blocked_since[step].is_none() {
            blocked_since[step] = Some(server.udp(addrs[step]));
        }
        for (i, since) in blocked_since.iter().enumerate() {
            if let Some(count) = since {
                assert_eq!(
                    server.udp(addrs[i]),
                    *count,
                    "a datagram to {} passed while it was blocked",
                    addrs[i]
                );
            }
        }
    }
    flood.stop();
    for (i, since) in blocked_since.iter().enumerate() {
        assert_eq!(server.udp(addrs[i]), since.unwrap(), "{}", addrs[i]);
        assert!(
            flood.sent(targets[i]) > 1000,
            "the flood sent too little to {}",
            addrs[i]
        );
    }
    assert_eq!(server.udp(addrs[0]), 0);
}
