//! Making the data plane hold a compiled list, without ever passing a packet that both
//! the old and the new list block.
//!
//! The change is applied in phases (proof in `docs/design/sync.md`):
//! 1. rules that become stricter, and rules for new orders (counters zeroed first);
//! 2. entries added or changed, longest prefixes first;
//! 3. entries removed;
//! 4. rules that become weaker (stop blocking);
//! 5. rule slots of orders that left the list.
//!
//! During phase 2 every address's longest present entry is either an old entry with its
//! old value or a new entry that is the address's longest new entry, so an address
//! blocked before and after is blocked throughout; phase 3 only removes entries that
//! nothing longer than them depends on for that guarantee.

use std::collections::BTreeMap;

use filter_common::{action, Entry, Rule};

use crate::{
    compile::Compiled,
    dataplane::{DataplaneError, Maps},
    fastpath::{FastPlan, FastState, Patched},
    prefix::{Family, Prefix},
};

/// What the data plane holds: every entry, every rule slot in use, and the fast path
/// derived from the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: BTreeMap<Prefix, Entry>,
    pub rules: BTreeMap<u32, Rule>,
    pub fast: FastState,
    /// How many entry sides name each rule number: which orders are enforced, without
    /// going through every entry.
    uses: BTreeMap<u32, usize>,
}

fn count_uses(entries: &BTreeMap<Prefix, Entry>) -> BTreeMap<u32, usize> {
    let mut uses = BTreeMap::new();
    for e in entries.values() {
        for n in [e.dst_rule, e.src_rule] {
            *uses.entry(n).or_default() += 1;
        }
    }
    uses
}

fn count(uses: &mut BTreeMap<u32, usize>, e: &Entry, up: bool) {
    for n in [e.dst_rule, e.src_rule] {
        if up {
            *uses.entry(n).or_default() += 1;
        } else if let Some(c) = uses.get_mut(&n) {
            *c -= 1;
            if *c == 0 {
                uses.remove(&n);
            }
        }
    }
}

impl Snapshot {
    /// Entries and rules, with no fast path yet.
    pub fn new(entries: BTreeMap<Prefix, Entry>, rules: BTreeMap<u32, Rule>) -> Self {
        Self {
            uses: count_uses(&entries),
            entries,
            rules,
            fast: FastState::default(),
        }
    }

    /// Reads the maps.
    pub fn read(maps: &Maps) -> Result<Self, DataplaneError> {
        let mut entries = BTreeMap::new();
        for family in [Family::V4, Family::V6] {
            for e in maps.prefixes(family)? {
                entries.insert(e.prefix, e.entry);
            }
        }
        let rules = maps.rules()?.into_iter().collect();
        Ok(Self {
            fast: FastState::read(maps)?,
            ..Self::new(entries, rules)
        })
    }

    /// How many prefixes block (drop or redirect, in some direction) now, and how many of
    /// them would not block in `entries` under `rules`: what the mass-removal guard
    /// weighs. One merge of the two sorted maps, no copies.
    pub fn blocking_dropped(
        &self,
        entries: &BTreeMap<Prefix, Entry>,
        rules: &BTreeMap<u32, Rule>,
    ) -> (usize, usize) {
        let blocks = |rules: &BTreeMap<u32, Rule>, e: &Entry| {
            [e.dst_rule, e.src_rule]
                .iter()
                .any(|n| rules.get(n).is_some_and(|r| action::blocks(r.action)))
        };
        let mut target = entries.iter().peekable();
        let (mut before, mut dropped) = (0, 0);
        for (prefix, entry) in &self.entries {
            if !blocks(&self.rules, entry) {
                continue;
            }
            before += 1;
            while target.peek().is_some_and(|(p, _)| *p < prefix) {
                target.next();
            }
            match target.peek() {
                Some((p, e)) if *p == prefix && blocks(rules, e) => {}
                _ => dropped += 1,
            }
        }
        (before, dropped)
    }

