//! End to end, orders that name domains: the collateral guard (protected and
//! shared-hosting ranges), bad names, CNAME loops and huge answers, bad files at start,
//! and the block-notice page naming the site asked for. The DNS server is real (knot).

use std::time::Duration;

use borderfilter_tests::{
    daemon::{verify_with, Daemon},
    dns::{DnsServer, Record},
    domains::{
        addresses, all_server_addrs, audit_names, blocked, domain_order, start, wait_blocked, ZONE,
    },
    poll,
    topology::{order_list, Topology, NOTICE_IFACE, NOTICE_V4},
    traffic::{body, http_get_host, sock, tcp_connects, Listeners, TCP_PORT},
};
use serde_json::Value;

const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(3);

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
    let status = d.result(&["status"]);
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
    let before = d.result(&["status"])["applied"]["sha256"].clone();
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
            d.result(&["status"])["applied"]["sha256"],
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
            let s = d.result(&["status"]);
            let failing = s["names"]["failing"].to_string();
            let many = addresses(&d, "DOM-M", "many.allofmp3.example").len();
            (failing.contains("loop1") && many == 64, s)
        },
    );
    assert!(
        status["names"]["failing"].to_string().contains("CNAME"),
        "{status}"
    );
    let show = d.result(&["orders", "show", "DOM-M"]);
    assert_eq!(show["domains"][0]["dropped"], 236, "{show}");
    assert!(d.ok(&["orders", "show", "DOM-M"]).contains("NOT blocked"));
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
        let v = d.result(&["check", "198.51.100.10"]);
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
