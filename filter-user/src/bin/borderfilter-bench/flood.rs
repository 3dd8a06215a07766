//! The veth flood rig that `throughput.rs` and `floodlists.rs` measure with: a
//! live-frames generator (BPF_F_TEST_XDP_LIVE_FRAMES) in one namespace gives every frame
//! a destination from its samples and redirects it into a veth; on the other end, in
//! another namespace, runs one contender at a time:
//!
//! - the ceiling: an XDP program that drops everything (what this harness can push,
//!   since generator and receiver share the CPUs);
//! - borderfilter: a loaded filter's program;
//! - nftables: a `netdev` ingress chain dropping the list's prefixes from an interval set
//!   (no XDP program; GRO on, so that redirected frames are taken in);
//! - xdp-filter (xdp-tools): one hash lookup per packet, IPv4 and IPv6 hosts only.
//!
//! The receiver's own count of frames over the run is the rate.

use std::{
    collections::BTreeMap,
    io::Write,
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::PathBuf,
    time::Instant,
};

use aya::{
    maps::{Array, DevMap, Map, MapData, PerCpuHashMap, PerCpuValues},
    programs::{TestRun, TestRunAttrs, TestRunOptions},
};
use filter_common::{
    bench::{self, BenchConfig},
    Entry,
};
use filter_user::{
    dataplane::{netlink, Dataplane},
    error_chain,
    prefix::Prefix,
};

use crate::{classify, netns::Netns, shaped::Oracle, Options};

/// Who takes the frames in.
#[derive(Clone, Copy)]
pub enum Contender<'a> {
    Ceiling,
    Borderfilter(&'a Dataplane),
    /// The table must have been loaded with [`Rig::load_nft`].
    Nftables,
    /// xdp-filter must have been loaded with [`Rig::load_xdp_filter`].
    XdpFilter,
}

impl Contender<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Contender::Ceiling => "ceiling (drop all)",
            Contender::Borderfilter(_) => "borderfilter",
            Contender::Nftables => "nftables",
            Contender::XdpFilter => "xdp-filter",
        }
    }
}

/// One measurement: frames per second the receiver took in, and how many.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub rate: f64,
    pub received: u64,
    pub sent: u64,
    /// Of those received, how many an XDP program dropped.
    pub xdp_dropped: u64,
}

pub struct Rig {
    gen: Netns,
    rx: Netns,
    generator: Dataplane,
    r0_mac: [u8; 6],
    nft_rules: PathBuf,
    /// Seconds each measurement lasts (the frame count is sized from a short probe).
    pub seconds: f64,
}

/// The receiver's count of frames its NAPI loop took in (with or without an XDP
/// program), and of those an XDP program dropped.
fn received(rx: &Netns) -> anyhow::Result<(u64, u64)> {
    let stats = rx.exec("ethtool", &["-S", "r0"])?;
    let sum = |what: &str| -> u64 {
        stats
            .lines()
            .filter(|l| l.contains("rx_queue_") && l.contains(what))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum()
    };
    Ok((sum("_xdp_packets:"), sum("_xdp_drops:")))
}

const XDP_FILTER: &str = "xdp-filter";
/// Where xdp-filter pins its maps (bpffs of the host's mount namespace).
const XDP_FILTER_PINS: &str = "/sys/fs/bpf/xdp-filter";
/// xdp-filter's map value for a destination address (MAP_FLAG_DST).
const XDP_FILTER_DST: u64 = 2;
/// xdp-filter's maps hold this many addresses per family.
pub const XDP_FILTER_CAPACITY: usize = 10_000;

impl Rig {
    pub fn new(options: &Options) -> anyhow::Result<Self> {
        let gen = Netns::new("bfbench-gen")?;
        let rx = Netns::new("bfbench-rx")?;
        gen.exec(
            "ip",
            &[
                "link", "add", "g0", "type", "veth", "peer", "name", "r0", "netns", &rx.0,
            ],
        )?;
        gen.exec("ip", &["link", "set", "g0", "up"])?;
        rx.exec("ip", &["link", "set", "r0", "up"])?;
        let r0_mac = netlink_mac(&rx).ok_or_else(|| anyhow::anyhow!("r0 has no MAC address"))?;
        let mut generator = classify::loaded(&BTreeMap::new())?;
        let g0 = gen
            .run(|| filter_user::dataplane::ifindex("g0"))
            .ok_or_else(|| anyhow::anyhow!("no g0"))?;
        {
            let port = generator
                .extra_map(bench::PORT)
                .ok_or_else(|| anyhow::anyhow!("no port map"))?;
            let mut port = DevMap::try_from(port)?;
            let fd = port_fd(&mut port);
            gen.run(move || set_port(fd, g0))?;
        }
        Ok(Self {
            gen,
            rx,
            generator,
            r0_mac,
            nft_rules: options.work_dir.join("nft.rules"),
            seconds: if options.quick { 0.5 } else { 1.0 },
        })
    }

