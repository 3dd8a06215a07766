//! The benchmark program's settings, shared by `filter-ebpf`'s `bench` binary and the
//! benchmark harness. Not used by the filter.

/// `BENCH_CONFIG` map name: `ARRAY` with one [`BenchConfig`].
pub const CONFIG: &str = "BENCH_CONFIG";
/// Sampled addresses inside the blocked prefixes: `ARRAY` of `[u8; 4]` / `[u8; 16]`.
pub const SAMPLES_V4: &str = "BENCH_V4";
pub const SAMPLES_V6: &str = "BENCH_V6";
/// Addresses the list does not block, for the generator's frames that should pass:
/// `ARRAY` of `[u8; 4]` / `[u8; 16]`, filled by the harness.
pub const PASS_V4: &str = "BENCH_PASS_V4";
pub const PASS_V6: &str = "BENCH_PASS_V6";
/// The generator's output port: `DEVMAP`, index 0.
pub const PORT: &str = "BENCH_PORT";
/// Number of samples (a power of two).
pub const SAMPLES: u32 = 1 << 16;

/// What `bench_classify` does per run.
pub mod mode {
    /// Draws the addresses and nothing else: the cost to subtract.
    pub const OFF: u32 = 0;
    /// borderfilter's classification of a packet (destination, then source).
    pub const FILTER: u32 = 1;
    /// One plain LPM-trie lookup of the destination.
    pub const BASELINE: u32 = 2;
    /// The candidate fast path (`docs/fastpath.md`): a Poptrie lookup of the destination
    /// and its entry, from the `BENCH_P*` maps the harness fills.
    pub const POPTRIE: u32 = 3;
}

/// The candidate fast path's maps (see [`mode::POPTRIE`]): direct table (`ARRAY` of
/// `u32`, 2^16), nodes (`ARRAY` of `PopNode`), leaves (`ARRAY` of `u16`) per family, and
/// the distinct entries the leaves index (`ARRAY` of `Entry`; leaf `n` is element `n`).
pub const POP_V4_DIRECT: &str = "BENCH_P4_DIRECT";
pub const POP_V4_NODES: &str = "BENCH_P4_NODES";
pub const POP_V4_LEAVES: &str = "BENCH_P4_LEAVES";
pub const POP_V6_DIRECT: &str = "BENCH_P6_DIRECT";
pub const POP_V6_NODES: &str = "BENCH_P6_NODES";
pub const POP_V6_LEAVES: &str = "BENCH_P6_LEAVES";
pub const POP_ENTRIES: &str = "BENCH_P_ENTRIES";
/// Their sizes: room for the benchmark's largest lists (1,000,000 spread IPv4 prefixes
/// take 1.3 M nodes and 3.0 M leaves; 100,000 IPv6 ones 0.5 M and 0.6 M).
pub const POP_V4_NODES_CAP: u32 = 1 << 21;
pub const POP_V4_LEAVES_CAP: u32 = 1 << 22;
pub const POP_V6_NODES_CAP: u32 = 1 << 20;
pub const POP_V6_LEAVES_CAP: u32 = 1 << 20;
pub const POP_ENTRIES_CAP: u32 = 1 << 16;

/// Where destination addresses come from.
pub mod stream {
    /// Uniform over the whole address space.
    pub const UNIFORM: u32 = 0;
    /// Drawn from the samples: addresses inside the blocked prefixes.
    pub const BLOCKED: u32 = 1;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchConfig {
    pub mode: u32,
    pub stream: u32,
    /// 4 or 6.
    pub family: u32,
    /// Generator: out of 1000 frames, how many go to a blocked address (from the
    /// samples); the rest go to the pass samples, which the harness fills with addresses
    /// the list does not block.
    pub blocked_per_mille: u32,
}
const _: () = assert!(core::mem::size_of::<BenchConfig>() == 16);

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no padding.
unsafe impl aya::Pod for BenchConfig {}
