//! End to end: no blocked packet gets through while the list changes. A steady stream
//! of UDP datagrams and TCP connection attempts goes from the client to four addresses
//! (IPv4 and IPv6) that every version of the list blocks (two by an order that never
//! changes, two by orders that are replaced each time, with a prefix of another length),
//! and to two allowed addresses, while
//! (a) the list is replaced again and again (thousands of prefixes each time; by rename,
//!     in place, and with `borderfilter reload`),
//! (b) the daemon is SIGKILLed and restarted, sometimes in the middle of a sync, with the
//!     list changed while it is down,
//! (c) many CLI edits run at once from many threads.
//! Not one packet reaches the server for a blocked address; allowed traffic keeps flowing
//! (the loss is printed, the longest stall is bounded). Each change is awaited by polling
//! `status` (and `verify`), never by sleeping.
//!
//! `cargo xtask soak` runs the long variants (`BORDERFILTER_RELOADS`, `_KILLS`,
//! `_CLI_ROUNDS` override the counts).

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use borderfilter_tests::{
    count,
    daemon::{verify, Daemon},
    measured, poll, rng,
    topology::{exception, order, order_list, Topology},
    traffic::{sock, Listeners, StallWatch, Stream, TcpAttempts, TCP_PORT, UDP_PORT},
};
use rand::Rng;

/// Blocked by the order KEEP, in every version.
const KEPT: [&str; 2] = ["198.51.100.10", "2001:db8:66::10"];
/// Blocked in every version by the order ROT-k of that version, each time through a
/// prefix of another length.
const ROTATED: [&str; 2] = ["203.0.113.70", "2001:db8:77::20"];
const ALLOWED: [&str; 2] = ["203.0.113.10", "2001:db8:77::10"];
/// How long allowed traffic may stand still (the kernel keeps forwarding while the
/// daemon syncs or is dead; this bounds scheduling hiccups of a busy 2-core machine).
const MAX_STALL: Duration = Duration::from_secs(2);
const APPLY_DEADLINE: Duration = Duration::from_secs(60);

/// One scenario at a time: the measured stalls and losses are the daemon's, not those of
/// another scenario competing for the two cores.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Version `k` of the list: KEEP; BASE (10,000 prefixes, always the same); ROT-k (about
/// 3,500 prefixes of its own, and the rotated addresses through a prefix whose length
/// depends on `k`); and an exception inside ROT-k. Consecutive versions share nothing
/// but KEEP, BASE and the blocked addresses.
fn version(k: usize) -> String {
    let base: Vec<String> = (0..10_000)
        .map(|i| match i % 3 {
            0 => format!("240.{}.{}.0/24", i / 256, i % 256),
            _ => format!("241.{}.{}.{}/32", i / 65536, (i / 256) % 256, i % 256),
        })
        .collect();
    let (a, b) = (242 + k % 4, (k / 4) % 256);
    let v4_len = [32, 29, 27, 26][k % 4];
    let v4_net = [
        "203.0.113.70",
        "203.0.113.64",
        "203.0.113.64",
        "203.0.113.64",
    ][k % 4];
    let v6_len = [128, 124, 123][k % 3];
    let mut rot: Vec<String> = vec![
        format!("{v4_net}/{v4_len}"),
        format!("2001:db8:77::20/{v6_len}"),
    ];
    rot.extend((0..3_000).map(|i| match i % 10 {
        0 => format!("{a}.{b}.{}.{}/28", i / 16, (i % 16) * 16),
        _ => format!("{a}.{b}.{}.{}/32", 200 + i / 256, i % 256),
    }));
    rot.extend((0..500).map(|i| format!("2001:db8:{:x}:{i:x}::/64", 0x4000 + k % 4096)));
    let (base_refs, rot_refs) = (refs(&base), refs(&rot));
    order_list(
        &[
            order("KEEP", "drop", &KEPT, ""),
            order("BASE", "drop", &base_refs, ""),
            order(&format!("ROT-{k}"), "drop", &rot_refs, ""),
        ],
        &[exception(&format!("{a}.{b}.200.7/32"), "test hole")],
    )
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Traffic to every blocked and allowed address, and what the server got.
struct Traffic {
    server: Listeners,
    udp: Stream,
    tcp: TcpAttempts,
    stalls: Vec<StallWatch>,
    started: Instant,
}

fn blocked() -> Vec<&'static str> {
    KEPT.iter().chain(&ROTATED).copied().collect()
}

