//! The Debian package on this machine, for the package test (`e2e_package.rs`): the paths
//! it installs and creates, finding the `.deb`, refusing to touch an installation that is
//! not the test's, installing, removing and purging it (purged too if the test ends
//! early), what it leaves behind, and the installed CLI.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

pub const PACKAGE: &str = "borderfilter";
pub const UNIT: &str = "/lib/systemd/system/borderfilter.service";
pub const DEFAULTS: &str = "/etc/default/borderfilter";
pub const NOTICE_UNIT: &str = "/lib/systemd/system/borderfilter-notice.service";
pub const NOTICE_DEFAULTS: &str = "/etc/default/borderfilter-notice";
/// Pages of the operator's own for the notice server, made by the test.
pub const NOTICE_TEMPLATES: &str = "/etc/borderfilter/notice";
pub const ORDERS: &str = "/etc/borderfilter/orders.json";
pub const BIN: &str = "/usr/sbin/borderfilter";
pub const MAN_PAGE: &str = "/usr/share/man/man8/borderfilter.8.gz";
/// What the package and its daemon create outside the files dpkg lists.
pub const CREATED: &[&str] = &[
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

/// The .deb to install.
pub fn deb_path() -> PathBuf {
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
pub fn refuse_if_in_use() {
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

pub fn package_known() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| {
            let status = String::from_utf8_lossy(&o.stdout);
            o.status.success() && !status.contains("not-installed")
        })
}

pub fn group_exists() -> bool {
    Command::new("getent")
        .args(["group", PACKAGE])
        .status()
        .is_ok_and(|s| s.success())
}

/// Every entry of deb-systemd-helper's state and /etc/systemd/system that names us.
pub fn dsh_entries() -> BTreeSet<String> {
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
pub fn dpkg_files() -> BTreeSet<String> {
    ok("dpkg", &["-L", PACKAGE])
        .lines()
        .filter(|l| l.starts_with('/') && *l != "/.")
        .map(str::to_string)
        .collect()
}

/// The package installed; purged on drop if the test ends early.
pub struct Installed {
    /// The package's paths that existed before it was installed (/usr, /etc, ...).
    existed: BTreeSet<String>,
}

impl Installed {
    #[track_caller]
    pub fn install(deb: &Path) -> Self {
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
    pub fn remove(&self) {
        dpkg(&["-r", PACKAGE]);
    }

    /// Purges the package; returns the paths that existed before it was installed.
    #[track_caller]
    pub fn purge(mut self) -> BTreeSet<String> {
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

/// Serialises package tests of concurrent runs on this machine: they install the same
/// package.
pub struct HostLock {
    _file: std::fs::File,
}

impl HostLock {
    pub fn take() -> Self {
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

pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"))
}

pub fn run(program: &str, args: &[&str], file: Option<&Path>) -> Output {
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
pub fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args, None);
    assert!(
        out.status.success(),
        "`{program} {}` failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
