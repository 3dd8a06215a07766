//! The changes the CLI makes to the order list. The daemon applies an edit to the list it
//! read from the file, validates the result like any list, and writes it back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::HashSet;

use super::{
    parse::{prefix_problem, read_order},
    problem::{Place, Problems},
    Exception, Listed, Order, OrderList,
};
use crate::prefix::Prefix;

/// One change, as the CLI sends it: values are the operator's text, parsed and checked
/// by the daemon exactly as if they were in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "edit", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// A new order: the object as it would appear in the file.
    AddOrder {
        order: Value,
    },
    RemoveOrder {
        id: String,
    },
    AddPrefixes {
        order: String,
        prefixes: Vec<String>,
    },
    RemovePrefixes {
        order: String,
        prefixes: Vec<String>,
    },
    AddException {
        prefix: String,
        reason: String,
    },
    RemoveException {
        prefix: String,
    },
}

/// Why an edit cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("no order with id {0:?}")]
    NoSuchOrder(String),
    #[error("an order with id {0:?} already exists")]
    OrderExists(String),
    #[error("order {order:?} does not list {prefix}")]
    NotListed { order: String, prefix: String },
    #[error("removing these prefixes would leave order {0:?} with none; remove the order instead")]
    WouldEmpty(String),
    #[error("no exception for {0}")]
    NoSuchException(String),
    #[error("{}", .0.to_string().trim_end())]
    Invalid(Problems),
}

fn parse_prefix(text: &str, field: &str, problems: &mut Problems) -> Option<Prefix> {
    match text.parse::<Prefix>() {
        Ok(p) => Some(p),
        Err(e) => {
            problems.error(
                &Place::Argument,
                field.to_string(),
                format!("{text:?}"),
                prefix_problem(&e),
            );
            None
        }
    }
}

fn parse_all(texts: &[String]) -> Result<Vec<Listed<Prefix>>, EditError> {
    let mut problems = Problems::default();
    let parsed: Vec<_> = texts
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            parse_prefix(t, &format!("prefix #{}", i + 1), &mut problems).map(|value| Listed {
                text: t.clone(),
                value,
            })
        })
        .collect();
    if problems.has_errors() {
        Err(EditError::Invalid(problems))
    } else {
        Ok(parsed)
    }
}

impl Edit {
    /// A short description for logs and the audit trail.
    pub fn describe(&self) -> String {
        match self {
            Edit::AddOrder { order } => format!(
                "add order {}",
                order.get("id").and_then(Value::as_str).unwrap_or("?")
            ),
            Edit::RemoveOrder { id } => format!("remove order {id}"),
            Edit::AddPrefixes { order, prefixes } => {
                format!("add {} prefix(es) to order {order}", prefixes.len())
            }
            Edit::RemovePrefixes { order, prefixes } => {
                format!("remove {} prefix(es) from order {order}", prefixes.len())
            }
            Edit::AddException { prefix, .. } => format!("add exception {prefix}"),
            Edit::RemoveException { prefix } => format!("remove exception {prefix}"),
        }
    }

    /// The list with this edit made. Policy checks (protected ranges, broad prefixes,
    /// capacity) are the caller's, on the whole result.
    pub fn apply(&self, list: &OrderList) -> Result<OrderList, EditError> {
        let mut out = list.clone();
        self.apply_in_place(&mut out)?;
        Ok(out)
    }

