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
/// In a node's `base1`: the node is a *skip node* (path compression). It stands for
/// `leafvec` levels (2 to [`MAX_SKIP`]) whose nodes would each have one internal child and
/// only leaves of one value beside it: `vector` holds the address bits of that path
/// (`leafvec × STRIDE` bits, right-aligned), `base0` the index of that one leaf (the answer
/// for an address that leaves the path), and `base1` without this bit the node below.
pub const SKIP: u32 = 1 << 31;
/// The most levels one skip node stands for (60 bits of path).
pub const MAX_SKIP: u32 = 10;
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

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no padding (8 + 8 + 4 + 4).
unsafe impl aya::Pod for PopNode {}

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

/// An address as the lookup reads it: `width` bits from bit `from` (0: the most
/// significant). IPv4 is a `u32`; IPv6 is two `u64` halves, so that no 128-bit arithmetic
/// reaches the BPF backend.
pub trait Address: Copy {
    /// 32 or 128.
    const BITS: u32;
    /// The most nodes below the direct table.
    const MAX_DEPTH: u32;
    /// `width` bits (1 to 32) from bit `from`.
    fn bits(self, from: u32, width: u32) -> u32;
    /// `width` bits (1 to 64) from bit `from`.
    fn bits64(self, from: u32, width: u32) -> u64;
}

impl Address for u32 {
    const BITS: u32 = 32;
    const MAX_DEPTH: u32 = MAX_DEPTH_V4;
    #[inline(always)]
    fn bits(self, from: u32, width: u32) -> u32 {
        self.bits64(from, width) as u32
    }
    #[inline(always)]
    fn bits64(self, from: u32, width: u32) -> u64 {
        (u64::from(self) >> (32 - from - width)) & mask64(width)
    }
}

/// The low `width` bits (0 to 64) set.
#[inline(always)]
const fn mask64(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// An IPv6 address as its high and low 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6(pub u64, pub u64);

impl V6 {
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&b[..8]);
        lo.copy_from_slice(&b[8..]);
        V6(u64::from_be_bytes(hi), u64::from_be_bytes(lo))
    }
}

impl Address for V6 {
    const BITS: u32 = 128;
    const MAX_DEPTH: u32 = MAX_DEPTH_V6;
    #[inline(always)]
    fn bits(self, from: u32, width: u32) -> u32 {
        self.bits64(from, width) as u32
    }
    #[inline(always)]
    fn bits64(self, from: u32, width: u32) -> u64 {
        let end = from + width;
        let value = if end <= 64 {
            self.0 >> (64 - end)
        } else if from >= 64 {
            self.1 >> (128 - end)
        } else {
            // Straddles the halves: the high part's last bits, then the low part's first.
            (self.0 << (end - 64)) | (self.1 >> (128 - end))
        };
        value & mask64(width)
    }
}

/// The width of the node at `depth` (0: the node under the direct table) for `bits`-wide
/// addresses: [`STRIDE`], or what is left at the end of the address.
#[inline(always)]
pub const fn node_width(bits: u32, depth: u32) -> u32 {
    let start = DIRECT_BITS + depth * STRIDE;
    if bits - start < STRIDE {
        bits - start
    } else {
        STRIDE
    }
}

/// The leaf for `addr`, or `None` where the memory is missing a word (an out-of-range
/// index: the caller falls back to the trie).
#[inline(always)]
pub fn lookup<M: PopMemory, A: Address>(mem: &M, addr: A) -> Option<u16> {
    let word = mem.direct(addr.bits(0, DIRECT_BITS))?;
    if word & DIRECT_NODE == 0 {
        return Some(word as u16);
    }
    let mut node = mem.node(word & !DIRECT_NODE)?;
    let mut depth = 0;
    // One node per round; a skip node moves `depth` on by several levels.
    let mut round = 0;
    while round < A::MAX_DEPTH {
        round += 1;
        if depth >= A::MAX_DEPTH {
            return None;
        }
        if node.base1 & SKIP != 0 {
            let levels = node.leafvec as u32;
            if levels == 0 || levels > MAX_SKIP {
                return None;
            }
            let path = addr.bits64(DIRECT_BITS + depth * STRIDE, levels * STRIDE);
            if path != node.vector {
                return mem.leaf(node.base0);
            }
            node = mem.node(node.base1 & !SKIP)?;
            depth += levels;
            continue;
        }
        let i = addr.bits(DIRECT_BITS + depth * STRIDE, node_width(A::BITS, depth));
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
