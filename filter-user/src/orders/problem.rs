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

/// Most problems kept of one list; the rest are only counted, in one last problem. A
/// file of a million bad prefixes would otherwise take gigabytes to report (the daemon
/// holding the report would be killed for memory), and nobody reads past the first few.
pub const MAX_PROBLEMS: usize = 1000;

/// Problems in the order they were found: the first [`MAX_PROBLEMS`], then, if there
/// were more, one that counts the others.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>, #[serde(skip)] Omitted);

/// How many problems were left out, by severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Omitted {
    errors: usize,
    warnings: usize,
}

impl Omitted {
    fn any(self) -> bool {
        self.errors + self.warnings > 0
    }

    fn summary(self) -> Problem {
        Problem {
            severity: if self.errors > 0 {
                Severity::Error
            } else {
                Severity::Warning
            },
            place: Place::File {
                line: None,
                column: None,
            },
            field: None,
            value: None,
            message: format!(
                "{} more problems not shown ({} errors, {} warnings)",
                self.errors + self.warnings,
                self.errors,
                self.warnings
            ),
        }
    }
}

impl Problems {
    pub fn push(
        &mut self,
        severity: Severity,
        place: &Place,
        field: impl Into<Option<String>>,
        value: impl Into<Option<String>>,
        message: impl Into<String>,
    ) {
        if self.0.len() >= MAX_PROBLEMS {
            self.omit(severity, 1);
            return;
        }
        self.0.push(Problem {
            severity,
            place: place.clone(),
            field: field.into(),
            value: value.into(),
            message: message.into(),
        });
    }

    /// Counts `n` problems of `severity` in the last problem instead of keeping them.
    fn omit(&mut self, severity: Severity, n: usize) {
        if n == 0 {
            return;
        }
        if self.1.any() {
            self.0.pop();
        }
        match severity {
            Severity::Error => self.1.errors += n,
            Severity::Warning => self.1.warnings += n,
        }
        self.0.push(self.1.summary());
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

    /// How many errors were found, the ones not kept included.
    pub fn error_count(&self) -> usize {
        let summary = usize::from(self.1.any() && self.1.errors > 0);
        self.errors().count() - summary + self.1.errors
    }

    /// How many warnings were found, the ones not kept included.
    pub fn warning_count(&self) -> usize {
        let summary = usize::from(self.1.any() && self.1.errors == 0);
        self.warnings().count() - summary + self.1.warnings
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn extend(&mut self, other: Problems) {
        let Problems(mut list, omitted) = other;
        if omitted.any() {
            list.pop();
        }
        for p in list {
            if self.0.len() >= MAX_PROBLEMS {
                self.omit(p.severity, 1);
            } else {
                self.0.push(p);
            }
        }
        self.omit(Severity::Error, omitted.errors);
        self.omit(Severity::Warning, omitted.warnings);
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
