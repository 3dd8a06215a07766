//! Writing a fast-path plan to the maps, one step at a time.

use crate::dataplane::{DataplaneError, Maps};

use super::plan::FastPlan;

/// One step of a fast-path plan (see `fastpath`'s documentation).
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
