//! The rules that make a well-formed list safe to deploy: unique ids, no over-broad or
//! protected prefixes, a redirect target for redirect orders, room in the maps.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    edit::Done,
    problem::{show, Place, Problems},
    Action, Exception, Order, OrderList,
};
use crate::prefix::{Family, Prefix};

/// Shortest prefix an order may list without `allow_broad`.
pub const MIN_LEN_V4: u8 = 16;
pub const MIN_LEN_V6: u8 = 32;

/// Ranges no order may touch, whatever the options: blocking them cuts the router off
/// its neighbours (routing protocols, neighbour discovery) rather than a service.
pub const ALWAYS_PROTECTED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" addresses (RFC 1122)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "IPv4 link-local"),
    ("224.0.0.0/4", "IPv4 multicast (OSPF, VRRP, PIM)"),
    ("255.255.255.255/32", "limited broadcast"),
    ("::/128", "the unspecified IPv6 address"),
    ("::1/128", "IPv6 loopback"),
    ("fe80::/10", "IPv6 link-local"),
    ("ff00::/8", "IPv6 multicast (neighbour discovery, OSPFv3)"),
];

/// Whether the daemon has somewhere to send redirected packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectTarget {
    Configured,
    NotConfigured,
    /// Offline validation: the deployment is not known, so redirect orders pass here and
    /// the daemon checks them again.
    Unknown,
}

/// The deployment's settings that validation depends on.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The operator's `--protect` ranges (management network, resolvers, exchanges).
    pub protect: Vec<Prefix>,
    pub redirect: RedirectTarget,
    pub capacity_v4: u32,
    pub capacity_v6: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            protect: Vec::new(),
            redirect: RedirectTarget::Unknown,
            capacity_v4: filter_common::maps::DEFAULT_PREFIX_CAPACITY,
            capacity_v6: filter_common::maps::DEFAULT_PREFIX_CAPACITY,
        }
    }
}

fn protected(policy: &Policy) -> Vec<(Prefix, String)> {
    let builtin = ALWAYS_PROTECTED.iter().map(|(p, why)| {
        (
            p.parse::<Prefix>().expect("built-in ranges are valid"),
            (*why).to_string(),
        )
    });
    let operator = policy
        .protect
        .iter()
        .map(|p| (*p, "a range protected with --protect".to_string()));
    builtin.chain(operator).collect()
}

/// Checks `list` against `policy`. Parsing problems are reported by `parse`; this adds
/// the rest.
pub fn validate(list: &OrderList, policy: &Policy) -> Problems {
    let orders: Vec<(usize, &Order, Option<&[usize]>)> = list
        .orders
        .iter()
        .enumerate()
        .map(|(i, o)| (i, o, None))
        .collect();
    let exceptions: Vec<(usize, &Exception)> = list.exceptions.iter().enumerate().collect();
    validate_parts(&orders, &exceptions, policy)
}

/// An error when a list of `count` orders needs more rule numbers than the data plane has.
fn check_order_room(p: &mut Problems, count: usize) {
    let room =
        (filter_common::maps::RULE_CAPACITY - filter_common::types::FIRST_ORDER_RULE) as usize;
    if count > room {
        p.error(
            &Place::File {
                line: None,
                column: None,
            },
            "orders".to_string(),
            None,
            format!("{count} orders; the data plane has room for {room}"),
        );
    }
}

/// [`validate`] for a list that was valid before `done` was made to it: checks only
/// what the edit added. Capacity is the caller's: it knows how many entries are in use.
pub fn validate_edit(list: &OrderList, done: &Done, policy: &Policy) -> Problems {
    let mut p = Problems::default();
    match done {
        Done::AddedOrder => {
            let index = list.orders.len() - 1;
            check_order_room(&mut p, list.orders.len());
            p.extend(validate_parts(
                &[(index, &list.orders[index], None)],
                &[],
                policy,
            ));
        }
        Done::AddedPrefixes(index, before) => {
            let order = &list.orders[*index];
            let added = Order {
                id: order.id.clone(),
                authority: order.authority.clone(),
                issued: order.issued.clone(),
                valid_from: order.valid_from.clone(),
                expires: order.expires.clone(),
                basis: order.basis.clone(),
                action: order.action,
                direction: order.direction,
                prefixes: order.prefixes[*before..].to_vec(),
                domains: Vec::new(),
                allow_broad: order.allow_broad,
                allow_shared: order.allow_shared,
                note: None,
            };
            let positions: Vec<usize> = (*before..order.prefixes.len()).collect();
            p.extend(validate_parts(
                &[(*index, &added, Some(&positions))],
                &[],
                policy,
            ));
        }
        Done::AddedException => {
            let index = list.exceptions.len() - 1;
            p.extend(validate_parts(
                &[],
                &[(index, &list.exceptions[index])],
                policy,
            ));
        }
        Done::Nothing
        | Done::RemovedOrder(..)
        | Done::RemovedPrefixes(..)
        | Done::RemovedExceptions(..) => {}
    }
    p
}

