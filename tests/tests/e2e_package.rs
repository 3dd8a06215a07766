//! End to end: the Debian package, installed on this machine with `dpkg -i` as an operator
//! would install it. Checks it with Debian's tools (lintian, systemd-analyze, man), runs
//! the CLI it installs, starts the daemon with the unit's own command line (ExecStart
//! expanded with /etc/default/borderfilter, under the unit's capability bounding set) on
//! the router of a namespace topology, checks that a blocked address is blocked and stays
//! blocked after the daemon stops and the package is removed, then purges the package and
//! checks that nothing it installed or created is left. The block-notice unit gets the
//! same treatment: its sandbox rated by `systemd-analyze security`, its command line
//! (with /etc/default/borderfilter-notice) run as a user that is not root with only the
//! unit's capability, answering a request for a blocked address with the 451 page.
//!
//! The package is `BORDERFILTER_DEB` (set by `cargo xtask test`, which builds it), else
//! the newest `target/debian/borderfilter_*.deb`. The test refuses to run if borderfilter
//! is installed (or was, and left its configuration), or if anything at the package's
//! paths exists: purging would destroy it.
//!
//! The package's paths, installing and purging it, and the host lock are in
//! `tests/src/package.rs`; the units' command lines run as systemd would run them, in
//! `tests/src/systemd.rs`. The checks are here.

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use borderfilter_tests::{
    netns,
    package::{
        deb_path, dpkg_files, dsh_entries, group_exists, ok, package_known, refuse_if_in_use, run,
        text, HostLock, Installed, BIN, CREATED, DEFAULTS, MAN_PAGE, NOTICE_DEFAULTS,
        NOTICE_TEMPLATES, NOTICE_UNIT, ORDERS, PACKAGE, UNIT,
    },
    poll,
    systemd::{expand, unit_environment, unit_value, unit_value_opt, Unit, NOBODY},
    topology::{order, order_list, Topology},
    traffic::{body, http_get, sock, tcp_connects, Listeners, TCP_PORT},
};

/// The worst `systemd-analyze security` exposure allowed for the notice unit (as in
/// xtask/src/deb.rs): 2.0, "OK".
const NOTICE_MAX_EXPOSURE: f64 = 2.0;
const BLOCKED: &str = "198.51.100.10";
const ALLOWED: &str = "203.0.113.10";
const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(3);

