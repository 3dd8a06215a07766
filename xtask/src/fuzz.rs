//! `cargo xtask fuzz [TARGET] [--time SECONDS]`: runs the fuzz targets in `fuzz/` one
//! after the other, each for `--time` seconds, starting from the hand-written seeds
//! (`fuzz/seeds/`), the inputs that once failed (`fuzz/regressions/`) and the corpus
//! (`fuzz/corpus/`), which it grows and then minimises. docs/fuzzing.md says what each
//! target checks.
//!
//! cargo-fuzz wants a nightly compiler for `-Zsanitizer` and the coverage flags; the
//! machines that build borderfilter have stable only. `RUSTC_BOOTSTRAP=1` lets stable
//! take those flags, and `--sanitizer none` leaves out the sanitizer runtimes: the code
//! under test is safe Rust, where a bug shows as a panic, which libFuzzer catches as is.

use std::process::Command;

use anyhow::{bail, Context};

use crate::cmd::{self, step};

pub const TARGETS: &[&str] = &["order_list", "control_request"];
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Longest input tried: room for a few orders, and for values long enough to find
/// messages that grow with the input.
const MAX_LEN: usize = 8192;

/// `cargo fuzz` in fuzz/, with stable taking nightly flags.
fn cargo_fuzz() -> Command {
    let mut c = cmd::cargo();
    c.current_dir(cmd::root().join("fuzz"))
        .arg("fuzz")
        .env("RUSTC_BOOTSTRAP", "1");
    c
}

fn install_cargo_fuzz() -> anyhow::Result<()> {
    let version = cmd::output(cmd::cargo().args(["fuzz", "--version"]));
    if version.is_some_and(|v| v.contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    step(&format!("installing cargo-fuzz {CARGO_FUZZ_VERSION}"));
    cmd::run(cmd::cargo().args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
    .context("installing cargo-fuzz")
}

pub fn run(target: Option<&str>, seconds: u64) -> anyhow::Result<()> {
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!(
            "no fuzz target {t:?}; the targets are {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.to_vec(),
    };
    // filter-user's build script compiles the XDP program, fuzzed build or not.
    crate::setup::build_toolchain()?;
    install_cargo_fuzz()?;
    for t in targets {
        step(&format!("fuzzing {t} for {seconds} s (fuzz/corpus/{t})"));
        let corpus = format!("corpus/{t}");
        let result = cmd::run(
            cargo_fuzz()
                .args(["run", "--sanitizer", "none", "--debug-assertions", t])
                .args([
                    corpus.as_str(),
                    &format!("seeds/{t}"),
                    &format!("regressions/{t}"),
                ])
                .args(["--", &format!("-max_total_time={seconds}")])
                .args([&format!("-max_len={MAX_LEN}"), "-print_final_stats=1"]),
        );
        if let Err(e) = result {
            bail!(
                "{e}\nthe failing input is in fuzz/artifacts/{t}/ (printed above); reproduce it with\n  \
                 cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a {t} artifacts/{t}/<file>\n\
                 then fix the bug, and keep the input in fuzz/regressions/{t}/ (filter-user/tests/bad_lists.rs replays it)"
            );
        }
        step(&format!("minimising fuzz/corpus/{t}"));
        cmd::run(
            cargo_fuzz()
                .args(["cmin", "--sanitizer", "none", "--debug-assertions", t])
                .arg(&corpus)
                .args(["--", &format!("-max_len={MAX_LEN}")]),
        )?;
    }
    Ok(())
}