/// [`validate`] on orders and exceptions given with their index in the file.
fn validate_parts(
    orders: &[(usize, &Order, Option<&[usize]>)],
    exceptions: &[(usize, &Exception)],
    policy: &Policy,
) -> Problems {
    let mut p = Problems::default();
    check_order_room(&mut p, orders.len());
    let id_of = |index: usize| {
        orders
            .iter()
            .find(|(i, _, _)| *i == index)
            .map(|(_, o, _)| o.id.clone())
            .unwrap_or_default()
    };
    let protected = protected(policy);
    let mut first_with_id: HashMap<&str, usize> = HashMap::new();
    // The order that first listed each prefix.
    let mut first_listing: HashMap<Prefix, usize> = HashMap::new();

    for &(index, order, positions) in orders {
        let place = Place::Order {
            index,
            id: Some(order.id.clone()),
        };
        if let Some(first) = first_with_id.insert(&order.id, index) {
            first_with_id.insert(&order.id, first);
            p.error(
                &place,
                "id".to_string(),
                show(&Value::String(order.id.clone())),
                format!("duplicates the id of orders[{first}]; ids must be unique"),
            );
        }
        if order.action == Action::Redirect && policy.redirect == RedirectTarget::NotConfigured {
            p.error(&place, "action".to_string(), "\"redirect\"".to_string(),
                "no redirect target is configured: start the daemon with --redirect-iface and --redirect-mac or --redirect-neighbor, or use drop");
        }
        for (i, listed) in order.prefixes.iter().enumerate() {
            // Built only when there is something to report: lists have a million prefixes.
            let field = || format!("prefixes[{}]", positions.map_or(i, |p| p[i]));
            let value = || show(&Value::String(listed.text.clone()));
            let prefix = listed.value;
            if prefix.length() == 0 {
                p.error(
                    &place,
                    field(),
                    value(),
                    "a /0 covers the whole address family and is never allowed",
                );
                continue;
            }
            let min = match prefix.family() {
                Family::V4 => MIN_LEN_V4,
                Family::V6 => MIN_LEN_V6,
            };
            if prefix.length() < min && !order.allow_broad() {
                p.error(&place, field(), value(), format!(
                    "broader than /{min} ({} addresses); if the order really covers all of it, set \"allow_broad\": true on the order",
                    prefix.size()));
            }
            for (range, why) in &protected {
                if range.overlaps(&prefix) {
                    p.error(&place, field(), value(), format!("overlaps {range}, {why}"));
                }
            }
            match first_listing.entry(prefix) {
                std::collections::hash_map::Entry::Occupied(o) => {
                    let first = *o.get();
                    let other = if first == index {
                        "earlier in this order".to_string()
                    } else {
                        format!("by order {:?} (orders[{first}])", id_of(first))
                    };
                    p.warning(
                        &place,
                        field(),
                        value(),
                        format!("{prefix} is also listed {other}; the strictest action applies"),
                    );
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(index);
                }
            }
        }
    }

    let mut exception_seen: HashMap<Prefix, usize> = HashMap::new();
    for &(index, exception) in exceptions {
        let place = Place::Exception { index };
        let prefix = exception.prefix.value;
        let value = show(&Value::String(exception.prefix.text.clone()));
        if prefix.length() == 0 {
            p.error(
                &place,
                "prefix".to_string(),
                value,
                "a /0 exception would exempt the whole address family; never allowed",
            );
            continue;
        }
        if let Some(first) = exception_seen.insert(prefix, index) {
            exception_seen.insert(prefix, first);
            p.warning(
                &place,
                "prefix".to_string(),
                value,
                format!("duplicates exceptions[{first}]"),
            );
        }
    }

    for (family, capacity) in [
        (Family::V4, policy.capacity_v4),
        (Family::V6, policy.capacity_v6),
    ] {
        // Order prefixes are distinct keys already; add the exceptions they do not list.
        let entries = first_listing
            .keys()
            .filter(|p| p.family() == family)
            .count()
            + exception_seen
                .keys()
                .filter(|p| p.family() == family && !first_listing.contains_key(p))
                .count();
        if entries > capacity as usize {
            p.error(&Place::File { line: None, column: None }, None, None, format!(
                "{entries} distinct {} prefixes (orders and exceptions) exceed the map capacity of {capacity}; raise --capacity-{} (takes effect after a detach)",
                family.name(), if family == Family::V4 { "v4" } else { "v6" }));
        }
    }
    p
}

/// Parses and validates in one go, as the daemon and `borderfilter validate` do.
pub fn check(bytes: &[u8], policy: &Policy) -> (Option<OrderList>, Problems) {
    let (list, partial, mut problems) = super::parse::parse_partial(bytes);
    // Policy checks run on whatever parsed, so one pass shows every problem.
    let orders: Vec<(usize, &Order, Option<&[usize]>)> = partial
        .orders
        .iter()
        .map(|(i, o, p)| (*i, o, p.as_deref()))
        .collect();
    let exceptions: Vec<(usize, &Exception)> =
        partial.exceptions.iter().map(|(i, e)| (*i, e)).collect();
    problems.extend(validate_parts(&orders, &exceptions, policy));
    if problems.has_errors() {
        (None, problems)
    } else {
        (list, problems)
    }
}
