//! The read-only answers about names: how their resolution goes (status), each name of
//! an order with its addresses (`orders show`), and the provenance of an address
//! (`check`): which name resolved to it, when, with which TTL, or why it is not blocked.

use std::net::IpAddr;

use super::Engine;
use crate::{
    control::report::{
        AddressDetail, DomainDetail, GuardedReport, NameFailure, NamesStatus, ResolvedFrom,
    },
    daemon::names::{
        book::{Failure, NameState, Seen},
        names_holding,
    },
    orders::{window::rfc3339, DomainName, Order},
};

impl Engine {
    /// How the names of the list in force resolve; `None` when it names none.
    pub(super) fn names_status(&self) -> Option<NamesStatus> {
        let book = &self.names.book;
        if book.names.is_empty() {
            return None;
        }
        let timers = &self.names.config.timers;
        let (mut current, mut grace) = (0, 0);
        for seen in book.names.values().flat_map(|s| s.addresses.values()) {
            match NameState::grace_ends(seen, timers) {
                Some(_) => grace += 1,
                None => current += 1,
            }
        }
        Some(NamesStatus {
            names: book.names.len(),
            addresses_current: current,
            addresses_in_grace: grace,
            failing: book
                .names
                .iter()
                .filter_map(|(n, s)| Some(self.failure(n, s.failure.as_ref()?)))
                .collect(),
            guarded: self.guarded_reports(|_| true),
            unresolved: book
                .names
                .iter()
                .filter(|(_, s)| s.resolved_at.is_none())
                .map(|(n, _)| n.to_string())
                .collect(),
            resolvers: self
                .names
                .config
                .resolver
                .servers
                .as_ref()
                .map(|s| s.iter().map(ToString::to_string).collect())
                .unwrap_or_else(|| vec!["/etc/resolv.conf".into()]),
            problem: self
                .names
                .resolver_problem
                .clone()
                .or_else(|| self.names.state_problem.clone()),
        })
    }

    fn failure(&self, name: &DomainName, f: &Failure) -> NameFailure {
        NameFailure {
            name: name.to_string(),
            orders: self.orders_naming(name),
            error: f.error.clone(),
            since: rfc3339(f.since),
            attempts: f.count,
        }
    }

    /// The guarded addresses that `keep` selects, with the names that gave each.
    pub(super) fn guarded_reports(&self, keep: impl Fn(IpAddr) -> bool) -> Vec<GuardedReport> {
        let Some(a) = &self.applied else {
            return Vec::new();
        };
        self.names
            .guarded
            .iter()
            .filter(|((_, addr), _)| keep(*addr))
            .map(|((order, addr), g)| GuardedReport {
                address: addr.to_string(),
                order: order.clone(),
                names: a
                    .list
                    .orders
                    .iter()
                    .position(|o| o.id == *order)
                    .map(|i| names_holding(&a.list, &self.names.book, i, *addr))
                    .unwrap_or_default()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                why: g.why.clone(),
            })
            .collect()
    }

    /// Each name of `order` with its addresses.
    pub(super) fn domain_details(&self, order: &Order) -> Vec<DomainDetail> {
        let timers = &self.names.config.timers;
        order
            .domains
            .iter()
            .map(|d| {
                let name = &d.value;
                let unicode = name.unicode();
                let state = self.names.book.names.get(name);
                DomainDetail {
                    name: name.to_string(),
                    unicode: (unicode != name.as_str()).then_some(unicode),
                    resolved_at: state.and_then(|s| s.resolved_at).map(rfc3339),
                    ttl: state.and_then(|s| s.ttl),
                    next_resolution: state.map(|s| rfc3339(s.next_at)),
                    failure: state
                        .and_then(|s| s.failure.as_ref())
                        .map(|f| self.failure(name, f)),
                    addresses: state
                        .into_iter()
                        .flat_map(|s| &s.addresses)
                        .map(|(addr, seen)| {
                            let guarded = self
                                .names
                                .guarded
                                .get(&(order.id.clone(), *addr))
                                .map(|g| g.why.clone());
                            let grace_until = NameState::grace_ends(seen, timers);
                            AddressDetail {
                                address: addr.to_string(),
                                state: if guarded.is_some() {
                                    "guarded"
                                } else if grace_until.is_some() {
                                    "grace"
                                } else {
                                    "current"
                                }
                                .into(),
                                first_seen: rfc3339(seen.first_seen),
                                last_seen: rfc3339(seen.last_seen),
                                ttl: seen.ttl,
                                grace_until: grace_until.map(rfc3339),
                                guarded,
                            }
                        })
                        .collect(),
                    dropped: state.map_or(0, |s| s.dropped),
                }
            })
            .collect()
    }

    /// Which names of the order at `index` resolved to `addr`, and when.
    pub(super) fn resolved_from(&self, index: usize, addr: IpAddr) -> Vec<ResolvedFrom> {
        let Some(a) = &self.applied else {
            return Vec::new();
        };
        let timers = &self.names.config.timers;
        names_holding(&a.list, &self.names.book, index, addr)
            .into_iter()
            .filter_map(|name| {
                let seen: &Seen = self.names.book.names.get(&name)?.addresses.get(&addr)?;
                Some(ResolvedFrom {
                    name: name.to_string(),
                    first_seen: rfc3339(seen.first_seen),
                    last_seen: rfc3339(seen.last_seen),
                    ttl: seen.ttl,
                    grace_until: NameState::grace_ends(seen, timers).map(rfc3339),
                })
            })
            .collect()
    }
}

/// What the metrics count for the names of one order.
#[derive(Clone, Debug, Default)]
pub struct OrderNames {
    pub order: String,
    /// Resolutions that gave addresses, and failed ones, since the daemon started.
    pub resolutions: u64,
    pub failures: u64,
    /// Names whose last resolution failed.
    pub failing: u64,
    pub guarded: u64,
    pub current: u64,
    pub in_grace: u64,
}

impl Engine {
    /// For each order that names domains, what the metrics count.
    pub fn name_metrics(&self) -> Vec<OrderNames> {
        let Some(a) = &self.applied else {
            return Vec::new();
        };
        let timers = &self.names.config.timers;
        a.list
            .orders
            .iter()
            .filter(|o| !o.domains.is_empty())
            .map(|o| {
                let mut m = OrderNames {
                    order: o.id.clone(),
                    guarded: self
                        .names
                        .guarded
                        .keys()
                        .filter(|(id, _)| *id == o.id)
                        .count() as u64,
                    ..OrderNames::default()
                };
                for d in &o.domains {
                    let Some(s) = self.names.book.names.get(&d.value) else {
                        continue;
                    };
                    m.resolutions += s.resolutions;
                    m.failures += s.failures;
                    m.failing += u64::from(s.failure.is_some());
                    for seen in s.addresses.values() {
                        match NameState::grace_ends(seen, timers) {
                            Some(_) => m.in_grace += 1,
                            None => m.current += 1,
                        }
                    }
                }
                m
            })
            .collect()
    }
}