#[test]
fn the_package_installs_runs_its_unit_and_purges_without_a_trace() {
    borderfilter_tests::require_root();
    let started = Instant::now();
    let _lock = HostLock::take();
    let deb = deb_path();
    refuse_if_in_use();
    let group_before = group_exists();
    let dsh_before = dsh_entries();

    // Debian's own checks of the package.
    let lintian = run(
        "lintian",
        &["--fail-on", "error", "--display-info"],
        Some(&deb),
    );
    assert!(
        lintian.status.success(),
        "lintian reports errors:\n{}",
        text(&lintian)
    );
    eprintln!("lintian:\n{}", text(&lintian));

    let guard = Installed::install(&deb);
    let installed = dpkg_files();
    assert!(
        installed.contains(BIN) && installed.contains(UNIT) && installed.contains(MAN_PAGE),
        "dpkg -L lacks the binary, the unit or the man page: {installed:?}"
    );
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    for f in [ORDERS, DEFAULTS, NOTICE_DEFAULTS] {
        assert!(conffiles.contains(f), "{f} is not a conffile: {conffiles}");
    }
    let verify = run("systemd-analyze", &["verify", UNIT, NOTICE_UNIT], None);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify {UNIT} {NOTICE_UNIT}:\n{}",
        text(&verify)
    );
    check_notice_sandbox();
    check_man_page();
    check_completions();

    // The CLI as installed.
    let version = ok("dpkg-deb", &["-f", &deb.display().to_string(), "Version"]);
    let reported = ok(BIN, &["--version"]);
    assert_eq!(reported.trim(), format!("borderfilter {}", version.trim()));
    let validated = ok(BIN, &["validate", ORDERS]);
    assert!(
        validated.contains("valid (0 orders"),
        "the installed list: {validated}"
    );
    let doctor = run(BIN, &["--json", "doctor", "--defaults"], None);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{}", text(&doctor)));
    assert!(
        doctor.status.success(),
        "doctor finds this host unfit for the package's defaults:\n{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    assert_eq!(
        status_of(&report, "interfaces"),
        "warn",
        "the defaults name no interface: {report}"
    );

    // The operator's first order list and options.
    let t = Topology::with_notice("package");
    let server = Listeners::start(&t.server, &[BLOCKED, ALLOWED]);
    assert!(
        tcp_connects(&t.client, sock(BLOCKED, TCP_PORT), LONG),
        "{BLOCKED} must be reachable before the daemon runs"
    );
    write(
        ORDERS,
        &order_list(
            &[order("PKG-1/2026", "drop", &["198.51.100.0/24"], "")],
            &[],
        ),
    );
    ok(BIN, &["validate", ORDERS]);
    let defaults = std::fs::read_to_string(DEFAULTS).expect("reading the defaults file");
    write(
        DEFAULTS,
        &defaults.replace(
            "BORDERFILTER_OPTS=\"\"",
            "BORDERFILTER_OPTS=\"--iface rc --iface rs --xdp-mode auto\"",
        ),
    );

    // The unit's command line, with a socket of the test's own.
    let unit = std::fs::read_to_string(UNIT).expect("reading the unit");
    let env = unit_environment(&unit);
    let socket = t.socket();
    let mut argv = expand(&unit_value(&unit, "ExecStart"), &env);
    argv.extend(["--socket".into(), socket.display().to_string()]);
    assert_eq!(argv[0], BIN, "ExecStart runs {argv:?}");
    let mut daemon = Unit::start(&t, &unit, &argv);
    daemon.wait_until_it_answers(&socket);

    assert!(
        !tcp_connects(&t.client, sock(BLOCKED, TCP_PORT), SHORT),
        "{BLOCKED} is blocked by PKG-1/2026 but connected"
    );
    assert!(
        tcp_connects(&t.client, sock(ALLOWED, TCP_PORT), LONG),
        "{ALLOWED} is not blocked but did not connect"
    );
    assert_eq!(
        server.tcp(BLOCKED),
        1,
        "only the connection before the daemon"
    );

    // doctor with the daemon's own options, where the daemon runs: everything passes,
    // the socket and the metrics address held by it.
    let doctor = in_router(
        &t,
        BIN,
        &[
            "--json",
            "--socket",
            &socket.display().to_string(),
            "doctor",
            "--defaults",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}):\n{}", text(&doctor)));
    assert!(
        doctor.status.success(),
        "doctor fails beside the daemon: {report:#}"
    );
    for check in [
        "interface rc",
        "interface rs",
        "control socket",
        "metrics",
        "order list",
    ] {
        assert_eq!(status_of(&report, check), "pass", "{check}: {report:#}");
    }
    assert!(
        detail_of(&report, "interface rc").contains("runs borderfilter now")
            && detail_of(&report, "metrics").contains("served by a running borderfilter")
            && detail_of(&report, "control socket").contains("held by the running daemon"),
        "doctor does not see the daemon: {report:#}"
    );

    check_notice_unit(&t);

    // ExecReload, as `systemctl reload` runs it.
    let reload = expand(
        &unit_value(&unit, "ExecReload"),
        &[("MAINPID".into(), daemon.pid().to_string())],
    );
    ok(
        &reload[0],
        &reload[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    poll::until("the daemon to log the SIGHUP", LONG, || {
        let log = daemon.log();
        (log.contains("SIGHUP"), log)
    });

    // `systemctl restart`: SIGTERM, then the same command line. The new daemon reuses the
    // pins and replaces its own program in place, with no more than the unit's
    // capabilities.
    daemon.stop();
    let mut daemon = Unit::start(&t, &unit, &argv);
    daemon.wait_until_it_answers(&socket);
    assert!(
        daemon.log().contains("reusing the maps pinned"),
        "the restarted daemon did not reuse the pins:\n{}",
        daemon.log()
    );
    assert!(
        !tcp_connects(&t.client, sock(BLOCKED, TCP_PORT), SHORT),
        "{BLOCKED} connected after a restart"
    );

    // Stopping the service and removing the package leave enforcement running.
    daemon.stop();
    assert!(
        !tcp_connects(&t.client, sock(BLOCKED, TCP_PORT), SHORT),
        "{BLOCKED} connected after the daemon stopped"
    );
    guard.remove();
    assert!(!Path::new(BIN).exists(), "{BIN} survived dpkg -r");
    assert!(Path::new(ORDERS).exists(), "dpkg -r removed the order list");
    assert!(
        !tcp_connects(&t.client, sock(BLOCKED, TCP_PORT), SHORT),
        "{BLOCKED} connected after the package was removed"
    );
    assert!(
        Path::new("/sys/fs/bpf/borderfilter").exists(),
        "the pins went with dpkg -r"
    );

    // Purging leaves nothing.
    let existed = guard.purge();
    let left: Vec<&String> = installed
        .iter()
        .filter(|p| !existed.contains(*p) && Path::new(p).exists())
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    let created: Vec<&&str> = CREATED.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(created.is_empty(), "left after purge: {created:?}");
    assert_eq!(
        group_exists(),
        group_before,
        "the borderfilter group changed"
    );
    assert_eq!(dsh_entries(), dsh_before, "systemd state left behind");
    assert!(!package_known(), "dpkg still knows borderfilter");
    eprintln!("package test: {:.1} s", started.elapsed().as_secs_f64());
}

/// The man page renders at 80 columns and has a section for every command `--help`
/// lists, subcommands included.
#[track_caller]
fn check_man_page() {
    let out = Command::new("man")
        .arg(PACKAGE)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env_remove("MAN_KEEP_FORMATTING")
        .output()
        .expect("running man");
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && page.contains("NAME") && page.contains("COMMANDS"),
        "man {PACKAGE}:\n{}",
        text(&out)
    );
    let commands = commands(&[]);
    assert!(commands.len() >= 15, "too few commands found: {commands:?}");
    for command in &commands {
        let heading = format!("   borderfilter {}\n", command.join(" "));
        assert!(
            page.contains(&heading),
            "the man page has no section for `borderfilter {}`",
            command.join(" ")
        );
    }
}

