//! How the CLI shows names in orders: in `status`, `orders show` and `check`.

use crate::{
    control::report::{DomainDetail, GuardedReport, NamesStatus, ResolvedFrom},
    daemon::audit::NameEvent,
};

/// The names part of `status`.
pub fn status(n: &NamesStatus) -> String {
    let mut out = format!(
        "  names       {} name(s) via {}: {} address(es) current, {} in grace\n",
        n.names,
        n.resolvers.join(", "),
        n.addresses_current,
        n.addresses_in_grace
    );
    if let Some(p) = &n.problem {
        out += &format!("              PROBLEM: {p}\n");
    }
    for f in &n.failing {
        out += &format!(
            "              FAILING {} ({}): {} since {}, {} attempt(s); its last known addresses stay blocked\n",
            f.name,
            f.orders.join(", "),
            f.error,
            f.since,
            f.attempts
        );
    }
    if !n.unresolved.is_empty() {
        out += &format!(
            "              not resolved yet (nothing blocked for them): {}\n",
            n.unresolved.join(", ")
        );
    }
    for g in &n.guarded {
        out += &format!("              {}\n", guarded_line(g));
    }
    out
}

fn guarded_line(g: &GuardedReport) -> String {
    format!(
        "NOT BLOCKED {}: {} (order {}) resolved to it, but {}",
        g.address,
        if g.names.is_empty() {
            "a name".to_string()
        } else {
            g.names.join(", ")
        },
        g.order,
        g.why
    )
}

/// The names part of `orders show`.
pub fn order_domains(domains: &[DomainDetail]) -> String {
    if domains.is_empty() {
        return String::new();
    }
    let mut out = format!("  domains    {}\n", domains.len());
    for d in domains {
        out += &format!(
            "    {}{}: {}\n",
            d.name,
            d.unicode
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default(),
            match (&d.resolved_at, d.ttl) {
                (Some(at), Some(ttl)) => format!(
                    "resolved {at} (TTL {ttl} s), next {}",
                    d.next_resolution.as_deref().unwrap_or("?")
                ),
                _ => "not resolved yet".into(),
            }
        );
        if let Some(f) = &d.failure {
            out += &format!(
                "      FAILING since {}: {} ({} attempt(s)); the addresses below stay blocked\n",
                f.since, f.error, f.attempts
            );
        }
        if d.dropped > 0 {
            out += &format!(
                "      the last answer held {} more address(es) than the limit of 64 per family: those are NOT blocked\n",
                d.dropped
            );
        }
        for a in &d.addresses {
            let state = match (a.state.as_str(), &a.grace_until, &a.guarded) {
                ("guarded", _, Some(why)) => format!("NOT BLOCKED: {why}"),
                ("grace", Some(until), _) => {
                    format!("no longer returned; blocked until {until} (grace)")
                }
                _ => "blocked".into(),
            };
            out += &format!(
                "      {:<39} first seen {}, last seen {} (TTL {}): {state}\n",
                a.address, a.first_seen, a.last_seen, a.ttl
            );
        }
    }
    out
}

/// Why a side of `check` holds through a name.
pub fn resolved_from(from: &[ResolvedFrom]) -> String {
    from.iter()
        .map(|r| {
            format!(
                "\n    because {} resolved to it (first seen {}, last seen {}, TTL {}){}",
                r.name,
                r.first_seen,
                r.last_seen,
                r.ttl,
                r.grace_until
                    .as_deref()
                    .map(|u| format!("; no longer returned, blocked until {u} (grace)"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// The addresses `check` found guarded.
pub fn check_guarded(guarded: &[GuardedReport]) -> String {
    guarded
        .iter()
        .map(|g| format!("{}\n", guarded_line(g)))
        .collect()
}

/// One name's event in an audit record: "allofmp3.com (TTL 300): +198.51.100.10 grace
/// 198.51.100.9 -198.51.100.8 NOT BLOCKED 203.0.113.10".
pub fn audit_event(e: &NameEvent) -> String {
    let mut parts = vec![match e.ttl {
        Some(ttl) => format!("{} (TTL {ttl}):", e.name),
        None => format!("{}:", e.name),
    }];
    parts.extend(e.added.iter().map(|a| format!("+{a}")));
    parts.extend(e.missing.iter().map(|a| format!("grace {a}")));
    parts.extend(e.released.iter().map(|a| format!("-{a}")));
    parts.extend(
        e.guarded
            .iter()
            .map(|g| format!("NOT BLOCKED {} ({})", g.address, g.order)),
    );
    parts.join(" ")
}
