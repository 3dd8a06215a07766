//! Project tasks: `cargo xtask <task>`. Each task installs what it needs first.
//!
//! Kept free of dependencies on the other crates: `setup` must compile on a machine that
//! cannot build the XDP program yet.

mod bench;
mod cmd;
mod deb;
mod demo;
mod demo_dns;
mod fuzz;
mod setup;
mod soak;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "borderfilter's build, test and demo tasks", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the BPF toolchain and the test tools (Debian packages, bpf-linker), and
    /// mount bpffs at /sys/fs/bpf when nothing is mounted there (as systemd does at
    /// boot). Idempotent: does only what is missing. Needs root.
    Setup,
    /// The main job. Without --iface: a demo on network namespaces it builds (client,
    /// router running borderfilter, server), showing a court order enforced on real HTTP
    /// traffic, then torn down. With --iface: the daemon on those interfaces. Needs root.
    Run {
        /// Real interfaces to filter (omit for the demo).
        #[arg(long = "iface", value_name = "IF")]
        ifaces: Vec<String>,
        /// Keep the demo running until Enter is pressed, to explore it.
        #[arg(long)]
        keep: bool,
        /// More options for `borderfilter run` (with --iface), after `--`.
        #[arg(last = true)]
        daemon_args: Vec<String>,
    },
    /// Measure the fast path, throughput, syncs, memory and scrapes; print a table and
    /// write target/bench/report.json. Needs root.
    Bench {
        /// A reduced run, under two minutes.
        #[arg(long)]
        quick: bool,
        /// Run one part: classify, throughput, flood, sync, scrape or fleet.
        #[arg(long, value_name = "PART")]
        only: Option<String>,
    },
    /// Build the XDP program and the `borderfilter` binary.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build the Debian package target/debian/borderfilter_<version>_<arch>.deb (release
    /// binary, systemd units for the daemon and the notice server, conffiles, man page,
    /// completions, docs) and check it with lintian, systemd-analyze verify and security
    /// (the notice server's sandbox) and man.
    Deb,
    /// Run every check: formatting, clippy, unit tests, BPF_PROG_TEST_RUN fixtures and
    /// the end-to-end tests in network namespaces. Needs root.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter), after `--`.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// The long variants of the reliability tests (no leak under change, crash
    /// consistency, no lost update): thousands of reloads, a hundred SIGKILL cycles, many
    /// kill points in a million-prefix sync. Prints what they measured. Needs root;
    /// takes about an hour.
    Soak {
        /// Only these test files (e2e_no_leak, e2e_crash, e2e_concurrency).
        #[arg(long)]
        only: Vec<String>,
        /// Extra arguments for `cargo test` (e.g. a test name filter), after `--`.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Fuzz the order-list parser and validator and the control-socket request decoder
    /// (cargo-fuzz on the stable toolchain), one target after the other; grows and
    /// minimises the corpus in fuzz/corpus. See docs/fuzzing.md.
    Fuzz {
        /// One target (order_list, control_request); all when omitted.
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 600)]
        time: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::all(),
        Task::Build { release } => {
            setup::build_toolchain()?;
            cmd::cargo_build(release)
        }
        Task::Deb => deb::run(),
        Task::Test { cargo_args } => test::run(&cargo_args),
        Task::Bench { quick, only } => bench::run(quick, only.as_deref()),
        Task::Fuzz { target, time } => fuzz::run(target.as_deref(), time),
        Task::Soak { only, cargo_args } => soak::run(&only, &cargo_args),
        Task::Run {
            ifaces,
            keep,
            daemon_args,
        } => demo::run(&ifaces, keep, &daemon_args),
    }
}
