//! Commands answered by the running daemon over the control socket.

use std::{path::Path, time::Duration};

use serde_json::{json, Value};

use super::{
    table::{human, render},
    BlockCommand, Command, DetachArgs, ExceptionsCommand, OrdersCommand, EXIT_REFUSED,
};
use crate::{
    control::{self, report, Request, Response},
    daemon::audit::{prefixes::PrefixChanges, query::PrefixHistory, Origin, Record},
    orders::edit::Edit,
};

/// Long enough for a sync of a million prefixes on a slow machine.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

fn ask(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    Ok(control::call(socket, request, CALL_TIMEOUT)?)
}

/// Prints a response: the result through `render` (or as JSON), or the error on stderr.
fn show<T: serde::de::DeserializeOwned>(
    response: Response,
    json: bool,
    render: impl FnOnce(T) -> String,
) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(if response.ok { 0 } else { EXIT_REFUSED });
    }
    if !response.ok {
        eprintln!("borderfilter: {}", response.error.unwrap_or_default());
        return Ok(EXIT_REFUSED);
    }
    let value: T = serde_json::from_value(response.result)?;
    print!("{}", render(value));
    Ok(0)
}

pub fn run(socket: &Path, command: Command, json: bool) -> anyhow::Result<i32> {
    match command {
        Command::Status => show(ask(socket, &Request::Status)?, json, render_status),
        Command::Orders(OrdersCommand::List) => {
            show(ask(socket, &Request::OrdersList)?, json, render_orders)
        }
        Command::Orders(OrdersCommand::Show { id }) => show(
            ask(socket, &Request::OrdersShow { id })?,
            json,
            render_order,
        ),
        Command::Orders(OrdersCommand::Add(a)) => {
            let mut order = json!({
                "id": a.id, "authority": a.authority, "issued": a.issued, "action": a.action,
            });
            let fields = order.as_object_mut().expect("an object");
            if !a.prefixes.is_empty() || a.domains.is_empty() {
                fields.insert("prefixes".into(), json!(a.prefixes));
            }
            if !a.domains.is_empty() {
                fields.insert("domains".into(), json!(a.domains));
            }
            if a.allow_shared {
                fields.insert("allow_shared".into(), Value::Bool(true));
            }
            for (key, value) in [
                ("valid_from", a.valid_from),
                ("expires", a.expires),
                ("basis", a.basis),
                ("direction", a.direction),
                ("note", a.note),
            ] {
                if let Some(v) = value {
                    fields.insert(key.into(), Value::String(v));
                }
            }
            if a.allow_broad {
                fields.insert("allow_broad".into(), Value::Bool(true));
            }
            edit(socket, Edit::AddOrder { order }, a.force.force, json)
        }
        Command::Orders(OrdersCommand::Remove { id, force }) => {
            edit(socket, Edit::RemoveOrder { id }, force.force, json)
        }
        Command::Block(BlockCommand::Add(b)) => edit(
            socket,
            Edit::AddPrefixes {
                order: b.order,
                prefixes: b.prefixes,
            },
            b.force.force,
            json,
        ),
        Command::Block(BlockCommand::Remove(b)) => edit(
            socket,
            Edit::RemovePrefixes {
                order: b.order,
                prefixes: b.prefixes,
            },
            b.force.force,
            json,
        ),
        Command::Exceptions(ExceptionsCommand::Add { prefix, reason }) => {
            edit(socket, Edit::AddException { prefix, reason }, false, json)
        }
        Command::Exceptions(ExceptionsCommand::Remove { prefix, force }) => {
            edit(socket, Edit::RemoveException { prefix }, force.force, json)
        }
        Command::Check(c) => show(
            ask(socket, &Request::Check { address: c.address })?,
            json,
            render_check,
        ),
        Command::Stats(s) => match s.watch {
            None => show(ask(socket, &Request::Stats)?, json, |st: report::Stats| {
                render_stats(&st, None)
            }),
            Some(seconds) => watch_stats(socket, seconds.max(1), json),
        },
        Command::Reload(f) => show(
            ask(socket, &Request::Reload { force: f.force })?,
            json,
            render_change,
        ),
        Command::Audit(a) => match a.prefix {
            Some(prefix) => show(
                ask(
                    socket,
                    &Request::AuditPrefix {
                        prefix,
                        since: a.since,
                    },
                )?,
                json,
                render_prefix_history,
            ),
            None => show(
                ask(
                    socket,
                    &Request::Audit {
                        since: a.since,
                        order: a.order,
                    },
                )?,
                json,
                render_audit,
            ),
        },
        Command::Run(_)
        | Command::Validate(_)
        | Command::Verify(_)
        | Command::Detach(_)
        | Command::Notice(_)
        | Command::Doctor(_)
        | Command::Publish(_)
        | Command::Fleet(_)
        | Command::Generate(_) => {
            unreachable!("dispatched elsewhere")
        }
    }
}

