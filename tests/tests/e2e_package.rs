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

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use borderfilter_tests::{
    netns, poll,
    topology::{order, order_list, Topology},
    traffic::{body, http_get, sock, tcp_connects, Listeners, TCP_PORT},
};

const PACKAGE: &str = "borderfilter";
const UNIT: &str = "/lib/systemd/system/borderfilter.service";
const DEFAULTS: &str = "/etc/default/borderfilter";
const NOTICE_UNIT: &str = "/lib/systemd/system/borderfilter-notice.service";
const NOTICE_DEFAULTS: &str = "/etc/default/borderfilter-notice";
/// Pages of the operator's own for the notice server, made by the test.
const NOTICE_TEMPLATES: &str = "/etc/borderfilter/notice";
/// The worst `systemd-analyze security` exposure allowed for the notice unit (as in
/// xtask/src/deb.rs): 2.0, "OK".
const NOTICE_MAX_EXPOSURE: f64 = 2.0;
/// The user a `DynamicUser=yes` unit runs as here: not root, in no group, owning nothing.
const NOBODY: u32 = 65534;
const ORDERS: &str = "/etc/borderfilter/orders.json";
const BIN: &str = "/usr/sbin/borderfilter";
const MAN_PAGE: &str = "/usr/share/man/man8/borderfilter.8.gz";
/// What the package and its daemon create outside the files dpkg lists.
const CREATED: &[&str] = &[
    "/etc/borderfilter",
    "/var/lib/borderfilter",
    "/run/borderfilter",
    "/sys/fs/bpf/borderfilter",
];
/// Where deb-systemd-helper records units it enabled or masked.
const DSH_STATE: &[&str] = &[
    "/var/lib/systemd/deb-systemd-helper-enabled",
    "/var/lib/systemd/deb-systemd-helper-masked",
    "/etc/systemd/system",
];
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

/// The .deb to install.
fn deb_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BORDERFILTER_DEB") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("debian");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("borderfilter_"))
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no borderfilter_*.deb in {}: run `cargo xtask deb` (or `cargo xtask test`, \
                 which builds it), or set BORDERFILTER_DEB",
                dir.display()
            )
        })
}

/// Panics unless this machine has no trace of borderfilter: the test purges the package
/// at the end, which would destroy an operator's installation and order list.
#[track_caller]
fn refuse_if_in_use() {
    if package_known() {
        panic!(
            "borderfilter is installed on this machine (or its configuration is left): \
             this test installs and purges the package, and will not touch an existing \
             installation. Status: {}",
            ok("dpkg-query", &["-W", "-f=${Status}", PACKAGE])
        );
    }
    let present: Vec<&&str> = CREATED
        .iter()
        .chain(&[DEFAULTS, UNIT, NOTICE_DEFAULTS, NOTICE_UNIT, BIN])
        .filter(|p| Path::new(p).exists())
        .collect();
    if !present.is_empty() {
        panic!(
            "{present:?} exist without the package: something else uses borderfilter's \
             paths, which purging would remove; the test will not run"
        );
    }
}

fn package_known() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| {
            let status = String::from_utf8_lossy(&o.stdout);
            o.status.success() && !status.contains("not-installed")
        })
}

fn group_exists() -> bool {
    Command::new("getent")
        .args(["group", PACKAGE])
        .status()
        .is_ok_and(|s| s.success())
}

/// Every entry of deb-systemd-helper's state and /etc/systemd/system that names us.
fn dsh_entries() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in DSH_STATE {
        let mut todo = vec![PathBuf::from(dir)];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() && !path.is_symlink() {
                    todo.push(path.clone());
                }
                if path.to_string_lossy().contains(PACKAGE) {
                    out.insert(path.display().to_string());
                }
            }
        }
    }
    out
}

/// `dpkg -L`: everything the package installed.
fn dpkg_files() -> BTreeSet<String> {
    ok("dpkg", &["-L", PACKAGE])
        .lines()
        .filter(|l| l.starts_with('/') && *l != "/.")
        .map(str::to_string)
        .collect()
}

/// The package installed; purged on drop if the test ends early.
struct Installed {
    /// The package's paths that existed before it was installed (/usr, /etc, ...).
    existed: BTreeSet<String>,
}

impl Installed {
    #[track_caller]
    fn install(deb: &Path) -> Self {
        let contents = ok("dpkg-deb", &["-c", &deb.display().to_string()]);
        let existed = contents
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .map(|p| p.trim_start_matches('.').trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty() && Path::new(p).exists())
            .collect();
        dpkg(&["-i", &deb.display().to_string()]);
        Installed { existed }
    }

    #[track_caller]
    fn remove(&self) {
        dpkg(&["-r", PACKAGE]);
    }

    /// Purges the package; returns the paths that existed before it was installed.
    #[track_caller]
    fn purge(mut self) -> BTreeSet<String> {
        dpkg(&["-P", PACKAGE]);
        let existed = std::mem::take(&mut self.existed);
        std::mem::forget(self);
        existed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // The test's own files, which purging would leave.
        let _ = std::fs::remove_dir_all(NOTICE_TEMPLATES);
        let _ = Command::new("dpkg").args(["-P", PACKAGE]).output();
        let _ = Command::new("rm")
            .args(["-rf", "/sys/fs/bpf/borderfilter"])
            .output();
    }
}

