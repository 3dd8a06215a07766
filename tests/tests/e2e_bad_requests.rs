//! End to end: bad requests on the control socket change nothing. The daemon gets garbage,
//! oversized, wrong-shaped, half-sent and slow requests, and a crowd of idle connections:
//! each gets an error or times out, and everyone else is served at once. Run out of file
//! descriptors, it neither spins nor floods its log, and serves again once they are free.
//! (Bad order lists: `e2e_bad_lists.rs`.)

use std::{
    io::{BufRead, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use borderfilter_tests::{
    bad_input::good,
    daemon::{verify, Daemon},
    poll,
    topology::Topology,
};

/// filter-user/src/control/mod.rs: `MAX_REQUEST_BYTES` and `REQUEST_TIMEOUT`.
const MAX_REQUEST_BYTES: usize = 4 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `bytes` on a new connection, closes the sending side, and returns the answer
/// (parsed) and how long it took.
fn ask_raw(socket: &Path, bytes: &[u8]) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let mut s = UnixStream::connect(socket).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    answer(s, started)
}

/// Reads the one-line answer, as the CLI does. (Reading on to the end would meet a reset
/// where the daemon hung up on a request it did not read whole.)
#[track_caller]
fn answer(s: UnixStream, started: Instant) -> (serde_json::Value, Duration) {
    let mut out = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut out)
        .expect("reading the answer");
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (v, started.elapsed())
}

#[track_caller]
fn assert_error(what: &str, answer: &serde_json::Value, fragment: &str) {
    assert_eq!(answer["ok"], false, "{what}: {answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(fragment),
        "{what}: expected {fragment:?} in {error:?}"
    );
}

#[test]
fn malformed_requests_get_errors_and_others_are_served_meanwhile() {
    let t = Topology::new("bad-requests");
    t.write_orders(&good());
    let d = Daemon::start(&t, &[]);
    let socket = d.socket.clone();

    let wrong: &[(&str, &[u8], &str)] = &[
        ("not UTF-8", b"\xff\xfe{\"command\": \"status\"}\n", "the request is not UTF-8"),
        ("garbage", b"GET / HTTP/1.1\r\n", "malformed request: expected value at line 1 column 1"),
        ("NUL bytes", b"\0\0\0\0\n", "malformed request: expected value at line 1 column 1"),
        ("an empty line", b"\n", "malformed request: EOF while parsing a value at line 1 column 0"),
        ("nothing, then end of stream", b"", "malformed request: EOF while parsing a value"),
        ("an array", b"[\"detach\"]\n", "malformed request: a request is a JSON object like {\"command\": \"status\"}"),
        ("a string", b"\"status\"\n", "malformed request: invalid type: string \"status\", expected internally tagged enum Request"),
        ("no command", b"{\"id\": \"DROP-1\"}\n", "malformed request: missing field `command`"),
        ("an unknown command", b"{\"command\": \"unblock_everything\"}\n", "malformed request: unknown variant `unblock_everything`, expected one of `status`"),
        // (Commands without fields ignore extra ones: serde's deny_unknown_fields does not
        // reach the unit variants of an internally tagged enum.)
        ("a misspelt field", b"{\"command\": \"reload\", \"froce\": true}\n", "malformed request: unknown field `froce`, expected `force`"),
        ("a missing field", b"{\"command\": \"check\"}\n", "malformed request: missing field `address`"),
        ("a field of the wrong type", b"{\"command\": \"check\", \"address\": 3325256724}\n", "malformed request: invalid type: integer `3325256724`, expected a string"),
        ("an edit of the wrong shape", b"{\"command\": \"edit\", \"edit\": {\"edit\": \"add_prefixes\", \"order\": \"DROP-1\", \"prefixes\": \"203.0.113.10\"}}\n", "malformed request: invalid type: string \"203.0.113.10\", expected a sequence"),
        ("two requests on one line", b"{\"command\": \"status\"} {\"command\": \"detach\"}\n", "malformed request: trailing characters at line 1 column 23"),
        ("a nonsense address", b"{\"command\": \"check\", \"address\": \"example.com\"}\n", "\"example.com\" is not an IPv4 or IPv6 address"),
    ];
    for (what, bytes, fragment) in wrong {
        let (a, took) = ask_raw(&socket, bytes);
        assert_error(what, &a, fragment);
        assert!(
            took < REQUEST_TIMEOUT,
            "{what}: answered at once, not after {took:?}"
        );
    }

    // Oversized: the daemon stops reading after MAX_REQUEST_BYTES and answers.
    let started = Instant::now();
    let s = UnixStream::connect(&socket).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = s.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let mut big = b"{\"command\": \"check\", \"address\": \"".to_vec();
        big.resize(MAX_REQUEST_BYTES + 64 * 1024, b'1');
        // The daemon hangs up before the end: a broken pipe is expected.
        let _ = writer.write_all(&big);
    });
    let (a, _) = answer(s, started);
    assert_error(
        "oversized",
        &a,
        &format!("request larger than {MAX_REQUEST_BYTES} bytes"),
    );
    sender.join().expect("sender");

    // Half a request, then silence; and a slow sender that never finishes in time. While
    // they are pending, and while a crowd of idle connections is open, others are served
    // at once.
    let started = Instant::now();
    let mut half = UnixStream::connect(&socket).expect("connecting");
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    half.write_all(b"{\"command\": \"sta")
        .expect("writing half");
    let slow = UnixStream::connect(&socket).expect("connecting");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut slow_writer = slow.try_clone().expect("clone");
    let slow_sender = std::thread::spawn(move || {
        for b in b"{\"command\": \"status\"}\n" {
            if slow_writer.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(400));
        }
    });
    let idle: Vec<UnixStream> = (0..500)
        .map(|_| UnixStream::connect(&socket).expect("an idle connection"))
        .collect();
    let served = Instant::now();
    let answers: Vec<_> = (0..50)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || ask_raw(&socket, b"{\"command\": \"status\"}\n"))
        })
        .collect();
    for a in answers {
        let (a, took) = a.join().expect("a client");
        assert_eq!(a["ok"], true, "{a}");
        assert!(
            took < Duration::from_secs(2),
            "served at once while others are pending, not after {took:?}"
        );
    }
    assert!(
        d.cli(&["status"]).status.success() && served.elapsed() < Duration::from_secs(3),
        "the CLI too"
    );
    assert!(
        started.elapsed() < REQUEST_TIMEOUT,
        "all of that happened while the half request was pending"
    );

    let (a, took) = answer(half, started);
    assert_error(
        "half a request",
        &a,
        &format!("no complete request within {} s", REQUEST_TIMEOUT.as_secs()),
    );
    assert!(
        took >= REQUEST_TIMEOUT - Duration::from_millis(500) && took < REQUEST_TIMEOUT * 3,
        "half a request times out after {REQUEST_TIMEOUT:?}, not {took:?}"
    );
    let (a, took) = answer(slow, started);
    assert_error(
        "a request sent one byte at a time",
        &a,
        "no complete request within 5 s",
    );
    assert!(took < REQUEST_TIMEOUT * 3, "{took:?}");
    slow_sender.join().expect("slow sender");

    // The idle connections were timed out too, and the daemon serves on.
    for (i, c) in idle.into_iter().enumerate().step_by(50) {
        let (a, _) = answer(c, started);
        assert_error(
            &format!("idle connection {i}"),
            &a,
            "no complete request within",
        );
    }
    let status = d.status();
    assert_eq!(status["in_sync"], true, "{status}");
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report}");
}