    /// Makes the edit on `list` itself and returns what it did, which also undoes it.
    /// On error `list` is unchanged.
    pub fn apply_in_place(&self, list: &mut OrderList) -> Result<Done, EditError> {
        match self {
            Edit::AddOrder { order } => {
                let index = list.orders.len();
                let mut problems = Problems::default();
                match read_order(index, order, &mut problems) {
                    Ok(o) => {
                        if list.order(&o.id).is_some() {
                            return Err(EditError::OrderExists(o.id));
                        }
                        list.orders.push(o);
                        Ok(Done::AddedOrder)
                    }
                    _ => Err(EditError::Invalid(problems)),
                }
            }
            Edit::RemoveOrder { id } => {
                let index = list
                    .orders
                    .iter()
                    .position(|o| &o.id == id)
                    .ok_or_else(|| EditError::NoSuchOrder(id.clone()))?;
                Ok(Done::RemovedOrder(
                    index,
                    Box::new(list.orders.remove(index)),
                ))
            }
            Edit::AddPrefixes { order, prefixes } => {
                let parsed = parse_all(prefixes)?;
                let index = list
                    .orders
                    .iter()
                    .position(|o| &o.id == order)
                    .ok_or_else(|| EditError::NoSuchOrder(order.clone()))?;
                let o = &mut list.orders[index];
                let mut listed: HashSet<Prefix> = o.prefixes.iter().map(|l| l.value).collect();
                let before = o.prefixes.len();
                for p in parsed {
                    // Adding what is already listed changes nothing.
                    if listed.insert(p.value) {
                        o.prefixes.push(p);
                    }
                }
                if o.prefixes.len() == before {
                    return Ok(Done::Nothing);
                }
                Ok(Done::AddedPrefixes(index, before))
            }
            Edit::RemovePrefixes { order, prefixes } => {
                let parsed = parse_all(prefixes)?;
                let index = list
                    .orders
                    .iter()
                    .position(|o| &o.id == order)
                    .ok_or_else(|| EditError::NoSuchOrder(order.clone()))?;
                let o = &mut list.orders[index];
                let gone: HashSet<Prefix> = parsed.iter().map(|p| p.value).collect();
                let listed: HashSet<Prefix> = o.prefixes.iter().map(|l| l.value).collect();
                if let Some(p) = parsed.iter().find(|p| !listed.contains(&p.value)) {
                    return Err(EditError::NotListed {
                        order: order.clone(),
                        prefix: p.value.to_string(),
                    });
                }
                if o.prefixes.iter().all(|l| gone.contains(&l.value)) {
                    return Err(EditError::WouldEmpty(order.clone()));
                }
                let kept = std::mem::take(&mut o.prefixes);
                let mut removed = Vec::new();
                for (position, l) in kept.into_iter().enumerate() {
                    if gone.contains(&l.value) {
                        removed.push((position, l));
                    } else {
                        o.prefixes.push(l);
                    }
                }
                Ok(Done::RemovedPrefixes(index, removed))
            }
            Edit::AddException { prefix, reason } => {
                let parsed = parse_all(std::slice::from_ref(prefix))?.remove(0);
                if reason.trim().is_empty() {
                    let mut problems = Problems::default();
                    problems.error(
                        &Place::Argument,
                        "reason".to_string(),
                        None,
                        "an exception needs a reason (--reason)",
                    );
                    return Err(EditError::Invalid(problems));
                }
                if list
                    .exceptions
                    .iter()
                    .any(|e| e.prefix.value == parsed.value)
                {
                    return Ok(Done::Nothing);
                }
                list.exceptions.push(Exception {
                    prefix: parsed,
                    reason: reason.clone(),
                });
                Ok(Done::AddedException)
            }
            Edit::RemoveException { prefix } => {
                let parsed = parse_all(std::slice::from_ref(prefix))?.remove(0);
                let kept = std::mem::take(&mut list.exceptions);
                let mut removed = Vec::new();
                for (position, e) in kept.into_iter().enumerate() {
                    if e.prefix.value == parsed.value {
                        removed.push((position, e));
                    } else {
                        list.exceptions.push(e);
                    }
                }
                if removed.is_empty() {
                    return Err(EditError::NoSuchException(parsed.value.to_string()));
                }
                Ok(Done::RemovedExceptions(removed))
            }
        }
    }
}

/// What [`Edit::apply_in_place`] did: enough to undo it.
#[derive(Debug)]
pub enum Done {
    /// The edit changed nothing (adding what was there).
    Nothing,
    /// Appended as the last order.
    AddedOrder,
    RemovedOrder(usize, Box<Order>),
    /// Order index, and how many prefixes it listed before.
    AddedPrefixes(usize, usize),
    /// Order index, and the removed prefixes with their positions.
    RemovedPrefixes(usize, Vec<(usize, Listed<Prefix>)>),
    /// Appended as the last exception.
    AddedException,
    RemovedExceptions(Vec<(usize, Exception)>),
}

impl Done {
    /// Whether the list changed.
    pub fn changed(&self) -> bool {
        !matches!(self, Done::Nothing)
    }

    /// Puts `list` back as it was before the edit.
    pub fn undo(self, list: &mut OrderList) {
        match self {
            Done::Nothing => {}
            Done::AddedOrder => {
                list.orders.pop();
            }
            Done::RemovedOrder(index, order) => list.orders.insert(index, *order),
            Done::AddedPrefixes(index, before) => list.orders[index].prefixes.truncate(before),
            Done::RemovedPrefixes(index, removed) => {
                let prefixes = &mut list.orders[index].prefixes;
                for (position, l) in removed {
                    prefixes.insert(position, l);
                }
            }
            Done::AddedException => {
                list.exceptions.pop();
            }
            Done::RemovedExceptions(removed) => {
                for (position, e) in removed {
                    list.exceptions.insert(position, e);
                }
            }
        }
    }
}
