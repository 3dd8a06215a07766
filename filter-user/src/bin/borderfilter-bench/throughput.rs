//! Frames per second through a veth pair: a live-frames generator
//! (BPF_F_TEST_XDP_LIVE_FRAMES) gives every frame a new destination and redirects it
//! into a veth; on the other end runs, in turn, a drop-all XDP program (the ceiling:
//! what this harness can push, since generator and receiver share the CPUs), borderfilter
//! with 100,000 prefixes, and nftables dropping the same prefixes from an interval set in
//! the netdev ingress hook. The receiver's own count over the run is the rate.

use std::{
    collections::BTreeMap,
    io::Write,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    time::Instant,
};

use aya::{
    maps::DevMap,
    programs::{TestRun, TestRunAttrs, TestRunOptions},
};
use filter_common::{
    bench::{self, stream, BenchConfig},
    parse::ETH_P_IP,
};
use filter_user::{
    dataplane::{netlink, Dataplane, LoadOptions},
    error_chain,
    prefix::Prefix,
};
use serde::Serialize;

use crate::{classify, lists, netns::Netns, Options};

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// "all blocked" or "1% blocked".
    pub mix: &'static str,
    /// "ceiling (drop all)", "borderfilter", "nftables".
    pub contender: &'static str,
    pub mpps: f64,
    /// 1/rate - 1/ceiling rate, in nanoseconds: what the contender adds per frame.
    pub extra_ns: f64,
    pub frames_sent: u64,
    pub frames_received: u64,
}

