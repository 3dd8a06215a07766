//! The daemon's core: it owns the data plane and the list in force, and turns every
//! trigger (start, file change, signal, CLI edit, clock) into one all-or-nothing sync.
//! It is not async: the caller serializes access (one `Mutex`), which is also what makes
//! concurrent CLI edits safe: each reads the file, changes it and applies it alone.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::Path,
    time::Instant as Clock,
};

use time::OffsetDateTime;

use super::{
    audit::{self, Origin, Record},
    config::Config,
    watch::{fingerprint as file_fingerprint, Fingerprint},
};
use crate::{
    compile::{compile, fingerprint, Compiled, ListingChange, Numbering},
    control::report::{self, ChangeReport},
    dataplane::{detach_pinned, Attachment, Dataplane, LoadOptions},
    error_chain,
    orders::{
        edit::{Done, Edit, EditError},
        file,
        validate::{self, Policy, RedirectTarget},
        window::{next_change, rfc3339},
        Order, OrderList, OrderState, Problems, Side,
    },
    prefix::Family,
    semantics::{self, Decision},
    sync::{Changes, Plan, Snapshot},
};
use filter_common::{action, types};

/// Above this many prefixes, a change that stops enforcing more than half of the
/// enforced prefixes needs `--force`.
pub const GUARD_MIN_PREFIXES: usize = 100;

/// The list in force.
struct Applied {
    list: OrderList,
    sha256: String,
    compiled: Compiled,
    at: OffsetDateTime,
    origin: Origin,
    warnings: Vec<String>,
    /// The file's identity when it held this list (`None` if it changed while read).
    file: Option<Fingerprint>,
}

/// A valid list read from the file.
struct FileList {
    list: OrderList,
    sha256: String,
    warnings: Vec<String>,
    file: Option<Fingerprint>,
}

/// What reading the file found.
enum Read {
    List(FileList),
    /// The same bytes as the list in force.
    Same(String, Option<Fingerprint>),
}

/// Why the file cannot be applied.
struct FileProblems {
    sha256: Option<String>,
    problems: Vec<String>,
}

/// What bringing the data plane to a list did.
struct Enforced {
    changes: Changes,
    enforced_before: BTreeSet<u64>,
    started: Clock,
    plan_empty: bool,
}

/// What an applied change did, for the report and the audit trail.
struct Conclusion {
    sha256_before: Option<String>,
    orders_added: Vec<String>,
    orders_removed: Vec<String>,
    orders_changed: Vec<String>,
    changes: Changes,
    enforced_before: BTreeSet<u64>,
    started: Clock,
    plan_empty: bool,
}

/// What a sync did.
#[derive(Debug)]
pub enum Outcome {
    Applied(ChangeReport),
    Unchanged(ChangeReport),
    Refused(report::Refusal),
}

/// Counts of syncs, for the metrics.
#[derive(Clone, Debug, Default)]
pub struct SyncHistory {
    pub applied: u64,
    pub rejected: u64,
    /// CLI edits refused (not counted in `rejected`).
    pub edits_refused: u64,
    /// Times the filter was attached again to an interface it had been removed from.
    pub reattached: std::collections::BTreeMap<String, u64>,
    pub last_applied: Option<OffsetDateTime>,
    pub last_rejected: Option<OffsetDateTime>,
    /// Durations of applied syncs.
    pub durations: super::metrics::DurationHistogram,
}

pub struct Engine {
    config: Config,
    dataplane: Dataplane,
    attached: Vec<Attachment>,
    /// What the maps hold; `None` after a failed sync, until read again.
    held: Option<Snapshot>,
    applied: Option<Applied>,
    refusal: Option<report::Refusal>,
    /// True when the fast-path maps may not match the entries (read after a restart, or
    /// after a failed sync): the next sync compares them with a fresh derivation.
    rebuild_fast: bool,
    redirect: super::redirect::RedirectState,
    pub history: SyncHistory,
    /// Interfaces the filter could not be attached to again, with the last error (logged
    /// once per change).
    attach_failures: HashMap<String, String>,
    /// Set by `borderfilter detach`: the daemon is stopping and must not attach again.
    detached: bool,
}

