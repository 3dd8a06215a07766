//! Map names and sizes. The XDP program declares its maps with these names; user space
//! opens, sizes and pins them by the same names.

/// IPv4 prefixes: `LPM_TRIE`, key `Key<[u8; 4]>`, value [`crate::Entry`].
pub const V4_PREFIXES: &str = "BF_V4";
/// IPv6 prefixes: `LPM_TRIE`, key `Key<[u8; 16]>`, value [`crate::Entry`].
pub const V6_PREFIXES: &str = "BF_V6";
/// Rules by rule number: `ARRAY` of [`crate::Rule`].
pub const RULES: &str = "BF_RULES";
/// Per-rule counters: `PERCPU_ARRAY` of [`crate::Counter`], indexed by rule number.
pub const RULE_STATS: &str = "BF_RULE_STATS";
/// Per-verdict counters: `PERCPU_ARRAY` of [`crate::Counter`], indexed by
/// [`crate::verdict`] constants.
pub const VERDICT_STATS: &str = "BF_VERDICTS";

/// Where redirected packets go: `DEVMAP` with one entry (index 0), the interface that
/// leads to the block-notice host.
pub const REDIRECT_PORT: &str = "BF_REDIRECT";
/// How redirected frames are re-addressed: `ARRAY` with one [`crate::RedirectTarget`].
pub const REDIRECT_TARGET: &str = "BF_TARGET";

/// The IPv4 fast path (see `docs/design/fast-path.md`), derived from [`V4_PREFIXES`] by
/// user space. One bit per /24: set when some entry touches that /24. `ARRAY` of `u64`,
/// memory-mapped by user space.
pub const V4_HINT: &str = "BF_V4_HINT";
/// Per touched /24: an open-addressed table, `ARRAY` of [`crate::SlotCell`] (one cache
/// line each), memory-mapped by user space. The cell of /24 number `block` (address >> 8)
/// is one of the [`SLOT_PROBES`] cells from [`slot_home`] on; a lookup that finds it in
/// none of them asks the trie. The table's size is a power of two set at load time; the
/// program learns its mask from the global [`SLOT_MASK_GLOBAL`].
pub const V4_SLOTS: &str = "BF_V4_SLOTS";
/// The name of the program's read-only global holding the slot table's size minus one.
pub const SLOT_MASK_GLOBAL: &str = "BF_SLOT_MASK";
/// How many consecutive cells, from its home, a lookup searches for a /24's slot.
pub const SLOT_PROBES: u32 = 8;

/// Where the search for the slot of /24 number `block` starts (before masking to the
/// table's size): a multiplicative hash, its high half folded into the low bits the mask
/// keeps.
#[inline(always)]
pub const fn slot_home(block: u32) -> u32 {
    let h = block.wrapping_mul(0x9e37_79b1);
    h ^ (h >> 16)
}

/// Cells in the slot table for an IPv4 capacity of `capacity` entries: one and a half
/// times as many (most entries touch one /24; a /22 touches four, a /16 256), rounded up
/// to a power of two.
pub const fn slot_table_len(capacity: u32) -> u32 {
    let want = if capacity > (1 << 30) {
        1 << 31
    } else {
        capacity + capacity / 2
    };
    if want <= 64 {
        64
    } else {
        want.next_power_of_two()
    }
}

/// Slots a table of `cells` cells takes before user space refuses more: seven eighths, so
/// that nearly every slot lies within [`SLOT_PROBES`] cells of its home.
pub const fn slot_table_room(cells: u32) -> u32 {
    cells - cells / 8
}
/// Entries longer than /24: `HASH` from [`crate::LongKey`] to [`crate::LongValue`] (the
/// entry, and the key again).
pub const V4_LONG: &str = "BF_V4_LONG";
/// The IPv6 fast path: one bit per hashed /32 (see [`v6_hint_index`]); set when some
/// entry may cover addresses with that /32. `ARRAY` of `u64`, memory-mapped.
pub const V6_HINT: &str = "BF_V6_HINT";

/// Every map the program owns, in the order user space pins them.
pub const ALL: [&str; 11] = [
    V4_PREFIXES,
    V6_PREFIXES,
    RULES,
    RULE_STATS,
    VERDICT_STATS,
    REDIRECT_PORT,
    REDIRECT_TARGET,
    V4_HINT,
    V4_SLOTS,
    V4_LONG,
    V6_HINT,
];

/// Words (`u64`) in each hint bitmap: 2^24 bits, 2 MiB.
pub const HINT_WORDS: u32 = 1 << 18;
/// Bits in the index of a hint bitmap.
pub const HINT_INDEX_BITS: u32 = 24;
/// IPv4 entries longer than this go to [`V4_LONG`]; shorter ones shape the slots.
pub const SLOT_LEN: u32 = 24;
/// IPv4 entries at least this long get /24 slots (at most 256 each); broader ones only
/// set hint bits, and lookups in their /24s fall back to the trie.
pub const MIN_SLOTTED_LEN: u32 = 16;

/// The hint bit of an IPv6 address: a multiplicative hash of its first 32 bits (the
/// usual allocation to a network), keeping the top [`HINT_INDEX_BITS`] bits.
#[inline(always)]
pub const fn v6_hint_index(top32: u32) -> u32 {
    top32.wrapping_mul(0x9e37_79b1) >> (32 - HINT_INDEX_BITS)
}

/// Default capacity of each LPM trie (entries). User space may set another at load time.
pub const DEFAULT_PREFIX_CAPACITY: u32 = 1 << 20;
/// The capacity the object file declares for the tries; user space always overrides it.
pub const DECLARED_PREFIX_CAPACITY: u32 = 1024;
/// Number of rule slots (and per-rule counter slots).
pub const RULE_CAPACITY: u32 = 1 << 16;

/// Bits in an IPv4 / IPv6 address: the longest prefix length of each family.
pub const V4_BITS: u32 = 32;
pub const V6_BITS: u32 = 128;
