//! The changes the CLI makes to the order list. The daemon applies an edit to the list it
//! read from the file, validates the result like any list, and writes it back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    parse::{prefix_problem, read_order},
    problem::{Place, Problems},
    Exception, Listed, OrderList,
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
        match self {
            Edit::AddOrder { order } => {
                let index = out.orders.len();
                let mut problems = Problems::default();
                let parsed = read_order(index, order, &mut problems);
                match parsed {
                    Ok(o) => {
                        if out.order(&o.id).is_some() {
                            return Err(EditError::OrderExists(o.id));
                        }
                        out.orders.push(o);
                    }
                    _ => return Err(EditError::Invalid(problems)),
                }
            }
            Edit::RemoveOrder { id } => {
                let before = out.orders.len();
                out.orders.retain(|o| &o.id != id);
                if out.orders.len() == before {
                    return Err(EditError::NoSuchOrder(id.clone()));
                }
            }
            Edit::AddPrefixes { order, prefixes } => {
                let parsed = parse_all(prefixes)?;
                let o = out
                    .orders
                    .iter_mut()
                    .find(|o| &o.id == order)
                    .ok_or_else(|| EditError::NoSuchOrder(order.clone()))?;
                for p in parsed {
                    // Adding what is already listed changes nothing.
                    if !o.prefixes.iter().any(|l| l.value == p.value) {
                        o.prefixes.push(p);
                    }
                }
            }
            Edit::RemovePrefixes { order, prefixes } => {
                let parsed = parse_all(prefixes)?;
                let o = out
                    .orders
                    .iter_mut()
                    .find(|o| &o.id == order)
                    .ok_or_else(|| EditError::NoSuchOrder(order.clone()))?;
                for p in &parsed {
                    if !o.prefixes.iter().any(|l| l.value == p.value) {
                        return Err(EditError::NotListed {
                            order: order.clone(),
                            prefix: p.value.to_string(),
                        });
                    }
                    o.prefixes.retain(|l| l.value != p.value);
                }
                if o.prefixes.is_empty() {
                    return Err(EditError::WouldEmpty(order.clone()));
                }
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
                if !out
                    .exceptions
                    .iter()
                    .any(|e| e.prefix.value == parsed.value)
                {
                    out.exceptions.push(Exception {
                        prefix: parsed,
                        reason: reason.clone(),
                    });
                }
            }
            Edit::RemoveException { prefix } => {
                let parsed = parse_all(std::slice::from_ref(prefix))?.remove(0);
                let before = out.exceptions.len();
                out.exceptions.retain(|e| e.prefix.value != parsed.value);
                if out.exceptions.len() == before {
                    return Err(EditError::NoSuchException(parsed.value.to_string()));
                }
            }
        }
        Ok(out)
    }
}