fn edit(socket: &Path, edit: Edit, force: bool, json: bool) -> anyhow::Result<i32> {
    show(
        ask(socket, &Request::Edit { edit, force })?,
        json,
        render_change,
    )
}

/// `detach`: through the daemon when one runs, else directly on the pins.
pub fn detach(socket: &Path, args: &DetachArgs, json: bool) -> anyhow::Result<i32> {
    if !args.yes {
        eprintln!(
            "borderfilter: detach removes the filter from every interface and stops enforcing every order.\n\
             Run again with --yes to confirm. To stop the daemon but keep enforcing, stop the service instead."
        );
        return Ok(EXIT_REFUSED);
    }
    match control::call(socket, &Request::Detach, CALL_TIMEOUT) {
        Ok(response) => show(response, json, |ifaces: Vec<String>| {
            format!(
                "detached from {} and stopped the daemon; nothing is enforced now\n",
                list_or_none(&ifaces)
            )
        }),
        Err(control::ClientError::NotRunning { .. }) => {
            let ifaces = crate::dataplane::detach_pinned(&args.pin_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&Response::ok(&ifaces))?);
            } else {
                println!(
                    "no daemon was running; detached from {} and removed the pins in {}",
                    list_or_none(&ifaces),
                    args.pin_dir.display()
                );
            }
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "no interface".into()
    } else {
        items.join(", ")
    }
}

fn render_status(s: report::Status) -> String {
    let mut out = format!(
        "borderfilter {}: {}\n",
        s.version,
        if s.in_sync {
            "in sync with the order list"
        } else {
            "NOT in sync with the order list"
        }
    );
    out += &format!("  order list  {}\n", s.orders_file);
    if let Some(e) = &s.file_error {
        out += &format!("              cannot be read: {e}\n");
    }
    if let Some(p) = &s.source_problem {
        out += &format!("              {p}; enforcing the list in force meanwhile\n");
    }
    let attached: Vec<String> = s
        .attached
        .iter()
        .map(|a| format!("{} ({})", a.iface, a.mode))
        .collect();
    out += &format!(
        "  attached    {}\n",
        if attached.is_empty() {
            "nothing".into()
        } else {
            attached.join(", ")
        }
    );
    out += &format!("  pins        {}\n", s.pin_dir);
    match &s.applied {
        Some(a) => {
            out += &format!(
                "  in force    sha256 {} since {} ({})\n",
                &a.sha256[..16.min(a.sha256.len())],
                a.applied_at,
                a.origin
            );
            out += &format!(
                "  orders      {} active, {} pending, {} expired; {} exception(s)\n",
                a.orders_active, a.orders_pending, a.orders_expired, a.exceptions
            );
            out += &format!(
                "  prefixes    {} IPv4, {} IPv6\n",
                a.prefixes_ipv4, a.prefixes_ipv6
            );
            for w in &a.warnings {
                out += &format!("  {w}\n");
            }
        }
        None => out += "  in force    no list applied yet\n",
    }
    if let Some(r) = &s.redirect {
        out += &format!(
            "  redirect    to {} via {}: {}\n",
            r.notice_host,
            r.iface,
            if r.ready {
                "ready".to_string()
            } else {
                format!(
                    "NOT ready, redirect orders drop ({})",
                    r.problem.as_deref().unwrap_or("?")
                )
            }
        );
    }
    if let Some(t) = &s.next_change {
        out += &format!("  next change {t}\n");
    }
    if let Some(n) = &s.names {
        out += &super::names_render::status(n);
    }
    if let Some(r) = &s.refusal {
        out += &format!(
            "REFUSED at {} ({}): the filter keeps the list in force.\n",
            r.at, r.origin
        );
        for p in &r.problems {
            out += &format!("  {p}\n");
        }
    }
    out
}

