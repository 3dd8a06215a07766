//! The fast path of a set of entries: whole ([`FastState::derive`]), or the slot of one
//! /24 block, and where a prefix lands in the maps (its /24 blocks, its long-entry key,
//! its IPv6 hint bits).

use std::collections::BTreeMap;
use std::net::IpAddr;

use filter_common::{
    maps::{v6_hint_index, MIN_SLOTTED_LEN, SLOT_LEN},
    Entry, LongKey, Slot, SLOT_INLINE,
};

use super::{
    entries::Entries,
    state::{set_bit, FastState},
};
use crate::prefix::Prefix;

/// IPv6 prefixes broader than this set every hint bit (the trie answers all IPv6).
const V6_HINT_MIN_LEN: u8 = 16;

pub(super) fn v4(p: &Prefix) -> Option<(u32, u32)> {
    match p.addr() {
        IpAddr::V4(a) => Some((u32::from(a), u32::from(p.length()))),
        IpAddr::V6(_) => None,
    }
}

/// The /24 blocks a v4 prefix touches.
pub(super) fn blocks(addr: u32, len: u32) -> std::ops::Range<u32> {
    let first = addr >> (32 - SLOT_LEN);
    if len >= SLOT_LEN {
        first..first + 1
    } else {
        first..first + (1 << (SLOT_LEN - len))
    }
}

pub(super) fn long_key(addr: u32, len: u32) -> LongKey {
    LongKey {
        addr: addr.to_be_bytes(),
        len: len as u8,
        _pad: [0; 3],
    }
}

/// The IPv6 hint bits an entry needs; `None`: all of them.
pub(super) fn v6_bits(p: &Prefix) -> Option<Vec<u32>> {
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
pub(super) fn slot_of(entries: &impl Entries, block: u32) -> (Option<Slot>, bool) {
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
