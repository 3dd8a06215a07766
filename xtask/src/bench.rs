//! `cargo xtask bench`: builds the release binaries and runs `borderfilter-bench`, which
//! prints the table and writes `target/bench/report.json` (see docs/benchmarks.md).

use crate::cmd::{self, cargo, step};

pub fn run(quick: bool, only: Option<&str>) -> anyhow::Result<()> {
    if !cmd::is_root() {
        anyhow::bail!("the benchmarks load XDP programs and build network namespaces: run as root");
    }
    crate::setup::all()?;
    step("building the release binaries");
    cmd::run(cargo().args(["build", "--release", "-p", "filter-user", "--bins"]))?;
    step(if quick {
        "running the quick benchmarks (under two minutes)"
    } else {
        "running the benchmarks"
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cmd::root().join("target"));
    let mut c = std::process::Command::new(target.join("release").join("borderfilter-bench"));
    c.current_dir(cmd::root())
        .arg("--out")
        .arg(target.join("bench").join("report.json"));
    if quick {
        c.arg("--quick");
    }
    if let Some(part) = only {
        c.args(["--only", part]);
    }
    cmd::run(&mut c)
}
