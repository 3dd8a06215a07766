//! What the order list means for one address, stated as plainly as possible: a linear
//! scan of the list. It answers `borderfilter check` and is the reference model the
//! compiler is tested against.

use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    compile::Resolved,
    orders::{Action, OrderList, OrderState, Side},
    prefix::Prefix,
};

/// What happens to packets with a given address on a given side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Decision {
    /// No order and no exception covers the address.
    Pass,
    /// The longest exception covering the address outranks every order covering it.
    Exempt { exception: usize, prefix: Prefix },
    /// An order acts.
    Order {
        order: usize,
        id: String,
        action: Action,
        prefix: Prefix,
    },
}

/// The decision for `addr` looked up as `side` at `now`.
pub fn decide(list: &OrderList, now: OffsetDateTime, addr: IpAddr, side: Side) -> Decision {
    decide_with(list, now, addr, side, &Resolved::new())
}

/// [`decide`], with the addresses orders hold through their names: each counts as one
/// more prefix of its order.
pub fn decide_with(
    list: &OrderList,
    now: OffsetDateTime,
    addr: IpAddr,
    side: Side,
    resolved: &Resolved,
) -> Decision {
    let exception = list
        .exceptions
        .iter()
        .enumerate()
        .filter(|(_, e)| e.prefix.value.contains_addr(addr))
        .max_by_key(|(i, e)| (e.prefix.value.length(), std::cmp::Reverse(*i)));
    let floor = exception.map(|(_, e)| i16::from(e.prefix.value.length()));
    let best = list
        .orders
        .iter()
        .enumerate()
        .filter(|(_, o)| o.state(now) == OrderState::Active && o.direction().covers(side))
        .flat_map(|(i, o)| {
            o.prefixes
                .iter()
                .map(|p| p.value)
                .chain(resolved.get(&i).into_iter().flatten().copied())
                .map(move |p| (i, o, p))
        })
        .filter(|(_, _, p)| p.contains_addr(addr) && i16::from(p.length()) > floor.unwrap_or(-1))
        .max_by_key(|(i, o, p)| (o.action.strictness(), p.length(), std::cmp::Reverse(*i)));
    match (best, exception) {
        (Some((order, o, prefix)), _) => Decision::Order {
            order,
            id: o.id.clone(),
            action: o.action,
            prefix,
        },
        (None, Some((index, e))) => Decision::Exempt {
            exception: index,
            prefix: e.prefix.value,
        },
        (None, None) => Decision::Pass,
    }
}
