//! Header parsing: Ethernet, up to two VLAN tags, IPv4 or IPv6.
//!
//! The policy for frames we cannot classify is decided here and only here:
//! - a frame that is not IPv4/IPv6 (ARP, LLDP, LACP, a third VLAN tag, ...) is
//!   [`Parsed::NotIp`]: it always passes, because the filter must never cut a router off
//!   its own neighbours;
//! - a frame too short for a header it announces, or whose IP header is inconsistent
//!   (wrong version, IHL below 5), is [`Parsed::Malformed`]: it is passed to the kernel,
//!   whose own parser drops it, and counted. Dropping it here would gain nothing (it
//!   carries no complete address to match) and would hide it from the kernel's counters.

use core::mem::size_of;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// Most VLAN tags parsed: 802.1ad outer plus 802.1Q inner (QinQ), in any combination.
pub const MAX_VLAN_TAGS: usize = 2;

/// The addresses of a frame, in network byte order, or why there are none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
    NotIp,
    Malformed,
}

/// The bytes of a frame, as the addresses of its first byte and one past its last
/// (`ctx.data()` and `ctx.data_end()` in the XDP program).
#[derive(Clone, Copy)]
pub struct Bounds {
    start: usize,
    end: usize,
}

impl Bounds {
    /// # Safety
    /// Every address in `start..end` must be readable for as long as the `Bounds` is used.
    #[inline(always)]
    pub unsafe fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// Bounds-checked pointer to a `T` at `offset` bytes into the frame. Written as the
    /// comparison against `end` the verifier needs to see before any packet access.
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        if self.start + offset + size_of::<T>() > self.end {
            return None;
        }
        Some((self.start + offset) as *const T)
    }

    /// Reads a `T` at `offset`; `None` when the frame is too short.
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        // SAFETY: `ptr_at` checked that the whole `T` lies inside the frame, which `new`'s
        // caller promised is readable; `read_unaligned` because headers after VLAN tags
        // or IP options have no alignment guarantee.
        self.ptr_at::<T>(offset)
            .map(|p| unsafe { p.read_unaligned() })
    }

    #[inline(always)]
    fn read_be16(&self, offset: usize) -> Option<u16> {
        self.read::<[u8; 2]>(offset).map(u16::from_be_bytes)
    }
}

/// Parses a frame held in a slice (user space: tests and tools).
pub fn parse_slice(frame: &[u8]) -> Parsed {
    let start = frame.as_ptr() as usize;
    // SAFETY: the slice is readable for the duration of the call.
    parse(unsafe { Bounds::new(start, start + frame.len()) })
}

#[inline(always)]
pub fn parse(ctx: Bounds) -> Parsed {
    let Some(mut ethertype) = ctx.read_be16(ETH_HLEN - 2) else {
        return Parsed::Malformed;
    };
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // The tag is TCI (2 bytes) then the encapsulated ethertype.
        let Some(inner) = ctx.read_be16(offset + 2) else {
            return Parsed::Malformed;
        };
        ethertype = inner;
        offset += VLAN_HLEN;
    }
    match ethertype {
        ETH_P_IP => parse_v4(ctx, offset),
        ETH_P_IPV6 => parse_v6(ctx, offset),
        _ => Parsed::NotIp,
    }
}

#[inline(always)]
fn parse_v4(ctx: Bounds, offset: usize) -> Parsed {
    let Some(header) = ctx.read::<[u8; IPV4_MIN_HLEN]>(offset) else {
        return Parsed::Malformed;
    };
    let version = header[0] >> 4;
    let ihl = (header[0] & 0x0f) as usize;
    if version != 4 || ihl < 5 {
        return Parsed::Malformed;
    }
    // Honour IHL: the options it announces must be in the frame too.
    if ihl > 5 && ctx.ptr_at::<u8>(offset + ihl * 4 - 1).is_none() {
        return Parsed::Malformed;
    }
    // Every fragment carries both addresses, so fragments are matched like any packet.
    Parsed::V4 {
        src: [header[12], header[13], header[14], header[15]],
        dst: [header[16], header[17], header[18], header[19]],
    }
}

#[inline(always)]
fn parse_v6(ctx: Bounds, offset: usize) -> Parsed {
    // Extension headers follow the fixed header and never change its addresses, so they
    // need not be walked to classify the packet.
    let Some(version) = ctx.read::<u8>(offset) else {
        return Parsed::Malformed;
    };
    if version >> 4 != 6 {
        return Parsed::Malformed;
    }
    // The fixed header is 40 bytes; the destination address is its last 16.
    let (Some(src), Some(dst)) = (
        ctx.read::<[u8; 16]>(offset + 8),
        ctx.read::<[u8; 16]>(offset + IPV6_HLEN - 16),
    ) else {
        return Parsed::Malformed;
    };
    Parsed::V6 { src, dst }
}
