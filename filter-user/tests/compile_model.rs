//! The compiler against the plain statement of the semantics (`semantics::decide`), on
//! random nested lists: orders of every action and direction, some not yet or no longer
//! in force, exceptions inside blocks and blocks inside exceptions.

mod common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_common::types::{EXCEPTION_RULE, NO_RULE};
use filter_user::{
    compile::{
        compile, compile_with, resolved_changes, Compiled, ListingChange, Numbering, Resolved,
    },
    orders::{
        edit::{Done, Edit},
        Action, Direction, Exception, Instant, Listed, Order, OrderList, OrderState, Side,
    },
    prefix::Prefix,
    semantics::{decide, decide_with, Decision},
};
use rand::{rngs::SmallRng, Rng};
use time::{macros::datetime, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

fn listed<T: ToString>(value: T) -> Listed<T> {
    Listed {
        text: value.to_string(),
        value,
    }
}

/// A random prefix inside the documentation ranges, biased to nest: IPv4 /24-/32 in
/// 198.51.100.0/24 and 203.0.113.0/24, IPv6 /32-/128 in 2001:db8::/32.
fn random_prefix(rng: &mut SmallRng) -> Prefix {
    if rng.random_bool(0.6) {
        let third = [100u8, 113][rng.random_range(0..2)];
        let first = if third == 100 { [198, 51] } else { [203, 0] };
        let addr = Ipv4Addr::new(first[0], first[1], third, rng.random());
        Prefix::new_truncating(IpAddr::V4(addr), rng.random_range(24..=32))
    } else {
        let low: u128 = (rng.random::<u128>() >> 96) << 64 | u128::from(rng.random::<u8>());
        let addr = Ipv6Addr::from((0x2001_0db8u128 << 96) | low);
        let len = [32, 40, 48, 56, 64, 120, 128][rng.random_range(0..7)];
        Prefix::new_truncating(IpAddr::V6(addr), len)
    }
}

fn random_list(rng: &mut SmallRng) -> OrderList {
    let mut list = OrderList::empty();
    let orders = rng.random_range(1..12);
    for i in 0..orders {
        let day = |d: &str| Listed {
            text: d.to_string(),
            value: Instant::parse(d).unwrap(),
        };
        let (valid_from, expires) = match rng.random_range(0..6) {
            0 => (Some(day("2026-12-01")), None), // pending
            1 => (None, Some(day("2026-11-27"))), // expired
            2 => (Some(day("2026-11-28")), Some(day("2026-11-28"))), // active today only
            _ => (None, None),
        };
        list.orders.push(Order {
            id: format!("ORD-{i}"),
            authority: "Retten".into(),
            issued: Listed {
                text: "2026-01-01".into(),
                value: time::macros::date!(2026 - 01 - 01),
            },
            valid_from,
            expires,
            basis: None,
            action: Action::ALL[rng.random_range(0..3)],
            direction: Some(Direction::ALL[rng.random_range(0..3)]),
            prefixes: (0..rng.random_range(1..40))
                .map(|_| listed(random_prefix(rng)))
                .collect(),
            domains: Vec::new(),
            allow_broad: None,
            allow_shared: None,
            note: None,
        });
    }
    for _ in 0..rng.random_range(0..15) {
        list.exceptions.push(Exception {
            prefix: listed(random_prefix(rng)),
            reason: "test".into(),
        });
    }
    list
}

/// What the compiled entries say for `addr` on `side`, in the terms of `Decision`.
fn compiled_decision(
    c: &Compiled,
    list: &OrderList,
    addr: IpAddr,
    side: Side,
) -> (Option<String>, bool) {
    let entry = c
        .entries
        .iter()
        .filter(|(p, _)| p.contains_addr(addr))
        .max_by_key(|(p, _)| p.length())
        .map(|(_, e)| *e);
    let rule = entry.map_or(NO_RULE, |e| match side {
        Side::Dst => e.dst_rule,
        Side::Src => e.src_rule,
    });
    match rule {
        NO_RULE => (None, false),
        EXCEPTION_RULE => (None, true),
        n => {
            let id = c
                .order_of_rule
                .get(&n)
                .cloned()
                .expect("entry names a known rule");
            let order = list.order(&id).expect("rule owned by a listed order");
            assert_eq!(
                c.rules[&n].action,
                order.action.code(),
                "rule {n} has the order's action"
            );
            (Some(id), false)
        }
    }
}

fn random_addr(rng: &mut SmallRng, list: &OrderList) -> IpAddr {
    let all: Vec<Prefix> = list
        .orders
        .iter()
        .flat_map(|o| o.prefixes.iter().map(|p| p.value))
        .chain(list.exceptions.iter().map(|e| e.prefix.value))
        .collect();
    if rng.random_bool(0.8) && !all.is_empty() {
        let p = all[rng.random_range(0..all.len())];
        match p.addr() {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                u32::from(a)
                    | (rng
                        .random::<u32>()
                        .checked_shr(u32::from(p.length()))
                        .unwrap_or(0)),
            )),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                u128::from(a)
                    | (rng
                        .random::<u128>()
                        .checked_shr(u32::from(p.length()))
                        .unwrap_or(0)),
            )),
        }
    } else {
        random_prefix(rng).addr()
    }
}

