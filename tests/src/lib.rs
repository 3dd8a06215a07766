//! The harness of the end-to-end tests: network namespaces joined by veth pairs, a router
//! namespace running the real `borderfilter` daemon, and real traffic (TCP, UDP, ICMP)
//! sent from threads that enter the namespaces.
//!
//! - `netns`: namespaces and links, torn down on drop;
//! - `topology`: the client - router - server topology every test uses;
//! - `daemon`: the daemon process and the CLI;
//! - `fleet`: several routers and a real etcd in a management namespace;
//! - `traffic`: sockets inside a namespace;
//! - `poll`: waiting for a condition instead of sleeping;
//! - `etcd`: real etcd members and clusters on loopback, and etcdctl;
//! - `dns`: a real authoritative DNS server (knot) linked to a topology's router;
//! - `bpf`: the data plane seen from outside the daemon (trie sizes, the attached
//!   program's verdict on a frame);
//! - `bad_input`: what the bad-input tests share (the good list they start from);
//! - `package`: the Debian package on this machine, installed and purged;
//! - `systemd`: a unit's command line run as systemd would run it.

pub mod bad_input;
pub mod bpf;
pub mod daemon;
pub mod dns;
pub mod domains;
pub mod etcd;
pub mod fleet;
pub mod netns;
pub mod package;
pub mod poll;
pub mod systemd;
pub mod topology;
pub mod traffic;

/// These tests build namespaces and load XDP programs.
#[track_caller]
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("end-to-end tests need root (network namespaces, XDP): run `cargo xtask test`");
    }
}

/// A short tag unique to this test in this run, for namespace and file names.
pub fn unique_tag(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hash = test
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!(
        "{:04x}{:x}{n}",
        (hash ^ std::process::id()) & 0xffff,
        std::process::id() % 16
    )
}

/// Whether this is a long run: `cargo xtask soak` sets `BORDERFILTER_SOAK=1`, and the
/// tests then use their larger counts.
pub fn soak() -> bool {
    std::env::var_os("BORDERFILTER_SOAK").is_some_and(|v| v != "0" && !v.is_empty())
}

/// How many rounds of something to run: `normal` in the default run, `long` under
/// `cargo xtask soak`; `BORDERFILTER_<NAME>` (e.g. `BORDERFILTER_RELOADS=50`) overrides both.
pub fn count(name: &str, normal: usize, long: usize) -> usize {
    std::env::var(format!("BORDERFILTER_{}", name.to_uppercase()))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if soak() { long } else { normal })
}

/// A seeded generator for a test's random choices; the seed comes from
/// `BORDERFILTER_SEED` when set and is printed, so that a failing run can be repeated.
pub fn rng(test: &str) -> rand::rngs::SmallRng {
    use rand::SeedableRng;
    let seed = std::env::var("BORDERFILTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed} (set BORDERFILTER_SEED={seed} to replay)");
    rand::rngs::SmallRng::seed_from_u64(seed)
}

/// Prints a measurement as one line, `measured: TEST: TEXT`, which `cargo xtask soak`
/// collects into its summary.
pub fn measured(test: &str, text: impl std::fmt::Display) {
    eprintln!("measured: {test}: {text}");
}
