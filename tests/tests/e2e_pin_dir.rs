//! End to end: a --pin-dir that is not on a bpf filesystem. The daemon refuses to start
//! with a message that names the directory, the filesystem it is on and the fix, before
//! it loads, creates, pins or attaches anything; `doctor` says the same.
//!
//! Before this check the daemon loaded the program and failed on the first pin with
//! "loading the XDP object failed (are you root, with CAP_BPF and CAP_NET_ADMIN?): ...
//! BPF_OBJ_PIN failed: Operation not permitted", having created the directory.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use borderfilter_tests::{
    daemon::bin,
    netns::{sh, start_in, Netns},
    topology::{order, order_list},
};

const IFACE: &str = "d0";

/// A directory of the test's own with a tmpfs mounted on it; unmounted and removed on
/// drop.
struct Scratch {
    dir: PathBuf,
    tmpfs: PathBuf,
}

impl Scratch {
    #[track_caller]
    fn new(tag: &str) -> Self {
        let dir = PathBuf::from(format!("/tmp/borderfilter-tests/{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        let tmpfs = dir.join("tmpfs");
        std::fs::create_dir_all(&tmpfs).expect("creating the test directory");
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=1m",
                "tmpfs",
                &tmpfs.display().to_string(),
            ],
        );
        std::fs::write(
            dir.join("orders.json"),
            order_list(
                &[order("PIN-1/2026", "drop", &["198.51.100.0/24"], "")],
                &[],
            ),
        )
        .expect("writing the order list");
        Self { dir, tmpfs }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.tmpfs).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `borderfilter ARGS` in `ns`; panics if it has not exited after 30 s.
#[track_caller]
fn run_in(ns: &Netns, args: &[String]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    start_in(&mut cmd, ns.path());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin().display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child
        .try_wait()
        .expect("waiting for borderfilter")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting its output");
            panic!(
                "`borderfilter {}` still runs after 30 s:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collecting its output")
}

fn daemon_args(s: &Scratch, pin_dir: &Path) -> Vec<String> {
    [
        "--socket",
        &s.dir.join("control.sock").display().to_string(),
        "run",
        "--iface",
        IFACE,
        "--orders",
        &s.dir.join("orders.json").display().to_string(),
        "--audit-log",
        &s.dir.join("audit.jsonl").display().to_string(),
        "--pin-dir",
        &pin_dir.display().to_string(),
        "--no-metrics",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

#[track_caller]
fn assert_no_xdp(ns: &Netns) {
    let link = String::from_utf8_lossy(&ns.ip(&["link", "show", "dev", IFACE]).stdout).into_owned();
    assert!(
        !link.contains("xdp"),
        "an XDP program is attached to {IFACE}:\n{link}"
    );
}

#[test]
fn a_pin_directory_off_bpffs_is_refused_before_anything_is_loaded() {
    borderfilter_tests::require_root();
    let tag = borderfilter_tests::unique_tag("pin_dir");
    let s = Scratch::new(&tag);
    let ns = Netns::new(&format!("bf{tag}p"));
    // A veth pair inside the namespace (the kernel here has no dummy module).
    ns.ip(&["link", "add", IFACE, "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["link", "set", IFACE, "up"]);
    ns.ip(&["link", "set", "d1", "up"]);

    // (the pin directory, the filesystem the message must name: None for whatever the
    // scratch directory is on, which differs between machines)
    let existing = s.tmpfs.join("pins");
    std::fs::create_dir(&existing).expect("creating a pin directory on the tmpfs");
    let cases: [(PathBuf, Option<&str>); 2] = [
        (existing.clone(), Some("tmpfs")),
        (s.dir.join("x/pins"), None),
    ];
    for (pin_dir, filesystem) in &cases {
        let out = run_in(&ns, &daemon_args(&s, pin_dir));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{stderr}");
        let expected = format!(
            "borderfilter: pin directory {} is not on a bpf filesystem (it is on {}",
            pin_dir.display(),
            filesystem.unwrap_or("")
        );
        assert!(
            stderr.contains(&expected) && stderr.contains("mount -t bpf bpf"),
            "the message does not name the directory, its filesystem and the fix \
             (expected {expected:?} and `mount -t bpf bpf`):\n{stderr}"
        );
        assert!(
            !stderr.contains("BPF_OBJ_PIN") && !stderr.contains("loading the XDP object"),
            "the program was loaded before the check:\n{stderr}"
        );
        assert_no_xdp(&ns);
    }
    // Nothing was created or pinned: the tmpfs directory is as it was, the other one
    // was never made.
    let left: Vec<_> = std::fs::read_dir(&existing)
        .expect("reading the tmpfs pin directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "pins made on the tmpfs: {left:?}");
    assert!(
        !s.dir.join("x").exists(),
        "the daemon created {}",
        s.dir.join("x").display()
    );

    // doctor, with the same options, fails the same check with the same fix.
    let mut args = daemon_args(&s, &existing);
    args[2] = "doctor".into();
    args.insert(0, "--json".into());
    let out = run_in(&ns, &args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let check = report["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == "bpffs"))
        .unwrap_or_else(|| panic!("doctor has no bpffs check: {report:#}"));
    assert_eq!(check["status"], "fail", "{report:#}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!(
                "{} is not on a bpf filesystem (it is on tmpfs)",
                existing.display()
            )))
            && check["fix"]
                .as_str()
                .is_some_and(|f| f.contains("mount -t bpf bpf")),
        "doctor's bpffs check: {check:#}"
    );
}
