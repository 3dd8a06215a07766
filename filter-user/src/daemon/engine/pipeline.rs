//! A change from the list's source to the data plane: read the list, check it, plan the
//! change, enforce it without a gap, and record it (report, audit trail, history).

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant as Clock,
};

use time::OffsetDateTime;

use super::{lines, refusal, Applied, Enforced, Engine, Outcome};
use crate::{
    compile::{compile_with, fingerprint, Compiled, Numbering},
    control::report::{self, ChangeReport},
    daemon::{
        audit::{
            self,
            prefixes::{group, handovers, write_side_file, Handover, INLINE_PREFIXES},
            Origin, Record,
        },
        source::Revision,
    },
    error_chain,
    orders::{
        validate,
        window::{next_change, rfc3339},
        Order, OrderList,
    },
    prefix::Family,
    sync::{Changes, Plan, Snapshot},
};

/// Above this many prefixes, a change that stops enforcing more than half of the
/// enforced prefixes needs `--force`.
pub const GUARD_MIN_PREFIXES: usize = 100;

/// The mass-removal guard: whether a change that stops enforcing `dropped` of the
/// `before` prefixes enforced needs `--force` (on a router, and for `borderfilter publish`).
pub fn needs_force(before: usize, dropped: usize) -> bool {
    dropped > GUARD_MIN_PREFIXES && dropped * 2 > before
}

/// Why a change made in place was not enforced.
pub(super) enum NotEnforced {
    /// The fast-path index has no room for it (the message says what to do).
    NoRoom(String),
    /// Writing the maps failed.
    Failed(String),
}

/// A valid list read from the source.
pub(super) struct SourceList {
    pub list: OrderList,
    pub sha256: String,
    pub warnings: Vec<String>,
    pub revision: Option<Revision>,
    /// The list's text, when the source holds it only in part: to write back once applied.
    pub persist: Option<Vec<u8>>,
}

/// What reading the source found.
pub(super) enum Read {
    List(SourceList),
    /// The same bytes as the list in force (the source's revision, and what to write back).
    Same(String, Option<Revision>, Option<Vec<u8>>),
}

/// Why the list in the source cannot be applied.
pub(super) struct ListProblems {
    pub sha256: Option<String>,
    pub problems: Vec<String>,
}

/// What an applied change did, for the report and the audit trail.
pub(super) struct Conclusion {
    pub sha256_before: Option<String>,
    pub orders_added: Vec<String>,
    pub orders_removed: Vec<String>,
    pub orders_changed: Vec<String>,
    pub changes: Changes,
    pub handovers: Vec<Handover>,
    pub enforced_before: BTreeSet<u64>,
    pub started: Clock,
    pub plan_empty: bool,
}

impl Conclusion {
    /// What a change made in place to the list in force (digest `sha256_before`) did.
    pub(super) fn in_place(
        sha256_before: &str,
        order_added: Option<String>,
        orders_changed: Vec<String>,
        enforced: Enforced,
    ) -> Self {
        let Enforced {
            changes,
            handovers,
            enforced_before,
            started,
            plan_empty,
        } = enforced;
        Self {
            sha256_before: Some(sha256_before.to_string()),
            orders_added: order_added.into_iter().collect(),
            orders_removed: Vec::new(),
            orders_changed,
            changes,
            handovers,
            enforced_before,
            started,
            plan_empty,
        }
    }
}

impl Engine {
    /// Reads and checks the list. With `same_ok`, bytes equal to the list in force are
    /// not parsed again.
    pub(super) fn read_list(&self, same_ok: bool) -> Result<Read, ListProblems> {
        let version = self.source.read().map_err(|e| ListProblems {
            sha256: None,
            problems: vec![format!("error: {}", error_chain(&e))],
        })?;
        let sha256 = version.sha256;
        let persist = version.persist.then(|| version.bytes.clone());
        if same_ok && self.held.is_some() {
            if let Some(a) = &self.applied {
                if a.sha256 == sha256 {
                    return Ok(Read::Same(sha256, version.revision, persist));
                }
            }
        }
        let (list, problems) = validate::check(&version.bytes, &self.policy());
        let mut warnings = version.notes;
        warnings.extend(lines(&problems));
        match list {
            Some(list) => Ok(Read::List(SourceList {
                list,
                sha256,
                warnings,
                revision: version.revision,
                persist,
            })),
            None => Err(ListProblems {
                sha256: Some(sha256),
                problems: lines(&problems),
            }),
        }
    }

