//! borderfilter's XDP program as a library for its two binaries: `filter` (what routers
//! run, `src/main.rs`) and `bench` (benchmarks of the same code, `src/bin/bench.rs`).
//!
//! - `maps`: every map, each with what it is for;
//! - `fastpath`: the lookups (the IPv4 /24 index, hints, the LPM tries);
//! - `classify`: from addresses to a decision;
//! - `account`: the one exit: counters and the XDP action.
//!
//! Parsing lives in `filter_common::parse`, shared so that user space can test it.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod account;
pub mod classify;
pub mod fastpath;
pub mod maps;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable by construction (no indexing, no unwrap); the verifier rejects any
    // program that could get here.
    loop {}
}
