//! The order list: the single source of truth for what is blocked.
//!
//! - this file: the typed list (`OrderList`, `Order`, `Exception`) and its small enums;
//! - `problem`: errors and warnings, each naming where, which field, which value, why;
//! - `domain`: domain names in orders, checked and in their one (IDNA) spelling;
//! - `parse`: bytes to a typed list, collecting every problem rather than the first;
//! - `validate`: the rules that depend on the deployment (protected ranges, capacity);
//! - `window`: when an order is in force;
//! - `file`: reading the file defensively and writing it atomically;
//! - `edit`: the changes the CLI makes;
//! - `text`: the file's text kept in pieces, so that an edit re-serializes one order;
//! - `journal`: edits acknowledged before the file is rewritten.

pub mod domain;
pub mod edit;
pub mod file;
pub mod journal;
pub mod json;
pub mod parse;
pub mod problem;
pub mod text;
pub mod validate;
pub mod window;

use std::fmt;

use serde::{ser::SerializeMap, Serialize, Serializer};

use crate::prefix::Prefix;
pub use domain::DomainName;
pub use problem::{Problem, Problems, Severity};
pub use window::{Instant, OrderState};

/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// What an order does to matching traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Drop,
    Redirect,
    Monitor,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Drop, Action::Redirect, Action::Monitor];

    pub const fn name(self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Redirect => "redirect",
            Action::Monitor => "monitor",
        }
    }

    /// Higher is stricter: when several orders cover an address, the strictest acts.
    pub const fn strictness(self) -> u8 {
        match self {
            Action::Drop => 3,
            Action::Redirect => 2,
            Action::Monitor => 1,
        }
    }

    /// The data plane's action code.
    pub const fn code(self) -> u8 {
        match self {
            Action::Drop => filter_common::action::DROP,
            Action::Redirect => filter_common::action::REDIRECT,
            Action::Monitor => filter_common::action::MONITOR,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == text)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which address of a packet an order matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Packets *to* the listed prefixes.
    Dst,
    /// Packets *from* the listed prefixes.
    Src,
    /// Both.
    #[default]
    Both,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Dst, Direction::Src, Direction::Both];

    pub const fn name(self) -> &'static str {
        match self {
            Direction::Dst => "dst",
            Direction::Src => "src",
            Direction::Both => "both",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == text)
    }

    pub const fn covers(self, side: Side) -> bool {
        matches!(
            (self, side),
            (Direction::Both, _) | (Direction::Dst, Side::Dst) | (Direction::Src, Side::Src)
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which address of a packet is being looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Dst,
    Src,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Dst, Side::Src];
}

/// A value as the file spells it, and what it means. Rewriting the file writes `text`
/// back, so a CLI edit never respells what the operator wrote (`203.0.113.7` stays
/// `203.0.113.7`, not `203.0.113.7/32`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed<T> {
    pub text: String,
    pub value: T,
}

impl<T> Serialize for Listed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// One court order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub authority: String,
    pub issued: Listed<time::Date>,
    pub valid_from: Option<Listed<Instant>>,
    pub expires: Option<Listed<Instant>>,
    pub basis: Option<String>,
    pub action: Action,
    /// `None` when the file leaves it out (meaning `both`).
    pub direction: Option<Direction>,
    pub prefixes: Vec<Listed<Prefix>>,
    /// Names whose addresses the daemon resolves and enforces as the order's (an order
    /// lists prefixes, names, or both).
    pub domains: Vec<Listed<DomainName>>,
    pub allow_broad: Option<bool>,
    /// Whether a name's address may be blocked when it lies in a shared-hosting range.
    pub allow_shared: Option<bool>,
    pub note: Option<String>,
}

impl Order {
    pub fn direction(&self) -> Direction {
        self.direction.unwrap_or_default()
    }

    pub fn allow_broad(&self) -> bool {
        self.allow_broad.unwrap_or(false)
    }

    pub fn allow_shared(&self) -> bool {
        self.allow_shared.unwrap_or(false)
    }

    /// Whether the order is in force at `now`.
    pub fn state(&self, now: time::OffsetDateTime) -> OrderState {
        window::state(
            self.valid_from.as_ref().map(|l| &l.value),
            self.expires.as_ref().map(|l| &l.value),
            now,
        )
    }
}

/// Field order in the file: the order of the documentation's example.
impl Serialize for Order {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("authority", &self.authority)?;
        m.serialize_entry("issued", &self.issued)?;
        if let Some(v) = &self.valid_from {
            m.serialize_entry("valid_from", v)?;
        }
        if let Some(v) = &self.expires {
            m.serialize_entry("expires", v)?;
        }
        if let Some(v) = &self.basis {
            m.serialize_entry("basis", v)?;
        }
        m.serialize_entry("action", &self.action)?;
        if let Some(v) = &self.direction {
            m.serialize_entry("direction", v)?;
        }
        // An order of names only may leave "prefixes" out.
        if !self.prefixes.is_empty() || self.domains.is_empty() {
            m.serialize_entry("prefixes", &self.prefixes)?;
        }
        if !self.domains.is_empty() {
            m.serialize_entry("domains", &self.domains)?;
        }
        if let Some(v) = &self.allow_broad {
            m.serialize_entry("allow_broad", v)?;
        }
        if let Some(v) = &self.allow_shared {
            m.serialize_entry("allow_shared", v)?;
        }
        if let Some(v) = &self.note {
            m.serialize_entry("note", v)?;
        }
        m.end()
    }
}

/// An allowed hole in the blocks: traffic to or from it passes (counted as exempt).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exception {
    pub prefix: Listed<Prefix>,
    pub reason: String,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OrderList {
    pub version: u64,
    pub orders: Vec<Order>,
    pub exceptions: Vec<Exception>,
}

impl OrderList {
    pub fn empty() -> Self {
        Self {
            version: FORMAT_VERSION,
            ..Self::default()
        }
    }

    pub fn order(&self, id: &str) -> Option<&Order> {
        self.orders.iter().find(|o| o.id == id)
    }

    /// The file's text: pretty-printed JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("an order list always serializes");
        text.push('\n');
        text
    }
}
