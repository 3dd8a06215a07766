//! Which prefixes a change gave to, or took from, which order: computed from the plan and
//! what the maps held before it, so that it says what the data plane did (an order's
//! prefix carved by an exception, or decided by a longer prefix of another order, shows
//! as the data plane has it). A record carries them itself, or, for a change larger than
//! [`INLINE_PREFIXES`], names a side file that holds them.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use filter_common::{
    types::{EXCEPTION_RULE, NO_RULE},
    Entry, Rule,
};
use serde::{Deserialize, Serialize};

use super::AuditError;
use crate::{
    prefix::Prefix,
    sync::{Plan, Snapshot},
};

/// A change of more prefixes than this, in all, keeps them in a side file.
pub const INLINE_PREFIXES: usize = 1_000;

/// What decides a prefix in the data plane: an order (by its fingerprint, as the rule
/// slots name it) or the exceptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    Exception,
    Order(u64),
}

/// The distinct owners of an entry's two sides (destination, source), sorted.
type Owners = [Option<Owner>; 2];

/// A prefix whose owners the change altered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    pub prefix: Prefix,
    pub before: Owners,
    pub after: Owners,
}

/// The prefixes one order (or the exceptions) gained and lost in a change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixChanges {
    /// The order's id; `None` for the exceptions.
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<Prefix>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Prefix>,
}

