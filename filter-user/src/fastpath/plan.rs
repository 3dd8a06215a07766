//! The fast-path writes of one sync, planned in the steps of `fastpath`'s documentation:
//! block by block for a few changes, or from fresh derivations for many.

use std::collections::BTreeMap;
use std::net::IpAddr;

use filter_common::{
    maps::{HINT_WORDS, MIN_SLOTTED_LEN, SLOT_LEN},
    Entry, LongKey, Slot,
};

use super::{
    derive::{blocks, long_key, slot_of, v4, v6_bits},
    entries::{Entries, Overlay},
    state::{bit, set_bit, FastState, IntMap},
};
use crate::prefix::Prefix;

/// The fast-path writes of one sync, by step.
#[derive(Clone, Debug, Default)]
pub struct FastPlan {
    /// Step 0: slots to write (created, or masks widened), then hint bits to set.
    pub widen: Vec<(u32, Slot)>,
    pub v4_hint_set: Vec<u32>,
    pub v6_hint_set: Vec<u32>,
    /// Step 1, longest first.
    pub long_upserts: Vec<(LongKey, Entry)>,
    /// Step 2.
    pub mid: Vec<(u32, Slot)>,
    /// Step 3: slots with the new base and the middle's longer entries, then long
    /// entries to delete.
    pub rebase: Vec<(u32, Slot)>,
    pub long_removals: Vec<LongKey>,
    /// Step 4.
    pub settle: Vec<(u32, Slot)>,
    /// Step 5: hint bits to clear, then slots to delete.
    pub v4_hint_clear: Vec<u32>,
    pub v6_hint_clear: Vec<u32>,
    pub slot_deletes: Vec<u32>,
    /// The slot of every block the plan touches once it is applied (`None`: no slot).
    finals: Vec<(u32, Option<Slot>)>,
    /// The whole end state, when the plan derived it.
    end: Option<Box<FastState>>,
}

/// Above this share of changed entries, the whole fast path is derived again rather
/// than block by block.
const INCREMENTAL_LIMIT: usize = 8;

/// A block's slot and hint bit, in the middle of the sync and at its end.
type BlockStates = [(Option<Slot>, bool); 2];

impl FastPlan {
    /// The steps from `current` (what the maps hold, derived from `old`) to the fast path
    /// of `new`, given the entry changes between them. With `rebuild`, `current` is not
    /// trusted to be derived from `old` (a sync was interrupted) and every part is
    /// compared with a fresh derivation.
    pub fn between(
        current: &FastState,
        old: &BTreeMap<Prefix, Entry>,
        new: &BTreeMap<Prefix, Entry>,
        upserts: &[(Prefix, Entry)],
        removals: &[Prefix],
        rebuild: bool,
    ) -> Self {
        let changed = upserts.len() + removals.len();
        let broad = upserts
            .iter()
            .map(|(p, _)| p)
            .chain(removals)
            .any(|p| v4(p).is_some_and(|(_, len)| len < MIN_SLOTTED_LEN));
        if rebuild || broad || changed * INCREMENTAL_LIMIT > new.len().max(old.len()).max(1) {
            Self::derived(current, old, new, upserts, removals)
        } else {
            Self::incremental(current, old, new, upserts, removals)
        }
    }