    /// Where the generator sends: `per_mille` of 1000 frames to `blocked`, the rest to
    /// `pass` (each cycled to fill the generator's samples), of `family`.
    pub fn destinations(
        &mut self,
        family: u8,
        blocked: &[IpAddr],
        pass: &[IpAddr],
        per_mille: u32,
    ) -> anyhow::Result<()> {
        let (b, p) = if family == 6 {
            (bench::SAMPLES_V6, bench::PASS_V6)
        } else {
            (bench::SAMPLES_V4, bench::PASS_V4)
        };
        for (name, addrs) in [(b, blocked), (p, pass)] {
            if addrs.is_empty() {
                continue;
            }
            let map = self
                .generator
                .extra_map(name)
                .ok_or_else(|| anyhow::anyhow!("no map {name}"))?;
            for i in 0..bench::SAMPLES {
                match addrs[i as usize % addrs.len()] {
                    IpAddr::V4(a) => {
                        Array::<_, [u8; 4]>::try_from(&mut *map)?.set(i, a.octets(), 0)?
                    }
                    IpAddr::V6(a) => {
                        Array::<_, [u8; 16]>::try_from(&mut *map)?.set(i, a.octets(), 0)?
                    }
                }
            }
        }
        classify::configure(
            &mut self.generator,
            BenchConfig {
                mode: 0,
                stream: bench::stream::BLOCKED,
                family: u32::from(family),
                blocked_per_mille: per_mille,
            },
        )
    }

    fn attach(&self, fd: Option<BorrowedFd<'_>>) -> anyhow::Result<()> {
        let raw = fd.map(|f| f.as_raw_fd());
        self.rx.run(move || {
            let index = filter_user::dataplane::ifindex("r0").expect("r0 exists");
            // SAFETY: the fd stays open in this process for the duration of the call.
            let fd = raw.map(|r| unsafe { BorrowedFd::borrow_raw(r) });
            netlink::set_xdp(index, fd, netlink::XDP_FLAGS_DRV_MODE, None)
        })?;
        Ok(())
    }

    /// Puts `contender` on r0 (and, for nftables, takes any XDP program off).
    fn put(&self, contender: Contender<'_>) -> anyhow::Result<()> {
        let dp = match contender {
            Contender::Ceiling => &self.generator,
            Contender::Borderfilter(dp) => dp,
            Contender::Nftables => {
                self.attach(None)?;
                self.rx.exec("ethtool", &["-K", "r0", "gro", "on"])?;
                return Ok(());
            }
            Contender::XdpFilter => return Ok(()),
        };
        let name = match contender {
            Contender::Ceiling => "bench_drop",
            _ => filter_user::dataplane::PROGRAM_NAME,
        };
        let program = dp
            .program_named(name)
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        self.attach(Some(program.fd()?.as_fd()))
    }

    /// Takes `contender` off r0.
    fn take_off(&self, contender: Contender<'_>) -> anyhow::Result<()> {
        match contender {
            Contender::Nftables => {
                self.rx.exec("ethtool", &["-K", "r0", "gro", "off"])?;
            }
            Contender::XdpFilter => {}
            _ => self.attach(None)?,
        }
        Ok(())
    }

    /// Sends `frames` copies of `template` (each with a new destination).
    fn flood(&self, template: &[u8], frames: u32) -> anyhow::Result<Measured> {
        let program = self
            .generator
            .program_named("bench_generate")
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        let before = received(&self.rx)?;
        let started = Instant::now();
        program.test_run(TestRunOptions {
            data_in: Some(template),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::new()
        })?;
        let elapsed = started.elapsed().as_secs_f64();
        let after = received(&self.rx)?;
        let got = after.0 - before.0;
        Ok(Measured {
            rate: got as f64 / elapsed,
            received: got,
            sent: u64::from(frames),
            xdp_dropped: after.1 - before.1,
        })
    }

    /// One measurement of `contender`: a short probe sizes the run to about
    /// `self.seconds`, then the run. The contender is taken off afterwards.
    pub fn measure(&self, contender: Contender<'_>, template: &[u8]) -> anyhow::Result<Measured> {
        self.put(contender)?;
        let result = (|| {
            let probe = self.flood(template, 200_000)?;
            let frames = (probe.rate * self.seconds).clamp(200_000.0, 50_000_000.0) as u32;
            self.flood(template, frames)
        })();
        self.take_off(contender)?;
        result
    }

