//! borderfilter's XDP program: map definitions and the entry point. Parsing lives in
//! `filter_common::parse` (shared so that user space can test it on any frame), the
//! lookup and verdict in `classify`, counting in `account`.
// On the BPF target this is a freestanding program. On the host it builds as an empty
// binary, so that `cargo clippy --workspace` lints the program's code like any other.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

mod account;
mod classify;

use aya_ebpf::{
    macros::{map, xdp},
    maps::{Array, DevMap, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use filter_common::{maps, parse, verdict, Counter, Entry, RedirectTarget, Rule};

/// Blocked, monitored and exempted IPv4 prefixes; the value names the rule per direction.
/// Capacity is set by user space at load time.
#[map(name = "BF_V4")]
static V4_PREFIXES: LpmTrie<[u8; 4], Entry> =
    LpmTrie::with_max_entries(maps::DECLARED_PREFIX_CAPACITY, 0);

/// The same for IPv6.
#[map(name = "BF_V6")]
static V6_PREFIXES: LpmTrie<[u8; 16], Entry> =
    LpmTrie::with_max_entries(maps::DECLARED_PREFIX_CAPACITY, 0);

/// What each rule number does.
#[map(name = "BF_RULES")]
static RULES: Array<Rule> = Array::with_max_entries(maps::RULE_CAPACITY, 0);

/// Packets and bytes matched per rule number.
#[map(name = "BF_RULE_STATS")]
static RULE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(maps::RULE_CAPACITY, 0);

/// Packets and bytes per verdict (see `filter_common::verdict`).
#[map(name = "BF_VERDICTS")]
static VERDICT_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(verdict::COUNT, 0);

/// The interface towards the block-notice host (index 0).
#[map(name = "BF_REDIRECT")]
static REDIRECT_PORT: DevMap = DevMap::with_max_entries(1, 0);

/// MAC addresses for redirected frames (index 0).
#[map(name = "BF_TARGET")]
static REDIRECT_TARGET: Array<RedirectTarget> = Array::with_max_entries(1, 0);

/// The filter: classify the frame, count it, return the verdict's XDP action.
#[xdp]
pub fn borderfilter(ctx: XdpContext) -> u32 {
    // SAFETY: data..data_end is the frame, readable for the whole run of the program.
    let frame = unsafe { parse::Bounds::new(ctx.data(), ctx.data_end()) };
    let decision = classify::classify(&parse::parse(frame));
    account::finish(&ctx, decision)
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable by construction (no indexing, no unwrap); the verifier rejects any
    // program that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
