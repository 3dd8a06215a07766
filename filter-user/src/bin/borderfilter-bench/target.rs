//! A target of an issue, measured: what it asks, what was measured, met or missed. The
//! report collects them; each part of the benchmark judges its own.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: bool,
}
