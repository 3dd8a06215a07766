//! What a rule does to a packet it matches.
//!
//! Plain `u8` constants rather than a Rust enum: the value crosses the kernel boundary
//! inside [`crate::Rule`], and a byte the kernel hands back may hold any value.

/// Slot not in use. A packet whose entry names such a rule passes, uncounted by rule.
pub const NONE: u8 = 0;
/// Drop the packet (`XDP_DROP`).
pub const DROP: u8 = 1;
/// Send the packet to the block-notice host (`XDP_REDIRECT`) when it is matched by
/// destination; drop it when it is matched by source.
pub const REDIRECT: u8 = 2;
/// Count the packet, then let it pass.
pub const MONITOR: u8 = 3;
/// An exception carved out of a block: pass, counted as exempt.
pub const EXEMPT: u8 = 4;

/// True for the actions that stop a packet.
#[inline(always)]
pub const fn blocks(action: u8) -> bool {
    matches!(action, DROP | REDIRECT)
}
