//! End to end: SIGKILL in the middle of a sync of a million prefixes. After a restart the
//! maps equal exactly what the file says (`borderfilter verify`: every entry by order
//! and action, and the fast-path index), and while no daemon runs after a kill during a
//! large change, everything both the old and the new list block stays blocked: the
//! program attached to the router's interface is asked (BPF_PROG_TEST_RUN) about every
//! prefix the two lists share, and real traffic to blocked addresses keeps being dropped.
//!
//! The kill points are found by watching the trie fill (`bpf::map_memory`), or drawn at
//! random in the sync window; the seed is printed (`BORDERFILTER_SEED` repeats a run).
//! `cargo xtask soak` runs more kill points (`BORDERFILTER_CRASH_POINTS`,
//! `BORDERFILTER_CHANGE_KILLS`).

use std::{
    collections::HashSet,
    net::IpAddr,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use borderfilter_tests::{
    bpf::{self, AttachedProgram, XDP_DROP},
    count,
    daemon::{verify, Daemon},
    measured, poll, rng,
    topology::{big_list, order, Topology},
    traffic::{sock, tcp_connects, Listeners, StallWatch, Stream, TCP_PORT, UDP_PORT},
};
use rand::Rng;

const V4: usize = 1_000_000;
const V6: usize = 50_000;
const BLOCKED: [&str; 2] = ["198.51.100.10", "2001:db8:66::10"];
const ALLOWED: [&str; 2] = ["203.0.113.10", "2001:db8:77::10"];
/// Blocked by both lists of every change, each time through another prefix in another
/// order: the new entry must be in place before the old one goes.
const MOVED: &str = "203.0.113.70";
const MOVED_PREFIXES: [&str; 4] = [
    "203.0.113.70/32",
    "203.0.113.64/27",
    "203.0.113.64/29",
    "203.0.113.70/31",
];
/// Bytes of kernel memory per IPv4 trie entry (`trie_mem_usage`: node, key, value).
const V4_ENTRY_BYTES: u64 = 36;
/// A sync of a million prefixes by the debug build takes about half a minute here; the
/// deadlines leave room for a slower machine.
const SYNC_DEADLINE: Duration = Duration::from_secs(300);
/// Room for the old and the new list at once: a sync adds before it removes.
const CAPACITY: [&str; 4] = ["--capacity-v4", "1200000", "--capacity-v6", "200000"];

/// One test at a time: each holds a million-prefix list and keeps both cores busy, and
/// the kill points depend on how fast the daemon runs.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A big list plus the order that blocks the addresses the traffic goes to.
fn with_keep(list: &str) -> String {
    let keep = order("KEEP", "drop", &BLOCKED, "");
    let out = list.replacen("\"orders\": [", &format!("\"orders\": [{keep},\n"), 1);
    assert_ne!(out, list, "the big list has an order array");
    out
}

fn v4_trie(t: &Topology) -> PathBuf {
    t.pin_dir.join("BF_V4")
}

fn v4_entries(t: &Topology) -> u64 {
    bpf::map_memory(&v4_trie(t)).unwrap_or(0) / V4_ENTRY_BYTES
}

/// Where to kill the daemon during a sync.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// Once the IPv4 trie holds this share of the entries it will hold.
    TrieFilled(f64),
    /// This long after the daemon started (or the file was replaced).
    After(Duration),
}

/// Asserts that the maps agree with the file, and says how long verify took.
#[track_caller]
fn assert_verified(t: &Topology, when: &str) -> Duration {
    let started = Instant::now();
    let (agrees, report) = verify(t);
    let took = started.elapsed();
    assert!(
        agrees && report["agrees"] == true && report["fast_path_agrees"] == true,
        "{when}: the maps must equal the file exactly: {report:#}"
    );
    took
}