#[test]
fn compiled_entries_equal_the_semantics_on_random_lists() {
    let mut rng = common::rng("compiled_entries_equal_the_semantics_on_random_lists");
    let mut checked = 0;
    let mut outcomes = [0usize; 3];
    for _ in 0..300 {
        let list = random_list(&mut rng);
        let compiled = compile(&list, NOW, &Numbering::default()).expect("compiles");
        for _ in 0..100 {
            let addr = random_addr(&mut rng, &list);
            for side in Side::BOTH {
                let want = decide(&list, NOW, addr, side);
                let got = compiled_decision(&compiled, &list, addr, side);
                let want_short = match &want {
                    Decision::Pass => (None, false),
                    Decision::Exempt { .. } => (None, true),
                    Decision::Order { id, .. } => (Some(id.clone()), false),
                };
                outcomes[match want {
                    Decision::Pass => 0,
                    Decision::Exempt { .. } => 1,
                    Decision::Order { .. } => 2,
                }] += 1;
                assert_eq!(
                    got,
                    want_short,
                    "{addr} as {side:?}: compiled {got:?}, semantics {want:?}\nlist: {}",
                    list.to_json()
                );
                checked += 1;
            }
        }
    }
    eprintln!("{checked} lookups; pass/exempt/order: {outcomes:?}");
    assert!(
        outcomes.iter().all(|&n| n > checked / 20),
        "every outcome must occur often: {outcomes:?}"
    );
}

#[test]
fn rule_numbers_are_stable_and_never_reused_within_a_change() {
    let mut rng = common::rng("rule_numbers_are_stable_and_never_reused_within_a_change");
    let mut list = random_list(&mut rng);
    while list.orders.len() < 3 {
        list = random_list(&mut rng);
    }
    let first = compile(&list, NOW, &Numbering::default()).unwrap();
    let numbering = Numbering::from_rules(&first.rules);
    // Remove the first order and add a new one at the end.
    let removed = list.orders.remove(0);
    let mut added = list.orders[0].clone();
    added.id = "NEW".into();
    list.orders.push(added);
    let second = compile(&list, NOW, &numbering).unwrap();
    for order in &list.orders[..list.orders.len() - 1] {
        assert_eq!(
            first.rule_of_order(&order.id),
            second.rule_of_order(&order.id),
            "order {} kept its number",
            order.id
        );
    }
    let retired = first.rule_of_order(&removed.id).unwrap();
    assert_ne!(
        second.rule_of_order("NEW"),
        Some(retired),
        "a number retired by this change is not reused by it"
    );
}

