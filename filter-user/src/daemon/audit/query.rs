//! `borderfilter audit --prefix`: since when an address or prefix has been blocked (or
//! exempted), by which order, and who changed it, replayed from the audit trail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{prefixes::read_side_file, Origin, Record};
use crate::{error_chain, prefix::Prefix};

/// One order (or the exceptions) gaining or losing a prefix that overlaps the query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixEvent {
    pub time: String,
    pub who: Origin,
    /// The list in force after the change.
    pub sha256_after: String,
    /// The order; `None`: the exceptions.
    pub order: Option<String>,
    pub prefix: Prefix,
    /// `added` or `removed`.
    pub change: String,
}

/// A prefix overlapping the query that an order (or the exceptions) holds at the end of
/// the trail, and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixHolding {
    pub order: Option<String>,
    pub prefix: Prefix,
    pub since: String,
    pub who: Origin,
}

/// The answer to `audit --prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixHistory {
    pub query: Prefix,
    /// Every change of a prefix that contains the query or lies inside it, oldest first
    /// (from `--since` on, when given).
    pub events: Vec<PrefixEvent>,
    /// What holds such prefixes now, by the trail: the orders that block the query (or
    /// part of it) and the exceptions carved out of them.
    pub now: Vec<PrefixHolding>,
    /// Records whose prefixes could not be read (a side file missing or unreadable).
    pub problems: Vec<String>,
}

/// Replays `records` (oldest first) of the log at `log` for `query`.
pub fn history(
    log: &std::path::Path,
    records: &[Record],
    query: Prefix,
    since: Option<&str>,
) -> PrefixHistory {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    let mut held: BTreeMap<(Option<String>, Prefix), (String, Origin)> = BTreeMap::new();
    for record in records {
        let side;
        let changes = match &record.prefixes_file {
            Some(name) => match read_side_file(log, name) {
                Ok(c) => {
                    side = c;
                    &side
                }
                Err(e) => {
                    problems.push(format!("{}: {}", record.time, error_chain(&e)));
                    continue;
                }
            },
            None => &record.prefixes,
        };
        let shown = since.is_none_or(|s| record.time.as_str() >= s);
        // Within a change, what went before what came: a prefix handed from one order
        // to another reads "removed" from the first, then "added" to the second.
        let removals = changes.iter().map(|c| (c, &c.removed, "removed"));
        let additions = changes.iter().map(|c| (c, &c.added, "added"));
        for (c, list, change) in removals.chain(additions) {
            for prefix in list.iter().filter(|p| p.overlaps(&query)) {
                let key = (c.order.clone(), *prefix);
                if change == "added" {
                    held.insert(key, (record.time.clone(), record.who.clone()));
                } else {
                    held.remove(&key);
                }
                if shown {
                    events.push(PrefixEvent {
                        time: record.time.clone(),
                        who: record.who.clone(),
                        sha256_after: record.sha256_after.clone(),
                        order: c.order.clone(),
                        prefix: *prefix,
                        change: change.into(),
                    });
                }
            }
        }
    }
    let now = held
        .into_iter()
        .map(|((order, prefix), (since, who))| PrefixHolding {
            order,
            prefix,
            since,
            who,
        })
        .collect();
    PrefixHistory {
        query,
        events,
        now,
        problems,
    }
}
