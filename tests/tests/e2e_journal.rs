//! End to end: a CLI edit to a large order list is acknowledged once its journal line is
//! synced, and the file is written whole afterwards; a journal left behind by a crash is
//! made again on the file at the next start; a daemon SIGKILLed right after `block add`
//! returns loses nothing.

use std::{path::PathBuf, time::Duration};

use borderfilter_tests::{
    daemon::{verify, Daemon},
    poll,
    topology::{order, order_list, Topology},
    traffic::{sock, tcp_connects, Listeners, TCP_PORT},
};
use sha2::{Digest, Sha256};

const SHORT: Duration = Duration::from_millis(600);
const LONG: Duration = Duration::from_secs(10);
const TARGET: &str = "198.51.100.20";

/// A list of more than 1 MiB (the size above which edits go through the journal): 80,000
/// hosts in 240.0.0.0/8, where no test sends a packet, and a small order to edit.
fn large_list() -> String {
    let hosts: Vec<String> = (0..80_000u32)
        .map(|i| format!("240.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
        .collect();
    let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let text = order_list(
        &[
            order("BULK", "drop", &refs, ""),
            order("JRN", "drop", &["198.51.100.1"], ""),
        ],
        &[],
    );
    assert!(text.len() > 1 << 20, "the list must be larger than 1 MiB");
    text
}

fn journal(t: &Topology) -> PathBuf {
    let mut name = t.orders_path().into_os_string();
    name.push(".journal");
    name.into()
}

fn file(t: &Topology) -> String {
    std::fs::read_to_string(t.orders_path()).expect("the order list")
}

fn blocked(t: &Topology, addr: &str) -> bool {
    !tcp_connects(&t.client, sock(addr, TCP_PORT), SHORT)
}

#[test]
fn edits_to_a_large_list_are_journaled_then_written_into_the_file() {
    let t = Topology::new("journal-edits");
    t.write_orders(&large_list());
    let d = Daemon::start(&t, &[]);
    let _server = Listeners::start(&t.server, &[TARGET]);
    assert!(!blocked(&t, TARGET));

    d.ok(&["block", "add", TARGET, "--order", "JRN"]);
    assert!(blocked(&t, TARGET), "enforced when the command returns");
    let shown = d.ok(&["--json", "orders", "show", "JRN"]);
    assert!(shown.contains(TARGET), "the list in force has it: {shown}");
    // A burst of edits: each acknowledged, all written.
    let more: Vec<String> = (1..=20).map(|i| format!("203.0.113.{i}")).collect();
    for a in &more {
        d.ok(&["block", "add", a, "--order", "JRN"]);
    }
    poll::until(
        "the file to hold every edit and the journal to go",
        LONG,
        || {
            let text = file(&t);
            let done = text.contains(TARGET)
                && more.iter().all(|a| text.contains(&format!("\"{a}\"")))
                && !journal(&t).exists();
            (done, journal(&t).exists())
        },
    );
    let s = d.status();
    assert_eq!(s["in_sync"], true, "{s}");
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report:#}");
}

#[test]
fn a_journal_left_behind_is_made_again_on_the_file_at_start() {
    let t = Topology::new("journal-replay");
    let text = large_list();
    t.write_orders(&text);
    let base = format!("{:x}", Sha256::digest(text.as_bytes()));
    // What a daemon killed between acknowledging two edits and writing them leaves: one
    // that applies, one that no longer does (the operator removed what it removes).
    let lines = [
        serde_json::json!({"base": base, "after": "1".repeat(64),
            "edit": {"edit": "add_prefixes", "order": "JRN", "prefixes": [TARGET]}}),
        serde_json::json!({"base": "1".repeat(64), "after": "2".repeat(64),
            "edit": {"edit": "remove_prefixes", "order": "JRN", "prefixes": ["203.0.113.99"]}}),
    ];
    let journal_text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(journal(&t), journal_text).unwrap();

    let d = Daemon::start(&t, &[]);
    let _server = Listeners::start(&t.server, &[TARGET]);
    assert!(blocked(&t, TARGET), "the journaled edit is enforced");
    assert!(file(&t).contains(TARGET), "and written into the file");
    assert!(!journal(&t).exists(), "the journal is folded in");
    let log = d.log_text();
    assert!(
        log.contains("no longer applies") && log.contains("remove 1 prefix(es) from order JRN"),
        "the dropped edit is named:\n{log}"
    );
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report:#}");
}

#[test]
fn a_daemon_killed_right_after_block_add_loses_nothing() {
    let t = Topology::new("journal-kill");
    t.write_orders(&large_list());
    let mut d = Daemon::start(&t, &[]);
    for round in 1..=5 {
        let addr = format!("203.0.113.{}", 100 + round);
        d.ok(&["block", "add", &addr, "--order", "JRN"]);
        // Killed at once: the file may not hold the edit yet; the journal does.
        d.kill();
        // While no daemon runs, `verify` reads the file with its journal.
        let (agrees, report) = verify(&t);
        assert!(agrees, "round {round}: {report:#}");
        d = Daemon::start(&t, &[]);
        let shown = d.ok(&["--json", "orders", "show", "JRN"]);
        assert!(
            shown.contains(&addr),
            "round {round}: {addr} survived: {shown}"
        );
        poll::until("the edit to be in the file", LONG, || {
            let has = file(&t).contains(&format!("\"{addr}\""));
            (has && !journal(&t).exists(), has)
        });
    }
}
