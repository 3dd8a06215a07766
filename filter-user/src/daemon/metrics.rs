//! Prometheus metrics and the health check, read from the engine at scrape time.
//!
//! Counters come straight from the data plane's per-CPU maps (summed), so they are as
//! fresh as the scrape. No series carries an address: counters are per order and per
//! verdict only. Per-interface verdict counters would need a hash lookup per packet in
//! the program (the ifindex is not a dense index), so the data plane does not keep them.
//!
//! A scrape copies what it reports under the engine's lock and writes the text after
//! releasing it. The per-order families, which grow with the list (two series per
//! order), are written directly; the rest, a few dozen series, through prometheus-client.

use std::{collections::HashMap, fmt::Write as _};

use filter_common::Counter;
use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{counter::ConstCounter, exemplar::Exemplar, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use super::{
    engine::Engine,
    history::{SyncHistory, SYNC_BUCKETS},
    Shared,
};
use crate::{orders::OrderState, prefix::Family};

/// Label pairs of one series of the fixed families.
type Labels = Vec<(&'static str, String)>;

/// What one scrape reports, copied out of the engine under its lock and rendered after
/// the lock is released: a sync, a CLI command or the heartbeat waits for the copy (the
/// counters of all orders read in a few batch system calls), not for the text.
struct Scrape {
    /// Each order of the list in force, in list order.
    orders: Vec<OrderSample>,
    fixed: Fixed,
}

struct OrderSample {
    id: String,
    action: &'static str,
    counter: Counter,
}

/// The families whose size does not grow with the list, encoded by prometheus-client.
#[derive(Debug, Default)]
struct Fixed {
    verdicts: Vec<(Labels, u64)>,
    prefixes: Vec<(Labels, i64)>,
    states: Vec<(Labels, i64)>,
    history: SyncHistory,
    ifaces: Vec<String>,
    in_sync: bool,
    /// 0 while the list's source cannot be followed (etcd unreachable), else 1.
    source_ok: bool,
    /// Configured interfaces with their XDP mode (`none`) and 1 if the filter runs there.
    attached: Vec<(Labels, i64)>,
    /// Per order that names domains.
    names: Vec<super::engine::OrderNames>,
}

/// `(name, value)` label pairs, the values escaped for the text formats.
fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut value = String::with_capacity(v.len());
            push_label_value(&mut value, v);
            (*k, value)
        })
        .collect()
}

