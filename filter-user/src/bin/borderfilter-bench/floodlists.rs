//! A veth flood to random blocked addresses on each list of issue 16's table
//! (`shapes.rs`), at the daemon's default capacities, with its baselines (issue 16, "the
//! benchmark tells the truth"): the drop-all ceiling, nftables (netdev ingress, interval
//! set of the list's order prefixes) and, on the exact lists xdp-filter can hold,
//! xdp-filter. Each list goes into the real filter the way the daemon puts it there
//! (check, compile, plan, apply: `shaped::sync_list`); the kernel's memory for its maps
//! is read then (`memlock` of each map's fdinfo). The flood's destinations are drawn from
//! all of the list's order entries, kept if the whole list blocks them; the frames come
//! from an address the list blocks in neither direction.
//!
//! Every contender is measured once per run, in turn, and the runs repeated: each rate
//! is set against the ceiling of the same run, and borderfilter's extra cost against
//! the others' of the same run; the report gives the minimum, median and maximum over
//! the runs.

use std::{collections::BTreeSet, net::IpAddr, time::Instant};

use filter_common::maps::DEFAULT_PREFIX_CAPACITY;
use filter_user::{
    dataplane::{Dataplane, LoadOptions},
    error_chain,
    prefix::Prefix,
};
use serde::Serialize;

use crate::{
    classify::median,
    flood::{self, Contender, Measured, Rig},
    shaped, Options,
};

/// Minimum, median and maximum over the runs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        Self {
            min: v[0],
            median: median(v.clone()),
            max: v[v.len() - 1],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// "spread", "crowded" or "exact".
    pub list: &'static str,
    pub family: u8,
    pub prefixes: usize,
    /// Entries the compiler made.
    pub entries: usize,
    /// "ceiling (drop all)", "borderfilter", "nftables" or "xdp-filter".
    pub contender: &'static str,
    pub runs: usize,
    pub mpps: Spread,
    /// 1/rate - 1/ceiling's rate of the same run, in nanoseconds.
    pub extra_ns: Spread,
    /// rate / ceiling's rate of the same run.
    pub of_ceiling: Spread,
    /// borderfilter's rows: its extra cost / nftables' of the same run.
    pub vs_nftables: Option<Spread>,
    /// borderfilter's rows where xdp-filter ran: its extra cost / xdp-filter's.
    pub vs_xdp_filter: Option<Spread>,
    /// Ceiling's and borderfilter's rows: nanoseconds per frame the XDP program itself
    /// ran, from the kernel's BPF run-time statistics over one more measurement after
    /// the runs (the ceiling's figure is the statistics' own overhead).
    pub program_ns: Option<f64>,
}

/// Kernel memory of the filter's maps holding one list, at the daemon's defaults.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub list: &'static str,
    pub family: u8,
    pub prefixes: usize,
    pub entries: usize,
    pub bytes: u64,
    pub bytes_per_prefix: f64,
    pub by_map: Vec<(String, u64)>,
}

#[derive(Debug, Default, Serialize)]
pub struct Flood {
    pub runs: usize,
    /// How long each measurement lasts (its frame count is sized from a probe).
    pub seconds_per_measurement: f64,
    pub rows: Vec<Row>,
    pub memory: Vec<Memory>,
    /// Seconds `nft -f` took to load each list ("IPv4 spread 100000").
    pub nft_load_s: Vec<(String, f64)>,
    /// What the run left out, and why.
    pub notes: Vec<String>,
    /// Seconds the whole part took.
    pub total_s: f64,
}

/// The lists to flood: all of issue 16's table, or with `--quick` three of them.
fn lists(quick: bool) -> Vec<(u8, &'static str, usize)> {
    if quick {
        vec![
            (4, "spread", 100_000),
            (4, "exact", 9_000),
            (6, "spread", 100_000),
        ]
    } else {
        shaped::shapes_to_run(false)
    }
}

fn load_default() -> anyhow::Result<Dataplane> {
    Dataplane::load(&LoadOptions {
        pin_dir: None,
        // `borderfilter run`'s --capacity-v4 and --capacity-v6 defaults.
        v4_capacity: DEFAULT_PREFIX_CAPACITY,
        v6_capacity: DEFAULT_PREFIX_CAPACITY,
    })
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))
}

