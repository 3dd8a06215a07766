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
/// When the /24 holds at most [`SLOT_INLINE`] entries longer than /24, the slot carries
/// them (`inline_len` > 0, longest first) and the lookup ends here; otherwise
/// `inline_count` is 0 and `longer` says which lengths to probe in
/// [`crate::maps::V4_LONG`], which always holds every long entry.
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
    /// How many of the `inline_*` entries are in use.
    pub inline_count: u8,
    pub _pad: u8,
    /// [`Slot::seal`] of this slot's contents and /24: the program ignores a slot whose
    /// seal does not match (read while its memory was being reused) and asks the trie.
    pub seal: u32,
    /// The last byte of each inline entry's network, and its length (25..=32).
    pub inline_low: [u8; 4],
    pub inline_len: [u8; 4],
    pub inline: [Entry; 4],
}
const _: () = assert!(size_of::<Slot>() == 16 + 10 * SLOT_INLINE && SLOT_INLINE == 4);

impl Slot {
    /// A checksum of the slot's fields (all but `seal`) and of its /24 `block`.
    ///
    /// The kernel may reuse a hash-map element's memory as soon as an update has replaced
    /// it, while a packet that looked it up just before still reads it; the seal turns
    /// such a torn or foreign read into a trie lookup instead of a wrong answer.
    #[inline(always)]
    pub fn seal(&self, block: u32) -> u32 {
        let words = [
            self.base.dst_rule,
            self.base.src_rule,
            u32::from_le_bytes([self.has_base, self.longer, self.inline_count, self._pad]),
            u32::from_le_bytes(self.inline_low),
            u32::from_le_bytes(self.inline_len),
            self.inline[0].dst_rule,
            self.inline[0].src_rule,
            self.inline[1].dst_rule,
            self.inline[1].src_rule,
            self.inline[2].dst_rule,
            self.inline[2].src_rule,
            self.inline[3].dst_rule,
            self.inline[3].src_rule,
        ];
        let mut h = block.wrapping_mul(0x9e37_79b1) ^ 0x5bd1_e995;
        let mut i = 0;
        while i < words.len() {
            h = (h ^ words[i]).wrapping_mul(0x0100_0193).rotate_left(13);
            i += 1;
        }
        h | 1
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
