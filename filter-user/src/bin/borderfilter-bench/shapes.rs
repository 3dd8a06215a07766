//! Order lists shaped like real ones and like the fast path's worst case (issue 16): the
//! orders and exceptions of a list file, which `shaped.rs` puts through the daemon's own
//! check, compile and sync.
//!
//! Every address the benchmark classifies lies in a benchmarking range: IPv4
//! 198.18.0.0/15 (RFC 2544, [`V4_REGION`]) and IPv6 2001:db8::/33 (documentation,
//! [`V6_REGION`]). A *spread* or *exact* list puts most of its prefixes elsewhere in the
//! unicast space (1.0.0.0 to 223.255.255.255, 2000::/3), where no address is drawn, and a
//! slice of the same shape in the region, which the blocked stream draws from; a
//! *crowded* list lies wholly in the region.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_user::prefix::Prefix;

use crate::lists::pick_len;
use rand::{rngs::SmallRng, seq::SliceRandom, Rng};

/// Where IPv4 addresses are drawn: 198.18.0.0/15 (512 /24s).
pub const V4_REGION: (u32, u8) = (0xc612_0000, 15);
/// Where IPv6 addresses are drawn: 2001:db8::/33 (32,768 /48s).
pub const V6_REGION: (u128, u8) = (0x2001_0db8_u128 << 96, 33);

/// Orders in every list.
pub const ORDERS: usize = 100;

/// IPv4 lengths of a spread list (/20 to /32, parts per 100): mostly hosts and /24s.
const V4_SPREAD_MIX: [(u8, u32); 13] = [
    (32, 55),
    (31, 1),
    (30, 4),
    (29, 3),
    (28, 6),
    (27, 2),
    (26, 2),
    (25, 1),
    (24, 20),
    (23, 2),
    (22, 2),
    (21, 1),
    (20, 1),
];
/// IPv6 lengths of a spread list (/48 to /128).
const V6_SPREAD_MIX: [(u8, u32); 9] = [
    (48, 35),
    (52, 3),
    (56, 15),
    (60, 4),
    (64, 25),
    (80, 2),
    (96, 3),
    (112, 3),
    (128, 10),
];
/// Lengths inside a crowded IPv4 /24 (/25 to /32).
const V4_CROWDED_MIX: [(u8, u32); 8] = [
    (32, 70),
    (31, 5),
    (30, 8),
    (29, 7),
    (28, 5),
    (27, 3),
    (26, 1),
    (25, 1),
];
/// Lengths inside a crowded IPv6 /48 (/49 to /128).
const V6_CROWDED_MIX: [(u8, u32); 8] = [
    (128, 40),
    (64, 30),
    (56, 10),
    (60, 5),
    (52, 4),
    (49, 1),
    (96, 5),
    (112, 5),
];

/// A list: which prefixes each order lists, and the exceptions.
pub struct Shape {
    /// "spread", "crowded" or "exact".
    pub kind: &'static str,
    /// Each order's prefixes (an order's index is its position).
    pub orders: Vec<Vec<Prefix>>,
    pub exceptions: Vec<Prefix>,
    /// Distinct prefixes the orders list.
    pub prefixes: usize,
}

impl Shape {
    fn new(kind: &'static str, listed: Vec<(Prefix, usize)>, exceptions: Vec<Prefix>) -> Self {
        let prefixes = listed.iter().map(|(p, _)| *p).collect::<HashSet<_>>().len();
        let mut orders = vec![Vec::new(); ORDERS];
        for (p, o) in listed {
            orders[o].push(p);
        }
        Self {
            kind,
            orders,
            exceptions,
            prefixes,
        }
    }