    /// Nanoseconds per frame that `contender`'s own XDP program ran (ceiling or
    /// borderfilter), from the kernel's BPF run-time statistics over one more
    /// measurement. The statistics are on only for that measurement: they add two clock
    /// reads to every run of every BPF program, which the ceiling's figure (a program
    /// that only returns) shows.
    pub fn program_ns(&self, contender: Contender<'_>, template: &[u8]) -> anyhow::Result<f64> {
        let (dp, name) = match contender {
            Contender::Ceiling => (&self.generator, "bench_drop"),
            Contender::Borderfilter(dp) => (dp, filter_user::dataplane::PROGRAM_NAME),
            _ => anyhow::bail!("no program of ours to read"),
        };
        let program = dp
            .program_named(name)
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        let fd = program.fd()?.as_fd().as_raw_fd();
        let _stats = enable_run_time_stats()?;
        let before = run_time(fd)?;
        self.measure(contender, template)?;
        let after = run_time(fd)?;
        let runs = after.1.saturating_sub(before.1);
        anyhow::ensure!(runs > 0, "{name} did not run");
        Ok((after.0 - before.0) as f64 / runs as f64)
    }

    /// A 64-byte UDP frame from `src` to r0's MAC, of `src`'s family; the generator
    /// writes the destination.
    pub fn template(&self, src: IpAddr) -> Vec<u8> {
        let frame = match src {
            IpAddr::V4(s) => filter_user::frame::Frame::v4(s, "192.0.2.2".parse().expect("valid"))
                .with_data_len(18),
            IpAddr::V6(s) => {
                filter_user::frame::Frame::v6(s, "2001:db8:8000::2".parse().expect("valid"))
            }
        };
        let mut f = frame.bytes();
        f[0..6].copy_from_slice(&self.r0_mac);
        f
    }

    /// Loads an nftables table dropping `prefixes` (interval sets, one per family) in the
    /// netdev ingress hook of r0; returns the seconds `nft -f` took.
    pub fn load_nft(&self, prefixes: &[Prefix]) -> anyhow::Result<f64> {
        std::fs::File::create(&self.nft_rules)?.write_all(nft_ruleset(prefixes).as_bytes())?;
        let started = Instant::now();
        self.rx
            .exec("nft", &["-f", self.nft_rules.to_str().unwrap_or_default()])?;
        Ok(started.elapsed().as_secs_f64())
    }

    pub fn unload_nft(&self) -> anyhow::Result<()> {
        self.rx
            .exec("nft", &["delete", "table", "netdev", "bfbench"])
            .map(|_| ())
    }

    fn xdp_filter(&self, args: &[&str]) -> anyhow::Result<String> {
        let net = format!("--net=/run/netns/{}", self.rx.0);
        let mut all = vec![net.as_str(), XDP_FILTER];
        all.extend_from_slice(args);
        crate::netns::sh("nsenter", &all)
    }

    /// Loads xdp-filter on r0 (native mode, its default features: IPv4 and IPv6
    /// addresses) dropping frames to `hosts`: the first added with its CLI, the rest
    /// written to its pinned maps with the same value (its CLI takes one address per
    /// call).
    pub fn load_xdp_filter(&self, hosts: &[IpAddr]) -> anyhow::Result<()> {
        anyhow::ensure!(
            hosts.len() <= XDP_FILTER_CAPACITY,
            "xdp-filter's maps hold {XDP_FILTER_CAPACITY} addresses per family"
        );
        // nsenter keeps the host's mount namespace, so the pins land in its bpffs.
        crate::sync::mount_bpffs()?;
        self.xdp_filter(&["load", "r0", "--mode", "native"])?;
        let Some(first) = hosts.first() else {
            return Ok(());
        };
        self.xdp_filter(&["ip", &first.to_string(), "--mode", "dst"])?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let values = || PerCpuValues::try_from(vec![XDP_FILTER_DST; cpus]);
        let v4: Vec<_> = hosts.iter().filter(|a| a.is_ipv4()).collect();
        let v6: Vec<_> = hosts.iter().filter(|a| a.is_ipv6()).collect();
        if !v4.is_empty() {
            let data = MapData::from_pin(format!("{XDP_FILTER_PINS}/filter_ipv4"))?;
            let mut map = PerCpuHashMap::<_, u32, u64>::try_from(Map::PerCpuHashMap(data))?;
            for a in v4 {
                if let IpAddr::V4(a) = a {
                    map.insert(u32::from_ne_bytes(a.octets()), values()?, 0)?;
                }
            }
        }
        if !v6.is_empty() {
            let data = MapData::from_pin(format!("{XDP_FILTER_PINS}/filter_ipv6"))?;
            let mut map = PerCpuHashMap::<_, [u8; 16], u64>::try_from(Map::PerCpuHashMap(data))?;
            for a in v6 {
                if let IpAddr::V6(a) = a {
                    map.insert(a.octets(), values()?, 0)?;
                }
            }
        }
        Ok(())
    }