/// Appends `value` as a label value of the Prometheus text format and OpenMetrics:
/// backslash, double quote and line feed escaped (order ids may hold the first two).
fn push_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Scrape {
    /// Copies what the scrape reports out of the engine.
    fn take(engine: &Engine) -> Self {
        let mut orders = Vec::new();
        let mut prefixes = Vec::new();
        let mut states: HashMap<&str, i64> =
            OrderState::ALL.iter().map(|s| (s.name(), 0)).collect();
        if let Some((list, _, compiled)) = engine.applied() {
            orders = list
                .orders
                .iter()
                .zip(engine.order_counters())
                .map(|(o, counter)| OrderSample {
                    id: o.id.clone(),
                    action: o.action.name(),
                    counter,
                })
                .collect();
            for family in [Family::V4, Family::V6] {
                let exceptions = list
                    .exceptions
                    .iter()
                    .filter(|x| x.prefix.value.family() == family)
                    .count() as i64;
                let entries = compiled.count(family) as i64;
                prefixes.push((
                    labels(&[("family", family.name()), ("kind", "block")]),
                    entries - exceptions,
                ));
                prefixes.push((
                    labels(&[("family", family.name()), ("kind", "exception")]),
                    exceptions,
                ));
            }
            for (_, state) in &compiled.states {
                *states.entry(state.name()).or_default() += 1;
            }
        }
        let mut states: Vec<_> = states
            .into_iter()
            .map(|(s, n)| (labels(&[("state", s)]), n))
            .collect();
        states.sort();
        let verdicts = engine
            .verdict_counters()
            .into_iter()
            .filter(|(name, _)| *name != "seen")
            .map(|(name, c)| (labels(&[("verdict", name)]), c.packets))
            .collect();
        let status = engine.status();
        let ifaces = engine.config().ifaces.clone();
        let mut attached: Vec<_> = status
            .attached
            .iter()
            .map(|a| (labels(&[("iface", &a.iface), ("mode", &a.mode)]), 1))
            .collect();
        // A configured interface without the filter shows as 0, so that an alert can fire.
        for iface in &ifaces {
            if !status.attached.iter().any(|a| &a.iface == iface) {
                attached.push((labels(&[("iface", iface), ("mode", "none")]), 0));
            }
        }
        Scrape {
            orders,
            fixed: Fixed {
                verdicts,
                prefixes,
                states,
                history: engine.history.clone(),
                ifaces,
                in_sync: status.in_sync,
                source_ok: status.source_problem.is_none(),
                attached,
                names: engine.name_metrics(),
            },
        }
    }

    /// The scrape's text: OpenMetrics, or the Prometheus text format 0.0.4 (no `# EOF`,
    /// counter families named with their `_total` suffix).
    fn render(self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(self.orders.len() * 2 * 80 + 8192);
        write_orders(&mut out, &self.orders, openmetrics);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.fixed));
        let mut text = String::new();
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        if openmetrics {
            out.push_str(&text);
            return out;
        }
        let mut counters = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some(name) = rest.strip_suffix(" counter") {
                    counters.insert(name.to_string());
                }
            }
        }
        for line in text.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .contains(name)
                    .then(|| format!("{prefix}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}

/// The two per-order counter families, written straight into `out`: with 10,000 orders
/// they are nearly all of a scrape, and prometheus-client would want a label set (a
/// vector of strings) per series. Same text as prometheus-client's, with label values
/// escaped.
fn write_orders(out: &mut String, orders: &[OrderSample], openmetrics: bool) {
    write_order_family(
        out,
        "borderfilter_order_packets",
        "Packets matched by each order (summed over CPUs).",
        orders.iter().map(|o| (o, o.counter.packets)),
        openmetrics,
    );
    write_order_family(
        out,
        "borderfilter_order_bytes",
        "Bytes matched by each order (summed over CPUs).",
        orders.iter().map(|o| (o, o.counter.bytes)),
        openmetrics,
    );
}

fn write_order_family<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (&'a OrderSample, u64)>,
    openmetrics: bool,
) {
    // OpenMetrics names the counter family without the suffix its samples carry.
    let suffix = if openmetrics { "" } else { "_total" };
    let _ = writeln!(out, "# HELP {name}{suffix} {help}");
    let _ = writeln!(out, "# TYPE {name}{suffix} counter");
    for (order, value) in samples {
        out.push_str(name);
        out.push_str("_total{order=\"");
        push_label_value(out, &order.id);
        out.push_str("\",action=\"");
        push_label_value(out, order.action);
        let _ = writeln!(out, "\"}} {value}");
    }
}

impl Collector for Fixed {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        counter(
            &mut e,
            "borderfilter_verdicts",
            "Packets per verdict: pass, drop, redirect, monitor, exempt, not_ip, malformed.",
            &self.verdicts,
        )?;
        gauge(&mut e, "borderfilter_prefixes", "Prefix entries in the data plane, by family and kind (block: an order's prefix, exception).", &self.prefixes)?;
        gauge(
            &mut e,
            "borderfilter_orders",
            "Orders in the list by state: active, pending (valid_from ahead), expired.",
            &self.states,
        )?;
        let h = &self.history;
        counter(
            &mut e,
            "borderfilter_sync",
            "Order lists applied and rejected.",
            &[
                (labels(&[("result", "applied")]), h.applied),
                (labels(&[("result", "rejected")]), h.rejected),
            ],
        )?;
        let reattached: Vec<_> = self
            .ifaces
            .iter()
            .map(|iface| {
                (
                    labels(&[("iface", iface)]),
                    h.reattached.get(iface).copied().unwrap_or(0),
                )
            })
            .collect();
        counter(
            &mut e,
            "borderfilter_reattached",
            "Times the filter was attached again to an interface it had been removed from behind the daemon's back.",
            &reattached,
        )?;
        counter(
            &mut e,
            "borderfilter_cli_edits_refused",
            "CLI edits refused (invalid, or refused by a safety rail); not counted as rejected lists.",
            &[(labels(&[]), h.edits_refused)],
        )?;
        let ts = |t: Option<time::OffsetDateTime>| t.map_or(0, |t| t.unix_timestamp());
        gauge(
            &mut e,
            "borderfilter_last_sync_timestamp_seconds",
            "When a list was last applied or rejected (Unix time, 0: never).",
            &[
                (labels(&[("result", "applied")]), ts(h.last_applied)),
                (labels(&[("result", "rejected")]), ts(h.last_rejected)),
            ],
        )?;
        {
            let mut family = e.encode_descriptor(
                "borderfilter_sync_duration_seconds",
                "Time to apply a list to the data plane.",
                None,
                MetricType::Histogram,
            )?;
            // The encoder accumulates per-bucket counts; f64::MAX is rendered as +Inf.
            let buckets: Vec<(f64, u64)> = SYNC_BUCKETS
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(h.durations.counts)
                .collect();
            family.encode_histogram(
                h.durations.sum,
                h.durations.count,
                &buckets,
                None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
            )?;
        }
        gauge(
            &mut e,
            "borderfilter_orderlist_in_sync",
            "1 when the data plane enforces exactly the order list file on disk.",
            &[(vec![], i64::from(self.in_sync))],
        )?;
        gauge(
            &mut e,
            "borderfilter_source_reachable",
            "1 while the order list's source can be followed (always, for a file); 0 while it cannot (etcd unreachable): the filter keeps enforcing the list in force.",
            &[(vec![], i64::from(self.source_ok))],
        )?;
        let per_order = |f: fn(&super::engine::OrderNames) -> u64| -> Vec<(Labels, u64)> {
            self.names
                .iter()
                .map(|n| (labels(&[("order", &n.order)]), f(n)))
                .collect()
        };
        counter(&mut e, "borderfilter_dns_resolutions", "Resolutions of the names of each order that gave addresses (since the daemon started).", &per_order(|n| n.resolutions))?;
        counter(&mut e, "borderfilter_dns_failures", "Resolutions of the names of each order that failed (timeout, SERVFAIL, NXDOMAIN, no records): the last known addresses stay blocked.", &per_order(|n| n.failures))?;
        let as_gauge = |v: Vec<(Labels, u64)>| -> Vec<(Labels, i64)> {
            v.into_iter().map(|(l, n)| (l, n as i64)).collect()
        };
        gauge(
            &mut e,
            "borderfilter_dns_names_failing",
            "Names of each order whose last resolution failed.",
            &as_gauge(per_order(|n| n.failing)),
        )?;
        gauge(&mut e, "borderfilter_dns_guarded_addresses", "Addresses the names of each order resolved to that are not blocked: in a protected or shared-hosting range, or an exception.", &as_gauge(per_order(|n| n.guarded)))?;
        let addresses: Vec<(Labels, i64)> = self
            .names
            .iter()
            .flat_map(|n| {
                [
                    (
                        labels(&[("order", &n.order), ("state", "current")]),
                        n.current as i64,
                    ),
                    (
                        labels(&[("order", &n.order), ("state", "grace")]),
                        n.in_grace as i64,
                    ),
                ]
            })
            .collect();
        gauge(&mut e, "borderfilter_dns_addresses", "Addresses the names of each order hold: returned by the last answer (current), or no longer returned and blocked through the grace period (grace).", &addresses)?;
        gauge(&mut e, "borderfilter_attached", "1 for each interface the filter is attached to (with its XDP mode); 0 for a configured interface it is missing from.", &self.attached)?;
        gauge(
            &mut e,
            "borderfilter_build_info",
            "The running version.",
            &[(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1)],
        )
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    if let [(set, value)] = values {
        if set.is_empty() {
            return ConstGauge::new(*value).encode(family);
        }
    }
    for (set, value) in values {
        ConstGauge::new(*value).encode(family.encode_family(set)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    if let [(set, value)] = values {
        if set.is_empty() {
            return ConstCounter::new(*value).encode(family);
        }
    }
    for (set, value) in values {
        ConstCounter::new(*value).encode(family.encode_family(set)?)?;
    }
    Ok(())
}

/// A scrape of `engine`: what it reports is copied under the engine's lock, the text is
/// written after the lock is released.
pub fn render(engine: &Shared, openmetrics: bool) -> String {
    let scrape = Scrape::take(&engine.lock().unwrap_or_else(|p| p.into_inner()));
    scrape.render(openmetrics)
}

/// `/healthz`: healthy when the filter is attached where configured and enforces the
/// file on disk; otherwise the reasons.
pub fn health(engine: &Engine) -> Result<String, String> {
    let status = engine.status();
    let mut problems = Vec::new();
    for iface in &engine.config().ifaces {
        if !status.attached.iter().any(|a| &a.iface == iface) {
            problems.push(format!("not attached to {iface}"));
        }
    }
    if let Some(e) = &status.file_error {
        problems.push(format!("the order list cannot be read: {e}"));
    }
    if let Some(r) = &status.refusal {
        problems.push(format!(
            "the order list on disk was refused at {}: {}",
            r.at,
            r.problems.first().map(String::as_str).unwrap_or("")
        ));
    }
    if status.applied.is_none() {
        problems.push("no order list is in force".into());
    } else if !status.in_sync && status.refusal.is_none() && status.file_error.is_none() {
        problems.push("the order list on disk is not the one in force yet".into());
    }
    if problems.is_empty() {
        Ok(format!(
            "ok: enforcing {} on {}\n",
            status.applied.map(|a| a.sha256).unwrap_or_default(),
            status
                .attached
                .iter()
                .map(|a| format!("{} ({})", a.iface, a.mode))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(problems.join("\n") + "\n")
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, engine: Shared) {
    crate::http::serve(listener, move |request, _| {
        let engine = std::sync::Arc::clone(&engine);
        async move {
            use crate::http::response;
            if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
                return response(
                    405,
                    "text/plain; charset=utf-8",
                    "only GET: this endpoint is read-only\n",
                );
            }
            let openmetrics = request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            match request.uri().path() {
                "/metrics" => {
                    let text = tokio::task::spawn_blocking(move || render(&engine, openmetrics))
                        .await
                        .unwrap_or_default();
                    let content_type = if openmetrics {
                        "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    } else {
                        "text/plain; version=0.0.4; charset=utf-8"
                    };
                    response(200, content_type, text)
                }
                "/healthz" => {
                    let result = tokio::task::spawn_blocking(move || {
                        health(&engine.lock().unwrap_or_else(|p| p.into_inner()))
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("internal error: {e}\n")));
                    match result {
                        Ok(text) => response(200, "text/plain; charset=utf-8", text),
                        Err(text) => response(503, "text/plain; charset=utf-8", text),
                    }
                }
                _ => response(
                    404,
                    "text/plain; charset=utf-8",
                    "borderfilter serves /metrics and /healthz\n",
                ),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(orders: &[(&str, &'static str, u64, u64)]) -> Scrape {
        Scrape {
            orders: orders
                .iter()
                .map(|&(id, action, packets, bytes)| OrderSample {
                    id: id.to_string(),
                    action,
                    counter: Counter { packets, bytes },
                })
                .collect(),
            fixed: Fixed::default(),
        }
    }

    #[test]
    fn label_values_are_escaped_as_the_text_formats_require() {
        for (value, expected) in [
            ("BS-12345/2006", "BS-12345/2006"),
            ("", ""),
            (r#"A "quoted" id"#, r#"A \"quoted\" id"#),
            (r"C:\orders\7", r"C:\\orders\\7"),
            ("two\nlines", r"two\nlines"),
            ("æøå \\\"\n", r#"æøå \\\"\n"#),
        ] {
            let mut out = String::from("x");
            push_label_value(&mut out, value);
            assert_eq!(out, format!("x{expected}"), "escaping {value:?}");
        }
    }

    #[test]
    fn order_series_in_the_prometheus_text_format() {
        let text = scrape(&[("X-1", "drop", 37, 5254), (r#"Q"\1"#, "monitor", 0, 0)]).render(false);
        let expected = concat!(
            "# HELP borderfilter_order_packets_total Packets matched by each order (summed over CPUs).\n",
            "# TYPE borderfilter_order_packets_total counter\n",
            "borderfilter_order_packets_total{order=\"X-1\",action=\"drop\"} 37\n",
            "borderfilter_order_packets_total{order=\"Q\\\"\\\\1\",action=\"monitor\"} 0\n",
            "# HELP borderfilter_order_bytes_total Bytes matched by each order (summed over CPUs).\n",
            "# TYPE borderfilter_order_bytes_total counter\n",
            "borderfilter_order_bytes_total{order=\"X-1\",action=\"drop\"} 5254\n",
            "borderfilter_order_bytes_total{order=\"Q\\\"\\\\1\",action=\"monitor\"} 0\n",
            "# HELP borderfilter_verdicts_total ",
        );
        assert!(text.starts_with(expected), "got:\n{text}");
        assert!(
            text.contains("\n# TYPE borderfilter_sync_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\nborderfilter_build_info{version=\""),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn order_series_in_openmetrics() {
        let text = scrape(&[("X-1", "redirect", 1, 60)]).render(true);
        let expected = concat!(
            "# HELP borderfilter_order_packets Packets matched by each order (summed over CPUs).\n",
            "# TYPE borderfilter_order_packets counter\n",
            "borderfilter_order_packets_total{order=\"X-1\",action=\"redirect\"} 1\n",
            "# HELP borderfilter_order_bytes Bytes matched by each order (summed over CPUs).\n",
            "# TYPE borderfilter_order_bytes counter\n",
            "borderfilter_order_bytes_total{order=\"X-1\",action=\"redirect\"} 60\n",
            "# HELP borderfilter_verdicts ",
        );
        assert!(text.starts_with(expected), "got:\n{text}");
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }

    #[test]
    fn without_orders_the_families_are_still_described() {
        let text = scrape(&[]).render(false);
        assert!(
            text.starts_with(concat!(
                "# HELP borderfilter_order_packets_total Packets matched by each order (summed over CPUs).\n",
                "# TYPE borderfilter_order_packets_total counter\n",
                "# HELP borderfilter_order_bytes_total ",
            )),
            "{text}"
        );
    }
}
