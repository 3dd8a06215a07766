//! The fast path the XDP program reads (see `filter-ebpf/src/fastpath.rs`), derived from
//! the entries, and the order in which a change to the entries reaches it.
//!
//! IPv4: one hint bit per /24 touched by any entry; a slot per /24 touched by an entry of
//! /16 or longer (the result of the entries up to /24 covering it, and the longer entries
//! inside: up to four themselves, more as a bitmap when they share one entry, else which
//! lengths exist inside); the entries longer than /24 in a hash map. IPv6: one hint bit
//! per hashed /32 that an entry may cover.
//!
//! Updates follow the steps of `docs/design/fast-path.md`, each keeping every address's
//! answer equal to the LPM trie's over an entry set the sync's safety argument covers:
//! 0. widen slot masks, create slots (with the old base), set hint bits;
//! 1. write long entries added or changed, longest first;
//! 2. move slot bases to the old-and-new entry set;
//! 3. (beside the trie's removals) move slot bases to the new entry set, keeping the
//!    longer entries: entries up to /24 go before the longer ones inside them, as the
//!    trie's removals do (parents first), so no address falls back to a base that
//!    neither list gives it; then delete long entries;
//! 4. move slot masks and inline entries to the new entry set;
//! 5. clear hint bits, then delete slots no longer needed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use filter_common::{
    maps::{v6_hint_index, HINT_WORDS, MIN_SLOTTED_LEN, SLOT_LEN},
    Entry, LongKey, Slot, SLOT_INLINE,
};

use crate::{
    dataplane::{DataplaneError, Maps},
    prefix::Prefix,
};

/// A multiplicative hasher for the small integer keys of the fast path: a million
/// slots and long entries are hashed several times per sync, and SipHash's resistance to
/// chosen keys buys nothing here (the keys come from the operator's own list).
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A hash map keyed by small integers.
pub type IntMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IntHasher>>;

/// IPv6 prefixes broader than this set every hint bit (the trie answers all IPv6).
const V6_HINT_MIN_LEN: u8 = 16;

/// What the fast-path maps hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastState {
    pub slots: IntMap<u32, Slot>,
    pub long: IntMap<LongKey, Entry>,
    pub v4_hint: Vec<u64>,
    pub v6_hint: Vec<u64>,
}

impl Default for FastState {
    fn default() -> Self {
        Self {
            slots: IntMap::default(),
            long: IntMap::default(),
            v4_hint: vec![0; HINT_WORDS as usize],
            v6_hint: vec![0; HINT_WORDS as usize],
        }
    }
}

fn bit(words: &[u64], index: u32) -> bool {
    words[(index >> 6) as usize] & (1 << (index & 63)) != 0
}

fn set_bit(words: &mut [u64], index: u32) {
    words[(index >> 6) as usize] |= 1 << (index & 63);
}

fn v4(p: &Prefix) -> Option<(u32, u32)> {
    match p.addr() {
        IpAddr::V4(a) => Some((u32::from(a), u32::from(p.length()))),
        IpAddr::V6(_) => None,
    }
}

/// The /24 blocks a v4 prefix touches.
fn blocks(addr: u32, len: u32) -> std::ops::Range<u32> {
    let first = addr >> (32 - SLOT_LEN);
    if len >= SLOT_LEN {
        first..first + 1
    } else {
        first..first + (1 << (SLOT_LEN - len))
    }
}

fn long_key(addr: u32, len: u32) -> LongKey {
    LongKey {
        addr: addr.to_be_bytes(),
        len: len as u8,
        _pad: [0; 3],
    }
}

