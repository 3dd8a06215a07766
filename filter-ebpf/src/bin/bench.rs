//! Benchmark programs built on the filter's own code (never attached by the filter):
//! - `bench_classify`: one classification per run on random addresses, for
//!   BPF_PROG_TEST_RUN with a repeat count (a repeated packet would stay in cache);
//! - `bench_generate`: a live-frames generator (BPF_F_TEST_XDP_LIVE_FRAMES) that gives
//!   each frame a new destination and redirects it into a veth;
//! - `bench_drop`: drops everything, the ceiling the throughput bench compares against.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::{Array, DevMap},
    programs::XdpContext,
};
use filter_common::{
    bench::{self, mode, stream, BenchConfig, SAMPLES},
    poptrie::{self, PopMemory, PopNode, V6},
    Entry,
};
use filter_ebpf::{classify, fastpath};

/// What to run (index 0).
#[map(name = "BENCH_CONFIG")]
static CONFIG: Array<BenchConfig> = Array::with_max_entries(1, 0);

/// Addresses inside the blocked prefixes, for the blocked stream.
#[map(name = "BENCH_V4")]
static SAMPLES_V4: Array<[u8; 4]> = Array::with_max_entries(SAMPLES, 0);

#[map(name = "BENCH_V6")]
static SAMPLES_V6: Array<[u8; 16]> = Array::with_max_entries(SAMPLES, 0);

/// Addresses the list does not block, for the generator's frames that should pass.
#[map(name = "BENCH_PASS_V4")]
static PASS_V4: Array<[u8; 4]> = Array::with_max_entries(SAMPLES, 0);

#[map(name = "BENCH_PASS_V6")]
static PASS_V6: Array<[u8; 16]> = Array::with_max_entries(SAMPLES, 0);

/// The candidate fast path's structures (`filter_common::bench::POP_*`).
#[map(name = "BENCH_P4_DIRECT")]
static P4_DIRECT: Array<u32> = Array::with_max_entries(1 << poptrie::DIRECT_BITS, 0);
#[map(name = "BENCH_P4_NODES")]
static P4_NODES: Array<PopNode> = Array::with_max_entries(bench::POP_V4_NODES_CAP, 0);
#[map(name = "BENCH_P4_LEAVES")]
static P4_LEAVES: Array<u16> = Array::with_max_entries(bench::POP_V4_LEAVES_CAP, 0);
#[map(name = "BENCH_P6_DIRECT")]
static P6_DIRECT: Array<u32> = Array::with_max_entries(1 << poptrie::DIRECT_BITS, 0);
#[map(name = "BENCH_P6_NODES")]
static P6_NODES: Array<PopNode> = Array::with_max_entries(bench::POP_V6_NODES_CAP, 0);
#[map(name = "BENCH_P6_LEAVES")]
static P6_LEAVES: Array<u16> = Array::with_max_entries(bench::POP_V6_LEAVES_CAP, 0);
#[map(name = "BENCH_P_ENTRIES")]
static P_ENTRIES: Array<Entry> = Array::with_max_entries(bench::POP_ENTRIES_CAP, 0);

/// One family's Poptrie maps.
struct Pop {
    direct: &'static Array<u32>,
    nodes: &'static Array<PopNode>,
    leaves: &'static Array<u16>,
}

impl PopMemory for Pop {
    #[inline(always)]
    fn direct(&self, index: u32) -> Option<u32> {
        self.direct.get(index).copied()
    }
    #[inline(always)]
    fn node(&self, index: u32) -> Option<PopNode> {
        self.nodes.get(index).copied()
    }
    #[inline(always)]
    fn leaf(&self, index: u32) -> Option<u16> {
        self.leaves.get(index).copied()
    }
}

/// The destination rule the candidate structure gives: leaf, then entry.
#[inline(always)]
fn pop_rule(leaf: Option<u16>) -> u32 {
    match leaf {
        Some(0) | None => 0,
        Some(l) => P_ENTRIES.get(u32::from(l)).map_or(0, |e| e.dst_rule),
    }
}

/// The generator's output (index 0).
#[map(name = "BENCH_PORT")]
static PORT: DevMap = DevMap::with_max_entries(1, 0);

#[inline(always)]
fn random() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_prandom_u32() }
}

