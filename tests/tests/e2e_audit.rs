//! End to end: the audit trail says which prefixes each change gave to or took from which
//! order, keeps a large change's prefixes in a side file it names, and `audit --prefix`
//! answers "since when has this address been blocked, under which order, and who changed
//! it" from it.

use std::time::Duration;

use borderfilter_tests::{
    daemon::Daemon,
    poll,
    topology::{order, order_list, Topology},
};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(5);

/// `audit --json` (or with more arguments), parsed.
#[track_caller]
fn audit(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json", "audit"];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_str(&d.ok(&all)).expect("audit --json is JSON");
    v["result"].clone()
}

/// The (order, change, prefix) triples of an `audit --prefix` answer.
fn events(history: &Value) -> Vec<(String, String, String)> {
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["order"].as_str().unwrap_or("(exception)").to_string(),
                e["change"].as_str().unwrap().to_string(),
                e["prefix"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn holders(history: &Value) -> Vec<(String, String)> {
    history["now"]
        .as_array()
        .expect("now")
        .iter()
        .map(|n| {
            (
                n["order"].as_str().unwrap_or("(exception)").to_string(),
                n["prefix"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn triple(order: &str, change: &str, prefix: &str) -> (String, String, String) {
    (order.into(), change.into(), prefix.into())
}

#[test]
fn the_trail_names_prefixes_per_order_and_answers_for_one_address() {
    let t = Topology::new("audit-prefixes");
    t.write_orders(&order_list(
        &[
            order("HOSTING-1", "drop", &["203.0.113.0/24"], ""),
            order("SITE-2", "drop", &["198.51.100.7"], ""),
        ],
        &[],
    ));
    let d = Daemon::start(&t, &[]);

    // The address moves to a more specific order, gets an exception, and loses both.
    d.ok(&["block", "add", "203.0.113.98", "--order", "SITE-2"]);
    let during = audit(&d, &["--prefix", "203.0.113.98"]);
    assert_eq!(
        holders(&during),
        vec![
            ("HOSTING-1".to_string(), "203.0.113.0/24".to_string()),
            ("SITE-2".to_string(), "203.0.113.98/32".to_string()),
        ],
        "both orders list it now: {during:#}"
    );
    d.ok(&[
        "exceptions",
        "add",
        "203.0.113.98",
        "--reason",
        "court agreed",
    ]);
    d.ok(&["block", "remove", "203.0.113.98", "--order", "SITE-2"]);
    d.ok(&["exceptions", "remove", "203.0.113.98"]);
    // A change through the file: HOSTING-1 goes.
    t.write_orders(&order_list(
        &[order("SITE-2", "drop", &["198.51.100.7"], "")],
        &[],
    ));
    poll::until("the file change to be applied", LONG, || {
        let s = d.status();
        (
            s["in_sync"] == true && s["applied"]["orders_active"] == 1,
            s,
        )
    });

    // Each record names its prefixes per order.
    let records = audit(&d, &[]);
    let records = records.as_array().expect("records");
    let block_add = records
        .iter()
        .find(|r| {
            r["who"]["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("add 1 prefix(es) to order SITE-2"))
        })
        .expect("the block add is recorded");
    assert_eq!(
        block_add["prefixes"],
        serde_json::json!([{"order": "SITE-2", "added": ["203.0.113.98/32"]}]),
        "{block_add:#}"
    );
    let file = records.last().unwrap();
    assert_eq!(file["who"]["kind"], "file");
    assert_eq!(
        file["prefixes"],
        serde_json::json!([{"order": "HOSTING-1", "removed": ["203.0.113.0/24"]}]),
        "{file:#}"
    );

    // The whole history of the address, oldest first, with who did each step.
    let history = audit(&d, &["--prefix", "203.0.113.98"]);
    assert_eq!(
        events(&history),
        vec![
            triple("HOSTING-1", "added", "203.0.113.0/24"),
            triple("SITE-2", "added", "203.0.113.98/32"),
            // The exception takes the /32 over from the order that held it.
            triple("SITE-2", "removed", "203.0.113.98/32"),
            triple("(exception)", "added", "203.0.113.98/32"),
            // Removing the order's listing changes nothing the data plane holds (the
            // exception decides the /32); removing the exception gives it back to the /24.
            triple("(exception)", "removed", "203.0.113.98/32"),
            triple("HOSTING-1", "removed", "203.0.113.0/24"),
        ],
        "{history:#}"
    );
    let whos: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["who"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(whos, ["start", "cli", "cli", "cli", "cli", "file"]);
    assert!(holders(&history).is_empty(), "nothing holds it now");
    // Other addresses are not in it.
    let other = audit(&d, &["--prefix", "198.51.100.7"]);
    assert_eq!(
        events(&other),
        vec![triple("SITE-2", "added", "198.51.100.7/32")]
    );
    let human = d.ok(&["audit", "--prefix", "198.51.100.7"]);
    assert!(
        human.contains("blocked by order SITE-2 through 198.51.100.7/32 since"),
        "{human}"
    );
    // A prefix query finds what lies inside it.
    let inside = audit(&d, &["--prefix", "203.0.113.0/25"]);
    assert_eq!(events(&inside).len(), 6, "{inside:#}");

    // Bad input: a clear error, exit 1 (the daemon refuses it) or 2 (usage).
    let out = d.cli(&["audit", "--prefix", "203.0.113.98/24"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host bits") && err.contains("--prefix"),
        "{err}"
    );
    let out = d.cli(&["audit", "--prefix", "1.2.3.4", "--order", "SITE-2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_large_change_keeps_its_prefixes_in_a_side_file_the_record_names() {
    let t = Topology::new("audit-side");
    // 1,500 hosts in the benchmarking range: more than a record carries itself.
    let hosts: Vec<String> = (0..1500)
        .map(|i| format!("198.18.{}.{}", i / 250, 1 + i % 250))
        .collect();
    let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    t.write_orders(&order_list(&[order("BULK-1", "drop", &refs, "")], &[]));
    let d = Daemon::start(&t, &[]);

    let records = audit(&d, &[]);
    let start = &records[0];
    assert!(
        start["prefixes"].is_null(),
        "the record does not carry them: {start:#}"
    );
    let side = start["prefixes_file"]
        .as_str()
        .expect("a side file is named");
    let text = std::fs::read_to_string(t.dir.join(side)).expect("the side file exists");
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["order"], "BULK-1");
    assert_eq!(line["added"].as_array().unwrap().len(), 1500);

    let history = audit(&d, &["--prefix", "198.18.3.7"]);
    assert_eq!(
        events(&history),
        vec![triple("BULK-1", "added", "198.18.3.7/32")],
        "{history:#}"
    );
    assert_eq!(history["problems"], serde_json::json!([]));
}
