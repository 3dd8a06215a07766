//! borderfilter's user space: the data plane handle, the order list, the daemon, the
//! control socket and the CLI that talks to it.

pub mod cli;
pub mod compile;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod fastpath;
pub mod fleet;
pub mod frame;
pub mod http;
pub mod jsonl;
pub mod notice;
pub mod orders;
pub mod paths;
pub mod poptrie;
pub mod prefix;
pub mod semantics;
pub mod sync;

/// An error and its sources on one line: "outer: inner: innermost".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}