#[track_caller]
fn assert_enforced(t: &Topology, when: &str) {
    let program = AttachedProgram::of(&t.router, "rc").expect("the program stays attached");
    for (b, client) in BLOCKED.iter().zip(["192.0.2.2", "2001:db8:c1::2"]) {
        assert_eq!(
            program.verdict(client.parse().unwrap(), b.parse().unwrap()),
            XDP_DROP,
            "{when}: the attached program must drop packets to {b}"
        );
    }
    assert!(
        !tcp_connects(
            &t.client,
            sock(BLOCKED[0], TCP_PORT),
            Duration::from_millis(300)
        ),
        "{when}: {} must be blocked",
        BLOCKED[0]
    );
    assert!(
        tcp_connects(
            &t.client,
            sock(ALLOWED[0], TCP_PORT),
            Duration::from_secs(3)
        ),
        "{when}: {} must stay reachable",
        ALLOWED[0]
    );
}

/// SIGKILL at several points of the first sync of a million prefixes (while the file is
/// parsed and compiled, while the trie is written), a restart, and an exact comparison.
#[test]
fn sigkill_during_the_first_sync_of_a_million_prefixes_then_restart_agrees_exactly() {
    let _serial = serial();
    let t = Topology::new("crash-load");
    let mut rng = rng("crash-load");
    let built = Instant::now();
    t.write_orders(&with_keep(&big_list(V4, V6, 100, 7)));
    eprintln!(
        "list of {V4} + {V6} prefixes written in {:?}",
        built.elapsed()
    );
    let _server = Listeners::start(&t.server, &[BLOCKED[0], ALLOWED[0]]);
    let total_v4 = V4 as u64 + 1;

    // The first points are fixed (one while the trie is written, one before it is); then
    // random ones, a few of them killing the restart too.
    let points = count("crash_points", 2, 10);
    let mut window = Duration::from_secs(20);
    for round in 0..points {
        let kills: Vec<KillPoint> = match round {
            0 => vec![KillPoint::TrieFilled(0.4)],
            1 => vec![KillPoint::After(
                window.mul_f64(rng.random_range(0.05..0.5)),
            )],
            _ if round % 3 == 2 => vec![
                KillPoint::TrieFilled(rng.random_range(0.05..0.95)),
                KillPoint::After(window.mul_f64(rng.random_range(0.0..1.0))),
            ],
            _ if round % 2 == 0 => vec![KillPoint::TrieFilled(rng.random_range(0.0..1.0))],
            _ => vec![KillPoint::After(window.mul_f64(rng.random_range(0.0..1.0)))],
        };
        let mut at_kill = Vec::new();
        for point in &kills {
            let d = Daemon::launch(&t, &CAPACITY);
            let started = Instant::now();
            let before = v4_entries(&t);
            match *point {
                KillPoint::TrieFilled(share) => {
                    let target = before + ((total_v4 - before) as f64 * share) as u64;
                    poll::until(
                        "the trie to fill up to the kill point",
                        SYNC_DEADLINE,
                        || {
                            let n = v4_entries(&t);
                            (n >= target.max(1), n)
                        },
                    );
                }
                KillPoint::After(delay) => std::thread::sleep(delay),
            }
            let mut d = d;
            d.kill();
            at_kill.push(format!(
                "{point:?}: killed after {:.1?} with {} of {total_v4} IPv4 entries in the trie",
                started.elapsed(),
                v4_entries(&t)
            ));
        }
        let restarted = Instant::now();
        let d = Daemon::launch(&t, &CAPACITY);
        d.wait_ready(SYNC_DEADLINE);
        let restart = restarted.elapsed();
        if round == 0 {
            // The random kill points fall within a full sync's time.
            window = restart;
        }
        let verified = assert_verified(&t, &format!("round {round} ({kills:?})"));
        let status = d.status();
        assert_eq!(status["in_sync"], true, "{status}");
        assert_eq!(status["applied"]["prefixes_ipv4"], total_v4, "{status}");
        assert_enforced(&t, &format!("round {round}"));
        measured(
            "crash during first sync",
            format!(
                "round {round}: {}; restart to in sync {restart:.1?}; verify {verified:.1?}",
                at_kill.join("; ")
            ),
        );
        // Start the next round from nothing: detach removes the program and the pins.
        d.ok(&["detach", "--yes"]);
        let mut d = d;
        d.kill();
        assert!(
            !v4_trie(&t).exists(),
            "detach removed the pins, the next round starts empty"
        );
    }
}