pub fn run(options: &Options) -> anyhow::Result<Flood> {
    let started = Instant::now();
    let runs = if options.quick { 1 } else { 3 };
    let mut rig = Rig::new(options)?;
    let mut out = Flood {
        runs,
        seconds_per_measurement: rig.seconds,
        ..Flood::default()
    };
    if options.quick {
        out.notes.push(format!(
            "--quick: {} of the {} lists, one run each (no spread)",
            lists(true).len(),
            lists(false).len()
        ));
    }
    for (family, kind, n) in lists(options.quick) {
        let shape = shaped::build(family, kind, n);
        let label = format!("IPv{family} {kind} {}", shape.prefixes);
        let mut dp = load_default()?;
        let entries = shaped::sync_list(&mut dp, &shape)?;
        let by_map = dp.maps().memory();
        let bytes: u64 = by_map.iter().map(|(_, b)| b).sum();
        let memory = Memory {
            list: shape.kind,
            family,
            prefixes: shape.prefixes,
            entries: entries.len(),
            bytes,
            bytes_per_prefix: bytes as f64 / shape.prefixes as f64,
            by_map,
        };
        eprintln!(
            "  {label}: {} entries, kernel map memory {:.1} MiB ({:.0} bytes per prefix)",
            memory.entries,
            bytes as f64 / 1048576.0,
            memory.bytes_per_prefix
        );
        out.memory.push(memory);

        let v6 = family == 6;
        let seed = n as u64 ^ (u64::from(family) << 40) ^ 0xf100d;
        let blocked = shaped::draw(&entries, v6, true, true, seed)?;
        let pass = shaped::draw(&entries, v6, false, false, seed + 1)?;
        rig.destinations(family, &blocked, &pass, 1000)?;
        let template = rig.template(flood::unblocked_source(&entries, family)?);

        let prefixes: BTreeSet<Prefix> = shape.orders.iter().flatten().copied().collect();
        let prefixes: Vec<Prefix> = prefixes.into_iter().collect();
        let took = rig.load_nft(&prefixes)?;
        eprintln!(
            "  {label}: nftables took {took:.1} s to load {} prefixes",
            prefixes.len()
        );
        out.nft_load_s.push((label.clone(), took));
        let hosts: Vec<IpAddr> = prefixes.iter().map(|p| p.addr()).collect();
        let xdp_filter = kind == "exact" && hosts.len() <= flood::XDP_FILTER_CAPACITY;
        if kind == "exact" && !xdp_filter {
            out.notes.push(format!(
                "{label}: no xdp-filter row: its maps hold {} addresses per family",
                flood::XDP_FILTER_CAPACITY
            ));
        }
        let mut contenders = vec![Contender::Ceiling, Contender::Borderfilter(&dp)];
        if xdp_filter {
            contenders.push(Contender::XdpFilter);
        }
        contenders.push(Contender::Nftables);

        // measured[c][r]: contender c in run r.
        let mut measured: Vec<Vec<Measured>> = vec![Vec::new(); contenders.len()];
        for _ in 0..runs {
            for (c, contender) in contenders.iter().enumerate() {
                if matches!(contender, Contender::XdpFilter) {
                    rig.load_xdp_filter(&hosts)?;
                }
                let m = rig.measure(*contender, &template);
                if matches!(contender, Contender::XdpFilter) {
                    rig.unload_xdp_filter()?;
                }
                let m = m?;
                // Every frame goes to a blocked address: an XDP contender must drop all.
                let xdp = !matches!(contender, Contender::Nftables);
                if xdp && (m.xdp_dropped as f64) < 0.999 * m.received as f64 {
                    anyhow::bail!(
                        "{label}: {} dropped only {} of {} frames to blocked addresses",
                        contender.name(),
                        m.xdp_dropped,
                        m.received
                    );
                }
                measured[c].push(m);
            }
        }
        rig.unload_nft()?;
        let first = out.rows.len();
        out.rows
            .extend(rows(&shape, family, entries.len(), &contenders, &measured));
        for (i, contender) in contenders.iter().take(2).enumerate() {
            out.rows[first + i].program_ns = Some(rig.program_ns(*contender, &template)?);
        }
        for r in out.rows.iter().rev().take(contenders.len()).rev() {
            eprintln!(
                "  {label}: {:<19} {:6.2} Mpps ({:.2} to {:.2}), +{:6.1} ns per frame, {:3.0}% of the ceiling{}",
                r.contender,
                r.mpps.median,
                r.mpps.min,
                r.mpps.max,
                r.extra_ns.median,
                100.0 * r.of_ceiling.median,
                r.program_ns
                    .map_or(String::new(), |ns| format!(", program {ns:.0} ns per frame"))
            );
        }
    }
    out.total_s = started.elapsed().as_secs_f64();
    Ok(out)
}

/// The rows of one list from its measurements, run by run against the same run's
/// ceiling and baselines.
fn rows(
    shape: &crate::shapes::Shape,
    family: u8,
    entries: usize,
    contenders: &[Contender<'_>],
    measured: &[Vec<Measured>],
) -> Vec<Row> {
    let rate = |c: usize| -> Vec<f64> { measured[c].iter().map(|m| m.rate).collect() };
    let ceiling = rate(0);
    let extra = |c: usize| -> Vec<f64> {
        rate(c)
            .iter()
            .zip(&ceiling)
            .map(|(r, top)| (1.0 / r - 1.0 / top) * 1e9)
            .collect()
    };
    let find = |name: &str| contenders.iter().position(|c| c.name() == name);
    let ratio_to = |c: usize, other: Option<usize>| -> Option<Spread> {
        let other = extra(other?);
        let ratios: Vec<f64> = extra(c).iter().zip(&other).map(|(a, b)| a / b).collect();
        Some(Spread::of(&ratios))
    };
    contenders
        .iter()
        .enumerate()
        .map(|(c, contender)| {
            let is_filter = matches!(contender, Contender::Borderfilter(_));
            let of_ceiling: Vec<f64> = rate(c).iter().zip(&ceiling).map(|(r, t)| r / t).collect();
            Row {
                list: shape.kind,
                family,
                prefixes: shape.prefixes,
                entries,
                contender: contender.name(),
                runs: ceiling.len(),
                mpps: Spread::of(&rate(c).iter().map(|r| r / 1e6).collect::<Vec<_>>()),
                extra_ns: Spread::of(&extra(c)),
                of_ceiling: Spread::of(&of_ceiling),
                vs_nftables: if is_filter {
                    ratio_to(c, find("nftables"))
                } else {
                    None
                },
                vs_xdp_filter: if is_filter {
                    ratio_to(c, find("xdp-filter"))
                } else {
                    None
                },
                program_ns: None,
            }
        })
        .collect()
}
