//! The filter routers run: parse the frame, classify it, count it, return the verdict.
//! Everything but the entry point is in the library (`lib.rs`).
// On the BPF target this is a freestanding program. On the host it builds as an empty
// binary, so that `cargo clippy --workspace` lints the program's code like any other.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{macros::xdp, programs::XdpContext};
use filter_common::parse;
use filter_ebpf::{account, classify};

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

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
