//! The control protocol between the CLI and the daemon: one JSON request per line on a
//! Unix socket, one JSON response line back, then the connection closes.
//!
//! - this file: requests, responses and the client side;
//! - `report`: the structured results (status, orders, check, stats, audit) both sides
//!   share, so the CLI can render them as tables or pass them through as `--json`.

pub mod report;

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::orders::edit::Edit;

/// Largest request the daemon reads (an `orders add` with tens of thousands of prefixes
/// fits).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// How long the daemon waits for a whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    OrdersList,
    OrdersShow {
        id: String,
    },
    Check {
        address: String,
    },
    Stats,
    Audit {
        #[serde(default)]
        since: Option<String>,
        #[serde(default)]
        order: Option<String>,
    },
    /// The history of one address or prefix in the audit trail.
    AuditPrefix {
        prefix: String,
        #[serde(default)]
        since: Option<String>,
    },
    /// A change to the order list, applied like a change to the file.
    Edit {
        edit: Edit,
        #[serde(default)]
        force: bool,
    },
    /// Re-read the file now (`force` confirms a change the mass-removal guard refused).
    Reload {
        #[serde(default)]
        force: bool,
    },
    /// Remove the program from every interface, remove the pins, and stop.
    Detach,
}

impl Request {
    /// Decodes one request line as the daemon received it (its final newline included or
    /// not). The error is the message the client gets back.
    pub fn decode(line: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(line).map_err(|_| "the request is not UTF-8".to_string())?;
        // serde would also take an array (`["detach"]`) for the tagged enum: the protocol
        // has one form only.
        if text.trim_start().starts_with('[') {
            return Err(
                "malformed request: a request is a JSON object like {\"command\": \"status\"}"
                    .into(),
            );
        }
        let request: Request =
            serde_json::from_str(text.trim_end()).map_err(|e| format!("malformed request: {e}"))?;
        // `deny_unknown_fields` does not reach the commands without fields.
        if matches!(
            request,
            Request::Status | Request::OrdersList | Request::Stats | Request::Detach
        ) {
            let value: serde_json::Value = serde_json::from_str(text.trim_end())
                .map_err(|e| format!("malformed request: {e}"))?;
            if let Some(extra) = value
                .as_object()
                .and_then(|o| o.keys().find(|k| k.as_str() != "command"))
            {
                return Err(format!(
                    "malformed request: unknown field `{}`: `{}` takes no fields",
                    extra.escape_debug(),
                    request.name()
                ));
            }
        }
        Ok(request)
    }

    /// Whether the request changes anything (and so needs an administrator).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Request::Edit { .. } | Request::Reload { .. } | Request::Detach
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::OrdersList => "orders list",
            Request::OrdersShow { .. } => "orders show",
            Request::Check { .. } => "check",
            Request::Stats => "stats",
            Request::Audit { .. } => "audit",
            Request::AuditPrefix { .. } => "audit --prefix",
            Request::Edit { .. } => "edit",
            Request::Reload { .. } => "reload",
            Request::Detach => "detach",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// The result, when `ok`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// Why it failed, for people: may span lines (one problem per line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it failed, for scripts (e.g. the list of validation problems).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl Response {
    pub fn ok(result: impl Serialize) -> Self {
        Self {
            ok: true,
            result: serde_json::to_value(result).unwrap_or(Value::Null),
            error: None,
            details: Value::Null,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            result: Value::Null,
            error: Some(message.into()),
            details: Value::Null,
        }
    }

    pub fn with_details(mut self, details: impl Serialize) -> Self {
        self.details = serde_json::to_value(details).unwrap_or(Value::Null);
        self
    }
}

/// Why the CLI could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no daemon is listening on {path} (is `borderfilter run` running, with this --socket?)"
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("permission denied on {path}: changing or reading the filter needs root or membership of group `{group}`")]
    PermissionDenied { path: PathBuf, group: &'static str },
    #[error("talking to the daemon on {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon sent an unreadable answer: {0}")]
    BadAnswer(String),
}

/// Sends `request` to the daemon listening on `socket` and waits up to `timeout` for the
/// answer (syncing a million prefixes takes seconds).
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            path: socket.to_path_buf(),
            group: crate::paths::ADMIN_GROUP,
        },
        _ => ClientError::NotRunning {
            path: socket.to_path_buf(),
            source,
        },
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).expect("requests always serialize");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| ClientError::BadAnswer(format!("{e}: {answer:?}")))
}
