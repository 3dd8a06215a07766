//! Changing a built Poptrie one direct-table block at a time, the way the program can
//! read it meanwhile: a block's new subtree is written into free node and leaf ranges,
//! then the block's direct word is switched to it (one aligned 32-bit store); the old
//! ranges are quarantined before they are reused, so a lookup that read the old direct
//! word finishes on intact memory.

use std::time::{Duration, Instant};

use filter_common::poptrie::{PopNode, DIRECT_BITS, DIRECT_NODE, SKIP};

use super::{build_node, Item, PopTrie};

/// How long freed ranges wait before reuse: far longer than any lookup takes.
pub const QUARANTINE: Duration = Duration::from_secs(1);

/// A range of an array: first index and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub len: u32,
}

/// Free ranges of one array, first fit, merged with their neighbours.
#[derive(Clone, Debug, Default)]
pub struct Free {
    /// By start.
    ranges: std::collections::BTreeMap<u32, u32>,
    /// Freed but maybe still read.
    quarantine: Vec<(Instant, Range)>,
    /// The array's length: ranges beyond it are taken by growing it.
    pub end: u32,
}

impl Free {
    /// Releases quarantined ranges freed before `now - QUARANTINE`.
    pub fn release(&mut self, now: Instant) {
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .quarantine
            .drain(..)
            .partition(|(at, _)| now.duration_since(*at) >= QUARANTINE);
        self.quarantine = waiting;
        for (_, r) in ready {
            self.insert(r);
        }
    }

    fn insert(&mut self, r: Range) {
        let (mut start, mut len) = (r.start, r.len);
        if let Some((&s, &l)) = self.ranges.range(..start).next_back() {
            if s + l == start {
                self.ranges.remove(&s);
                start = s;
                len += l;
            }
        }
        if let Some(&l) = self.ranges.get(&(start + len)) {
            self.ranges.remove(&(start + len));
            len += l;
        }
        self.ranges.insert(start, len);
    }

    /// A range of `len`, from the free ranges or the end of the array.
    pub fn take(&mut self, len: u32) -> Range {
        if len == 0 {
            return Range { start: 0, len: 0 };
        }
        let found = self
            .ranges
            .iter()
            .find(|(_, l)| **l >= len)
            .map(|(s, l)| (*s, *l));
        match found {
            Some((s, l)) => {
                self.ranges.remove(&s);
                if l > len {
                    self.ranges.insert(s + len, l - len);
                }
                Range { start: s, len }
            }
            None => {
                let r = Range {
                    start: self.end,
                    len,
                };
                self.end += len;
                r
            }
        }
    }

    /// Frees `r` once the quarantine is over.
    pub fn give_back(&mut self, r: Range, now: Instant) {
        if r.len > 0 {
            self.quarantine.push((now, r));
        }
    }
}

/// One write to the maps, in the order they must be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Node(u32, PopNode),
    Leaf(u32, u16),
    /// Last: switches the block to what the writes before it put in place.
    Direct(u32, u32),
}

/// A Poptrie changed block by block, with where each block's subtree lives.
#[derive(Clone, Debug)]
pub struct Updatable {
    pub trie: PopTrie,
    /// Each block's node and leaf ranges.
    pub blocks: std::collections::HashMap<u32, (Range, Range)>,
    pub free_nodes: Free,
    pub free_leaves: Free,
}

impl Updatable {
    /// An empty structure of a family (`bits`: 32 or 128).
    pub fn new(bits: u32) -> Self {
        Self {
            trie: PopTrie {
                bits,
                direct: vec![0; 1 << DIRECT_BITS],
                nodes: Vec::new(),
                leaves: Vec::new(),
            },
            blocks: Default::default(),
            free_nodes: Free::default(),
            free_leaves: Free::default(),
        }
    }

