//! End to end at scale: a list of a million IPv4 and a hundred thousand IPv6 prefixes
//! loads, is enforced, and a 1% change to it applies. Times are printed, not asserted
//! (the benchmarks compare them against baselines).

use std::time::{Duration, Instant};

use borderfilter_tests::{
    daemon::Daemon,
    poll,
    topology::{big_list, Topology},
    traffic::{sock, tcp_connects, Listeners, TCP_PORT},
};

#[test]
fn a_million_ipv4_and_100k_ipv6_prefixes_load_and_are_enforced() {
    let t = Topology::new("scale");
    let built = Instant::now();
    let mut text = big_list(1_000_000, 100_000, 100, 1);
    // One real address among them, to show enforcement with traffic.
    text = text.replacen(
        "\"prefixes\": [\n",
        "\"prefixes\": [\n\"198.51.100.10\",\n",
        1,
    );
    t.write_orders(&text);
    eprintln!(
        "list of {} MB written in {:?}",
        text.len() / 1_000_000,
        built.elapsed()
    );

    let started = Instant::now();
    let d = Daemon::start(&t, &["--capacity-v4", "1200000", "--capacity-v6", "200000"]);
    let loaded = started.elapsed();
    let status = d.status();
    assert_eq!(status["in_sync"], true, "{status}");
    assert_eq!(status["applied"]["prefixes_ipv4"], 1_000_001);
    assert_eq!(status["applied"]["prefixes_ipv6"], 100_000);
    eprintln!("daemon start to enforcing 1,000,001 IPv4 + 100,000 IPv6 prefixes: {loaded:?}");

    let _server = Listeners::start(&t.server, &["198.51.100.10", "203.0.113.10"]);
    assert!(!tcp_connects(
        &t.client,
        sock("198.51.100.10", TCP_PORT),
        Duration::from_millis(300)
    ));
    assert!(tcp_connects(
        &t.client,
        sock("203.0.113.10", TCP_PORT),
        Duration::from_secs(3)
    ));

    // A 1% change: one order in a hundred replaced by another with other prefixes.
    let mut list: serde_json::Value = serde_json::from_str(&text).expect("the list is JSON");
    let other: serde_json::Value = serde_json::from_str(&big_list(11_000, 0, 1, 2)).expect("JSON");
    list["orders"][7]["id"] = "BULK-7-NEW".into();
    list["orders"][7]["prefixes"] = other["orders"][0]["prefixes"].clone();
    let changed = serde_json::to_string_pretty(&list).expect("serializes");
    let before = d.status()["applied"]["sha256"].clone();
    let edit = Instant::now();
    t.write_orders(&changed);
    poll::until(
        "the 1% change to be applied",
        Duration::from_secs(60),
        || {
            let s = d.status();
            (
                s["applied"]["sha256"] != before && s["in_sync"] == true,
                s["applied"]["sha256"].clone(),
            )
        },
    );
    eprintln!(
        "1% change (11,000 prefixes out, 11,000 in) applied in {:?} after the file was replaced",
        edit.elapsed()
    );
}

#[test]
#[ignore = "writes the list the profiling scratch test reads"]
fn write_big_list() {
    std::fs::write("/tmp/bfx/big.json", big_list(1_000_000, 100_000, 100, 1)).unwrap();
}