fn render_orders(rows: Vec<report::OrderRow>) -> String {
    if rows.is_empty() {
        return "no orders\n".into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.state.clone(),
                r.action.clone(),
                r.direction.clone(),
                if r.domains > 0 {
                    format!("{} + {} name(s)", r.prefixes, r.domains)
                } else {
                    r.prefixes.to_string()
                },
                human(r.packets),
                human(r.bytes),
                r.expires.clone().unwrap_or_else(|| "-".into()),
                r.authority.clone(),
            ]
        })
        .collect();
    render(
        &[
            "ID",
            "STATE",
            "ACTION",
            "DIR",
            "PREFIXES",
            "PACKETS",
            "BYTES",
            "EXPIRES",
            "AUTHORITY",
        ],
        &cells,
    )
}

fn render_order(o: report::OrderDetail) -> String {
    let r = &o.row;
    let mut out = format!("order {}\n", r.id);
    for (k, v) in [
        ("state", Some(r.state.clone())),
        ("action", Some(format!("{} ({})", r.action, r.direction))),
        ("authority", Some(r.authority.clone())),
        ("basis", r.basis.clone()),
        ("issued", Some(r.issued.clone())),
        ("valid from", r.valid_from.clone()),
        ("expires", r.expires.clone()),
        (
            "counted",
            Some(format!("{} packets, {} bytes", r.packets, r.bytes)),
        ),
        ("note", o.note.clone()),
    ] {
        if let Some(v) = v {
            out += &format!("  {k:<11}{v}\n");
        }
    }
    out += &format!("  prefixes   {}\n", o.prefix_list.len());
    for p in &o.prefix_list {
        out += &format!("    {p}\n");
    }
    out += &super::names_render::order_domains(&o.domains);
    out
}

fn render_check(c: report::CheckReport) -> String {
    let mut out = String::new();
    for s in &c.sides {
        let detail = match (&s.order, &s.exception_reason) {
            (Some(o), _) => format!(
                " by order {} ({}, {}{}), prefix {}",
                o.id,
                o.authority,
                o.basis
                    .as_deref()
                    .map(|b| format!("{b}, "))
                    .unwrap_or_default(),
                format_args!("issued {}", o.issued),
                s.prefix.as_deref().unwrap_or("?")
            ),
            (None, Some(reason)) => format!(
                " by exception {} ({reason})",
                s.prefix.as_deref().unwrap_or("?")
            ),
            (None, None) => " (no order covers it)".into(),
        };
        out += &format!(
            "{} as {}: {}{detail}{}\n",
            c.address,
            s.side,
            s.verdict,
            super::names_render::resolved_from(&s.resolved_from)
        );
    }
    out += &super::names_render::check_guarded(&c.guarded);
    if !c.dataplane_agrees {
        out += "WARNING: the kernel's maps give a different answer than the list in force; run `borderfilter reload` and report this\n";
    }
    out
}

fn render_change(r: report::ChangeReport) -> String {
    if r.result == "unchanged" {
        return "nothing to change: the list is already in force\n".into();
    }
    let mut out = format!(
        "applied in {} ms: prefixes +{} ~{} -{}",
        r.duration_ms, r.prefixes_added, r.prefixes_changed, r.prefixes_removed
    );
    for (label, ids) in [
        ("added", &r.orders_added),
        ("removed", &r.orders_removed),
        ("changed", &r.orders_changed),
    ] {
        if !ids.is_empty() {
            out += &format!("; orders {label}: {}", ids.join(", "));
        }
    }
    out.push('\n');
    for w in &r.warnings {
        out += &format!("{w}\n");
    }
    out
}

