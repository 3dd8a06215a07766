//! A real authoritative DNS server (Debian's `knot`: knotd, knotc) in a namespace of its
//! own, linked to a topology's router, so that a daemon in the router namespace resolves
//! names through it. `kdig` (Debian's `knot-dnsutils`) asks it questions from the router.
//!
//! ```text
//!  router  rd ---- d0  dns   knotd on 192.0.2.194@53 and [2001:db8:d5::2]@53
//!  192.0.2.193/26      .194/26
//!  2001:db8:d5::1/64   ::2/64
//! ```
//! The server serves one zone, from a file in the test's directory, with the records the
//! test gives; its configuration, run directory, databases and control socket are there
//! too, never the system's (a system knotd, if the package started one, is left alone:
//! it lives in another network namespace and uses other paths).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::Duration,
};

use crate::{
    netns::{start_in, veth, Netns},
    poll,
    topology::Topology,
};

/// The server's addresses, and the router's ends of the link.
pub const DNS_V4: &str = "192.0.2.194";
pub const DNS_V6: &str = "2001:db8:d5::2";
pub const ROUTER_DNS_V4: &str = "192.0.2.193";
pub const ROUTER_DNS_V6: &str = "2001:db8:d5::1";

/// How long knotd may take to answer after it is started or told to reload.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One resource record of the zone. `name` is relative to the zone (`www`, `@` or empty
/// for the apex) or absolute (ending in a dot); `value` is written as it is, in zone-file
/// syntax (a relative CNAME target is relative to the zone too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: String,
    pub value: String,
    pub ttl: u32,
}

impl Record {
    pub fn new(name: &str, rtype: &str, value: &str, ttl: u32) -> Self {
        Self {
            name: name.to_string(),
            rtype: rtype.to_string(),
            value: value.to_string(),
            ttl,
        }
    }

    pub fn a(name: &str, addr: &str, ttl: u32) -> Self {
        Self::new(name, "A", addr, ttl)
    }

    pub fn aaaa(name: &str, addr: &str, ttl: u32) -> Self {
        Self::new(name, "AAAA", addr, ttl)
    }

    pub fn cname(name: &str, target: &str, ttl: u32) -> Self {
        Self::new(name, "CNAME", target, ttl)
    }
}

/// What `set_records` changes and `restart` serves again.
struct Zone {
    serial: u32,
    records: Vec<Record>,
}

/// knotd in the namespace `bf<tag>d`, serving one zone. Killed, with its namespace (and so
/// the link to the router) removed, on drop. One per topology.
pub struct DnsServer {
    pub ns: Netns,
    /// The zone's name, absolute (ending in a dot).
    pub zone: String,
    /// `<test dir>/dns`: configuration, zone file, log, run directory, databases.
    pub dir: PathBuf,
    conf: PathBuf,
    /// The router namespace's name, where `kdig` runs and `rd` is.
    router: String,
    state: Mutex<Zone>,
    knotd: Mutex<Option<Child>>,
    /// Whether replies to the router are dropped (after `stop`).
    blackholed: bool,
}

