//! Classification cost on lists shaped like real ones and like the worst case (issue 16,
//! `shapes.rs`), at the daemon's default capacities. Each list is written as a list file
//! and goes through the daemon's own path (check, compile, plan, apply) into the bench
//! object; then two streams of addresses drawn from the benchmarking ranges are
//! classified: *blocked* (addresses the list blocks) and *not blocked* (addresses of the
//! same ranges it does not block: gaps, exceptions, untouched /24s). Each stream is run
//! with borderfilter's code and with one plain LPM-trie lookup on the same list, and with
//! borderfilter's code on an empty list, interleaved in the same rounds.

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use aya::maps::Array;
use filter_common::{
    bench::{self, mode, stream, BenchConfig},
    maps::DEFAULT_PREFIX_CAPACITY,
    types::FIRST_ORDER_RULE,
    Entry,
};
use filter_user::{
    compile::{compile, Numbering},
    dataplane::{Dataplane, LoadOptions},
    error_chain,
    orders::validate::{check, Policy},
    prefix::Prefix,
    sync::{Plan, Snapshot},
};
use rand::{rngs::SmallRng, Rng};
use serde::Serialize;

use crate::{
    classify::{configure, mean_ns, median},
    lists,
    shapes::{self, Shape},
    Options, BENCH_OBJECT,
};

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// "spread", "crowded" or "exact" (`shapes.rs`).
    pub list: &'static str,
    pub family: u8,
    /// Distinct prefixes the orders list.
    pub prefixes: usize,
    pub orders: usize,
    pub exceptions: usize,
    /// Entries the compiler made (the trie's size).
    pub entries: usize,
    /// "blocked" or "not blocked".
    pub stream: &'static str,
    /// Nanoseconds per packet, the cost of drawing addresses subtracted.
    pub filter_ns: f64,
    /// One plain LPM-trie lookup of the destination, same entries.
    pub lpm_ns: f64,
    /// borderfilter on an empty list, same addresses.
    pub empty_ns: f64,
    /// The candidate fast path of docs/fastpath.md (a Poptrie lookup and its entry),
    /// built from the same entries.
    pub poptrie_ns: f64,
    pub poptrie_vs_lpm: f64,
    /// Its size: direct table, nodes and leaves of the family.
    pub poptrie_bytes: usize,
    pub vs_lpm: f64,
    pub vs_empty: f64,
    /// Seconds from the list file to the maps (check, compile, plan, apply).
    pub load_s: f64,
}

/// The bench object at the daemon's default capacities (`borderfilter run`'s
/// `--capacity-v4` and `--capacity-v6`).
fn load_default() -> anyhow::Result<Dataplane> {
    Dataplane::load_object(
        BENCH_OBJECT,
        &["bench_classify", "bench_generate", "bench_drop"],
        &LoadOptions {
            pin_dir: None,
            v4_capacity: DEFAULT_PREFIX_CAPACITY,
            v6_capacity: DEFAULT_PREFIX_CAPACITY,
        },
    )
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))
}

/// Puts `shape` into `dp` as the daemon does with a list file: check (with the default
/// policy), compile, plan from what the maps hold, apply. Returns the entries.
pub fn sync_list(dp: &mut Dataplane, shape: &Shape) -> anyhow::Result<BTreeMap<Prefix, Entry>> {
    let bytes = shape.json().into_bytes();
    let (list, problems) = check(&bytes, &Policy::default());
    let list =
        list.ok_or_else(|| anyhow::anyhow!("the {} list is invalid: {problems}", shape.kind))?;
    let held = Snapshot::read(dp.maps()).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let compiled = compile(
        &list,
        time::OffsetDateTime::now_utc(),
        &Numbering::from_rules(&held.rules),
    )?;
    Plan::between(&held, &Snapshot::of(&compiled))
        .apply(dp.maps_mut())
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    Ok(compiled.entries)
}

