//! The one exit of the program: the verdict becomes an XDP action, and every frame is
//! counted here, once under `SEEN` and once under what actually happened to it (and
//! under its rule when one decided).

use aya_ebpf::{bindings::xdp_action, maps::PerCpuArray, programs::XdpContext};
use filter_common::{types::NO_RULE, verdict, Counter};

use crate::{
    classify::Decision,
    maps::{REDIRECT_PORT, REDIRECT_TARGET, RULE_STATS, VERDICT_STATS},
};

#[inline(always)]
pub fn finish(ctx: &XdpContext, decision: Decision) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let (counted, action) = match decision.verdict {
        // A redirect that cannot happen (no target configured or resolved, or the port
        // refuses the frame) fails closed: the packet is dropped and counted as such.
        verdict::REDIRECT => match redirect(ctx) {
            Some(action) => (verdict::REDIRECT, action),
            None => (verdict::DROP, xdp_action::XDP_DROP),
        },
        verdict::DROP => (verdict::DROP, xdp_action::XDP_DROP),
        other => (other, xdp_action::XDP_PASS),
    };
    bump(&VERDICT_STATS, verdict::SEEN, bytes);
    bump(&VERDICT_STATS, counted, bytes);
    if decision.rule != NO_RULE {
        bump(&RULE_STATS, decision.rule, bytes);
    }
    action
}

/// Re-addresses the frame to the notice host and hands it to the redirect port.
#[inline(always)]
fn redirect(ctx: &XdpContext) -> Option<u32> {
    let target = REDIRECT_TARGET.get(0)?;
    if target.enabled == 0 {
        return None;
    }
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return None;
    }
    let macs = start as *mut [u8; 6];
    // SAFETY: the check above puts both MAC addresses (bytes 0..12) inside the frame,
    // which the program may write.
    unsafe {
        macs.write_unaligned(target.dst_mac);
        macs.add(1).write_unaligned(target.src_mac);
    }
    REDIRECT_PORT
        .redirect(0, u64::from(xdp_action::XDP_DROP))
        .ok()
}

/// Adds one packet of `bytes` to slot `index`. Per-CPU slots: no atomics needed.
#[inline(always)]
fn bump(map: &PerCpuArray<Counter>, index: u32, bytes: u64) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: the pointer is to this CPU's slot, valid for the program's run, and no
        // other context on this CPU writes it concurrently (XDP runs with preemption off).
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