    /// Makes direct block `block` answer as `items` say (the prefixes longer than the
    /// direct table inside it) over `inherited` (the leaf of the longest prefix covering
    /// the whole block, or 0). Returns the writes that make it so in the maps, in order;
    /// they are also made to `self.trie`.
    pub fn set_block(
        &mut self,
        block: u32,
        items: &[Item],
        inherited: u16,
        now: Instant,
    ) -> Vec<Write> {
        self.free_nodes.release(now);
        self.free_leaves.release(now);
        let mut writes = Vec::new();
        let word = if items.is_empty() {
            u32::from(inherited)
        } else {
            let mut scratch = PopTrie {
                bits: self.trie.bits,
                direct: Vec::new(),
                nodes: vec![PopNode::default()],
                leaves: Vec::new(),
            };
            let mut sorted = items.to_vec();
            sorted.sort_by_key(|i| (i.addr, i.len));
            build_node(&mut scratch, 0, &sorted, 0, inherited);
            let nodes = self.free_nodes.take(scratch.nodes.len() as u32);
            let leaves = self.free_leaves.take(scratch.leaves.len() as u32);
            grow(&mut self.trie.nodes, self.free_nodes.end);
            grow(&mut self.trie.leaves, self.free_leaves.end);
            for (i, n) in scratch.nodes.iter().enumerate() {
                let n = PopNode {
                    base0: n.base0 + leaves.start,
                    base1: n.base1 + nodes.start,
                    ..*n
                };
                let at = nodes.start + i as u32;
                self.trie.nodes[at as usize] = n;
                writes.push(Write::Node(at, n));
            }
            for (i, l) in scratch.leaves.iter().enumerate() {
                let at = leaves.start + i as u32;
                self.trie.leaves[at as usize] = *l;
                writes.push(Write::Leaf(at, *l));
            }
            if let Some(old) = self.blocks.insert(block, (nodes, leaves)) {
                self.retire(old, now);
            }
            DIRECT_NODE | nodes.start
        };
        if word & DIRECT_NODE == 0 {
            if let Some(old) = self.blocks.remove(&block) {
                self.retire(old, now);
            }
        }
        self.trie.direct[block as usize] = word;
        writes.push(Write::Direct(block, word));
        writes
    }

    fn retire(&mut self, (nodes, leaves): (Range, Range), now: Instant) {
        self.free_nodes.give_back(nodes, now);
        self.free_leaves.give_back(leaves, now);
    }
}

impl Updatable {
    /// Takes up a structure already in the maps (a restarted daemon's pinned arrays):
    /// walks every block's subtree to find the node and leaf ranges it uses; everything
    /// else in the arrays is free at once (nothing reads it). A block whose nodes or
    /// leaves are not one contiguous range, or that points outside the arrays, is an
    /// error: the structure is then built afresh.
    pub fn from_trie(trie: PopTrie) -> Result<Self, String> {
        let mut blocks = std::collections::HashMap::new();
        for (block, word) in trie.direct.iter().enumerate() {
            if word & DIRECT_NODE == 0 {
                continue;
            }
            let (nodes, leaves) = walk(&trie, word & !DIRECT_NODE)
                .map_err(|e| format!("direct block {block}: {e}"))?;
            blocks.insert(
                block as u32,
                (contiguous(&nodes, "nodes")?, contiguous(&leaves, "leaves")?),
            );
        }
        let free = |len: usize, used: &mut dyn Iterator<Item = Range>| {
            let mut taken: Vec<Range> = used.filter(|r| r.len > 0).collect();
            taken.sort_by_key(|r| r.start);
            let mut f = Free {
                end: len as u32,
                ..Free::default()
            };
            let mut at = 0;
            for r in taken {
                if r.start > at {
                    f.insert(Range {
                        start: at,
                        len: r.start - at,
                    });
                }
                at = at.max(r.start + r.len);
            }
            if (at as usize) < len {
                f.insert(Range {
                    start: at,
                    len: len as u32 - at,
                });
            }
            f
        };
        let free_nodes = free(trie.nodes.len(), &mut blocks.values().map(|(n, _)| *n));
        let free_leaves = free(trie.leaves.len(), &mut blocks.values().map(|(_, l)| *l));
        Ok(Self {
            trie,
            blocks,
            free_nodes,
            free_leaves,
        })
    }
}

