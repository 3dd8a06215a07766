//! Shared by the tests that load the real program into the kernel.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::net::IpAddr;

use filter_common::{verdict, Counter, Entry, Rule};
use filter_user::{
    dataplane::{Dataplane, LoadOptions},
    prefix::Prefix,
    sync::{Plan, Snapshot},
};

/// Loading a BPF program needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).
#[track_caller]
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test loads the XDP program into the kernel: run it as root (`cargo xtask test` does)");
    }
}

/// A freshly loaded, unpinned program with small tries.
#[track_caller]
pub fn load() -> Dataplane {
    require_root();
    Dataplane::load(&LoadOptions {
        pin_dir: None,
        v4_capacity: 1 << 16,
        v6_capacity: 1 << 16,
    })
    .unwrap_or_else(|e| panic!("loading the program: {}", filter_user::error_chain(&e)))
}

#[track_caller]
pub fn prefix(text: &str) -> Prefix {
    text.parse()
        .unwrap_or_else(|e| panic!("bad prefix in test {text:?}: {e}"))
}

#[track_caller]
pub fn addr(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("bad address in test {text:?}: {e}"))
}

/// Adds one entry the way the daemon does: a sync that updates the trie and the fast
/// path together.
#[track_caller]
pub fn insert(dp: &mut Dataplane, text: &str, dst_rule: u32, src_rule: u32) {
    install(dp, &[(prefix(text), Entry { dst_rule, src_rule })]);
}

/// Adds (or changes) entries through a sync, keeping the rules the maps hold.
#[track_caller]
pub fn install(dp: &mut Dataplane, entries: &[(Prefix, Entry)]) {
    let current = Snapshot::read(dp.maps()).expect("reading the maps");
    let mut target = current.clone();
    target.entries.extend(entries.iter().copied());
    Plan::between(&current, &target)
        .apply(dp.maps_mut())
        .unwrap_or_else(|e| {
            panic!(
                "applying {} entries: {}",
                entries.len(),
                filter_user::error_chain(&e)
            )
        });
}

/// Entries as the model reads them.
pub fn as_list(
    entries: &std::collections::BTreeMap<Prefix, Entry>,
) -> Vec<filter_user::dataplane::PrefixEntry> {
    entries
        .iter()
        .map(|(p, e)| filter_user::dataplane::PrefixEntry {
            prefix: *p,
            entry: *e,
        })
        .collect()
}

/// Asserts that the fast path holds exactly what the entries derive.
#[track_caller]
pub fn assert_fast_path_consistent(dp: &Dataplane) {
    let held = Snapshot::read(dp.maps()).expect("reading the maps");
    let derived = filter_user::fastpath::FastState::derive(&held.entries);
    assert!(
        held.fast == derived,
        "the fast path differs from what the entries derive"
    );
}

#[track_caller]
pub fn set_rule(dp: &mut Dataplane, number: u32, action: u8) {
    dp.maps_mut()
        .set_rule(number, Rule::new(action, u64::from(number)))
        .unwrap_or_else(|e| panic!("setting rule {number}: {}", filter_user::error_chain(&e)));
}

/// All counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    pub verdicts: [Counter; verdict::COUNT as usize],
    pub rules: Vec<Counter>,
}

/// Reads the verdict counters and the counters of rules `0..rules`.
#[track_caller]
pub fn counters(dp: &Dataplane, rules: u32) -> Counters {
    let maps = dp.maps();
    Counters {
        verdicts: maps.verdict_counters().expect("reading verdict counters"),
        rules: (0..rules)
            .map(|r| maps.rule_counter(r).expect("reading rule counters"))
            .collect(),
    }
}

/// `before` plus one packet of `bytes` under `verdict` (and `SEEN`) and under `rule`.
pub fn plus_one(before: &Counters, verdict_index: u32, rule: Option<u32>, bytes: u64) -> Counters {
    let mut after = before.clone();
    for index in [verdict::SEEN, verdict_index] {
        let c = &mut after.verdicts[index as usize];
        c.packets += 1;
        c.bytes += bytes;
    }
    if let Some(rule) = rule {
        let c = &mut after.rules[rule as usize];
        c.packets += 1;
        c.bytes += bytes;
    }
    after
}

/// A seeded generator; the seed comes from `BORDERFILTER_SEED` when set, so a failure
/// printed with its seed can be replayed.
pub fn rng(test: &str) -> rand::rngs::SmallRng {
    use rand::SeedableRng;
    let seed = std::env::var("BORDERFILTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (set BORDERFILTER_SEED={seed} to replay)");
    rand::rngs::SmallRng::seed_from_u64(seed)
}
