//! Every state a sync passes through, not only its end: after each single write to the
//! trie and each step of the fast path, every address that both the old and the new
//! entries block must be blocked by the program (BPF_PROG_TEST_RUN).
//!
//! Prefixes nest around 198.51.100.0/24 from /8 to /32, so that slot bases come from
//! covering entries and slots cross between carrying their longer entries and probing
//! the long-entry map, and a /8 makes the trie answer for blocks without a slot. The
//! covering /8, /16, /20 and /23 reach outside the documentation
//! range, but only as map entries: every frame is addressed inside 198.51.100.0/24 or
//! 192.0.2.0/24, and none leaves the test run.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr},
};

use common::*;
use filter_common::{action, types::EXCEPTION_RULE, verdict, Entry};
use filter_user::{
    dataplane::{model, Dataplane, PrefixEntry},
    fastpath::Step,
    frame::Frame,
    prefix::Prefix,
    sync::{Plan, Snapshot},
};
use rand::{rngs::SmallRng, Rng};

const POOL: [&str; 21] = [
    "198.0.0.0/8",
    "198.51.0.0/16",
    "198.51.96.0/20",
    "198.51.100.0/23",
    "198.51.100.0/24",
    "198.51.100.0/25",
    "198.51.100.128/25",
    "198.51.100.64/26",
    "198.51.100.0/28",
    "198.51.100.16/28",
    "198.51.100.8/29",
    "198.51.100.4/30",
    "198.51.100.7/32",
    "198.51.100.9/32",
    "198.51.100.20/32",
    "198.51.100.66/32",
    "198.51.100.130/32",
    "198.51.100.200/32",
    "198.51.100.255/32",
    "198.51.100.5/32",
    "198.51.100.17/32",
];

const RULES: [(u32, u8); 4] = [
    (EXCEPTION_RULE, action::EXEMPT),
    (2, action::DROP),
    (3, action::MONITOR),
    (4, action::DROP),
];

fn random_entries(rng: &mut SmallRng) -> BTreeMap<Prefix, Entry> {
    let mut out = BTreeMap::new();
    for p in POOL {
        if rng.random_bool(0.45) {
            let rule = RULES[rng.random_range(0..RULES.len())].0;
            out.insert(
                prefix(p),
                Entry {
                    dst_rule: rule,
                    src_rule: 0,
                },
            );
        }
    }
    out
}

/// Asserts that every address of 198.51.100.0/24 that both `old` and `new` block is
/// blocked now.
#[track_caller]
fn assert_blocked_throughout(
    dp: &Dataplane,
    old: &[PrefixEntry],
    new: &[PrefixEntry],
    actions: &HashMap<u32, u8>,
    at: &str,
) -> usize {
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let blocks = |v: u32| v == verdict::DROP || v == verdict::REDIRECT;
    let mut checked = 0;
    for last in 0..=255u8 {
        let dst = IpAddr::V4(Ipv4Addr::new(198, 51, 100, last));
        let before = model::decide(old, actions, false, src, dst).0;
        let after = model::decide(new, actions, false, src, dst).0;
        if !(blocks(before) && blocks(after)) {
            continue;
        }
        checked += 1;
        let got = dp.test_run(&Frame::ip(src, dst).bytes()).expect("test_run");
        assert_eq!(
            got,
            filter_user::dataplane::xdp_action::DROP,
            "{dst} is blocked by both lists but passed {at}"
        );
    }
    checked
}

#[test]
fn no_state_of_a_sync_passes_what_both_lists_block() {
    let mut rng = common::rng("sync_states");
    let mut dp = load();
    let actions: HashMap<u32, u8> = RULES.iter().copied().collect();
    for (n, a) in RULES {
        set_rule(&mut dp, n, a);
    }
    let mut checked = 0;
    let mut steps_seen = 0;
    for scenario in 0..60 {
        let old = random_entries(&mut rng);
        let mut new = random_entries(&mut rng);
        // Keep some entries as they were, so that changes mix with what stays.
        for (p, e) in &old {
            if rng.random_bool(0.3) {
                new.insert(*p, *e);
            }
        }
        // Install the old entries (any way), then sync to the new ones step by step.
        let current = Snapshot::read(dp.maps()).unwrap();
        Plan::between(&current, &Snapshot::new(old.clone(), current.rules.clone()))
            .apply(dp.maps_mut())
            .expect("installing the old entries");
        let current = Snapshot::read(dp.maps()).unwrap();
        let plan = if scenario % 2 == 0 {
            Plan::between(&current, &Snapshot::new(new.clone(), current.rules.clone()))
        } else {
            let changes: BTreeMap<Prefix, Option<Entry>> = old
                .keys()
                .chain(new.keys())
                .map(|p| (*p, new.get(p).copied()))
                .collect();
            Plan::for_changes(&current, &changes, &current.rules)
        };
        let (old_list, new_list) = (as_list(&old), as_list(&new));
        let check = |dp: &Dataplane, at: &str| {
            assert_blocked_throughout(dp, &old_list, &new_list, &actions, at)
        };
        let trie_first = rng.random_bool(0.5);
        // Phase 2: the trie's upserts and the fast path's first steps, in either order.
        let upserts = |dp: &mut Dataplane, checked: &mut usize| {
            for (p, e) in &plan.upserts {
                dp.maps().insert_many(&[(*p, *e)]).unwrap();
                *checked += check(dp, &format!("after upserting {p} (scenario {scenario})"));
            }
        };
        let fast = |dp: &mut Dataplane, steps: &[Step], checked: &mut usize, seen: &mut usize| {
            for step in steps {
                plan.fast.apply_step(dp.maps(), *step).unwrap();
                *checked += check(
                    dp,
                    &format!("after fast-path step {step:?} (scenario {scenario})"),
                );
                *seen += 1;
            }
        };
        if trie_first {
            upserts(&mut dp, &mut checked);
            fast(
                &mut dp,
                &Step::BEFORE_REMOVALS,
                &mut checked,
                &mut steps_seen,
            );
        } else {
            fast(
                &mut dp,
                &Step::BEFORE_REMOVALS,
                &mut checked,
                &mut steps_seen,
            );
            upserts(&mut dp, &mut checked);
        }
        // Phase 3: the removals, in either order.
        let removals = |dp: &mut Dataplane, checked: &mut usize| {
            for p in &plan.removals {
                dp.maps().remove_many(&[*p]).unwrap();
                *checked += check(dp, &format!("after removing {p} (scenario {scenario})"));
            }
        };
        if trie_first {
            removals(&mut dp, &mut checked);
            fast(
                &mut dp,
                &Step::AFTER_REMOVALS,
                &mut checked,
                &mut steps_seen,
            );
        } else {
            fast(
                &mut dp,
                &Step::AFTER_REMOVALS,
                &mut checked,
                &mut steps_seen,
            );
            removals(&mut dp, &mut checked);
        }
        assert_fast_path_consistent(&dp);
        assert_eq!(
            Snapshot::read(dp.maps()).unwrap().entries,
            new,
            "scenario {scenario}: the end state"
        );
    }
    eprintln!("{checked} checks of addresses blocked by both lists, {steps_seen} fast-path steps");
    assert!(
        checked > 10_000,
        "the scenarios must block many addresses in both lists: {checked}"
    );
}