/// The IPv6 hint bits an entry needs; `None`: all of them.
fn v6_bits(p: &Prefix) -> Option<Vec<u32>> {
    let IpAddr::V6(a) = p.addr() else {
        return Some(Vec::new());
    };
    let top = u32::from_be_bytes(a.octets()[..4].try_into().expect("4 bytes"));
    let len = p.length();
    if len >= 32 {
        Some(vec![v6_hint_index(top)])
    } else if len >= V6_HINT_MIN_LEN {
        let count = 1u32 << (32 - u32::from(len));
        Some((0..count).map(|i| v6_hint_index(top | i)).collect())
    } else {
        None
    }
}

/// Entries as the derivation reads them: one map, or the old and new maps overlaid (new
/// values win), which is the set the data plane holds between upserts and removals.
pub trait Entries {
    fn get(&self, p: &Prefix) -> Option<Entry>;
    /// Every v4 entry whose network lies in /24 block `block` (the /24 and longer).
    fn inside(&self, block: u32) -> Vec<(Prefix, Entry)>;
}

/// The prefixes of /24 block `block` and longer ones inside it: in prefix order they
/// run from the /24 itself to the last /32 of the block.
fn range(block: u32) -> std::ops::RangeInclusive<Prefix> {
    let lo = Prefix::new_truncating(IpAddr::V4((block << 8).into()), SLOT_LEN as u8);
    let hi = Prefix::new_truncating(IpAddr::V4(((block << 8) | 0xff).into()), 32);
    lo..=hi
}

impl Entries for BTreeMap<Prefix, Entry> {
    fn get(&self, p: &Prefix) -> Option<Entry> {
        BTreeMap::get(self, p).copied()
    }

    fn inside(&self, block: u32) -> Vec<(Prefix, Entry)> {
        self.range(range(block))
            .filter(|(p, _)| u32::from(p.length()) >= SLOT_LEN)
            .map(|(p, e)| (*p, *e))
            .collect()
    }
}

/// The entries between the upserts and the removals of a sync: old and new overlaid,
/// new values winning.
pub struct Overlay<'a, N: Entries> {
    pub old: &'a BTreeMap<Prefix, Entry>,
    pub new: &'a N,
}

impl<N: Entries> Entries for Overlay<'_, N> {
    fn get(&self, p: &Prefix) -> Option<Entry> {
        self.new.get(p).or_else(|| self.old.get(p).copied())
    }

    fn inside(&self, block: u32) -> Vec<(Prefix, Entry)> {
        let mut all: BTreeMap<Prefix, Entry> = self.old.inside(block).into_iter().collect();
        all.extend(self.new.inside(block));
        all.into_iter().collect()
    }
}

/// A map with changes on top (`None`: removed), read without copying the map.
pub struct Patched<'a> {
    pub base: &'a BTreeMap<Prefix, Entry>,
    pub changes: &'a BTreeMap<Prefix, Option<Entry>>,
}

impl Entries for Patched<'_> {
    fn get(&self, p: &Prefix) -> Option<Entry> {
        match self.changes.get(p) {
            Some(change) => *change,
            None => self.base.get(p).copied(),
        }
    }

    fn inside(&self, block: u32) -> Vec<(Prefix, Entry)> {
        let mut all: BTreeMap<Prefix, Option<Entry>> = self
            .base
            .inside(block)
            .into_iter()
            .map(|(p, e)| (p, Some(e)))
            .collect();
        all.extend(
            self.changes
                .range(range(block))
                .filter(|(p, _)| u32::from(p.length()) >= SLOT_LEN)
                .map(|(p, e)| (*p, *e)),
        );
        all.into_iter().filter_map(|(p, e)| Some((p, e?))).collect()
    }
}

