//! Reading the counters of 10,000 orders from a running daemon: `GET /metrics` over
//! HTTP, and `borderfilter --json stats`, the same counters through the CLI.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Instant,
};

use serde::Serialize;

use crate::{
    sync::{detach, list_json, mount_bpffs, order_json, percentile, start_daemon},
    Options,
};

/// Where the benchmark daemon serves its metrics (not the default port, so that a
/// daemon running on the machine is left alone).
const METRICS: &str = "127.0.0.1:19797";

#[derive(Clone, Debug, Default, Serialize)]
pub struct Scrape {
    pub orders: usize,
    pub tries: usize,
    /// `GET /metrics`, from connecting until the whole response has been read.
    pub median_ms: f64,
    pub max_ms: f64,
    /// `borderfilter --json stats`, from starting the command until it exits.
    pub stats_median_ms: f64,
}

fn get_metrics() -> anyhow::Result<String> {
    let mut s = TcpStream::connect(METRICS)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

pub fn run(options: &Options) -> anyhow::Result<Scrape> {
    let mut out = Scrape {
        orders: 10_000,
        tries: if options.quick { 10 } else { 20 },
        ..Scrape::default()
    };
    let orders: Vec<String> = (0..out.orders)
        .map(|i| {
            order_json(
                &format!("ORDER-{i}"),
                &[format!("240.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff)],
            )
        })
        .collect();
    let list = options.work_dir.join("orders-10k.json");
    std::fs::write(&list, list_json(&orders))?;
    mount_bpffs()?;
    let (daemon, socket, pins) = start_daemon(options, "scrape", &list, &["--metrics", METRICS])?;
    let last = format!("ORDER-{}", out.orders - 1);

    let mut times = Vec::with_capacity(out.tries);
    for _ in 0..out.tries {
        let started = Instant::now();
        let text = get_metrics()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(text.contains(&last), "the scrape misses orders");
    }
    times.sort_by(|a, b| a.total_cmp(b));
    out.median_ms = percentile(&times, 0.5);
    out.max_ms = percentile(&times, 1.0);

    let mut times = Vec::with_capacity(out.tries);
    for _ in 0..out.tries {
        let started = Instant::now();
        let stats = Command::new(&options.borderfilter)
            .arg("--socket")
            .arg(&socket)
            .args(["--json", "stats"])
            .output()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            stats.status.success() && String::from_utf8_lossy(&stats.stdout).contains(&last),
            "borderfilter stats failed or misses orders: {}",
            String::from_utf8_lossy(&stats.stderr)
        );
    }
    times.sort_by(|a, b| a.total_cmp(b));
    out.stats_median_ms = percentile(&times, 0.5);
    eprintln!(
        "  {} orders: /metrics median {:.1} ms (max {:.1}), borderfilter stats median {:.1} ms ({} tries)",
        out.orders, out.median_ms, out.max_ms, out.stats_median_ms, out.tries
    );
    drop(daemon);
    detach(options, &pins);
    Ok(out)
}
