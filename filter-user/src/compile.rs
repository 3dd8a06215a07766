//! From an order list to the data plane's entries: one LPM entry per distinct prefix,
//! whose value already says which order acts on an address in each direction, so that
//! the program needs a single longest-prefix lookup per address.
//!
//! The semantics (see `semantics` for the plain statement and `docs/semantics.md`): for
//! an address and a direction, the orders that count are the active ones covering the
//! address in that direction with a prefix *longer* than the longest exception covering
//! it. The strictest action among them acts (drop > redirect > monitor); ties go to the
//! longer prefix, then to the order listed first. If none counts but an exception covers
//! the address, it is exempt; otherwise it passes.
//!
//! Every address whose longest matching entry is prefix `p` is covered by exactly the
//! listed prefixes that contain `p`, so the decision is a function of `p`'s ancestors.
//! Walking the sorted prefixes with a stack of ancestors computes it for every `p` in
//! one pass: O(n log n) for the sort, O(n) for the walk.

use std::collections::{BTreeMap, HashMap, HashSet};

use filter_common::{
    action,
    types::{EXCEPTION_RULE, FIRST_ORDER_RULE, NO_RULE},
    Entry, Rule,
};
use time::OffsetDateTime;

use crate::{
    orders::{OrderList, OrderState, Side},
    prefix::{Family, Prefix},
};

/// `Rule::owner` of the shared exception rule.
pub const EXCEPTION_OWNER: u64 = u64::MAX;

/// A stable 64-bit fingerprint of an order id (FNV-1a), never 0 (a free slot) nor
/// [`EXCEPTION_OWNER`]. Stored in the rule slot so that a restarted daemon finds each
/// order's rule number again; it must never change between versions.
pub fn fingerprint(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    match h {
        0 => 1,
        EXCEPTION_OWNER => EXCEPTION_OWNER - 1,
        h => h,
    }
}

/// The rule numbers in use, by owner fingerprint: what the data plane holds now.
#[derive(Clone, Debug, Default)]
pub struct Numbering {
    by_owner: HashMap<u64, u32>,
}

impl Numbering {
    /// From the rule slots in use (as `Maps::rules` returns them).
    pub fn from_rules<'a>(rules: impl IntoIterator<Item = (&'a u32, &'a Rule)>) -> Self {
        Self {
            by_owner: rules
                .into_iter()
                .filter(|(n, r)| **n >= FIRST_ORDER_RULE && r.owner != 0)
                .map(|(n, r)| (r.owner, *n))
                .collect(),
        }
    }
}

/// Why a list cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("the list has {orders} orders; the data plane has room for {room}")]
    TooManyOrders { orders: usize, room: u32 },
}

/// What the data plane must hold for a list at a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Every prefix entry, both families.
    pub entries: BTreeMap<Prefix, Entry>,
    /// Every rule slot in use, by number.
    pub rules: BTreeMap<u32, Rule>,
    /// The order owning each order rule number.
    pub order_of_rule: BTreeMap<u32, String>,
    /// Each order's state at the moment of compilation, in list order.
    pub states: Vec<(String, OrderState)>,
}

impl Compiled {
    pub fn rule_of_order(&self, id: &str) -> Option<u32> {
        self.order_of_rule
            .iter()
            .find(|(_, o)| o.as_str() == id)
            .map(|(n, _)| *n)
    }

    pub fn count(&self, family: Family) -> usize {
        self.entries.keys().filter(|p| p.family() == family).count()
    }
}

/// The best order acting on a side, compared by strictness, then prefix length, then
/// listing order.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    strictness: u8,
    length: u8,
    order: usize,
}

