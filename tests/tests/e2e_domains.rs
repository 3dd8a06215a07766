//! End to end: orders that name domains, resolved through a real authoritative DNS
//! server (knot, in a namespace of its own behind the router), enforced on real TCP and
//! UDP from the client, followed as the zone changes, kept while DNS is down and across a
//! SIGKILL, guarded against collateral blocking, with provenance in check, orders show,
//! status, metrics and the audit trail.

use std::time::{Duration, Instant};

use borderfilter_tests::{
    daemon::{verify_with, Daemon},
    dns::{DnsServer, Record},
    poll,
    topology::{order_list, Topology, NOTICE_IFACE, NOTICE_V4, SERVER_V4, SERVER_V6},
    traffic::{
        body, http_get, http_get_host, sock, tcp_connects, udp_send, Listeners, Stream, TCP_PORT,
        UDP_PORT,
    },
};
use serde_json::Value;

const ZONE: &str = "allofmp3.example";
const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(3);

/// An order of names only.
fn domain_order(id: &str, action: &str, domains: &[&str], extra: &str) -> String {
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

fn all_server_addrs() -> Vec<&'static str> {
    SERVER_V4.iter().chain(SERVER_V6).copied().collect()
}

fn json(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_str(&d.ok(&all)).expect("json");
    v["result"].clone()
}