#[inline(always)]
fn v4(config: &BenchConfig) -> [u8; 4] {
    let r = random();
    if config.stream == stream::BLOCKED {
        SAMPLES_V4.get(r & (SAMPLES - 1)).copied().unwrap_or([0; 4])
    } else {
        r.to_be_bytes()
    }
}

#[inline(always)]
fn v6(config: &BenchConfig) -> [u8; 16] {
    if config.stream == stream::BLOCKED {
        return SAMPLES_V6
            .get(random() & (SAMPLES - 1))
            .copied()
            .unwrap_or([0; 16]);
    }
    let mut a = [0u8; 16];
    let words = [random(), random(), random(), random()];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_be_bytes();
        a[i * 4] = b[0];
        a[i * 4 + 1] = b[1];
        a[i * 4 + 2] = b[2];
        a[i * 4 + 3] = b[3];
        i += 1;
    }
    a
}

/// The result folded into an XDP action, so that nothing is optimised away.
#[inline(always)]
const fn fold(x: u32) -> u32 {
    if x == 0x5a5a_5a5a {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[xdp]
pub fn bench_classify(_ctx: XdpContext) -> u32 {
    let Some(config) = CONFIG.get(0).copied() else {
        return xdp_action::XDP_ABORTED;
    };
    if config.family == 6 {
        let (dst, src) = (
            v6(&config),
            v6(&BenchConfig {
                stream: stream::UNIFORM,
                ..config
            }),
        );
        match config.mode {
            mode::FILTER => fold(classify::decide_v6(&src, &dst).verdict),
            mode::BASELINE => fold(fastpath::trie_v6(&dst).map_or(0, |e| e.dst_rule)),
            mode::POPTRIE => {
                let maps = Pop {
                    direct: &P6_DIRECT,
                    nodes: &P6_NODES,
                    leaves: &P6_LEAVES,
                };
                fold(pop_rule(poptrie::lookup(&maps, V6::from_bytes(&dst))))
            }
            _ => fold(u32::from(dst[5] ^ src[7])),
        }
    } else {
        let (dst, src) = (v4(&config), random().to_be_bytes());
        match config.mode {
            mode::FILTER => fold(classify::decide_v4(&src, &dst).verdict),
            mode::BASELINE => fold(fastpath::trie_v4(&dst).map_or(0, |e| e.dst_rule)),
            mode::POPTRIE => {
                let maps = Pop {
                    direct: &P4_DIRECT,
                    nodes: &P4_NODES,
                    leaves: &P4_LEAVES,
                };
                fold(pop_rule(poptrie::lookup(&maps, u32::from_be_bytes(dst))))
            }
            _ => fold(u32::from(dst[3] ^ src[2])),
        }
    }
}

/// Ethernet header, then the destination's offset in the IPv4 (16) or IPv6 (24) header.
const V4_DST: usize = 14 + 16;
const V6_DST: usize = 14 + 24;

/// A live-frames generator: each frame gets a destination from the blocked samples
/// (`blocked_per_mille` out of 1000) or from the pass samples (addresses the list does
/// not block, drawn by the harness), IPv4 or IPv6 after `family` (the template frame
/// must be of that family), and goes out of the port.
#[xdp]
pub fn bench_generate(ctx: XdpContext) -> u32 {
    let Some(config) = CONFIG.get(0).copied() else {
        return xdp_action::XDP_ABORTED;
    };
    let blocked = random() % 1000 < config.blocked_per_mille;
    let i = random() & (SAMPLES - 1);
    if config.family == 6 {
        let samples = if blocked { &SAMPLES_V6 } else { &PASS_V6 };
        let dst = samples.get(i).copied().unwrap_or([0; 16]);
        let at = ctx.data() + V6_DST;
        if at + 16 > ctx.data_end() {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: bounds checked just above; the frame is writable.
        unsafe { (at as *mut [u8; 16]).write_unaligned(dst) };
    } else {
        let samples = if blocked { &SAMPLES_V4 } else { &PASS_V4 };
        let dst = samples.get(i).copied().unwrap_or([0; 4]);
        let at = ctx.data() + V4_DST;
        if at + 4 > ctx.data_end() {
            return xdp_action::XDP_ABORTED;
        }
        // SAFETY: bounds checked just above; the frame is writable.
        unsafe { (at as *mut [u8; 4]).write_unaligned(dst) };
    }
    PORT.redirect(0, 0).unwrap_or(xdp_action::XDP_ABORTED)
}

#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
