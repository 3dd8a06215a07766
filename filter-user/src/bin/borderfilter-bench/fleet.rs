//! A fleet following one etcd: the time from `borderfilter publish` starting until the
//! last of three routers enforces the new version (its data plane changed, which its
//! `status` shows by the version's digest), over a series of publishes. The routers are
//! daemons on this host without interfaces (their maps are what enforces); etcd is
//! Debian's, on loopback ports of its own.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde::Serialize;

use crate::{
    sync::{detach, list_json, mount_bpffs, order_json, percentile, start_daemon},
    Options,
};
use filter_user::control::{self, Request};

const CLIENT_PORT: u16 = 23791;
const PEER_PORT: u16 = 23801;
const ROUTERS: usize = 3;

#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetBench {
    pub routers: usize,
    pub publishes: usize,
    /// From `publish` starting until the last router enforces the version.
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// `publish` alone (validated, chunks, manifest, compare-and-swap).
    pub publish_median_ms: f64,
}

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_etcd(dir: &Path) -> anyhow::Result<Etcd> {
    let client = format!("http://127.0.0.1:{CLIENT_PORT}");
    let peer = format!("http://127.0.0.1:{PEER_PORT}");
    let child = Command::new("etcd")
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("bench={peer}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("etcd.log"))?)
        .spawn()
        .context("starting etcd (Debian package etcd-server; cargo xtask setup installs it)")?;
    let etcd = Etcd(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", CLIENT_PORT)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "etcd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(etcd)
}

/// Publishes the list at `path`; returns its digest.
fn publish(options: &Options, path: &Path) -> anyhow::Result<String> {
    let out = Command::new(&options.borderfilter)
        .args(["--json", "publish"])
        .arg(path)
        .args(["--etcd", &format!("127.0.0.1:{CLIENT_PORT}"), "--base-any"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["sha256"]
        .as_str()
        .context("publish names the digest")?
        .to_string())
}

/// The digest of the list `socket`'s daemon enforces.
fn enforced(socket: &Path) -> Option<String> {
    let r = control::call(socket, &Request::Status, Duration::from_secs(5)).ok()?;
    r.result["applied"]["sha256"].as_str().map(str::to_string)
}

pub fn run(options: &Options) -> anyhow::Result<FleetBench> {
    mount_bpffs()?;
    let dir = options.work_dir.join("fleet");
    std::fs::create_dir_all(&dir)?;
    let _etcd = start_etcd(&dir)?;
    let list = dir.join("list.json");
    let version = |k: usize| {
        list_json(&[order_json(
            "FLEET",
            &[format!("198.18.{}.{}", k / 250, 1 + k % 250)],
        )])
    };
    std::fs::write(&list, version(0))?;
    publish(options, &list)?;
    let endpoint = format!("127.0.0.1:{CLIENT_PORT}");
    let mut routers = Vec::new();
    for i in 0..ROUTERS {
        let name = format!("fleet{i}");
        let copy = dir.join(format!("{name}-copy.json"));
        routers.push(start_daemon(
            options,
            &name,
            &list,
            &[
                "--no-metrics",
                "--etcd",
                &endpoint,
                "--router-name",
                &name,
                "--fleet-copy",
                copy.to_str().unwrap(),
            ],
        )?);
    }
    let n = if options.quick { 10 } else { 50 };
    let (mut times, mut publishes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for k in 1..=n {
        std::fs::write(&list, version(k))?;
        let started = Instant::now();
        let sha = publish(options, &list)?;
        publishes.push(started.elapsed().as_secs_f64() * 1e3);
        for (_, socket, _) in &routers {
            while enforced(socket).as_deref() != Some(sha.as_str()) {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "a router never enforced version {k}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    for (daemon, _, pins) in routers {
        drop(daemon);
        detach(options, &pins);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    publishes.sort_by(|a, b| a.total_cmp(b));
    let out = FleetBench {
        routers: ROUTERS,
        publishes: n,
        median_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: *times.last().unwrap_or(&0.0),
        publish_median_ms: percentile(&publishes, 0.5),
    };
    eprintln!(
        "  publish until the last of {ROUTERS} routers enforces: median {:.0} ms, p99 {:.0} ms ({n} publishes; publish alone median {:.0} ms)",
        out.median_ms, out.p99_ms, out.publish_median_ms
    );
    Ok(out)
}