impl Traffic {
    fn start(t: &Topology) -> Self {
        let all: Vec<&str> = blocked().into_iter().chain(ALLOWED).collect();
        let server = Listeners::start(&t.server, &all);
        let udp = Stream::start(
            &t.client,
            &all.iter().map(|a| sock(a, UDP_PORT)).collect::<Vec<_>>(),
            Duration::from_millis(1),
        );
        let tcp = TcpAttempts::start(
            &t.client,
            &all.iter().map(|a| sock(a, TCP_PORT)).collect::<Vec<_>>(),
            Duration::from_millis(100),
            Duration::from_millis(10),
        );
        poll::until("allowed traffic to flow", Duration::from_secs(10), || {
            let n = server.udp(ALLOWED[0]).min(server.udp(ALLOWED[1]));
            (n > 50, n)
        });
        let stalls = ALLOWED
            .iter()
            .map(|a| StallWatch::start(server.udp_counter(a)))
            .collect();
        Self {
            server,
            udp,
            tcp,
            stalls,
            started: Instant::now(),
        }
    }

    /// Fails at once if anything reached a blocked address.
    #[track_caller]
    fn assert_no_leak(&self, when: &str) {
        for b in blocked() {
            assert_eq!(
                (self.server.udp(b), self.server.tcp(b)),
                (0, 0),
                "{when}: datagrams or connections to blocked {b} reached the server"
            );
        }
    }

    /// Stops the traffic, asserts that nothing blocked got through and that allowed
    /// traffic flowed, and prints the numbers.
    #[track_caller]
    fn finish(mut self, test: &str) {
        let elapsed = self.started.elapsed();
        self.udp.stop();
        self.tcp.stop();
        let longest: Vec<Duration> = self.stalls.iter_mut().map(StallWatch::stop).collect();
        for a in ALLOWED {
            let sent = self.udp.sent(sock(a, UDP_PORT));
            poll::until(
                "the last allowed datagrams to arrive",
                Duration::from_secs(3),
                || {
                    let got = self.server.udp(a);
                    (got >= sent, got)
                },
            );
        }
        self.assert_no_leak(test);
        for b in blocked() {
            let (tried, connected) = self.tcp.counts(sock(b, TCP_PORT));
            measured(
                test,
                format!(
                    "blocked {b}: {} datagrams and {tried} connection attempts sent, 0 received, {connected} connected",
                    self.udp.sent(sock(b, UDP_PORT))
                ),
            );
            assert_eq!(
                connected, 0,
                "{test}: a connection to blocked {b} was established"
            );
        }
        for (a, stall) in ALLOWED.iter().zip(&longest) {
            let (sent, got) = (self.udp.sent(sock(a, UDP_PORT)), self.server.udp(a));
            let (tried, connected) = self.tcp.counts(sock(a, TCP_PORT));
            measured(
                test,
                format!(
                    "allowed {a}: {sent} datagrams sent, {got} received, {} lost; {connected} of {tried} connections established; longest stall {stall:?} (over {elapsed:.1?})",
                    sent.saturating_sub(got)
                ),
            );
            assert!(
                got * 100 >= sent * 99,
                "{test}: allowed traffic to {a} must keep flowing: sent {sent}, received {got}"
            );
            assert!(
                *stall < MAX_STALL,
                "{test}: allowed traffic to {a} stood still for {stall:?}"
            );
            assert!(
                connected * 100 >= tried * 95,
                "{test}: connections to {a}: {connected} of {tried}"
            );
        }
    }
}

/// Waits until the daemon enforces the file as it is now.
#[track_caller]
fn wait_in_sync(d: &Daemon, previous: &serde_json::Value) -> serde_json::Value {
    poll::until("the new list to be applied", APPLY_DEADLINE, || {
        let s = d.status();
        let done = s["in_sync"] == true && s["applied"]["sha256"] != *previous;
        (done, s)
    })["applied"]["sha256"]
        .clone()
}

#[track_caller]
fn assert_verified(t: &Topology, when: &str) {
    let (agrees, report) = verify(t);
    assert!(agrees, "{when}: the maps must equal the file: {report:#}");
}

