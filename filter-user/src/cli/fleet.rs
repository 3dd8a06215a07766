//! Commands on the fleet's list in etcd: `publish` and `fleet pull` (`fleet_status`:
//! what the routers report).

use std::io::Write;

use anyhow::Context;
use serde_json::json;
use time::OffsetDateTime;

use super::{PublishArgs, PullArgs, EXIT_REFUSED};
use crate::{
    compile::{compile, Numbering},
    daemon::engine::needs_force,
    fleet::{Base, Fleet},
    orders::{
        file,
        validate::{check as check_list, Policy},
        OrderList,
    },
    sync::Snapshot,
};

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn publish(args: &PublishArgs, json: bool) -> anyhow::Result<i32> {
    // Validation first, as `borderfilter validate` does it: all or nothing.
    let bytes = file::read(&args.file, args.max_list_bytes)?;
    let (list, problems) = check_list(&bytes, &Policy::default());
    let Some(list) = list else {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"published": false, "problems": problems}))?
            );
        } else {
            eprint!("{problems}");
        }
        eprintln!(
            "{}: {} error(s); nothing was published",
            args.file.display(),
            problems.error_count()
        );
        return Ok(EXIT_REFUSED);
    };
    if !json {
        eprint!("{problems}");
    }
    runtime()?.block_on(async {
        let mut fleet = Fleet::connect(&args.etcd.options()).await?;
        // What is current now: the guard compares with it, and the publish is based on it.
        let current = fleet.current().await?;
        let base = match (args.base, args.base_any, &current) {
            (Some(n), _, _) => Base::Version(n),
            // "Whatever is current when the publish starts": what the guard saw.
            (None, true, Some(c)) => Base::Version(c.version),
            (None, true, None) => Base::Empty,
            (None, false, _) => Base::Empty,
        };
        let stale = match (base, &current) {
            (Base::Version(b), Some(c)) => b != c.version,
            (Base::Version(_), None) | (Base::Empty, Some(_)) => true,
            _ => false,
        };
        if stale {
            // Refused before anything is written or compared.
            return Err(crate::fleet::FleetError::Stale {
                base,
                current: current.as_ref().map(|c| c.version),
            }
            .into());
        }
        if let (Some(c), false) = (&current, args.force) {
            let before = fleet.fetch(c.version).await.with_context(|| {
                format!(
                    "reading version {} (current) for the mass-removal guard; --force publishes without comparing",
                    c.version
                )
            })?;
            if let Some(message) = guard(&before.bytes, &list, c.version) {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &json!({"published": false, "needs_force": true, "error": message})
                        )?
                    );
                }
                eprintln!("error: {message}");
                return Ok(EXIT_REFUSED);
            }
        }
        let published = fleet.publish_report(&bytes, base, args.keep).await?;
        if let Some(problem) = &published.cleanup_problem {
            eprintln!("warning: version {} is current, but removing old versions failed: {problem}", published.version);
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&published)?);
        } else {
            println!(
                "published version {} (sha256 {}, {} bytes in {} chunk(s), based on {}){}",
                published.version,
                published.sha256,
                published.size,
                published.chunks,
                published
                    .base
                    .map_or("nothing".to_string(), |b| format!("version {b}")),
                match (published.removed_versions.as_slice(), published.removed_chunks) {
                    ([], 0) => String::new(),
                    (v, c) => format!(
                        "; removed {} old version(s) and {c} chunk(s)",
                        v.len()
                    ),
                }
            );
        }
        Ok(0)
    })
}

/// The mass-removal guard between the list `before` (version `version`) and `after`,
/// as a router applies it: `Some(message)` when the change needs --force.
fn guard(before: &[u8], after: &OrderList, version: u64) -> Option<String> {
    let now = OffsetDateTime::now_utc();
    let (Some(old), _) = check_list(before, &Policy::default()) else {
        // A current version that does not validate enforces nothing to protect.
        return None;
    };
    let old = compile(&old, now, &Numbering::default()).ok()?;
    let new = compile(after, now, &Numbering::default()).ok()?;
    let (enforced, dropped) =
        Snapshot::new(old.entries, old.rules).blocking_dropped(&new.entries, &new.rules);
    needs_force(enforced, dropped).then(|| {
        format!(
            "this list would stop enforcing {dropped} of the {enforced} prefixes version {version} enforces (more than half); \
             if that is intended, publish it with --force"
        )
    })
}

pub fn pull(args: &PullArgs, json: bool) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let mut fleet = Fleet::connect(&args.etcd.options()).await?;
        let fetched = match args.version {
            Some(n) => fleet.fetch(n).await?,
            None => match fleet.fetch_current().await? {
                Some((_, f)) => f,
                None => {
                    eprintln!(
                        "error: nothing is published under {} (publish a list with borderfilter publish)",
                        fleet.keys().prefix()
                    );
                    return Ok(EXIT_REFUSED);
                }
            },
        };
        if json {
            let mut v = serde_json::to_value(&fetched)?;
            v["size"] = json!(fetched.bytes.len());
            v["list"] = json!(String::from_utf8_lossy(&fetched.bytes));
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            std::io::stdout()
                .lock()
                .write_all(&fetched.bytes)
                .context("writing the list to stdout")?;
            eprintln!(
                "version {} (sha256 {}, {} bytes, published {} by {}); to publish an edited copy: --base {}",
                fetched.version,
                fetched.sha256,
                fetched.bytes.len(),
                fetched.published_at,
                fetched.published_by,
                fetched.version
            );
        }
        Ok(0)
    })
}
