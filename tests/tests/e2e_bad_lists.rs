//! End to end: a bad order list changes nothing. One daemon holds a good list while the
//! file is replaced, case after case, by malformed lists and by things that are not lists
//! at all (a directory, a FIFO, a device, a file it may not read, no file); each is refused
//! with a message that names the problem and where it is, through every door (the file
//! watch, `borderfilter reload`, `status`, `borderfilter validate`), and the maps' digest,
//! the blocking and the daemon's answers stay as they were. (Bad requests on the control
//! socket: `e2e_bad_requests.rs`.)

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use borderfilter_tests::{
    bad_input::good,
    daemon::{bin, verify, Daemon},
    poll,
    topology::{exception, order, order_list, Topology},
    traffic::{sock, tcp_connects, Listeners, TCP_PORT},
};

/// Blocked by the good list (order DROP-1).
const BLOCKED: &str = "198.51.100.20";
/// Allowed by the good list; most bad lists would block it (order NEW-1), so that a list
/// applied even in part shows in the traffic as well as in the maps.
const ALLOWED: &str = "203.0.113.10";
const SHORT: Duration = Duration::from_millis(400);
/// How long the daemon may take to notice a file change and refuse it.
const NOTICE: Duration = Duration::from_secs(20);
/// filter-user/src/orders/problem.rs: `MAX_PROBLEMS`.
const MAX_PROBLEMS: usize = 1000;

/// The good list plus order NEW-1 (blocking [`ALLOWED`]) with `extra` spliced in.
fn changed(extra: &str) -> String {
    changed_with(&[ALLOWED], extra)
}

fn changed_with(prefixes: &[&str], extra: &str) -> String {
    order_list(
        &[
            order(
                "DROP-1",
                "drop",
                &["198.51.100.0/24", "2001:db8:66::/48"],
                "",
            ),
            order("NEW-1", "drop", prefixes, extra),
        ],
        &[],
    )
}

/// How the operator (or an accident) puts the bad input in place of the list.
enum Replace {
    /// Written to a temporary file and renamed over the list, as editors and tools do.
    Rename(Vec<u8>),
    /// Written into the list file itself (truncated, then written).
    InPlace(Vec<u8>),
    Directory,
    Fifo,
    /// A symbolic link to /dev/zero: a character device that never ends.
    Device,
    /// A valid list (one that would block [`ALLOWED`]) with mode 0000: the daemon, which
    /// runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH here, may not read it.
    Unreadable(Vec<u8>),
    Deleted,
}

/// What `borderfilter validate FILE` says of the case.
enum Offline {
    /// Refuses it with the same fragments as the daemon.
    Same,
    /// Accepts it: the problem depends on the deployment, which only the daemon knows.
    Accepts,
}

struct Case {
    name: &'static str,
    replace: Replace,
    /// Fragments the refusal must contain, each exactly: what is wrong and where.
    expect: Vec<String>,
    offline: Offline,
}

fn case(name: &'static str, replace: Replace, expect: &[&str]) -> Case {
    Case {
        name,
        replace,
        expect: expect.iter().map(|s| s.to_string()).collect(),
        offline: Offline::Same,
    }
}

fn text(s: String) -> Replace {
    Replace::Rename(s.into_bytes())
}

