//! The read-only answers: status, the orders with their counters, one order, why an
//! address is (or is not) blocked, statistics and the audit trail.

use std::net::IpAddr;

use time::OffsetDateTime;

use super::{Applied, Engine};
use crate::{
    control::report,
    daemon::audit::{self, query::PrefixHistory, Record},
    error_chain,
    orders::{window::rfc3339, Order, OrderList, OrderState, Side},
    prefix::{Family, Prefix},
    semantics::{self, Decision},
};
use filter_common::{action, types, verdict, Counter};

impl Engine {
    pub fn status(&self) -> report::Status {
        let file_state = self.source.digest();
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
            orders_file: self.source.name(),
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
            source_problem: self.source.problem(),
            next_change: self.next_change().map(rfc3339),
            redirect: self
                .config
                .redirect
                .as_ref()
                .map(|c| report::RedirectStatus {
                    iface: c.iface.clone(),
                    notice_host: match c.to {
                        crate::daemon::config::RedirectTo::Mac(m) => {
                            crate::daemon::config::format_mac(&m)
                        }
                        crate::daemon::config::RedirectTo::Neighbor(ip) => ip.to_string(),
                    },
                    ready: self.redirect.resolved.is_some(),
                    problem: self.redirect.problem.clone(),
                }),
            names: self.names_status(),
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
            .zip(self.order_counters())
            .enumerate()
            .map(|(index, (o, counter))| row(a, index, o, counter))
            .collect()
    }

    /// The packets and bytes of each order of the list in force, in list order (zero
    /// where they cannot be read). The rule statistics of all orders are read together,
    /// up to the highest rule number in use, in a few batch system calls: one read per
    /// order made most of a scrape's time with 10,000 orders. Each order's rule number
    /// is taken by its index in the list: searching the rules for its id, for each
    /// order, cost time quadratic in the number of orders.
    pub fn order_counters(&self) -> Vec<Counter> {
        let Some(a) = &self.applied else {
            return Vec::new();
        };
        let numbers = &a.compiled.rule_of_order;
        let count = numbers.iter().max().map_or(0, |n| n + 1);
        let by_rule = self
            .dataplane
            .maps()
            .rule_counters(count)
            .unwrap_or_default();
        (0..a.list.orders.len())
            .map(|index| {
                numbers
                    .get(index)
                    .and_then(|&n| by_rule.get(n as usize))
                    .copied()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Packets and bytes per verdict, summed over CPUs (none if they cannot be read).
    pub fn verdict_counters(&self) -> Vec<(&'static str, Counter)> {
        self.dataplane
            .maps()
            .verdict_counters()
            .map(|v| verdict::NAMES.iter().copied().zip(v).collect())
            .unwrap_or_default()
    }

    pub fn order(&self, id: &str) -> Option<report::OrderDetail> {
        let a = self.applied.as_ref()?;
        let (index, o) = a.list.orders.iter().enumerate().find(|(_, o)| o.id == id)?;
        let counter = a
            .compiled
            .rule_of_order
            .get(index)
            .and_then(|&n| self.dataplane.maps().rule_counter(n).ok())
            .unwrap_or_default();
        Some(report::OrderDetail {
            row: row(a, index, o, counter),
            prefix_list: o.prefixes.iter().map(|p| p.text.clone()).collect(),
            domains: self.domain_details(o),
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
                let decision =
                    semantics::decide_with(&a.list, now, addr, side, &a.compiled.resolved);
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
                let mut report = side_report(&a.list, side, &decision);
                if let Decision::Order { order, prefix, .. } = &decision {
                    if *prefix == Prefix::host(addr) {
                        report.resolved_from = self.resolved_from(*order, addr);
                    }
                }
                report
            })
            .collect();
        Some(report::CheckReport {
            address: addr.to_string(),
            sides,
            dataplane_agrees: agrees,
            guarded: self.guarded_reports(|a| a == addr),
        })
    }

    pub fn stats(&self) -> report::Stats {
        let now = OffsetDateTime::now_utc();
        let orders = match &self.applied {
            Some(a) => a
                .list
                .orders
                .iter()
                .zip(&a.compiled.states)
                .zip(self.order_counters())
                .map(|((o, (_, state)), c)| report::OrderStat {
                    id: o.id.clone(),
                    action: o.action.to_string(),
                    state: state.to_string(),
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect(),
            None => Vec::new(),
        };
        let verdicts = self
            .verdict_counters()
            .into_iter()
            .map(|(name, c)| report::VerdictStat {
                verdict: name.into(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
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

    /// Since when `query` (or part of it) has been blocked or exempted, by which order,
    /// and who changed it, from the whole audit trail.
    pub fn audit_prefix(
        &self,
        query: Prefix,
        since: Option<&str>,
    ) -> Result<PrefixHistory, String> {
        let log = &self.config.audit_log;
        let records = audit::read(log, None, None).map_err(|e| error_chain(&e))?;
        Ok(audit::query::history(log, &records, query, since))
    }
}

/// The row of `o`, the order at `index` in the list in force, with its counter.
fn row(a: &Applied, index: usize, o: &Order, counter: Counter) -> report::OrderRow {
    let state = a.compiled.states[index].1;
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
        domains: o.domains.len(),
        packets: counter.packets,
        bytes: counter.bytes,
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
            resolved_from: Vec::new(),
        },
        Decision::Exempt { exception, prefix } => report::SideReport {
            side: side_name.into(),
            verdict: "exempt".into(),
            prefix: Some(prefix.to_string()),
            order: None,
            exception_reason: list.exceptions.get(*exception).map(|e| e.reason.clone()),
            resolved_from: Vec::new(),
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
                resolved_from: Vec::new(),
            }
        }
    }
}