fn refusal(
    origin: &Origin,
    sha256: Option<String>,
    problems: Vec<String>,
    needs_force: bool,
) -> report::Refusal {
    report::Refusal {
        at: rfc3339(OffsetDateTime::now_utc()),
        origin: origin.name().to_string(),
        sha256,
        problems,
        needs_force,
    }
}

fn lines(problems: &Problems) -> Vec<String> {
    problems.0.iter().map(|p| p.to_string()).collect()
}

impl Engine {
    /// Loads (or reuses) the pinned program and maps, brings the maps in line with the
    /// file, then attaches to the interfaces: a fresh filter is complete before it sees
    /// its first packet, and a restarted one never stops enforcing.
    pub fn start(config: Config) -> anyhow::Result<Self> {
        // The configuration is checked before anything is loaded or pinned.
        if let Some(r) = &config.redirect {
            if config.ifaces.contains(&r.iface) {
                anyhow::bail!(
                    "--redirect-iface {} is also given with --iface: the notice host answers from blocked addresses, \
                     so the interface towards it must not be filtered",
                    r.iface
                );
            }
            if crate::dataplane::ifindex(&r.iface).is_none() {
                anyhow::bail!("--redirect-iface {}: no such interface", r.iface);
            }
        }
        let dataplane = Dataplane::load(&LoadOptions {
            pin_dir: Some(config.pin_dir.clone()),
            v4_capacity: config.capacity_v4,
            v6_capacity: config.capacity_v6,
        })
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        if dataplane.reused_pinned_maps() {
            log::info!(
                "reusing the maps pinned in {}: enforcement continues",
                config.pin_dir.display()
            );
        }
        let mut engine = Self {
            config,
            dataplane,
            attached: Vec::new(),
            held: None,
            applied: None,
            refusal: None,
            rebuild_fast: true,
            redirect: Default::default(),
            history: SyncHistory::default(),
            attach_failures: HashMap::new(),
            detached: false,
        };
        engine.refresh_redirect();
        engine.held = Some(
            Snapshot::read(engine.dataplane.maps())
                .map_err(|e| anyhow::anyhow!(error_chain(&e)))?,
        );
        match engine.sync_from_file(Origin::Start, false) {
            Outcome::Refused(r) => log::error!(
                "the order list was refused at start; the filter keeps what it held ({} entries):\n{}",
                // A sync that failed half way left the snapshot unknown: count the maps.
                engine
                    .held()
                    .map_or_else(|e| format!("unknown: {e}"), |h| h.entries.len().to_string()),
                r.problems.join("\n")
            ),
            Outcome::Applied(_) | Outcome::Unchanged(_) => {}
        }
        for iface in engine.config.ifaces.clone() {
            let a = engine
                .dataplane
                .attach(&iface, engine.config.xdp_mode)
                .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
            log::info!(
                "{iface}: {} in {} mode",
                if a.reused {
                    "kept the pinned attachment"
                } else {
                    "attached"
                },
                a.mode
            );
            engine.attached.push(a);
        }
        for stray in engine.dataplane.attachments() {
            if !engine.config.ifaces.contains(&stray.iface) {
                log::warn!(
                    "{} still runs the filter but is not given with --iface; it stays filtered until `borderfilter detach`",
                    stray.iface
                );
            }
        }
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Resolves the redirect target again and updates the data plane if it changed.
    pub fn refresh_redirect(&mut self) {
        let config = self.config.redirect.clone();
        self.redirect
            .refresh(config.as_ref(), self.dataplane.maps_mut());
    }

    fn policy(&self) -> Policy {
        let maps = self.dataplane.maps();
        Policy {
            protect: self.config.protect.clone(),
            redirect: if self.config.redirect.is_some() {
                RedirectTarget::Configured
            } else {
                RedirectTarget::NotConfigured
            },
            capacity_v4: maps.capacity(Family::V4).unwrap_or(self.config.capacity_v4),
            capacity_v6: maps.capacity(Family::V6).unwrap_or(self.config.capacity_v6),
        }
    }

    /// Reads and checks the file. With `same_ok`, bytes equal to the list in force are
    /// not parsed again.
    fn read_file(&self, same_ok: bool) -> Result<Read, FileProblems> {
        let before = file_fingerprint(&self.config.orders);
        let bytes = file::read(&self.config.orders, self.config.max_list_bytes).map_err(|e| {
            FileProblems {
                sha256: None,
                problems: vec![format!("error: {}", error_chain(&e))],
            }
        })?;
        let file = before.filter(|b| file_fingerprint(&self.config.orders) == Some(*b));
        let sha256 = file::digest(&bytes);
        if same_ok && self.held.is_some() {
            if let Some(a) = &self.applied {
                if a.sha256 == sha256 {
                    return Ok(Read::Same(sha256, file));
                }
            }
        }
        let (list, problems) = validate::check(&bytes, &self.policy());
        match list {
            Some(list) => Ok(Read::List(FileList {
                list,
                sha256,
                warnings: lines(&problems),
                file,
            })),
            None => Err(FileProblems {
                sha256: Some(sha256),
                problems: lines(&problems),
            }),
        }
    }

    /// Reports a refusal. A refused CLI edit is the operator's answer, not a problem with
    /// the list in force: it is counted apart, so that a mistyped command does not look
    /// like a rejected order list to the alerts.
    fn refuse(&mut self, r: report::Refusal) -> Outcome {
        let first = r.problems.first().map(String::as_str).unwrap_or("");
        if r.origin == "cli" {
            log::warn!("refused a CLI edit: {first}");
            self.history.edits_refused += 1;
        } else {
            log::warn!("refused the order list ({}): {first}", r.origin);
            self.history.rejected += 1;
            self.history.last_rejected = Some(OffsetDateTime::now_utc());
        }
        Outcome::Refused(r)
    }

    /// Applies the file as it is on disk.
    pub fn sync_from_file(&mut self, origin: Origin, force: bool) -> Outcome {
        // The daemon's own writes (CLI edits) come back as file events: the file is
        // then exactly the list in force, and is not read again.
        if origin == Origin::File && !force && self.held.is_some() {
            if let Some(a) = &self.applied {
                if a.file.is_some() && a.file == file_fingerprint(&self.config.orders) {
                    return Outcome::Unchanged(ChangeReport {
                        result: "unchanged".into(),
                        sha256: a.sha256.clone(),
                        ..ChangeReport::default()
                    });
                }
            }
        }
        let same_ok = origin != Origin::Clock && !force;
        let FileList {
            list,
            sha256,
            warnings,
            file,
        } = match self.read_file(same_ok) {
            Ok(Read::List(x)) => x,
            Ok(Read::Same(sha256, file)) => {
                let a = self.applied.as_mut().expect("compared with it");
                a.file = file;
                self.refusal = None;
                return Outcome::Unchanged(ChangeReport {
                    result: "unchanged".into(),
                    warnings: a.warnings.clone(),
                    sha256,
                    ..ChangeReport::default()
                });
            }
            Err(FileProblems { sha256, problems }) => {
                let r = refusal(&origin, sha256, problems, false);
                self.refusal = Some(r.clone());
                return self.refuse(r);
            }
        };
        let outcome = self.install(list, sha256, origin, force, warnings);
        if let Some(a) = self
            .applied
            .as_mut()
            .filter(|_| matches!(outcome, Outcome::Applied(_) | Outcome::Unchanged(_)))
        {
            a.file = file;
        }
        match &outcome {
            Outcome::Refused(r) => self.refusal = Some(r.clone()),
            _ => self.refusal = None,
        }
        outcome
    }

    /// Makes a CLI edit: reads the file, changes it, checks the result like any list,
    /// applies it, and writes it back. Nothing is written or applied if any step fails.
    pub fn edit(&mut self, edit: &Edit, origin: Origin, force: bool) -> Outcome {
        if let Some(outcome) = self.edit_in_place(edit, &origin, force) {
            if !matches!(outcome, Outcome::Refused(_)) {
                self.refusal = None;
            }
            return outcome;
        }
        // An operator (or a tool) may replace the file while the edit is being made: the
        // edit is then made again on their version, never written over it.
        let started = Clock::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.edit_file(edit, &origin, force) {
                Ok(outcome) => return outcome,
                Err(Conflict) if attempts < WRITE_ATTEMPTS || started.elapsed() < RETRY_FOR => {}
                Err(Conflict) => {
                    return self.refuse(refusal(
                        &origin,
                        None,
                        vec![format!(
                            "error: {} kept changing while this edit was being made ({attempts} attempts in {:.1} s); nothing was changed: try again",
                            self.config.orders.display(),
                            started.elapsed().as_secs_f64()
                        )],
                        false,
                    ))
                }
            }
        }
    }

