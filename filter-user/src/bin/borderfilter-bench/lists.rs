//! Prefix sets with realistic length mixes, and addresses drawn from inside them.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_common::Entry;
use filter_user::prefix::Prefix;
use rand::{rngs::SmallRng, Rng, SeedableRng};

pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// IPv4 lengths as court orders list them, in parts per 10,000: mostly single hosts
/// and /24s, a few hosting ranges, very few /16s (a /16 is 65,536 subscribers' worth of
/// destinations; orders rarely reach that far).
const V4_MIX: [(u8, u32); 7] = [
    (32, 6049),
    (24, 2500),
    (28, 800),
    (30, 400),
    (22, 200),
    (20, 50),
    (16, 1),
];
/// IPv6: /48 sites, /56 and /64 networks, some hosts and whole /32 allocations.
const V6_MIX: [(u8, u32); 5] = [(48, 40), (64, 25), (56, 20), (128, 10), (32, 5)];

/// A prefix length drawn from `mix` (length, weight).
pub fn pick_len(rng: &mut SmallRng, mix: &[(u8, u32)]) -> u8 {
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (len, w) in mix {
        if x < *w {
            return *len;
        }
        x -= w;
    }
    mix[0].0
}

/// A unicast IPv4 address, clear of the ranges borderfilter always protects.
fn unicast_v4(rng: &mut SmallRng) -> u32 {
    loop {
        let a: u32 = rng.random();
        let first = a >> 24;
        if (1..224).contains(&first) && first != 127 && (a >> 16) != 0xa9fe {
            return a;
        }
    }
}

/// `n` distinct IPv4 prefixes spread over the unicast space (for classification: no
/// packet is ever sent to them).
pub fn v4_spread(n: usize, rng: &mut SmallRng) -> Vec<Prefix> {
    let mut set = std::collections::HashSet::with_capacity(n);
    while set.len() < n {
        let len = pick_len(rng, &V4_MIX);
        set.insert(Prefix::new_truncating(
            IpAddr::V4(Ipv4Addr::from(unicast_v4(rng))),
            len,
        ));
    }
    set.into_iter().collect()
}

/// `n` distinct IPv4 prefixes inside `net/len` (the live-traffic benchmarks keep the bulk
/// in 240.0.0.0/5, which is never sent to).
pub fn v4_within(n: usize, net: u32, net_len: u8, rng: &mut SmallRng) -> Vec<Prefix> {
    let mut set = std::collections::HashSet::with_capacity(n);
    while set.len() < n {
        let len = pick_len(rng, &V4_MIX).max(net_len + 2);
        let host = rng.random::<u32>() >> net_len;
        set.insert(Prefix::new_truncating(
            IpAddr::V4(Ipv4Addr::from(net | host)),
            len,
        ));
    }
    set.into_iter().collect()
}

/// `n` distinct IPv6 prefixes in 2000::/3.
pub fn v6_spread(n: usize, rng: &mut SmallRng) -> Vec<Prefix> {
    let mut set = std::collections::HashSet::with_capacity(n);
    while set.len() < n {
        let len = pick_len(rng, &V6_MIX);
        let a = (0x2u128 << 125) | (rng.random::<u128>() >> 3);
        set.insert(Prefix::new_truncating(IpAddr::V6(Ipv6Addr::from(a)), len));
    }
    set.into_iter().collect()
}

/// A random address inside `p`.
pub fn inside(p: &Prefix, rng: &mut SmallRng) -> IpAddr {
    match p.addr() {
        IpAddr::V4(a) => {
            let host = rng
                .random::<u32>()
                .checked_shr(u32::from(p.length()))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
        }
        IpAddr::V6(a) => {
            let host = rng
                .random::<u128>()
                .checked_shr(u32::from(p.length()))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
        }
    }
}

/// Entries that drop, both ways, under rule 2.
pub fn dropping(prefixes: &[Prefix]) -> BTreeMap<Prefix, Entry> {
    prefixes
        .iter()
        .map(|p| {
            (
                *p,
                Entry {
                    dst_rule: 2,
                    src_rule: 2,
                },
            )
        })
        .collect()
}
