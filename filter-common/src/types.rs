//! Map value layouts.

use core::mem::size_of;

/// Rule number meaning "no rule": the address is not matched in this direction.
pub const NO_RULE: u32 = 0;
/// Rule number shared by every exception entry.
pub const EXCEPTION_RULE: u32 = 1;
/// First rule number available to orders.
pub const FIRST_ORDER_RULE: u32 = 2;

/// Value of an LPM-trie entry.
///
/// For an address whose longest matching prefix is this entry: the rule that applies when
/// the address is the packet's destination, and the rule that applies when it is the
/// packet's source. [`NO_RULE`] means nothing applies in that direction. A rule whose
/// order covers both directions appears in both fields; the user-space compiler resolves
/// nesting, exceptions and direction so that the program needs one lookup per address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// Rule number when the address is the destination (host byte order).
    pub dst_rule: u32,
    /// Rule number when the address is the source (host byte order).
    pub src_rule: u32,
}
const _: () = assert!(size_of::<Entry>() == 8);

/// One rule: what to do with a packet it matches. Rule numbers index [`crate::maps::RULES`]
/// and [`crate::maps::RULE_STATS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// One of the [`crate::action`] codes.
    pub action: u8,
    pub _pad: [u8; 7],
    /// Fingerprint of the order that owns this slot (0: free). Only user space reads it:
    /// it lets a restarted daemon recognise which order each rule number belongs to.
    pub owner: u64,
}
const _: () = assert!(size_of::<Rule>() == 16);

impl Rule {
    pub const fn new(action: u8, owner: u64) -> Self {
        Self {
            action,
            _pad: [0; 7],
            owner,
        }
    }
}

/// A packet and byte counter (one per CPU in the per-CPU arrays).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<Counter>() == 16);

/// How many entries longer than /24 a slot can carry itself.
pub const SLOT_INLINE: usize = 4;

/// What the IPv4 fast path knows about one /24.
///
/// Three forms, by `inline_count`, for the entries longer than /24 inside the /24:
/// - 1 to [`SLOT_INLINE`]: the slot carries them (longest first) and the lookup ends here;
/// - [`SLOT_DENSE`]: more of them, all with the same entry: the slot carries a bitmap of
///   the 256 addresses they cover and that entry ([`Slot::dense_words`]), and the lookup ends
///   here;
/// - 0: `longer` says which lengths to probe in [`crate::maps::V4_LONG`], which always
///   holds every long entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The longest-prefix result among entries of length /24 or shorter covering this
    /// /24 (valid when `has_base` is 1).
    pub base: Entry,
    pub has_base: u8,
    /// Bit `len - 25` is set when entries of length `len` (25..=32) may exist inside
    /// this /24 in [`crate::maps::V4_LONG`].
    pub longer: u8,
    /// How many of the `inline_*` entries are in use, or [`SLOT_DENSE`].
    pub inline_count: u8,
    pub _pad: u8,
    /// [`Slot::seal`] of this slot's contents and /24: the program ignores a slot whose
    /// seal does not match (read while user space rewrote its cell) and asks the trie.
    pub seal: u32,
    /// The last byte of each inline entry's network, and its length (25..=32). A dense
    /// slot keeps its bitmap in these and the first three `inline` entries.
    pub inline_low: [u8; 4],
    pub inline_len: [u8; 4],
    pub inline: [Entry; 4],
}
const _: () = assert!(size_of::<Slot>() == 16 + 10 * SLOT_INLINE && SLOT_INLINE == 4);

/// One cell of the slot table ([`crate::maps::V4_SLOTS`]): a slot and the /24 it is for.
/// A free cell is all zeros (its seal, 0, never matches). 64 bytes: in the page-aligned
/// table each cell is one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCell {
    pub slot: Slot,
    /// The /24 number (address >> 8) this cell holds the slot of.
    pub block: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<SlotCell>() == 64);

/// `Slot::inline_count` of a dense slot.
pub const SLOT_DENSE: u8 = 0xff;