    /// Applies the list as the source holds it now, and tells the source what is enforced.
    pub fn sync(&mut self, origin: Origin, force: bool) -> Outcome {
        let outcome = self.sync_inner(origin, force);
        if !matches!(outcome, Outcome::Unchanged(_)) {
            self.tell_source();
        }
        if matches!(outcome, Outcome::Applied(_)) {
            self.names_follow();
        }
        outcome
    }

    fn sync_inner(&mut self, origin: Origin, force: bool) -> Outcome {
        // The daemon's own writes (CLI edits) come back as change notices: the source
        // then holds exactly the list in force, and is not read again.
        if origin == self.source.origin() && !force && self.held.is_some() {
            if let Some(a) = &self.applied {
                if a.revision.is_some() && a.revision == self.source.revision() {
                    // A list refused meanwhile is gone from the source.
                    let unchanged = Outcome::unchanged(a.sha256.clone(), Vec::new());
                    self.refusal = None;
                    return unchanged;
                }
            }
        }
        let same_ok = origin != Origin::Clock && !force;
        let SourceList {
            list,
            sha256,
            warnings,
            revision,
            persist,
        } = match self.read_list(same_ok) {
            Ok(Read::List(x)) => x,
            Ok(Read::Same(sha256, revision, persist)) => {
                let revision = self.persist(persist, revision);
                let a = self.applied.as_mut().expect("compared with it");
                a.revision = revision;
                self.refusal = None;
                return Outcome::unchanged(sha256, a.warnings.clone());
            }
            Err(ListProblems { sha256, problems }) => {
                let r = refusal(&origin, sha256, problems, false);
                self.refusal = Some(r.clone());
                return self.refuse(r);
            }
        };
        let outcome = self.install(list, sha256, origin, force, warnings);
        if matches!(outcome, Outcome::Applied(_) | Outcome::Unchanged(_)) {
            let revision = self.persist(persist, revision);
            if let Some(a) = self.applied.as_mut() {
                a.revision = revision;
            }
        }
        match &outcome {
            Outcome::Refused(r) => self.refusal = Some(r.clone()),
            _ => self.refusal = None,
        }
        outcome
    }

    /// Writes back a list the source held only in part (`persist`), once it is applied;
    /// returns the source's revision. If the write fails the source still holds the
    /// list (in part) and it is written at the next change.
    fn persist(
        &mut self,
        persist: Option<Vec<u8>>,
        revision: Option<Revision>,
    ) -> Option<Revision> {
        let Some(bytes) = persist else {
            return revision;
        };
        match self.source.replace(&bytes, revision) {
            Ok(r) => Some(r),
            Err(e) => {
                log::error!(
                    "writing back {} failed ({e:?}); it is written at the next change",
                    self.source.name()
                );
                None
            }
        }
    }

    /// Re-applies the list in force when an order's window opened or closed.
    pub fn tick(&mut self, now: OffsetDateTime) -> Option<Outcome> {
        let applied = self.applied.as_ref()?;
        let due = applied
            .compiled
            .states
            .iter()
            .zip(&applied.list.orders)
            .any(|((_, state), order)| order.state(now) != *state);
        if !due {
            return None;
        }
        let (list, sha256, warnings) = (
            applied.list.clone(),
            applied.sha256.clone(),
            applied.warnings.clone(),
        );
        let outcome = self.install(list, sha256, Origin::Clock, true, warnings);
        self.tell_source();
        Some(outcome)
    }

