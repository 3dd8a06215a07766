//! A fleet: several router topologies and a management namespace holding a real etcd
//! (Debian's `etcd-server`), reachable from each router over a link of its own; the
//! publisher and `fleet status` run in the management namespace.
//!
//! ```text
//!  mgmt (etcd on :2379)  m0 ---- re  router 0   (198.18.0.1/30 - .2)
//!                        m1 ---- re  router 1   (198.18.1.1/30 - .2)   ...
//! ```
//! The routers filter only `rc` and `rs`: the management link is not filtered.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use crate::{
    daemon::{bin, Daemon},
    netns::{start_in, veth, Netns},
    poll,
    topology::Topology,
};

pub const ETCD_PORT: u16 = 2379;

pub struct FleetNet {
    pub tag: String,
    pub dir: PathBuf,
    pub mgmt: Netns,
    pub routers: Vec<Topology>,
    etcd: Option<Child>,
}

impl FleetNet {
    /// `n` routers and the management namespace, etcd started there.
    #[track_caller]
    pub fn new(test: &str, n: usize) -> Self {
        let tag = crate::unique_tag(test);
        let dir = PathBuf::from(format!("/tmp/borderfilter-tests/{tag}-fleet"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the fleet's directory");
        let mgmt = Netns::new(&format!("bf{tag}m"));
        let routers: Vec<Topology> = (0..n)
            .map(|i| Topology::new(&format!("{test}-{i}")))
            .collect();
        for (i, t) in routers.iter().enumerate() {
            let m = format!("m{i}");
            veth(&mgmt, &m, &t.router, "re");
            mgmt.ip(&["addr", "add", &format!("198.18.{i}.1/30"), "dev", &m]);
            t.router
                .ip(&["addr", "add", &format!("198.18.{i}.2/30"), "dev", "re"]);
        }
        let mut fleet = Self {
            tag,
            dir,
            mgmt,
            routers,
            etcd: None,
        };
        fleet.start_etcd();
        fleet
    }

    /// Starts etcd (again, on the same data) and waits until it answers.
    #[track_caller]
    pub fn start_etcd(&mut self) {
        assert!(self.etcd.is_none(), "etcd runs already");
        let data = self.dir.join("etcd");
        let log = std::fs::File::create(self.dir.join("etcd.log")).expect("etcd's log");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "m", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &format!("http://0.0.0.0:{ETCD_PORT}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{ETCD_PORT}"),
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "m=http://127.0.0.1:2380",
            ])
            .stdout(Stdio::null())
            .stderr(log);
        start_in(&mut cmd, self.mgmt.path());
        self.etcd = Some(cmd.spawn().expect("starting etcd (package etcd-server)"));
        poll::until("etcd to answer", Duration::from_secs(30), || {
            let out = self.etcdctl(&["endpoint", "health"]);
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        });
    }

    /// Kills etcd (SIGKILL); its data stays.
    pub fn stop_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcdctl ARGS` against the fleet's etcd, from the management namespace.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=127.0.0.1:{ETCD_PORT}"))
            .arg("--dial-timeout=1s")
            .arg("--command-timeout=2s")
            .args(args);
        start_in(&mut cmd, self.mgmt.path());
        cmd.output().expect("running etcdctl")
    }

    /// `borderfilter ARGS --etcd ...` from the management namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .arg("--etcd")
            .arg(format!("127.0.0.1:{ETCD_PORT}"));
        start_in(&mut cmd, self.mgmt.path());
        cmd.output().expect("running borderfilter")
    }

    /// Publishes `list` (based on whatever is current) and returns the new version.
    #[track_caller]
    pub fn publish(&self, list: &str) -> u64 {
        let path = self.dir.join("publish.json");
        std::fs::write(&path, list).expect("writing the list to publish");
        let out = self.cli(&[
            "--json",
            "publish",
            path.to_str().unwrap(),
            "--base-any",
            "--force",
        ]);
        assert!(
            out.status.success(),
            "publish failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("publish --json prints JSON");
        v["version"].as_u64().expect("the new version")
    }

    /// `fleet status --json`, parsed.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["--json", "fleet", "status"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "fleet status printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Starts router `i`'s daemon following the fleet, named `r<i>`.
    #[track_caller]
    pub fn start_router(&self, i: usize, extra: &[&str]) -> Daemon {
        let t = &self.routers[i];
        let endpoint = format!("198.18.{i}.1:{ETCD_PORT}");
        let name = format!("r{i}");
        let copy = t.dir.join("fleet-list.json");
        let mut args = vec![
            "--etcd",
            &endpoint,
            "--router-name",
            &name,
            "--fleet-copy",
            copy.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Daemon::start(t, &args)
    }
}

impl Drop for FleetNet {
    fn drop(&mut self) {
        self.stop_etcd();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
