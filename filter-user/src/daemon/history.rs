//! What the daemon has done so far, counted for the metrics and `status`: syncs applied
//! and refused, re-attachments, and how long syncs took.

use std::collections::BTreeMap;

use time::OffsetDateTime;

/// Upper bounds of the sync duration histogram, in seconds.
pub const SYNC_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Sync durations: observations per bucket (the first bound they fit under; the last
/// slot for those above every bound).
#[derive(Clone, Debug, Default)]
pub struct DurationHistogram {
    pub counts: [u64; SYNC_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl DurationHistogram {
    pub fn observe(&mut self, seconds: f64) {
        let slot = SYNC_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(SYNC_BUCKETS.len());
        self.counts[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// Counts of syncs, for the metrics.
#[derive(Clone, Debug, Default)]
pub struct SyncHistory {
    pub applied: u64,
    pub rejected: u64,
    /// CLI edits refused (not counted in `rejected`).
    pub edits_refused: u64,
    /// Times the filter was attached again to an interface it had been removed from.
    pub reattached: BTreeMap<String, u64>,
    pub last_applied: Option<OffsetDateTime>,
    pub last_rejected: Option<OffsetDateTime>,
    /// Durations of applied syncs.
    pub durations: DurationHistogram,
}