/// Every command path the CLI's help lists (["orders", "add"], ...).
fn commands(prefix: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
    args.push("--help");
    let help = ok(BIN, &args);
    let mut out = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            let Some(name) = line
                .strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
            else {
                break;
            };
            if name == "help" || line.starts_with("   ") {
                continue;
            }
            let mut path = prefix.to_vec();
            path.push(name.to_string());
            out.extend(commands(&path));
            out.push(path);
        }
    }
    out
}

/// The completions load in bash and name every command.
#[track_caller]
fn check_completions() {
    let bash = "/usr/share/bash-completion/completions/borderfilter";
    let loaded = run(
        "bash",
        &["-c", &format!("source {bash} && complete -p borderfilter")],
        None,
    );
    assert!(
        loaded.status.success(),
        "bash completion:\n{}",
        text(&loaded)
    );
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_borderfilter")
        .expect("zsh completion");
    let bash = std::fs::read_to_string(bash).expect("bash completion");
    for command in commands(&[]).iter().filter(|c| c.len() == 1) {
        assert!(
            bash.contains(&command[0]) && zsh.contains(&command[0]),
            "completions lack {}",
            command[0]
        );
    }
}

/// The notice unit's sandbox as `systemd-analyze security` rates it: at most
/// [`NOTICE_MAX_EXPOSURE`].
#[track_caller]
fn check_notice_sandbox() {
    let threshold = format!(
        "--threshold={}",
        (NOTICE_MAX_EXPOSURE * 10.0).round() as u32
    );
    let out = run(
        "systemd-analyze",
        &["security", "--offline=true", &threshold, NOTICE_UNIT],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for borderfilter-notice.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("systemd-analyze security rated nothing:\n{}", text(&out)));
    eprintln!("systemd-analyze security {NOTICE_UNIT}: {exposure}");
    assert!(
        out.status.success() && exposure <= NOTICE_MAX_EXPOSURE,
        "the notice unit's exposure is {exposure}, more than {NOTICE_MAX_EXPOSURE}:\n{}",
        text(&out)
    );
}

