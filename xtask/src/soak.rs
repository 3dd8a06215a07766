//! `cargo xtask soak`: the long variants of the reliability tests (tests/tests/
//! e2e_no_leak.rs, e2e_crash.rs, e2e_concurrency.rs), one test at a time, with
//! `BORDERFILTER_SOAK=1` (2,000 reloads, 100 SIGKILL cycles, 1,000 concurrent CLI edits,
//! ten kill points in the first sync of a million prefixes, four in a large change, ...).
//! Each test prints what it measured as `measured: ...` lines; they are collected and
//! printed again at the end, with each test's duration and result.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use crate::cmd::{self, cargo, step};

/// The test files with long variants, in the order they run (quickest first).
const SOAKED: [&str; 3] = ["e2e_concurrency", "e2e_no_leak", "e2e_crash"];

struct Run {
    test: &'static str,
    took: Duration,
    passed: bool,
    measured: Vec<String>,
}

pub fn run(only: &[String], cargo_args: &[String]) -> anyhow::Result<()> {
    if !cmd::is_root() {
        anyhow::bail!("the soak tests load XDP programs and build network namespaces: run as root");
    }
    if let Some(unknown) = only.iter().find(|o| !SOAKED.contains(&o.as_str())) {
        anyhow::bail!(
            "--only {unknown}: the soaked tests are {}",
            SOAKED.join(", ")
        );
    }
    crate::setup::all()?;
    cmd::cargo_build(false)?;
    let mut runs = Vec::new();
    for test in SOAKED
        .into_iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
    {
        step(&format!("soak: tests/tests/{test}.rs (long variants)"));
        runs.push(soak(test, cargo_args)?);
    }

    step("soak: what was measured");
    for r in &runs {
        eprintln!(
            "\n{} {} ({:.0?})",
            if r.passed { "PASSED" } else { "FAILED" },
            r.test,
            r.took
        );
        for m in &r.measured {
            eprintln!("    {m}");
        }
    }
    let failed: Vec<&str> = runs.iter().filter(|r| !r.passed).map(|r| r.test).collect();
    if !failed.is_empty() {
        anyhow::bail!("soak tests failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs one test file's long variants, echoing its output and keeping the measurements.
fn soak(test: &'static str, cargo_args: &[String]) -> anyhow::Result<Run> {
    let mut c = cargo();
    c.args(["test", "-p", "borderfilter-tests", "--test", test])
        .args(cargo_args)
        .args(["--", "--nocapture", "--test-threads=1"])
        .env("BORDERFILTER_SOAK", "1")
        .env("BORDERFILTER_BIN", cmd::borderfilter_bin())
        .stderr(Stdio::piped());
    eprintln!("    $ BORDERFILTER_SOAK=1 {}", cmd::display(&c));
    let started = Instant::now();
    let mut child = c.spawn()?;
    let mut measured = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            eprintln!("{line}");
            if let Some(m) = line.strip_prefix("measured: ") {
                measured.push(m.to_string());
            }
        }
    }
    let passed = child.wait()?.success();
    Ok(Run {
        test,
        took: started.elapsed(),
        passed,
        measured,
    })
}