    /// The full path of a CLI edit: the edit made on the file as it is on disk. `Err`:
    /// the file changed before the result could be written; nothing was changed.
    fn edit_file(
        &mut self,
        edit: &Edit,
        origin: &Origin,
        force: bool,
    ) -> Result<Outcome, Conflict> {
        let origin = origin.clone();
        let (list, base) = match self.read_file(false) {
            Ok(Read::List(x)) => (x.list, x.file),
            Ok(Read::Same(..)) => unreachable!("read_file(false) always parses"),
            Err(FileProblems { mut problems, .. }) => {
                problems.insert(0, format!(
                    "error: the order list file {} has errors; fix it (see `borderfilter validate {}`) before changing it through the CLI",
                    self.config.orders.display(), self.config.orders.display()));
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
            return Ok(Outcome::Unchanged(ChangeReport {
                result: "unchanged".into(),
                sha256,
                ..ChangeReport::default()
            }));
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
        let written = match replace_unless_changed(&self.config.orders, text.as_bytes(), base) {
            Ok(w) => w,
            Err(failure) => {
                self.restore(&before);
                return match failure {
                    WriteFailure::Changed => Err(Conflict),
                    WriteFailure::Io(e) => Ok(self.refuse(refusal(
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
            a.file = Some(written);
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
        let current = file_fingerprint(&self.config.orders)?;
        if self.applied.as_ref()?.file != Some(current) {
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
            return Ok(Outcome::Unchanged(ChangeReport {
                result: "unchanged".into(),
                sha256: applied.sha256.clone(),
                ..ChangeReport::default()
            }));
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
        let plan = Plan::for_changes(held, &entries, &applied.compiled.rules);
        if let Some(problem) = self.slot_problem(&plan, held) {
            revert(applied, done);
            return Ok(self.refuse(refusal(origin, None, vec![problem], false)));
        }
        let enforced_before = held.enforced_owners();
        let changes = match plan.apply(self.dataplane.maps_mut()) {
            Ok(c) => c,
            Err(e) => {
                self.held = None;
                self.rebuild_fast = true;
                revert(applied, done);
                return Ok(self.refuse(refusal(
                    origin,
                    None,
                    vec![format!(
                        "error: applying the change to the data plane failed: {}",
                        error_chain(&e)
                    )],
                    false,
                )));
            }
        };
        plan.update(self.held.as_mut().expect("checked by the caller"));

        // Enforced; now make it durable.
        let text = applied.list.to_json();
        let sha256 = file::digest(text.as_bytes());
        let written = replace_unless_changed(&self.config.orders, text.as_bytes(), applied.file);
        if let Err(failure) = written {
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
                WriteFailure::Io(e) => Ok(self.refuse(refusal(
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
        let conclusion = Conclusion {
            sha256_before: Some(applied.sha256.clone()),
            orders_added: added_order.into_iter().collect(),
            orders_removed: Vec::new(),
            orders_changed: edited,
            changes,
            enforced_before,
            started,
            plan_empty: plan.is_empty(),
        };
        let report = self.conclude(conclusion, origin, &sha256, &warnings, &applied.compiled);
        applied.sha256 = sha256;
        applied.file = written;
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

    /// Attaches the filter again to a configured interface it was removed from behind the
    /// daemon's back (`ip link set dev IF xdp off`): a court order is not lifted by a
    /// stray command. `borderfilter detach` is the way to remove it. Run every heartbeat.
    pub fn keep_attached(&mut self) {
        // After a detach the daemon stops; a heartbeat that runs in between must not put
        // back what the operator removed (its maps are no longer even pinned).
        if self.detached {
            return;
        }
        let present: BTreeSet<String> = self
            .dataplane
            .attachments()
            .into_iter()
            .map(|a| a.iface)
            .collect();
        for iface in self.config.ifaces.clone() {
            if present.contains(&iface) {
                self.attach_failures.remove(&iface);
                continue;
            }
            match self.dataplane.attach(&iface, self.config.xdp_mode) {
                Ok(a) => {
                    log::error!(
                        "{iface}: the filter was removed from the interface behind the daemon's back; attached it again ({} mode). Use `borderfilter detach` to remove it",
                        a.mode
                    );
                    *self.history.reattached.entry(iface.clone()).or_default() += 1;
                    self.attach_failures.remove(&iface);
                    self.attached.retain(|x| x.iface != iface);
                    self.attached.push(a);
                }
                Err(e) => {
                    let problem = error_chain(&e);
                    if self.attach_failures.get(&iface) != Some(&problem) {
                        log::error!("{iface}: the filter is not attached and attaching it again failed: {problem}");
                        self.attach_failures.insert(iface.clone(), problem);
                    }
                }
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
        Some(self.install(list, sha256, Origin::Clock, true, warnings))
    }

    /// The next moment an order's window opens or closes.
    pub fn next_change(&self) -> Option<OffsetDateTime> {
        next_change(&self.applied.as_ref()?.list, OffsetDateTime::now_utc())
    }

    fn held(&mut self) -> Result<&Snapshot, String> {
        if self.held.is_none() {
            self.held = Some(Snapshot::read(self.dataplane.maps()).map_err(|e| error_chain(&e))?);
        }
        Ok(self.held.as_ref().expect("just read"))
    }

    /// Compiles `list` and applies the mass-removal guard, without changing anything.
    fn precheck(
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
        let held = self.held().map_err(|e| {
            fail(
                vec![format!("error: cannot read the data plane: {e}")],
                false,
            )
        })?;
        let numbering = Numbering::from_rules(&held.rules);
        let compiled = compile(list, OffsetDateTime::now_utc(), &numbering)
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
            if dropped > GUARD_MIN_PREFIXES && dropped * 2 > before {
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

    fn install(
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
                    return Outcome::Unchanged(ChangeReport {
                        result: "unchanged".into(),
                        sha256,
                        warnings,
                        ..ChangeReport::default()
                    });
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
    fn slot_problem(&self, plan: &Plan, held: &Snapshot) -> Option<String> {
        let maps = self.dataplane.maps();
        let slots = plan.fast.slots_after(&held.fast);
        let room = maps.slot_capacity() as usize;
        if slots > room {
            return Some(too_many_slots(slots, room));
        }
        let peak = plan.fast.slots_peak(&held.fast);
        let cells = maps.slot_cells_total() as usize;
        (peak > cells).then(|| {
            format!(
                "error: this change needs {peak} IPv4 /24 slots at once (the {} held now stay until the new ones are in place), \
                 but the fast-path index has {cells} cells. Make it in two steps (first a list without the prefixes to remove, then one with the new ones), \
                 or raise --capacity-v4 (it takes effect when the maps are created: detach first)",
                held.fast.slots.len()
            )
        })
    }

    /// Brings the data plane to `compiled`: the first half of applying a list.
    fn enforce(
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
            enforced_before,
            started,
            plan_empty: plan.is_empty(),
        })
    }

    /// The second half of applying a list, once it is enforced (and, for a CLI edit,
    /// written): the report, the audit record, the list in force.
    fn record_applied(
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
            file: None,
        });
        Outcome::Applied(report)
    }

    /// Reports an applied change: the audit record, the log line, the history.
    fn conclude(
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
        let name = |owner: &u64| -> String {
            let find = |c: &Compiled| {
                c.order_of_rule
                    .values()
                    .find(|id| fingerprint(id) == *owner)
                    .cloned()
            };
            find(compiled)
                .or_else(|| old.and_then(|a| find(&a.compiled)))
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
        let record = Record {
            time: rfc3339(OffsetDateTime::now_utc()),
            who: origin.clone(),
            sha256_before: c.sha256_before.clone(),
            sha256_after: sha256.to_string(),
            orders_added: report.orders_added.clone(),
            orders_removed: report.orders_removed.clone(),
            orders_changed: report.orders_changed.clone(),
            enforcement_started,
            enforcement_ended,
            prefixes_added: report.prefixes_added,
            prefixes_changed: report.prefixes_changed,
            prefixes_removed: report.prefixes_removed,
        };
        let worth_recording = !c.plan_empty || c.sha256_before.as_deref() != Some(sha256);
        if worth_recording {
            if let Err(e) = audit::append(&self.config.audit_log, &record) {
                log::error!("{}", error_chain(&e));
            }
        }
        log::info!(
            "applied the order list ({}): orders +{} -{} ~{}, enforcement started {:?} ended {:?}; prefixes +{} ~{} -{} in {} ms; sha256 {}",
            origin.name(), report.orders_added.len(), report.orders_removed.len(), report.orders_changed.len(),
            record.enforcement_started, record.enforcement_ended,
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

    pub fn status(&self) -> report::Status {
        let file_state =
            file::read(&self.config.orders, self.config.max_list_bytes).map(|b| file::digest(&b));
        let applied = self.applied.as_ref().map(|a| {
            let count = |s: OrderState| a.compiled.states.iter().filter(|(_, x)| *x == s).count();
            report::AppliedList {
                sha256: a.sha256.clone(),
                applied_at: rfc3339(a.at),
                origin: a.origin.name().into(),
                orders_active: count(OrderState::Active),
                orders_pending: count(OrderState::Pending),
                orders_expired: count(OrderState::Expired),
                exceptions: a.list.exceptions.len(),
                prefixes_ipv4: a.compiled.count(Family::V4),
                prefixes_ipv6: a.compiled.count(Family::V6),
                warnings: a.warnings.clone(),
            }
        });
        report::Status {
            version: env!("CARGO_PKG_VERSION").into(),
            orders_file: self.config.orders.display().to_string(),
            pin_dir: self.config.pin_dir.display().to_string(),
            // What the interfaces run now, not what the daemon did at start: a program
            // removed behind its back shows here (and in the metrics) at once.
            attached: self
                .dataplane
                .attachments()
                .into_iter()
                .filter(|a| self.config.ifaces.contains(&a.iface))
                .map(|a| report::AttachedIface {
                    iface: a.iface,
                    mode: a.mode.to_string(),
                })
                .collect(),
            in_sync: matches!((&file_state, &self.applied), (Ok(d), Some(a)) if *d == a.sha256)
                && self.held.is_some(),
            file_sha256: file_state.as_ref().ok().cloned(),
            file_error: file_state.as_ref().err().map(|e| error_chain(e)),
            applied,
            refusal: self.refusal.clone(),
            next_change: self.next_change().map(rfc3339),
            redirect: self
                .config
                .redirect
                .as_ref()
                .map(|c| report::RedirectStatus {
                    iface: c.iface.clone(),
                    notice_host: match c.to {
                        super::config::RedirectTo::Mac(m) => super::config::format_mac(&m),
                        super::config::RedirectTo::Neighbor(ip) => ip.to_string(),
                    },
                    ready: self.redirect.resolved.is_some(),
                    problem: self.redirect.problem.clone(),
                }),
        }
    }

    /// Every order of the list in force with its counters.
    pub fn orders(&self) -> Vec<report::OrderRow> {
        let Some(a) = &self.applied else {
            return Vec::new();
        };
        a.list
            .orders
            .iter()
            .zip(&a.compiled.states)
            .map(|(o, (_, state))| self.row(a, o, *state))
            .collect()
    }

    fn row(&self, a: &Applied, o: &Order, state: OrderState) -> report::OrderRow {
        let counter = a
            .compiled
            .rule_of_order(&o.id)
            .and_then(|n| self.dataplane.maps().rule_counter(n).ok())
            .unwrap_or_default();
        report::OrderRow {
            id: o.id.clone(),
            state: state.to_string(),
            action: o.action.to_string(),
            direction: o.direction().to_string(),
            authority: o.authority.clone(),
            basis: o.basis.clone(),
            issued: o.issued.text.clone(),
            valid_from: o.valid_from.as_ref().map(|v| v.text.clone()),
            expires: o.expires.as_ref().map(|v| v.text.clone()),
            prefixes: o.prefixes.len(),
            packets: counter.packets,
            bytes: counter.bytes,
        }
    }

    pub fn order(&self, id: &str) -> Option<report::OrderDetail> {
        let a = self.applied.as_ref()?;
        let (index, o) = a.list.orders.iter().enumerate().find(|(_, o)| o.id == id)?;
        Some(report::OrderDetail {
            row: self.row(a, o, a.compiled.states[index].1),
            prefix_list: o.prefixes.iter().map(|p| p.text.clone()).collect(),
            note: o.note.clone(),
        })
    }

    /// Why `addr` is (or is not) blocked, citing the order and the authority.
    pub fn check(&self, addr: IpAddr) -> Option<report::CheckReport> {
        let a = self.applied.as_ref()?;
        let now = OffsetDateTime::now_utc();
        let entry = self.dataplane.maps().lookup(addr).ok().flatten();
        let mut agrees = true;
        let sides = Side::BOTH
            .iter()
            .map(|&side| {
                let decision = semantics::decide(&a.list, now, addr, side);
                let kernel_rule = entry.map_or(types::NO_RULE, |e| match side {
                    Side::Dst => e.dst_rule,
                    Side::Src => e.src_rule,
                });
                let expected_rule = match &decision {
                    Decision::Pass => types::NO_RULE,
                    Decision::Exempt { .. } => types::EXCEPTION_RULE,
                    Decision::Order { id, .. } => a.compiled.rule_of_order(id).unwrap_or(u32::MAX),
                };
                agrees &= kernel_rule == expected_rule;
                side_report(&a.list, side, &decision)
            })
            .collect();
        Some(report::CheckReport {
            address: addr.to_string(),
            sides,
            dataplane_agrees: agrees,
        })
    }

    pub fn stats(&self) -> report::Stats {
        let now = OffsetDateTime::now_utc();
        let orders = self
            .orders()
            .into_iter()
            .map(|r| report::OrderStat {
                id: r.id,
                action: r.action,
                state: r.state,
                packets: r.packets,
                bytes: r.bytes,
            })
            .collect();
        let verdicts = self
            .dataplane
            .maps()
            .verdict_counters()
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(i, c)| report::VerdictStat {
                        verdict: filter_common::verdict::NAMES[i].into(),
                        packets: c.packets,
                        bytes: c.bytes,
                    })
                    .collect()
            })
            .unwrap_or_default();
        report::Stats {
            at: rfc3339(now),
            at_unix_ms: (now.unix_timestamp_nanos() / 1_000_000) as u64,
            orders,
            verdicts,
        }
    }

    pub fn audit(&self, since: Option<&str>, order: Option<&str>) -> Result<Vec<Record>, String> {
        audit::read(&self.config.audit_log, since, order).map_err(|e| error_chain(&e))
    }

    /// Removes the program from every interface and removes the pins.
    pub fn detach(&mut self) -> Result<Vec<String>, String> {
        let detached = detach_pinned(&self.config.pin_dir).map_err(|e| error_chain(&e))?;
        self.detached = true;
        self.attached.clear();
        log::warn!(
            "detached from {detached:?} and removed the pins in {}: nothing is enforced now",
            self.config.pin_dir.display()
        );
        Ok(detached)
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    pub fn attached(&self) -> &[Attachment] {
        &self.attached
    }

    /// The list in force, its digest and its compiled form.
    pub fn applied(&self) -> Option<(&OrderList, &str, &Compiled)> {
        self.applied
            .as_ref()
            .map(|a| (&a.list, a.sha256.as_str(), &a.compiled))
    }

    pub fn refusal(&self) -> Option<&report::Refusal> {
        self.refusal.as_ref()
    }
}

fn side_report(list: &OrderList, side: Side, d: &Decision) -> report::SideReport {
    let side_name = match side {
        Side::Dst => "destination",
        Side::Src => "source",
    };
    match d {
        Decision::Pass => report::SideReport {
            side: side_name.into(),
            verdict: "pass".into(),
            prefix: None,
            order: None,
            exception_reason: None,
        },
        Decision::Exempt { exception, prefix } => report::SideReport {
            side: side_name.into(),
            verdict: "exempt".into(),
            prefix: Some(prefix.to_string()),
            order: None,
            exception_reason: list.exceptions.get(*exception).map(|e| e.reason.clone()),
        },
        Decision::Order {
            order,
            action: act,
            prefix,
            ..
        } => {
            let o = &list.orders[*order];
            // A redirect order drops traffic *from* the blocked service.
            let verdict = if side == Side::Src && act.code() == action::REDIRECT {
                "drop".to_string()
            } else {
                act.to_string()
            };
            report::SideReport {
                side: side_name.into(),
                verdict,
                prefix: Some(prefix.to_string()),
                order: Some(report::OrderRef {
                    id: o.id.clone(),
                    action: o.action.to_string(),
                    authority: o.authority.clone(),
                    basis: o.basis.clone(),
                    issued: o.issued.text.clone(),
                    expires: o.expires.as_ref().map(|e| e.text.clone()),
                }),
                exception_reason: None,
            }
        }
    }
}

/// The edit needs the full path.
struct Fallback;

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

/// The order list file changed while an edit was being made.
struct Conflict;

/// A CLI edit whose file keeps changing under it is made again at least this often, and
/// for at least `RETRY_FOR`, before it gives up (well within the CLI's wait).
const WRITE_ATTEMPTS: usize = 5;
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the order list file was not written.
enum WriteFailure {
    /// It is no longer the version the edit was made on: someone replaced or changed it
    /// meanwhile, and writing would throw their version away.
    Changed,
    Io(file::FileError),
}

/// Replaces the order list file with `contents` (atomically and durably, keeping its
/// owner and mode) unless it changed since it had the fingerprint `base`, and returns
/// the fingerprint of what it wrote. The new version is written and synced under
/// another name first; the file is compared with `base` just before the rename that puts
/// the new version in its place, so another writer's version can only be lost if it
/// lands between a `stat` and a `rename`. The fingerprint returned is taken from the
/// written file itself, so a version written just after this one is never mistaken for
/// the daemon's own.
fn replace_unless_changed(
    path: &Path,
    contents: &[u8],
    base: Option<Fingerprint>,
) -> Result<Fingerprint, WriteFailure> {
    let unchanged = || {
        let same = base.is_some() && file_fingerprint(path) == base;
        if !same {
            log::info!(
                "{} changed while a CLI edit was being made: making the edit again on the new version",
                path.display()
            );
        }
        same
    };
    if !unchanged() {
        return Err(WriteFailure::Changed);
    }
    // Written and synced under another name, with the list's owner and mode.
    let staged = file::stage(path, contents).map_err(WriteFailure::Io)?;
    let result = (|| {
        let written = std::fs::File::open(&staged)
            .map_err(file::write_error("opening", &staged))
            .map_err(WriteFailure::Io)?;
        if !unchanged() {
            return Err(WriteFailure::Changed);
        }
        file::put_in_place(&staged, path).map_err(WriteFailure::Io)?;
        written
            .metadata()
            .map(|m| super::watch::fingerprint_of(&m))
            .map_err(file::write_error("reading the identity of", path))
            .map_err(WriteFailure::Io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

fn too_many_slots(slots: usize, room: usize) -> String {
    format!(
        "error: this list touches {slots} IPv4 /24 blocks with prefixes of /16 or longer; the fast-path index has room for {room}. \
         Raise --capacity-v4 (it takes effect when the maps are created: detach first)"
    )
}
