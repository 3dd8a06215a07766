//! The daemon's core: it owns the data plane and the list in force, and turns every
//! trigger (start, a change in the list's source, signal, CLI edit, clock) into one
//! all-or-nothing sync. It is not async: the caller serializes access (one `Mutex`), which
//! is also what makes concurrent CLI edits safe: each reads the list, changes it and
//! applies it alone.
//!
//! - this file: the engine's state and its start;
//! - `pipeline`: a change from the source to the data plane: read, check, plan, enforce,
//!   record;
//! - `edits`: CLI edits, in place when they can be, on the whole list when not;
//! - `keeper`: keeping the filter attached and the redirect target resolved; detaching;
//! - `names`: what names in orders resolved to, enforced in place as it changes;
//! - `views`: the read-only answers (status, orders, check, stats, audit);
//!   `name_views`: their parts about names (provenance, guarded addresses, failures).

mod edits;
mod keeper;
mod name_views;
mod names;
mod pipeline;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use time::OffsetDateTime;

use super::{
    audit::{self, prefixes::Handover, Origin},
    config::Config,
    history::SyncHistory,
    names::Names,
    source::{Enforcing, ListSource, Revision},
};
use crate::{
    compile::Compiled,
    control::report::{self, ChangeReport},
    dataplane::{Attachment, Dataplane, LoadOptions},
    error_chain,
    orders::{
        text::ListText,
        validate::{Policy, RedirectTarget},
        window::rfc3339,
        OrderList, Problems,
    },
    prefix::Family,
    sync::{Changes, Snapshot},
};

pub use name_views::OrderNames;
pub use pipeline::{needs_force, GUARD_MIN_PREFIXES};

/// The list in force.
struct Applied {
    list: OrderList,
    sha256: String,
    compiled: Compiled,
    at: OffsetDateTime,
    origin: Origin,
    warnings: Vec<String>,
    /// The source's revision when it held this list (`None` if it changed while read).
    revision: Option<Revision>,
    /// The list's text in pieces, made at the first CLI edit and kept up to date by the
    /// edits after it (`None`: make it again).
    text: Option<ListText>,
}

/// What bringing the data plane to a list did.
struct Enforced {
    changes: Changes,
    /// The prefixes whose orders changed.
    handovers: Vec<Handover>,
    enforced_before: BTreeSet<u64>,
    started: std::time::Instant,
    plan_empty: bool,
}

/// What a sync did.
#[derive(Debug)]
pub enum Outcome {
    Applied(ChangeReport),
    Unchanged(ChangeReport),
    Refused(report::Refusal),
}

impl Outcome {
    fn unchanged(sha256: String, warnings: Vec<String>) -> Self {
        Outcome::Unchanged(ChangeReport {
            result: "unchanged".into(),
            sha256,
            warnings,
            ..ChangeReport::default()
        })
    }
}

pub struct Engine {
    config: Config,
    source: Box<dyn ListSource>,
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
    /// Each order the data plane enforces, with when its enforcement started (RFC 3339):
    /// from the audit trail at start, then from every change.
    enforcing: BTreeMap<String, String>,
    /// What names in orders resolved to, and the guard.
    names: Names,
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
    /// list, then attaches to the interfaces: a fresh filter is complete before it sees
    /// its first packet, and a restarted one never stops enforcing.
    pub fn start(config: Config, source: Box<dyn ListSource>) -> anyhow::Result<Self> {
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
        let names = Names::load(config.names.clone(), config.protect.clone())?;
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
            source,
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
            enforcing: BTreeMap::new(),
            names,
        };
        engine.enforcing = audit::enforcing_since(&engine.config.audit_log).unwrap_or_else(|e| {
            log::warn!("{}; enforcement start times begin now", error_chain(&e));
            BTreeMap::new()
        });
        engine.refresh_redirect();
        engine.held = Some(
            Snapshot::read(engine.dataplane.maps())
                .map_err(|e| anyhow::anyhow!(error_chain(&e)))?,
        );
        match engine.sync(Origin::Start, false) {
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

    /// Where the list comes from, for messages.
    pub fn source_name(&self) -> String {
        self.source.name()
    }

    /// Tells the source what is enforced now (a shared source publishes it for the fleet).
    fn tell_source(&self) {
        let source_sha = self.source.revision();
        self.source.report(&Enforcing {
            sha256: self.applied.as_ref().map(|a| a.sha256.clone()),
            applied_at: self.applied.as_ref().map(|a| rfc3339(a.at)),
            in_sync: self
                .applied
                .as_ref()
                .is_some_and(|a| a.revision.is_some() && a.revision == source_sha)
                && self.refusal.is_none(),
            refusal: self.refusal.as_ref().map(|r| {
                r.problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
            enforcing_since: self.enforcing.clone(),
        });
    }

    /// Waits (a few seconds at most) until acknowledged CLI edits are written whole.
    pub fn flush_source(&self) {
        self.source.flush();
    }

    /// Starts telling `changed` when the source's list may have changed; tells it at once
    /// if it already has since the engine read it.
    pub fn watch_source(&self, changed: tokio::sync::mpsc::Sender<()>) {
        self.source.watch(changed.clone());
        // (A list refused at start is read again only when it changes.)
        let stale = self
            .applied
            .as_ref()
            .is_some_and(|a| a.revision.is_none() || a.revision != self.source.revision());
        if stale {
            let _ = changed.try_send(());
        }
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

    fn held(&mut self) -> Result<&Snapshot, String> {
        if self.held.is_none() {
            self.held = Some(Snapshot::read(self.dataplane.maps()).map_err(|e| error_chain(&e))?);
        }
        Ok(self.held.as_ref().expect("just read"))
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

    /// The worker's wake-up: told when the list names new names.
    pub fn names_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.names.wake)
    }
}