/// Whether the destination (or source) `addr` is blocked: the longest entry containing it
/// names an order (every order drops).
pub struct Oracle<'a> {
    entries: &'a BTreeMap<Prefix, Entry>,
    lengths: Vec<u8>,
}

impl<'a> Oracle<'a> {
    pub fn new(entries: &'a BTreeMap<Prefix, Entry>) -> Self {
        let mut lengths: Vec<u8> = entries.keys().map(|p| p.length()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        Self { entries, lengths }
    }

    pub fn longest(&self, addr: IpAddr) -> Option<&Entry> {
        self.lengths
            .iter()
            .filter(|&&len| !(addr.is_ipv4() && len > 32))
            .find_map(|&len| self.entries.get(&Prefix::new_truncating(addr, len)))
    }

    pub fn blocked(&self, addr: IpAddr) -> bool {
        self.longest(addr)
            .is_some_and(|e| e.dst_rule >= FIRST_ORDER_RULE)
    }

    /// Whether a frame from `addr` is blocked.
    pub fn blocks_source(&self, addr: IpAddr) -> bool {
        self.longest(addr)
            .is_some_and(|e| e.src_rule >= FIRST_ORDER_RULE)
    }
}

fn in_region(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            u32::from(a) >> (32 - shapes::V4_REGION.1)
                == shapes::V4_REGION.0 >> (32 - shapes::V4_REGION.1)
        }
        IpAddr::V6(a) => {
            u128::from(a) >> (128 - shapes::V6_REGION.1)
                == shapes::V6_REGION.0 >> (128 - shapes::V6_REGION.1)
        }
    }
}

fn random_in_region(v6: bool, rng: &mut SmallRng) -> IpAddr {
    if v6 {
        IpAddr::V6((shapes::V6_REGION.0 | (rng.random::<u128>() >> shapes::V6_REGION.1)).into())
    } else {
        IpAddr::V4((shapes::V4_REGION.0 | (rng.random::<u32>() >> shapes::V4_REGION.1)).into())
    }
}

/// `bench::SAMPLES` addresses of the region: blocked ones (inside an order's prefix, a
/// random one of those the region holds, and blocked by the list as a whole), or ones
/// the list does not block (uniform over the region). With `anywhere`, blocked
/// addresses come from all of the list's order entries, not only the region's.
pub fn draw(
    entries: &BTreeMap<Prefix, Entry>,
    v6: bool,
    blocked: bool,
    anywhere: bool,
    seed: u64,
) -> anyhow::Result<Vec<IpAddr>> {
    let oracle = Oracle::new(entries);
    let mut rng = lists::rng(seed);
    let blocking: Vec<&Prefix> = entries
        .iter()
        .filter(|(p, e)| {
            p.addr().is_ipv6() == v6
                && (anywhere || in_region(p.addr()))
                && e.dst_rule >= FIRST_ORDER_RULE
        })
        .map(|(p, _)| p)
        .collect();
    if blocked && blocking.is_empty() {
        anyhow::bail!("the list blocks nothing in the benchmarking range");
    }
    let mut out = Vec::with_capacity(bench::SAMPLES as usize);
    let mut tries = 0u64;
    while out.len() < bench::SAMPLES as usize {
        tries += 1;
        if tries > 1000 * u64::from(bench::SAMPLES) {
            anyhow::bail!(
                "could not draw {} addresses (blocked: {blocked})",
                bench::SAMPLES
            );
        }
        let addr = if blocked {
            lists::inside(blocking[rng.random_range(0..blocking.len())], &mut rng)
        } else {
            random_in_region(v6, &mut rng)
        };
        if oracle.blocked(addr) == blocked {
            out.push(addr);
        }
    }
    Ok(out)
}