/// Puts the long entries of a slot's /24 (address, length, entry) in the slot itself
/// when there are few enough, longest first, or as a bitmap when they all have the same
/// entry; else leaves them to the long-entry map.
fn fill_inline(slot: &mut Slot, long: &mut [(u32, u32, Entry)]) {
    slot.inline_count = 0;
    slot.inline_low = [0; SLOT_INLINE];
    slot.inline_len = [0; SLOT_INLINE];
    slot.inline = [Entry::default(); SLOT_INLINE];
    if long.len() > SLOT_INLINE {
        let entry = long[0].2;
        if long.iter().all(|(_, _, e)| *e == entry) {
            let mut words = [0u32; 8];
            for (addr, len, _) in long.iter() {
                let first = *addr & 0xff;
                for low in first..first + (1 << (32 - len)) {
                    words[(low >> 5) as usize] |= 1 << (low & 31);
                }
            }
            slot.set_dense(words, entry);
        }
        return;
    }
    long.sort_unstable_by_key(|(addr, len, _)| (std::cmp::Reverse(*len), *addr));
    for (i, (addr, len, e)) in long.iter().enumerate() {
        slot.inline_low[i] = *addr as u8;
        slot.inline_len[i] = *len as u8;
        slot.inline[i] = *e;
    }
    slot.inline_count = long.len() as u8;
}

/// The slot of /24 `block`, and whether its hint bit is set, for `entries`.
fn slot_of(entries: &impl Entries, block: u32) -> (Option<Slot>, bool) {
    let addr = IpAddr::V4((block << 8).into());
    let mut slot = Slot::default();
    let mut slotted = false;
    let mut long = Vec::new();
    for (p, e) in entries.inside(block) {
        let len = u32::from(p.length());
        if len > SLOT_LEN {
            slot.longer |= 1 << (len - SLOT_LEN - 1);
            if let Some((a, _)) = v4(&p) {
                long.push((a, len, e));
            }
        } else {
            slot.base = e;
            slot.has_base = 1;
        }
        slotted = true;
    }
    fill_inline(&mut slot, &mut long);
    let mut broad = false;
    for len in (1..SLOT_LEN).rev() {
        if let Some(e) = entries.get(&Prefix::new_truncating(addr, len as u8)) {
            if slot.has_base == 0 {
                slot.base = e;
                slot.has_base = 1;
            }
            if len >= MIN_SLOTTED_LEN {
                slotted = true;
            } else {
                broad = true;
            }
        }
    }
    (slotted.then_some(slot), slotted || broad)
}

impl FastState {
    /// Reads the fast-path maps.
    pub fn read(maps: &Maps) -> Result<Self, DataplaneError> {
        Ok(Self {
            slots: maps.fast().slots()?.into_iter().collect(),
            long: maps.fast().long_entries()?.into_iter().collect(),
            v4_hint: maps.fast().v4_hint().snapshot(),
            v6_hint: maps.fast().v6_hint().snapshot(),
        })
    }