#[test]
fn two_hundred_reloads_of_thousands_of_prefixes_leak_nothing() {
    let _serial = serial();
    let t = Topology::new("noleak-reload");
    t.write_orders(&version(0));
    let d = Daemon::start(&t, &[]);
    let traffic = Traffic::start(&t);
    let mut applied = d.status()["applied"]["sha256"].clone();
    let reloads = count("reloads", 200, 2000);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for k in 1..=reloads {
        let text = version(k);
        let change = Instant::now();
        match k % 4 {
            // As an editor saves: a temporary file renamed over the list.
            0 | 1 => t.write_orders(&text),
            // In place (truncate and write), as `cat > orders.json` does.
            2 => std::fs::write(t.orders_path(), &text).expect("writing in place"),
            // Renamed, then `borderfilter reload`, which returns once it is applied.
            _ => {
                t.write_orders(&text);
                d.ok(&["reload"]);
            }
        }
        applied = wait_in_sync(&d, &applied);
        slowest = slowest.max(change.elapsed());
        traffic.assert_no_leak(&format!("after reload {k}"));
        if k % 50 == 0 {
            assert_verified(&t, &format!("after reload {k}"));
        }
    }
    assert_verified(&t, "at the end");
    let audit = d.ok(&["--json", "audit"]);
    let records = serde_json::from_str::<serde_json::Value>(&audit).expect("JSON")["result"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        records > reloads,
        "each applied reload is in the audit trail: {records} records for {reloads} reloads"
    );
    measured(
        "no leak: reloads",
        format!(
            "{reloads} reloads (about 3,500 prefixes out and 3,500 in each, of 13,500) in {:.1?}, slowest file-written-to-applied {slowest:.1?}",
            started.elapsed()
        ),
    );
    traffic.finish("no leak: reloads");
}

#[test]
fn sigkill_and_restart_cycles_while_the_list_changes_leak_nothing() {
    let _serial = serial();
    let t = Topology::new("noleak-kill");
    let mut rng = rng("noleak-kill");
    t.write_orders(&version(0));
    let mut d = Daemon::start(&t, &[]);
    let traffic = Traffic::start(&t);
    let kills = count("kills", 10, 100);
    let started = Instant::now();
    let mut mid_sync = 0;
    for k in 1..=kills {
        let text = version(k);
        if k % 2 == 0 {
            // The list changes while no daemon runs.
            d.kill();
            traffic.assert_no_leak(&format!("kill {k}, daemon down"));
            t.write_orders(&text);
        } else {
            // Killed at a random moment after the list changed, often mid-sync.
            let before = d.status()["applied"]["sha256"].clone();
            t.write_orders(&text);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
            d.kill();
            let (agrees, _) = verify(&t);
            if !agrees {
                mid_sync += 1;
            }
            traffic.assert_no_leak(&format!("kill {k}, daemon down (before: {before})"));
        }
        d = Daemon::start(&t, &[]);
        let s = d.status();
        assert_eq!(s["in_sync"], true, "restart {k}: {s}");
        assert_eq!(s["attached"].as_array().map(Vec::len), Some(2), "{s}");
        assert_verified(&t, &format!("restart {k}"));
        traffic.assert_no_leak(&format!("after restart {k}"));
    }
    measured(
        "no leak: SIGKILL",
        format!(
            "{kills} SIGKILL-and-restart cycles ({} with the list changed while down, {mid_sync} killed before the change was fully applied) in {:.1?}",
            kills / 2,
            started.elapsed()
        ),
    );
    traffic.finish("no leak: SIGKILL");
}

/// The edits of one thread in one round, and what they leave behind.
struct Edits {
    commands: Vec<Vec<String>>,
    /// The order CLI-j-r and its prefixes at the end, and the exception left.
    order: String,
    prefixes: Vec<String>,
    exception: String,
}

