//! A fleet of routers following one order list kept in etcd.
//!
//! The list is stored as immutable, content-addressed chunks, a manifest per version and
//! one small pointer naming the current version, so that a list of any size becomes
//! current in one compare-and-swap (see docs/fleet.md). Under a prefix P:
//!
//! ```text
//! P/list/chunks/<sha256>   raw bytes of one chunk of the list's text (at most 1 MiB)
//! P/list/versions/<N>      JSON manifest: version, sha256, size, chunks, published_at/by, base
//! P/list/current           JSON pointer: {"version": N, "sha256": "..."}
//! P/routers/<name>         a router's status, under a lease (written by its daemon)
//! ```
//!
//! - `mod.rs`: the key layout, the types the daemon and the CLI use, the errors;
//! - `store`: connecting (endpoints, TLS, users, timeouts) and one bounded request;
//! - `versions`: chunks, manifests and the pointer: reading, publishing, removing old
//!   generations;
//! - `routers`: watching the pointer, keys kept under a lease, the routers' keys.

mod routers;
mod store;
mod versions;

use std::{path::PathBuf, time::Duration};

use serde::Serialize;

pub use routers::KeptKey;
pub use versions::{chunk_digests, split_chunks, Manifest, Pointer, CHUNK_BYTES};

/// The prefix every key lives under unless `--etcd-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/borderfilter";
/// Manifests kept after a publish unless `--keep` says otherwise.
pub const DEFAULT_KEEP: usize = 10;
/// How long one request to etcd may take unless `--etcd-timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The environment variable a password is read from when no password file is given.
pub const PASSWORD_ENV: &str = "BORDERFILTER_ETCD_PASSWORD";

/// This machine's host name (a router's default name in the fleet).
pub fn hostname() -> Option<String> {
    let mut host = [0u8; 256];
    // SAFETY: the buffer is valid for the length given; the last byte stays 0, so the
    // name is NUL-terminated even when truncated.
    let ok = unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len() - 1) } == 0;
    let end = host.iter().position(|&b| b == 0).unwrap_or(0);
    (ok && end > 0).then(|| String::from_utf8_lossy(&host[..end]).into_owned())
}