    /// The steps for a few changes, looking only at the /24 blocks they touch. `new` is
    /// the entries once the changes are made (the map, or the old one with the changes
    /// on top). Changes to prefixes broader than /16 must go through [`FastPlan::between`].
    pub fn incremental(
        current: &FastState,
        old: &BTreeMap<Prefix, Entry>,
        new: &impl Entries,
        upserts: &[(Prefix, Entry)],
        removals: &[Prefix],
    ) -> Self {
        let overlay = Overlay { old, new };
        let mut touched: Vec<u32> = Vec::new();
        for p in upserts.iter().map(|(p, _)| p).chain(removals) {
            if let Some((addr, len)) = v4(p) {
                touched.extend(blocks(addr, len));
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let states: IntMap<u32, BlockStates> = touched
            .iter()
            .map(|b| (*b, [slot_of(&overlay, *b), slot_of(new, *b)]))
            .collect();
        let mut plan = Self::blocks(
            current,
            old,
            &touched,
            |b| states[b],
            |b| short_base(new, b),
            true,
        );
        for (p, e) in upserts {
            if let Some((addr, len)) = v4(p).filter(|(_, len)| *len > SLOT_LEN) {
                plan.long_upserts.push((long_key(addr, len), *e));
            }
        }
        plan.long_upserts
            .sort_by_key(|(k, _)| std::cmp::Reverse(k.len));
        for p in removals {
            if let Some((addr, len)) = v4(p).filter(|(_, len)| *len > SLOT_LEN) {
                plan.long_removals.push(long_key(addr, len));
            }
        }
        // IPv6: bits for new entries are set; bits of removed ones are left (a stale bit
        // only sends a lookup to the trie, which answers right) until a full derivation.
        let mut fill = false;
        for (p, _) in upserts {
            match v6_bits(p) {
                Some(bits) => plan
                    .v6_hint_set
                    .extend(bits.into_iter().filter(|b| !bit(&current.v6_hint, *b))),
                None => fill = true,
            }
        }
        if fill {
            plan.v6_hint_set = (0..HINT_WORDS * 64)
                .filter(|b| !bit(&current.v6_hint, *b))
                .collect();
        }
        plan.v6_hint_set.sort_unstable();
        plan.v6_hint_set.dedup();
        plan
    }

    /// The steps when the fast path is derived whole, in the middle and at the end.
    fn derived(
        current: &FastState,
        old: &BTreeMap<Prefix, Entry>,
        new: &BTreeMap<Prefix, Entry>,
        upserts: &[(Prefix, Entry)],
        removals: &[Prefix],
    ) -> Self {
        let _ = upserts;
        let mid = if removals.is_empty() {
            FastState::derive(new)
        } else {
            let mut overlay = old.clone();
            overlay.extend(new.iter().map(|(p, e)| (*p, *e)));
            FastState::derive(&overlay)
        };
        let end = if removals.is_empty() {
            None
        } else {
            Some(FastState::derive(new))
        };
        let end_ref = end.as_ref().unwrap_or(&mid);
        let mut all: Vec<u32> = current
            .slots
            .keys()
            .chain(mid.slots.keys())
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        let state = |b: &u32| {
            [
                (mid.slots.get(b).copied(), bit(&mid.v4_hint, *b)),
                (end_ref.slots.get(b).copied(), bit(&end_ref.v4_hint, *b)),
            ]
        };
        let mut plan = Self::blocks(current, old, &all, state, |b| short_base(new, b), false);
        // Whole bitmaps compared: also blocks without slots (broad entries), and bits an
        // interrupted sync left behind.
        plan.v4_hint_set = changed_bits(&current.v4_hint, &mid.v4_hint, |cur, m| m & !cur);
        let was: Vec<u64> = current
            .v4_hint
            .iter()
            .zip(&mid.v4_hint)
            .map(|(c, m)| c | m)
            .collect();
        plan.v4_hint_clear = changed_bits(&was, &end_ref.v4_hint, |was, e| was & !e);
        plan.long_upserts = mid
            .long
            .iter()
            .filter(|(k, e)| current.long.get(*k) != Some(*e))
            .map(|(k, e)| (*k, *e))
            .collect();
        plan.long_upserts
            .sort_by_key(|(k, _)| std::cmp::Reverse(k.len));
        let mut gone: Vec<LongKey> = current
            .long
            .keys()
            .chain(mid.long.keys())
            .filter(|k| !end_ref.long.contains_key(*k))
            .copied()
            .collect();
        gone.sort_unstable();
        gone.dedup();
        plan.long_removals = gone;
        plan.v6_hint_set = changed_bits(&current.v6_hint, &mid.v6_hint, |cur, m| m & !cur);
        let was: Vec<u64> = current
            .v6_hint
            .iter()
            .zip(&mid.v6_hint)
            .map(|(c, m)| c | m)
            .collect();
        plan.v6_hint_clear = changed_bits(&was, &end_ref.v6_hint, |was, e| was & !e);
        plan.end = Some(Box::new(end.unwrap_or(mid)));
        plan
    }

    /// Steps 0, 2, 3 (slots), 4 and 5 for `blocks` (and their hint bits, with `hints`).
    /// `end_base(b)`: the new entries' answer up to /24 for a block whose slot goes.
    fn blocks(
        current: &FastState,
        old: &BTreeMap<Prefix, Entry>,
        blocks: &[u32],
        state: impl Fn(&u32) -> BlockStates,
        end_base: impl Fn(u32) -> Option<Entry>,
        hints: bool,
    ) -> Self {
        let mut plan = FastPlan::default();
        for &b in blocks {
            let [(mid_slot, mid_hint), (new_slot, new_hint)] = state(&b);
            let cur_slot = current.slots.get(&b).copied();
            let cur_hint = bit(&current.v4_hint, b);
            // Step 0.
            let widened = match (mid_slot, cur_slot) {
                (Some(mid), Some(cur)) if cur.longer | mid.longer != cur.longer => Some(Slot {
                    longer: cur.longer | mid.longer,
                    ..cur
                }),
                (Some(_), Some(_)) | (None, _) => None,
                // No answer here before (hint clear): nothing to keep, so the slot can
                // take its middle value at once.
                (Some(mid), None) if !cur_hint => Some(mid),
                // The trie answered (broad entries only): its answer stays the base.
                (Some(mid), None) => {
                    let start = Slot {
                        longer: mid.longer,
                        ..Slot::default()
                    };
                    Some(short_base(old, b).map_or(start, |base| Slot {
                        base,
                        has_base: 1,
                        ..start
                    }))
                }
            };
            if let Some(w) = widened {
                plan.widen.push((b, w));
            }
            if hints && mid_hint && !cur_hint {
                plan.v4_hint_set.push(b);
            }
            // Step 2.
            if let Some(mid) = mid_slot {
                if widened.or(cur_slot) != Some(mid) {
                    plan.mid.push((b, mid));
                }
            }
            // Step 3: the new base under the middle's longer entries.
            if let Some(mid) = mid_slot {
                let base = match new_slot {
                    Some(s) => (s.has_base != 0).then_some(s.base),
                    None => end_base(b),
                };
                let rebased = Slot {
                    base: base.unwrap_or_default(),
                    has_base: u8::from(base.is_some()),
                    ..mid
                };
                if rebased != mid {
                    plan.rebase.push((b, rebased));
                }
            }
            // Steps 4 and 5.
            match new_slot {
                Some(s) if Some(s) != mid_slot => plan.settle.push((b, s)),
                Some(_) => {}
                None if mid_slot.is_some() || cur_slot.is_some() => plan.slot_deletes.push(b),
                None => {}
            }
            if hints && !new_hint && (mid_hint || cur_hint) {
                plan.v4_hint_clear.push(b);
            }
            plan.finals.push((b, new_slot));
        }
        plan
    }

    /// Brings `mirror` (what the maps held) to what they hold once this plan is applied.
    pub fn update(&self, mirror: &mut FastState) {
        if let Some(end) = &self.end {
            *mirror = (**end).clone();
            return;
        }
        for (b, slot) in &self.finals {
            match slot {
                Some(s) => mirror.slots.insert(*b, *s),
                None => mirror.slots.remove(b),
            };
        }
        for (k, e) in &self.long_upserts {
            mirror.long.insert(*k, *e);
        }
        for k in &self.long_removals {
            mirror.long.remove(k);
        }
        for b in &self.v4_hint_set {
            set_bit(&mut mirror.v4_hint, *b);
        }
        for b in &self.v4_hint_clear {
            mirror.v4_hint[(*b >> 6) as usize] &= !(1 << (*b & 63));
        }
        for b in &self.v6_hint_set {
            set_bit(&mut mirror.v6_hint, *b);
        }
        for b in &self.v6_hint_clear {
            mirror.v6_hint[(*b >> 6) as usize] &= !(1 << (*b & 63));
        }
    }

    /// How many slots the IPv4 index holds once the plan is applied, given `current`.
    pub fn slots_after(&self, current: &FastState) -> usize {
        if let Some(end) = &self.end {
            return end.slots.len();
        }
        let mut n = current.slots.len() as isize;
        for (b, slot) in &self.finals {
            n += isize::from(slot.is_some()) - isize::from(current.slots.contains_key(b));
        }
        n.max(0) as usize
    }

    /// How many slots the IPv4 index holds at once during the plan, given `current`:
    /// slots are written (steps 0 to 2) before the ones no longer needed go (step 5).
    pub fn slots_peak(&self, current: &FastState) -> usize {
        let added = match &self.end {
            Some(end) => end
                .slots
                .keys()
                .filter(|b| !current.slots.contains_key(b))
                .count(),
            None => self
                .widen
                .iter()
                .chain(&self.mid)
                .map(|(b, _)| *b)
                .chain(
                    self.finals
                        .iter()
                        .filter(|(_, s)| s.is_some())
                        .map(|(b, _)| *b),
                )
                .filter(|b| !current.slots.contains_key(b))
                .collect::<std::collections::HashSet<u32>>()
                .len(),
        };
        current.slots.len() + added
    }

    pub fn is_empty(&self) -> bool {
        self.widen.is_empty()
            && self.v4_hint_set.is_empty()
            && self.v6_hint_set.is_empty()
            && self.long_upserts.is_empty()
            && self.mid.is_empty()
            && self.rebase.is_empty()
            && self.long_removals.is_empty()
            && self.settle.is_empty()
            && self.v4_hint_clear.is_empty()
            && self.v6_hint_clear.is_empty()
            && self.slot_deletes.is_empty()
    }
}

/// The bits set in `pick(a, b)`, word by word.
fn changed_bits(a: &[u64], b: &[u64], pick: impl Fn(u64, u64) -> u64) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let mut word = pick(*x, *y);
        while word != 0 {
            let bit = word.trailing_zeros();
            out.push((i as u32) << 6 | bit);
            word &= word - 1;
        }
    }
    out
}

/// The longest entry of /24 or shorter covering /24 block `block`: what the trie
/// answered for a block that had no slot (only broad entries covered it).
fn short_base(entries: &impl Entries, block: u32) -> Option<Entry> {
    let addr = IpAddr::V4((block << 8).into());
    (1..=SLOT_LEN)
        .rev()
        .find_map(|len| entries.get(&Prefix::new_truncating(addr, len as u8)))
}
