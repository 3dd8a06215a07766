//! Problems found in an order list: each names where it is (the order's id and index,
//! or the line and column of a JSON syntax error), the field, the offending value and why.

use std::fmt;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The list is refused.
    Error,
    /// Reported, but the list is applied.
    Warning,
}

/// Where in the file a problem is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Place {
    /// The file as a whole (its JSON syntax, its top level).
    File {
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        column: Option<usize>,
    },
    Order {
        index: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Exception {
        index: usize,
    },
    /// A value given on the command line (a CLI edit).
    Argument,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub place: Place,
    /// The field, with array indices (`prefixes[2]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The offending value as written in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub message: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::File {
                line: Some(l),
                column: Some(c),
            } => write!(f, "line {l}, column {c}"),
            Place::File { .. } => f.write_str("file"),
            Place::Order {
                index,
                id: Some(id),
            } => write!(f, "order {id:?} (orders[{index}])"),
            Place::Order { index, id: None } => write!(f, "orders[{index}]"),
            Place::Exception { index } => write!(f, "exceptions[{index}]"),
            Place::Argument => f.write_str("argument"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}", self.place)?;
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Problems in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(
        &mut self,
        severity: Severity,
        place: &Place,
        field: impl Into<Option<String>>,
        value: impl Into<Option<String>>,
        message: impl Into<String>,
    ) {
        self.0.push(Problem {
            severity,
            place: place.clone(),
            field: field.into(),
            value: value.into(),
            message: message.into(),
        });
    }

    pub fn error(
        &mut self,
        place: &Place,
        field: impl Into<Option<String>>,
        value: impl Into<Option<String>>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Error, place, field, value, message);
    }

    pub fn warning(
        &mut self,
        place: &Place,
        field: impl Into<Option<String>>,
        value: impl Into<Option<String>>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Warning, place, field, value, message);
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Problems {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A JSON value shortened for a message: long strings are cut, and control characters
/// are escaped so that a hostile value cannot forge lines in a log.
pub fn show(value: &serde_json::Value) -> String {
    const LIMIT: usize = 80;
    let text = value.to_string();
    if text.chars().count() <= LIMIT {
        text
    } else {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut}...")
    }
}