    /// The fast path for `entries`, computed in one pass over them.
    pub fn derive(entries: &BTreeMap<Prefix, Entry>) -> Self {
        let mut s = Self::default();
        let mut broad = Vec::new();
        // Shortest first, so that a longer entry's base overwrites a shorter one's.
        let mut short: Vec<(u32, u32, Entry)> = Vec::new();
        // The long entries of one /24 come one after the other in prefix order.
        let mut group: Vec<(u32, u32, Entry)> = Vec::new();
        let flush = |s: &mut Self, group: &mut Vec<(u32, u32, Entry)>| {
            if let Some((addr, _, _)) = group.first() {
                let slot = s
                    .slots
                    .get_mut(&(addr >> (32 - SLOT_LEN)))
                    .expect("created with the group");
                fill_inline(slot, group);
                group.clear();
            }
        };
        for (p, e) in entries {
            if let Some((addr, len)) = v4(p) {
                if len > SLOT_LEN {
                    s.long.insert(long_key(addr, len), *e);
                    let block = addr >> (32 - SLOT_LEN);
                    if group
                        .first()
                        .is_some_and(|(a, _, _)| a >> (32 - SLOT_LEN) != block)
                    {
                        flush(&mut s, &mut group);
                    }
                    group.push((addr, len, *e));
                    s.slots.entry(block).or_default().longer |= 1 << (len - SLOT_LEN - 1);
                } else if len >= MIN_SLOTTED_LEN {
                    short.push((addr, len, *e));
                    for b in blocks(addr, len) {
                        s.slots.entry(b).or_default();
                    }
                } else {
                    broad.push((addr, len, *e));
                    for b in blocks(addr, len) {
                        set_bit(&mut s.v4_hint, b);
                    }
                }
            } else {
                match v6_bits(p) {
                    Some(bits) => bits.into_iter().for_each(|b| set_bit(&mut s.v6_hint, b)),
                    None => s.v6_hint.iter_mut().for_each(|w| *w = u64::MAX),
                }
            }
        }
        flush(&mut s, &mut group);
        broad.sort_by_key(|(_, len, _)| *len);
        for (addr, len, e) in broad {
            let range = blocks(addr, len);
            for (block, slot) in s.slots.iter_mut() {
                if range.contains(block) {
                    slot.base = e;
                    slot.has_base = 1;
                }
            }
        }
        short.sort_by_key(|(_, len, _)| *len);
        for (addr, len, e) in short {
            for b in blocks(addr, len) {
                let slot = s.slots.get_mut(&b).expect("created above");
                slot.base = e;
                slot.has_base = 1;
            }
        }
        for block in s.slots.keys() {
            set_bit(&mut s.v4_hint, *block);
        }
        s
    }
}

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

/// One step of a fast-path plan (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Widen,
    SetHints,
    LongUpserts,
    Mid,
    Rebase,
    LongRemovals,
    Settle,
    ClearHints,
    DeleteSlots,
}

impl Step {
    /// The steps that go with the trie's upserts, in order.
    pub const BEFORE_REMOVALS: [Step; 4] =
        [Step::Widen, Step::SetHints, Step::LongUpserts, Step::Mid];
    /// The steps that go with the trie's removals, in order.
    pub const AFTER_REMOVALS: [Step; 5] = [
        Step::Rebase,
        Step::LongRemovals,
        Step::Settle,
        Step::ClearHints,
        Step::DeleteSlots,
    ];
}

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

    /// Steps 0 to 2, beside the trie's upserts.
    pub fn apply_before_removals(&self, maps: &Maps) -> Result<(), DataplaneError> {
        Step::BEFORE_REMOVALS
            .iter()
            .try_for_each(|step| self.apply_step(maps, *step))
    }

    /// Steps 3 to 5, beside the trie's removals.
    pub fn apply_after_removals(&self, maps: &Maps) -> Result<(), DataplaneError> {
        Step::AFTER_REMOVALS
            .iter()
            .try_for_each(|step| self.apply_step(maps, *step))
    }

    /// One step (the tests look at the data plane between steps).
    pub fn apply_step(&self, maps: &Maps, step: Step) -> Result<(), DataplaneError> {
        match step {
            Step::Widen => maps.fast().put_slots(&self.widen),
            Step::SetHints => {
                for b in &self.v4_hint_set {
                    maps.fast().v4_hint().set(*b);
                }
                for b in &self.v6_hint_set {
                    maps.fast().v6_hint().set(*b);
                }
                Ok(())
            }
            Step::LongUpserts => maps.fast().put_long(&self.long_upserts),
            Step::Mid => maps.fast().put_slots(&self.mid),
            Step::Rebase => maps.fast().put_slots(&self.rebase),
            Step::LongRemovals => maps.fast().delete_long(&self.long_removals),
            Step::Settle => maps.fast().put_slots(&self.settle),
            Step::ClearHints => {
                for b in &self.v4_hint_clear {
                    maps.fast().v4_hint().clear(*b);
                }
                for b in &self.v6_hint_clear {
                    maps.fast().v6_hint().clear(*b);
                }
                Ok(())
            }
            Step::DeleteSlots => maps.fast().delete_slots(&self.slot_deletes),
        }
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
