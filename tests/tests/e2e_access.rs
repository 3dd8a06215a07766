//! End to end: who may use the control socket. The socket is root's, group
//! `borderfilter` when that group exists, mode 0660 (else 0600; 0666 with
//! --public-read); the daemon checks the peer's credentials (SO_PEERCRED) and refuses
//! changes from anyone who is neither root nor in the group. An unprivileged user made
//! for the test (useradd, removed at the end even on failure) runs the CLI through
//! `setpriv`: read-only commands work only with --public-read, changes are refused
//! (exit 1, a clear message) until the user is in the group. The metrics endpoint
//! answers nothing but GET and HEAD.
//!
//! The group `borderfilter` is created for the test only if it did not exist (and then
//! deleted again); when it already exists the "no group" configurations are skipped.

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::{Command, Output},
    time::Duration,
};

use borderfilter_tests::{
    daemon::{bin, verify, Daemon},
    netns::sh,
    poll,
    topology::{order, order_list, Topology},
};

const GROUP: &str = "borderfilter";
const METRICS: &str = "127.0.0.1:10431";

/// The tests that make users and the group run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn group_gid(name: &str) -> Option<u32> {
    let out = Command::new("getent")
        .args(["group", name])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
}

/// A user (and, if needed, the group) made for this test; removed on drop, also when the
/// test fails.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    made_group: bool,
}

impl TestUser {
    fn new(prefix: &str, tag: &str) -> Self {
        let name = format!("{prefix}{tag}");
        let _ = Command::new("userdel").arg(&name).output();
        sh(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ],
        );
        let id = |flag: &str| -> u32 {
            String::from_utf8_lossy(&sh("id", &[flag, &name]).stdout)
                .trim()
                .parse()
                .expect("a number")
        };
        Self {
            uid: id("-u"),
            gid: id("-g"),
            name,
            made_group: false,
        }
    }

    /// Creates the group `borderfilter` (remembering to delete it) unless it exists.
    fn ensure_group(&mut self) -> u32 {
        if let Some(gid) = group_gid(GROUP) {
            return gid;
        }
        sh("groupadd", &["--system", GROUP]);
        self.made_group = true;
        group_gid(GROUP).expect("the group just made")
    }

    fn join_group(&self) {
        sh("usermod", &["--append", "--groups", GROUP, &self.name]);
    }

    /// `borderfilter ARGS` as this user, with exactly the groups of its account
    /// (`--init-groups`), or with only its own group (`--clear-groups`).
    fn cli(&self, socket: &std::path::Path, init_groups: bool, args: &[&str]) -> Output {
        let (uid, gid) = (self.uid.to_string(), self.gid.to_string());
        let groups = if init_groups {
            "--init-groups"
        } else {
            "--clear-groups"
        };
        Command::new("setpriv")
            .args(["--reuid", &uid, "--regid", &gid, groups, "--"])
            .arg(bin())
            .arg("--socket")
            .arg(socket)
            .args(args)
            .output()
            .expect("running setpriv")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
        // `--user-group` made a group of the user's name; userdel removes it with the user.
        if self.made_group {
            let _ = Command::new("groupdel").arg(GROUP).output();
        }
    }
}

/// The socket's (mode, owner, group).
fn socket_perms(d: &Daemon) -> (u32, u32, u32) {
    let m = std::fs::metadata(&d.socket).expect("the socket exists");
    (m.permissions().mode() & 0o777, m.uid(), m.gid())
}

#[track_caller]
fn succeeds(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} must work: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn refused(out: &Output, what: &str, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what} must be refused: {err}");
    assert!(
        err.contains(says),
        "{what}: the message must say {says:?}: {err}"
    );
}

/// Every change a user could try, each with what it would do if allowed.
const CHANGES: &[&[&str]] = &[
    &["block", "add", "203.0.113.10", "--order", "KEEP"],
    &["block", "remove", "198.51.100.10", "--order", "KEEP"],
    &["exceptions", "add", "198.51.100.10", "--reason", "mine"],
    &["orders", "remove", "KEEP"],
    &["reload", "--force"],
    &["detach", "--yes"],
];
const READS: &[&[&str]] = &[
    &["status"],
    &["orders", "list"],
    &["check", "198.51.100.10"],
    &["stats"],
    &["audit"],
];