/// dpkg, waiting while another dpkg or apt holds the lock.
#[track_caller]
fn dpkg(args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = run("dpkg", args, None);
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("lock") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        panic!("dpkg {} failed:\n{}", args.join(" "), text(&out));
    }
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

/// `Key=value` of the unit's [Service] section (the last one, as systemd takes it).
#[track_caller]
fn unit_value(unit: &str, key: &str) -> String {
    unit_value_opt(unit, key).unwrap_or_else(|| panic!("the unit has no {key}="))
}

fn unit_value_opt(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .map(|v| v.trim().to_string())
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

/// The environment the unit gives the daemon: its EnvironmentFile= files, read as
/// systemd reads them (KEY=VALUE, comments, quotes).
fn unit_environment(unit: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for file in unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("EnvironmentFile="))
    {
        let (optional, path) = match file.strip_prefix('-') {
            Some(p) => (true, p),
            None => (false, file),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(_) if optional => continue,
            Err(e) => panic!("EnvironmentFile {path}: {e}"),
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(v);
                env.push((k.trim().to_string(), v.to_string()));
            }
        }
    }
    env
}

/// A command line as systemd expands it: `$VAR` as a word becomes the variable's value
/// split at whitespace, `${VAR}` its value as one word.
fn expand(line: &str, env: &[(String, String)]) -> Vec<String> {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let mut out = Vec::new();
    for word in line.split_whitespace() {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            out.push(get(name).to_string());
        } else if let Some(name) = word.strip_prefix('$') {
            out.extend(get(name).split_whitespace().map(str::to_string));
        } else {
            out.push(word.to_string());
        }
    }
    out
}

/// A unit's command line started as systemd starts it (through setpriv): under its
/// CapabilityBoundingSet=, with its AmbientCapabilities= and NoNewPrivileges=, and for
/// `DynamicUser=yes` as a user that is not root and in no group.
struct Unit {
    child: Option<Child>,
    log: PathBuf,
}

impl Unit {
    /// The daemon's unit, in the router.
    #[track_caller]
    fn start(t: &Topology, unit: &str, argv: &[String]) -> Self {
        Self::start_in(t.router.path(), t.dir.join("unit.log"), unit, argv)
    }

    #[track_caller]
    fn start_in(ns: String, log: PathBuf, unit: &str, argv: &[String]) -> Self {
        let caps = |key: &str| -> Vec<String> {
            unit_value_opt(unit, key)
                .unwrap_or_default()
                .split_whitespace()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
                .collect()
        };
        let bounding = caps("CapabilityBoundingSet");
        assert!(!bounding.is_empty(), "the unit bounds no capability");
        let mut setpriv = vec![format!("--bounding-set=-all,{}", bounding.join(","))];
        let ambient = caps("AmbientCapabilities");
        if ambient.is_empty() {
            setpriv.push("--inh-caps=-all".into());
        } else {
            let ambient = ambient.join(",");
            setpriv.push(format!("--inh-caps=-all,{ambient}"));
            setpriv.push(format!("--ambient-caps=-all,{ambient}"));
        }
        if unit_value_opt(unit, "NoNewPrivileges").as_deref() == Some("yes") {
            setpriv.push("--no-new-privs".into());
        }
        assert_eq!(
            unit_value_opt(unit, "User"),
            None,
            "the test knows DynamicUser= only"
        );
        if unit_value_opt(unit, "DynamicUser").as_deref() == Some("yes") {
            setpriv.extend([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
            ]);
        }
        setpriv.push("--".into());
        let out = std::fs::File::create(&log).expect("creating the unit's log");
        let mut cmd = Command::new("setpriv");
        cmd.args(&setpriv)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        netns::start_in(&mut cmd, ns);
        let child = cmd.spawn().expect("starting setpriv");
        Self {
            child: Some(child),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn wait_until_it_answers(&mut self, socket: &Path) {
        poll::until(
            "the daemon to answer on its socket",
            Duration::from_secs(60),
            || {
                self.assert_running();
                let out = cli(socket, &["status"]);
                (out.status.success(), text(&out))
            },
        );
    }

    #[track_caller]
    fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("the daemon exited with {status}:\n{}", self.log());
        }
    }

    /// SIGTERM, as `systemctl stop` sends it, and wait.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Serialises package tests of concurrent runs on this machine: they install the same
/// package.
struct HostLock {
    _file: std::fs::File,
}

impl HostLock {
    fn take() -> Self {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/lock/borderfilter-package-test.lock")
            .expect("opening the lock file");
        // SAFETY: flock on a file we own; released when it is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        Self { _file: file }
    }
}

fn in_router(t: &Topology, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    netns::start_in(cmd.args(args), t.router.path())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"))
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

fn run(program: &str, args: &[&str], file: Option<&Path>) -> Output {
    let mut c = Command::new(program);
    c.args(args);
    if let Some(f) = file {
        c.arg(f);
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
#[track_caller]
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args, None);
    assert!(
        out.status.success(),
        "`{program} {}` failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