fn render_stats(s: &report::Stats, previous: Option<&report::Stats>) -> String {
    let seconds = previous
        .map(|p| (s.at_unix_ms.saturating_sub(p.at_unix_ms)) as f64 / 1000.0)
        .filter(|d| *d > 0.0);
    let rate = |now: u64, before: Option<u64>| match (seconds, before) {
        (Some(d), Some(b)) => format!("{}/s", human((now.saturating_sub(b) as f64 / d) as u64)),
        _ => "-".into(),
    };
    let orders: Vec<Vec<String>> = s
        .orders
        .iter()
        .map(|o| {
            let before = previous.and_then(|p| p.orders.iter().find(|x| x.id == o.id));
            vec![
                o.id.clone(),
                o.action.clone(),
                o.state.clone(),
                o.packets.to_string(),
                o.bytes.to_string(),
                rate(o.packets, before.map(|b| b.packets)),
            ]
        })
        .collect();
    let verdicts: Vec<Vec<String>> = s
        .verdicts
        .iter()
        .map(|v| {
            let before = previous.and_then(|p| p.verdicts.iter().find(|x| x.verdict == v.verdict));
            vec![
                v.verdict.clone(),
                v.packets.to_string(),
                v.bytes.to_string(),
                rate(v.packets, before.map(|b| b.packets)),
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        render(
            &["ORDER", "ACTION", "STATE", "PACKETS", "BYTES", "RATE"],
            &orders
        ),
        render(&["VERDICT", "PACKETS", "BYTES", "RATE"], &verdicts)
    )
}

fn watch_stats(socket: &Path, seconds: u64, json: bool) -> anyhow::Result<i32> {
    let mut previous: Option<report::Stats> = None;
    loop {
        let response = ask(socket, &Request::Stats)?;
        if !response.ok {
            eprintln!("borderfilter: {}", response.error.unwrap_or_default());
            return Ok(EXIT_REFUSED);
        }
        let stats: report::Stats = serde_json::from_value(response.result)?;
        if json {
            println!("{}", serde_json::to_string(&stats)?);
        } else {
            print!("\x1b[2J\x1b[H{}", render_stats(&stats, previous.as_ref()));
        }
        previous = Some(stats);
        std::thread::sleep(Duration::from_secs(seconds));
    }
}

fn who(origin: &Origin) -> String {
    match origin {
        Origin::Cli { uid, command, .. } => format!("uid {uid}: {command}"),
        Origin::Reload { uid, force, .. } => {
            format!("uid {uid}: reload{}", if *force { " --force" } else { "" })
        }
        other => other.name().to_string(),
    }
}

fn render_audit(records: Vec<Record>) -> String {
    if records.is_empty() {
        return "no recorded changes\n".into();
    }
    let cells: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let who = who(&r.who);
            let mut what = Vec::new();
            for (label, ids) in [
                ("started", &r.enforcement_started),
                ("ended", &r.enforcement_ended),
                ("added", &r.orders_added),
                ("removed", &r.orders_removed),
                ("changed", &r.orders_changed),
            ] {
                if !ids.is_empty() {
                    what.push(format!("{label} {}", ids.join(",")));
                }
            }
            what.push(format!(
                "prefixes +{} ~{} -{}",
                r.prefixes_added, r.prefixes_changed, r.prefixes_removed
            ));
            what.extend(r.prefixes.iter().map(prefix_summary));
            if let Some(file) = &r.prefixes_file {
                what.push(format!("which prefixes: {file}"));
            }
            what.extend(r.names.iter().map(super::names_render::audit_event));
            vec![
                r.time.clone(),
                who,
                r.sha256_after[..12.min(r.sha256_after.len())].to_string(),
                what.join("; "),
            ]
        })
        .collect();
    render(&["TIME", "WHO", "LIST", "WHAT"], &cells)
}

/// "ORDER +a,+b -c", at most `SHOWN` prefixes (the rest counted: `--json` has them all).
fn prefix_summary(c: &PrefixChanges) -> String {
    const SHOWN: usize = 3;
    let all = c
        .added
        .iter()
        .map(|p| format!("+{p}"))
        .chain(c.removed.iter().map(|p| format!("-{p}")));
    let mut text: Vec<String> = all.take(SHOWN).collect();
    if c.len() > SHOWN {
        text.push(format!("(+{} more)", c.len() - SHOWN));
    }
    format!("{} {}", holder(&c.order), text.join(","))
}

fn holder(order: &Option<String>) -> String {
    order.clone().unwrap_or_else(|| "(exception)".into())
}

fn render_prefix_history(h: PrefixHistory) -> String {
    let mut out = String::new();
    if h.now.is_empty() {
        out.push_str(&format!(
            "{}: nothing blocks or exempts it now, by the audit trail\n",
            h.query
        ));
    }
    for n in &h.now {
        let what = match &n.order {
            Some(id) => format!("blocked by order {id}"),
            None => "exempted by an exception".into(),
        };
        out.push_str(&format!(
            "{}: {what} through {} since {} ({})\n",
            h.query,
            n.prefix,
            n.since,
            who(&n.who)
        ));
    }
    for p in &h.problems {
        out.push_str(&format!("warning: {p}\n"));
    }
    if h.events.is_empty() {
        return out;
    }
    out.push('\n');
    let cells: Vec<Vec<String>> = h
        .events
        .iter()
        .map(|e| {
            vec![
                e.time.clone(),
                who(&e.who),
                holder(&e.order),
                e.change.clone(),
                e.prefix.to_string(),
            ]
        })
        .collect();
    out.push_str(&render(
        &["TIME", "WHO", "ORDER", "CHANGE", "PREFIX"],
        &cells,
    ));
    out
}
