//! Building the Poptrie (`filter_common::poptrie`) from a family's entries: the direct
//! table, the nodes and the leaves, leaf-pushed and leaf-compressed. The first step of
//! issue 16's fast path (`docs/fastpath.md`): built here, checked against a plain
//! longest-prefix match; not yet in the data plane.

pub mod update;

use filter_common::poptrie::{
    node_width, PopMemory, PopNode, DIRECT_BITS, DIRECT_NODE, MAX_SKIP, NO_LEAF, SKIP, STRIDE, V6,
};

/// The child index of `addr` (a `bits`-wide integer) in a node at `depth`, and the node's
/// width.
fn child_index(addr: u128, bits: u32, depth: u32) -> (u32, u32) {
    let width = node_width(bits, depth);
    let from = DIRECT_BITS + depth * STRIDE;
    let shift = bits - from - width;
    (((addr >> shift) as u32) & ((1 << width) - 1), width)
}

/// One prefix of a family: the network as a big-endian integer, its length, its leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Item {
    pub addr: u128,
    pub len: u8,
    pub leaf: u16,
}

/// A family's structure, as the maps would hold it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PopTrie {
    /// 32 or 128.
    pub bits: u32,
    pub direct: Vec<u32>,
    pub nodes: Vec<PopNode>,
    pub leaves: Vec<u16>,
}

impl PopMemory for PopTrie {
    fn direct(&self, index: u32) -> Option<u32> {
        self.direct.get(index as usize).copied()
    }
    fn node(&self, index: u32) -> Option<PopNode> {
        self.nodes.get(index as usize).copied()
    }
    fn leaf(&self, index: u32) -> Option<u16> {
        self.leaves.get(index as usize).copied()
    }
}

impl PopTrie {
    /// The leaf of the longest prefix covering `addr` (the family's address as an
    /// integer), through the same lookup the program runs.
    pub fn lookup(&self, addr: u128) -> Option<u16> {
        if self.bits == 32 {
            filter_common::poptrie::lookup(self, addr as u32)
        } else {
            filter_common::poptrie::lookup(self, V6((addr >> 64) as u64, addr as u64))
        }
    }

    /// Bytes the maps would take: 4 per direct word, 24 per node, 2 per leaf.
    pub fn bytes(&self) -> usize {
        self.direct.len() * 4 + self.nodes.len() * 24 + self.leaves.len() * 2
    }
}

/// The network's first `len` bits of `addr`, as an offset inside a block starting at bit
/// `from`: the prefix covers children `first..first + count` of a node spanning `width`
/// bits from bit `from`.
fn span(item: &Item, bits: u32, from: u32, width: u32) -> (usize, usize) {
    let first = (item.addr >> (bits - from - width)) as u64 & ((1u64 << width) - 1);
    let count = 1usize << (from + width - u32::from(item.len));
    (first as usize, count)
}

/// Builds the structure of one family from its prefixes (any order; a prefix listed twice
/// keeps its last leaf).
pub fn build(items: &[Item], bits: u32) -> PopTrie {
    let mut items = items.to_vec();
    items.sort_by_key(|i| (i.addr, i.len));
    items.dedup_by(|later, earlier| {
        let same = later.addr == earlier.addr && later.len == earlier.len;
        if same {
            earlier.leaf = later.leaf;
        }
        same
    });
    let mut t = PopTrie {
        bits,
        direct: vec![u32::from(NO_LEAF); 1 << DIRECT_BITS],
        nodes: Vec::new(),
        leaves: Vec::new(),
    };
    // Prefixes of the direct table's length or shorter: expanded into it, shorter first
    // so that longer ones overwrite them.
    let mut short: Vec<&Item> = items
        .iter()
        .filter(|i| u32::from(i.len) <= DIRECT_BITS)
        .collect();
    short.sort_by_key(|i| i.len);
    for item in short {
        let (first, count) = span(item, bits, 0, DIRECT_BITS);
        for w in &mut t.direct[first..first + count] {
            *w = u32::from(item.leaf);
        }
    }
    // Blocks with longer prefixes get a subtree.
    let long: Vec<Item> = items
        .into_iter()
        .filter(|i| u32::from(i.len) > DIRECT_BITS)
        .collect();
    let mut start = 0;
    while start < long.len() {
        let block = (long[start].addr >> (bits - DIRECT_BITS)) as usize;
        let mut end = start;
        while end < long.len() && (long[end].addr >> (bits - DIRECT_BITS)) as usize == block {
            end += 1;
        }
        let inherited = t.direct[block] as u16;
        let root = t.nodes.len() as u32;
        t.nodes.push(PopNode::default());
        build_node(&mut t, root, &long[start..end], 0, inherited);
        t.direct[block] = DIRECT_NODE | root;
        start = end;
    }
    t
}

