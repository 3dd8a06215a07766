//! What the fleet's routers say about themselves (`P/routers/<name>`, written by each
//! daemon that follows etcd): `fleet status` (which version each enforces, which lag,
//! refuse or went quiet) and `fleet audit --order ID` (since when each enforces it).

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{table::render, FleetAuditArgs, FleetStatusArgs, EXIT_REFUSED};
use crate::{
    daemon::source::etcd::RouterStatus,
    fleet::{Current, Fleet},
};

/// A report older than this means the router stopped reporting (it refreshes every
/// 2 s while it can reach etcd).
const STALE_AFTER_SECS: i64 = 10;

#[derive(Serialize)]
struct Row {
    router: String,
    /// `in sync`, `lagging`, `refusing`, `unreachable` or `stale`.
    state: &'static str,
    #[serde(flatten)]
    status: RouterStatus,
}

fn state(s: &RouterStatus, current: Option<&Current>, now: OffsetDateTime) -> &'static str {
    let age = time::OffsetDateTime::parse(
        &s.reported_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_or(i64::MAX, |t| (now - t).whole_seconds());
    if age > STALE_AFTER_SECS {
        "stale"
    } else if s.problem.is_some() {
        "unreachable"
    } else if s.enforcing.refusal.is_some() {
        "refusing"
    } else if current.is_some_and(|c| s.version == Some(c.version)) && s.enforcing.in_sync {
        "in sync"
    } else {
        "lagging"
    }
}

/// The current pointer and every router's report.
async fn read(
    fleet: &mut Fleet,
) -> anyhow::Result<(Option<Current>, Vec<RouterStatus>, Vec<String>)> {
    let current = fleet.current().await?;
    let mut routers = Vec::new();
    let mut bad = Vec::new();
    for (key, value) in fleet.routers().await? {
        match serde_json::from_str::<RouterStatus>(&value) {
            Ok(s) => routers.push(s),
            Err(e) => bad.push(format!("{key}: not a router report ({e})")),
        }
    }
    routers.sort_by(|a, b| a.router.cmp(&b.router));
    Ok((current, routers, bad))
}

pub fn status(args: &FleetStatusArgs, json: bool) -> anyhow::Result<i32> {
    super::fleet::runtime()?.block_on(async {
        let mut fleet = Fleet::connect(&args.etcd.options()).await?;
        let (current, routers, bad) = read(&mut fleet).await?;
        let now = OffsetDateTime::now_utc();
        let rows: Vec<Row> = routers
            .into_iter()
            .map(|s| Row {
                router: s.router.clone(),
                state: state(&s, current.as_ref(), now),
                status: s,
            })
            .collect();
        let all_well = !rows.is_empty() && rows.iter().all(|r| r.state == "in sync");
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "current": current, "routers": rows, "problems": bad,
                }))?
            );
        } else {
            match &current {
                Some(c) => println!("current version {} (sha256 {})", c.version, &c.sha256[..12]),
                None => println!("nothing published under {}", fleet.keys().prefix()),
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.router.clone(),
                        r.status.version.map_or("-".into(), |v| v.to_string()),
                        r.state.to_string(),
                        r.status.enforcing.applied_at.clone().unwrap_or_default(),
                        r.status.reported_at.clone(),
                        r.status
                            .problem
                            .clone()
                            .or_else(|| r.status.enforcing.refusal.clone())
                            .unwrap_or_default()
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    ]
                })
                .collect();
            if cells.is_empty() {
                println!("no router reports to {}", fleet.keys().routers());
            } else {
                print!(
                    "{}",
                    render(
                        &["ROUTER", "VERSION", "STATE", "APPLIED", "REPORTED", "WHY"],
                        &cells
                    )
                );
            }
            for b in &bad {
                eprintln!("warning: {b}");
            }
        }
        // Scripts and alerts: 1 unless every router enforces the current version.
        Ok(if all_well { 0 } else { EXIT_REFUSED })
    })
}

pub fn audit(args: &FleetAuditArgs, json: bool) -> anyhow::Result<i32> {
    super::fleet::runtime()?.block_on(async {
        let mut fleet = Fleet::connect(&args.etcd.options()).await?;
        let (_, routers, _) = read(&mut fleet).await?;
        let rows: Vec<(String, Option<String>)> = routers
            .iter()
            .map(|s| (s.router.clone(), s.enforcing.enforcing_since.get(&args.order).cloned()))
            .collect();
        if json {
            let v: Vec<_> = rows
                .iter()
                .map(|(r, since)| json!({"router": r, "order": args.order, "enforcing_since": since}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|(r, since)| {
                    vec![
                        r.clone(),
                        since.clone().unwrap_or_else(|| "not enforcing it".into()),
                    ]
                })
                .collect();
            println!("order {}:", args.order);
            print!("{}", render(&["ROUTER", "ENFORCING SINCE"], &cells));
        }
        Ok(0)
    })
}
