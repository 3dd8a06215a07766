//! Prometheus metrics and the health check, read from the engine at scrape time.
//!
//! Counters come straight from the data plane's per-CPU maps (summed), so they are as
//! fresh as the scrape. No series carries an address: counters are per order and per
//! verdict only. Per-interface verdict counters would need a hash lookup per packet in
//! the program (the ifindex is not a dense index), so the data plane does not keep them.

use std::collections::HashMap;

use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{counter::ConstCounter, exemplar::Exemplar, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use super::{engine::Engine, history::SYNC_BUCKETS, Shared};
use crate::{orders::OrderState, prefix::Family};

struct EngineCollector(Shared);

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCollector")
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let engine = self.0.lock().unwrap_or_else(|p| p.into_inner());
        encode_engine(&engine, &mut encoder)
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Vec<(&'static str, String)>, i64)],
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
    values: &[(Vec<(&'static str, String)>, u64)],
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

fn encode_engine(engine: &Engine, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let orders = engine.orders();
    let packets: Vec<_> = orders
        .iter()
        .map(|o| {
            (
                labels(&[("order", &o.id), ("action", &o.action)]),
                o.packets,
            )
        })
        .collect();
    let bytes: Vec<_> = orders
        .iter()
        .map(|o| (labels(&[("order", &o.id), ("action", &o.action)]), o.bytes))
        .collect();
    counter(
        e,
        "borderfilter_order_packets",
        "Packets matched by each order (summed over CPUs).",
        &packets,
    )?;
    counter(
        e,
        "borderfilter_order_bytes",
        "Bytes matched by each order (summed over CPUs).",
        &bytes,
    )?;

    let stats = engine.stats();
    let verdicts: Vec<_> = stats
        .verdicts
        .iter()
        .filter(|v| v.verdict != "seen")
        .map(|v| (labels(&[("verdict", &v.verdict)]), v.packets))
        .collect();
    counter(
        e,
        "borderfilter_verdicts",
        "Packets per verdict: pass, drop, redirect, monitor, exempt, not_ip, malformed.",
        &verdicts,
    )?;

    let mut prefixes = Vec::new();
    let mut states: HashMap<&str, i64> = OrderState::ALL.iter().map(|s| (s.name(), 0)).collect();
    if let Some((list, _, compiled)) = engine.applied() {
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
    gauge(e, "borderfilter_prefixes", "Prefix entries in the data plane, by family and kind (block: an order's prefix, exception).", &prefixes)?;
    let mut states: Vec<_> = states
        .into_iter()
        .map(|(s, n)| (labels(&[("state", s)]), n))
        .collect();
    states.sort();
    gauge(
        e,
        "borderfilter_orders",
        "Orders in the list by state: active, pending (valid_from ahead), expired.",
        &states,
    )?;

    let h = &engine.history;
    counter(
        e,
        "borderfilter_sync",
        "Order lists applied and rejected.",
        &[
            (labels(&[("result", "applied")]), h.applied),
            (labels(&[("result", "rejected")]), h.rejected),
        ],
    )?;
    let reattached: Vec<_> = engine
        .config()
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
        e,
        "borderfilter_reattached",
        "Times the filter was attached again to an interface it had been removed from behind the daemon's back.",
        &reattached,
    )?;
    counter(
        e,
        "borderfilter_cli_edits_refused",
        "CLI edits refused (invalid, or refused by a safety rail); not counted as rejected lists.",
        &[(labels(&[]), h.edits_refused)],
    )?;
    let ts = |t: Option<time::OffsetDateTime>| t.map_or(0, |t| t.unix_timestamp());
    gauge(
        e,
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
    let status = engine.status();
    gauge(
        e,
        "borderfilter_orderlist_in_sync",
        "1 when the data plane enforces exactly the order list file on disk.",
        &[(vec![], i64::from(status.in_sync))],
    )?;
    let mut attached: Vec<_> = status
        .attached
        .iter()
        .map(|a| (labels(&[("iface", &a.iface), ("mode", &a.mode)]), 1))
        .collect();
    // A configured interface without the filter shows as 0, so that an alert can fire.
    for iface in &engine.config().ifaces {
        if !status.attached.iter().any(|a| &a.iface == iface) {
            attached.push((labels(&[("iface", iface), ("mode", "none")]), 0));
        }
    }
    gauge(e, "borderfilter_attached", "1 for each interface the filter is attached to (with its XDP mode); 0 for a configured interface it is missing from.", &attached)?;
    gauge(
        e,
        "borderfilter_build_info",
        "The running version.",
        &[(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1)],
    )
}

/// The registry behind `/metrics`.
pub fn registry(engine: Shared) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(EngineCollector(engine)));
    registry
}

/// The scrape, in OpenMetrics text, or in the Prometheus text format 0.0.4 (no `# EOF`,
/// counter families named with their `_total` suffix).
pub fn render(registry: &Registry, openmetrics: bool) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("writing to a String cannot fail");
    if openmetrics {
        return text;
    }
    let mut counters = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(text.len());
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
    let registry = std::sync::Arc::new(registry(std::sync::Arc::clone(&engine)));
    crate::http::serve(listener, move |request, _| {
        let (registry, engine) = (
            std::sync::Arc::clone(&registry),
            std::sync::Arc::clone(&engine),
        );
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
                    let text = tokio::task::spawn_blocking(move || render(&registry, openmetrics))
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
