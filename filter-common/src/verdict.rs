//! Indices into the per-verdict counter array. Every frame the program sees is counted
//! under [`SEEN`] and under exactly one of the others.

pub const SEEN: u32 = 0;
/// Nothing matched.
pub const PASS: u32 = 1;
pub const DROP: u32 = 2;
pub const REDIRECT: u32 = 3;
pub const MONITOR: u32 = 4;
pub const EXEMPT: u32 = 5;
/// Not IPv4 or IPv6 (ARP, LLDP, ...): always passed.
pub const NOT_IP: u32 = 6;
/// Too short for the headers it announces: passed to the kernel, which drops it.
pub const MALFORMED: u32 = 7;

/// Number of verdict slots.
pub const COUNT: u32 = 8;

/// Names as user space reports them, indexed like the constants above.
pub const NAMES: [&str; COUNT as usize] = [
    "seen",
    "pass",
    "drop",
    "redirect",
    "monitor",
    "exempt",
    "not_ip",
    "malformed",
];