/// The user may not change anything: each change is refused, the maps and the file stay
/// as they were.
#[track_caller]
fn changes_refused(t: &Topology, d: &Daemon, user: &TestUser, init_groups: bool, says: &str) {
    let digest = verify(t).1["maps_sha256"].clone();
    let file = std::fs::read_to_string(t.orders_path()).expect("the file");
    for change in CHANGES {
        refused(
            &user.cli(&d.socket, init_groups, change),
            &format!("`{}` by uid {}", change.join(" "), user.uid),
            says,
        );
    }
    assert_eq!(
        verify(t).1["maps_sha256"],
        digest,
        "the maps did not change"
    );
    assert_eq!(
        std::fs::read_to_string(t.orders_path()).expect("the file"),
        file,
        "the file did not change"
    );
    assert_eq!(d.status()["attached"].as_array().map(Vec::len), Some(2));
}

#[test]
fn only_root_and_the_borderfilter_group_may_change_the_filter() {
    let _serial = serial();
    let t = Topology::new("access");
    t.write_orders(&order_list(
        &[order("KEEP", "drop", &["198.51.100.10"], "")],
        &[],
    ));
    let mut user = TestUser::new("bft", &t.tag);
    let group_existed = group_gid(GROUP).is_some();

    if group_existed {
        eprintln!("group {GROUP} exists on this host: the configurations without it are skipped");
    } else {
        // No group: 0600, nobody but root gets in.
        let d = Daemon::start(&t, &[]);
        assert_eq!(socket_perms(&d), (0o600, 0, 0), "no group: root only");
        for read in READS {
            refused(
                &user.cli(&d.socket, true, read),
                &format!("`{}` without --public-read", read.join(" ")),
                "permission denied",
            );
        }
        changes_refused(&t, &d, &user, true, "permission denied");
        drop(d);

        // --public-read: anyone reads, nobody but root changes.
        let d = Daemon::start(&t, &["--public-read"]);
        assert_eq!(socket_perms(&d), (0o666, 0, 0), "public read, no group");
        for read in READS {
            succeeds(
                &user.cli(&d.socket, true, read),
                &format!("`{}` with --public-read", read.join(" ")),
            );
        }
        changes_refused(&t, &d, &user, true, "not allowed");
        drop(d);
    }

    let gid = user.ensure_group();
    let d = Daemon::start(&t, &[]);
    assert_eq!(socket_perms(&d), (0o660, 0, gid), "root:{GROUP} 0660");
    for read in READS {
        refused(
            &user.cli(&d.socket, true, read),
            &format!("`{}` by a user outside the group", read.join(" ")),
            "permission denied",
        );
    }
    changes_refused(&t, &d, &user, true, "permission denied");
    drop(d);

    let d = Daemon::start(&t, &["--public-read"]);
    assert_eq!(socket_perms(&d), (0o666, 0, gid), "root:{GROUP} 0666");
    let status = succeeds(&user.cli(&d.socket, true, &["--json", "status"]), "status");
    assert!(status.contains("\"in_sync\": true"), "{status}");
    changes_refused(&t, &d, &user, true, "not allowed");
    let log = d.log_text();
    assert!(
        log.contains(&format!("from uid {}", user.uid)) && log.contains("refused"),
        "the daemon logs refused attempts:\n{log}"
    );
    drop(d);

    // In the group: changes are allowed, through the socket's group (0660) and the
    // daemon's check of the supplementary groups.
    user.join_group();
    let d = Daemon::start(&t, &[]);
    for read in READS {
        succeeds(
            &user.cli(&d.socket, true, read),
            &format!("`{}` by a member", read.join(" ")),
        );
    }
    succeeds(
        &user.cli(
            &d.socket,
            true,
            &["block", "add", "203.0.113.10", "--order", "KEEP"],
        ),
        "block add by a member of the group",
    );
    assert!(std::fs::read_to_string(t.orders_path())
        .expect("the file")
        .contains("203.0.113.10"));
    let (agrees, report) = verify(&t);
    assert!(agrees, "{report:#}");
    let audit = d.ok(&["--json", "audit"]);
    assert!(
        audit.contains(&format!("\"uid\": {}", user.uid)),
        "the audit trail names the member's uid:\n{audit}"
    );
    drop(d);

    // A process of the same user that dropped its supplementary groups is not a member:
    // the daemon checks the peer's credentials, not the account.
    let d = Daemon::start(&t, &["--public-read"]);
    changes_refused(&t, &d, &user, false, "not allowed");
    drop(d);
}

/// A client that connects as one process and sends its request from another: the
/// connecting process prints its pid and exits, its child keeps the connection, waits for
/// the file named third to appear, sends the request line and prints the answer.
const SPLIT_CLIENT: &str = r#"
use IO::Socket::UNIX; use POSIX ();
my ($path, $request, $go) = @ARGV;
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or die "connect: $!";
$| = 1;
my $child = fork() // die "fork: $!";
if ($child) { print "$$\n"; POSIX::_exit(0); }
for (1..400) { last if -e $go; select(undef, undef, undef, 0.01); }
print $s "$request\n";
my $answer = <$s>;
print $answer;
"#;