/// Ten edits of thread `j` in round `r`: every kind of change, on prefixes of its own.
fn edits(j: usize, r: usize) -> Edits {
    let id = format!("CLI-{j}-{r}");
    let other = format!("CLI-{j}-{r}-B");
    let net = |c: usize| format!("251.{}.{}.0/24", j * 16 + r % 16, c);
    let v6 = format!("2001:db8:cafe:{:x}00::/56", j * 16 + r % 16);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let commands = vec![
        s(&[
            "orders",
            "add",
            "--id",
            &id,
            "--authority",
            "Test Court",
            "--issued",
            "2026-01-01",
            "--action",
            "drop",
            &net(0),
        ]),
        s(&["block", "add", &net(1), &net(2), "--order", &id]),
        s(&[
            "exceptions",
            "add",
            &format!("251.{}.0.128/25", j * 16 + r % 16),
            "--reason",
            "hole",
        ]),
        s(&["block", "add", &net(3), "--order", &id]),
        s(&["block", "remove", &net(1), "--order", &id]),
        s(&[
            "exceptions",
            "remove",
            &format!("251.{}.0.128/25", j * 16 + r % 16),
        ]),
        s(&["block", "add", &v6, "--order", &id]),
        s(&[
            "exceptions",
            "add",
            &format!("251.{}.2.7/32", j * 16 + r % 16),
            "--reason",
            "hole",
        ]),
        s(&[
            "orders",
            "add",
            "--id",
            &other,
            "--authority",
            "Test Court",
            "--issued",
            "2026-01-01",
            "--action",
            "monitor",
            &net(9),
        ]),
        s(&["orders", "remove", &other]),
    ];
    Edits {
        commands,
        order: id,
        prefixes: vec![net(0), net(2), net(3), v6],
        exception: format!("251.{}.2.7/32", j * 16 + r % 16),
    }
}

#[test]
fn a_hundred_concurrent_cli_edits_leak_nothing_and_all_land() {
    let _serial = serial();
    let t = Topology::new("noleak-cli");
    t.write_orders(&version(0));
    let d = Daemon::start(&t, &[]);
    let traffic = Traffic::start(&t);
    let threads = 10;
    let rounds = count("cli_rounds", 1, 10);
    let started = Instant::now();
    let socket = d.socket.clone();
    let workers: Vec<_> = (0..threads)
        .map(|j| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut slowest = Duration::ZERO;
                for r in 0..rounds {
                    for c in edits(j, r).commands {
                        let args: Vec<&str> = c.iter().map(String::as_str).collect();
                        let took = Instant::now();
                        let out = borderfilter_tests::daemon::cli(&socket, &args);
                        slowest = slowest.max(took.elapsed());
                        assert!(
                            out.status.success(),
                            "`borderfilter {}` failed: {}",
                            args.join(" "),
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
                slowest
            })
        })
        .collect();
    let slowest = workers
        .into_iter()
        .map(|w| w.join().expect("an edit failed"))
        .max()
        .unwrap_or_default();
    let took = started.elapsed();
    traffic.assert_no_leak("after the concurrent edits");

    // Every edit landed: in the file, and (verify) in the maps.
    let s = d.status();
    assert_eq!(s["in_sync"], true, "{s}");
    assert_verified(&t, "after the concurrent edits");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.orders_path()).expect("the file"))
            .expect("JSON");
    let orders = file["orders"].as_array().expect("orders");
    let exceptions: Vec<&str> = file["exceptions"]
        .as_array()
        .expect("exceptions")
        .iter()
        .filter_map(|e| e["prefix"].as_str())
        .collect();
    for j in 0..threads {
        for r in 0..rounds {
            let e = edits(j, r);
            let o = orders
                .iter()
                .find(|o| o["id"] == e.order.as_str())
                .unwrap_or_else(|| panic!("order {} is missing from the file", e.order));
            let mut got: Vec<&str> = o["prefixes"]
                .as_array()
                .expect("prefixes")
                .iter()
                .filter_map(|p| p.as_str())
                .collect();
            got.sort();
            let mut want: Vec<&str> = e.prefixes.iter().map(String::as_str).collect();
            want.sort();
            assert_eq!(got, want, "the prefixes of {}", e.order);
            assert!(
                !orders.iter().any(|o| o["id"] == format!("{}-B", e.order)),
                "{}-B was removed",
                e.order
            );
            assert!(
                exceptions.contains(&e.exception.as_str()),
                "exception {} is missing: {exceptions:?}",
                e.exception
            );
        }
    }
    assert_eq!(
        exceptions.len(),
        1 + threads * rounds,
        "the exceptions removed are gone: {exceptions:?}"
    );
    measured(
        "no leak: concurrent CLI edits",
        format!(
            "{} edits from {threads} threads at once in {took:.1?}, slowest command {slowest:.1?}",
            threads * rounds * 10
        ),
    );
    traffic.finish("no leak: concurrent CLI edits");
}