impl DnsServer {
    /// Links a new namespace to `t`'s router, writes the configuration and the zone
    /// (`zone` with `records`, serial 1), starts knotd there and waits until it answers
    /// the zone's SOA query from the router.
    #[track_caller]
    pub fn start(t: &Topology, zone: &str, records: &[Record]) -> Self {
        let ns = Netns::new(&format!("bf{}d", t.tag));
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
        veth(&t.router, "rd", &ns, "d0");
        t.router
            .ip(&["addr", "add", &format!("{ROUTER_DNS_V4}/26"), "dev", "rd"]);
        t.router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_DNS_V6}/64"),
            "dev",
            "rd",
            "nodad",
        ]);
        ns.ip(&["addr", "add", &format!("{DNS_V4}/26"), "dev", "d0"]);
        ns.ip(&["addr", "add", &format!("{DNS_V6}/64"), "dev", "d0", "nodad"]);
        ns.ip(&["route", "add", "default", "via", ROUTER_DNS_V4]);
        ns.ip(&["-6", "route", "add", "default", "via", ROUTER_DNS_V6]);

        let dir = t.dir.join("dns");
        let _ = fs::remove_dir_all(&dir);
        for sub in ["run", "storage"] {
            fs::create_dir_all(dir.join(sub)).expect("creating the DNS server's directory");
        }
        let zone = if zone.ends_with('.') {
            zone.to_string()
        } else {
            format!("{zone}.")
        };
        let conf = dir.join("knot.conf");
        fs::write(&conf, config(&dir, &zone)).expect("writing knot.conf");
        let server = Self {
            ns,
            zone,
            dir,
            conf,
            router: t.router.name.clone(),
            state: Mutex::new(Zone {
                serial: 1,
                records: records.to_vec(),
            }),
            knotd: Mutex::new(None),
            blackholed: false,
        };
        server.write_zone(&server.state.lock().expect("the zone's lock"));
        server.spawn();
        server.wait_serial(1);
        server
    }

    /// `192.0.2.194:53`, for a resolver option.
    pub fn resolver_arg(&self) -> String {
        format!("{DNS_V4}:53")
    }

    /// The serial the zone file has now (what a running server answers once it has it).
    pub fn serial(&self) -> u32 {
        self.state.lock().expect("the zone's lock").serial
    }

    /// Replaces the zone's records (the serial goes up by one) and, when knotd runs,
    /// reloads it and waits until it answers with the new serial; when it is stopped,
    /// `restart` serves them.
    #[track_caller]
    pub fn set_records(&self, records: &[Record]) {
        let serial = {
            let mut state = self.state.lock().expect("the zone's lock");
            state.serial += 1;
            state.records = records.to_vec();
            self.write_zone(&state);
            state.serial
        };
        if !self.running() {
            return;
        }
        // -b: returns once the reload is done (the poll below confirms it is served).
        let out = self.knotc(&["-b", "zone-reload", &self.zone]);
        assert!(
            out.status.success(),
            "knotc zone-reload failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        self.wait_serial(serial);
    }

    /// Kills knotd (SIGKILL) and drops whatever the namespace would send back to the
    /// router: queries over UDP and TCP time out (no ICMP port unreachable, no RST), as
    /// with a server that is down or cut off. The address stays.
    pub fn stop(&mut self) {
        self.kill();
        if !self.blackholed {
            self.ns
                .ip(&["route", "add", "blackhole", &format!("{ROUTER_DNS_V4}/32")]);
            self.ns.ip(&[
                "-6",
                "route",
                "add",
                "blackhole",
                &format!("{ROUTER_DNS_V6}/128"),
            ]);
            self.blackholed = true;
        }
    }

    /// Kills knotd (SIGKILL) only: nothing listens on port 53, so a TCP connection is
    /// refused at once (RST) and a UDP query gets an ICMP port unreachable (which a
    /// client on an unconnected socket never sees: it times out).
    pub fn stop_refusing(&mut self) {
        self.kill();
        self.unblackhole();
    }

    /// Starts knotd again with the current zone (after `stop` or `stop_refusing`) and
    /// waits until it answers.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(!self.running(), "knotd runs already");
        // Reaps a knotd that exited on its own.
        self.kill();
        self.unblackhole();
        self.spawn();
        self.wait_serial(self.serial());
    }

    /// Whether knotd runs (it was started, not stopped, and has not exited).
    pub fn running(&self) -> bool {
        match &mut *self.knotd.lock().expect("knotd's lock") {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// `kdig +short NAME RTYPE` from the router namespace (UDP, then TCP if truncated; one
    /// try of one second): the answer's lines, or kdig's warnings when there is none.
    /// For failure messages and quick checks.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = self.kdig(&["+short", name, rtype]);
        let lines = |b: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(b)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        };
        let answer = lines(&out.stdout);
        if out.status.success() && !answer.is_empty() {
            answer
        } else {
            answer.into_iter().chain(lines(&out.stderr)).collect()
        }
    }

    /// `kdig @192.0.2.194 +timeout=1 +retry=0 ARGS...` from the router namespace; later
    /// options win (`+tcp`, `+ignore` to see a truncated UDP answer, `+timeout=N`).
    pub fn kdig(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("kdig");
        cmd.arg(format!("@{DNS_V4}"))
            .args(["+timeout=1", "+retry=0"])
            .args(args)
            .stdin(Stdio::null());
        start_in(&mut cmd, format!("/run/netns/{}", self.router));
        cmd.output()
            .expect("running kdig (Debian package knot-dnsutils; `cargo xtask setup`)")
    }

    /// `knotc -c CONF ARGS...` (over the control socket in `dir`).
    pub fn knotc(&self, args: &[&str]) -> Output {
        Command::new("knotc")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running knotc (Debian package knot; `cargo xtask setup`)")
    }

    /// The last lines of knotd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("knotd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    fn zone_file(&self) -> PathBuf {
        zone_file(&self.dir, &self.zone)
    }

    /// Writes the zone file atomically (temporary file, rename): knotd never reads half.
    fn write_zone(&self, state: &Zone) {
        let mut text = format!(
            "$ORIGIN {zone}\n\
             ; serial, refresh, retry, expire, and 1 s of negative caching\n\
             @ 1 IN SOA ns.dns.invalid. hostmaster.dns.invalid. {} 3600 600 86400 1\n\
             ; out of the zone, so that every name in it is the test's\n\
             @ 60 IN NS ns.dns.invalid.\n",
            state.serial,
            zone = self.zone
        );
        for r in &state.records {
            let name = if r.name.is_empty() { "@" } else { &r.name };
            text.push_str(&format!(
                "{name} {} IN {} {}\n",
                r.ttl,
                r.rtype.to_uppercase(),
                r.value
            ));
        }
        let path = self.zone_file();
        let temp = path.with_extension("tmp");
        fs::write(&temp, text).expect("writing the zone file");
        fs::rename(&temp, &path).expect("renaming the zone file");
    }

    #[track_caller]
    fn spawn(&self) {
        // A PID file left by a killed knotd makes the next one refuse to start if its PID
        // is in use again.
        let _ = fs::remove_file(self.dir.join("run/knot.pid"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("knotd.log"))
            .expect("opening knotd's log");
        let mut cmd = Command::new("knotd");
        cmd.arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("knotd's log"))
            .stderr(log);
        start_in(&mut cmd, self.ns.path());
        *self.knotd.lock().expect("knotd's lock") = Some(
            cmd.spawn()
                .expect("starting knotd (Debian package knot; `cargo xtask setup`)"),
        );
    }

    /// Waits until the server answers the SOA query with `serial`, over TCP (a connection
    /// to a port not yet bound is refused at once, where a UDP query would wait out its
    /// timeout). Panics with the log if knotd exits.
    #[track_caller]
    fn wait_serial(&self, serial: u32) {
        poll::until(
            &format!("knotd to serve {} with serial {serial}", self.zone),
            TIMEOUT,
            || {
                if !self.running() {
                    panic!("knotd is not running:\n{}", self.log_tail());
                }
                let out = self.kdig(&["+tcp", "+short", &self.zone, "SOA"]);
                let got = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .nth(2)
                    .and_then(|s| s.parse::<u32>().ok());
                (
                    got == Some(serial),
                    format!(
                        "serial {got:?}, kdig: {}\n{}",
                        String::from_utf8_lossy(&out.stderr).trim(),
                        self.log_tail()
                    ),
                )
            },
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.knotd.lock().expect("knotd's lock").take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn unblackhole(&mut self) {
        if self.blackholed {
            self.ns
                .ip(&["route", "del", "blackhole", &format!("{ROUTER_DNS_V4}/32")]);
            self.ns.ip(&[
                "-6",
                "route",
                "del",
                "blackhole",
                &format!("{ROUTER_DNS_V6}/128"),
            ]);
            self.blackholed = false;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Before the namespace goes (Netns's drop): a process inside would keep it alive.
        self.kill();
        // The namespace's devices go when the kernel gets round to it; deleting the link
        // here takes both ends with it at once. (Fails harmlessly if the topology is gone.)
        let _ = Command::new("ip")
            .args(["-n", &self.router, "link", "del", "rd"])
            .output();
    }
}

fn zone_file(dir: &Path, zone: &str) -> PathBuf {
    dir.join(format!("{zone}zone"))
}

/// knotd's configuration: everything under `dir`, one zone loaded whole from its file on
/// every reload, no journal, no DNSSEC, the file never written back, no extra semantic
/// checks (knot's default; a CNAME loop loads with them too), one worker of each kind.
fn config(dir: &Path, zone: &str) -> String {
    let d = dir.display();
    format!(
        "server:\n\
         \x20   rundir: \"{d}/run\"\n\
         \x20   listen: [ {DNS_V4}@53, {DNS_V6}@53 ]\n\
         \x20   udp-workers: 1\n\
         \x20   tcp-workers: 1\n\
         \x20   background-workers: 1\n\
         log:\n\
         \x20 - target: stderr\n\
         \x20   any: info\n\
         database:\n\
         \x20   storage: \"{d}/storage\"\n\
         control:\n\
         \x20   listen: \"{d}/run/knot.sock\"\n\
         template:\n\
         \x20 - id: default\n\
         \x20   storage: \"{d}\"\n\
         \x20   zonefile-load: whole\n\
         \x20   zonefile-sync: -1\n\
         \x20   journal-content: none\n\
         \x20   semantic-checks: off\n\
         zone:\n\
         \x20 - domain: \"{zone}\"\n\
         \x20   file: \"{}\"\n",
        zone_file(dir, zone).display()
    )
}
