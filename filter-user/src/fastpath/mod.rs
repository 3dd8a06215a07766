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
//!
//! - `state`: what the fast-path maps hold ([`FastState`]) and reading them;
//! - `entries`: the entry sets a derivation reads ([`Entries`]: one map, the old and new
//!   overlaid, a map with changes on top);
//! - `derive`: the fast path of a set of entries, whole or one /24 block at a time;
//! - `plan`: the steps from what the maps hold to the fast path of new entries
//!   ([`FastPlan`]);
//! - `apply`: writing a plan to the maps, step by step ([`Step`]).

mod apply;
mod derive;
mod entries;
mod plan;
mod state;

pub use apply::Step;
pub use entries::{Entries, Overlay, Patched};
pub use plan::FastPlan;
pub use state::{FastState, IntHasher, IntMap};
