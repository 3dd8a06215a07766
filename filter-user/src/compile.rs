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
    orders::{edit::Done, OrderList, OrderState, Side},
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
    /// The rule number of each order, in list order.
    pub rule_of_order: Vec<u32>,
    /// What lists each entry's prefix: exceptions, and orders in force. Kept so that a
    /// small change can be compiled without going through the whole list again.
    pub listers: Listers,
    /// The addresses each order in force holds because its names resolved to them
    /// (host prefixes, by order index), as compiled.
    pub resolved: Resolved,
}

/// Addresses orders hold through their names: host prefixes by order index.
pub type Resolved = BTreeMap<usize, std::collections::BTreeSet<Prefix>>;

/// What lists each listed prefix (a fast hasher: a million entries are hashed at every
/// full compile).
pub type Listers =
    HashMap<Prefix, Vec<Lister>, std::hash::BuildHasherDefault<crate::fastpath::IntHasher>>;

/// What lists a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lister {
    Exception,
    /// An order in force, by its index in the list.
    Order(usize),
    /// An order in force through one of its names (the address is what a name resolved
    /// to): ranks exactly as `Order`, kept apart so that removing the prefix from one
    /// does not remove it from the other.
    Resolved(usize),
}

impl Lister {
    /// The order listing, if an order does.
    pub fn order(self) -> Option<usize> {
        match self {
            Lister::Exception => None,
            Lister::Order(i) | Lister::Resolved(i) => Some(i),
        }
    }
}

/// A change to what lists a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListingChange {
    pub prefix: Prefix,
    pub lister: Lister,
    pub added: bool,
}

impl ListingChange {
    /// The changes that undo `changes`.
    pub fn reversed(changes: &[ListingChange]) -> Vec<ListingChange> {
        changes
            .iter()
            .map(|c| ListingChange {
                added: !c.added,
                ..*c
            })
            .collect()
    }
}

/// The listing changes that move the addresses orders hold through their names from
/// `held` to `wanted`.
pub fn resolved_changes(held: &Resolved, wanted: &Resolved) -> Vec<ListingChange> {
    let empty = std::collections::BTreeSet::new();
    let orders: std::collections::BTreeSet<usize> =
        held.keys().chain(wanted.keys()).copied().collect();
    let mut out = Vec::new();
    for i in orders {
        let (before, after) = (
            held.get(&i).unwrap_or(&empty),
            wanted.get(&i).unwrap_or(&empty),
        );
        for (set, other, added) in [(after, before, true), (before, after, false)] {
            out.extend(set.difference(other).map(|p| ListingChange {
                prefix: *p,
                lister: Lister::Resolved(i),
                added,
            }));
        }
    }
    out
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

impl Inherited {
    /// The state of a node with `listers`, below a parent in state `self`.
    fn below(self, prefix: &Prefix, listers: &[Lister], list: &OrderList) -> Inherited {
        if listers.contains(&Lister::Exception) {
            // Orders count only with a prefix longer than the longest exception, so an
            // exception here hides everything above it and the orders listing this very
            // prefix.
            return Inherited {
                covered_by_exception: true,
                best: [None, None],
            };
        }
        let mut state = self;
        for lister in listers {
            let Some(index) = lister.order() else {
                continue;
            };
            let order = &list.orders[index];
            let candidate = Candidate {
                strictness: order.action.strictness(),
                length: prefix.length(),
                order: index,
            };
            for (slot, side) in Side::BOTH.iter().enumerate() {
                if order.direction().covers(*side)
                    && state.best[slot].is_none_or(|b| candidate.beats(&b))
                {
                    state.best[slot] = Some(candidate);
                }
            }
        }
        state
    }

    fn entry(&self, rule_of_order: &[u32]) -> Entry {
        let rule = |slot: usize| match self.best[slot] {
            Some(c) => rule_of_order[c.order],
            None if self.covered_by_exception => EXCEPTION_RULE,
            None => NO_RULE,
        };
        Entry {
            dst_rule: rule(0),
            src_rule: rule(1),
        }
    }

    /// The state a node's entry stands for, read back from the entry. A candidate's
    /// length is only ever compared with strictly longer prefixes below it, so any
    /// shorter length stands in for it.
    fn of_entry(
        entry: &Entry,
        order_of_rule_number: &HashMap<u32, usize>,
        list: &OrderList,
    ) -> Inherited {
        let mut state = Inherited::default();
        for (slot, rule) in [entry.dst_rule, entry.src_rule].into_iter().enumerate() {
            match rule {
                NO_RULE => {}
                EXCEPTION_RULE => state.covered_by_exception = true,
                n => {
                    if let Some(&index) = order_of_rule_number.get(&n) {
                        state.best[slot] = Some(Candidate {
                            strictness: list.orders[index].action.strictness(),
                            length: 0,
                            order: index,
                        });
                    }
                }
            }
        }
        state
    }
}

/// Compiles `list` as it stands at `now`, reusing the rule numbers of `numbering`.
pub fn compile(
    list: &OrderList,
    now: OffsetDateTime,
    numbering: &Numbering,
) -> Result<Compiled, CompileError> {
    compile_with(list, now, numbering, &Resolved::new())
}

/// [`compile`], with the addresses orders hold through their names (only those of
/// orders in force count).
pub fn compile_with(
    list: &OrderList,
    now: OffsetDateTime,
    numbering: &Numbering,
    resolved: &Resolved,
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
            if let Some(addrs) = resolved.get(&index) {
                items.extend(addrs.iter().map(|p| (*p, Lister::Resolved(index))));
                out.resolved.insert(index, addrs.clone());
            }
        }
    }
    items.sort_by_key(|item| item.0);

    out.listers.reserve(items.len());
    let mut stack: Vec<(Prefix, Inherited)> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let prefix = items[i].0;
        let mut j = i;
        while j < items.len() && items[j].0 == prefix {
            j += 1;
        }
        let mut listers: Vec<Lister> = items[i..j].iter().map(|(_, l)| *l).collect();
        listers.sort_unstable();
        i = j;

        while stack.last().is_some_and(|(p, _)| !p.contains(&prefix)) {
            stack.pop();
        }
        let parent = stack.last().map(|(_, s)| *s).unwrap_or_default();
        let state = parent.below(&prefix, &listers, list);
        out.entries.insert(prefix, state.entry(&rule_of_order));
        out.listers.insert(prefix, listers);
        stack.push((prefix, state));
    }
    out.rule_of_order = rule_of_order;
    Ok(out)
}

