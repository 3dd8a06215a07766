//! The entry sets a derivation reads: one map, the old and new maps overlaid (between a
//! sync's upserts and removals), or a map with changes on top.

use std::collections::BTreeMap;
use std::net::IpAddr;

use filter_common::{maps::SLOT_LEN, Entry};

use crate::prefix::Prefix;

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
