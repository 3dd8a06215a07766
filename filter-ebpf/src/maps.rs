//! Every map of the filter. Names, sizes and value layouts come from `filter_common`;
//! user space sizes the tries and the IPv4 index at load time.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, DevMap, HashMap, LpmTrie, PerCpuArray},
};
use filter_common::{
    maps, verdict, Counter, Entry, LongKey, LongValue, RedirectTarget, Rule, SlotCell,
};

/// Blocked, monitored and exempted IPv4 prefixes: the authority the fast path is derived
/// from, and its fallback. The value names the rule per direction.
#[map(name = "BF_V4")]
pub static V4_PREFIXES: LpmTrie<[u8; 4], Entry> =
    LpmTrie::with_max_entries(maps::DECLARED_PREFIX_CAPACITY, 0);

/// The same for IPv6.
#[map(name = "BF_V6")]
pub static V6_PREFIXES: LpmTrie<[u8; 16], Entry> =
    LpmTrie::with_max_entries(maps::DECLARED_PREFIX_CAPACITY, 0);

/// One bit per IPv4 /24: does any entry touch it? Most traffic stops here.
#[map(name = "BF_V4_HINT")]
pub static V4_HINT: Array<u64> = Array::with_max_entries(maps::HINT_WORDS, BPF_F_MMAPABLE);

/// Per touched /24 (address >> 8), in an open-addressed table: the result of entries up
/// to /24, and the longer entries inside it or which lengths of them exist.
#[map(name = "BF_V4_SLOTS")]
pub static V4_SLOTS: Array<SlotCell> =
    Array::with_max_entries(maps::DECLARED_PREFIX_CAPACITY, BPF_F_MMAPABLE);

/// The slot table's size minus one (a power of two minus one), set by user space when it
/// loads the program; read-only to the program, so the verifier knows its value.
#[no_mangle]
pub static BF_SLOT_MASK: u32 = 0;

/// IPv4 entries longer than /24, by network and length.
#[map(name = "BF_V4_LONG")]
pub static V4_LONG: HashMap<LongKey, LongValue> =
    HashMap::with_max_entries(maps::DECLARED_PREFIX_CAPACITY, BPF_F_NO_PREALLOC);

/// One bit per hashed IPv6 /32: may any entry cover it?
#[map(name = "BF_V6_HINT")]
pub static V6_HINT: Array<u64> = Array::with_max_entries(maps::HINT_WORDS, BPF_F_MMAPABLE);

/// What each rule number does.
#[map(name = "BF_RULES")]
pub static RULES: Array<Rule> = Array::with_max_entries(maps::RULE_CAPACITY, 0);

/// Packets and bytes matched per rule number.
#[map(name = "BF_RULE_STATS")]
pub static RULE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(maps::RULE_CAPACITY, 0);

/// Packets and bytes per verdict (see `filter_common::verdict`).
#[map(name = "BF_VERDICTS")]
pub static VERDICT_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(verdict::COUNT, 0);

/// The interface towards the block-notice host (index 0).
#[map(name = "BF_REDIRECT")]
pub static REDIRECT_PORT: DevMap = DevMap::with_max_entries(1, 0);

/// MAC addresses for redirected frames (index 0).
#[map(name = "BF_TARGET")]
pub static REDIRECT_TARGET: Array<RedirectTarget> = Array::with_max_entries(1, 0);
