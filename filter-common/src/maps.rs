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

/// Every map the program owns, in the order user space pins them.
pub const ALL: [&str; 7] = [
    V4_PREFIXES,
    V6_PREFIXES,
    RULES,
    RULE_STATS,
    VERDICT_STATS,
    REDIRECT_PORT,
    REDIRECT_TARGET,
];

/// Default capacity of each LPM trie (entries). User space may set another at load time.
pub const DEFAULT_PREFIX_CAPACITY: u32 = 1 << 20;
/// The capacity the object file declares for the tries; user space always overrides it.
pub const DECLARED_PREFIX_CAPACITY: u32 = 1024;
/// Number of rule slots (and per-rule counter slots).
pub const RULE_CAPACITY: u32 = 1 << 16;

/// Bits in an IPv4 / IPv6 address: the longest prefix length of each family.
pub const V4_BITS: u32 = 32;
pub const V6_BITS: u32 = 128;