impl Candidate {
    fn beats(&self, other: &Candidate) -> bool {
        (self.strictness, self.length, std::cmp::Reverse(self.order))
            > (
                other.strictness,
                other.length,
                std::cmp::Reverse(other.order),
            )
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Inherited {
    covered_by_exception: bool,
    best: [Option<Candidate>; 2],
}

/// Compiles `list` as it stands at `now`, reusing the rule numbers of `numbering`.
pub fn compile(
    list: &OrderList,
    now: OffsetDateTime,
    numbering: &Numbering,
) -> Result<Compiled, CompileError> {
    let mut out = Compiled::default();
    out.rules
        .insert(EXCEPTION_RULE, Rule::new(action::EXEMPT, EXCEPTION_OWNER));

    // Rule numbers: keep each order's number; give new orders the lowest number that is
    // free both now and in the data plane (so no entry still pointing at a retired
    // number ever acts with a new order's action during a sync).
    let room = filter_common::maps::RULE_CAPACITY - FIRST_ORDER_RULE;
    if list.orders.len() > room as usize {
        return Err(CompileError::TooManyOrders {
            orders: list.orders.len(),
            room,
        });
    }
    let taken: HashSet<u32> = numbering.by_owner.values().copied().collect();
    let mut next_free = FIRST_ORDER_RULE;
    let mut rule_of_order = Vec::with_capacity(list.orders.len());
    for order in &list.orders {
        let owner = fingerprint(&order.id);
        let number = match numbering.by_owner.get(&owner) {
            Some(&n) if !out.rules.contains_key(&n) => n,
            _ => {
                while taken.contains(&next_free) || out.rules.contains_key(&next_free) {
                    next_free += 1;
                }
                if next_free >= filter_common::maps::RULE_CAPACITY {
                    // Numbers of orders removed by this very change are still taken
                    // until the change is applied.
                    return Err(CompileError::TooManyOrders {
                        orders: list.orders.len() + taken.len(),
                        room,
                    });
                }
                next_free
            }
        };
        out.rules
            .insert(number, Rule::new(order.action.code(), owner));
        out.order_of_rule.insert(number, order.id.clone());
        rule_of_order.push(number);
    }

    // Every listed prefix with what lists it: exceptions, and orders in force.
    enum Lister {
        Exception,
        Order(usize),
    }
    let mut items: Vec<(Prefix, Lister)> = Vec::new();
    for e in &list.exceptions {
        items.push((e.prefix.value, Lister::Exception));
    }
    for (index, order) in list.orders.iter().enumerate() {
        let state = order.state(now);
        out.states.push((order.id.clone(), state));
        if state == OrderState::Active {
            items.extend(
                order
                    .prefixes
                    .iter()
                    .map(|p| (p.value, Lister::Order(index))),
            );
        }
    }
    items.sort_by_key(|item| item.0);

    let mut stack: Vec<(Prefix, Inherited)> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let prefix = items[i].0;
        let mut j = i;
        while j < items.len() && items[j].0 == prefix {
            j += 1;
        }
        let group = &items[i..j];
        i = j;

        while stack.last().is_some_and(|(p, _)| !p.contains(&prefix)) {
            stack.pop();
        }
        let mut state = stack.last().map(|(_, s)| *s).unwrap_or_default();
        if group.iter().any(|(_, l)| matches!(l, Lister::Exception)) {
            // Orders count only with a prefix longer than the longest exception, so an
            // exception here hides everything above it and the orders listing this very
            // prefix.
            state = Inherited {
                covered_by_exception: true,
                best: [None, None],
            };
        } else {
            for (_, lister) in group {
                let Lister::Order(index) = lister else {
                    continue;
                };
                let order = &list.orders[*index];
                let candidate = Candidate {
                    strictness: order.action.strictness(),
                    length: prefix.length(),
                    order: *index,
                };
                for (slot, side) in Side::BOTH.iter().enumerate() {
                    if order.direction().covers(*side)
                        && state.best[slot].is_none_or(|b| candidate.beats(&b))
                    {
                        state.best[slot] = Some(candidate);
                    }
                }
            }
        }
        let rule = |slot: usize| match state.best[slot] {
            Some(c) => rule_of_order[c.order],
            None if state.covered_by_exception => EXCEPTION_RULE,
            None => NO_RULE,
        };
        out.entries.insert(
            prefix,
            Entry {
                dst_rule: rule(0),
                src_rule: rule(1),
            },
        );
        stack.push((prefix, state));
    }
    Ok(out)
}