/// How to reach etcd and where the fleet's keys are.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `host:port` or `http(s)://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// The prefix the keys live under, e.g. `/borderfilter`.
    pub prefix: String,
    /// The CA that signed etcd's server certificate (TLS).
    pub cacert: Option<PathBuf>,
    /// This client's certificate and key, for etcd's `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// An etcd user (etcd's own authentication); the password comes from
    /// `password_file`, else from the environment variable [`PASSWORD_ENV`].
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// How long one request may take (connecting included).
    pub timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            prefix: DEFAULT_PREFIX.to_string(),
            cacert: None,
            cert: None,
            key: None,
            user: None,
            password_file: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The key layout under one prefix: every key name is built here and nowhere else.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` without a trailing slash (`/` alone is the empty prefix).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// `P/list/current`: the pointer to the current version.
    pub fn current(&self) -> String {
        format!("{}/list/current", self.prefix)
    }
    /// `P/list/versions/`: the manifests.
    pub fn versions(&self) -> String {
        format!("{}/list/versions/", self.prefix)
    }
    /// `P/list/versions/<N>`: the manifest of version N.
    pub fn version(&self, n: u64) -> String {
        format!("{}{n}", self.versions())
    }
    /// `P/list/chunks/`: the chunks.
    pub fn chunks(&self) -> String {
        format!("{}/list/chunks/", self.prefix)
    }
    /// `P/list/chunks/<sha256>`: one chunk, named by its digest.
    pub fn chunk(&self, sha256: &str) -> String {
        format!("{}{sha256}", self.chunks())
    }
    /// `P/routers/`: the routers' status keys.
    pub fn routers(&self) -> String {
        format!("{}/routers/", self.prefix)
    }
    /// `P/routers/<name>`: one router's status key.
    pub fn router(&self, name: &str) -> String {
        format!("{}{name}", self.routers())
    }
    /// The version number a manifest key names (`None`: not a manifest key).
    pub fn version_of(&self, key: &str) -> Option<u64> {
        let n = key.strip_prefix(&self.versions())?;
        // Decimal digits only, without leading zeros: one key per version.
        if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
            return None;
        }
        n.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| n.parse().ok())
            .flatten()
    }
}

/// The current pointer, and the etcd revision it was last written at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Current {
    pub version: u64,
    pub sha256: String,
    /// The pointer key's mod_revision: a publish based on this pointer compares it.
    pub mod_revision: i64,
}

/// One version of the list, read whole and checked.
#[derive(Clone, Debug, Serialize)]
pub struct Fetched {
    pub version: u64,
    /// SHA-256 of `bytes`, in hex (checked against the manifest).
    pub sha256: String,
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// RFC 3339, UTC.
    pub published_at: String,
    /// `user@host`.
    pub published_by: String,
    /// The version it was based on (`None`: the first, or published over whatever was
    /// current).
    pub base: Option<u64>,
}

/// What a publish expects to be current when it makes its version current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// Nothing has been published yet.
    Empty,
    /// Version N is current: the list was made from it.
    Version(u64),
    /// Whatever is current when the publish starts (it still fails if another publish
    /// makes a version current meanwhile).
    Any,
}

/// What a publish did.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    pub chunks: usize,
    /// The version that was current before (`None`: the first publish).
    pub base: Option<u64>,
    /// Manifests removed because they were older than the generations kept.
    pub removed_versions: Vec<u64>,
    /// Chunks removed because no manifest kept references them.
    pub removed_chunks: usize,
    /// Why old generations were not (all) removed, if they were not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_problem: Option<String>,
}

/// Why a fleet operation failed. Each variant names the key or the option concerned.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("no etcd endpoint given (--etcd host:port[,host:port...])")]
    NoEndpoints,
    #[error("cannot read the {what} {}", path.display())]
    ReadOption {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Options(OptionProblem),
    #[error("cannot connect to etcd at {endpoints}{hint}")]
    Connect {
        endpoints: String,
        hint: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd refused to {op} {key}{hint}")]
    Request {
        op: &'static str,
        key: String,
        hint: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd did not answer (to {op} {key}) within {after:?}; is it running and reachable?")]
    Timeout {
        op: &'static str,
        key: String,
        after: Duration,
    },
    #[error("{key}: {problem}")]
    Bad { key: String, problem: Problem },
    #[error("publish refused: {}", stale_message(*base, *current))]
    Stale {
        base: Base,
        /// What is current now (`None`: nothing).
        current: Option<u64>,
    },
}

/// A combination of options that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum OptionProblem {
    #[error("--etcd-cert and --etcd-key go together: give both or neither")]
    CertWithoutKey,
    #[error(
        "--etcd-user {user} needs a password: --etcd-password-file FILE, or the environment variable {PASSWORD_ENV}"
    )]
    NoPassword { user: String },
    #[error("--etcd-password-file needs --etcd-user")]
    PasswordWithoutUser,
    #[error("the endpoint {endpoint} uses https: give the CA that signed etcd's certificate with --etcd-cacert")]
    HttpsWithoutCa { endpoint: String },
    #[error("the endpoint {endpoint} uses plain http, but TLS options were given: use https:// or host:port")]
    HttpWithTls { endpoint: String },
}

/// What is wrong with a key's value.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("missing ({referenced_by})")]
    Missing { referenced_by: String },
    #[error("not a valid {what}: {source}")]
    NotJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("not UTF-8 text")]
    NotText,
    #[error("{value:?} is not a SHA-256 digest (64 lowercase hex digits)")]
    NotDigest { value: String },
    #[error("{chunks} chunks cannot make {size} bytes (a chunk has 1 to {CHUNK_BYTES} bytes)")]
    ImpossibleSize { chunks: usize, size: u64 },
    #[error(
        "was created meanwhile, but not by a publish ({pointer} still names {}); remove it \
         (etcdctl del KEY) and publish again",
        current.map_or("nothing".to_string(), |c| format!("version {c}"))
    )]
    NotPublished {
        pointer: String,
        current: Option<u64>,
    },
    #[error("corrupt: {what} has SHA-256 {found}, but {expected_by} says {expected}")]
    Digest {
        what: &'static str,
        expected: String,
        found: String,
        expected_by: String,
    },
    #[error("its chunks make {found} bytes, but it says {expected}")]
    Size { expected: u64, found: u64 },
    #[error("names version {named}, but {by} names version {expected}")]
    OtherVersion {
        named: u64,
        expected: u64,
        by: String,
    },
    #[error("says SHA-256 {found}, but {by} says {expected}")]
    OtherDigest {
        found: String,
        expected: String,
        by: String,
    },
}

fn stale_message(base: Base, current: Option<u64>) -> String {
    let now = match current {
        Some(n) => format!("version {n} is current now"),
        None => "nothing is published".to_string(),
    };
    match base {
        Base::Version(b) => format!(
            "the list was based on version {b}, but {now} (someone published meanwhile). \
             Nothing was changed: pull the current version (borderfilter fleet pull), make your \
             change on it and publish it with --base {}",
            current.map_or("N".to_string(), |n| n.to_string())
        ),
        Base::Empty => match current {
            Some(n) => format!(
                "{now}: say which version the list is based on with --base {n} (after checking \
                 it with borderfilter fleet pull), or replace whatever is current with --base-any"
            ),
            None => "nothing is published".to_string(),
        },
        Base::Any => format!(
            "another publish made a version current while this one was being written ({now}); \
             nothing was changed: check it and publish again"
        ),
    }
}

/// The fleet's store: one connection to etcd and the key layout.
pub struct Fleet {
    client: etcd_client::Client,
    keys: Keys,
    options: EtcdOptions,
    /// The member `client` talks to, for messages.
    endpoint: String,
    /// The last request could not reach the member: connect again before the next.
    lost: std::sync::atomic::AtomicBool,
}

impl Fleet {
    /// The key layout this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_under_the_prefix() {
        for prefix in ["/borderfilter", "/borderfilter/"] {
            let k = Keys::new(prefix);
            assert_eq!(k.current(), "/borderfilter/list/current");
            assert_eq!(k.version(12), "/borderfilter/list/versions/12");
            assert_eq!(k.chunk("ab"), "/borderfilter/list/chunks/ab");
            assert_eq!(k.router("r1"), "/borderfilter/routers/r1");
        }
    }

    #[test]
    fn only_decimal_version_keys_name_a_version() {
        let k = Keys::new("/p");
        assert_eq!(k.version_of("/p/list/versions/7"), Some(7));
        assert_eq!(k.version_of("/p/list/versions/1234567"), Some(1_234_567));
        for bad in [
            "/p/list/versions/",
            "/p/list/versions/07",
            "/p/list/versions/7a",
            "/p/list/versions/-1",
            "/p/list/versions/99999999999999999999999",
            "/q/list/versions/7",
        ] {
            assert_eq!(k.version_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_stale_publish_names_both_versions() {
        let e = FleetError::Stale {
            base: Base::Version(4),
            current: Some(5),
        };
        let text = e.to_string();
        assert!(
            text.contains("based on version 4") && text.contains("version 5 is current"),
            "{text}"
        );
    }
}
