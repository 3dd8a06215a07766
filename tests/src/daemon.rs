//! The `borderfilter` daemon under test, and the CLI.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use crate::{netns, poll, topology::Topology};

/// The binary under test: `BORDERFILTER_BIN` (set by `cargo xtask test`), else the
/// workspace's debug build.
pub fn bin() -> PathBuf {
    std::env::var_os("BORDERFILTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/borderfilter")
        })
}

/// A running daemon; killed on drop. The program it attached stays pinned (that is the
/// point) until the topology is dropped.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `borderfilter run` in the router namespace on both router interfaces and
    /// waits until it answers `status`.
    #[track_caller]
    pub fn start(t: &Topology, extra: &[&str]) -> Self {
        Self::spawn(t, &Self::run_args(t, extra))
    }

    /// Starts `borderfilter run` like `start` without waiting for it to answer: for tests
    /// that kill it in the middle of its first sync. See `wait_ready`.
    #[track_caller]
    pub fn launch(t: &Topology, extra: &[&str]) -> Self {
        Self::spawn_in(t, Some(t.router.path()), &Self::run_args(t, extra), false)
    }

    /// Starts `borderfilter run` in this host's network namespace, filtering no
    /// interface (its maps are what it enforces): for tests of where the list comes from
    /// that reach a service on loopback (etcd). Waits until it answers `status`.
    #[track_caller]
    pub fn start_on_host(t: &Topology, extra: &[&str]) -> Self {
        let mut args = Self::run_args(t, extra);
        // No --iface: the router's interfaces live in its namespace, not here.
        while let Some(i) = args.iter().position(|a| a == "--iface") {
            args.drain(i..i + 2);
        }
        Self::spawn_in(t, None, &args, true)
    }

    fn run_args(t: &Topology, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--socket".into(),
            t.socket().display().to_string(),
            "run".into(),
        ];
        for iface in crate::topology::ROUTER_IFACES {
            args.extend(["--iface".into(), iface.into()]);
        }
        args.extend([
            "--orders".into(),
            t.orders_path().display().to_string(),
            "--pin-dir".into(),
            t.pin_dir.display().to_string(),
            "--audit-log".into(),
            t.dir.join("audit.jsonl").display().to_string(),
            "--names-state".into(),
            t.dir.join("names.json").display().to_string(),
        ]);
        if !extra.iter().any(|a| a.starts_with("--metrics")) {
            args.push("--no-metrics".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts `borderfilter notice` on the notice host, serving the test's order list on
    /// port 8080; returns once it answers.
    #[track_caller]
    pub fn notice(t: &Topology) -> Self {
        let ns = t.notice.as_ref().expect("a topology with a notice host");
        let args: Vec<String> = ["notice", "--listen", "[::]:8080", "--orders"]
            .iter()
            .map(|s| s.to_string())
            .chain([t.orders_path().display().to_string()])
            .collect();
        let d = Self::spawn_in(t, Some(ns.path()), &args, false);
        poll::until(
            "the notice server to answer",
            Duration::from_secs(30),
            || {
                let up = ns.run(|| std::net::TcpStream::connect("127.0.0.1:8080").is_ok());
                (up, up)
            },
        );
        d
    }

    /// Starts `borderfilter ARGS` in the router namespace and waits until it answers on
    /// its control socket.
    #[track_caller]
    pub fn spawn(t: &Topology, args: &[String]) -> Self {
        Self::spawn_in(t, Some(t.router.path()), args, true)
    }

    #[track_caller]
    fn spawn_in(t: &Topology, ns: Option<String>, args: &[String], wait_for_socket: bool) -> Self {
        let log = t.dir.join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = std::fs::File::create(&log).expect("creating the daemon log");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        if let Some(ns) = ns {
            netns::start_in(&mut cmd, ns);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin().display()));
        let d = Self {
            child: Some(child),
            socket: t.socket(),
            log,
        };
        if wait_for_socket {
            d.wait_ready(Duration::from_secs(60));
        }
        d
    }

    /// Waits until the daemon answers `status` on its socket (its first sync done).
    #[track_caller]
    pub fn wait_ready(&self, timeout: Duration) {
        poll::until("the daemon to answer on its socket", timeout, || {
            if let Some(status) = self.exited() {
                panic!("the daemon exited with {status}:\n{}", self.log_text());
            }
            let out = cli(&self.socket, &["status"]);
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        });
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        // SAFETY: waitpid with WNOHANG on our own child.
        let pid = self.child.as_ref()?.id() as i32;
        let mut status = 0;
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        (rc == pid).then(|| std::os::unix::process::ExitStatusExt::from_raw(status))
    }

    /// Waits until a daemon that must refuse to start has exited, and returns how.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = poll::until("the daemon to exit", timeout, || {
            let s = self.exited();
            (s.is_some(), s)
        });
        self.child = None;
        status.expect("exited")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// Runs a CLI command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.socket, args)
    }

    /// Runs a CLI command that must succeed, and returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`borderfilter {}` failed ({}):\n{}\n--- daemon log ---\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `result` of `--json ARGS`, a command that must succeed.
    #[track_caller]
    pub fn result(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {text}", all.join(" ")));
        v["result"].clone()
    }

    /// `status --json`, parsed.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        self.result(&["status"])
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cli(socket: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin().display()))
}

/// `borderfilter verify --json` on the topology's pins and order list: whether the maps
/// enforce exactly the file, and the report (its `maps_sha256` names the maps' contents).
pub fn verify(t: &Topology) -> (bool, serde_json::Value) {
    verify_with(t, &[])
}

/// [`verify`] with more options (the daemon's --protect and --shared-ranges).
pub fn verify_with(t: &Topology, extra: &[&str]) -> (bool, serde_json::Value) {
    let out = Command::new(bin())
        .args(["--json", "verify", "--orders"])
        .arg(t.orders_path())
        .arg("--pin-dir")
        .arg(&t.pin_dir)
        .arg("--names-state")
        .arg(t.dir.join("names.json"))
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin().display()));
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}
