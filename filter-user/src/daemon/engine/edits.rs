//! CLI edits (`block add`, `orders add`, ...). Most are made in place on the list in
//! force: only what the edit adds is validated and only the prefixes it touches are
//! recompiled, so a change is enforced in milliseconds even with a million prefixes. The
//! rest take the full path: the edit made on the list as the source holds it, checked and
//! applied like any list. Either way the data plane is changed first and the source written
//! after; a write that fails takes the change back out of the data plane.

use std::time::Instant as Clock;

use time::OffsetDateTime;

use super::{
    lines,
    pipeline::{Conclusion, ListProblems, NotEnforced, Read, GUARD_MIN_PREFIXES},
    refusal, Applied, Engine, Outcome,
};
use crate::{
    compile::{ListingChange, Numbering},
    daemon::{audit::Origin, source::WriteFailure},
    error_chain,
    orders::{
        edit::{Done, Edit, EditError},
        file,
        text::ListText,
        validate,
    },
    sync::{Plan, Snapshot},
};
use filter_common::action;

impl Engine {
    /// Makes a CLI edit: reads the list, changes it, checks the result like any list,
    /// applies it, and writes it back to the source. Nothing is written or applied if any step fails.
    pub fn edit(&mut self, edit: &Edit, origin: Origin, force: bool) -> Outcome {
        let outcome = self.edit_inner(edit, origin, force);
        if matches!(outcome, Outcome::Applied(_)) {
            self.tell_source();
            self.names_follow();
        }
        outcome
    }

