//! Orders that name domains: each name is resolved, its addresses are enforced as host
//! prefixes of the order, and the answers are followed as they change.
//!
//! - this file: the settings, and which addresses each order holds (`admit`);
//! - `book`: what each name resolved to and when, with the timers (TTL clamps, grace,
//!   fail closed);
//! - `resolver`: asking DNS (hickory-resolver);
//! - `guard`: the collateral guard (protected and shared-hosting ranges);
//! - `store`: the book in the state directory, so a restart without DNS enforces it;
//! - `worker`: the task that resolves names when they are due.
//!
//! The engine holds the book and applies its changes (`engine::names`); the worker only
//! asks DNS, outside the engine's lock.

pub mod book;
pub mod guard;
pub mod resolver;
pub mod store;
pub mod worker;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::PathBuf,
};

use book::{Book, Timers};
use guard::{Guard, Guarded};

use crate::{
    compile::Resolved,
    orders::{DomainName, OrderList, OrderState},
    prefix::Prefix,
};

/// The settings of `run` for names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamesConfig {
    pub resolver: resolver::ResolverConfigArgs,
    pub timers: Timers,
    pub shared_ranges: Option<PathBuf>,
    /// The book's file in the state directory.
    pub state: PathBuf,
}

/// Which addresses the orders in force hold through their names, and the ones the
/// guard kept out (by order id and address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    pub resolved: Resolved,
    pub guarded: BTreeMap<(String, IpAddr), Guarded>,
}

/// The addresses each order in force (`active(index)`) holds: every address the book has
/// for its names, current or in grace, that the guard lets through for it.
pub fn admit(
    list: &OrderList,
    active: impl Fn(usize) -> bool,
    book: &Book,
    guard: &Guard,
) -> Admitted {
    let mut out = Admitted::default();
    for (index, order) in list.orders.iter().enumerate() {
        if order.domains.is_empty() || !active(index) {
            continue;
        }
        let mut held = BTreeSet::new();
        for name in &order.domains {
            let Some(state) = book.names.get(&name.value) else {
                continue;
            };
            for addr in state.enforced() {
                match exempted(list, *addr).or_else(|| guard.check(*addr, order.allow_shared())) {
                    Some(g) => {
                        out.guarded.insert((order.id.clone(), *addr), g);
                    }
                    None => {
                        held.insert(Prefix::host(*addr));
                    }
                }
            }
        }
        if !held.is_empty() {
            out.resolved.insert(index, held);
        }
    }
    out
}

/// An exception covering `addr`: a name never blocks what the list lets through (a
/// static prefix may, as it always could).
fn exempted(list: &OrderList, addr: IpAddr) -> Option<Guarded> {
    list.exceptions
        .iter()
        .filter(|e| e.prefix.value.contains_addr(addr))
        .max_by_key(|e| e.prefix.value.length())
        .map(|e| Guarded {
            range: e.prefix.value,
            why: format!(
                "it lies in the exception {} ({}); a name's address never overrides an exception",
                e.prefix.value, e.reason
            ),
        })
}

/// Every name the list's orders give, whatever their state (a pending order's names are
/// resolved ahead, so it is enforced complete when its window opens).
pub fn names_of(list: &OrderList) -> BTreeSet<DomainName> {
    list.orders
        .iter()
        .flat_map(|o| o.domains.iter().map(|d| d.value.clone()))
        .collect()
}

/// Whether the order at `index` of a compiled list is in force.
pub fn in_force(states: &[(String, OrderState)]) -> impl Fn(usize) -> bool + '_ {
    move |i| states.get(i).is_some_and(|(_, s)| *s == OrderState::Active)
}

/// The names of `list` that resolved to `addr`, by order index: the provenance of an
/// address.
pub fn names_holding(list: &OrderList, book: &Book, order: usize, addr: IpAddr) -> Vec<DomainName> {
    list.orders
        .get(order)
        .into_iter()
        .flat_map(|o| &o.domains)
        .filter(|d| {
            book.names
                .get(&d.value)
                .is_some_and(|s| s.addresses.contains_key(&addr))
        })
        .map(|d| d.value.clone())
        .collect()
}

/// What the engine keeps for names: the book, the guard, and what it reported.
pub struct Names {
    pub config: NamesConfig,
    pub book: Book,
    pub guard: Guard,
    /// The addresses the guard keeps out now, by order and address.
    pub guarded: BTreeMap<(String, IpAddr), Guarded>,
    /// What names did since the last audit record: goes in the next one.
    pub pending: Vec<crate::daemon::audit::NameEvent>,
    /// Tells the worker that names were added (resolve them now).
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// Why the book could not be written, if it could not.
    pub state_problem: Option<String>,
    /// Why names cannot be resolved at all (no resolver could be set up).
    pub resolver_problem: Option<String>,
}

impl Names {
    /// Reads the shared ranges and the book kept before. Either being unreadable stops
    /// the start: the maps keep enforcing what they hold meanwhile, where starting
    /// without the book would stop enforcing every address a name gave.
    pub fn load(config: NamesConfig, protect: Vec<Prefix>) -> anyhow::Result<Self> {
        let guard = Guard::load(protect, config.shared_ranges.as_deref())?;
        let book = store::load(&config.state)?;
        Ok(Self {
            guard,
            book,
            config,
            guarded: BTreeMap::new(),
            pending: Vec::new(),
            wake: Default::default(),
            state_problem: None,
            resolver_problem: None,
        })
    }

    /// Writes the book to the state directory; a failure is logged and reported in status.
    pub fn save(&mut self) {
        match store::save(&self.config.state, &self.book) {
            Ok(()) => self.state_problem = None,
            Err(e) => {
                if self.state_problem.as_ref() != Some(&e) {
                    log::error!("writing the resolved names failed: {e}; a restart without DNS would not know them");
                }
                self.state_problem = Some(e);
            }
        }
    }
}
