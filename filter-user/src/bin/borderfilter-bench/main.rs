//! `borderfilter-bench`: the measurements behind `cargo xtask bench` (see
//! `docs/benchmarks.md`). Every comparison is measured side by side in the same run, on
//! this machine, and reported as ratios as well as absolute figures.
//!
//! - `lists`: the prefix sets (realistic length mixes) and address samples;
//! - `classify`: classification cost per packet, filter against a plain LPM trie;
//! - `shapes`, `shaped`: the same on lists shaped like real ones and like the worst
//!   case (spread, crowded, exact), through the daemon's compile and sync;
//! - `flood`: the veth flood rig (generator, ceiling, nftables, xdp-filter);
//! - `throughput`: frames per second through a veth pair on the benchmark's own list,
//!   against a drop-all ceiling and nftables;
//! - `floodlists`: the same flood on the shaped lists at the daemon's defaults, over
//!   several runs, with xdp-filter on the exact lists, and each list's map memory;
//! - `sync`: loading and changing a million prefixes, a single CLI change, memory;
//! - `scrape`: reading the counters of 10,000 orders (`/metrics`, `borderfilter stats`);
//! - `report`: the table and `target/bench/report.json` (`floodreport`: the flood part;
//!   `target`: one target, met or missed).

mod classify;
mod fleet;
mod flood;
mod floodlists;
mod floodreport;
mod lists;
mod netns;
mod report;
mod scrape;
mod shaped;
mod shapes;
mod sync;
mod target;
mod throughput;

use std::path::PathBuf;

use anyhow::Context;

/// The object with the benchmark programs, built beside the filter's.
static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench.o"));

pub struct Options {
    pub quick: bool,
    /// The `borderfilter` binary, for the daemon measurements.
    pub borderfilter: PathBuf,
    pub work_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut out = PathBuf::from("target/bench/report.json");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => {
                only =
                    Some(args.next().context(
                        "--only needs classify, throughput, flood, sync, scrape or fleet",
                    )?)
            }
            "--out" => out = PathBuf::from(args.next().context("--out needs a path")?),
            "-h" | "--help" => {
                println!("usage: borderfilter-bench [--quick] [--only classify|throughput|flood|sync|scrape|fleet] [--out PATH]   (as root; see docs/benchmarks.md)");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the benchmarks load XDP programs and build network namespaces: run as root");
    }
    let borderfilter = std::env::current_exe()?.with_file_name("borderfilter");
    let work_dir = PathBuf::from("/tmp/borderfilter-bench");
    let _ = std::fs::remove_dir_all(&work_dir);
    std::fs::create_dir_all(&work_dir)?;
    let options = Options {
        quick,
        borderfilter,
        work_dir,
    };

    let mut report = report::Report::new(quick);
    if let Some(part) = &only {
        if !["classify", "throughput", "flood", "sync", "scrape", "fleet"].contains(&part.as_str())
        {
            anyhow::bail!(
                "--only {part:?}: expected classify, throughput, flood, sync, scrape or fleet"
            );
        }
    }
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("classify") {
        eprintln!("classification cost per packet (BPF_PROG_TEST_RUN, random addresses)...");
        report.classification = classify::run(&options)?;
        eprintln!("classification cost on lists shaped like real ones and the worst case...");
        report.shaped = shaped::run(&options)?;
    }
    if runs("throughput") {
        eprintln!("throughput through a veth pair (live frames)...");
        report.throughput = throughput::run(&options)?;
    }
    if runs("flood") {
        eprintln!("veth flood on the shaped lists at the daemon's defaults, and their memory...");
        report.flood = Some(floodlists::run(&options)?);
    }
    if runs("sync") {
        eprintln!("syncs and memory...");
        report.sync = Some(sync::run(&options)?);
    }
    if runs("scrape") {
        eprintln!("reading the counters of 10,000 orders...");
        report.scrape = Some(scrape::run(&options)?);
    }
    if runs("fleet") {
        eprintln!("a fleet of three routers following one etcd...");
        report.fleet = Some(fleet::run(&options)?);
    }
    report.evaluate();
    print!("{}", report.table());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("report written to {}", out.display());
    let _ = std::fs::remove_dir_all(&options.work_dir);
    Ok(())
}