    /// Fingerprints of the orders whose rules some entry names: the orders enforced.
    pub fn enforced_owners(&self) -> std::collections::BTreeSet<u64> {
        self.uses
            .keys()
            .filter(|n| **n >= filter_common::types::FIRST_ORDER_RULE)
            .filter_map(|n| self.rules.get(n).map(|r| r.owner))
            .collect()
    }

    /// The entries and rules the data plane must hold for `compiled` (the fast path is
    /// filled in by the plan that gets there).
    pub fn of(compiled: &Compiled) -> Self {
        Self::new(compiled.entries.clone(), compiled.rules.clone())
    }
}

/// The changes between two snapshots, in the order they must be made.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Phase 1: (number, rule, zero its counters first).
    pub rules_first: Vec<(u32, Rule, bool)>,
    /// Phase 2, longest prefix first.
    pub upserts: Vec<(Prefix, Entry)>,
    /// Phase 3.
    pub removals: Vec<Prefix>,
    /// Phase 4.
    pub rules_weakened: Vec<(u32, Rule)>,
    /// Phase 5.
    pub rules_freed: Vec<u32>,
    /// Of `upserts`, how many add a prefix (the rest change one).
    pub added: usize,
    /// The fast path's part, interleaved with the trie's.
    pub fast: FastPlan,
}

/// Counts of what a sync changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    pub prefixes_added: usize,
    pub prefixes_changed: usize,
    pub prefixes_removed: usize,
    pub rules_changed: usize,
}

impl Plan {
    pub fn between(current: &Snapshot, target: &Snapshot) -> Self {
        Self::between_checked(current, target, false)
    }