/// Builds the candidate structure of `family` from `entries` into the bench object's
/// `BENCH_P*` maps; returns its size in bytes (direct table, nodes, leaves).
fn write_poptrie(
    dp: &mut Dataplane,
    entries: &BTreeMap<Prefix, Entry>,
    family: u8,
) -> anyhow::Result<usize> {
    let (v4, v6, table) = filter_user::poptrie::from_entries(entries);
    let (t, names) = if family == 4 {
        (
            v4,
            [
                bench::POP_V4_DIRECT,
                bench::POP_V4_NODES,
                bench::POP_V4_LEAVES,
            ],
        )
    } else {
        (
            v6,
            [
                bench::POP_V6_DIRECT,
                bench::POP_V6_NODES,
                bench::POP_V6_LEAVES,
            ],
        )
    };
    fn map<'a>(dp: &'a mut Dataplane, name: &str) -> anyhow::Result<&'a mut aya::maps::Map> {
        dp.extra_map(name)
            .ok_or_else(|| anyhow::anyhow!("no {name} map in the bench object"))
    }
    let mut direct = Array::<_, u32>::try_from(map(dp, names[0])?)?;
    for (i, w) in t.direct.iter().enumerate() {
        direct.set(i as u32, *w, 0)?;
    }
    let mut nodes = Array::<_, filter_common::poptrie::PopNode>::try_from(map(dp, names[1])?)?;
    for (i, n) in t.nodes.iter().enumerate() {
        nodes.set(i as u32, *n, 0)?;
    }
    let mut leaves = Array::<_, u16>::try_from(map(dp, names[2])?)?;
    for (i, l) in t.leaves.iter().enumerate() {
        leaves.set(i as u32, *l, 0)?;
    }
    let mut table_map = Array::<_, Entry>::try_from(map(dp, bench::POP_ENTRIES)?)?;
    for (i, e) in table.iter().enumerate() {
        table_map.set(i as u32 + 1, *e, 0)?;
    }
    Ok(t.bytes())
}

/// The candidate's answer for every drawn address is the trie's (the longest entry):
/// its figures are measured on a structure that means the same.
fn check_candidate(
    (v4, v6, table): &(
        filter_user::poptrie::PopTrie,
        filter_user::poptrie::PopTrie,
        Vec<Entry>,
    ),
    oracle: &Oracle,
    addrs: &[IpAddr],
) -> anyhow::Result<()> {
    for addr in addrs {
        let leaf = match addr {
            IpAddr::V4(a) => v4.lookup(u128::from(u32::from(*a))),
            IpAddr::V6(a) => v6.lookup(u128::from(*a)),
        };
        let got = match leaf {
            Some(0) => None,
            Some(l) => table.get(usize::from(l) - 1),
            None => anyhow::bail!("the candidate's lookup of {addr} read outside its arrays"),
        };
        if got != oracle.longest(*addr) {
            anyhow::bail!(
                "the candidate answers {got:?} for {addr}, the trie {:?}",
                oracle.longest(*addr)
            );
        }
    }
    Ok(())
}

fn write_samples(dp: &mut Dataplane, addrs: &[IpAddr]) -> anyhow::Result<()> {
    for (i, addr) in addrs.iter().enumerate() {
        let i = i as u32;
        match addr {
            IpAddr::V4(a) => {
                let map = dp
                    .extra_map(bench::SAMPLES_V4)
                    .ok_or_else(|| anyhow::anyhow!("no samples map"))?;
                Array::<_, [u8; 4]>::try_from(map)?.set(i, a.octets(), 0)?
            }
            IpAddr::V6(a) => {
                let map = dp
                    .extra_map(bench::SAMPLES_V6)
                    .ok_or_else(|| anyhow::anyhow!("no samples map"))?;
                Array::<_, [u8; 16]>::try_from(map)?.set(i, a.octets(), 0)?
            }
        }
    }
    Ok(())
}

/// The lists of issue 16's table, smallest first; the million-prefix list only in a full
/// run.
pub fn shapes_to_run(quick: bool) -> Vec<(u8, &'static str, usize)> {
    let mut v = vec![
        (4, "spread", 1_000),
        (4, "spread", 100_000),
        (4, "crowded", 100_000),
        (4, "exact", 9_000),
        (4, "exact", 100_000),
        (6, "spread", 1_000),
        (6, "spread", 100_000),
        (6, "crowded", 100_000),
        (6, "exact", 9_000),
    ];
    if !quick {
        v.insert(2, (4, "spread", 1_000_000));
    }
    v
}