/// The kernel's pid counter: the next process made gets `pid` (unless another process
/// on the host is quicker; the caller checks).
fn next_pid_is(pid: i32) {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
        .expect("setting ns_last_pid (root)");
}

/// The daemon must judge a connection by the credentials the peer had when it connected,
/// not by whatever process holds the peer's pid when the request arrives: a user outside
/// the group connects, hands the connection to a child and exits; a member's process then
/// gets the freed pid; the request the child sends must still be refused.
#[test]
fn a_recycled_pid_does_not_lend_its_groups_to_a_connection() {
    let _serial = serial();
    let t = Topology::new("access-pid");
    t.write_orders(&order_list(
        &[order("KEEP", "drop", &["198.51.100.10"], "")],
        &[],
    ));
    let mut outsider = TestUser::new("bfo", &t.tag);
    let member = TestUser::new("bfm", &t.tag);
    outsider.ensure_group();
    member.join_group();
    let d = Daemon::start(&t, &["--public-read"]);
    let digest = verify(&t).1["maps_sha256"].clone();
    let go = t.dir.join("go");
    let request = r#"{"command":"edit","edit":{"edit":"add_exception","prefix":"198.51.100.10","reason":"pid reuse"},"force":false}"#;

    let mut client = Command::new("setpriv")
        .args([
            "--reuid",
            &outsider.uid.to_string(),
            "--regid",
            &outsider.gid.to_string(),
            "--clear-groups",
            "--",
            "perl",
            "-e",
            SPLIT_CLIENT,
        ])
        .arg(&d.socket)
        .arg(request)
        .arg(&go)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the client");
    let mut out = std::io::BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("the client's pid");
    let pid: i32 = line.trim().parse().expect("a pid");
    client.wait().expect("the connecting process exits");

    // A member's process takes the pid.
    let mut holder = None;
    for _ in 0..200 {
        next_pid_is(pid);
        let p = Command::new("setpriv")
            .args([
                "--reuid",
                &member.uid.to_string(),
                "--regid",
                &member.gid.to_string(),
                "--init-groups",
                "--",
                "sleep",
                "20",
            ])
            .spawn()
            .expect("starting the member's process");
        if p.id() as i32 == pid {
            holder = Some(p);
            break;
        }
        let mut p = p;
        let _ = p.kill();
        let _ = p.wait();
    }
    let mut holder = holder.expect("a member's process got the recycled pid");
    // setpriv has dropped to the member's credentials once the process runs `sleep`.
    poll::until(
        "the member's process to run",
        Duration::from_secs(3),
        || {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let uid_line = format!("Uid:\t{}", member.uid);
            (status.contains(&uid_line), status.len())
        },
    );
    std::fs::write(&go, "").expect("go");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut out, &mut answer).expect("the answer");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        answer.contains("\"ok\":false") && answer.contains("not allowed"),
        "the outsider's request must be refused although pid {pid} is now a member's: {answer}"
    );
    assert_eq!(verify(&t).1["maps_sha256"], digest, "nothing changed");
    assert!(!std::fs::read_to_string(t.orders_path())
        .expect("the file")
        .contains("pid reuse"));
}

/// An HTTP request with `method` to `path` on the metrics endpoint, from the router
/// namespace; the status code.
fn http(t: &Topology, method: &str, path: &str) -> u16 {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {METRICS}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    t.router.run(move || {
        let mut s = TcpStream::connect_timeout(&METRICS.parse().unwrap(), Duration::from_secs(3))
            .expect("connecting to the metrics endpoint");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
    })
}

#[test]
fn the_metrics_endpoint_is_read_only() {
    let t = Topology::new("access-metrics");
    t.write_orders(&order_list(
        &[order("KEEP", "drop", &["198.51.100.10"], "")],
        &[],
    ));
    let d = Daemon::start(&t, &["--metrics", METRICS]);
    let digest = verify(&t).1["maps_sha256"].clone();
    let sha = d.status()["applied"]["sha256"].clone();
    assert_eq!(http(&t, "GET", "/metrics"), 200);
    assert_eq!(http(&t, "HEAD", "/healthz"), 200);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/metrics", "/healthz", "/", "/reload", "/orders"] {
            assert_eq!(http(&t, method, path), 405, "{method} {path}");
        }
    }
    assert_eq!(
        verify(&t).1["maps_sha256"],
        digest,
        "the maps did not change"
    );
    assert_eq!(
        d.status()["applied"]["sha256"],
        sha,
        "the list did not change"
    );
}
