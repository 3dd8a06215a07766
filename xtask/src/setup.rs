//! Installs what a fresh Debian 12 machine lacks. The lists here are the project's
//! complete install list: CI machines keep packages between runs, so a missing entry
//! would only show on a fresh machine. `docs/toolchain.md` explains each choice.

use std::process::Command;

use anyhow::{bail, Context};

use crate::cmd::{self, step};

/// Debian's Rust toolchain with a prebuilt `core` for the BPF target, and the LLVM that
/// bpf-linker links against.
pub const BUILD_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "build-essential",
    "protobuf-compiler", // protoc: the etcd-client crate's build compiles etcd's gRPC API
];

/// Tools the tests use the way an operator would.
pub const TEST_PACKAGES: &[&str] = &[
    "iproute2",      // ip netns, veth
    "nftables",      // the baseline the benchmarks compare against
    "ethtool",       // GRO on veth peers that receive redirected frames
    "curl",          // HTTP probes in the demo and end-to-end tests
    "python3",       // the demo's stand-in web server
    "prometheus",    // promtool checks the metrics and the alert rules
    "etcd-server",   // the fleet's store: the fleet tests start their own members
    "etcd-client",   // etcdctl: the fleet tests write bad keys and set up users with it
    "openssl",       // the fleet tests' CA, server and client certificates
    "knot",          // knotd, knotc: the DNS tests start their own authoritative server
    "knot-dnsutils", // kdig: the DNS tests ask that server from the router namespace
];

/// Baselines the benchmarks measure against (`cargo xtask bench`).
pub const BENCH_PACKAGES: &[&str] = &[
    "xdp-tools", // xdp-filter: the one-hash-lookup XDP baseline of the flood on exact lists
];

/// Tools that build and check the Debian package (`cargo xtask deb`) and that the
/// package test uses the way an operator would.
pub const PACKAGE_PACKAGES: &[&str] = &[
    "dpkg-dev", // dpkg-shlibdeps: the package's library dependencies
    "binutils", // strip
    "lintian",  // Debian's package checks
    "systemd",  // systemd-analyze verify
    "man-db",   // man: the man page renders
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Where systemd mounts the BPF filesystem at boot; the daemon's default --pin-dir is
/// under it.
const BPFFS: &str = "/sys/fs/bpf";
/// statfs types as `stat -f --format=%t` prints them (linux/magic.h).
const BPF_FS_MAGIC: &str = "cafe4a11";
const SYSFS_MAGIC: &str = "62656572";

pub fn all() -> anyhow::Result<()> {
    build_toolchain()?;
    packages(TEST_PACKAGES)?;
    packages(BENCH_PACKAGES)?;
    packages(PACKAGE_PACKAGES)?;
    bpffs()
}

/// Everything needed to build the XDP program.
pub fn build_toolchain() -> anyhow::Result<()> {
    packages(BUILD_PACKAGES)?;
    bpf_linker()
}

fn installed(package: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

/// Installs the packages of `list` that are missing.
pub fn packages(list: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = list.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    if !cmd::is_root() {
        bail!(
            "these packages are missing and installing them needs root: {}\n\
             run `sudo cargo xtask setup`, or install them yourself",
            missing.join(" ")
        );
    }
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = cmd::output(Command::new("bpf-linker").arg("--version"));
    if version
        .as_deref()
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
    {
        return Ok(());
    }
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM 22 (about a minute)"
    ));
    cmd::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
    .context("installing bpf-linker")
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there, as systemd does at boot.
/// A machine whose init is not systemd (a container, a CI runner) has none, and the
/// package test and `cargo xtask run --iface` use the daemon's default pin directory
/// under it.
fn bpffs() -> anyhow::Result<()> {
    // The filesystem the path is on, as the daemon checks it (statfs), rather than
    // /proc/self/mountinfo: a mount there can be hidden under a later mount of /sys.
    let magic = cmd::output(Command::new("stat").args(["-f", "--format=%t", BPFFS]))
        .with_context(|| format!("cannot stat {BPFFS}: is sysfs mounted at /sys?"))?;
    match magic.trim() {
        BPF_FS_MAGIC => return Ok(()),
        SYSFS_MAGIC => {}
        other => bail!(
            "{BPFFS} has a filesystem other than bpffs mounted on it (statfs type 0x{other}): \
             the daemon cannot pin its maps there. Unmount it and run setup again"
        ),
    }
    step(&format!(
        "mounting bpffs at {BPFFS}: nothing was mounted there (systemd mounts it at boot)"
    ));
    if !cmd::is_root() {
        bail!(
            "mounting it needs root: run `sudo cargo xtask setup`, or `sudo mount -t bpf bpf {BPFFS}`"
        );
    }
    cmd::run_quiet(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}
