//! Randomized tests of the loaded program against the plain-Rust model of its decision:
//! random nested prefix sets and addresses, and random frames of any length and content.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use common::*;
use filter_common::{
    action, parse, types::EXCEPTION_RULE, verdict, Entry, LongKey, LongValue, Slot,
};
use filter_user::{
    dataplane::{model, xdp_action, Dataplane, PrefixEntry},
    frame::{Frame, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6},
    prefix::Prefix,
    sync::{Plan, Snapshot},
};
use rand::{rngs::SmallRng, Rng};

const RULES: u32 = 12;
const ADDRESSES: usize = 10_000;

/// Documentation ranges: every prefix and address of these tests lies inside them.
const V4_RANGES: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];

fn random_v4(rng: &mut SmallRng) -> Ipv4Addr {
    let r = V4_RANGES[rng.random_range(0..V4_RANGES.len())];
    Ipv4Addr::new(r[0], r[1], r[2], rng.random())
}

fn random_v6(rng: &mut SmallRng) -> Ipv6Addr {
    // 2001:db8::/32, with the next 16 bits drawn from a few values so prefixes nest.
    let third: u16 = [0, 1, 0x66, 0xffff][rng.random_range(0..4)];
    let low: u128 = rng.random::<u128>() >> 32;
    Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(third) << 80) | (low & ((1 << 80) - 1)))
}