impl Slot {
    /// A dense slot's bitmap: bit `b & 31` of word `b >> 5` is set when a long entry
    /// covers the address whose last byte is `b`.
    #[inline(always)]
    pub fn dense_words(&self) -> [u32; 8] {
        [
            u32::from_le_bytes(self.inline_low),
            u32::from_le_bytes(self.inline_len),
            self.inline[0].dst_rule,
            self.inline[0].src_rule,
            self.inline[1].dst_rule,
            self.inline[1].src_rule,
            self.inline[2].dst_rule,
            self.inline[2].src_rule,
        ]
    }

    /// The entry every covered address of a dense slot gets.
    #[inline(always)]
    pub fn dense_entry(&self) -> Entry {
        self.inline[3]
    }

    /// Makes this slot dense: `words` as [`Slot::dense_words`] reads them, and `entry`.
    pub fn set_dense(&mut self, words: [u32; 8], entry: Entry) {
        self.inline_count = SLOT_DENSE;
        self.inline_low = words[0].to_le_bytes();
        self.inline_len = words[1].to_le_bytes();
        for i in 0..3 {
            self.inline[i] = Entry {
                dst_rule: words[2 + 2 * i],
                src_rule: words[3 + 2 * i],
            };
        }
        self.inline[3] = entry;
    }

    /// A checksum of the slot's fields (all but `seal`) and of its /24 `block`.
    ///
    /// User space rewrites a slot-table cell in place (a changed slot, or a freed cell
    /// taken for another /24) while a packet on another CPU may be reading it; the seal
    /// turns such a torn or foreign read into a trie lookup instead of a wrong answer.
    #[inline(always)]
    pub fn seal(&self, block: u32) -> u32 {
        let pair = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
        let entry = |e: Entry| pair(e.dst_rule, e.src_rule);
        let words = [
            entry(self.base),
            pair(
                u32::from_le_bytes([self.has_base, self.longer, self.inline_count, self._pad]),
                block,
            ),
            pair(
                u32::from_le_bytes(self.inline_low),
                u32::from_le_bytes(self.inline_len),
            ),
            entry(self.inline[0]),
            entry(self.inline[1]),
            entry(self.inline[2]),
            entry(self.inline[3]),
        ];
        // 64-bit multiply-rotate rounds (seven, where 32-bit words took thirteen): the
        // program computes this for every slot it reads.
        let mut h = u64::from(block).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
        let mut i = 0;
        while i < words.len() {
            h = (h ^ words[i])
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(29);
            i += 1;
        }
        (h ^ (h >> 32)) as u32 | 1
    }

    /// The slot with its seal for `block` set.
    pub fn sealed(mut self, block: u32) -> Self {
        self.seal = self.seal(block);
        self
    }
}

/// Key of an IPv4 entry longer than /24.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LongKey {
    /// The network, in network byte order.
    pub addr: [u8; 4],
    pub len: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<LongKey>() == 8);

/// Value of [`crate::maps::V4_LONG`]: the entry, and its key again, so that the program
/// can tell an element whose memory was reused for another key (see [`Slot::seal`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LongValue {
    pub entry: Entry,
    pub key: LongKey,
}
const _: () = assert!(size_of::<LongValue>() == 16);

/// How to re-address a frame redirected to the block-notice host: the Ethernet
/// destination becomes the notice host's MAC and the source the redirect interface's.
/// The IP packet is not touched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedirectTarget {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// 1 when a target is configured and resolved; 0: redirect verdicts drop instead.
    pub enabled: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<RedirectTarget>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `repr(C)`, `Copy`, built only from integers, with explicit
    // padding fields so that no byte is uninitialised.
    unsafe impl aya::Pod for super::Entry {}
    unsafe impl aya::Pod for super::Rule {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::RedirectTarget {}
    unsafe impl aya::Pod for super::Slot {}
    unsafe impl aya::Pod for super::LongKey {}
    unsafe impl aya::Pod for super::LongValue {}
}