/// borderfilter-notice.service's command line, with the installed defaults file naming
/// pages of the operator's own, started as the unit starts it (not root, only the
/// capability to bind port 80) on the notice host: a request for a blocked address gets
/// 451 and the operator's page naming the order. Shows that the service's user can read
/// the order list and the templates.
#[track_caller]
fn check_notice_unit(t: &Topology) {
    let unit = std::fs::read_to_string(NOTICE_UNIT).expect("reading the notice unit");
    assert_eq!(
        unit_value_opt(&unit, "DynamicUser").as_deref(),
        Some("yes"),
        "the notice server must not run as root"
    );
    // The test's orders have basis copyright: this is the page for that basis.
    std::fs::create_dir(NOTICE_TEMPLATES).expect("creating the template directory");
    write(
        &format!("{NOTICE_TEMPLATES}/copyright.html"),
        "<p>operator's page: {{order_id}}, {{authority}}</p>\n",
    );
    for (path, mode) in [
        (NOTICE_TEMPLATES.to_string(), 0o755),
        (format!("{NOTICE_TEMPLATES}/copyright.html"), 0o644),
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {path}: {e}"));
    }
    let defaults =
        std::fs::read_to_string(NOTICE_DEFAULTS).expect("reading the notice defaults file");
    assert!(
        defaults.contains("\nNOTICE_OPTS=\"\"\n"),
        "{NOTICE_DEFAULTS}:\n{defaults}"
    );
    write(
        NOTICE_DEFAULTS,
        &defaults.replace(
            "NOTICE_OPTS=\"\"",
            &format!("NOTICE_OPTS=\"--templates {NOTICE_TEMPLATES}\""),
        ),
    );
    let argv = expand(&unit_value(&unit, "ExecStart"), &unit_environment(&unit));
    assert_eq!(argv, [BIN, "notice", "--templates", NOTICE_TEMPLATES]);

    let ns = t.notice.as_ref().expect("a topology with a notice host");
    let mut server = Unit::start_in(ns.path(), t.dir.join("notice.log"), &unit, &argv);
    let response = poll::until(
        "the notice server to answer on port 80",
        Duration::from_secs(30),
        || {
            server.assert_running();
            let r = http_get(ns, sock(BLOCKED, 80), "/", None);
            (r.is_some(), r)
        },
    );
    let (status, response) = response.expect("an answer");
    assert_eq!(status, 451, "{response}");
    assert_eq!(
        body(&response),
        "<p>operator's page: PKG-1/2026, Test Court</p>\n",
        "not the operator's page naming the order"
    );
    // As the unit runs it: not root, no group, the one capability.
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's /proc status");
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let nobody = NOBODY.to_string();
    assert_eq!(field("Uid:"), [nobody.as_str(); 4].join(" "));
    assert_eq!(field("Groups:"), "");
    // CAP_NET_BIND_SERVICE is capability 10.
    for set in ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(set), format!("{:016x}", 1u64 << 10), "{set}");
    }
    server.stop();
    std::fs::remove_dir_all(NOTICE_TEMPLATES).expect("removing the test's templates");
}

fn in_router(t: &Topology, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    netns::start_in(cmd.args(args), t.router.path())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn status_of(report: &serde_json::Value, check: &str) -> String {
    field_of(report, check, "status")
}

fn detail_of(report: &serde_json::Value, check: &str) -> String {
    field_of(report, check, "detail")
}

fn field_of(report: &serde_json::Value, check: &str, field: &str) -> String {
    report["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == check))
        .and_then(|c| c[field].as_str())
        .unwrap_or_else(|| panic!("doctor has no {check} check: {report:#}"))
        .to_string()
}

fn write(path: &str, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {path}: {e}"));
}
