//! `borderfilter verify`: proves that the data plane enforces what the order list says.
//! It reads the pinned maps directly (no daemon needed), compiles the file as it stands
//! now, and compares them entry by entry, by order and action rather than by internal
//! rule number; it also checks the fast-path index against a fresh derivation. Its
//! `maps_sha256` names the maps' whole contents, so two runs show whether anything in
//! the data plane changed between them.

use std::{collections::BTreeMap, fmt::Write as _};

use filter_common::{action, types, Entry, Rule};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{VerifyArgs, EXIT_REFUSED};
use crate::{
    compile::{compile_with, fingerprint, Numbering, EXCEPTION_OWNER},
    daemon::names::{admit, book::Book, guard, store},
    dataplane::{Dataplane, LoadOptions, SHAPES},
    error_chain,
    fastpath::FastState,
    orders::{
        file, journal,
        validate::{check, Policy, RedirectTarget},
        OrderState,
    },
    prefix::{Family, Prefix},
    sync::Snapshot,
};

/// At most this many differences are listed.
const SHOWN: usize = 20;

#[derive(Debug, Serialize)]
struct Verdict {
    orders_file: String,
    list_sha256: Option<String>,
    /// Problems of the file; when it has errors the maps are not compared with it.
    list_errors: Vec<String>,
    pin_dir: String,
    entries: usize,
    maps_sha256: String,
    /// Entries that differ (at most 20 listed), and how many in all.
    differences: Vec<String>,
    differences_total: usize,
    fast_path_agrees: bool,
    /// Addresses the maps must hold because names in orders resolved to them (from
    /// `--names-state`, through the guard).
    resolved_addresses: usize,
    agrees: bool,
}

/// What a rule number stands for: the order's fingerprint and its action.
fn meaning(rules: &BTreeMap<u32, Rule>, number: u32) -> Option<(u64, u8)> {
    match number {
        types::NO_RULE => None,
        n => Some(
            rules
                .get(&n)
                .map_or((0, action::NONE), |r| (r.owner, r.action)),
        ),
    }
}

fn describe(
    rules: &BTreeMap<u32, Rule>,
    names: &BTreeMap<u64, String>,
    e: Option<&Entry>,
) -> String {
    let Some(e) = e else {
        return "absent".into();
    };
    let side = |n: u32| match meaning(rules, n) {
        None => "pass".to_string(),
        Some((EXCEPTION_OWNER, _)) => "exempt".to_string(),
        Some((owner, code)) => format!(
            "{} by {}",
            action_name(code),
            names
                .get(&owner)
                .cloned()
                .unwrap_or_else(|| format!("an order not in the file ({owner:016x})"))
        ),
    };
    format!("dst {}, src {}", side(e.dst_rule), side(e.src_rule))
}

fn action_name(code: u8) -> &'static str {
    match code {
        action::DROP => "drop",
        action::REDIRECT => "redirect",
        action::MONITOR => "monitor",
        action::EXEMPT => "exempt",
        _ => "nothing (a free rule slot)",
    }
}

/// The digest of the maps' entries and rules.
fn maps_digest(held: &Snapshot) -> String {
    let mut h = Sha256::new();
    for (p, e) in &held.entries {
        h.update(format!("{p} {} {}\n", e.dst_rule, e.src_rule));
    }
    for (n, r) in &held.rules {
        h.update(format!("rule {n} {} {:016x}\n", r.action, r.owner));
    }
    h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn verify(args: &VerifyArgs, json: bool) -> anyhow::Result<i32> {
    if let Some(missing) = SHAPES
        .iter()
        .map(|s| args.pin_dir.join(s.name))
        .find(|p| !p.exists())
    {
        anyhow::bail!(
            "{} is missing: there is no pinned filter in {} (is the daemon's --pin-dir another one?)",
            missing.display(),
            args.pin_dir.display()
        );
    }
    let dataplane = Dataplane::load(&LoadOptions {
        pin_dir: Some(args.pin_dir.clone()),
        v4_capacity: filter_common::maps::DEFAULT_PREFIX_CAPACITY,
        v6_capacity: filter_common::maps::DEFAULT_PREFIX_CAPACITY,
    })
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let held = Snapshot::read(dataplane.maps()).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    let mut verdict = Verdict {
        orders_file: args.orders.display().to_string(),
        list_sha256: None,
        list_errors: Vec::new(),
        pin_dir: args.pin_dir.display().to_string(),
        entries: held.entries.len(),
        maps_sha256: maps_digest(&held),
        differences: Vec::new(),
        differences_total: 0,
        fast_path_agrees: FastState::derive(&held.entries) == held.fast,
        resolved_addresses: 0,
        agrees: false,
    };
    compare(args, &dataplane, &held, &mut verdict);
    verdict.agrees = verdict.list_errors.is_empty()
        && verdict.differences_total == 0
        && verdict.fast_path_agrees;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print_verdict(&verdict);
    }
    Ok(if verdict.agrees { 0 } else { EXIT_REFUSED })
}