    fn edit_inner(&mut self, edit: &Edit, origin: Origin, force: bool) -> Outcome {
        if let Some(outcome) = self.edit_in_place(edit, &origin, force) {
            if !matches!(outcome, Outcome::Refused(_)) {
                self.refusal = None;
            }
            return outcome;
        }
        // An operator (or a tool) may replace the list while the edit is being made: the
        // edit is then made again on their version, never written over it.
        let started = Clock::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.edit_whole(edit, &origin, force) {
                Ok(outcome) => return outcome,
                Err(Conflict) if attempts < WRITE_ATTEMPTS || started.elapsed() < RETRY_FOR => {}
                Err(Conflict) => {
                    return self.refuse(refusal(
                        &origin,
                        None,
                        vec![format!(
                            "error: {} kept changing while this edit was being made ({attempts} attempts in {:.1} s); nothing was changed: try again",
                            self.source.name(),
                            started.elapsed().as_secs_f64()
                        )],
                        false,
                    ))
                }
            }
        }
    }

    /// The full path of a CLI edit: the edit made on the list as the source holds it.
    /// `Err`: the source changed before the result could be written; nothing was changed.
    fn edit_whole(
        &mut self,
        edit: &Edit,
        origin: &Origin,
        force: bool,
    ) -> Result<Outcome, Conflict> {
        let origin = origin.clone();
        let (list, base) = match self.read_list(false) {
            Ok(Read::List(x)) => (x.list, x.revision),
            Ok(Read::Same(..)) => unreachable!("read_list(false) always parses"),
            Err(ListProblems { mut problems, .. }) => {
                let name = self.source.name();
                problems.insert(0, format!(
                    "error: the order list {name} has errors; fix it (see `borderfilter validate {name}`) before changing it through the CLI"));
                return Ok(self.refuse(refusal(&origin, None, problems, false)));
            }
        };
        let changed = match edit.apply(&list) {
            Ok(l) => l,
            Err(EditError::Invalid(problems)) => {
                return Ok(self.refuse(refusal(&origin, None, lines(&problems), false)))
            }
            Err(e) => {
                return Ok(self.refuse(refusal(&origin, None, vec![format!("error: {e}")], false)))
            }
        };
        let problems = validate::validate(&changed, &self.policy());
        if problems.has_errors() {
            return Ok(self.refuse(refusal(&origin, None, lines(&problems), false)));
        }
        if changed == list {
            let sha256 = self
                .applied
                .as_ref()
                .map(|a| a.sha256.clone())
                .unwrap_or_default();
            return Ok(Outcome::unchanged(sha256, Vec::new()));
        }
        let text = changed.to_json();
        let sha256 = file::digest(text.as_bytes());
        // The guard and the compiler run before the file is touched.
        let compiled = match self.precheck(&changed, &origin, force, &sha256) {
            Ok(c) => c,
            Err(r) => return Ok(self.refuse(r)),
        };
        // The data plane first, then the file: an edit that cannot be enforced is never
        // written, and one that cannot be written is taken back out of the data plane.
        let before = self.held.clone().expect("read by precheck");
        let enforced = match self.enforce(&compiled, &origin, &sha256) {
            Ok(e) => e,
            Err(refused) => return Ok(*refused),
        };
        let written = match self.source.replace(text.as_bytes(), base) {
            Ok(w) => w,
            Err(failure) => {
                self.restore(&before);
                return match failure {
                    WriteFailure::Changed => Err(Conflict),
                    WriteFailure::Failed(e) => Ok(self.refuse(refusal(
                        &origin,
                        Some(sha256),
                        vec![format!("error: {}", error_chain(&e))],
                        false,
                    ))),
                };
            }
        };
        let outcome = self.record_applied(
            changed,
            sha256,
            origin,
            lines(&problems),
            compiled,
            enforced,
        );
        self.refusal = None;
        if let Some(a) = self.applied.as_mut() {
            a.revision = Some(written);
        }
        Ok(outcome)
    }

    /// A CLI edit made on the list in force, when the file is still exactly that list:
    /// only what the edit adds is validated and only the prefixes it touches are
    /// recompiled, so a change is enforced in milliseconds even with a million prefixes.
    /// The data plane is changed first and the file written after; if the write fails
    /// the data plane is changed back. `None`: the edit needs the full path (the file
    /// changed, an order is removed, the guard or the capacity needs the whole list).
    fn edit_in_place(&mut self, edit: &Edit, origin: &Origin, force: bool) -> Option<Outcome> {
        if matches!(edit, Edit::RemoveOrder { .. }) || self.held.is_none() || self.rebuild_fast {
            return None;
        }
        let current = self.source.revision();
        if current.is_none() || self.applied.as_ref()?.revision != current {
            log::debug!(
                "CLI edit on the whole list: {} changed since the list in force was read ({:?} -> {current:?})",
                self.source.name(),
                self.applied.as_ref()?.revision
            );
            return None;
        }
        let started = Clock::now();
        let mut applied = self.applied.take().expect("checked above");
        let outcome = self.edit_applied(&mut applied, edit, origin, force, started);
        let outcome = outcome.ok();
        self.applied = Some(applied);
        outcome
    }

    fn edit_applied(
        &mut self,
        applied: &mut Applied,
        edit: &Edit,
        origin: &Origin,
        force: bool,
        started: Clock,
    ) -> Result<Outcome, Fallback> {
        let now = OffsetDateTime::now_utc();
        // The text of the list before the edit, once; each edit then updates it.
        if applied.text.is_none() {
            applied.text = Some(ListText::new(&applied.list));
        }
        let done = match edit.apply_in_place(&mut applied.list) {
            Ok(d) => d,
            Err(EditError::Invalid(problems)) => {
                return Ok(self.refuse(refusal(origin, None, lines(&problems), false)))
            }
            Err(e) => {
                return Ok(self.refuse(refusal(origin, None, vec![format!("error: {e}")], false)))
            }
        };
        if !done.changed() {
            return Ok(Outcome::unchanged(applied.sha256.clone(), Vec::new()));
        }
        let policy = self.policy();
        let problems = validate::validate_edit(&applied.list, &done, &policy);
        if problems.has_errors() {
            done.undo(&mut applied.list);
            return Ok(self.refuse(refusal(origin, None, lines(&problems), false)));
        }
        let listing = applied.compiled.listing_changes(&applied.list, &done, now);
        let room = policy.capacity_v4.min(policy.capacity_v6) as usize;
        if applied.compiled.entries.len() + listing.len() > room {
            // Near capacity the whole list is counted.
            done.undo(&mut applied.list);
            return Err(Fallback);
        }
        let mut added_order = None;
        if matches!(done, Done::AddedOrder) {
            let held = self.held.as_ref().expect("checked by the caller");
            let index = applied.list.orders.len() - 1;
            match applied.compiled.add_order(
                &applied.list,
                index,
                &Numbering::from_rules(&held.rules),
                now,
            ) {
                Ok(_) => added_order = Some(applied.list.orders[index].id.clone()),
                Err(e) => {
                    done.undo(&mut applied.list);
                    return Ok(self.refuse(refusal(
                        origin,
                        None,
                        vec![format!("error: {e}")],
                        false,
                    )));
                }
            }
        }
        let entries = applied.compiled.recompile(&applied.list, &listing);
        let revert = |applied: &mut Applied, done: Done| {
            applied
                .compiled
                .recompile(&applied.list, &ListingChange::reversed(&listing));
            if matches!(done, Done::AddedOrder) {
                applied.compiled.remove_last_order();
            }
            done.undo(&mut applied.list);
        };
        let held = self.held.as_ref().expect("checked by the caller");
        if !force {
            let blocks =
                |e: Option<&filter_common::Entry>,
                 rules: &std::collections::BTreeMap<u32, filter_common::Rule>| {
                    e.is_some_and(|e| {
                        [e.dst_rule, e.src_rule]
                            .iter()
                            .any(|n| rules.get(n).is_some_and(|r| action::blocks(r.action)))
                    })
                };
            let dropped = entries
                .iter()
                .filter(|(p, new)| {
                    blocks(held.entries.get(p), &held.rules)
                        && !blocks(new.as_ref(), &applied.compiled.rules)
                })
                .count();
            if dropped > GUARD_MIN_PREFIXES {
                // The guard weighs this against everything enforced: the full path.
                revert(applied, done);
                return Err(Fallback);
            }
        }
        let enforced = match self.enforce_changes(&entries, &applied.compiled.rules, started) {
            Ok(e) => e,
            Err(not) => {
                revert(applied, done);
                let problem = match not {
                    NotEnforced::NoRoom(problem) => problem,
                    NotEnforced::Failed(e) => {
                        format!("error: applying the change to the data plane failed: {e}")
                    }
                };
                return Ok(self.refuse(refusal(origin, None, vec![problem], false)));
            }
        };

        // Enforced; now make it durable: the list's text, updated where the edit touched
        // it, and the edit itself committed to the source (a journal line for the file).
        let enforced_in = started.elapsed();
        let text = applied.text.as_mut().expect("made above");
        text.update(&applied.list, &done);
        let sha256 = text.sha256().to_string();
        let written =
            self.source
                .commit_edit(edit, &applied.sha256, text, applied.revision.clone());
        log::debug!(
            "CLI edit: enforced in {enforced_in:?}, durable in {:?} ({} bytes of list)",
            started.elapsed(),
            text.len()
        );
        if let Err(failure) = written {
            applied.text = None;
            revert(applied, done);
            let back = applied.compiled.entries_of(entries.keys());
            let held = self.held.as_ref().expect("just updated");
            let undo = Plan::for_changes(held, &back, &applied.compiled.rules);
            match undo.apply(self.dataplane.maps_mut()) {
                Ok(_) => undo.update(self.held.as_mut().expect("just updated")),
                Err(e) => {
                    log::error!("changing the data plane back failed: {}; it is read again before the next change", error_chain(&e));
                    self.held = None;
                    self.rebuild_fast = true;
                }
            }
            return match failure {
                // Replaced meanwhile: the edit is made again on the new file.
                WriteFailure::Changed => Err(Fallback),
                WriteFailure::Failed(e) => Ok(self.refuse(refusal(
                    origin,
                    Some(sha256),
                    vec![format!("error: {}", error_chain(&e))],
                    false,
                ))),
            };
        }
        let written = written.ok();
        let warnings = lines(&problems);
        let edited = match &done {
            Done::AddedPrefixes(i, _) | Done::RemovedPrefixes(i, _) => {
                vec![applied.list.orders[*i].id.clone()]
            }
            _ => Vec::new(),
        };
        let conclusion = Conclusion::in_place(&applied.sha256, added_order, edited, enforced);
        let report = self.conclude(conclusion, origin, &sha256, &warnings, &applied.compiled);
        applied.sha256 = sha256;
        applied.revision = written;
        applied.at = OffsetDateTime::now_utc();
        applied.origin = origin.clone();
        applied.warnings.extend(warnings);
        Ok(Outcome::Applied(report))
    }

    /// Brings the data plane back to `before` (an edit that could not be written). If that
    /// fails, the maps are read again before the next change.
    fn restore(&mut self, before: &Snapshot) {
        let Some(held) = self.held.as_ref() else {
            return;
        };
        let plan = Plan::between(held, before);
        match plan.apply(self.dataplane.maps_mut()) {
            Ok(_) => {
                if let Some(held) = self.held.as_mut() {
                    plan.update(held);
                }
            }
            Err(e) => {
                log::error!(
                    "changing the data plane back failed: {}; it is read again before the next change",
                    error_chain(&e)
                );
                self.held = None;
                self.rebuild_fast = true;
            }
        }
    }
}

/// The edit needs the full path.
struct Fallback;

/// The list changed in its source while an edit was being made.
struct Conflict;

/// A CLI edit whose list keeps changing under it is made again at least this often, and
/// for at least `RETRY_FOR`, before it gives up (well within the CLI's wait).
const WRITE_ATTEMPTS: usize = 5;
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);
