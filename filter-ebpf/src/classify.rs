//! From addresses to a decision: one LPM lookup per address, then the rule it names.
//!
//! The destination is looked up first; if it does not block, the source is looked up.
//! When neither blocks, the packet passes and is counted under the more telling of the
//! two verdicts (monitor before exempt before pass, destination first on a tie).

use filter_common::{action, parse::Parsed, types::NO_RULE, verdict};

use crate::{
    fastpath::{lookup_v4, lookup_v6},
    maps::RULES,
};

/// The verdict for a frame and the rule it is counted under ([`NO_RULE`] for none).
#[derive(Clone, Copy)]
pub struct Decision {
    pub verdict: u32,
    pub rule: u32,
}

impl Decision {
    const fn new(verdict: u32, rule: u32) -> Self {
        Self { verdict, rule }
    }

    const fn blocks(&self) -> bool {
        matches!(self.verdict, verdict::DROP | verdict::REDIRECT)
    }

    /// How much a non-blocking verdict tells an operator; the higher one is counted.
    const fn weight(&self) -> u32 {
        match self.verdict {
            verdict::MONITOR => 2,
            verdict::EXEMPT => 1,
            _ => 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Dst,
    Src,
}

#[inline(always)]
pub fn classify(parsed: &Parsed) -> Decision {
    match parsed {
        Parsed::V4 { src, dst } => decide_v4(src, dst),
        Parsed::V6 { src, dst } => decide_v6(src, dst),
        Parsed::NotIp => Decision::new(verdict::NOT_IP, NO_RULE),
        Parsed::Malformed => Decision::new(verdict::MALFORMED, NO_RULE),
    }
}

/// The decision for an IPv4 packet from `src` to `dst`.
#[inline(always)]
pub fn decide_v4(src: &[u8; 4], dst: &[u8; 4]) -> Decision {
    decide(&V4 { src, dst })
}

/// The decision for an IPv6 packet from `src` to `dst`.
#[inline(always)]
pub fn decide_v6(src: &[u8; 16], dst: &[u8; 16]) -> Decision {
    decide(&V6 { src, dst })
}

/// The rule number that applies to one side's address, or `None` when no prefix covers
/// it. A trait rather than a closure: closures may be outlined into BPF subprograms,
/// and the verifier refuses some of the code LLVM emits for returning from them.
trait Lookup {
    fn rule(&self, side: Side) -> Option<u32>;
}

struct V4<'a> {
    src: &'a [u8; 4],
    dst: &'a [u8; 4],
}

impl Lookup for V4<'_> {
    #[inline(always)]
    fn rule(&self, side: Side) -> Option<u32> {
        match side {
            Side::Dst => lookup_v4(self.dst).map(|e| e.dst_rule),
            Side::Src => lookup_v4(self.src).map(|e| e.src_rule),
        }
    }
}

struct V6<'a> {
    src: &'a [u8; 16],
    dst: &'a [u8; 16],
}

impl Lookup for V6<'_> {
    #[inline(always)]
    fn rule(&self, side: Side) -> Option<u32> {
        match side {
            Side::Dst => lookup_v6(self.dst).map(|e| e.dst_rule),
            Side::Src => lookup_v6(self.src).map(|e| e.src_rule),
        }
    }
}

/// Combines the per-side lookups into one decision: the destination first; the source
/// only if the destination does not block.
#[inline(always)]
fn decide(lookup: &impl Lookup) -> Decision {
    let by_dst = apply(lookup.rule(Side::Dst).unwrap_or(NO_RULE), Side::Dst);
    if by_dst.blocks() {
        return by_dst;
    }
    let by_src = apply(lookup.rule(Side::Src).unwrap_or(NO_RULE), Side::Src);
    if by_src.blocks() || by_src.weight() > by_dst.weight() {
        by_src
    } else {
        by_dst
    }
}

/// What rule `rule` does to an address on `side`.
#[inline(always)]
fn apply(rule: u32, side: Side) -> Decision {
    if rule == NO_RULE {
        return Decision::new(verdict::PASS, NO_RULE);
    }
    let code = RULES.get(rule).map_or(action::NONE, |r| r.action);
    match code {
        action::DROP => Decision::new(verdict::DROP, rule),
        // Redirect sends a subscriber's request to the notice host; traffic *from* a
        // blocked service has nowhere useful to go and is dropped.
        action::REDIRECT if side == Side::Dst => Decision::new(verdict::REDIRECT, rule),
        action::REDIRECT => Decision::new(verdict::DROP, rule),
        action::MONITOR => Decision::new(verdict::MONITOR, rule),
        action::EXEMPT => Decision::new(verdict::EXEMPT, rule),
        // A slot being set up or torn down: nothing to enforce yet.
        _ => Decision::new(verdict::PASS, NO_RULE),
    }
}