    /// The list file, as an operator would write it.
    pub fn json(&self) -> String {
        let quoted = |ps: &[Prefix]| {
            ps.iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(",")
        };
        let orders: Vec<String> = self
            .orders
            .iter()
            .enumerate()
            .map(|(i, ps)| {
                format!(
                    "{{\"id\": \"BENCH-{i}\", \"authority\": \"Bench Court\", \"issued\": \"2026-01-01\", \"action\": \"drop\", \"prefixes\": [{}]}}",
                    quoted(ps)
                )
            })
            .collect();
        let exceptions: Vec<String> = self
            .exceptions
            .iter()
            .map(|p| format!("{{\"prefix\": \"{p}\", \"reason\": \"bench\"}}"))
            .collect();
        format!(
            "{{\"version\": 1, \"orders\": [\n{}\n], \"exceptions\": [\n{}\n]}}\n",
            orders.join(",\n"),
            exceptions.join(",\n")
        )
    }
}

fn v4(a: u32, len: u8) -> Prefix {
    Prefix::new_truncating(IpAddr::V4(Ipv4Addr::from(a)), len)
}

fn v6(a: u128, len: u8) -> Prefix {
    Prefix::new_truncating(IpAddr::V6(Ipv6Addr::from(a)), len)
}

fn in_v4_region(a: u32) -> bool {
    a >> (32 - V4_REGION.1) == V4_REGION.0 >> (32 - V4_REGION.1)
}

/// A random IPv4 unicast address outside the region and the protected ranges.
fn v4_elsewhere(rng: &mut SmallRng) -> u32 {
    loop {
        let a: u32 = rng.random();
        let first = a >> 24;
        if (1..224).contains(&first) && first != 127 && (a >> 16) != 0xa9fe && !in_v4_region(a) {
            return a;
        }
    }
}

/// A random address in 2000::/3 outside 2001:db8::/32.
fn v6_elsewhere(rng: &mut SmallRng) -> u128 {
    loop {
        let a = (0x2u128 << 125) | (rng.random::<u128>() >> 3);
        if a >> 96 != 0x2001_0db8 {
            return a;
        }
    }
}

fn v4_in_region(rng: &mut SmallRng) -> u32 {
    V4_REGION.0 | (rng.random::<u32>() >> V4_REGION.1)
}

fn v6_in_region(rng: &mut SmallRng) -> u128 {
    V6_REGION.0 | (rng.random::<u128>() >> V6_REGION.1)
}

/// How many of a spread or exact list's `n` prefixes lie in the region: a tenth, and for
/// IPv4 at most 512, about one per /24 of 198.18.0.0/15, as sparse as a spread list is
/// (a million prefixes touch about one /24 in fourteen of the unicast space).
fn region_slice(n: usize, family: u8) -> usize {
    if family == 4 {
        (n / 10).min(512)
    } else {
        n / 10
    }
}

/// `n` distinct prefixes, `in_region` of them drawn by `region` and the rest by
/// `elsewhere`, each listed by a random order.
fn distinct(
    n: usize,
    in_region: usize,
    rng: &mut SmallRng,
    mut region: impl FnMut(&mut SmallRng) -> Prefix,
    mut elsewhere: impl FnMut(&mut SmallRng) -> Prefix,
) -> Vec<(Prefix, usize)> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let p = if out.len() < in_region {
            region(rng)
        } else {
            elsewhere(rng)
        };
        if seen.insert(p) {
            out.push((p, rng.random_range(0..ORDERS)));
        }
    }
    out
}

/// Spread: mixed lengths (IPv4 /20 to /32, IPv6 /48 to /128) over the unicast space,
/// listed by 100 orders.
pub fn spread(family: u8, n: usize, rng: &mut SmallRng) -> Shape {
    let slice = region_slice(n, family);
    let listed = if family == 4 {
        distinct(
            n,
            slice,
            rng,
            |r| v4(v4_in_region(r), pick_len(r, &V4_SPREAD_MIX)),
            |r| v4(v4_elsewhere(r), pick_len(r, &V4_SPREAD_MIX)),
        )
    } else {
        distinct(
            n,
            slice,
            rng,
            |r| v6(v6_in_region(r), pick_len(r, &V6_SPREAD_MIX)),
            |r| v6(v6_elsewhere(r), pick_len(r, &V6_SPREAD_MIX)),
        )
    };
    Shape::new("spread", listed, Vec::new())
}