/// The list of `kind` ("spread", "exact" or "crowded") with `n` prefixes of `family`,
/// the same in every part of the benchmark.
pub fn build(family: u8, kind: &str, n: usize) -> Shape {
    let mut rng = lists::rng(0x5ead ^ (n as u64) ^ (u64::from(family) << 32) ^ kind.len() as u64);
    match kind {
        "spread" => shapes::spread(family, n, &mut rng),
        "exact" => shapes::exact(family, n, &mut rng),
        // A few hundred /24s (/48s): 400, about 250 prefixes each.
        _ => shapes::crowded(family, n, 400, &mut rng),
    }
}

pub fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let repeat = if options.quick { 200_000 } else { 1_000_000 };
    let rounds = if options.quick { 3 } else { 5 };
    let mut empty = load_default()?;
    let mut rows = Vec::new();
    for (family, kind, n) in shapes_to_run(options.quick) {
        let shape = build(family, kind, n);
        let mut dp = load_default()?;
        let t = Instant::now();
        let entries = sync_list(&mut dp, &shape)?;
        let load_s = t.elapsed().as_secs_f64();
        let poptrie_bytes = write_poptrie(&mut dp, &entries, family)?;
        let candidate = filter_user::poptrie::from_entries(&entries);
        for blocked in [true, false] {
            let addrs = draw(&entries, family == 6, blocked, false, n as u64 + 17)?;
            check_candidate(&candidate, &Oracle::new(&entries), &addrs)?;
            write_samples(&mut dp, &addrs)?;
            write_samples(&mut empty, &addrs)?;
            let cost = |dp: &mut Dataplane, m: u32| -> anyhow::Result<f64> {
                configure(
                    dp,
                    BenchConfig {
                        mode: m,
                        stream: stream::BLOCKED,
                        family: u32::from(family),
                        blocked_per_mille: 0,
                    },
                )?;
                mean_ns(dp, repeat)
            };
            let mut m: [Vec<f64>; 6] = Default::default();
            for _ in 0..rounds {
                m[0].push(cost(&mut dp, mode::OFF)?);
                m[1].push(cost(&mut dp, mode::FILTER)?);
                m[2].push(cost(&mut dp, mode::BASELINE)?);
                m[3].push(cost(&mut empty, mode::OFF)?);
                m[4].push(cost(&mut empty, mode::FILTER)?);
                m[5].push(cost(&mut dp, mode::POPTRIE)?);
            }
            let [off, filter, lpm, empty_off, empty_filter, pop] = m.map(median);
            let filter_ns = (filter - off).max(0.0);
            let lpm_ns = (lpm - off).max(0.0);
            let poptrie_ns = (pop - off).max(0.0);
            let empty_ns = (empty_filter - empty_off).max(0.0);
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            let row = Row {
                list: shape.kind,
                family,
                prefixes: shape.prefixes,
                orders: shapes::ORDERS,
                exceptions: shape.exceptions.len(),
                entries: entries.len(),
                stream: if blocked { "blocked" } else { "not blocked" },
                filter_ns,
                lpm_ns,
                empty_ns,
                vs_lpm: ratio(filter_ns, lpm_ns),
                vs_empty: ratio(filter_ns, empty_ns),
                poptrie_ns,
                poptrie_vs_lpm: ratio(poptrie_ns, lpm_ns),
                poptrie_bytes,
                load_s,
            };
            eprintln!(
                "  IPv{family} {:<7} {:>9} prefixes, {:<11}: filter {:6.1} ns, LPM {:6.1} ns, empty list {:5.1} ns, poptrie (candidate) {:6.1} ns",
                row.list, row.prefixes, row.stream, filter_ns, lpm_ns, empty_ns, poptrie_ns
            );
            rows.push(row);
        }
    }
    Ok(rows)
}