/// Every node and leaf index under node `root`.
fn walk(trie: &PopTrie, root: u32) -> Result<(Vec<u32>, Vec<u32>), String> {
    let (mut nodes, mut leaves) = (Vec::new(), Vec::new());
    let mut stack = vec![root];
    while let Some(at) = stack.pop() {
        let n = trie
            .nodes
            .get(at as usize)
            .ok_or_else(|| format!("node {at} is outside the {} nodes", trie.nodes.len()))?;
        nodes.push(at);
        if n.base1 & SKIP != 0 {
            leaves.push(n.base0);
            stack.push(n.base1 & !SKIP);
            continue;
        }
        leaves.extend((0..n.leafvec.count_ones()).map(|k| n.base0 + k));
        stack.extend((0..n.vector.count_ones()).map(|k| n.base1 + k));
        if nodes.len() > trie.nodes.len() {
            return Err("a loop among the nodes".into());
        }
    }
    if let Some(l) = leaves.iter().find(|l| **l as usize >= trie.leaves.len()) {
        return Err(format!(
            "leaf {l} is outside the {} leaves",
            trie.leaves.len()
        ));
    }
    Ok((nodes, leaves))
}

/// The one range `indices` make up.
fn contiguous(indices: &[u32], what: &str) -> Result<Range, String> {
    let (Some(&min), Some(&max)) = (indices.iter().min(), indices.iter().max()) else {
        return Ok(Range { start: 0, len: 0 });
    };
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() as u32 != max - min + 1 {
        return Err(format!(
            "its {what} are not one range ({} of {min}..={max})",
            sorted.len()
        ));
    }
    Ok(Range {
        start: min,
        len: max - min + 1,
    })
}