/// Fills node `at` (already allocated) at `depth`, whose block's covering leaf is
/// `inherited`, from `items`: the prefixes inside its block longer than its start.
pub(crate) fn build_node(t: &mut PopTrie, at: u32, items: &[Item], depth: u32, inherited: u16) {
    let bits = t.bits;
    let levels = pass_through(items, bits, depth);
    if levels >= 2 {
        // Path compression: `levels` nodes that would each hold one internal child and
        // leaves of `inherited` become one skip node.
        let width = levels * STRIDE;
        let from = DIRECT_BITS + depth * STRIDE;
        let path = (items[0].addr >> (bits - from - width)) as u64
            & if width >= 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
        let leaf = t.leaves.len() as u32;
        t.leaves.push(inherited);
        let next = t.nodes.len() as u32;
        t.nodes.push(PopNode::default());
        t.nodes[at as usize] = PopNode {
            vector: path,
            leafvec: u64::from(levels),
            base0: leaf,
            base1: SKIP | next,
        };
        build_node(t, next, items, depth + levels, inherited);
        return;
    }
    let from = DIRECT_BITS + depth * STRIDE;
    let (_, width) = child_index(items[0].addr, bits, depth);
    let children = 1usize << width;
    let end = from + width;
    // Each child's covering leaf (longest prefix ending within this node's bits).
    let mut best: Vec<(u8, u16)> = vec![(0, inherited); children];
    let mut internal = vec![false; children];
    for item in items {
        if u32::from(item.len) <= end {
            let (first, count) = span(item, bits, from, width);
            for b in &mut best[first..first + count] {
                if item.len > b.0 {
                    *b = (item.len, item.leaf);
                }
            }
        } else {
            let (i, _) = child_index(item.addr, bits, depth);
            internal[i as usize] = true;
        }
    }
    let mut node = PopNode {
        base0: t.leaves.len() as u32,
        base1: t.nodes.len() as u32,
        ..PopNode::default()
    };
    let mut previous: Option<u16> = None;
    for (i, (&(_, leaf), &is_node)) in best.iter().zip(&internal).enumerate() {
        if is_node {
            node.vector |= 1 << i;
        } else if previous != Some(leaf) {
            node.leafvec |= 1 << i;
            t.leaves.push(leaf);
            previous = Some(leaf);
        }
    }
    // The children are contiguous: allocated together, then each filled.
    let first_child = t.nodes.len() as u32;
    let internal_count = internal.iter().filter(|x| **x).count();
    t.nodes
        .extend(std::iter::repeat_n(PopNode::default(), internal_count));
    t.nodes[at as usize] = node;
    let mut k = 0;
    let mut i = 0;
    while i < items.len() {
        if u32::from(items[i].len) <= end {
            i += 1;
            continue;
        }
        let (child, _) = child_index(items[i].addr, bits, depth);
        let mut j = i;
        while j < items.len() && child_index(items[j].addr, bits, depth).0 == child {
            j += 1;
        }
        let inside: Vec<Item> = items[i..j]
            .iter()
            .filter(|x| u32::from(x.len) > end)
            .copied()
            .collect();
        build_node(
            t,
            first_child + k,
            &inside,
            depth + 1,
            best[child as usize].1,
        );
        k += 1;
        i = j;
    }
}

