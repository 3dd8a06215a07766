//! Classification cost per packet, in the kernel: `bench_classify` draws a new random
//! destination (and source) on every run and classifies it with the filter's own code,
//! or with one plain LPM-trie lookup (the baseline), or not at all (the cost to
//! subtract). Runs are interleaved and repeated, and the median kept.

use std::{collections::BTreeMap, net::IpAddr};

use aya::{
    maps::Array,
    programs::{TestRun, TestRunOptions},
};
use filter_common::{
    action,
    bench::{self, mode, stream, BenchConfig},
    Rule,
};
use filter_user::{
    dataplane::{Dataplane, LoadOptions},
    error_chain,
    frame::Frame,
    prefix::Prefix,
    sync::{Plan, Snapshot},
};
use serde::Serialize;

use crate::{lists, Options, BENCH_OBJECT};

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub family: u8,
    pub prefixes: usize,
    /// "uniform" (anywhere in the address space) or "blocked" (inside the prefixes).
    pub stream: &'static str,
    /// Nanoseconds per packet, with the cost of drawing addresses subtracted.
    pub filter_ns: f64,
    pub baseline_ns: f64,
    /// filter / baseline.
    pub ratio: f64,
}

/// Loads the bench object, at the daemon's default capacities, with `entries` dropping
/// under rule 2.
pub fn loaded(entries: &BTreeMap<Prefix, filter_common::Entry>) -> anyhow::Result<Dataplane> {
    let mut dp = Dataplane::load_object(
        BENCH_OBJECT,
        &["bench_classify", "bench_generate", "bench_drop"],
        &LoadOptions {
            pin_dir: None,
            // The daemon's defaults (`borderfilter run --capacity-v4/--capacity-v6`).
            v4_capacity: filter_common::maps::DEFAULT_PREFIX_CAPACITY,
            v6_capacity: filter_common::maps::DEFAULT_PREFIX_CAPACITY,
        },
    )
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let empty = Snapshot::read(dp.maps()).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let target = Snapshot::new(
        entries.clone(),
        BTreeMap::from([(2, Rule::new(action::DROP, 2))]),
    );
    Plan::between(&empty, &target)
        .apply(dp.maps_mut())
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    Ok(dp)
}

/// Fills the sample arrays with addresses inside `prefixes` (random ones if empty).
pub fn samples(dp: &mut Dataplane, prefixes: &[Prefix], v6: bool, seed: u64) -> anyhow::Result<()> {
    let mut rng = lists::rng(seed);
    let name = if v6 {
        bench::SAMPLES_V6
    } else {
        bench::SAMPLES_V4
    };
    let map = dp
        .extra_map(name)
        .ok_or_else(|| anyhow::anyhow!("no map {name}"))?;
    for i in 0..bench::SAMPLES {
        let addr = if prefixes.is_empty() {
            if v6 {
                IpAddr::V6(rng.random::<u128>().into())
            } else {
                IpAddr::V4(rng.random::<u32>().into())
            }
        } else {
            lists::inside(&prefixes[rng.random_range(0..prefixes.len())], &mut rng)
        };
        match addr {
            IpAddr::V4(a) => Array::<_, [u8; 4]>::try_from(&mut *map)?.set(i, a.octets(), 0)?,
            IpAddr::V6(a) => Array::<_, [u8; 16]>::try_from(&mut *map)?.set(i, a.octets(), 0)?,
        }
    }
    Ok(())
}
use rand::Rng;

pub fn configure(dp: &mut Dataplane, config: BenchConfig) -> anyhow::Result<()> {
    let map = dp
        .extra_map(bench::CONFIG)
        .ok_or_else(|| anyhow::anyhow!("no config map"))?;
    Array::<_, BenchConfig>::try_from(map)?.set(0, config, 0)?;
    Ok(())
}

/// Mean nanoseconds per run of `bench_classify` over `repeat` runs.
pub fn mean_ns(dp: &Dataplane, repeat: u32) -> anyhow::Result<f64> {
    let frame = Frame::v4("192.0.2.1".parse()?, "192.0.2.2".parse()?).bytes();
    let mut out = vec![0u8; 256];
    let result = dp
        .program_named("bench_classify")
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        })?;
    Ok(result.duration.as_nanos() as f64)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let repeat = if options.quick { 200_000 } else { 1_000_000 };
    let rounds = if options.quick { 3 } else { 5 };
    let mut rows = Vec::new();
    let sizes: [(u8, &[usize]); 2] = [
        (4, &[0, 1_000, 100_000, 1_000_000]),
        (6, &[0, 1_000, 100_000]),
    ];
    for (family, counts) in sizes {
        for &n in counts {
            let mut rng = lists::rng(n as u64 + u64::from(family));
            let prefixes = if family == 4 {
                lists::v4_spread(n, &mut rng)
            } else {
                lists::v6_spread(n, &mut rng)
            };
            let mut dp = loaded(&lists::dropping(&prefixes))?;
            samples(&mut dp, &prefixes, family == 6, 7)?;
            for st in [stream::UNIFORM, stream::BLOCKED] {
                if st == stream::BLOCKED && n == 0 {
                    continue;
                }
                let mut cost = |m: u32| -> anyhow::Result<f64> {
                    configure(
                        &mut dp,
                        BenchConfig {
                            mode: m,
                            stream: st,
                            family: u32::from(family),
                            blocked_per_mille: 0,
                        },
                    )?;
                    mean_ns(&dp, repeat)
                };
                let (mut off, mut filter, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..rounds {
                    off.push(cost(mode::OFF)?);
                    filter.push(cost(mode::FILTER)?);
                    baseline.push(cost(mode::BASELINE)?);
                }
                let off = median(off);
                let filter_ns = (median(filter) - off).max(0.0);
                let baseline_ns = (median(baseline) - off).max(0.0);
                let row = Row {
                    family,
                    prefixes: n,
                    stream: if st == stream::UNIFORM {
                        "uniform"
                    } else {
                        "blocked"
                    },
                    filter_ns,
                    baseline_ns,
                    ratio: if baseline_ns > 0.0 {
                        filter_ns / baseline_ns
                    } else {
                        f64::NAN
                    },
                };
                eprintln!("  IPv{family} {n:>9} prefixes, {:<7} stream: filter {:6.1} ns, LPM baseline {:6.1} ns", row.stream, filter_ns, baseline_ns);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}