fn cases(dir: &Path) -> Vec<Case> {
    let path = dir.join("orders.json").display().to_string();
    let full = changed("");
    // Cut inside NEW-1's prefix: `..."prefixes": ["203.0.`
    let cut = full.find("203.0.113.10").expect("NEW-1's prefix") + 6;
    let with_authority = |from: &str, to: &[u8]| {
        let mut bytes = full.clone().into_bytes();
        let at = full.rfind(from).expect("NEW-1's authority");
        bytes.splice(at..at + from.len(), to.iter().copied());
        bytes
    };
    let mut huge = changed("").into_bytes();
    huge.resize(100 << 20, b' ');
    let many_bad = format!(
        "{{\"version\": 1, \"orders\": [{{\"id\": \"NEW-1\", \"authority\": \"Test Court\", \"issued\": \"2026-01-01\", \"action\": \"drop\", \"prefixes\": [\"{ALLOWED}\", {}]}}]}}",
        vec!["1"; 1_000_000].join(",")
    );
    let nested = format!(
        "{{\"version\": 1, \"orders\": [], \"x\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    vec![
        // Not JSON, or not all of it.
        case(
            "empty file, truncated in place",
            Replace::InPlace(Vec::new()),
            &[
                "error: line 1, column 0: the file is empty: an empty order list is {\"version\": 1, \"orders\": []}",
            ],
        ),
        case(
            "only blank lines",
            text("\n  \n".into()),
            &["error: line 3, column 0: the file is empty"],
        ),
        case(
            "truncated inside a string",
            text(full[..cut].into()),
            &["error: line 2, column 127: invalid JSON: EOF while parsing a string"],
        ),
        case(
            "truncated at the end, written in place",
            Replace::InPlace(full.trim_end().trim_end_matches('}').as_bytes().to_vec()),
            &["error: line 2, column 155: invalid JSON: EOF while parsing an object"],
        ),
        case(
            "trailing data after the list",
            text(format!("{full}\n}}\n")),
            &["error: line 3, column 1: invalid JSON: trailing characters"],
        ),
        case(
            "a comment",
            text(format!("// orders of 2026\n{full}")),
            &["error: line 1, column 1: invalid JSON: expected value"],
        ),
        case(
            "single quotes",
            text(full.replace('"', "'")),
            &["error: line 1, column 2: invalid JSON: key must be a string"],
        ),
        case(
            "a key given twice",
            text(changed("\"action\": \"monitor\"")),
            &["error: line 2, column 145: invalid JSON: the field \"action\" is given twice in one object"],
        ),
        case(
            "deeply nested arrays",
            text(nested),
            &["error: line 1, column 161: invalid JSON: recursion limit exceeded"],
        ),
        case(
            "a number beyond f64",
            text(full.replacen("\"version\": 1", "\"version\": 1e400", 1)),
            &["error: line 1, column 17: invalid JSON: number out of range"],
        ),
        // Bytes that are not text.
        case(
            "invalid UTF-8 in a value",
            Replace::Rename(with_authority("Test Court", b"Test \xff\xfe Court")),
            &["error: line 2, column 36: invalid JSON: invalid unicode code point (the file is not valid UTF-8)"],
        ),
        case(
            "a byte order mark",
            Replace::Rename([b"\xef\xbb\xbf".as_slice(), full.as_bytes()].concat()),
            &["error: line 1, column 1: the file starts with a byte order mark (BOM): save it as UTF-8 without one"],
        ),
        case(
            "a NUL byte in a value, written in place",
            Replace::InPlace(with_authority("Test Court", b"Test\0Court")),
            &["error: line 2, column 35: invalid JSON: control character (\\u0000-\\u001F) found while parsing a string (the file contains NUL bytes: is it damaged, or not a text file?)"],
        ),
        case(
            "only NUL bytes, as a damaged disk leaves a file, written in place",
            Replace::InPlace(vec![0; 4096]),
            &["error: line 1, column 1: invalid JSON: expected value (the file contains NUL bytes: is it damaged, or not a text file?)"],
        ),
        // JSON, but not an order list.
        case(
            "an array at the top",
            text("[{\"version\": 1}]".into()),
            &["error: file = [{\"version\":1}]: the top level must be an object with \"version\" and \"orders\", not an array"],
        ),
        case(
            "version as a string",
            text(full.replacen("\"version\": 1", "\"version\": \"1\"", 1)),
            &["error: file: version = \"1\": unsupported version; this build reads version 1"],
        ),
        case(
            "orders as a string",
            text("{\"version\": 1, \"orders\": \"NEW-1\"}".into()),
            &["error: file: orders = \"NEW-1\": must be an array of orders, not a string"],
        ),
        case(
            "an order as a string",
            text(full.replacen("{\"id\": \"NEW-1\"", "\"NEW-1\", {\"id\": \"NEW-2\"", 1)),
            &["error: orders[1] = \"NEW-1\": an order must be an object, not a string"],
        ),
        case(
            "action as a number",
            text(full.replace("\"action\": \"drop\", \"prefixes\": [\"203", "\"action\": 1, \"prefixes\": [\"203")),
            &["error: order \"NEW-1\" (orders[1]): action = 1: must be a string, not a number"],
        ),
        case(
            "an unknown action",
            text(full.replace("\"action\": \"drop\", \"prefixes\": [\"203", "\"action\": \"block\", \"prefixes\": [\"203")),
            &["error: order \"NEW-1\" (orders[1]): action = \"block\": must be one of drop, redirect, monitor"],
        ),
        case(
            "allow_broad as a string",
            text(changed("\"allow_broad\": \"yes\"")),
            &["error: order \"NEW-1\" (orders[1]): allow_broad = \"yes\": must be true or false, not a string"],
        ),
        case(
            "a prefix as a number",
            text(full.replace("[\"203.0.113.10\"]", "[\"203.0.113.10\", 42]")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = 42: must be a string like \"198.51.100.0/24\", not a number"],
        ),
        case(
            "no prefixes",
            text(full.replace("[\"203.0.113.10\"]", "[]")),
            &["error: order \"NEW-1\" (orders[1]): prefixes = []: an order needs at least one prefix (or a name in \"domains\")"],
        ),
        case(
            "a required field missing",
            text(full.replacen("\"authority\": \"Test Court\", \"issued\": \"2026-01-01\", \"basis\": \"copyright\", \"action\": \"drop\", \"prefixes\": [\"203", "\"issued\": \"2026-01-01\", \"basis\": \"copyright\", \"action\": \"drop\", \"prefixes\": [\"203", 1)),
            &["error: order \"NEW-1\" (orders[1]): authority: required field is missing"],
        ),
        case(
            "an unknown field at the top",
            text(full.replace("\"exceptions\"", "\"exception\"")),
            &["error: file: exception: unknown field (fields are version, orders, exceptions); did you mean \"exceptions\"?"],
        ),
        case(
            "an unknown field in an order",
            text(changed("\"expiry\": \"2027-01-01\"")),
            &["error: order \"NEW-1\" (orders[1]): expiry: unknown field (fields are id, authority, issued, valid_from, expires, basis, action, direction, prefixes, domains, allow_broad, allow_shared, note); did you mean \"expires\"?"],
        ),
        case(
            "an unknown field in an exception",
            text(order_list(
                &[order("DROP-1", "drop", &["198.51.100.0/24", "2001:db8:66::/48"], "")],
                &[exception(ALLOWED, "resolver\", \"comment\": \"x")],
            )),
            &["error: exceptions[0]: comment: unknown field (fields are prefix, reason)"],
        ),
        case(
            "an unknown field whose name would forge a log line",
            text(changed("\"x\\nerror: file: the list is fine\": 1")),
            &["error: order \"NEW-1\" (orders[1]): \"x\\nerror: file: the list is fine\": unknown field"],
        ),
        case(
            "a date that does not exist",
            text(full.replace("\"issued\": \"2026-01-01\", \"basis\": \"copyright\", \"action\": \"drop\", \"prefixes\": [\"203", "\"issued\": \"2026-13-01\", \"basis\": \"copyright\", \"action\": \"drop\", \"prefixes\": [\"203")),
            &["error: order \"NEW-1\" (orders[1]): issued = \"2026-13-01\": month out of range"],
        ),
        case(
            "expires before valid_from",
            text(changed("\"valid_from\": \"2026-06-01\", \"expires\": \"2026-05-01\"")),
            &["error: order \"NEW-1\" (orders[1]): expires = \"2026-05-01\": ends before valid_from 2026-06-01 begins"],
        ),
        case(
            "an id too long",
            text(full.replace("\"NEW-1\"", &format!("\"{}\"", "N".repeat(129)))),
            &["error: orders[1]: id = \"NNNNNNNN", "...: must be 1 to 128 characters, not 129"],
        ),
        case(
            "an id with a control character",
            text(full.replace("\"NEW-1\"", "\"NEW\\u001b-1\"")),
            &["error: order \"NEW\\u{1b}-1\" (orders[1]): id = \"NEW\\u001b-1\": must be printable characters (no control characters)"],
        ),
        case(
            "duplicated ids",
            text(full.replace("\"NEW-1\"", "\"DROP-1\"")),
            &["error: order \"DROP-1\" (orders[1]): id = \"DROP-1\": duplicates the id of orders[0]; ids must be unique"],
        ),
        // Prefixes.
        case(
            "an invalid address",
            text(changed_with(&["203.0.113.256"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[0] = \"203.0.113.256\": not an IPv4 or IPv6 address or prefix"],
        ),
        case(
            "a host name instead of an address",
            text(changed_with(&["example.com"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[0] = \"example.com\": not an IPv4 or IPv6 address or prefix"],
        ),
        case(
            "an IPv4 prefix length out of range",
            text(changed_with(&[ALLOWED, "203.0.113.0/33"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = \"203.0.113.0/33\": prefix length 33 is out of range for ipv4 (0 to 32)"],
        ),
        case(
            "an IPv6 prefix length out of range",
            text(changed_with(&[ALLOWED, "2001:db8:77::/129"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = \"2001:db8:77::/129\": prefix length 129 is out of range for ipv6 (0 to 128)"],
        ),
        case(
            "IPv4 host bits set",
            text(changed_with(&["203.0.113.10/24"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[0] = \"203.0.113.10/24\": host bits are set; the network is 203.0.113.0/24 (or write a single address without /length)"],
        ),
        case(
            "IPv6 host bits set",
            text(changed_with(&[ALLOWED, "2001:db8:77::10/48"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = \"2001:db8:77::10/48\": host bits are set; the network is 2001:db8:77::/48"],
        ),
        case(
            "an IPv4 /0, even with allow_broad",
            text(changed_with(&[ALLOWED, "0.0.0.0/0"], "\"allow_broad\": true")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = \"0.0.0.0/0\": a /0 covers the whole address family and is never allowed"],
        ),
        case(
            "an IPv6 /0",
            text(changed_with(&[ALLOWED, "::/0"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = \"::/0\": a /0 covers the whole address family and is never allowed"],
        ),
        case(
            "a /0 exception",
            text(order_list(
                &[
                    order("DROP-1", "drop", &["198.51.100.0/24", "2001:db8:66::/48"], ""),
                    order("NEW-1", "drop", &[ALLOWED], ""),
                ],
                &[exception("0.0.0.0/0", "everything")],
            )),
            &["error: exceptions[0]: prefix = \"0.0.0.0/0\": a /0 exception would exempt the whole address family; never allowed"],
        ),
        case(
            "a broad prefix without allow_broad",
            text(changed_with(&[ALLOWED, "2001:db8::/31"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = \"2001:db8::/31\": broader than /32 (158456325028528675187087900672 addresses); if the order really covers all of it, set \"allow_broad\": true on the order"],
        ),
        case(
            "a protected range",
            text(changed_with(&[ALLOWED, "127.0.0.1"], "")),
            &["error: order \"NEW-1\" (orders[1]): prefixes[1] = \"127.0.0.1\": overlaps 127.0.0.0/8, loopback"],
        ),
        Case {
            offline: Offline::Accepts,
            ..case(
                "a redirect order with no redirect target",
                text(full.replace("\"action\": \"drop\", \"prefixes\": [\"203", "\"action\": \"redirect\", \"prefixes\": [\"203")),
                &["error: order \"NEW-1\" (orders[1]): action = \"redirect\": no redirect target is configured"],
            )
        },
        // Size.
        case(
            "a million bad prefixes (about 2 MB)",
            text(many_bad),
            &[
                "error: order \"NEW-1\" (orders[0]): prefixes[1] = 1: must be a string like \"198.51.100.0/24\", not a number",
                "error: file: 999000 more problems not shown (999000 errors, 0 warnings)",
            ],
        ),
        case(
            "a 100 MB file",
            Replace::Rename(huge),
            &[&format!("error: {path} is larger than the limit of 67108864 bytes (--max-list-bytes)")],
        ),
        // Not a list at all.
        case(
            "a directory",
            Replace::Directory,
            &[&format!("error: {path} is a directory, not a regular file")],
        ),
        case(
            "a FIFO",
            Replace::Fifo,
            &[&format!("error: {path} is a FIFO, not a regular file")],
        ),
        case(
            "a link to /dev/zero",
            Replace::Device,
            &[&format!("error: {path} is a character device, not a regular file")],
        ),
        case(
            "a file the daemon may not read",
            Replace::Unreadable(full.clone().into_bytes()),
            &[&format!("error: cannot open {path}: Permission denied (os error 13)")],
        ),
        case(
            "no file",
            Replace::Deleted,
            &[&format!("error: cannot open {path}: No such file or directory (os error 2)")],
        ),
    ]
}

/// Puts the bad input in place of the list.
fn replace(t: &Topology, how: &Replace) {
    let path = t.orders_path();
    let temp = t.dir.join("bad.tmp");
    let _ = std::fs::remove_file(&temp);
    let rename = |temp: &Path| std::fs::rename(temp, &path).expect("renaming over the list");
    match how {
        Replace::Rename(bytes) => {
            std::fs::write(&temp, bytes).expect("writing");
            rename(&temp);
        }
        Replace::InPlace(bytes) => std::fs::write(&path, bytes).expect("writing in place"),
        Replace::Directory => {
            std::fs::remove_file(&path).expect("removing the list");
            std::fs::create_dir(&path).expect("creating a directory");
        }
        Replace::Fifo => {
            let c = std::ffi::CString::new(temp.display().to_string()).expect("a path");
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
            rename(&temp);
        }
        Replace::Device => {
            std::os::unix::fs::symlink("/dev/zero", &temp).expect("symlink");
            rename(&temp);
        }
        Replace::Unreadable(bytes) => {
            std::fs::write(&temp, bytes).expect("writing");
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o000))
                .expect("chmod 000");
            rename(&temp);
        }
        Replace::Deleted => std::fs::remove_file(&path).expect("removing the list"),
    }
}

/// Puts the good list back and waits until the daemon has seen it (no refusal).
#[track_caller]
fn restore(t: &Topology, d: &Daemon) {
    let path = t.orders_path();
    if path.is_dir() {
        std::fs::remove_dir(&path).expect("removing the directory");
    }
    t.write_orders(&good());
    poll::until("the good list to be in force again", NOTICE, || {
        let s = d.status();
        (s["refusal"].is_null() && s["in_sync"] == true, s)
    });
}

/// Capability numbers (linux/capability.h).
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;

/// Drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's bounding set, as
/// `setpriv --bounding-set=-dac_override,-dac_read_search` or systemd's
/// `CapabilityBoundingSet=` would: root processes started from this thread (the daemon,
/// the CLI) have neither, so a file of mode 0000 is unreadable to them. This thread keeps
/// its own capabilities; other tests' threads are unaffected.
fn drop_file_override_for_children() {
    for cap in [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH] {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        assert_eq!(
            rc,
            0,
            "PR_CAPBSET_DROP: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The effective capabilities of process `pid`.
fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("a CapEff line")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex")
}

/// The refusal's problems in a `status` result, one line each.
fn problem_lines(status: &serde_json::Value) -> Vec<String> {
    status["refusal"]["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_has_all(what: &str, haystack: &str, fragments: &[String], context: &str) {
    for f in fragments {
        assert!(
            haystack.contains(f.as_str()),
            "{what} lacks {f:?}; it says:\n{haystack}\n--- {context}"
        );
    }
}

#[test]
fn bad_lists_are_refused_with_a_clear_message_and_change_nothing() {
    let t = Topology::new("bad-lists");
    drop_file_override_for_children();
    t.write_orders(&good());
    let d = Daemon::start(&t, &[]);
    let _server = Listeners::start(&t.server, &[BLOCKED, ALLOWED]);

    let caps = effective_caps(d.pid());
    let dac = (1u64 << CAP_DAC_OVERRIDE) | (1u64 << CAP_DAC_READ_SEARCH);
    assert_eq!(
        caps & dac,
        0,
        "the daemon runs without DAC override (CapEff {caps:x})"
    );
    let status = d.status();
    assert_eq!(
        status["in_sync"], true,
        "the daemon works without them: {status}"
    );
    let good_sha = status["applied"]["sha256"].clone();
    let (agrees, report) = verify(&t);
    assert!(agrees, "the maps enforce the good list: {report}");
    let digest = report["maps_sha256"].clone();
    assert!(digest.is_string(), "{report}");
    assert!(!tcp_connects(&t.client, sock(BLOCKED, TCP_PORT), SHORT));
    assert!(tcp_connects(&t.client, sock(ALLOWED, TCP_PORT), SHORT * 3));

    let cases = cases(&t.dir);
    assert!(cases.len() >= 25, "{} cases", cases.len());
    for c in &cases {
        let name = c.name;
        restore(&t, &d);
        let started = Instant::now();
        replace(&t, &c.replace);

        // The daemon notices by itself (file watch) and refuses.
        poll::until(
            &format!("[{name}] the daemon to refuse the file with {:?}", c.expect),
            NOTICE,
            || {
                let s = d.status();
                let lines = problem_lines(&s);
                let found = c
                    .expect
                    .iter()
                    .all(|f| lines.iter().any(|l| l.contains(f.as_str())));
                (found, s["refusal"].clone())
            },
        );
        let status = d.status();
        let problems = problem_lines(&status);
        assert!(
            problems.iter().all(|p| !p.contains(['\n', '\r'])),
            "[{name}] every problem is one line: {problems:?}"
        );
        assert!(
            problems.len() <= MAX_PROBLEMS + 1,
            "[{name}] {} problems reported",
            problems.len()
        );
        assert_eq!(status["in_sync"], false, "[{name}] {status}");
        assert_eq!(
            status["applied"]["sha256"], good_sha,
            "[{name}] the list in force is still the good one"
        );

        // `reload` answers with the refusal and exits 1.
        let out = d.cli(&["reload"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "[{name}] reload: {stderr}");
        assert_has_all(&format!("[{name}] reload"), &stderr, &c.expect, "");

        // Nothing changed in the maps, and the filter still filters.
        let (_, report) = verify(&t);
        assert_eq!(
            report["maps_sha256"], digest,
            "[{name}] the maps changed: {report}"
        );
        assert!(
            !tcp_connects(&t.client, sock(BLOCKED, TCP_PORT), SHORT),
            "[{name}] {BLOCKED} is still blocked"
        );
        assert!(
            tcp_connects(&t.client, sock(ALLOWED, TCP_PORT), SHORT * 3),
            "[{name}] {ALLOWED} is still allowed"
        );
        let check = d.ok(&["--json", "check", BLOCKED]);
        assert!(check.contains("DROP-1"), "[{name}] check answers: {check}");

        // `validate` says the same offline (exit 1), or accepts what only the daemon
        // can judge.
        let out = Command::new(bin())
            .arg("validate")
            .arg(t.orders_path())
            .output()
            .expect("running validate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        match c.offline {
            Offline::Same => {
                assert_eq!(out.status.code(), Some(1), "[{name}] validate: {stderr}");
                assert_has_all(&format!("[{name}] validate"), &stderr, &c.expect, "");
            }
            Offline::Accepts => assert_eq!(out.status.code(), Some(0), "[{name}] {stderr}"),
        }
        eprintln!(
            "[{name}] checked in {:?}: {}",
            started.elapsed(),
            problems[0]
        );
    }
    restore(&t, &d);
    let (agrees, report) = verify(&t);
    assert!(agrees && report["maps_sha256"] == digest, "{report}");
    assert!(
        !d.log_text().contains("panicked"),
        "the daemon panicked:\n{}",
        d.log_text()
    );
}