    /// The next moment an order's window opens or closes.
    pub fn next_change(&self) -> Option<OffsetDateTime> {
        next_change(&self.applied.as_ref()?.list, OffsetDateTime::now_utc())
    }

    /// Compiles `list` and applies the mass-removal guard, without changing anything.
    pub(super) fn precheck(
        &mut self,
        list: &OrderList,
        origin: &Origin,
        force: bool,
        sha256: &str,
    ) -> Result<Compiled, report::Refusal> {
        let fail = |problems: Vec<String>, needs_force| {
            refusal(origin, Some(sha256.to_string()), problems, needs_force)
        };
        let capacities = [Family::V4, Family::V6].map(|f| (f, self.dataplane.maps().capacity(f)));
        let now = OffsetDateTime::now_utc();
        let resolved = self.admitted(list, now).resolved;
        let held = self.held().map_err(|e| {
            fail(
                vec![format!("error: cannot read the data plane: {e}")],
                false,
            )
        })?;
        let numbering = Numbering::from_rules(&held.rules);
        let compiled = compile_with(list, now, &numbering, &resolved)
            .map_err(|e| fail(vec![format!("error: {e}")], false))?;
        // A sync adds before it removes (so that nothing both lists block is ever let
        // through): for a moment the tries hold the old and the new prefixes. A change
        // they cannot hold together is refused before anything is touched, rather than
        // failing half way.
        for (family, capacity) in capacities {
            let Ok(capacity) = capacity else { continue };
            let (now, peak) = peak_entries(&held.entries, &compiled.entries, family);
            if peak > capacity as usize {
                return Err(fail(
                    vec![format!(
                        "error: this change needs room for {peak} {} prefixes at once (the {now} held now stay until the new ones are in place), \
                         but the map holds {capacity}. Make it in two steps (first a list without the prefixes to remove, then one with the new ones), \
                         or raise --capacity-{} (it takes effect when the maps are created: detach first)",
                        family.name(),
                        match family { Family::V4 => "v4", Family::V6 => "v6" },
                    )],
                    false,
                ));
            }
        }
        if !force && *origin != Origin::Clock {
            let (before, dropped) = held.blocking_dropped(&compiled.entries, &compiled.rules);
            if needs_force(before, dropped) {
                return Err(fail(
                    vec![format!(
                        "error: this list would stop enforcing {dropped} of the {} prefixes enforced now (more than half); \
                         if that is intended, confirm with `borderfilter reload --force` (or --force on the CLI command)",
                        before
                    )],
                    true,
                ));
            }
        }
        Ok(compiled)
    }

    pub(super) fn install(
        &mut self,
        list: OrderList,
        sha256: String,
        origin: Origin,
        force: bool,
        warnings: Vec<String>,
    ) -> Outcome {
        if origin != Origin::Clock && !force {
            if let (Some(applied), Some(_)) = (&self.applied, &self.held) {
                if applied.sha256 == sha256 {
                    return Outcome::unchanged(sha256, warnings);
                }
            }
        }
        match self.precheck(&list, &origin, force, &sha256) {
            Ok(compiled) => self.apply_compiled(list, sha256, origin, warnings, compiled),
            Err(r) => self.refuse(r),
        }
    }

    /// Applies a list already compiled (and guarded) by `precheck`.
    fn apply_compiled(
        &mut self,
        list: OrderList,
        sha256: String,
        origin: Origin,
        warnings: Vec<String>,
        compiled: Compiled,
    ) -> Outcome {
        match self.enforce(&compiled, &origin, &sha256) {
            Ok(enforced) => self.record_applied(list, sha256, origin, warnings, compiled, enforced),
            Err(refused) => *refused,
        }
    }