fn grow<T: Default + Clone>(v: &mut Vec<T>, len: u32) {
    if v.len() < len as usize {
        v.resize(len as usize, T::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poptrie::build;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    fn block_items(items: &[Item], bits: u32, block: u32) -> Vec<Item> {
        items
            .iter()
            .filter(|i| {
                u32::from(i.len) > DIRECT_BITS && (i.addr >> (bits - DIRECT_BITS)) as u32 == block
            })
            .copied()
            .collect()
    }

    #[test]
    fn block_by_block_changes_answer_like_a_fresh_build_and_reuse_only_after_quarantine() {
        let mut rng = SmallRng::seed_from_u64(3);
        let bits = 32;
        let blocks = [0xc633u32, 0xcb00, 0x0a01];
        let mut u = Updatable::new(bits);
        let mut items: Vec<Item> = Vec::new();
        let mut freed: Vec<(Instant, (Range, Range))> = Vec::new();
        let t0 = Instant::now();
        for round in 0..200u32 {
            let now = t0 + Duration::from_millis(u64::from(round) * 300);
            let block = blocks[rng.random_range(0..blocks.len())];
            // Replace the block's long prefixes with a fresh random set.
            items.retain(|i| (i.addr >> 16) as u32 != block);
            for _ in 0..rng.random_range(0..40) {
                let len = rng.random_range(17..=32u8);
                let addr =
                    ((block << 16) | (rng.random::<u32>() & 0xffff)) & (u32::MAX << (32 - len));
                items.retain(|i| !(i.addr == u128::from(addr) && i.len == len));
                items.push(Item {
                    addr: u128::from(addr),
                    len,
                    leaf: rng.random_range(1..50),
                });
            }
            let mine = block_items(&items, bits, block);
            let live: Vec<(Range, Range)> = u.blocks.values().copied().collect();
            let writes = u.set_block(block, &mine, 0, now);
            assert!(matches!(writes.last(), Some(Write::Direct(b, _)) if *b == block));
            // Nothing a lookup may still be reading is overwritten: not a range any block
            // used before this change (the changed block's old one included), nor one
            // freed less than the quarantine ago.
            freed.retain(|(at, _)| now.duration_since(*at) < QUARANTINE);
            let inside = |r: &Range, i: u32| r.start <= i && i < r.start + r.len;
            for w in &writes {
                match w {
                    Write::Node(at, _) => {
                        assert!(
                            !live.iter().any(|(n, _)| inside(n, *at)),
                            "round {round}: node {at} in use"
                        );
                        assert!(
                            !freed.iter().any(|(_, (n, _))| inside(n, *at)),
                            "round {round}: node {at} freed too recently"
                        );
                    }
                    Write::Leaf(at, _) => {
                        assert!(
                            !live.iter().any(|(_, l)| inside(l, *at)),
                            "round {round}: leaf {at} in use"
                        );
                        assert!(
                            !freed.iter().any(|(_, (_, l))| inside(l, *at)),
                            "round {round}: leaf {at} freed too recently"
                        );
                    }
                    Write::Direct(..) => {}
                }
            }
            let now_live: Vec<(Range, Range)> = u.blocks.values().copied().collect();
            freed.extend(
                live.into_iter()
                    .filter(|r| !now_live.contains(r))
                    .map(|r| (now, r)),
            );
            let fresh = build(&items, bits);
            for _ in 0..200 {
                let b = blocks[rng.random_range(0..blocks.len())];
                let addr = u128::from((b << 16) | (rng.random::<u32>() & 0xffff));
                assert_eq!(
                    u.trie.lookup(addr),
                    fresh.lookup(addr),
                    "round {round}, {addr:#x}"
                );
            }
        }
        // Space is reused: three blocks of at most ~40 prefixes never need thousands of nodes.
        assert!(u.trie.nodes.len() < 3_000, "{} nodes", u.trie.nodes.len());
    }

    #[test]
    fn a_structure_taken_up_from_the_maps_knows_what_is_in_use() {
        let mut rng = SmallRng::seed_from_u64(9);
        for bits in [32u32, 128] {
            let mut u = Updatable::new(bits);
            let t0 = Instant::now();
            let mut items: Vec<Item> = Vec::new();
            let blocks = [0x2001u32, 0xc633, 0x0a01];
            for round in 0..30u64 {
                let block = blocks[rng.random_range(0..blocks.len())];
                let shift = bits - DIRECT_BITS;
                items.retain(|i| (i.addr >> shift) as u32 != block);
                for _ in 0..rng.random_range(1..30) {
                    let len = rng.random_range(17..=bits as u8);
                    let low: u128 = rng.random::<u128>() & (u128::MAX >> (128 - shift));
                    let addr = ((u128::from(block) << shift) | low)
                        & (u128::MAX << (128 - u32::from(len))) >> (128 - bits);
                    items.push(Item {
                        addr,
                        len,
                        leaf: rng.random_range(1..50),
                    });
                }
                let mine = block_items(&items, bits, block);
                u.set_block(block, &mine, 0, t0 + Duration::from_secs(round * 2));
            }
            // A restart: only the arrays remain.
            let mut taken = Updatable::from_trie(u.trie.clone()).expect("a well-formed structure");
            assert_eq!(taken.blocks, u.blocks, "bits {bits}");
            let live: Vec<(Range, Range)> = taken.blocks.values().copied().collect();
            // New subtrees never land on a live range.
            let writes = taken.set_block(blocks[0], &[], 7, t0);
            assert_eq!(writes, vec![Write::Direct(blocks[0], 7)]);
            let more: Vec<Item> = (0..20)
                .map(|_| {
                    let len = rng.random_range(17..=bits as u8);
                    let shift = bits - DIRECT_BITS;
                    let low: u128 = rng.random::<u128>() & (u128::MAX >> (128 - shift));
                    let addr = ((u128::from(blocks[1]) << shift) | low)
                        & (u128::MAX << (128 - u32::from(len))) >> (128 - bits);
                    Item { addr, len, leaf: 3 }
                })
                .collect();
            for w in taken.set_block(blocks[1], &more, 0, t0) {
                if let Write::Node(at, _) = w {
                    assert!(
                        !live
                            .iter()
                            .any(|(n, _)| n.start <= at && at < n.start + n.len),
                        "node {at} in use"
                    );
                }
                if let Write::Leaf(at, _) = w {
                    assert!(
                        !live
                            .iter()
                            .any(|(_, l)| l.start <= at && at < l.start + l.len),
                        "leaf {at} in use"
                    );
                }
            }
        }
        // A broken structure is refused, not taken up.
        let mut u = Updatable::new(32);
        u.set_block(
            0xc633,
            &[Item {
                addr: 0xc633_6407,
                len: 32,
                leaf: 1,
            }],
            0,
            Instant::now(),
        );
        let mut broken = u.trie.clone();
        broken.nodes[0].base1 = 1_000_000;
        broken.nodes[0].vector = 1;
        assert!(Updatable::from_trie(broken)
            .unwrap_err()
            .contains("outside"));
    }

    #[test]
    fn freed_ranges_wait_out_the_quarantine() {
        let mut f = Free::default();
        let t0 = Instant::now();
        let a = f.take(10);
        f.give_back(a, t0);
        f.release(t0 + Duration::from_millis(999));
        assert_eq!(
            f.take(10).start,
            10,
            "still quarantined: taken from the end"
        );
        f.release(t0 + QUARANTINE);
        assert_eq!(f.take(10).start, 0, "released: reused");
    }
}
