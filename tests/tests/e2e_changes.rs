//! End to end: changes through the CLI and through the file take effect; an invalid file
//! changes nothing and shows in `status`; order windows open and close on their own.

use std::time::Duration;

use borderfilter_tests::{
    daemon::Daemon,
    poll,
    topology::{order, order_list, Topology},
    traffic::{sock, tcp_connects, Listeners, TCP_PORT},
};

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(3);
const TARGET: &str = "198.51.100.20";
const TARGET6: &str = "2001:db8:77::20";

fn reachable(t: &Topology, addr: &str) -> bool {
    tcp_connects(
        &t.client,
        sock(addr, TCP_PORT),
        if addr.contains(':') {
            LONG
        } else {
            SHORT.max(Duration::from_millis(600))
        },
    )
}

#[test]
fn cli_changes_take_effect_and_land_in_the_file() {
    let t = Topology::new("cli-changes");
    t.write_orders(&order_list(&[], &[]));
    let d = Daemon::start(&t, &[]);
    let _server = Listeners::start(&t.server, &[TARGET, TARGET6, "203.0.113.10"]);
    assert!(reachable(&t, TARGET), "nothing is blocked yet");

    d.ok(&[
        "orders",
        "add",
        "--id",
        "CLI-1",
        "--authority",
        "Test Court",
        "--issued",
        "2026-01-01",
        "--action",
        "drop",
        TARGET,
        TARGET6,
    ]);
    // The CLI returns once the change is applied: no waiting needed.
    assert!(
        !reachable(&t, TARGET),
        "{TARGET} is blocked as soon as `orders add` returns"
    );
    assert!(
        !tcp_connects(&t.client, sock(TARGET6, TCP_PORT), SHORT),
        "{TARGET6} is blocked too"
    );
    let file = std::fs::read_to_string(t.orders_path()).expect("the file");
    assert!(
        file.contains("\"CLI-1\"") && file.contains(TARGET),
        "the change is in the file:\n{file}"
    );

    d.ok(&["block", "remove", TARGET, "--order", "CLI-1"]);
    assert!(reachable(&t, TARGET), "unblocked by `block remove`");
    d.ok(&["block", "add", TARGET, "--order", "CLI-1"]);
    assert!(!reachable(&t, TARGET));
    d.ok(&["exceptions", "add", TARGET, "--reason", "court agreed"]);
    assert!(reachable(&t, TARGET), "an exception opens a hole");
    d.ok(&["exceptions", "remove", TARGET]);
    assert!(!reachable(&t, TARGET));

    // Refused changes change nothing and exit 1 with the reason.
    let out = d.cli(&["block", "add", "198.51.100.7/24", "--order", "CLI-1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host bits are set; the network is 198.51.100.0/24"),
        "{err}"
    );
    let out = d.cli(&["block", "add", "203.0.113.10", "--order", "NO-SUCH"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no order with id \"NO-SUCH\""));
    assert!(reachable(&t, "203.0.113.10"));
    // Usage errors exit 2.
    assert_eq!(d.cli(&["block", "add"]).status.code(), Some(2));

    d.ok(&["orders", "remove", "CLI-1"]);
    assert!(reachable(&t, TARGET));
    assert!(!std::fs::read_to_string(t.orders_path())
        .unwrap()
        .contains("CLI-1"));
}

#[test]
fn file_edits_take_effect_and_invalid_ones_change_nothing() {
    let t = Topology::new("file-changes");
    t.write_orders(&order_list(&[], &[]));
    let d = Daemon::start(&t, &[]);
    let _server = Listeners::start(&t.server, &[TARGET]);
    assert!(reachable(&t, TARGET));

    let blocking = order_list(&[order("FILE-1", "drop", &[TARGET], "")], &[]);
    t.write_orders(&blocking);
    poll::until("the edited file to block the target", LONG, || {
        let r = reachable(&t, TARGET);
        (!r, r)
    });

    // An invalid edit: the old list stays in force and status says why.
    t.write_orders(&blocking.replace("2026-01-01", "2026-13-01"));
    let status = poll::until("status to show the refusal", LONG, || {
        let s = d.status();
        (!s["refusal"].is_null(), s)
    });
    let problems = status["refusal"]["problems"].to_string();
    assert!(
        problems.contains("FILE-1") && problems.contains("2026-13-01"),
        "{problems}"
    );
    assert_eq!(status["in_sync"], false);
    assert!(!reachable(&t, TARGET), "the old list still blocks");
    let human = d.ok(&["status"]);
    assert!(
        human.contains("REFUSED") && human.contains("month out of range"),
        "{human}"
    );

    // Fixing it clears the refusal.
    t.write_orders(&order_list(&[], &[]));
    poll::until("the fixed list to be applied", LONG, || {
        let s = d.status();
        (s["refusal"].is_null() && s["in_sync"] == true, s)
    });
    assert!(reachable(&t, TARGET));
}

#[test]
fn order_windows_open_and_close_without_a_restart() {
    let t = Topology::new("expiry");
    let now = time::OffsetDateTime::now_utc();
    let at = |secs: i64| {
        (now + time::Duration::seconds(secs))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    t.write_orders(&order_list(
        &[
            order(
                "ENDS-SOON",
                "drop",
                &[TARGET],
                &format!("\"expires\": \"{}\"", at(4)),
            ),
            order(
                "STARTS-SOON",
                "drop",
                &["203.0.113.10"],
                &format!("\"valid_from\": \"{}\"", at(4)),
            ),
        ],
        &[],
    ));
    let d = Daemon::start(&t, &[]);
    let _server = Listeners::start(&t.server, &[TARGET, "203.0.113.10"]);
    assert!(!reachable(&t, TARGET), "in force before it expires");
    assert!(reachable(&t, "203.0.113.10"), "not yet in force");
    poll::until("the windows to turn", Duration::from_secs(15), || {
        let state = (reachable(&t, TARGET), reachable(&t, "203.0.113.10"));
        (state == (true, false), state)
    });
    let orders = d.ok(&["orders", "list"]);
    assert!(
        orders.contains("ENDS-SOON") && orders.contains("expired"),
        "{orders}"
    );
    let audit = d.ok(&["audit", "--order", "STARTS-SOON"]);
    assert!(
        audit.contains("clock") && audit.contains("started STARTS-SOON"),
        "the audit trail shows when it started:\n{audit}"
    );
}