    pub fn unload_xdp_filter(&self) -> anyhow::Result<()> {
        self.xdp_filter(&["unload", "r0"]).map(|_| ())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.attach(None);
        let _ = self.gen.exec("ip", &["link", "del", "g0"]);
    }
}

/// An nftables table dropping `prefixes` by destination from interval sets.
pub fn nft_ruleset(prefixes: &[Prefix]) -> String {
    let set = |v6: bool| -> Vec<String> {
        prefixes
            .iter()
            .filter(|p| p.addr().is_ipv6() == v6)
            .map(|p| p.to_string())
            .collect()
    };
    let mut out = String::from("table netdev bfbench {\n");
    let mut rules = String::new();
    for (v6, name, ty, proto) in [
        (false, "blocked4", "ipv4_addr", "ip"),
        (true, "blocked6", "ipv6_addr", "ip6"),
    ] {
        let elements = set(v6);
        if elements.is_empty() {
            continue;
        }
        out += &format!(
            "  set {name} {{ type {ty}; flags interval; auto-merge; elements = {{ {} }}; }}\n",
            elements.join(", ")
        );
        rules += &format!(" {proto} daddr @{name} drop;");
    }
    out += &format!(
        "  chain ingress {{ type filter hook ingress device \"r0\" priority 0; policy accept;{rules} }}\n}}\n"
    );
    out
}

/// A source address for the frames that the list blocks in neither direction.
pub fn unblocked_source(entries: &BTreeMap<Prefix, Entry>, family: u8) -> anyhow::Result<IpAddr> {
    let oracle = Oracle::new(entries);
    let candidates: &[&str] = if family == 6 {
        &["2001:db8:8000::1", "2001:db8:ffff::1", "3fff::1"]
    } else {
        &["192.0.2.1", "203.0.113.1", "198.51.100.1", "100.64.0.1"]
    };
    candidates
        .iter()
        .filter_map(|c| c.parse::<IpAddr>().ok())
        .find(|a| !oracle.blocked(*a) && !oracle.blocks_source(*a))
        .ok_or_else(|| anyhow::anyhow!("every candidate source address is listed"))
}

/// Turns the kernel's BPF run-time statistics on until the returned fd is closed
/// (BPF_ENABLE_STATS, BPF_STATS_RUN_TIME).
fn enable_run_time_stats() -> anyhow::Result<std::os::fd::OwnedFd> {
    let attr = [0u32; 2];
    // SAFETY: BPF_ENABLE_STATS (32) reads a u32 type (BPF_STATS_RUN_TIME, 0) from attr.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 32, attr.as_ptr(), 8u32) };
    if fd < 0 {
        anyhow::bail!(
            "enabling BPF run-time statistics: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// A program's `run_time_ns` and `run_cnt` (its fdinfo).
fn run_time(fd: i32) -> anyhow::Result<(u64, u64)> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((field("run_time_ns:"), field("run_cnt:")))
}

fn port_fd(port: &mut DevMap<&mut aya::maps::MapData>) -> i32 {
    use aya::maps::IterableMap;
    port.map().fd().as_fd().as_raw_fd()
}

/// Writes `ifindex` into the devmap behind `fd` from the current thread's namespace.
fn set_port(fd: i32, ifindex: u32) -> anyhow::Result<()> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let key = 0u32;
    let value = [ifindex, 0u32];
    let mut attr = Attr {
        map_fd: fd as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: value.as_ptr() as u64,
        flags: 0,
    };
    // SAFETY: BPF_MAP_UPDATE_ELEM (2) with valid pointers for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            2,
            &mut attr as *mut Attr,
            size_of::<Attr>() as u32,
        )
    };
    if rc < 0 {
        anyhow::bail!(
            "setting the generator's port: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn netlink_mac(rx: &Netns) -> Option<[u8; 6]> {
    rx.run(|| {
        let index = filter_user::dataplane::ifindex("r0")?;
        netlink::links()
            .ok()?
            .into_iter()
            .find(|l| l.index == index)?
            .mac
    })
}
