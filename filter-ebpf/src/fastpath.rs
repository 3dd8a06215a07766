//! Looking an address up: the longest-prefix match over the entries, answered from
//! structures that cost one or two memory accesses for most addresses.
//!
//! IPv4: a bitmap with one bit per /24 says whether any entry touches it (for nearly all
//! traffic the answer is no, after one read of a 2 MiB array). For a touched /24 its slot,
//! one cache line of an open-addressed table, gives the result of the entries up to /24
//! and the longer entries inside it: themselves when there are few, a bitmap of what they
//! cover when they all share one entry, else which longer lengths exist inside, probed
//! longest first in a hash map. A /24 with its bit set but no slot within reach (only
//! entries broader than /16 touch it, or its cell lies beyond the probes) is answered
//! by the LPM trie. IPv6: a bitmap of hashed /32s, then the LPM trie. User space derives all of this from the tries, in an
//! order that keeps every intermediate state safe (`docs/design/fast-path.md`).

use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{
    maps::{slot_home, v6_hint_index, SLOT_LEN, SLOT_PROBES, V4_BITS, V6_BITS},
    Entry, LongKey, Slot, SLOT_DENSE, SLOT_INLINE,
};

use crate::maps::{BF_SLOT_MASK, V4_HINT, V4_LONG, V4_PREFIXES, V4_SLOTS, V6_HINT, V6_PREFIXES};

#[inline(always)]
fn hint(map: &aya_ebpf::maps::Array<u64>, index: u32) -> bool {
    map.get(index >> 6)
        .is_some_and(|word| *word & (1u64 << (index & 63)) != 0)
}

/// The entry the longest matching prefix gives `addr`, if any.
#[inline(always)]
pub fn lookup_v4(addr: &[u8; 4]) -> Option<Entry> {
    let a = u32::from_be_bytes(*addr);
    let block = a >> (V4_BITS - SLOT_LEN);
    if !hint(&V4_HINT, block) {
        return None;
    }
    let Some(slot) = find_slot(block) else {
        return trie_v4(addr);
    };
    if slot.inline_count == SLOT_DENSE {
        // Many longer entries, one entry value: a bitmap of the addresses they cover.
        let low = a as u8;
        let word = slot.dense_words()[usize::from(low >> 5) & 7];
        if word & (1 << (low & 31)) != 0 {
            return Some(slot.dense_entry());
        }
        return (slot.has_base != 0).then_some(slot.base);
    }
    if slot.inline_count != 0 {
        // The slot carries every longer entry of its /24, longest first.
        let low = a as u8;
        for i in 0..SLOT_INLINE {
            if i >= usize::from(slot.inline_count) {
                break;
            }
            let len = u32::from(slot.inline_len[i]);
            let mask = (0xff00u32 >> (len.wrapping_sub(SLOT_LEN) & 15)) as u8;
            if low & mask == slot.inline_low[i] {
                return Some(slot.inline[i]);
            }
        }
        return (slot.has_base != 0).then_some(slot.base);
    }
    let mut len = V4_BITS;
    while len > SLOT_LEN {
        if slot.longer & (1u8 << (len - SLOT_LEN - 1)) != 0 {
            let key = LongKey {
                addr: (a & (u32::MAX << (V4_BITS - len))).to_be_bytes(),
                len: len as u8,
                _pad: [0; 3],
            };
            // SAFETY: as above; the copy is trusted only if it names this key.
            if let Some(found) = unsafe { V4_LONG.get(key) } {
                let value = unsafe { core::ptr::read_volatile(found) };
                if value.key != key {
                    return trie_v4(addr);
                }
                return Some(value.entry);
            }
        }
        len -= 1;
    }
    (slot.has_base != 0).then_some(slot.base)
}

/// The slot of /24 number `block`, if one of the [`SLOT_PROBES`] cells from its home holds
/// it, whole and sealed. User space may be rewriting a cell meanwhile: each is copied
/// once and the copy trusted only if it names this /24 and its seal matches.
#[inline(always)]
fn find_slot(block: u32) -> Option<Slot> {
    // SAFETY: a read-only global the loader sets before the program is verified.
    let mask = unsafe { core::ptr::read_volatile(&BF_SLOT_MASK) };
    let home = slot_home(block);
    let mut i = 0;
    while i < SLOT_PROBES {
        let index = home.wrapping_add(i) & mask;
        if let Some(cell) = V4_SLOTS.get_ptr(index) {
            // SAFETY: `cell` points to a whole cell of the array, valid for this run.
            let tag = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*cell).block)) };
            if tag == block {
                let copy = unsafe { core::ptr::read_volatile(cell) };
                if copy.block == block && copy.slot.seal == copy.slot.seal(block) {
                    return Some(copy.slot);
                }
            }
        }
        i += 1;
    }
    None
}

/// The LPM trie alone: the authority, and the baseline the benchmarks compare with.
#[inline(always)]
pub fn trie_v4(addr: &[u8; 4]) -> Option<Entry> {
    V4_PREFIXES.get(Key::new(V4_BITS, *addr)).copied()
}

#[inline(always)]
pub fn lookup_v6(addr: &[u8; 16]) -> Option<Entry> {
    let top = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]);
    if !hint(&V6_HINT, v6_hint_index(top)) {
        return None;
    }
    trie_v6(addr)
}

#[inline(always)]
pub fn trie_v6(addr: &[u8; 16]) -> Option<Entry> {
    V6_PREFIXES.get(Key::new(V6_BITS, *addr)).copied()
}
