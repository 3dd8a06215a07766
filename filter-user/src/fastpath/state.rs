//! What the fast-path maps hold, and the hasher its maps are keyed with.

use std::collections::HashMap;

use filter_common::{maps::HINT_WORDS, Entry, LongKey, Slot};

use crate::dataplane::{DataplaneError, Maps};

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

pub(super) fn bit(words: &[u64], index: u32) -> bool {
    words[(index >> 6) as usize] & (1 << (index & 63)) != 0
}

pub(super) fn set_bit(words: &mut [u64], index: u32) {
    words[(index >> 6) as usize] |= 1 << (index & 63);
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
}