    /// Why the IPv4 slot table cannot take `plan`, if it cannot: the list needs more slots
    /// than the table has room for, or the change needs more cells at its peak (old and
    /// new slots together) than the table has.
    pub(super) fn slot_problem(&self, plan: &Plan, held: &Snapshot) -> Option<String> {
        let maps = self.dataplane.maps();
        let slots = plan.fast.slots_after(&held.fast);
        let room = maps.fast().slot_capacity() as usize;
        if slots > room {
            return Some(too_many_slots(slots, room));
        }
        let peak = plan.fast.slots_peak(&held.fast);
        let cells = maps.fast().slot_cells_total() as usize;
        (peak > cells).then(|| {
            format!(
                "error: this change needs {peak} IPv4 /24 slots at once (the {} held now stay until the new ones are in place), \
                 but the fast-path index has {cells} cells. Make it in two steps (first a list without the prefixes to remove, then one with the new ones), \
                 or raise --capacity-v4 (it takes effect when the maps are created: detach first)",
                held.fast.slots.len()
            )
        })
    }

    /// Brings the data plane to the changed `entries` (`None`: no longer listed) under
    /// `rules`, for a change made in place (a CLI edit, what names resolved to). On error
    /// nothing is enforced and the caller takes its change back; after a failed write the
    /// maps are read again before the next change.
    pub(super) fn enforce_changes(
        &mut self,
        entries: &std::collections::BTreeMap<crate::prefix::Prefix, Option<filter_common::Entry>>,
        rules: &std::collections::BTreeMap<u32, filter_common::Rule>,
        started: Clock,
    ) -> Result<Enforced, NotEnforced> {
        let held = self
            .held
            .as_ref()
            .expect("in-place changes need the maps read");
        let plan = Plan::for_changes(held, entries, rules);
        if let Some(problem) = self.slot_problem(&plan, held) {
            return Err(NotEnforced::NoRoom(problem));
        }
        let enforced_before = held.enforced_owners();
        let handovers = handovers(&plan, held, rules);
        let changes = match plan.apply(self.dataplane.maps_mut()) {
            Ok(c) => c,
            Err(e) => {
                self.held = None;
                self.rebuild_fast = true;
                return Err(NotEnforced::Failed(error_chain(&e)));
            }
        };
        plan.update(self.held.as_mut().expect("read above"));
        Ok(Enforced {
            changes,
            handovers,
            enforced_before,
            started,
            plan_empty: plan.is_empty(),
        })
    }

    /// Brings the data plane to `compiled`: the first half of applying a list.
    pub(super) fn enforce(
        &mut self,
        compiled: &Compiled,
        origin: &Origin,
        sha256: &str,
    ) -> Result<Enforced, Box<Outcome>> {
        let started = Clock::now();
        let origin = origin.clone();
        let sha256 = sha256.to_string();
        let target = Snapshot::of(compiled);
        let held = self.held.as_ref().expect("read by precheck");
        let plan = Plan::between_checked(held, &target, self.rebuild_fast);
        if let Some(problem) = self.slot_problem(&plan, held) {
            return Err(Box::new(self.refuse(refusal(
                &origin,
                Some(sha256),
                vec![problem],
                false,
            ))));
        }
        let enforced_before = held.enforced_owners();
        let handovers = handovers(&plan, held, &compiled.rules);
        let changes = match plan.apply(self.dataplane.maps_mut()) {
            Ok(c) => c,
            Err(e) => {
                // The maps hold a mix that still blocks all both lists block; read them
                // again before the next sync.
                self.held = None;
                self.rebuild_fast = true;
                return Err(Box::new(self.refuse(refusal(
                    &origin,
                    Some(sha256),
                    vec![format!(
                        "error: applying the list to the data plane failed: {}",
                        error_chain(&e)
                    )],
                    false,
                ))));
            }
        };
        if let Some(held) = self.held.as_mut() {
            plan.update(held);
        }
        self.rebuild_fast = false;
        Ok(Enforced {
            changes,
            handovers,
            enforced_before,
            started,
            plan_empty: plan.is_empty(),
        })
    }

