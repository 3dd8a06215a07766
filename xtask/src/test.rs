//! `cargo xtask test`: every check, in the order that fails fastest.

use crate::cmd::{self, cargo, step};

pub fn run(cargo_args: &[String]) -> anyhow::Result<()> {
    if !cmd::is_root() {
        anyhow::bail!("the tests load XDP programs and build network namespaces: run as root");
    }
    crate::setup::all()?;
    step("formatting");
    cmd::run(cargo().args(["fmt", "--all", "--check"]))?;
    step("clippy (warnings are errors)");
    cmd::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    cmd::cargo_build(false)?;
    // tests/tests/e2e_package.rs installs it.
    let deb = crate::deb::build()?;
    step("unit, BPF_PROG_TEST_RUN and end-to-end tests");
    cmd::run(
        cargo()
            .args(["test", "--workspace"])
            .env("BORDERFILTER_BIN", cmd::borderfilter_bin())
            .env("BORDERFILTER_DEB", deb)
            .args(cargo_args),
    )
}
