//! End to end: the mass-removal guard. A list (or a CLI edit) that would stop enforcing
//! more than half of the enforced prefixes, when more than 100 are enforced, is refused
//! without `--force`: status says `needs_force`, the maps do not change (verify's digest
//! is the same), traffic stays blocked. `borderfilter reload --force` (or `--force` on the
//! CLI command) applies it, and the audit trail records the forced reload.

use std::time::Duration;

use borderfilter_tests::{
    bpf::{AttachedProgram, XDP_DROP, XDP_PASS},
    daemon::{verify, Daemon},
    poll,
    topology::{order, order_list, Topology},
};

/// A real address among the prefixes the guarded change removes.
const REMOVED: &str = "198.51.100.20";
/// Blocked by every version.
const KEPT: &str = "198.51.100.10";

/// `n` /32 prefixes of 240.1.0.0/16, the first of them `REMOVED`'s.
fn bulk(n: usize) -> Vec<String> {
    std::iter::once(format!("{REMOVED}/32"))
        .chain((1..n).map(|i| format!("240.1.{}.{}/32", i / 256, i % 256)))
        .collect()
}

fn list(bulk_prefixes: &[String]) -> String {
    let refs: Vec<&str> = bulk_prefixes.iter().map(String::as_str).collect();
    let mut orders = vec![order("KEEP", "drop", &[KEPT], "")];
    if !refs.is_empty() {
        orders.push(order("BULK", "drop", &refs, ""));
    }
    order_list(&orders, &[])
}

fn verdict(t: &Topology, addr: &str) -> u32 {
    AttachedProgram::of(&t.router, "rc")
        .expect("attached")
        .verdict("192.0.2.2".parse().unwrap(), addr.parse().unwrap())
}

fn digest(t: &Topology) -> serde_json::Value {
    verify(t).1["maps_sha256"].clone()
}

#[track_caller]
fn refused_needing_force(out: &std::process::Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what} must be refused: {err}");
    assert!(
        err.contains("more than half") && err.contains("--force"),
        "{what}: the refusal says why and how to confirm: {err}"
    );
}

#[test]
fn removing_more_than_half_of_over_a_hundred_prefixes_needs_force() {
    let t = Topology::new("guard");
    let all = bulk(300);
    t.write_orders(&list(&all));
    let d = Daemon::start(&t, &[]);
    assert_eq!(verdict(&t, REMOVED), XDP_DROP);
    let before = digest(&t);

    // A file that keeps 100 of the 300 (plus KEEP): 200 of 301 would stop.
    t.write_orders(&list(&all[200..]));
    let status = poll::until(
        "the guard to refuse the file",
        Duration::from_secs(10),
        || {
            let s = d.status();
            (s["refusal"]["needs_force"] == true, s)
        },
    );
    assert_eq!(status["in_sync"], false, "{status}");
    let problems = status["refusal"]["problems"].to_string();
    assert!(
        problems.contains("200 of the 301"),
        "the refusal counts what would stop: {problems}"
    );
    assert_eq!(digest(&t), before, "the refused list changed nothing");
    assert!(!verify(&t).0, "the maps still hold the old list");
    assert_eq!(verdict(&t, REMOVED), XDP_DROP, "still blocked");
    refused_needing_force(&d.cli(&["reload"]), "reload without --force");
    assert_eq!(digest(&t), before, "a refused reload changes nothing");

    // Confirmed: applied.
    let report = d.ok(&["--json", "reload", "--force"]);
    assert!(report.contains("applied"), "{report}");
    let status = d.status();
    assert_eq!(status["in_sync"], true, "{status}");
    assert!(status["refusal"].is_null(), "{status}");
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report:#}");
    assert_ne!(report["maps_sha256"], before);
    assert_eq!(
        verdict(&t, REMOVED),
        XDP_PASS,
        "unblocked by the forced reload"
    );
    assert_eq!(verdict(&t, KEPT), XDP_DROP);
    let audit = d.ok(&["--json", "audit"]);
    let records: serde_json::Value = serde_json::from_str(&audit).expect("JSON");
    let last = records["result"]
        .as_array()
        .and_then(|r| r.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["who"]["kind"], "reload", "{last:#}");
    assert_eq!(last["who"]["force"], true, "{last:#}");
    assert_eq!(last["prefixes_removed"], 200, "{last:#}");
}

#[test]
fn half_or_fewer_or_a_hundred_or_fewer_pass_the_guard() {
    let t = Topology::new("guard-below");
    let all = bulk(300);
    t.write_orders(&list(&all));
    let d = Daemon::start(&t, &[]);
    // 150 of 301: not more than half.
    t.write_orders(&list(&all[150..]));
    poll::until("half to be removed", Duration::from_secs(10), || {
        let s = d.status();
        (s["in_sync"] == true, s)
    });
    assert_eq!(verdict(&t, REMOVED), XDP_PASS);
    // 100 of 151: more than half, but only 100.
    t.write_orders(&list(&all[250..]));
    poll::until("100 more to be removed", Duration::from_secs(10), || {
        let s = d.status();
        (s["in_sync"] == true, s)
    });
    assert!(verify(&t).0);
}