    /// The second half of applying a list, once it is enforced (and, for a CLI edit,
    /// written): the report, the audit record, the list in force.
    pub(super) fn record_applied(
        &mut self,
        list: OrderList,
        sha256: String,
        origin: Origin,
        warnings: Vec<String>,
        compiled: Compiled,
        enforced: Enforced,
    ) -> Outcome {
        let Enforced {
            changes,
            handovers,
            enforced_before,
            started,
            plan_empty,
        } = enforced;
        let old = self.applied.as_ref();
        // After a restart the previous list is unknown (the maps are what remains of it):
        // orders are "added" only to a daemon that starts on empty maps.
        let previous_known = old.is_some() || enforced_before.is_empty();
        fn by_id(l: Option<&OrderList>) -> HashMap<&str, &Order> {
            l.map(|l| l.orders.iter().map(|o| (o.id.as_str(), o)).collect())
                .unwrap_or_default()
        }
        let (old_orders, new_orders) = if previous_known {
            (by_id(old.map(|a| &a.list)), by_id(Some(&list)))
        } else {
            (HashMap::new(), HashMap::new())
        };
        let ids =
            |m: &HashMap<&str, &Order>| m.keys().map(|k| k.to_string()).collect::<BTreeSet<_>>();
        let conclusion = Conclusion {
            sha256_before: old.map(|a| a.sha256.clone()),
            orders_added: ids(&new_orders)
                .difference(&ids(&old_orders))
                .cloned()
                .collect(),
            orders_removed: ids(&old_orders)
                .difference(&ids(&new_orders))
                .cloned()
                .collect(),
            orders_changed: new_orders
                .iter()
                .filter(|(id, o)| old_orders.get(*id).is_some_and(|old| old != *o))
                .map(|(id, _)| id.to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            changes,
            handovers,
            enforced_before,
            started,
            plan_empty,
        };
        let report = self.conclude(conclusion, &origin, &sha256, &warnings, &compiled);
        self.applied = Some(Applied {
            list,
            sha256,
            compiled,
            at: OffsetDateTime::now_utc(),
            origin,
            warnings,
            revision: None,
            text: None,
        });
        Outcome::Applied(report)
    }

    /// Reports an applied change: the audit record, the log line, the history.
    pub(super) fn conclude(
        &mut self,
        c: Conclusion,
        origin: &Origin,
        sha256: &str,
        warnings: &[String],
        compiled: &Compiled,
    ) -> ChangeReport {
        // Which orders the data plane enforces, before and after, read from the maps
        // themselves, so that this holds across restarts too.
        let enforced_after = self
            .held
            .as_ref()
            .map(Snapshot::enforced_owners)
            .unwrap_or_default();
        let old = self.applied.as_ref();
        // Orders by fingerprint (as rule slots name them), from this list and the last.
        let names: HashMap<u64, String> = old
            .map(|a| &a.compiled)
            .into_iter()
            .chain([compiled])
            .flat_map(|c| c.order_of_rule.values())
            .map(|id| (fingerprint(id), id.clone()))
            .collect();
        let name = |owner: &u64| -> String {
            names
                .get(owner)
                .cloned()
                .unwrap_or_else(|| format!("(order with fingerprint {owner:016x})"))
        };
        let enforcement_started: Vec<String> = enforced_after
            .difference(&c.enforced_before)
            .map(name)
            .collect();
        let enforcement_ended: Vec<String> = c
            .enforced_before
            .difference(&enforced_after)
            .map(name)
            .collect();
        let now = rfc3339(OffsetDateTime::now_utc());
        for id in &enforcement_ended {
            self.enforcing.remove(id);
        }
        for id in &enforcement_started {
            self.enforcing.insert(id.clone(), now.clone());
        }
        let report = ChangeReport {
            result: "applied".into(),
            sha256: sha256.to_string(),
            orders_added: c.orders_added,
            orders_removed: c.orders_removed,
            orders_changed: c.orders_changed,
            prefixes_added: c.changes.prefixes_added,
            prefixes_changed: c.changes.prefixes_changed,
            prefixes_removed: c.changes.prefixes_removed,
            duration_ms: c.started.elapsed().as_millis() as u64,
            warnings: warnings.to_vec(),
        };
        // What names did since the last record goes with this one.
        let name_events = std::mem::take(&mut self.names.pending);
        let worth_recording =
            !c.plan_empty || c.sha256_before.as_deref() != Some(sha256) || !name_events.is_empty();
        if worth_recording {
            let record = Record {
                time: rfc3339(OffsetDateTime::now_utc()),
                who: origin.clone(),
                sha256_before: c.sha256_before.clone(),
                sha256_after: sha256.to_string(),
                orders_added: report.orders_added.clone(),
                orders_removed: report.orders_removed.clone(),
                orders_changed: report.orders_changed.clone(),
                enforcement_started: enforcement_started.clone(),
                enforcement_ended: enforcement_ended.clone(),
                prefixes_added: report.prefixes_added,
                prefixes_changed: report.prefixes_changed,
                prefixes_removed: report.prefixes_removed,
                prefixes: group(&c.handovers, &names),
                prefixes_file: None,
                names: name_events,
            };
            if let Err(e) = self.record(record) {
                log::error!("{}", error_chain(&e));
            }
        }
        log::info!(
            "applied the order list ({}): orders +{} -{} ~{}, enforcement started {:?} ended {:?}; prefixes +{} ~{} -{} in {} ms; sha256 {}",
            origin.name(), report.orders_added.len(), report.orders_removed.len(), report.orders_changed.len(),
            enforcement_started, enforcement_ended,
            report.prefixes_added, report.prefixes_changed, report.prefixes_removed, report.duration_ms, &sha256[..12]
        );
        for w in warnings {
            log::warn!("{w}");
        }
        self.history.applied += 1;
        self.history.last_applied = Some(OffsetDateTime::now_utc());
        self.history
            .durations
            .observe(c.started.elapsed().as_secs_f64());
        report
    }

    /// Appends `record` to the audit trail; a change of more than [`INLINE_PREFIXES`]
    /// prefixes puts them in a side file first and names it in the record.
    fn record(&self, mut record: Record) -> Result<(), audit::AuditError> {
        let log = &self.config.audit_log;
        let total: usize = record.prefixes.iter().map(|c| c.len()).sum();
        if total > INLINE_PREFIXES {
            let stem = format!(
                "{}-{}",
                record.time.replace(':', ""),
                &record.sha256_after[..12.min(record.sha256_after.len())]
            );
            match write_side_file(log, &stem, &record.prefixes) {
                Ok(name) => {
                    record.prefixes_file = Some(name);
                    record.prefixes.clear();
                }
                // Kept in the record itself rather than lost.
                Err(e) => log::error!(
                    "{}; the prefixes go in the audit line itself",
                    error_chain(&e)
                ),
            }
        }
        audit::append(log, &record)
    }
}

/// The `family` prefixes the maps hold now, and at the peak of a sync from `held` to
/// `target` (every prefix of either: the new ones are added before the old ones go).
fn peak_entries(
    held: &std::collections::BTreeMap<crate::prefix::Prefix, filter_common::Entry>,
    target: &std::collections::BTreeMap<crate::prefix::Prefix, filter_common::Entry>,
    family: Family,
) -> (usize, usize) {
    let mut now = held.keys().filter(|p| p.family() == family).peekable();
    let mut next = target.keys().filter(|p| p.family() == family).peekable();
    let (mut held_count, mut union) = (0, 0);
    loop {
        match (now.peek(), next.peek()) {
            (None, None) => return (held_count, union),
            (Some(a), Some(b)) if a == b => {
                now.next();
                next.next();
                held_count += 1;
            }
            (Some(a), Some(b)) if a > b => {
                next.next();
            }
            (Some(_), _) => {
                now.next();
                held_count += 1;
            }
            (None, Some(_)) => {
                next.next();
            }
        }
        union += 1;
    }
}

fn too_many_slots(slots: usize, room: usize) -> String {
    format!(
        "error: this list touches {slots} IPv4 /24 blocks with prefixes of /16 or longer; the fast-path index has room for {room}. \
         Raise --capacity-v4 (it takes effect when the maps are created: detach first)"
    )
}