#[test]
fn a_monitor_order_never_weakens_a_drop_order() {
    let text = r#"{"version": 1, "orders": [
        {"id": "M", "authority": "a", "issued": "2026-01-01", "action": "monitor", "prefixes": ["198.51.100.0/25"]},
        {"id": "D", "authority": "a", "issued": "2026-01-01", "action": "drop", "prefixes": ["198.51.100.0/24"]}
    ]}"#;
    let (list, p) = filter_user::orders::parse::parse(text.as_bytes());
    let list = list.unwrap_or_else(|| panic!("{p}"));
    let c = compile(&list, NOW, &Numbering::default()).unwrap();
    let addr: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(
        compiled_decision(&c, &list, addr, Side::Dst),
        (Some("D".into()), false)
    );
}

/// A random CLI edit on `list` (prefixes from the same nested ranges, so edits land
/// above, below and on listed prefixes).
fn random_edit(rng: &mut SmallRng, list: &OrderList, fresh: &mut usize) -> Edit {
    let some_order = |rng: &mut SmallRng| {
        list.orders[rng.random_range(0..list.orders.len())]
            .id
            .clone()
    };
    match rng.random_range(0..6) {
        0 => Edit::AddPrefixes {
            order: some_order(rng),
            prefixes: (0..rng.random_range(1..4))
                .map(|_| random_prefix(rng).to_string())
                .collect(),
        },
        1 => {
            let o = &list.orders[rng.random_range(0..list.orders.len())];
            Edit::RemovePrefixes {
                order: o.id.clone(),
                prefixes: vec![o.prefixes[rng.random_range(0..o.prefixes.len())]
                    .text
                    .clone()],
            }
        }
        2 => Edit::AddException {
            prefix: random_prefix(rng).to_string(),
            reason: "test".into(),
        },
        3 if !list.exceptions.is_empty() => Edit::RemoveException {
            prefix: list.exceptions[rng.random_range(0..list.exceptions.len())]
                .prefix
                .text
                .clone(),
        },
        _ => {
            *fresh += 1;
            let action = ["drop", "monitor", "redirect"][rng.random_range(0..3)];
            let direction = ["both", "dst", "src"][rng.random_range(0..3)];
            let prefixes: Vec<String> = (0..rng.random_range(1..6))
                .map(|_| random_prefix(rng).to_string())
                .collect();
            let window = if rng.random_bool(0.2) {
                serde_json::json!({"valid_from": "2026-12-01"})
            } else {
                serde_json::json!({})
            };
            let mut order = serde_json::json!({
                "id": format!("NEW-{fresh}"), "authority": "Retten", "issued": "2026-01-01",
                "action": action, "direction": direction, "prefixes": prefixes,
            });
            order
                .as_object_mut()
                .unwrap()
                .extend(window.as_object().unwrap().clone());
            Edit::AddOrder { order }
        }
    }
}