fn compare(args: &VerifyArgs, dataplane: &Dataplane, held: &Snapshot, verdict: &mut Verdict) {
    let (orders, max_bytes) = (&args.orders, args.max_list_bytes);
    // The file with the CLI edits its journal still holds (a daemon killed before it
    // wrote them into the file): what the daemon enforces.
    let bytes = match journal::read_with_journal(orders, max_bytes) {
        Ok(r) => r.bytes,
        Err(e) => {
            verdict
                .list_errors
                .push(format!("error: {}", error_chain(&e)));
            return;
        }
    };
    verdict.list_sha256 = Some(file::digest(&bytes));
    let maps = dataplane.maps();
    let policy = Policy {
        protect: Vec::new(),
        redirect: RedirectTarget::Unknown,
        capacity_v4: maps.capacity(Family::V4).unwrap_or(u32::MAX),
        capacity_v6: maps.capacity(Family::V6).unwrap_or(u32::MAX),
    };
    let (list, problems) = check(&bytes, &policy);
    let Some(list) = list else {
        verdict.list_errors = problems.0.iter().map(|p| p.to_string()).collect();
        return;
    };
    // The addresses names resolved to, as the daemon recorded them, through the guard.
    let now = OffsetDateTime::now_utc();
    let resolved = match names_guard(args) {
        Ok((book, guard)) => {
            let active = |i: usize| list.orders[i].state(now) == OrderState::Active;
            let resolved = admit(&list, active, &book, &guard).resolved;
            verdict.resolved_addresses = resolved.values().map(|s| s.len()).sum();
            resolved
        }
        Err(e) => {
            verdict
                .list_errors
                .push(format!("error: {}", error_chain(e.as_ref())));
            return;
        }
    };
    let compiled = match compile_with(&list, now, &Numbering::from_rules(&held.rules), &resolved) {
        Ok(c) => c,
        Err(e) => {
            verdict.list_errors.push(format!("error: {e}"));
            return;
        }
    };
    let names: BTreeMap<u64, String> = list
        .orders
        .iter()
        .map(|o| (fingerprint(&o.id), o.id.clone()))
        .collect();
    let same = |a: Option<&Entry>, b: Option<&Entry>| match (a, b) {
        (Some(a), Some(b)) => {
            meaning(&held.rules, a.dst_rule) == meaning(&compiled.rules, b.dst_rule)
                && meaning(&held.rules, a.src_rule) == meaning(&compiled.rules, b.src_rule)
        }
        (None, None) => true,
        _ => false,
    };
    let prefixes: std::collections::BTreeSet<&Prefix> =
        held.entries.keys().chain(compiled.entries.keys()).collect();
    for p in prefixes {
        let (h, c) = (held.entries.get(p), compiled.entries.get(p));
        if !same(h, c) {
            verdict.differences_total += 1;
            if verdict.differences.len() < SHOWN {
                verdict.differences.push(format!(
                    "{p}: the maps hold {}; the file says {}",
                    describe(&held.rules, &names, h),
                    describe(&compiled.rules, &names, c)
                ));
            }
        }
    }
}

/// The daemon's book of names and its guard, from the options that mirror `run`'s.
fn names_guard(args: &VerifyArgs) -> anyhow::Result<(Book, guard::Guard)> {
    let book = store::load(&args.names_state)?;
    let guard = guard::Guard::load(args.protect.clone(), args.shared_ranges.as_deref())?;
    Ok((book, guard))
}

fn print_verdict(v: &Verdict) {
    println!(
        "maps in {}: {} entries, sha256 {}",
        v.pin_dir, v.entries, v.maps_sha256
    );
    if !v.list_errors.is_empty() {
        println!("{} cannot be compared: it has errors", v.orders_file);
        for e in &v.list_errors {
            println!("  {e}");
        }
    } else if v.differences_total == 0 {
        println!(
            "the maps enforce exactly what {} says (sha256 {}){}",
            v.orders_file,
            v.list_sha256.as_deref().unwrap_or("?"),
            if v.resolved_addresses > 0 {
                format!(
                    ", with the {} address(es) its names resolved to",
                    v.resolved_addresses
                )
            } else {
                String::new()
            }
        );
    } else {
        println!(
            "{} entries differ from what {} says{}:",
            v.differences_total,
            v.orders_file,
            if v.differences_total > SHOWN {
                " (the first 20)"
            } else {
                ""
            }
        );
        for d in &v.differences {
            println!("  {d}");
        }
    }
    if v.fast_path_agrees {
        println!("the fast-path index agrees with the prefix maps");
    } else {
        println!("the fast-path index does NOT agree with the prefix maps: restart the daemon (it rebuilds the index)");
    }
}