/// The receiver's count of frames its NAPI loop took in (with or without an XDP program).
fn received(rx: &Netns) -> anyhow::Result<u64> {
    let stats = rx.exec("ethtool", &["-S", "r0"])?;
    Ok(stats
        .lines()
        .filter(|l| l.contains("rx_queue_") && l.contains("_xdp_packets"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
        .sum())
}

fn attach(rx: &Netns, fd: Option<BorrowedFd<'_>>) -> anyhow::Result<()> {
    let raw = fd.map(|f| f.as_raw_fd());
    rx.run(move || {
        let index = filter_user::dataplane::ifindex("r0").expect("r0 exists");
        // SAFETY: the fd stays open in this process for the duration of the call.
        let fd = raw.map(|r| unsafe { BorrowedFd::borrow_raw(r) });
        netlink::set_xdp(index, fd, netlink::XDP_FLAGS_DRV_MODE, None)
    })?;
    Ok(())
}

/// The 100,000 prefixes: every address of 198.18.0.0/16 (which the blocked frames
/// target) and the rest in 240.0.0.0/5 (never sent to).
fn prefixes() -> Vec<Prefix> {
    let mut rng = lists::rng(100);
    let mut all: Vec<Prefix> = (0..65_536u32)
        .map(|i| Prefix::host(IpAddr::V4(Ipv4Addr::from(0xc612_0000 | i))))
        .collect();
    all.extend(lists::v4_within(
        100_000 - all.len(),
        0xf000_0000,
        5,
        &mut rng,
    ));
    all
}

fn nft_ruleset(prefixes: &[Prefix]) -> String {
    let elements: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
    format!(
        "table netdev bfbench {{\n  set blocked {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }}; }}\n  chain ingress {{ type filter hook ingress device \"r0\" priority 0; policy accept; ip daddr @blocked drop; }}\n}}\n",
        elements.join(", ")
    )
}

pub fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let frames: u32 = if options.quick { 3_000_000 } else { 10_000_000 };
    let rounds = if options.quick { 1 } else { 3 };
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

    // The generator: the bench object, its port towards r0, samples in 198.18.0.0/16.
    let mut generator = classify::loaded(&BTreeMap::new())?;
    let target_net: Prefix = "198.18.0.0/16".parse()?;
    classify::samples(&mut generator, &[target_net], false, 11)?;
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

    // The filter with the 100,000 prefixes.
    let list = prefixes();
    let filter = {
        let mut dp = Dataplane::load(&LoadOptions {
            pin_dir: None,
            v4_capacity: 200_000,
            v6_capacity: 1024,
        })
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        let empty = filter_user::sync::Snapshot::read(dp.maps())
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        let target = filter_user::sync::Snapshot::new(
            lists::dropping(&list),
            BTreeMap::from([(2, filter_common::Rule::new(filter_common::action::DROP, 2))]),
        );
        filter_user::sync::Plan::between(&empty, &target)
            .apply(dp.maps_mut())
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        dp
    };
    let nft = options.work_dir.join("nft.rules");
    std::fs::File::create(&nft)?.write_all(nft_ruleset(&list).as_bytes())?;

    let template = template_frame(&r0_mac);
    let mut rows = Vec::new();
    for (mix, per_mille) in [("all blocked", 1000u32), ("1% blocked", 10)] {
        classify::configure(
            &mut generator,
            BenchConfig {
                mode: 0,
                stream: stream::BLOCKED,
                family: 4,
                blocked_per_mille: per_mille,
            },
        )?;
        let mut ceiling_rate = 0.0;
        for contender in ["ceiling (drop all)", "borderfilter", "nftables"] {
            match contender {
                "ceiling (drop all)" => attach(
                    &rx,
                    Some(
                        generator
                            .program_named("bench_drop")
                            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?
                            .fd()?
                            .as_fd(),
                    ),
                )?,
                "borderfilter" => attach(
                    &rx,
                    Some(
                        filter
                            .program()
                            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?
                            .fd()?
                            .as_fd(),
                    ),
                )?,
                _ => {
                    rx.exec("ethtool", &["-K", "r0", "gro", "on"])?;
                    let started = Instant::now();
                    rx.exec("nft", &["-f", nft.to_str().unwrap_or_default()])?;
                    eprintln!(
                        "  nftables took {:.2} s to load {} prefixes",
                        started.elapsed().as_secs_f64(),
                        list.len()
                    );
                }
            }
            let mut results = Vec::new();
            for _ in 0..rounds {
                let before = received(&rx)?;
                let started = Instant::now();
                let program = generator
                    .program_named("bench_generate")
                    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
                program.test_run(TestRunOptions {
                    data_in: Some(&template),
                    repeat: frames,
                    attrs: TestRunAttrs::new().xdp_live_frames(64),
                    ..TestRunOptions::new()
                })?;
                let elapsed = started.elapsed().as_secs_f64();
                let got = received(&rx)? - before;
                results.push((got as f64 / elapsed, got));
            }
            results.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (rate, got) = results[results.len() / 2];
            if contender.starts_with("ceiling") {
                ceiling_rate = rate;
            }
            let extra_ns = (1.0 / rate - 1.0 / ceiling_rate) * 1e9;
            eprintln!(
                "  {mix:<11} {contender:<19} {:6.2} Mpps (+{:5.1} ns per frame over the ceiling)",
                rate / 1e6,
                extra_ns
            );
            rows.push(Row {
                mix,
                contender,
                mpps: rate / 1e6,
                extra_ns,
                frames_sent: u64::from(frames),
                frames_received: got,
            });
            // Make sure the contender is gone before the next one is measured.
            attach(&rx, None)?;
            if contender == "nftables" {
                rx.exec("nft", &["delete", "table", "netdev", "bfbench"])?;
                rx.exec("ethtool", &["-K", "r0", "gro", "off"])?;
            }
        }
    }
    Ok(rows)
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

/// 64-byte UDP frame to r0's MAC; the generator rewrites the IPv4 destination.
fn template_frame(dst_mac: &[u8; 6]) -> Vec<u8> {
    let mut f = filter_user::frame::Frame::v4(
        "198.19.255.1".parse().expect("valid"),
        "198.19.0.1".parse().expect("valid"),
    )
    .with_data_len(18)
    .bytes();
    f[0..6].copy_from_slice(dst_mac);
    debug_assert_eq!(&f[12..14], &ETH_P_IP.to_be_bytes());
    f
}