/// The addresses of `name` in `orders show ID`, with their states.
fn addresses(d: &Daemon, order: &str, name: &str) -> Vec<(String, String)> {
    let v = json(d, &["orders", "show", order]);
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
fn blocked(d: &Daemon, addr: &str) -> bool {
    let v = json(d, &["check", addr]);
    assert_eq!(v["dataplane_agrees"], true, "check {addr}: {v}");
    v["sides"][0]["verdict"] == "drop"
}

/// Waits until the data plane blocks `addr` (a name is resolved, an answer moved).
#[track_caller]
fn wait_blocked(d: &Daemon, addr: &str, timeout: Duration, what: &str) {
    poll::until(what, timeout, || {
        let b = blocked(d, addr);
        (b, b)
    });
}

fn audit_names(d: &Daemon) -> Vec<Value> {
    json(d, &["audit"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn start(t: &Topology, dns: &DnsServer, extra: &[&str]) -> Daemon {
    let resolver = dns.resolver_arg();
    let mut args = vec!["--resolver", resolver.as_str()];
    args.extend_from_slice(extra);
    Daemon::start(t, &args)
}

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
    let v = json(&d, &["check", "198.51.100.20"]);
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
    let status = json(&d, &["status"]);
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
    let audit = json(&d, &["audit", "--prefix", "198.51.100.10"]);
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
            let s = json(&d, &["status"]);
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
    let v = json(&d, &["check", "198.51.100.10"]);
    assert_eq!(
        v["sides"][0]["resolved_from"][0]["name"], "allofmp3.example",
        "{v}"
    );
    poll::until(
        "the restarted daemon to report the failure",
        Duration::from_secs(10),
        || {
            let s = json(&d, &["status"]);
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
        let s = json(&d, &["status"]);
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
fn shared_and_protected_addresses_are_not_blocked_and_everyone_is_told_why() {
    let t = Topology::new("dom-guard");
    let dns = DnsServer::start(
        &t,
        ZONE,
        &[
            Record::a("cdn", "203.0.113.10", 300),
            Record::a("cdn", "198.51.100.20", 300),
            Record::aaaa("cdn", "2001:db8:77::10", 300),
            Record::a("own", "203.0.113.70", 300),
        ],
    );
    let shared = t.dir.join("shared-ranges.txt");
    std::fs::write(
        &shared,
        "# CDNs and large hosters\n203.0.113.0/24 ExampleCDN\n",
    )
    .unwrap();
    t.write_orders(&order_list(
        &[
            domain_order("DOM-G", "drop", &["cdn.allofmp3.example"], ""),
            domain_order(
                "DOM-S",
                "drop",
                &["own.allofmp3.example"],
                "\"allow_shared\": true",
            ),
        ],
        &[],
    ));
    let shared_arg = shared.display().to_string();
    let d = start(
        &t,
        &dns,
        &[
            "--shared-ranges",
            &shared_arg,
            "--protect",
            "2001:db8:77::/48",
        ],
    );
    let _server = Listeners::start(&t.server, &all_server_addrs());
    wait_blocked(&d, "198.51.100.20", LONG, "the names resolved");
    wait_blocked(&d, "203.0.113.70", LONG, "the names resolved");
    // The order's other address is blocked; the shared and the protected one are not;
    // the order that allows shared ranges blocks its address in one.
    assert!(!tcp_connects(
        &t.client,
        sock("198.51.100.20", TCP_PORT),
        SHORT
    ));
    assert!(!tcp_connects(
        &t.client,
        sock("203.0.113.70", TCP_PORT),
        SHORT
    ));
    for addr in ["203.0.113.10", "2001:db8:77::10"] {
        assert!(!blocked(&d, addr), "{addr} blocked despite the guard");
        assert!(
            tcp_connects(&t.client, sock(addr, TCP_PORT), LONG),
            "{addr}"
        );
    }
    let status = json(&d, &["status"]);
    let guarded = status["names"]["guarded"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(guarded.len(), 2, "{status}");
    let why = |addr: &str| -> String {
        guarded
            .iter()
            .find(|g| g["address"] == addr)
            .map(|g| g["why"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(
        why("203.0.113.10").contains("shared-hosting range 203.0.113.0/24 (ExampleCDN)"),
        "{status}"
    );
    assert!(why("2001:db8:77::10").contains("--protect"), "{status}");
    let text = d.ok(&["check", "203.0.113.10"]);
    assert!(
        text.contains("NOT BLOCKED 203.0.113.10: cdn.allofmp3.example (order DOM-G)")
            && text.contains("allow_shared"),
        "{text}"
    );
    let events = audit_names(&d);
    let guarded_events: Vec<&Value> = events.iter().filter(|e| e["guarded"].is_array()).collect();
    assert!(
        guarded_events
            .iter()
            .any(|e| e["guarded"].to_string().contains("2001:db8:77::10")),
        "{events:?}"
    );
    assert!(
        d.log_text().contains("NOT blocking 203.0.113.10"),
        "{}",
        d.log_text()
    );
    // verify, given the daemon's guard, proves the maps hold the names' addresses and
    // nothing else; without the guard it names the guarded address it expected blocked.
    let (agrees, report) = verify_with(
        &t,
        &[
            "--shared-ranges",
            &shared_arg,
            "--protect",
            "2001:db8:77::/48",
        ],
    );
    assert!(agrees, "{report}");
    let (agrees, report) = verify_with(&t, &["--protect", "2001:db8:77::/48"]);
    assert!(
        !agrees
            && report["differences"]
                .to_string()
                .contains("203.0.113.10/32"),
        "{report}"
    );
}

#[test]
fn bad_names_are_refused_and_loops_and_huge_answers_are_bounded() {
    let t = Topology::new("dom-bad");
    let mut records = vec![
        Record::a("@", "198.51.100.10", 300),
        Record::cname("loop1", "loop2", 300),
        Record::cname("loop2", "loop1", 300),
    ];
    for i in 0..300u32 {
        let addr = if i < 250 {
            format!("198.51.100.{}", i + 1)
        } else {
            format!("203.0.113.{}", i - 249)
        };
        records.push(Record::a("many", &addr, 300));
    }
    let dns = DnsServer::start(&t, ZONE, &records);
    let good = order_list(
        &[domain_order("DOM-1", "drop", &["allofmp3.example"], "")],
        &[],
    );
    t.write_orders(&good);
    let d = start(&t, &dns, &["--dns-min-ttl", "1"]);
    wait_blocked(&d, "198.51.100.10", LONG, "the name resolved");
    let before = json(&d, &["status"])["applied"]["sha256"].clone();
    let long_label = "a".repeat(64);
    let long_name = format!("{}.example", ["abcdefghijklmnopqrstuvwxy"; 10].join("."));
    for (name, why) in [
        ("*.allofmp3.example", "wildcards are not supported"),
        ("allofmp3..example", "empty label"),
        ("allofmp3!.example", "letters, digits and hyphens"),
        ("198.51.100.20", "an IP address, not a name"),
        (&format!("{long_label}.example") as &str, "at most 63"),
        (&long_name as &str, "at most 253"),
    ] {
        t.write_orders(&order_list(
            &[domain_order("DOM-1", "drop", &[name], "")],
            &[],
        ));
        let out = d.cli(&["reload"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{name}: {text}");
        assert!(
            text.contains("domains[0]") && text.contains(why),
            "{name}: {text}"
        );
        assert_eq!(
            json(&d, &["status"])["applied"]["sha256"],
            before,
            "{name} changed the list in force"
        );
        assert!(
            blocked(&d, "198.51.100.10"),
            "{name}: the name's address was released"
        );
        // Offline validation says the same.
        let out = std::process::Command::new(borderfilter_tests::daemon::bin())
            .args(["validate", &t.orders_path().display().to_string()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() && text.contains(why),
            "{name}: {text}"
        );
    }

    // A CNAME loop fails (and says so); a name with 300 addresses is bounded to 64.
    t.write_orders(&order_list(
        &[
            domain_order("DOM-1", "drop", &["allofmp3.example"], ""),
            domain_order("DOM-L", "drop", &["loop1.allofmp3.example"], ""),
            domain_order("DOM-M", "drop", &["many.allofmp3.example"], ""),
        ],
        &[],
    ));
    d.ok(&["reload"]);
    let status = poll::until(
        "the loop reported, the big answer resolved",
        Duration::from_secs(10),
        || {
            let s = json(&d, &["status"]);
            let failing = s["names"]["failing"].to_string();
            let many = addresses(&d, "DOM-M", "many.allofmp3.example").len();
            (failing.contains("loop1") && many == 64, s)
        },
    );
    assert!(
        status["names"]["failing"].to_string().contains("CNAME"),
        "{status}"
    );
    let show = json(&d, &["orders", "show", "DOM-M"]);
    assert_eq!(show["domains"][0]["dropped"], 236, "{show}");
    assert!(d.ok(&["orders", "show", "DOM-M"]).contains("NOT blocked"));
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

#[test]
fn the_notice_page_names_the_site_the_subscriber_asked_for() {
    let t = Topology::with_notice("dom-notice");
    // blåbærgrød.allofmp3.example, in the zone in its IDNA form.
    let dns = DnsServer::start(
        &t,
        ZONE,
        &[Record::a("xn--blbrgrd-fxak7p", "198.51.100.10", 300)],
    );
    t.write_orders(&order_list(
        &[domain_order(
            "DOM-R",
            "redirect",
            &["blåbærgrød.allofmp3.example"],
            "",
        )],
        &[],
    ));
    let d = start(
        &t,
        &dns,
        &[
            "--redirect-iface",
            NOTICE_IFACE,
            "--redirect-neighbor",
            NOTICE_V4,
        ],
    );
    let _notice = Daemon::notice(&t);
    let server = Listeners::start(&t.server, &all_server_addrs());
    poll::until("the name resolved", LONG, || {
        let v = json(&d, &["check", "198.51.100.10"]);
        (v["sides"][0]["verdict"] == "redirect", v)
    });
    let to = sock("198.51.100.10", TCP_PORT);
    let (code, text) = http_get_host(
        &t.client,
        to,
        "xn--blbrgrd-fxak7p.allofmp3.example",
        "/",
        Some("text/plain"),
    )
    .expect("an answer from the notice host");
    assert_eq!(code, 451, "{text}");
    let page = body(&text);
    assert!(
        page.contains("blocked access to blåbærgrød.allofmp3.example")
            && page.contains("Case: DOM-R"),
        "{page}"
    );
    // Another Host: the page names the address, never the header.
    let (_, text) =
        http_get_host(&t.client, to, "other.example", "/", Some("text/plain")).expect("an answer");
    assert!(
        body(&text).contains("blocked access to 198.51.100.10") && !text.contains("other.example"),
        "{text}"
    );
    assert_eq!(
        server.tcp("198.51.100.10"),
        0,
        "a request reached the server"
    );
}

#[test]
fn a_bad_shared_ranges_file_or_state_file_stops_the_start_and_the_filter_keeps_enforcing() {
    let t = Topology::new("dom-badfile");
    let dns = DnsServer::start(&t, ZONE, &[Record::a("@", "198.51.100.10", 300)]);
    t.write_orders(&order_list(
        &[domain_order("DOM-1", "drop", &["allofmp3.example"], "")],
        &[],
    ));
    let mut d = start(&t, &dns, &[]);
    wait_blocked(&d, "198.51.100.10", LONG, "the name resolved");
    d.stop();
    let shared = t.dir.join("shared.txt");
    std::fs::write(&shared, "203.0.113.0/24 ExampleCDN\n198.51.100.7/24 typo\n").unwrap();
    let shared_arg = shared.display().to_string();
    let state = t.dir.join("names.json");
    let good_state = std::fs::read(&state).expect("the daemon kept its names");
    for (what, setup) in [("shared ranges", 0), ("state file", 1)] {
        let mut extra = vec!["--resolver", "192.0.2.194"];
        if setup == 0 {
            extra.extend(["--shared-ranges", shared_arg.as_str()]);
        } else {
            std::fs::write(
                &state,
                b"{\"version\": 1, \"names\": {\"allofmp3.example\": 7}}",
            )
            .unwrap();
        }
        let mut bad = Daemon::launch(&t, &extra);
        let status = bad.wait_exit(Duration::from_secs(30));
        assert!(!status.success(), "{what}: the daemon started");
        let log = bad.log_text();
        let want = if setup == 0 {
            format!("--shared-ranges {shared_arg}: line 2: \"198.51.100.7/24\": host bits are set")
        } else {
            format!("the resolved names {} cannot be read", state.display())
        };
        assert!(log.contains(&want), "{what}: {log}");
        // The filter keeps enforcing from its pinned maps meanwhile.
        assert!(
            !tcp_connects(&t.client, sock("198.51.100.10", TCP_PORT), SHORT),
            "{what}"
        );
        let _server = Listeners::start(&t.server, &["203.0.113.10"]);
        assert!(
            tcp_connects(&t.client, sock("203.0.113.10", TCP_PORT), LONG),
            "{what}"
        );
        drop(_server);
    }
    std::fs::write(&state, good_state).unwrap();
    let d = start(&t, &dns, &[]);
    assert!(blocked(&d, "198.51.100.10"));
}
