//! End to end: no lost update. CLI edits started at the same moment, as separate
//! processes, all end up both in the file and in the maps; and an operator who replaces
//! the file while CLI edits run never has a change thrown away by the daemon (it never
//! writes back a list older than the file it replaces).

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Barrier},
    time::Duration,
};

use borderfilter_tests::{
    count,
    daemon::{bin, verify, Daemon},
    measured, poll,
    topology::{big_list, order, Topology},
};

/// Starts `borderfilter ARGS` against the daemon without waiting for it.
fn spawn_cli(d: &Daemon, args: &[String]) -> Child {
    Command::new(bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the CLI")
}

/// Waits for every command; panics naming those that failed.
#[track_caller]
fn all_succeed(children: Vec<(String, Child)>) {
    let failed: Vec<String> = children
        .into_iter()
        .filter_map(|(what, c)| {
            let out = c.wait_with_output().expect("waiting for the CLI");
            (!out.status.success()).then(|| {
                format!(
                    "`{what}` exited {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect();
    assert!(failed.is_empty(), "commands failed:\n{}", failed.join("\n"));
}

/// The list with thousands of other prefixes, and the order the edits add to.
fn base_list() -> String {
    let bulk = big_list(5_000, 500, 5, 3);
    let conc = order("CONC", "drop", &["198.51.100.0/26"], "");
    bulk.replacen("\"orders\": [", &format!("\"orders\": [{conc},\n"), 1)
}

fn file(t: &Topology) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(t.orders_path()).expect("the file"))
        .expect("the file is JSON")
}

fn prefixes_of(list: &serde_json::Value, id: &str) -> Vec<String> {
    list["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("no order {id} in the file"))["prefixes"]
        .as_array()
        .expect("prefixes")
        .iter()
        .map(|p| p.as_str().expect("text").to_string())
        .collect()
}

fn exceptions_of(list: &serde_json::Value) -> Vec<String> {
    list["exceptions"]
        .as_array()
        .expect("exceptions")
        .iter()
        .map(|e| e["prefix"].as_str().expect("text").to_string())
        .collect()
}

/// `check ADDRESS --json`: the destination verdict, the deciding order, and whether the
/// maps agree with the list.
fn check(d: &Daemon, address: &str) -> (String, Option<String>, bool) {
    let v: serde_json::Value =
        serde_json::from_str(&d.ok(&["--json", "check", address])).expect("JSON");
    let r = &v["result"];
    let dst = r["sides"]
        .as_array()
        .expect("sides")
        .iter()
        .find(|s| s["side"] == "destination")
        .expect("a destination side");
    (
        dst["verdict"].as_str().unwrap_or_default().to_string(),
        dst["order"]["id"].as_str().map(str::to_string),
        r["dataplane_agrees"] == true,
    )
}

#[track_caller]
fn assert_verified(t: &Topology, when: &str) {
    let (agrees, report) = verify(t);
    assert!(agrees, "{when}: the maps must equal the file: {report:#}");
}

/// The address of block-add `i`: IPv4 and IPv6 in turn.
fn added(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("248.1.{}.{}", i / 512, (i / 2) % 256)
    } else {
        format!("2001:db8:66::1:{i:x}")
    }
}

#[test]
fn fifty_concurrent_block_adds_all_land_in_the_file_and_the_maps() {
    let t = Topology::new("conc-block");
    t.write_orders(&base_list());
    let d = Daemon::start(&t, &[]);
    let n = count("concurrent_adds", 50, 200);
    let rounds = count("concurrent_rounds", 1, 5);
    for round in 0..rounds {
        let addrs: Vec<String> = (0..n).map(|i| added(i + round * n)).collect();
        // Every process is started before any is waited for.
        let children: Vec<(String, Child)> = addrs
            .iter()
            .map(|a| {
                let args: Vec<String> = ["block", "add", a, "--order", "CONC"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                (args.join(" "), spawn_cli(&d, &args))
            })
            .collect();
        all_succeed(children);

        let in_file = prefixes_of(&file(&t), "CONC");
        let missing: Vec<&String> = addrs
            .iter()
            .filter(|a| {
                let full = if a.contains(':') {
                    format!("{a}/128")
                } else {
                    format!("{a}/32")
                };
                !in_file.contains(a) && !in_file.contains(&full)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {n} added prefixes are missing from the file: {missing:?}",
            missing.len()
        );
        assert_eq!(in_file.len(), 1 + n * (round + 1), "{in_file:?}");
        let s = d.status();
        assert_eq!(s["in_sync"], true, "{s}");
        assert_verified(&t, &format!("round {round}"));
        for a in &addrs {
            let (verdict, by, agrees) = check(&d, a);
            assert_eq!(
                (verdict.as_str(), by.as_deref(), agrees),
                ("drop", Some("CONC"), true),
                "check {a}"
            );
        }
    }
    measured(
        "no lost update: concurrent block add",
        format!("{rounds} round(s) of {n} concurrent `block add` processes: all in the file, the maps (verify) and `check`"),
    );
}

/// Block adds and exception adds at once, while an operator replaces the file with
/// versions of their own (read, add an order, write to a temporary file, rename). The
/// daemon must never throw away an operator's version: every order the operator added
/// is in the final file. CLI edits that an operator's write (based on an older read)
/// replaced are counted: that is the operator's race, which the daemon cannot see.
#[test]
fn concurrent_block_and_exception_adds_while_an_operator_edits_the_file() {
    let t = Topology::new("conc-mixed");
    t.write_orders(&base_list());
    let d = Daemon::start(&t, &[]);
    let n = count("concurrent_adds", 50, 200) / 2;
    let operator_edits = count("operator_edits", 20, 100);
    let start = Arc::new(Barrier::new(2));

    let operator = {
        let (path, dir, start) = (t.orders_path(), t.dir.clone(), Arc::clone(&start));
        std::thread::spawn(move || {
            start.wait();
            for i in 0..operator_edits {
                let mut list: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).expect("reading"))
                        .expect("JSON");
                let op: serde_json::Value = serde_json::from_str(&order(
                    &format!("OP-{i}"),
                    "drop",
                    &[&format!("250.250.{i}.0/24")],
                    "",
                ))
                .expect("JSON");
                list["orders"].as_array_mut().expect("orders").push(op);
                let temp = dir.join("orders.json.operator");
                std::fs::write(&temp, serde_json::to_string_pretty(&list).expect("JSON"))
                    .expect("writing");
                std::fs::rename(&temp, &path).expect("renaming");
            }
        })
    };
    let mut children = Vec::new();
    start.wait();
    for i in 0..n {
        let block = added(i);
        let hole = format!("198.51.100.{}", 10 + i % 40);
        for args in [
            vec!["block", "add", block.as_str(), "--order", "CONC"],
            vec!["exceptions", "add", hole.as_str(), "--reason", "concurrent"],
        ] {
            if args[0] == "exceptions" && i >= 40 {
                continue;
            }
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            children.push((args.join(" "), spawn_cli(&d, &args)));
        }
    }
    all_succeed(children);
    operator.join().expect("the operator's edits");

    // The daemon catches up with the last write, whoever made it.
    let s = poll::until("the daemon to be in sync", Duration::from_secs(60), || {
        let s = d.status();
        (s["in_sync"] == true, s)
    });
    assert!(s["refusal"].is_null(), "{s}");
    assert_verified(&t, "after the concurrent edits");
    let list = file(&t);
    let ids: Vec<&str> = list["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    let lost_operator: Vec<String> = (0..operator_edits)
        .map(|i| format!("OP-{i}"))
        .filter(|id| !ids.contains(&id.as_str()))
        .collect();
    let in_file = prefixes_of(&list, "CONC");
    let exceptions = exceptions_of(&list);
    let lost_blocks = (0..n)
        .filter(|&i| {
            !in_file
                .iter()
                .any(|p| p.split('/').next() == Some(&added(i)))
        })
        .count();
    let lost_exceptions = (0..n.min(40))
        .filter(|&i| {
            let hole = format!("198.51.100.{}", 10 + i % 40);
            !exceptions
                .iter()
                .any(|p| p.split('/').next() == Some(hole.as_str()))
        })
        .count();
    // How often the daemon found the file replaced under an edit and made it again.
    let redone = d
        .log_text()
        .matches("changed while a CLI edit was being made")
        .count();
    measured(
        "no lost update: mixed with an operator",
        format!(
            "{n} block adds, {} exception adds, {operator_edits} operator file writes at once: edits made again on a newer file {redone} times; operator versions thrown away by the daemon: {}; CLI edits overwritten by the operator's own read-modify-write: {lost_blocks} block adds, {lost_exceptions} exception adds",
            n.min(40),
            lost_operator.len()
        ),
    );
    assert!(
        lost_operator.is_empty(),
        "the daemon wrote back a list older than the operator's: {lost_operator:?} are gone"
    );
}