impl Compiled {
    /// Gives a new order (appended at `index`) a rule number that is free both here and
    /// in the data plane (`numbering`), and records its state at `now`.
    pub fn add_order(
        &mut self,
        list: &OrderList,
        index: usize,
        numbering: &Numbering,
        now: OffsetDateTime,
    ) -> Result<u32, CompileError> {
        let order = &list.orders[index];
        let owner = fingerprint(&order.id);
        let taken: HashSet<u32> = numbering.by_owner.values().copied().collect();
        let number = (FIRST_ORDER_RULE..filter_common::maps::RULE_CAPACITY)
            .find(|n| !taken.contains(n) && !self.rules.contains_key(n))
            .ok_or(CompileError::TooManyOrders {
                orders: list.orders.len(),
                room: filter_common::maps::RULE_CAPACITY - FIRST_ORDER_RULE,
            })?;
        self.rules
            .insert(number, Rule::new(order.action.code(), owner));
        self.order_of_rule.insert(number, order.id.clone());
        self.rule_of_order.push(number);
        self.states.push((order.id.clone(), order.state(now)));
        Ok(number)
    }

    /// The entries of `prefixes` as they are now (`None`: not listed).
    pub fn entries_of<'a>(
        &self,
        prefixes: impl IntoIterator<Item = &'a Prefix>,
    ) -> BTreeMap<Prefix, Option<Entry>> {
        prefixes
            .into_iter()
            .map(|p| (*p, self.entries.get(p).copied()))
            .collect()
    }

    /// What an edit changes in what lists each prefix: only orders in force list prefixes.
    pub fn listing_changes(
        &self,
        list: &OrderList,
        done: &Done,
        now: OffsetDateTime,
    ) -> Vec<ListingChange> {
        let in_force = |index: usize| match self.states.get(index) {
            Some((_, state)) => *state == OrderState::Active,
            // An order not compiled yet (just added).
            None => list.orders[index].state(now) == OrderState::Active,
        };
        let order = |index: usize, prefixes: &mut dyn Iterator<Item = Prefix>, added| {
            prefixes
                .map(|prefix| ListingChange {
                    prefix,
                    lister: Lister::Order(index),
                    added,
                })
                .collect::<Vec<_>>()
        };
        match done {
            Done::Nothing | Done::RemovedOrder(..) => Vec::new(),
            Done::AddedOrder => {
                let index = list.orders.len() - 1;
                if in_force(index) {
                    order(
                        index,
                        &mut list.orders[index].prefixes.iter().map(|l| l.value),
                        true,
                    )
                } else {
                    Vec::new()
                }
            }
            Done::AddedPrefixes(index, before) if in_force(*index) => order(
                *index,
                &mut list.orders[*index].prefixes[*before..]
                    .iter()
                    .map(|l| l.value),
                true,
            ),
            Done::RemovedPrefixes(index, removed) if in_force(*index) => {
                order(*index, &mut removed.iter().map(|(_, l)| l.value), false)
            }
            Done::AddedPrefixes(..) | Done::RemovedPrefixes(..) => Vec::new(),
            Done::AddedException => {
                let e = list.exceptions.last().expect("just added");
                vec![ListingChange {
                    prefix: e.prefix.value,
                    lister: Lister::Exception,
                    added: true,
                }]
            }
            Done::RemovedExceptions(removed) => removed
                .iter()
                .map(|(_, e)| e.prefix.value)
                // Another exception for the same prefix keeps it listed.
                .filter(|p| !list.exceptions.iter().any(|e| e.prefix.value == *p))
                .map(|prefix| ListingChange {
                    prefix,
                    lister: Lister::Exception,
                    added: false,
                })
                .collect(),
        }
    }

    /// Undoes [`Compiled::add_order`] for the last order.
    pub fn remove_last_order(&mut self) {
        if let Some(number) = self.rule_of_order.pop() {
            self.rules.remove(&number);
            self.order_of_rule.remove(&number);
            self.states.pop();
        }
    }

    /// Applies listing changes and recompiles only what they touch: each changed prefix
    /// and the listed prefixes inside it, each from its parent's entry. Returns the
    /// entries that changed (`None`: no longer listed).
    pub fn recompile(
        &mut self,
        list: &OrderList,
        changes: &[ListingChange],
    ) -> BTreeMap<Prefix, Option<Entry>> {
        for c in changes {
            let listers = self.listers.entry(c.prefix).or_default();
            if c.added {
                if !listers.contains(&c.lister) {
                    listers.push(c.lister);
                    listers.sort_unstable();
                }
            } else {
                listers.retain(|l| *l != c.lister);
            }
        }
        let order_of_rule_number: HashMap<u32, usize> = self
            .rule_of_order
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i))
            .collect();
        let mut roots: Vec<Prefix> = changes.iter().map(|c| c.prefix).collect();
        roots.sort_unstable();
        roots.dedup();
        let mut out = BTreeMap::new();
        for root in roots {
            // The root and every listed prefix inside it, parents before children.
            let end = Prefix::new_truncating(last_address(&root), root.family().bits());
            let mut nodes: Vec<Prefix> = std::iter::once(root)
                .chain(
                    self.entries
                        .range(root..=end)
                        .map(|(p, _)| *p)
                        .filter(|p| *p != root && root.contains(p)),
                )
                .collect();
            nodes.dedup();
            for node in nodes {
                let listers = self.listers.get(&node).cloned().unwrap_or_default();
                if listers.is_empty() {
                    self.listers.remove(&node);
                    if self.entries.remove(&node).is_some() {
                        out.insert(node, None);
                    }
                    continue;
                }
                let parent = self.parent_entry(&node);
                let inherited = parent.map_or_else(Inherited::default, |e| {
                    Inherited::of_entry(&e, &order_of_rule_number, list)
                });
                let entry = inherited
                    .below(&node, &listers, list)
                    .entry(&self.rule_of_order);
                if self.entries.insert(node, entry) != Some(entry) {
                    out.insert(node, Some(entry));
                }
            }
        }
        out
    }

    /// The entry of the longest listed prefix strictly containing `p`.
    fn parent_entry(&self, p: &Prefix) -> Option<Entry> {
        (0..p.length()).rev().find_map(|len| {
            self.entries
                .get(&Prefix::new_truncating(p.addr(), len))
                .copied()
        })
    }
}

/// The last address of `p`.
fn last_address(p: &Prefix) -> std::net::IpAddr {
    match p.addr() {
        std::net::IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(p.length())).unwrap_or(0);
            std::net::IpAddr::V4((u32::from(a) | host).into())
        }
        std::net::IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(p.length())).unwrap_or(0);
            std::net::IpAddr::V6((u128::from(a) | host).into())
        }
    }
}