#[test]
fn cli_edits_that_remove_too_much_need_force_too() {
    let t = Topology::new("guard-cli");
    let all = bulk(300);
    t.write_orders(&list(&all));
    let d = Daemon::start(&t, &[]);
    let before = digest(&t);

    let mut remove: Vec<&str> = vec!["block", "remove", "--order", "BULK"];
    remove.extend(all[..200].iter().map(String::as_str));
    refused_needing_force(&d.cli(&remove), "block remove of 200 of 301");
    refused_needing_force(&d.cli(&["orders", "remove", "BULK"]), "orders remove");
    assert_eq!(digest(&t), before, "refused edits change nothing");
    assert_eq!(verdict(&t, REMOVED), XDP_DROP);
    assert!(
        std::fs::read_to_string(t.orders_path())
            .expect("the file")
            .contains(REMOVED),
        "nor the file"
    );
    assert!(verify(&t).0);

    remove.push("--force");
    d.ok(&remove);
    assert_eq!(verdict(&t, REMOVED), XDP_PASS);
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report:#}");
    assert_eq!(d.status()["applied"]["prefixes_ipv4"], 101);
}

/// A sync adds the new prefixes before it removes the old ones, so for a moment the maps
/// hold both: a change they cannot hold together is refused whole, before anything is
/// touched (not half applied), and the way the refusal suggests (two steps) works.
#[test]
fn a_change_the_maps_cannot_hold_beside_the_old_list_is_refused_whole() {
    let t = Topology::new("guard-room");
    let net = |b: usize, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("240.{b}.{}.{}/32", i / 256, i % 256))
            .collect()
    };
    let kept = net(2, 1000);
    let with = |extra: Vec<String>| list(&kept.iter().cloned().chain(extra).collect::<Vec<_>>());
    t.write_orders(&with(net(3, 500)));
    let d = Daemon::start(&t, &["--capacity-v4", "2000"]);
    let before = digest(&t);

    // 1,001 + 500 held, 600 new: 2,101 at the peak.
    t.write_orders(&with(net(4, 600)));
    let status = poll::until("the change to be refused", Duration::from_secs(10), || {
        let s = d.status();
        (!s["refusal"].is_null(), s)
    });
    let problems = status["refusal"]["problems"].to_string();
    assert!(
        problems.contains("needs room for 2101 ipv4 prefixes")
            && problems.contains("holds 2000")
            && problems.contains("two steps"),
        "{problems}"
    );
    assert_eq!(
        status["refusal"]["needs_force"], false,
        "force cannot make room"
    );
    assert_eq!(digest(&t), before, "nothing was touched");
    assert_eq!(verdict(&t, KEPT), XDP_DROP);

    // In two steps: first without the old extra prefixes, then with the new ones.
    t.write_orders(&with(Vec::new()));
    poll::until("the first step", Duration::from_secs(10), || {
        let s = d.status();
        (s["in_sync"] == true, s)
    });
    t.write_orders(&with(net(4, 600)));
    poll::until("the second step", Duration::from_secs(10), || {
        let s = d.status();
        (s["in_sync"] == true, s)
    });
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report:#}");
    assert_eq!(report["entries"], 1601, "{report:#}");
}

/// The same for the fast path's slot table: a /22 takes four /24 slots, and while a
/// change is applied the old slots stay until the new ones are written. With
/// `--capacity-v4 64` the table has 128 cells and room for 112 slots: 25 /22s and the
/// kept /32 (101 slots) fit, but replacing the /22s with 25 others needs 201 cells at
/// once. That change is refused
/// whole; in two steps it goes through.
#[test]
fn a_change_the_slot_table_cannot_hold_beside_the_old_list_is_refused_whole() {
    let t = Topology::new("guard-slots");
    let nets = |second: usize| -> Vec<String> {
        (0..25)
            .map(|i| format!("240.{second}.{}.0/22", i * 4))
            .collect()
    };
    t.write_orders(&list(&nets(5)));
    let d = Daemon::start(&t, &["--capacity-v4", "64"]);
    let before = digest(&t);

    t.write_orders(&list(&nets(6)));
    let status = poll::until("the change to be refused", Duration::from_secs(10), || {
        let s = d.status();
        (!s["refusal"].is_null(), s)
    });
    let problems = status["refusal"]["problems"].to_string();
    assert!(
        problems.contains("needs 201 IPv4 /24 slots at once")
            && problems.contains("has 128 cells")
            && problems.contains("two steps"),
        "{problems}"
    );
    assert_eq!(digest(&t), before, "nothing was touched");
    assert_eq!(verdict(&t, "240.5.0.1"), XDP_DROP);
    assert_eq!(verdict(&t, "240.6.0.1"), XDP_PASS);

    t.write_orders(&list(&[]));
    poll::until("the first step", Duration::from_secs(10), || {
        let s = d.status();
        (s["in_sync"] == true, s)
    });
    t.write_orders(&list(&nets(6)));
    poll::until("the second step", Duration::from_secs(10), || {
        let s = d.status();
        (s["in_sync"] == true, s)
    });
    assert_eq!(verdict(&t, "240.5.0.1"), XDP_PASS);
    assert_eq!(verdict(&t, "240.6.0.1"), XDP_DROP);
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report:#}");
}
