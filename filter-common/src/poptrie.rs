//! The Poptrie layout (Asai and Ohara, SIGCOMM 2015) both sides share, and its lookup,
//! written once over an accessor so that the XDP program (reading maps) and user space
//! (reading slices, in tests and `verify`) run the same code. See `docs/fastpath.md`.
//!
//! An address's top [`DIRECT_BITS`] bits index the direct table. A direct word with
//! [`DIRECT_NODE`] set names the root node of that block's subtree; otherwise it is the
//! leaf itself. A node covers the next [`STRIDE`] bits (fewer at the end of the address):
//! child `i` is an internal node when bit `i` of `vector` is set, found at
//! `base1 + popcount(vector & bits 0..=i) - 1` in the node array; otherwise its leaf is at
//! `base0 + popcount(leafvec & bits 0..=i) - 1` in the leaf array, where `leafvec` has a
//! bit set at each leaf child that starts a run of equal leaves (leaf compression).
//! A leaf is an index into the table of distinct entries; 0 means no entry.

/// Bits of the address the direct table indexes.
pub const DIRECT_BITS: u32 = 16;
/// Bits each node consumes (64 children).
pub const STRIDE: u32 = 6;
/// In a direct word: the rest is a node index, not a leaf.
pub const DIRECT_NODE: u32 = 1 << 31;
/// The leaf meaning "no entry covers the address".
pub const NO_LEAF: u16 = 0;
/// Nodes on the longest path below the direct table: IPv4.
pub const MAX_DEPTH_V4: u32 = (32 - DIRECT_BITS).div_ceil(STRIDE);
/// Nodes on the longest path below the direct table: IPv6.
pub const MAX_DEPTH_V6: u32 = (128 - DIRECT_BITS).div_ceil(STRIDE);

/// One node: 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PopNode {
    /// Bit `i`: child `i` is an internal node.
    pub vector: u64,
    /// Bit `i`: leaf child `i` starts a run of equal leaves.
    pub leafvec: u64,
    /// Index of the node's first leaf in the leaf array.
    pub base0: u32,
    /// Index of the node's first child node in the node array.
    pub base1: u32,
}
const _: () = assert!(core::mem::size_of::<PopNode>() == 24);

/// Where a lookup reads from: slices in user space, maps in the program.
pub trait PopMemory {
    fn direct(&self, index: u32) -> Option<u32>;
    fn node(&self, index: u32) -> Option<PopNode>;
    fn leaf(&self, index: u32) -> Option<u16>;
}

/// Bits `0..=i` of a 64-bit word.
#[inline(always)]
pub const fn through(i: u32) -> u64 {
    if i >= 63 {
        u64::MAX
    } else {
        (2u64 << i) - 1
    }
}

/// The child index a node at `depth` (0: the node under the direct table) takes from
/// `addr` (the address as a big-endian integer, `bits` wide), and how many bits it spans.
#[inline(always)]
pub const fn child_index(addr: u128, bits: u32, depth: u32) -> (u32, u32) {
    let start = DIRECT_BITS + depth * STRIDE;
    let width = if bits - start < STRIDE {
        bits - start
    } else {
        STRIDE
    };
    let shift = bits - start - width;
    (((addr >> shift) as u32) & ((1 << width) - 1), width)
}

/// The leaf for `addr` (`bits` wide: 32 or 128), or [`NO_LEAF`] where the memory is
/// missing a word (a torn or out-of-range read: the caller falls back to the trie).
#[inline(always)]
pub fn lookup<M: PopMemory>(mem: &M, addr: u128, bits: u32, max_depth: u32) -> Option<u16> {
    let top = (addr >> (bits - DIRECT_BITS)) as u32;
    let word = mem.direct(top)?;
    if word & DIRECT_NODE == 0 {
        return Some(word as u16);
    }
    let mut node = mem.node(word & !DIRECT_NODE)?;
    let mut depth = 0;
    while depth < max_depth {
        let (i, _) = child_index(addr, bits, depth);
        let mask = through(i);
        if node.vector & (1u64 << i) != 0 {
            let k = (node.vector & mask).count_ones();
            node = mem.node(node.base1 + k - 1)?;
        } else {
            let k = (node.leafvec & mask).count_ones();
            return mem.leaf(node.base0 + k - 1);
        }
        depth += 1;
    }
    None
}
