//! A plain-Rust model of what the XDP program decides for a packet, given the entries of
//! its tries and its rules. Tests compare the loaded program against it; it knows nothing
//! of the kernel and is written for clarity, not speed (a linear scan per address).

use std::{collections::HashMap, net::IpAddr};

use filter_common::{action, types::NO_RULE, verdict};

use super::PrefixEntry;

/// The verdict and the rule counted for a packet from `src` to `dst`. `redirect` says
/// whether a redirect target is configured (without one, redirect verdicts drop).
pub fn decide(
    entries: &[PrefixEntry],
    actions: &HashMap<u32, u8>,
    redirect: bool,
    src: IpAddr,
    dst: IpAddr,
) -> (u32, u32) {
    let longest = |addr: IpAddr| {
        entries
            .iter()
            .filter(|e| e.prefix.contains_addr(addr))
            .max_by_key(|e| e.prefix.length())
            .map(|e| e.entry)
    };
    let apply = |rule: u32, is_dst: bool| -> (u32, u32) {
        if rule == NO_RULE {
            return (verdict::PASS, NO_RULE);
        }
        match actions.get(&rule).copied().unwrap_or(action::NONE) {
            action::DROP => (verdict::DROP, rule),
            action::REDIRECT if is_dst && redirect => (verdict::REDIRECT, rule),
            action::REDIRECT => (verdict::DROP, rule),
            action::MONITOR => (verdict::MONITOR, rule),
            action::EXEMPT => (verdict::EXEMPT, rule),
            _ => (verdict::PASS, NO_RULE),
        }
    };
    let blocks = |v: u32| v == verdict::DROP || v == verdict::REDIRECT;
    let weight = |v: u32| match v {
        verdict::MONITOR => 2,
        verdict::EXEMPT => 1,
        _ => 0,
    };
    let by_dst = apply(longest(dst).map_or(NO_RULE, |e| e.dst_rule), true);
    if blocks(by_dst.0) {
        return by_dst;
    }
    let by_src = apply(longest(src).map_or(NO_RULE, |e| e.src_rule), false);
    if blocks(by_src.0) || weight(by_src.0) > weight(by_dst.0) {
        by_src
    } else {
        by_dst
    }
}