/// A random address inside `p`.
fn inside(rng: &mut SmallRng, p: &Prefix) -> IpAddr {
    match p.addr() {
        IpAddr::V4(a) => {
            let host = if p.length() == 32 {
                0
            } else {
                rng.random::<u32>() >> p.length()
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
        }
        IpAddr::V6(a) => {
            let host = if p.length() == 128 {
                0
            } else {
                rng.random::<u128>() >> p.length()
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
        }
    }
}

/// Random entries with heavy nesting: lengths /24-/32 for IPv4 and /32-/128 for IPv6,
/// each naming random rules per direction (0 = none).
fn random_entries(rng: &mut SmallRng, count: usize) -> Vec<PrefixEntry> {
    let mut by_prefix = HashMap::new();
    while by_prefix.len() < count {
        let prefix = if rng.random_bool(0.6) {
            Prefix::new_truncating(IpAddr::V4(random_v4(rng)), rng.random_range(24..=32))
        } else {
            let len = [32, 40, 48, 56, 64, 96, 112, 127, 128][rng.random_range(0..9)];
            Prefix::new_truncating(IpAddr::V6(random_v6(rng)), len)
        };
        let mut rule = || {
            if rng.random_bool(0.2) {
                0
            } else {
                rng.random_range(1..RULES)
            }
        };
        let entry = Entry {
            dst_rule: rule(),
            src_rule: rule(),
        };
        by_prefix.insert(prefix, entry);
    }
    by_prefix
        .into_iter()
        .map(|(prefix, entry)| PrefixEntry { prefix, entry })
        .collect()
}

/// Rule 1 is the exception rule; the others get random actions, some slots left unused.
fn random_actions(rng: &mut SmallRng) -> HashMap<u32, u8> {
    let mut actions = HashMap::from([(EXCEPTION_RULE, action::EXEMPT)]);
    // Every action at least once (no redirect target is configured here: redirect must
    // act as drop), the other rules at random.
    let all = [
        action::DROP,
        action::REDIRECT,
        action::MONITOR,
        action::EXEMPT,
        action::NONE,
    ];
    for rule in 2..RULES {
        let a = all
            .get(rule as usize - 2)
            .copied()
            .unwrap_or_else(|| all[rng.random_range(0..all.len())]);
        actions.insert(rule, a);
    }
    actions
}

fn install_scenario(dp: &mut Dataplane, entries: &[PrefixEntry], actions: &HashMap<u32, u8>) {
    for (&rule, &a) in actions {
        set_rule(dp, rule, a);
    }
    let all: Vec<_> = entries.iter().map(|e| (e.prefix, e.entry)).collect();
    install(dp, &all);
    assert_fast_path_consistent(dp);
}

/// The verdict and rule the program gave to `frame`, read from the counters it moved.
#[track_caller]
fn observe(dp: &Dataplane, frame: &[u8]) -> (u32, u32, Option<u32>) {
    let before = counters(dp, RULES);
    let action = dp.test_run(frame).expect("test_run");
    let after = counters(dp, RULES);
    let moved = |b: &[filter_common::Counter], a: &[filter_common::Counter]| -> Vec<usize> {
        (0..a.len())
            .filter(|&i| a[i].packets != b[i].packets)
            .collect()
    };
    let verdicts = moved(&before.verdicts, &after.verdicts);
    let rules = moved(&before.rules, &after.rules);
    assert_eq!(
        verdicts.len(),
        2,
        "a frame must move SEEN and exactly one verdict: {verdicts:?}"
    );
    assert!(
        rules.len() <= 1,
        "a frame moved several rule counters: {rules:?}"
    );
    (action, verdicts[1] as u32, rules.first().map(|&r| r as u32))
}

fn expected_action(verdict_index: u32) -> u32 {
    match verdict_index {
        verdict::DROP | verdict::REDIRECT => xdp_action::DROP,
        _ => xdp_action::PASS,
    }
}

#[test]
fn program_agrees_with_the_model_on_random_nested_prefixes() {
    let mut rng = rng("differential");
    let mut dp = load();
    let entries = random_entries(&mut rng, 3_000);
    let actions = random_actions(&mut rng);
    install_scenario(&mut dp, &entries, &actions);

    let mut mismatches = Vec::new();
    let mut seen_verdicts = HashMap::new();
    for i in 0..ADDRESSES {
        // Half the addresses inside some entry (often a nested one), half anywhere.
        let v6 = rng.random_bool(0.4);
        let pick = |rng: &mut SmallRng| -> IpAddr {
            let candidates: Vec<_> = entries
                .iter()
                .filter(|e| e.prefix.addr().is_ipv6() == v6)
                .collect();
            if rng.random_bool(0.5) && !candidates.is_empty() {
                let prefix = candidates[rng.random_range(0..candidates.len())].prefix;
                inside(rng, &prefix)
            } else if v6 {
                IpAddr::V6(random_v6(rng))
            } else {
                IpAddr::V4(random_v4(rng))
            }
        };
        let (src, dst) = (pick(&mut rng), pick(&mut rng));
        let mut frame = Frame::ip(src, dst);
        if i % 7 == 0 {
            frame = frame.tagged(ETH_P_8021Q);
        }
        let (want_verdict, want_rule) = model::decide(&entries, &actions, false, src, dst);
        let (action, got_verdict, got_rule) = observe(&dp, &frame.bytes());
        let want_rule = (want_rule != 0).then_some(want_rule);
        *seen_verdicts.entry(want_verdict).or_insert(0) += 1;
        if (action, got_verdict, got_rule)
            != (expected_action(want_verdict), want_verdict, want_rule)
        {
            mismatches.push(format!(
                "{src} -> {dst}: program gave action {action}, verdict {got_verdict}, rule {got_rule:?}; model says verdict {want_verdict}, rule {want_rule:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {ADDRESSES} addresses disagree:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The test only means something if every kind of outcome occurred.
    for v in [
        verdict::PASS,
        verdict::DROP,
        verdict::MONITOR,
        verdict::EXEMPT,
    ] {
        assert!(
            seen_verdicts.get(&v).copied().unwrap_or(0) > 50,
            "verdict {} occurred too rarely to be tested: {seen_verdicts:?}",
            verdict::NAMES[v as usize]
        );
    }
}

/// A random frame biased towards the paths the parser takes: an IP or VLAN ethertype
/// with random bytes behind it, sometimes a real IP header with random fields.
fn random_frame(rng: &mut SmallRng, entries: &[PrefixEntry]) -> Vec<u8> {
    let len = rng.random_range(0..=1600usize);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    if rng.random_bool(0.5) {
        // A well-formed frame, then damaged: truncated, or with random bytes overwritten.
        let pick = |rng: &mut SmallRng| {
            let prefix = entries[rng.random_range(0..entries.len())].prefix;
            inside(rng, &prefix)
        };
        let (mut src, mut dst) = (pick(rng), pick(rng));
        if src.is_ipv4() != dst.is_ipv4() {
            dst = src;
            src = pick(rng);
            if src.is_ipv4() != dst.is_ipv4() {
                src = dst;
            }
        }
        let mut f = Frame::ip(src, dst).with_data_len(rng.random_range(0..64));
        for _ in 0..rng.random_range(0..=3) {
            f = f.tagged([ETH_P_8021Q, ETH_P_8021AD][rng.random_range(0..2)]);
        }
        if src.is_ipv4() && rng.random_bool(0.3) {
            f = f.with_ipv4_options(4 * rng.random_range(0..=10));
        }
        bytes = f.bytes();
        if rng.random_bool(0.3) {
            bytes.truncate(rng.random_range(0..=bytes.len()));
        }
        for _ in 0..rng.random_range(0..3) {
            if !bytes.is_empty() {
                let i = rng.random_range(0..bytes.len().min(80));
                bytes[i] = rng.random();
            }
        }
    } else if len >= parse::ETH_HLEN {
        let ethertype = [
            ETH_P_IP,
            ETH_P_IPV6,
            ETH_P_8021Q,
            ETH_P_8021AD,
            rng.random(),
        ][rng.random_range(0..5)];
        bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
    }
    bytes
}

#[test]
fn random_frames_never_abort_and_agree_with_the_model() {
    let mut rng = rng("random frames");
    let mut dp = load();
    let entries = random_entries(&mut rng, 500);
    let actions = random_actions(&mut rng);
    install_scenario(&mut dp, &entries, &actions);

    let mut refused = 0;
    let mut by_verdict = HashMap::new();
    for _ in 0..20_000 {
        let frame = random_frame(&mut rng, &entries);
        if frame.len() < parse::ETH_HLEN {
            // The kernel does not run XDP on such frames (see xdp_fixtures.rs).
            assert!(
                dp.test_run(&frame).is_err(),
                "a {}-byte frame was run",
                frame.len()
            );
            refused += 1;
            continue;
        }
        let (action, got_verdict, got_rule) = observe(&dp, &frame);
        assert_ne!(
            action,
            xdp_action::ABORTED,
            "XDP_ABORTED for frame {frame:02x?}"
        );
        let (want_verdict, want_rule) = match parse::parse_slice(&frame) {
            parse::Parsed::V4 { src, dst } => model::decide(
                &entries,
                &actions,
                false,
                IpAddr::from(src),
                IpAddr::from(dst),
            ),
            parse::Parsed::V6 { src, dst } => model::decide(
                &entries,
                &actions,
                false,
                IpAddr::from(src),
                IpAddr::from(dst),
            ),
            parse::Parsed::NotIp => (verdict::NOT_IP, 0),
            parse::Parsed::Malformed => (verdict::MALFORMED, 0),
        };
        assert_eq!(
            (action, got_verdict, got_rule),
            (
                expected_action(want_verdict),
                want_verdict,
                (want_rule != 0).then_some(want_rule)
            ),
            "program and model disagree on frame {frame:02x?}"
        );
        *by_verdict
            .entry(verdict::NAMES[got_verdict as usize])
            .or_insert(0) += 1;
    }
    eprintln!("random frames: {by_verdict:?}, {refused} refused by the kernel");
    for v in ["malformed", "not_ip", "drop", "pass"] {
        assert!(
            by_verdict.get(v).copied().unwrap_or(0) > 100,
            "too few {v} frames: {by_verdict:?}"
        );
    }
}

/// The fast path after many small syncs (added, changed and removed entries, taking the
/// block-by-block path) must equal a fresh derivation, and the program must still agree
/// with the model.
#[test]
fn the_fast_path_stays_exact_through_small_changes() {
    let mut rng = rng("incremental");
    let mut dp = load();
    let actions = random_actions(&mut rng);
    let mut entries = random_entries(&mut rng, 400);
    install_scenario(&mut dp, &entries, &actions);
    for round in 0..60 {
        let current = Snapshot::read(dp.maps()).expect("reading the maps");
        let mut target = current.clone();
        let mut changes = BTreeMap::new();
        for _ in 0..rng.random_range(1..6) {
            match rng.random_range(0..3) {
                0 if !entries.is_empty() => {
                    let gone = entries.swap_remove(rng.random_range(0..entries.len()));
                    target.entries.remove(&gone.prefix);
                    changes.insert(gone.prefix, None);
                }
                1 if !entries.is_empty() => {
                    let i = rng.random_range(0..entries.len());
                    entries[i].entry.dst_rule = rng.random_range(0..RULES);
                    target.entries.insert(entries[i].prefix, entries[i].entry);
                    changes.insert(entries[i].prefix, Some(entries[i].entry));
                }
                _ => {
                    let new = random_entries(&mut rng, 1)[0];
                    entries.retain(|e| e.prefix != new.prefix);
                    entries.push(new);
                    target.entries.insert(new.prefix, new.entry);
                    changes.insert(new.prefix, Some(new.entry));
                }
            }
        }
        // Half the rounds compare whole snapshots, half plan from the changes alone
        // (what a CLI edit does).
        let plan = if round % 2 == 0 {
            Plan::between(&current, &target)
        } else {
            Plan::for_changes(&current, &changes, &target.rules)
        };
        plan.apply(dp.maps_mut()).expect("applying a small change");
        let held = Snapshot::read(dp.maps()).unwrap();
        let mut mirror = current.clone();
        plan.update(&mut mirror);
        assert_eq!(
            held.entries, target.entries,
            "round {round}: the trie holds the target"
        );
        assert!(
            held == mirror,
            "round {round}: the maps hold what the plan says (fast path and rule uses)"
        );

        assert_fast_path_consistent(&dp);
    }
    for _ in 0..2000 {
        let v6 = rng.random_bool(0.3);
        let pick = |rng: &mut SmallRng| -> IpAddr {
            let prefix = entries[rng.random_range(0..entries.len())].prefix;
            if prefix.addr().is_ipv6() == v6 && rng.random_bool(0.7) {
                inside(rng, &prefix)
            } else if v6 {
                IpAddr::V6(random_v6(rng))
            } else {
                IpAddr::V4(random_v4(rng))
            }
        };
        let (src, dst) = (pick(&mut rng), pick(&mut rng));
        let want = model::decide(&entries, &actions, false, src, dst);
        let (_, got_verdict, got_rule) = observe(&dp, &Frame::ip(src, dst).bytes());
        assert_eq!((got_verdict, got_rule.unwrap_or(0)), want, "{src} -> {dst}");
    }
}

/// Sparse /24s, where the slot carries the few longer entries itself, crowded ones whose
/// longer entries all share one entry (the slot carries a bitmap), and crowded ones with
/// several entries, probed in the long-entry map: every address of the three IPv4
/// documentation /24s agrees with the model while entries come and go, so blocks cross
/// between the three forms.
#[test]
fn slots_answer_alike_with_few_and_many_longer_entries() {
    let mut rng = rng("sparse");
    let mut dp = load();
    let actions = random_actions(&mut rng);
    for (&rule, &a) in &actions {
        set_rule(&mut dp, rule, a);
    }
    let mut entries: BTreeMap<Prefix, Entry> = BTreeMap::new();
    let mut crossings = 0;
    let mut dense_seen = 0;
    // 0: the long-entry map; 1: inline entries; 2: a bitmap.
    let form = |s: &Slot| match s.inline_count {
        0 => 0,
        filter_common::SLOT_DENSE => 2,
        _ => 1,
    };
    for round in 0..40 {
        let current = Snapshot::read(dp.maps()).expect("reading the maps");
        let mut changes = BTreeMap::new();
        for r in V4_RANGES {
            // Aim each /24 at 0 to 7 longer entries, around the slot's capacity.
            let block = u32::from(Ipv4Addr::new(r[0], r[1], r[2], 0));
            let want = rng.random_range(0..8);
            // Half the time every longer entry of the /24 gets the same entry.
            let shared = rng.random_bool(0.5).then(|| Entry {
                dst_rule: rng.random_range(1..RULES),
                src_rule: rng.random_range(0..RULES),
            });
            let inside: Vec<Prefix> = entries
                .keys()
                .filter(|p| p.length() > 24)
                .filter(|p| matches!(p.addr(), IpAddr::V4(a) if u32::from(a) >> 8 == block >> 8))
                .copied()
                .collect();
            for p in inside.iter().skip(want) {
                changes.insert(*p, None);
            }
            if let Some(e) = shared {
                for p in inside.iter().take(want) {
                    changes.insert(*p, Some(e));
                }
            }
            for _ in inside.len()..want {
                let len = rng.random_range(25..=32);
                let p = Prefix::new_truncating(
                    IpAddr::V4((block | rng.random_range(0..256)).into()),
                    len,
                );
                let rule = |rng: &mut SmallRng| {
                    if rng.random_bool(0.2) {
                        0
                    } else {
                        rng.random_range(1..RULES)
                    }
                };
                let e = shared.unwrap_or_else(|| Entry {
                    dst_rule: rule(&mut rng),
                    src_rule: rule(&mut rng),
                });
                changes.insert(p, Some(e));
            }
            if rng.random_bool(0.3) {
                let p = Prefix::new_truncating(IpAddr::V4(block.into()), 24);
                let e = if entries.contains_key(&p) {
                    None
                } else {
                    Some(Entry {
                        dst_rule: 1,
                        src_rule: 0,
                    })
                };
                changes.insert(p, e);
            }
        }
        for (p, e) in &changes {
            match e {
                Some(e) => entries.insert(*p, *e),
                None => entries.remove(p),
            };
        }
        let plan = Plan::for_changes(&current, &changes, &current.rules);
        plan.apply(dp.maps_mut()).expect("applying");
        let mut mirror = current.clone();
        plan.update(&mut mirror);
        let held = Snapshot::read(dp.maps()).unwrap();
        assert!(
            held == mirror,
            "round {round}: the maps hold what the plan says"
        );
        assert_fast_path_consistent(&dp);
        let forms = |s: &Snapshot| {
            let mut f: Vec<(u32, u8)> = s.fast.slots.iter().map(|(b, s)| (*b, form(s))).collect();
            f.sort_unstable();
            f
        };
        crossings += usize::from(forms(&current) != forms(&held));
        dense_seen += held.fast.slots.values().filter(|s| form(s) == 2).count();
        let list = as_list(&entries);
        for r in V4_RANGES {
            for last in 0..=255u8 {
                let dst = IpAddr::V4(Ipv4Addr::new(r[0], r[1], r[2], last));
                let src = IpAddr::V4(random_v4(&mut rng));
                let want = model::decide(&list, &actions, false, src, dst);
                let (_, got_verdict, got_rule) = observe(&dp, &Frame::ip(src, dst).bytes());
                assert_eq!(
                    (got_verdict, got_rule.unwrap_or(0)),
                    want,
                    "round {round}: {src} -> {dst}"
                );
            }
        }
    }
    assert!(
        crossings > 10,
        "blocks must move between the forms: {crossings}"
    );
    assert!(dense_seen > 5, "dense slots must occur: {dense_seen}");
}

/// A slot or long entry read while the kernel reuses its memory must not decide: the
/// program checks a slot's seal (which covers its /24) and a long entry's key, and asks
/// the trie instead. Slots and long entries that are wrong but unsealed, sealed for
/// another /24, or naming another key leave every answer equal to the model's; the same
/// wrong slots properly sealed change answers, so the check is what protects.
#[test]
fn torn_or_foreign_fast_path_reads_fall_back_to_the_trie() {
    let mut rng = rng("seal");
    let mut dp = load();
    let actions = random_actions(&mut rng);
    let mut entries: Vec<PrefixEntry> = Vec::new();
    for r in V4_RANGES {
        let block = u32::from(Ipv4Addr::new(r[0], r[1], r[2], 0));
        // The first /24 has more longer entries than a slot carries: the long-entry map
        // answers there; the others answer from their slots.
        let crowd: &[(u32, u8)] = if r == V4_RANGES[0] {
            &[(100, 32), (101, 32), (150, 31)]
        } else {
            &[]
        };
        for &(low, len) in [(0, 24), (64, 26), (7, 32), (200, 29)].iter().chain(crowd) {
            entries.push(PrefixEntry {
                prefix: Prefix::new_truncating(IpAddr::V4((block | low).into()), len),
                entry: Entry {
                    dst_rule: rng.random_range(1..RULES),
                    src_rule: rng.random_range(0..RULES),
                },
            });
        }
    }
    install_scenario(&mut dp, &entries, &actions);
    let drop_rule = *actions
        .iter()
        .find(|(_, a)| **a == action::DROP)
        .expect("a drop rule")
        .0;
    let agrees = |dp: &Dataplane, rng: &mut SmallRng| -> usize {
        let mut differ = 0;
        for r in V4_RANGES {
            for last in 0..=255u8 {
                let dst = IpAddr::V4(Ipv4Addr::new(r[0], r[1], r[2], last));
                let src = IpAddr::V4(random_v4(rng));
                let want = model::decide(&entries, &actions, false, src, dst);
                let (_, verdict, rule) = observe(dp, &Frame::ip(src, dst).bytes());
                differ += usize::from((verdict, rule.unwrap_or(0)) != want);
            }
        }
        differ
    };
    assert_eq!(agrees(&dp, &mut rng), 0, "before tampering");
    let held = Snapshot::read(dp.maps()).unwrap();
    // A wrong slot: every address of the /24 dropped by one rule, nothing inline.
    let wrong = |block: u32| Slot {
        base: Entry {
            dst_rule: drop_rule,
            src_rule: drop_rule,
        },
        has_base: 1,
        ..held.fast.slots[&block]
    };
    let blocks: Vec<u32> = held.fast.slots.keys().copied().collect();
    assert_eq!(blocks.len(), 3);
    let unsealed: Vec<(u32, Slot)> = blocks
        .iter()
        .map(|b| {
            (
                *b,
                Slot {
                    seal: 0,
                    ..wrong(*b)
                },
            )
        })
        .collect();
    dp.maps().fast().put_slots_as_is(&unsealed).unwrap();
    assert_eq!(agrees(&dp, &mut rng), 0, "unsealed slots are ignored");
    let elsewhere: Vec<(u32, Slot)> = blocks
        .iter()
        .map(|b| (*b, wrong(*b).sealed(b + 1)))
        .collect();
    dp.maps().fast().put_slots_as_is(&elsewhere).unwrap();
    assert_eq!(
        agrees(&dp, &mut rng),
        0,
        "slots sealed for another /24 are ignored"
    );
    let foreign: Vec<(LongKey, LongValue)> = held
        .fast
        .long
        .keys()
        .map(|k| {
            (
                *k,
                LongValue {
                    entry: Entry {
                        dst_rule: drop_rule,
                        src_rule: drop_rule,
                    },
                    key: LongKey {
                        len: k.len - 1,
                        ..*k
                    },
                },
            )
        })
        .collect();
    assert!(
        held.fast.slots.values().any(|s| s.inline_count == 0)
            && held.fast.slots.values().any(|s| s.inline_count > 0)
    );
    // The right slots again, so that the crowded /24 probes the long entries.
    let right: Vec<(u32, Slot)> = held.fast.slots.iter().map(|(b, s)| (*b, *s)).collect();
    dp.maps().fast().put_slots(&right).unwrap();
    assert_eq!(agrees(&dp, &mut rng), 0, "the right slots again");
    dp.maps().fast().put_long_as_is(&foreign).unwrap();
    assert_eq!(
        agrees(&dp, &mut rng),
        0,
        "long entries naming another key are ignored"
    );
    let sealed: Vec<(u32, Slot)> = blocks.iter().map(|b| (*b, wrong(*b).sealed(*b))).collect();
    dp.maps().fast().put_slots_as_is(&sealed).unwrap();
    assert!(
        agrees(&dp, &mut rng) > 100,
        "properly sealed wrong slots do decide"
    );
}