/// Exact: hosts only (/32 or /128), listed by 100 orders.
pub fn exact(family: u8, n: usize, rng: &mut SmallRng) -> Shape {
    let slice = region_slice(n, family);
    let listed = if family == 4 {
        distinct(
            n,
            slice,
            rng,
            |r| v4(v4_in_region(r), 32),
            |r| v4(v4_elsewhere(r), 32),
        )
    } else {
        distinct(
            n,
            slice,
            rng,
            |r| v6(v6_in_region(r), 128),
            |r| v6(v6_elsewhere(r), 128),
        )
    };
    Shape::new("exact", listed, Vec::new())
}

/// Crowded: `n` prefixes in `blocks` /24s (IPv6: /48s) of the region. Each block holds
/// entries longer than itself from 25 of the 100 orders; half the blocks are listed
/// whole by an order drawn at random, and some /22s and /20s (IPv6: /44s and /40s) over
/// them by random orders too; each block has a few exceptions inside (hosts and small networks),
/// some of them under longer entries of orders, which still block.
pub fn crowded(family: u8, n: usize, blocks: usize, rng: &mut SmallRng) -> Shape {
    let (block_len, max_len): (u8, u8) = if family == 4 { (24, 32) } else { (48, 128) };
    let region_blocks: u64 = if family == 4 { 512 } else { 1 << 15 };
    let block_prefix = |i: u64, len: u8| -> Prefix {
        if family == 4 {
            v4(V4_REGION.0 | ((i as u32) << 8), len)
        } else {
            v6(V6_REGION.0 | (u128::from(i) << 80), len)
        }
    };
    let inside = |block: &Prefix, len: u8, r: &mut SmallRng| -> Prefix {
        let host_bits = u32::from(max_len - block_len);
        match block.addr() {
            IpAddr::V4(a) => v4(u32::from(a) | (r.random::<u32>() >> (32 - host_bits)), len),
            IpAddr::V6(a) => v6(
                u128::from(a) | (r.random::<u128>() >> (128 - host_bits)),
                len,
            ),
        }
    };
    let mix: &[(u8, u32)] = if family == 4 {
        &V4_CROWDED_MIX
    } else {
        &V6_CROWDED_MIX
    };
    let mut indices: Vec<u64> = (0..region_blocks).collect();
    indices.shuffle(rng);
    indices.truncate(blocks);
    indices.sort_unstable();

    let mut seen = HashSet::new();
    let mut listed: Vec<(Prefix, usize)> = Vec::with_capacity(n);
    let mut exceptions = Vec::new();
    let mut all_orders: Vec<usize> = (0..ORDERS).collect();
    // Covering prefixes: half the blocks whole, and some broader ones, by random orders.
    for (k, &i) in indices.iter().enumerate() {
        let block = block_prefix(i, block_len);
        if k % 2 == 0 && seen.insert(block) {
            listed.push((block, rng.random_range(0..ORDERS)));
        }
        let broader: [(usize, u8); 2] = if family == 4 {
            [(8, 22), (32, 20)]
        } else {
            [(8, 44), (32, 40)]
        };
        for (every, len) in broader {
            let p = block_prefix(i, len);
            if k % every == 1 && seen.insert(p) {
                listed.push((p, rng.random_range(0..ORDERS)));
            }
        }
    }
    let per_block = (n - listed.len()).div_ceil(blocks);
    for &i in &indices {
        let block = block_prefix(i, block_len);
        all_orders.shuffle(rng);
        let orders = &all_orders[..25];
        let mut here = 0;
        let mut tries = 0;
        while here < per_block && listed.len() < n && tries < 100 * per_block {
            tries += 1;
            let p = inside(&block, pick_len(rng, mix), rng);
            if seen.insert(p) {
                listed.push((p, orders[rng.random_range(0..orders.len())]));
                here += 1;
            }
        }
        // Exceptions: three hosts and two small networks per block.
        for len in [max_len, max_len, max_len, max_len - 2, max_len - 4] {
            exceptions.push(inside(&block, len, rng));
        }
    }
    exceptions.sort_unstable();
    exceptions.dedup();
    Shape::new("crowded", listed, exceptions)
}