impl PrefixChanges {
    pub fn len(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn owner(number: u32, rules: &BTreeMap<u32, Rule>) -> Option<Owner> {
    match number {
        NO_RULE => None,
        EXCEPTION_RULE => Some(Owner::Exception),
        n => rules
            .get(&n)
            .filter(|r| r.owner != 0)
            .map(|r| Owner::Order(r.owner)),
    }
}

fn owners(entry: Option<&Entry>, rules: &BTreeMap<u32, Rule>) -> Owners {
    let Some(e) = entry else {
        return [None, None];
    };
    let (a, b) = (owner(e.dst_rule, rules), owner(e.src_rule, rules));
    match (a, b) {
        (a, b) if a == b => [a, None],
        (Some(a), Some(b)) => [Some(a.min(b)), Some(a.max(b))],
        (None, b) => [b, None],
        (a, None) => [a, None],
    }
}

/// The prefixes whose owners `plan` changes, from `held` (what the maps hold before it)
/// to `rules_after` (every rule slot once it is applied).
pub fn handovers(plan: &Plan, held: &Snapshot, rules_after: &BTreeMap<u32, Rule>) -> Vec<Handover> {
    let mut out = Vec::new();
    let mut push = |prefix: Prefix, before: Owners, after: Owners| {
        if before != after {
            out.push(Handover {
                prefix,
                before,
                after,
            });
        }
    };
    for (prefix, entry) in &plan.upserts {
        push(
            *prefix,
            owners(held.entries.get(prefix), &held.rules),
            owners(Some(entry), rules_after),
        );
    }
    for prefix in &plan.removals {
        push(
            *prefix,
            owners(held.entries.get(prefix), &held.rules),
            [None, None],
        );
    }
    // A rule slot given to another order hands over every entry that names it, changed
    // or not. Rare (a number is reused only once it is free), so a scan is fine.
    let renumbered: HashSet<u32> = plan
        .rules_first
        .iter()
        .filter(|(n, rule, _)| {
            held.rules
                .get(n)
                .is_some_and(|old| old.owner != 0 && old.owner != rule.owner)
        })
        .map(|(n, ..)| *n)
        .collect();
    if !renumbered.is_empty() {
        let touched: HashSet<&Prefix> = plan
            .upserts
            .iter()
            .map(|(p, _)| p)
            .chain(&plan.removals)
            .collect();
        for (prefix, entry) in &held.entries {
            if !touched.contains(prefix)
                && (renumbered.contains(&entry.dst_rule) || renumbered.contains(&entry.src_rule))
            {
                push(
                    *prefix,
                    owners(Some(entry), &held.rules),
                    owners(Some(entry), rules_after),
                );
            }
        }
    }
    out
}

/// Groups handovers by order (named by `names`; an order no list names any more is
/// shown by its fingerprint), exceptions first, then by order id.
pub fn group(handovers: &[Handover], names: &HashMap<u64, String>) -> Vec<PrefixChanges> {
    let mut by_owner: BTreeMap<Owner, PrefixChanges> = BTreeMap::new();
    fn of(by_owner: &mut BTreeMap<Owner, PrefixChanges>, o: Owner) -> &mut PrefixChanges {
        by_owner.entry(o).or_default()
    }
    for h in handovers {
        for o in h.before.iter().flatten() {
            if !h.after.contains(&Some(*o)) {
                of(&mut by_owner, *o).removed.push(h.prefix);
            }
        }
        for o in h.after.iter().flatten() {
            if !h.before.contains(&Some(*o)) {
                of(&mut by_owner, *o).added.push(h.prefix);
            }
        }
    }
    for (o, c) in &mut by_owner {
        c.order = match o {
            Owner::Exception => None,
            Owner::Order(f) => Some(
                names
                    .get(f)
                    .cloned()
                    .unwrap_or_else(|| format!("(order with fingerprint {f:016x})")),
            ),
        };
    }
    let mut out: Vec<PrefixChanges> = by_owner.into_values().collect();
    out.sort_by(|a, b| a.order.cmp(&b.order));
    for c in &mut out {
        c.added.sort_unstable();
        c.removed.sort_unstable();
    }
    out
}

/// The directory that holds the side files of the audit log at `log`.
pub fn side_dir(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".d");
    log.with_file_name(name)
}

/// Writes `changes` (one JSON line each) to a new side file of the audit log at `log`,
/// synced with its directory, and returns its name relative to the log's directory.
pub fn write_side_file(
    log: &Path,
    stem: &str,
    changes: &[PrefixChanges],
) -> Result<String, AuditError> {
    let dir = side_dir(log);
    let dir_name = dir.file_name().unwrap_or_default().to_string_lossy();
    let relative = format!("{dir_name}/{stem}.jsonl");
    let path = dir.join(format!("{stem}.jsonl"));
    let err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError { op, path, source }
    };
    fs::create_dir_all(&dir).map_err(err("creating", &dir))?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&path)
        .map_err(err("creating", &path))?;
    let mut out = BufWriter::new(file);
    for c in changes {
        serde_json::to_writer(&mut out, c).map_err(|e| AuditError {
            op: "writing",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        out.write_all(b"\n").map_err(err("writing", &path))?;
    }
    let file = out.into_inner().map_err(|e| AuditError {
        op: "writing",
        path: path.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(err("syncing", &path))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(err("syncing", &dir))?;
    Ok(relative)
}

/// Reads a side file named (relative to the log's directory) in a record of the log at
/// `log`. A torn last line is skipped, as in the log itself.
pub fn read_side_file(log: &Path, relative: &str) -> Result<Vec<PrefixChanges>, AuditError> {
    let path = log
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(relative);
    match crate::jsonl::read(&path) {
        Ok(Some(changes)) => Ok(changes),
        Ok(None) => Err(AuditError {
            op: "opening",
            path,
            source: io::ErrorKind::NotFound.into(),
        }),
        Err((op, source)) => Err(AuditError { op, path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        text.parse().unwrap()
    }

    fn rules(pairs: &[(u32, u64)]) -> BTreeMap<u32, Rule> {
        pairs.iter().map(|(n, o)| (*n, Rule::new(1, *o))).collect()
    }

    fn entry(dst: u32, src: u32) -> Entry {
        Entry {
            dst_rule: dst,
            src_rule: src,
        }
    }

    fn names() -> HashMap<u64, String> {
        [(10, "A".to_string()), (20, "B".to_string())].into()
    }

    #[test]
    fn added_removed_and_moved_prefixes_are_named_per_order() {
        let before = rules(&[(2, 10), (3, 20)]);
        let held = Snapshot::new(
            [
                (p("198.51.100.0/24"), entry(2, 2)),
                (p("203.0.113.7/32"), entry(2, 2)),
                (p("203.0.113.9/32"), entry(3, 3)),
            ]
            .into(),
            before.clone(),
        );
        let plan = Plan {
            // .7 moves from A to B; a new exception; .9 goes.
            upserts: vec![
                (p("203.0.113.7/32"), entry(3, 3)),
                (p("198.51.100.53/32"), entry(EXCEPTION_RULE, EXCEPTION_RULE)),
            ],
            removals: vec![p("203.0.113.9/32")],
            ..Plan::default()
        };
        let h = handovers(&plan, &held, &before);
        assert_eq!(h.len(), 3);
        let g = group(&h, &names());
        assert_eq!(
            g,
            vec![
                PrefixChanges {
                    order: None,
                    added: vec![p("198.51.100.53/32")],
                    removed: vec![],
                },
                PrefixChanges {
                    order: Some("A".into()),
                    added: vec![],
                    removed: vec![p("203.0.113.7/32")],
                },
                PrefixChanges {
                    order: Some("B".into()),
                    added: vec![p("203.0.113.7/32")],
                    removed: vec![p("203.0.113.9/32")],
                },
            ]
        );
    }

    #[test]
    fn an_entry_whose_value_changes_but_not_its_orders_is_no_handover() {
        let r = rules(&[(2, 10)]);
        let held = Snapshot::new([(p("203.0.113.0/24"), entry(2, NO_RULE))].into(), r.clone());
        // Destination only -> both directions: the same order, one more side.
        let plan = Plan {
            upserts: vec![(p("203.0.113.0/24"), entry(2, 2))],
            ..Plan::default()
        };
        assert!(handovers(&plan, &held, &r).is_empty());
    }

    #[test]
    fn a_rule_slot_given_to_another_order_hands_over_its_untouched_entries() {
        let held = Snapshot::new(
            [(p("203.0.113.0/24"), entry(2, 2))].into(),
            rules(&[(2, 10)]),
        );
        let after = rules(&[(2, 20)]);
        let plan = Plan {
            rules_first: vec![(2, Rule::new(1, 20), true)],
            ..Plan::default()
        };
        let g = group(&handovers(&plan, &held, &after), &names());
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].removed, vec![p("203.0.113.0/24")]);
        assert_eq!(g[1].order.as_deref(), Some("B"));
        assert_eq!(g[1].added, vec![p("203.0.113.0/24")]);
    }

    #[test]
    fn side_files_round_trip_next_to_the_log() {
        let dir = std::env::temp_dir().join(format!("bf-audit-side-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        let changes = vec![PrefixChanges {
            order: Some("A".into()),
            added: vec![p("203.0.113.0/24"), p("2001:db8::/48")],
            removed: vec![],
        }];
        let name = write_side_file(&log, "x", &changes).unwrap();
        assert_eq!(name, "audit.jsonl.d/x.jsonl");
        assert_eq!(read_side_file(&log, &name).unwrap(), changes);
        fs::remove_dir_all(&dir).unwrap();
    }
}