/// A CLI edit is compiled incrementally (only the prefixes it touches, and below them);
/// after every edit the result must equal compiling the whole list from scratch, and
/// undoing an edit must give back exactly what was there.
#[test]
fn incremental_compilation_equals_a_full_compile() {
    let mut rng = common::rng("incremental_compilation_equals_a_full_compile");
    let mut edits = [0usize; 2];
    for _ in 0..150 {
        let mut list = random_list(&mut rng);
        let mut compiled = compile(&list, NOW, &Numbering::default()).expect("compiles");
        let mut fresh = 0;
        for step in 0..30 {
            let edit = random_edit(&mut rng, &list, &mut fresh);
            let before = (list.clone(), compiled.clone());
            let Ok(done) = edit.apply_in_place(&mut list) else {
                assert_eq!(list, before.0, "a refused edit leaves the list alone");
                continue;
            };
            if matches!(done, Done::AddedOrder) {
                let numbering = Numbering::from_rules(&compiled.rules);
                compiled
                    .add_order(&list, list.orders.len() - 1, &numbering, NOW)
                    .expect("room for the order");
            }
            let listing = compiled.listing_changes(&list, &done, NOW);
            let changed = compiled.recompile(&list, &listing);
            let full =
                compile(&list, NOW, &Numbering::from_rules(&compiled.rules)).expect("compiles");
            assert_eq!(
                compiled.entries,
                full.entries,
                "step {step}: {edit:?}\nlist: {}",
                list.to_json()
            );
            assert_eq!(compiled.rules, full.rules, "step {step}: {edit:?}");
            for (p, e) in &changed {
                assert_ne!(
                    before.1.entries.get(p),
                    e.as_ref(),
                    "{p} reported changed but is not"
                );
            }
            edits[usize::from(!changed.is_empty())] += 1;
            if rng.random_bool(0.3) {
                // Undo, as the daemon does when the file cannot be written.
                compiled.recompile(&list, &ListingChange::reversed(&listing));
                if matches!(done, Done::AddedOrder) {
                    compiled.remove_last_order();
                }
                done.undo(&mut list);
                assert_eq!(list, before.0, "step {step}: undo restores the list");
                assert_eq!(
                    compiled.entries, before.1.entries,
                    "step {step}: undo restores the entries"
                );
                assert_eq!(
                    compiled.rules, before.1.rules,
                    "step {step}: undo restores the rules"
                );
            }
        }
    }
    eprintln!("edits without/with entry changes: {edits:?}");
    assert!(edits[1] > 1000, "most edits change entries: {edits:?}");
}

/// Random addresses for the names of orders in force to resolve to (the daemon admits
/// none for the others): hosts inside the list's prefixes (so they nest under blocks and
/// exceptions) or anywhere.
fn random_resolved(rng: &mut SmallRng, list: &OrderList) -> Resolved {
    let mut out = Resolved::new();
    for index in 0..list.orders.len() {
        if rng.random_bool(0.5) || list.orders[index].state(NOW) != OrderState::Active {
            continue;
        }
        let hosts: BTreeSet<Prefix> = (0..rng.random_range(1..6))
            .map(|_| Prefix::host(random_addr(rng, list)))
            .collect();
        out.insert(index, hosts);
    }
    out
}

#[test]
fn addresses_from_names_compile_like_prefixes_of_their_order_in_full_and_in_place() {
    let mut rng = common::rng("addresses_from_names_compile_like_prefixes");
    let mut resolved_decisions = 0;
    for _ in 0..200 {
        let list = random_list(&mut rng);
        let first = random_resolved(&mut rng, &list);
        let mut compiled =
            compile_with(&list, NOW, &Numbering::default(), &first).expect("compiles");
        for _ in 0..50 {
            let addr = random_addr(&mut rng, &list);
            for side in Side::BOTH {
                let want = decide_with(&list, NOW, addr, side, &first);
                let got = compiled_decision(&compiled, &list, addr, side);
                let want_short = match &want {
                    Decision::Pass => (None, false),
                    Decision::Exempt { .. } => (None, true),
                    Decision::Order { id, prefix, .. } => {
                        resolved_decisions +=
                            usize::from(prefix.length() == prefix.family().bits());
                        (Some(id.clone()), false)
                    }
                };
                assert_eq!(
                    got,
                    want_short,
                    "{addr} as {side:?}\nlist: {}\nresolved: {first:?}",
                    list.to_json()
                );
            }
        }
        // The answers move: changed in place, the entries are those of a full compile,
        // and a host listed both by a prefix and by a name stays when one of them goes.
        let second = random_resolved(&mut rng, &list);
        compiled.recompile(&list, &resolved_changes(&first, &second));
        let full = compile_with(&list, NOW, &Numbering::default(), &second).expect("compiles");
        assert_eq!(compiled.entries, full.entries, "list: {}", list.to_json());
        compiled.recompile(&list, &resolved_changes(&second, &Resolved::new()));
        let none = compile(&list, NOW, &Numbering::default()).expect("compiles");
        assert_eq!(compiled.entries, none.entries, "list: {}", list.to_json());
    }
    assert!(
        resolved_decisions > 500,
        "names decided too few lookups: {resolved_decisions}"
    );
}
