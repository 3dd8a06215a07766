//! Names in orders, on the engine's side: the book's answers become host prefixes of
//! their orders, changed in place (only the addresses that moved are recompiled), with
//! the same guarantees as any change: the new address is added before anything is
//! removed, and every change is in the audit trail with what caused it.

use std::{collections::BTreeSet, net::IpAddr, time::Instant as Clock};

use time::OffsetDateTime;

use super::{
    pipeline::{Conclusion, NotEnforced},
    Applied, Engine,
};
use crate::{
    compile::{resolved_changes, ListingChange},
    daemon::{
        audit::{GuardedAddress, NameEvent, Origin, Record},
        names::{
            admit,
            book::{Answer, NameChange},
            in_force, names_holding, names_of, Admitted,
        },
    },
    error_chain,
    orders::{window::rfc3339, DomainName, OrderList, OrderState},
};

impl Engine {
    /// The addresses the orders of `list` in force at `now` hold through their names.
    pub(super) fn admitted(&self, list: &OrderList, now: OffsetDateTime) -> Admitted {
        admit(
            list,
            |i| list.orders[i].state(now) == OrderState::Active,
            &self.names.book,
            &self.names.guard,
        )
    }

    /// After the list in force changed: follow its names (new ones are resolved at once)
    /// and bring each order's addresses in line (an order added by a CLI edit whose name
    /// another order already resolved holds its addresses at once).
    pub(super) fn names_follow(&mut self) {
        let Some(a) = &self.applied else { return };
        let names = names_of(&a.list);
        if self.names.book.follow(&names, OffsetDateTime::now_utc()) {
            self.names.save();
            self.names.wake.notify_one();
        }
        self.reconcile_names();
    }

    /// The worker's question: releases the addresses whose grace is over, and returns the
    /// names due for resolution and when the next thing is due.
    pub fn names_due(&mut self, now: OffsetDateTime) -> (Vec<DomainName>, Option<OffsetDateTime>) {
        let timers = self.names.config.timers;
        let released = self.names.book.expire(now, &timers);
        if !released.is_empty() {
            for (name, addrs) in released {
                let change = NameChange {
                    released: addrs,
                    ..NameChange::default()
                };
                let event = self.event(&name, &change, None);
                self.names.pending.push(event);
            }
            self.names.save();
            self.reconcile_names();
        }
        (
            self.names.book.due(now),
            self.names.book.next_event(&timers),
        )
    }

    /// Reads the `--shared-ranges` file again (SIGHUP): the guard follows it at once. A
    /// file that cannot be read keeps the ranges read before, and says so.
    pub fn reload_shared_ranges(&mut self) {
        let Some(path) = self.names.config.shared_ranges.clone() else {
            return;
        };
        match crate::daemon::names::guard::read_shared_ranges(&path) {
            Ok(ranges) => {
                log::info!(
                    "read {} shared-hosting range(s) from {}",
                    ranges.len(),
                    path.display()
                );
                self.names.guard.shared = ranges;
                self.reconcile_names();
            }
            Err(e) => log::error!(
                "{}; the shared-hosting ranges read before stay in use",
                error_chain(e.as_ref())
            ),
        }
    }

    /// No resolver could be set up: names keep what they had, and status says why.
    pub fn names_unresolvable(&mut self, why: String) {
        self.names.resolver_problem = Some(why);
    }

    /// The worker's answers: recorded in the book, enforced, kept.
    pub fn names_answered(&mut self, answers: Vec<(DomainName, Answer)>) {
        let now = OffsetDateTime::now_utc();
        let timers = self.names.config.timers;
        for (name, answer) in answers {
            let ttl = answer.ttl;
            let change = self.names.book.record(&name, answer, now, &timers);
            if let Some(f) = self
                .names
                .book
                .names
                .get(&name)
                .and_then(|s| s.failure.as_ref())
            {
                if f.count == 1 {
                    log::warn!(
                        "{name}: {}; its last known addresses stay enforced",
                        f.error
                    );
                }
            }
            let moved = !change.added.is_empty()
                || !change.missing.is_empty()
                || !change.back.is_empty()
                || !change.released.is_empty();
            if moved {
                let event = self.event(&name, &change, ttl);
                self.names.pending.push(event);
            }
        }
        self.names.save();
        self.reconcile_names();
    }