/// The prefixes (as text) of the orders of a list value.
fn prefixes_of(orders: &[serde_json::Value]) -> Vec<String> {
    orders
        .iter()
        .flat_map(|o| o["prefixes"].as_array().expect("prefixes").iter())
        .map(|p| p.as_str().expect("a string").to_string())
        .collect()
}

fn network(prefix: &str) -> IpAddr {
    prefix
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} is not a prefix"))
}

/// SIGKILL during a large change of a million-prefix list (a tenth of it replaced).
/// While no daemon runs, everything both lists block is dropped by the attached program
/// and no packet reaches a blocked address; after the restart the maps equal the new list.
#[test]
fn sigkill_during_a_large_change_leaks_nothing_both_lists_block() {
    let _serial = serial();
    let t = Topology::new("crash-change");
    let mut rng = rng("crash-change");
    let mut old_value: serde_json::Value =
        serde_json::from_str(&with_keep(&big_list(V4, V6, 100, 21))).expect("the list is JSON");
    let mut moved_to = 1;
    old_value["orders"][moved_to]["prefixes"]
        .as_array_mut()
        .expect("prefixes")
        .push(MOVED_PREFIXES[0].into());
    t.write_orders(&serde_json::to_string_pretty(&old_value).expect("serializes"));
    let loaded = Instant::now();
    let mut d = Daemon::launch(&t, &CAPACITY);
    d.wait_ready(SYNC_DEADLINE);
    eprintln!("first load: {:?}", loaded.elapsed());
    assert_verified(&t, "after the first load");

    let blocked = [BLOCKED[0], BLOCKED[1], MOVED];
    let server = Listeners::start(
        &t.server,
        &[blocked[0], blocked[1], MOVED, ALLOWED[0], ALLOWED[1]],
    );
    let targets: Vec<_> = blocked
        .iter()
        .chain(&ALLOWED)
        .map(|a| sock(a, UDP_PORT))
        .collect();
    let mut stream = Stream::start(&t.client, &targets, Duration::from_millis(2));
    poll::until("allowed traffic to flow", Duration::from_secs(10), || {
        (server.udp(ALLOWED[0]) > 50, server.udp(ALLOWED[0]))
    });
    let mut stall = StallWatch::start(server.udp_counter(ALLOWED[0]));
    let client_v4: IpAddr = "192.0.2.2".parse().unwrap();
    let client_v6: IpAddr = "2001:db8:c1::2".parse().unwrap();

    let kills = count("change_kills", 1, 4);
    for round in 0..kills {
        // A tenth of the orders (BULK-*) get other prefixes; KEEP and the rest stay.
        let orders = old_value["orders"].as_array().expect("orders").clone();
        let replaced: Vec<usize> = (0..10).map(|i| 1 + (round * 10 + i) % 100).collect();
        let fresh: serde_json::Value =
            serde_json::from_str(&big_list(V4 / 10, V6 / 10, 10, 1000 + round as u64))
                .expect("JSON");
        let mut new_value = old_value.clone();
        for (k, &i) in replaced.iter().enumerate() {
            new_value["orders"][i]["prefixes"] = fresh["orders"][k]["prefixes"].clone();
        }
        // MOVED leaves its order for another, through a prefix of another length.
        let old_moved = MOVED_PREFIXES[round % 4];
        new_value["orders"][moved_to]["prefixes"]
            .as_array_mut()
            .expect("prefixes")
            .retain(|p| p != old_moved);
        moved_to = replaced[5];
        new_value["orders"][moved_to]["prefixes"]
            .as_array_mut()
            .expect("prefixes")
            .push(MOVED_PREFIXES[(round + 1) % 4].into());
        let kept: Vec<usize> = (0..orders.len())
            .filter(|i| !replaced.contains(i))
            .collect();
        let mut both: Vec<String> =
            prefixes_of(&kept.iter().map(|&i| orders[i].clone()).collect::<Vec<_>>());
        both.retain(|p| !MOVED_PREFIXES.contains(&p.as_str()));
        both.push(format!("{MOVED}/32"));
        let new_text = serde_json::to_string_pretty(&new_value).expect("serializes");

        let baseline = v4_entries(&t);
        let written = Instant::now();
        t.write_orders(&new_text);
        let point = if round == 0 || rng.random_bool(0.5) {
            KillPoint::TrieFilled(0.0)
        } else {
            KillPoint::After(Duration::from_millis(rng.random_range(0..30_000)))
        };
        match point {
            // As soon as the trie starts changing.
            KillPoint::TrieFilled(_) => {
                poll::until("the change to reach the trie", SYNC_DEADLINE, || {
                    let n = v4_entries(&t);
                    (n != baseline, n)
                });
            }
            KillPoint::After(delay) => std::thread::sleep(delay),
        }
        d.kill();
        let killed_after = written.elapsed();
        let entries_at_kill = v4_entries(&t);
        let down = Instant::now();

        // No daemon: the kernel alone enforces what the maps hold.
        let (mid_change, _) = verify(&t);
        let program = AttachedProgram::of(&t.router, "rc").expect("still attached");
        let checked = Instant::now();
        let mut leaks = Vec::new();
        let mut seen = HashSet::new();
        for p in &both {
            let dst = network(p);
            if !seen.insert(dst) {
                continue;
            }
            let src = if dst.is_ipv4() { client_v4 } else { client_v6 };
            let verdict = program.verdict(src, dst);
            if verdict != XDP_DROP {
                leaks.push(format!("{p}: verdict {verdict}"));
            }
        }
        assert!(
            leaks.is_empty(),
            "round {round}, killed {killed_after:?} after the change ({entries_at_kill} IPv4 entries): {} of {} prefixes both lists block pass the program, e.g. {:?}",
            leaks.len(),
            seen.len(),
            &leaks[..leaks.len().min(10)]
        );
        let probe_time = checked.elapsed();
        for b in blocked {
            assert_eq!(
                server.udp(b),
                0,
                "round {round}: traffic to {b} leaked while no daemon ran"
            );
        }

        d = Daemon::launch(&t, &CAPACITY);
        d.wait_ready(SYNC_DEADLINE);
        let downtime = down.elapsed();
        let verified = assert_verified(&t, &format!("after the restart of round {round}"));
        assert_enforced(&t, &format!("after round {round}"));
        measured(
            "crash during large change",
            format!(
                "round {round}: {point:?}, killed {killed_after:.1?} after the file was replaced with {entries_at_kill} IPv4 entries in the trie (baseline {baseline}; mid-change: {}); {} addresses both lists block all dropped (checked in {probe_time:.1?}); daemon down {downtime:.1?} until in sync again; verify {verified:.1?}",
                !mid_change,
                seen.len()
            ),
        );
        old_value = new_value;
    }

    stream.stop();
    let longest_stall = stall.stop();
    let settle = server.udp(ALLOWED[0]);
    poll::until(
        "the last datagrams to arrive",
        Duration::from_secs(3),
        || {
            let now = server.udp(ALLOWED[0]);
            (now == stream.sent(targets[3]) || now == settle, now)
        },
    );
    for b in blocked {
        assert_eq!(
            server.udp(b),
            0,
            "datagrams to blocked {b} reached the server"
        );
    }
    for (i, a) in ALLOWED.iter().enumerate() {
        let (sent, got) = (stream.sent(targets[3 + i]), server.udp(a));
        measured(
            "crash during large change",
            format!(
                "allowed {a}: sent {sent}, received {got}, lost {}",
                sent.saturating_sub(got)
            ),
        );
        assert!(
            got * 100 >= sent * 99,
            "allowed traffic to {a}: sent {sent}, received {got}"
        );
    }
    measured(
        "crash during large change",
        format!("longest stall of allowed traffic: {longest_stall:?}"),
    );
    assert!(
        longest_stall < Duration::from_secs(2),
        "allowed traffic stalled for {longest_stall:?}"
    );
}
