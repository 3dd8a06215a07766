//! Syncs at scale and memory: a million IPv4 prefixes into an empty filter, a 1% change
//! to them, single `borderfilter block add` commands against the running daemon (until
//! the data plane blocks), kernel memory per prefix. The daemon helpers here serve
//! `scrape.rs` too.

use std::{
    io::Read,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use filter_user::{
    compile::{compile, Numbering},
    dataplane::{xdp_action, Dataplane, LoadOptions},
    error_chain,
    frame::Frame,
    orders::{
        file,
        validate::{check, Policy},
    },
    sync::{Plan, Snapshot},
};
use serde::Serialize;

use crate::{lists, Options};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Sync {
    pub load_prefixes: usize,
    /// Seconds for each stage of loading the list into an empty filter.
    pub load_read_s: f64,
    pub load_check_s: f64,
    pub load_compile_s: f64,
    pub load_plan_s: f64,
    pub load_apply_s: f64,
    pub load_total_s: f64,
    pub change_percent: f64,
    pub change_total_s: f64,
    pub block_add_tries: usize,
    pub block_add_median_ms: f64,
    pub block_add_p99_ms: f64,
    /// Until the command returned (the edit durable: journaled, or the file written).
    pub block_add_cli_median_ms: f64,
    pub block_add_cli_p99_ms: f64,
    pub memory_bytes: u64,
    pub memory_bytes_per_prefix: f64,
    pub memory_by_map: Vec<(String, u64)>,
}

pub fn order_json(id: &str, prefixes: &[String]) -> String {
    format!(
        "{{\"id\": \"{id}\", \"authority\": \"Bench Court\", \"issued\": \"2026-01-01\", \"action\": \"drop\", \"prefixes\": [{}]}}",
        prefixes.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(",")
    )
}

pub fn list_json(orders: &[String]) -> String {
    format!(
        "{{\"version\": 1, \"orders\": [\n{}\n]}}\n",
        orders.join(",\n")
    )
}

/// The million-prefix list: 100 orders in 240.0.0.0/5 plus one order (`CLI`, listing
/// 203.0.113.255) that the CLI test adds 198.51.100.x addresses to.
fn big_list(n: usize, seed: u64) -> String {
    let mut rng = lists::rng(seed);
    let prefixes: Vec<String> = lists::v4_within(n, 0xf000_0000, 5, &mut rng)
        .iter()
        .map(|p| p.to_string())
        .collect();
    let mut orders: Vec<String> = prefixes
        .chunks(n.div_ceil(100))
        .enumerate()
        .map(|(i, c)| order_json(&format!("BULK-{i}"), c))
        .collect();
    orders.push(order_json("CLI", &["203.0.113.255".to_string()]));
    list_json(&orders)
}

fn pipeline(path: &Path, dp: &mut Dataplane, out: &mut Sync) -> anyhow::Result<f64> {
    let policy = Policy {
        capacity_v4: 1_200_000,
        capacity_v6: 200_000,
        ..Policy::default()
    };
    let total = Instant::now();
    let t = Instant::now();
    let bytes = file::read(path, file::DEFAULT_MAX_BYTES)?;
    out.load_read_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (list, problems) = check(&bytes, &policy);
    let list = list.ok_or_else(|| anyhow::anyhow!("the bench list is invalid: {problems}"))?;
    out.load_check_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let held = Snapshot::read(dp.maps()).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let compiled = compile(
        &list,
        time::OffsetDateTime::now_utc(),
        &Numbering::from_rules(&held.rules),
    )?;
    out.load_compile_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let target = Snapshot::of(&compiled);
    let plan = Plan::between(&held, &target);
    out.load_plan_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    plan.apply(dp.maps_mut())
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    out.load_apply_s = t.elapsed().as_secs_f64();
    Ok(total.elapsed().as_secs_f64())
}

pub struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_daemon(
    options: &Options,
    name: &str,
    orders: &Path,
    extra: &[&str],
) -> anyhow::Result<(Daemon, std::path::PathBuf, std::path::PathBuf)> {
    let dir = options.work_dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("control.sock");
    let pins = Path::new("/sys/fs/bpf").join(format!("borderfilter-bench-{name}"));
    let child = Command::new(&options.borderfilter)
        .arg("--socket")
        .arg(&socket)
        .arg("run")
        .arg("--orders")
        .arg(orders)
        .arg("--pin-dir")
        .arg(&pins)
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .args(["--capacity-v4", "1200000"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log"))?)
        .spawn()?;
    let daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = Command::new(&options.borderfilter)
            .arg("--socket")
            .arg(&socket)
            .args(["--json", "status"])
            .output()?;
        if status.status.success()
            && String::from_utf8_lossy(&status.stdout).contains("\"in_sync\": true")
        {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the bench daemon did not come up: {}",
                std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((daemon, socket, pins))
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn mount_bpffs() -> anyhow::Result<()> {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some("/sys/fs/bpf"));
    if !mounted {
        crate::netns::sh("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])?;
    }
    Ok(())
}

/// Detaches the filter a benchmark daemon left pinned in `pins` (and its maps).
pub fn detach(options: &Options, pins: &Path) {
    let _ = Command::new(&options.borderfilter)
        .args(["detach", "--yes", "--pin-dir"])
        .arg(pins)
        .arg("--socket")
        .arg("/nonexistent")
        .output();
}

pub fn run(options: &Options) -> anyhow::Result<Sync> {
    let mut out = Sync {
        load_prefixes: 1_000_000,
        change_percent: 1.0,
        ..Sync::default()
    };
    let path = options.work_dir.join("big.json");
    std::fs::write(&path, big_list(out.load_prefixes, 1))?;

    // A million prefixes into an empty filter, then a 1% change.
    let mut dp = Dataplane::load(&LoadOptions {
        pin_dir: None,
        v4_capacity: 1_200_000,
        v6_capacity: 1024,
    })
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    out.load_total_s = pipeline(&path, &mut dp, &mut out)?;
    eprintln!("  1,000,000 prefixes loaded in {:.2} s (read {:.2}, check {:.2}, compile {:.2}, plan {:.2}, apply {:.2})",
        out.load_total_s, out.load_read_s, out.load_check_s, out.load_compile_s, out.load_plan_s, out.load_apply_s);
    out.memory_by_map = dp.maps().memory();
    out.memory_bytes = out.memory_by_map.iter().map(|(_, b)| b).sum();
    out.memory_bytes_per_prefix = out.memory_bytes as f64 / out.load_prefixes as f64;
    eprintln!(
        "  kernel map memory: {} MiB, {:.0} bytes per prefix",
        out.memory_bytes >> 20,
        out.memory_bytes_per_prefix
    );
    let changed_path = options.work_dir.join("big-changed.json");
    let mut text = std::fs::read_to_string(&path)?;
    // 1%: the first order's prefixes replaced by others.
    let other = big_list(out.load_prefixes / 100, 2);
    let first = |t: &str| -> (usize, usize) {
        let start = t.find("\"prefixes\": [").expect("an order");
        (start, start + t[start..].find(']').expect("a list") + 1)
    };
    let (a, b) = first(&text);
    let (c, d) = first(&other);
    text.replace_range(a..b, &other[c..d]);
    std::fs::write(&changed_path, text)?;
    let mut scratch = Sync::default();
    out.change_total_s = pipeline(&changed_path, &mut dp, &mut scratch)?;
    eprintln!("  1% change applied in {:.2} s", out.change_total_s);
    drop(dp);

    // Single CLI changes against the daemon holding the million prefixes.
    mount_bpffs()?;
    let (daemon, socket, pins) = start_daemon(options, "cli", &path, &["--no-metrics"])?;
    let probe = Dataplane::load(&LoadOptions {
        pin_dir: Some(pins.clone()),
        v4_capacity: 1_200_000,
        v6_capacity: 1024,
    })
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let tries = if options.quick { 20 } else { 100 };
    let mut times = Vec::with_capacity(tries);
    let mut cli_times = Vec::with_capacity(tries);
    for i in 0..tries {
        let addr = format!("198.51.100.{}", i % 256);
        let frame = Frame::v4("192.0.2.1".parse()?, addr.parse()?).bytes();
        let started = Instant::now();
        let mut cli = Command::new(&options.borderfilter)
            .arg("--socket")
            .arg(&socket)
            .args(["block", "add", &addr, "--order", "CLI"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        loop {
            if probe
                .test_run(&frame)
                .map_err(|e| anyhow::anyhow!(error_chain(&e)))?
                == xdp_action::DROP
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("block add {addr} never reached the data plane");
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
        let status = cli.wait()?;
        cli_times.push(started.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            let mut err = String::new();
            cli.stderr.take().map(|mut e| e.read_to_string(&mut err));
            anyhow::bail!("block add {addr} failed: {err}");
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    out.block_add_tries = tries;
    out.block_add_median_ms = percentile(&times, 0.5);
    out.block_add_p99_ms = percentile(&times, 0.99);
    cli_times.sort_by(|a, b| a.total_cmp(b));
    out.block_add_cli_median_ms = percentile(&cli_times, 0.5);
    out.block_add_cli_p99_ms = percentile(&cli_times, 0.99);
    eprintln!(
        "  block add until the command returns (durable): median {:.1} ms, p99 {:.1} ms",
        out.block_add_cli_median_ms, out.block_add_cli_p99_ms
    );
    eprintln!("  block add until the data plane blocks: median {:.1} ms, p99 {:.1} ms ({tries} tries, 1M prefixes loaded)", out.block_add_median_ms, out.block_add_p99_ms);
    drop(probe);
    drop(daemon);
    detach(options, &pins);
    Ok(out)
}