    /// A name's event for the audit trail.
    fn event(&self, name: &DomainName, change: &NameChange, ttl: Option<u32>) -> NameEvent {
        let text = |v: &[IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut added = change.added.clone();
        added.extend(&change.back);
        NameEvent {
            name: name.to_string(),
            orders: self.orders_naming(name),
            ttl,
            added: text(&added),
            missing: text(&change.missing),
            released: text(&change.released),
            guarded: Vec::new(),
        }
    }

    /// The ids of the orders of the list in force that list `name`.
    pub(super) fn orders_naming(&self, name: &DomainName) -> Vec<String> {
        self.applied
            .as_ref()
            .map(|a| {
                a.list
                    .orders
                    .iter()
                    .filter(|o| o.domains.iter().any(|d| d.value == *name))
                    .map(|o| o.id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Brings the addresses each order holds through its names in line with the book and
    /// the guard, in place. Writes an audit record when anything happened (pending events
    /// included), even when the maps did not change (an address newly guarded).
    fn reconcile_names(&mut self) {
        let Some(mut applied) = self.applied.take() else {
            return;
        };
        let admitted = admit(
            &applied.list,
            in_force(&applied.compiled.states),
            &self.names.book,
            &self.names.guard,
        );
        self.note_guarded(&applied.list, &admitted);
        let changes = resolved_changes(&applied.compiled.resolved, &admitted.resolved);
        if changes.is_empty() {
            if !self.names.pending.is_empty() {
                self.record_names_only(&applied);
            }
            self.applied = Some(applied);
            return;
        }
        if self.held.is_none() || self.rebuild_fast {
            // The maps must be read again first: the whole list, compiled with the names.
            let (list, sha256, warnings) = (
                applied.list.clone(),
                applied.sha256.clone(),
                applied.warnings.clone(),
            );
            self.applied = Some(applied);
            self.install(list, sha256, Origin::Dns, true, warnings);
            return;
        }
        let outcome = self.apply_names_in_place(&mut applied, admitted, &changes);
        self.applied = Some(applied);
        if let Err(e) = outcome {
            log::error!("enforcing what names resolved to failed: {e}");
            self.history.rejected += 1;
        }
    }

    fn apply_names_in_place(
        &mut self,
        applied: &mut Applied,
        admitted: Admitted,
        changes: &[ListingChange],
    ) -> Result<(), String> {
        let started = Clock::now();
        let entries = applied.compiled.recompile(&applied.list, changes);
        let enforced = match self.enforce_changes(&entries, &applied.compiled.rules, started) {
            Ok(e) => e,
            Err(NotEnforced::NoRoom(problem) | NotEnforced::Failed(problem)) => {
                applied
                    .compiled
                    .recompile(&applied.list, &ListingChange::reversed(changes));
                return Err(problem);
            }
        };
        applied.compiled.resolved = admitted.resolved;
        let changed: Vec<String> = changes
            .iter()
            .filter_map(|c| c.lister.order())
            .map(|i| applied.list.orders[i].id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let conclusion = Conclusion::in_place(&applied.sha256, None, changed, enforced);
        let sha256 = applied.sha256.clone();
        self.conclude(conclusion, &Origin::Dns, &sha256, &[], &applied.compiled);
        Ok(())
    }

    /// Logs every address newly kept out by the guard, loudly, and puts it in the next
    /// audit record.
    fn note_guarded(&mut self, list: &OrderList, admitted: &Admitted) {
        for ((order, addr), g) in &admitted.guarded {
            if self.names.guarded.contains_key(&(order.clone(), *addr)) {
                continue;
            }
            let index = list.orders.iter().position(|o| o.id == *order);
            let names = index
                .map(|i| names_holding(list, &self.names.book, i, *addr))
                .unwrap_or_default();
            let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
            log::warn!(
                "NOT blocking {addr}: {} of order {order:?} resolved to it, but {}",
                shown.join(", "),
                g.why
            );
            let guarded = GuardedAddress {
                address: addr.to_string(),
                order: order.clone(),
                why: g.why.clone(),
            };
            for name in names {
                match self
                    .names
                    .pending
                    .iter_mut()
                    .find(|e| e.name == name.as_str())
                {
                    Some(e) => e.guarded.push(guarded.clone()),
                    None => {
                        let mut e = self.event(&name, &NameChange::default(), None);
                        e.guarded.push(guarded.clone());
                        self.names.pending.push(e);
                    }
                }
            }
        }
        self.names.guarded = admitted.guarded.clone();
    }

    /// An audit record of what names did when the data plane did not change.
    fn record_names_only(&mut self, applied: &Applied) {
        let record = Record {
            time: rfc3339(OffsetDateTime::now_utc()),
            who: Origin::Dns,
            sha256_before: Some(applied.sha256.clone()),
            sha256_after: applied.sha256.clone(),
            orders_added: Vec::new(),
            orders_removed: Vec::new(),
            orders_changed: Vec::new(),
            enforcement_started: Vec::new(),
            enforcement_ended: Vec::new(),
            prefixes_added: 0,
            prefixes_changed: 0,
            prefixes_removed: 0,
            prefixes: Vec::new(),
            prefixes_file: None,
            names: std::mem::take(&mut self.names.pending),
        };
        if let Err(e) = crate::daemon::audit::append(&self.config.audit_log, &record) {
            log::error!("{}", error_chain(&e));
        }
    }
}
