//! The one exit of the program: every frame is counted here, once under `SEEN` and once
//! under its verdict (and under its rule when one decided), and the verdict becomes an
//! XDP action.

use aya_ebpf::{bindings::xdp_action, maps::PerCpuArray, programs::XdpContext};
use filter_common::{types::NO_RULE, verdict, Counter};

use crate::{classify::Decision, RULE_STATS, VERDICT_STATS};

#[inline(always)]
pub fn finish(ctx: &XdpContext, decision: Decision) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    bump(&VERDICT_STATS, verdict::SEEN, bytes);
    bump(&VERDICT_STATS, decision.verdict, bytes);
    if decision.rule != NO_RULE {
        bump(&RULE_STATS, decision.rule, bytes);
    }
    match decision.verdict {
        // Until a redirect target exists (see the redirect design note), a redirect
        // verdict fails closed.
        verdict::DROP | verdict::REDIRECT => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
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