    /// Like [`Plan::between`]; with `rebuild`, the fast path in `current` is compared
    /// with a fresh derivation instead of being trusted (after an interrupted sync).
    pub fn between_checked(current: &Snapshot, target: &Snapshot, rebuild: bool) -> Self {
        let mut plan = Plan::default();
        plan.plan_rules(current, &target.rules);
        for (prefix, entry) in &target.entries {
            match current.entries.get(prefix) {
                Some(old) if old == entry => {}
                Some(_) => plan.upserts.push((*prefix, *entry)),
                None => {
                    plan.upserts.push((*prefix, *entry));
                    plan.added += 1;
                }
            }
        }
        plan.upserts
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.length()));
        plan.removals = current
            .entries
            .keys()
            .filter(|p| !target.entries.contains_key(p))
            .copied()
            .collect();
        plan.fast = FastPlan::between(
            &current.fast,
            &current.entries,
            &target.entries,
            &plan.upserts,
            &plan.removals,
            rebuild,
        );
        plan
    }

    /// Phases 1, 4 and 5: the rule slots that differ between `current` and `rules`.
    fn plan_rules(&mut self, current: &Snapshot, rules: &BTreeMap<u32, Rule>) {
        for (&number, rule) in rules {
            match current.rules.get(&number) {
                None => self.rules_first.push((number, *rule, true)),
                Some(old) if old == rule => {}
                Some(old) if old.owner != rule.owner => {
                    self.rules_first.push((number, *rule, true))
                }
                Some(old) if action::blocks(old.action) && !action::blocks(rule.action) => {
                    self.rules_weakened.push((number, *rule))
                }
                Some(_) => self.rules_first.push((number, *rule, false)),
            }
        }
        self.rules_freed = current
            .rules
            .keys()
            .filter(|n| !rules.contains_key(n))
            .copied()
            .collect();
    }

    /// Brings `held` (what the maps held) to what they hold once this plan is applied.
    pub fn update(&self, held: &mut Snapshot) {
        for (number, rule, _) in &self.rules_first {
            held.rules.insert(*number, *rule);
        }
        for (number, rule) in &self.rules_weakened {
            held.rules.insert(*number, *rule);
        }
        for number in &self.rules_freed {
            held.rules.remove(number);
        }
        for (prefix, entry) in &self.upserts {
            if let Some(old) = held.entries.insert(*prefix, *entry) {
                count(&mut held.uses, &old, false);
            }
            count(&mut held.uses, entry, true);
        }
        for prefix in &self.removals {
            if let Some(old) = held.entries.remove(prefix) {
                count(&mut held.uses, &old, false);
            }
        }
        self.fast.update(&mut held.fast);
    }

    /// The plan for a few entry changes (`None`: removed) and the rules `rules`, on top
    /// of `current`, without comparing whole maps.
    pub fn for_changes(
        current: &Snapshot,
        changes: &BTreeMap<Prefix, Option<Entry>>,
        rules: &BTreeMap<u32, Rule>,
    ) -> Self {
        let mut plan = Plan::default();
        plan.plan_rules(current, rules);
        for (prefix, change) in changes {
            match (change, current.entries.get(prefix)) {
                (Some(e), Some(old)) if e == old => {}
                (Some(e), Some(_)) => plan.upserts.push((*prefix, *e)),
                (Some(e), None) => {
                    plan.upserts.push((*prefix, *e));
                    plan.added += 1;
                }
                (None, Some(_)) => plan.removals.push(*prefix),
                (None, None) => {}
            }
        }
        plan.upserts
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.length()));
        let broad = plan
            .upserts
            .iter()
            .map(|(p, _)| p)
            .chain(&plan.removals)
            .any(|p| {
                p.addr().is_ipv4() && u32::from(p.length()) < filter_common::maps::MIN_SLOTTED_LEN
            });
        plan.fast = if broad {
            let mut new = current.entries.clone();
            for (p, e) in changes {
                match e {
                    Some(e) => new.insert(*p, *e),
                    None => new.remove(p),
                };
            }
            FastPlan::between(
                &current.fast,
                &current.entries,
                &new,
                &plan.upserts,
                &plan.removals,
                false,
            )
        } else {
            let new = Patched {
                base: &current.entries,
                changes,
            };
            FastPlan::incremental(
                &current.fast,
                &current.entries,
                &new,
                &plan.upserts,
                &plan.removals,
            )
        };
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.fast.is_empty()
            && self.rules_first.is_empty()
            && self.upserts.is_empty()
            && self.removals.is_empty()
            && self.rules_weakened.is_empty()
            && self.rules_freed.is_empty()
    }

    pub fn changes(&self) -> Changes {
        Changes {
            prefixes_added: self.added,
            prefixes_changed: self.upserts.len() - self.added,
            prefixes_removed: self.removals.len(),
            rules_changed: self.rules_first.len()
                + self.rules_weakened.len()
                + self.rules_freed.len(),
        }
    }

    /// Applies the plan in its phases. On error the data plane holds a mix of the two
    /// snapshots that still blocks everything both block; the caller re-reads it before
    /// the next sync.
    pub fn apply(&self, maps: &mut Maps) -> Result<Changes, DataplaneError> {
        for (number, rule, zero) in &self.rules_first {
            if *zero {
                maps.reset_rule_counter(*number)?;
            }
            maps.set_rule(*number, *rule)?;
        }
        // The trie and the fast path are separate maps, written in parallel: each on its
        // own goes through states that keep the sync safe, and the program reads the
        // trie only for blocks the fast path hands over to it (see fast-path.md).
        let shared: &Maps = maps;
        std::thread::scope(|scope| {
            let fast = scope.spawn(|| self.fast.apply_before_removals(shared));
            let trie = shared.insert_many(&self.upserts);
            fast.join()
                .expect("the fast-path writer panicked")
                .and(trie)
        })?;
        std::thread::scope(|scope| {
            let fast = scope.spawn(|| self.fast.apply_after_removals(shared));
            let trie = shared.remove_many(&self.removals);
            fast.join()
                .expect("the fast-path writer panicked")
                .and(trie)
        })?;
        for (number, rule) in &self.rules_weakened {
            maps.set_rule(*number, *rule)?;
        }
        for number in &self.rules_freed {
            maps.set_rule(*number, Rule::default())?;
        }
        Ok(self.changes())
    }
}