/// How many levels from `depth` on `items` pass straight through (every item longer
/// than the level and on the same child), at most [`MAX_SKIP`] and never the last level
/// of the address.
fn pass_through(items: &[Item], bits: u32, depth: u32) -> u32 {
    let shortest = items.iter().map(|i| u32::from(i.len)).min().unwrap_or(0);
    let (first, last) = (
        items.iter().map(|i| i.addr).min().unwrap_or(0),
        items.iter().map(|i| i.addr).max().unwrap_or(0),
    );
    let mut levels = 0;
    while levels < MAX_SKIP {
        let d = depth + levels;
        let end = DIRECT_BITS + d * STRIDE + node_width(bits, d);
        if end >= bits || shortest <= end {
            break;
        }
        // Sorted addresses: all share the level's bits if the least and the greatest do.
        let shift = bits - end;
        if first >> shift != last >> shift {
            break;
        }
        levels += 1;
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    fn mask(addr: u128, len: u8, bits: u32) -> u128 {
        if len == 0 {
            0
        } else {
            let keep = u128::MAX << (128 - u32::from(len));
            ((addr << (128 - bits)) & keep) >> (128 - bits)
        }
    }

    /// The plain answer: the longest prefix covering `addr`.
    fn naive(items: &[Item], addr: u128, bits: u32) -> u16 {
        items
            .iter()
            .filter(|i| mask(addr, i.len, bits) == i.addr)
            .max_by_key(|i| i.len)
            .map_or(NO_LEAF, |i| i.leaf)
    }

    fn random_items(rng: &mut SmallRng, bits: u32, n: usize, around: &[u128]) -> Vec<Item> {
        (0..n)
            .map(|_| {
                let len = match bits {
                    32 => rng.random_range(0..=32u8),
                    _ => *[
                        0u8, 8, 16, 20, 32, 33, 40, 47, 48, 56, 63, 64, 65, 96, 127, 128,
                    ]
                    .get(rng.random_range(0..16))
                    .expect("in range"),
                };
                let base = around[rng.random_range(0..around.len())];
                let noise: u128 = rng.random::<u128>() >> (128 - bits + rng.random_range(0..bits));
                let addr = (base ^ noise) & (u128::MAX >> (128 - bits));
                Item {
                    addr: mask(addr, len, bits),
                    len,
                    leaf: rng.random_range(1..200),
                }
            })
            .collect()
    }

    fn dedup_last(items: &[Item]) -> Vec<Item> {
        let mut out: Vec<Item> = Vec::new();
        for i in items {
            out.retain(|o| !(o.addr == i.addr && o.len == i.len));
            out.push(*i);
        }
        out
    }

    #[test]
    fn lookups_equal_the_longest_prefix_match_on_random_nested_lists() {
        let mut rng = SmallRng::seed_from_u64(16);
        for bits in [32u32, 128] {
            for round in 0..60 {
                let around: Vec<u128> = (0..3)
                    .map(|_| rng.random::<u128>() & (u128::MAX >> (128 - bits)))
                    .collect();
                let items = random_items(&mut rng, bits, 1 + round * 5, &around);
                let t = build(&items, bits);
                let items = dedup_last(&items);
                for _ in 0..400 {
                    let probe = if rng.random_bool(0.8) {
                        let i = items[rng.random_range(0..items.len())];
                        let host: u128 =
                            rng.random::<u128>() >> (128 - bits + u32::from(i.len).min(bits - 1));
                        i.addr | (host & (u128::MAX >> (128 - bits)))
                    } else {
                        rng.random::<u128>() & (u128::MAX >> (128 - bits))
                    };
                    assert_eq!(
                        t.lookup(probe),
                        Some(naive(&items, probe, bits)),
                        "bits {bits}, round {round}, addr {probe:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn runs_of_equal_leaves_share_one_leaf_and_depth_is_bounded() {
        // A /24 of one leaf inside a /16 of another: the /16's node holds one run before
        // and one after the /24's child... all 64 children of the /18 below are leaves.
        let items = [
            Item {
                addr: 0xc633_0000,
                len: 16,
                leaf: 1,
            },
            Item {
                addr: 0xc633_6400,
                len: 24,
                leaf: 2,
            },
            Item {
                addr: 0xc633_6407,
                len: 32,
                leaf: 3,
            },
        ];
        let t = build(&items, 32);
        assert_eq!(t.nodes.len(), 3, "a node per level down to the /32");
        assert_eq!(t.lookup(0xc633_6407), Some(3));
        assert_eq!(t.lookup(0xc633_6408), Some(2));
        assert_eq!(t.lookup(0xc633_6508), Some(1));
        assert_eq!(t.lookup(0xc634_0000), Some(NO_LEAF));
        // Leaves: node 0 has runs [1][2-subtree? no: internal][1]: the run of 1 continues
        // across the internal child; every leaf array stays small.
        assert!(t.leaves.len() <= 6, "{:?}", t.leaves);
    }
}

/// Both families' structures and the table of distinct entries their leaves index
/// (leaf `n` is `table[n - 1]`), from the entries the compiler produced.
pub fn from_entries(
    entries: &std::collections::BTreeMap<crate::prefix::Prefix, filter_common::Entry>,
) -> (PopTrie, PopTrie, Vec<filter_common::Entry>) {
    let table: Vec<filter_common::Entry> = entries
        .values()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        table.len() < usize::from(u16::MAX),
        "more distinct entries than leaves can name"
    );
    let leaf = |e: &filter_common::Entry| -> u16 {
        table.binary_search(e).expect("in the table") as u16 + 1
    };
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (p, e) in entries {
        match p.addr() {
            std::net::IpAddr::V4(a) => v4.push(Item {
                addr: u128::from(u32::from(a)),
                len: p.length(),
                leaf: leaf(e),
            }),
            std::net::IpAddr::V6(a) => v6.push(Item {
                addr: u128::from(a),
                len: p.length(),
                leaf: leaf(e),
            }),
        }
    }
    (build(&v4, 32), build(&v6, 128), table)
}

#[cfg(test)]
mod entry_tests {
    use std::{collections::BTreeMap, net::IpAddr};

    use super::*;
    use crate::prefix::Prefix;
    use filter_common::Entry;

    #[test]
    fn the_entries_of_a_list_are_found_as_the_lpm_trie_would() {
        let mut entries: BTreeMap<Prefix, Entry> = BTreeMap::new();
        for (p, d, s) in [
            ("198.51.100.0/24", 2, 2),
            ("198.51.100.53/32", 1, 1),
            ("203.0.113.0/25", 3, 0),
            ("2001:db8:66::/48", 2, 2),
            ("2001:db8:66::53/128", 1, 1),
        ] {
            entries.insert(
                p.parse().unwrap(),
                Entry {
                    dst_rule: d,
                    src_rule: s,
                },
            );
        }
        let (v4, v6, table) = from_entries(&entries);
        let find = |addr: &str| -> Option<Entry> {
            let a: IpAddr = addr.parse().unwrap();
            let leaf = match a {
                IpAddr::V4(a) => v4.lookup(u128::from(u32::from(a))),
                IpAddr::V6(a) => v6.lookup(u128::from(a)),
            }
            .expect("complete memory");
            (leaf != NO_LEAF).then(|| table[usize::from(leaf) - 1])
        };
        assert_eq!(
            find("198.51.100.7"),
            Some(Entry {
                dst_rule: 2,
                src_rule: 2
            })
        );
        assert_eq!(
            find("198.51.100.53"),
            Some(Entry {
                dst_rule: 1,
                src_rule: 1
            })
        );
        assert_eq!(
            find("203.0.113.7"),
            Some(Entry {
                dst_rule: 3,
                src_rule: 0
            })
        );
        assert_eq!(find("203.0.113.200"), None);
        assert_eq!(
            find("2001:db8:66::1"),
            Some(Entry {
                dst_rule: 2,
                src_rule: 2
            })
        );
        assert_eq!(
            find("2001:db8:66::53"),
            Some(Entry {
                dst_rule: 1,
                src_rule: 1
            })
        );
        assert_eq!(find("2001:db8:77::1"), None);
        assert_eq!(table.len(), 3);
    }
}

#[cfg(test)]
mod scale {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    /// How long a whole build takes and how big it is, on a million spread IPv4 prefixes
    /// and 100,000 IPv6 ones (`cargo test --release -- --ignored poptrie::scale`).
    #[test]
    #[ignore]
    fn build_time_and_size() {
        let mut rng = SmallRng::seed_from_u64(1);
        let lens = [20u8, 22, 24, 24, 28, 32, 32, 32, 32, 32];
        let v4: Vec<Item> = (0..1_000_000)
            .map(|_| {
                let len = lens[rng.random_range(0..10)];
                let a: u32 = rng.random_range(0x0100_0000..0xe000_0000);
                Item {
                    addr: u128::from(a & (u32::MAX << (32 - len))),
                    len,
                    leaf: rng.random_range(1..101),
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let t = build(&v4, 32);
        eprintln!(
            "v4 1M: {:?}, {} nodes, {} leaves, {:.1} MiB, {:.1} B/prefix",
            started.elapsed(),
            t.nodes.len(),
            t.leaves.len(),
            t.bytes() as f64 / 1048576.0,
            t.bytes() as f64 / 1e6
        );
        let lens6 = [32u8, 40, 48, 48, 56, 64, 64, 128, 128, 128];
        let v6: Vec<Item> = (0..100_000)
            .map(|_| {
                let len = lens6[rng.random_range(0..10)];
                let a: u128 = (0x2001_0db8u128 << 96) | (rng.random::<u128>() >> 32);
                Item {
                    addr: a & (u128::MAX << (128 - u32::from(len))),
                    len,
                    leaf: rng.random_range(1..101),
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let t = build(&v6, 128);
        eprintln!(
            "v6 100k: {:?}, {} nodes, {} leaves, {:.1} MiB, {:.1} B/prefix",
            started.elapsed(),
            t.nodes.len(),
            t.leaves.len(),
            t.bytes() as f64 / 1048576.0,
            t.bytes() as f64 / 1e5
        );
    }
}