/// CPU time (user and system, in clock ticks) that process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields after the name")
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of proc(5), 12 and 13 after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Idle connections beyond the daemon's file descriptor limit: every accept fails until
/// one closes. The daemon pauses between attempts instead of spinning and flooding its
/// log (it did: 1.3 CPU-seconds per second and 26,000 log lines per second), and serves
/// again as soon as the connections go.
#[test]
fn running_out_of_file_descriptors_neither_spins_nor_floods_the_log() {
    let t = Topology::new("emfile");
    t.write_orders(&good());
    let d = Daemon::start(&t, &[]);
    let out = Command::new("prlimit")
        .args(["--pid", &d.pid().to_string(), "--nofile=128:128"])
        .output()
        .expect("running prlimit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let idle: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&d.socket).expect("an idle connection"))
        .collect();
    let failing = || {
        d.log_text()
            .matches("accepting a control connection: Too many open files")
            .count()
    };
    poll::until(
        "the daemon to run out of descriptors",
        Duration::from_secs(5),
        || (failing() > 0, failing()),
    );
    let (before, lines_before) = (cpu_ticks(d.pid()), failing());
    std::thread::sleep(Duration::from_secs(3));
    let (ticks, lines) = (cpu_ticks(d.pid()) - before, failing() - lines_before);
    eprintln!("out of descriptors for 3 s: {ticks} ticks of CPU, {lines} log lines");
    assert!(
        ticks < 50,
        "the daemon spins: {ticks} clock ticks of CPU in 3 s"
    );
    assert!(
        lines < 100,
        "the daemon floods its log: {lines} lines in 3 s"
    );

    drop(idle);
    let started = Instant::now();
    let status = d.status();
    assert_eq!(status["in_sync"], true, "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "served {:?} after the connections closed",
        started.elapsed()
    );
}
