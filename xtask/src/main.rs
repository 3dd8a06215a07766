//! Project tasks: `cargo xtask <task>`. Each task installs what it needs first.
//!
//! Kept free of dependencies on the other crates: `setup` must compile on a machine that
//! cannot build the XDP program yet.

mod cmd;
mod setup;
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
    /// Install the BPF toolchain and the test tools (Debian packages, bpf-linker).
    /// Idempotent: installs only what is missing. Needs root.
    Setup,
    /// Build the XDP program and the `borderfilter` binary.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every check: formatting, clippy, unit tests, BPF_PROG_TEST_RUN fixtures and
    /// the end-to-end tests in network namespaces. Needs root.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter), after `--`.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::all(),
        Task::Build { release } => {
            setup::build_toolchain()?;
            cmd::cargo_build(release)
        }
        Task::Test { cargo_args } => test::run(&cargo_args),
    }
}
