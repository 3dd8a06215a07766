//! A small builder of Ethernet frames, for test fixtures and benchmarks that feed frames
//! to the program (BPF_PROG_TEST_RUN) rather than sending them over a link.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use filter_common::parse::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};

pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_LLDP: u16 = 0x88cc;

const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// The network layer of a frame.
#[derive(Clone, Debug)]
pub enum Payload {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// Bytes of IPv4 options (a multiple of 4, at most 40).
        options: usize,
        /// Fragment offset in 8-byte units; non-zero for a non-first fragment.
        fragment_offset: u16,
        more_fragments: bool,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        /// Extension headers to chain before UDP (e.g. 0 hop-by-hop, 60 destination
        /// options, 44 fragment); each is 8 bytes.
        extensions: Vec<u8>,
    },
    /// Any other ethertype, with its raw payload.
    Other { ethertype: u16, body: Vec<u8> },
}

/// An Ethernet frame: VLAN tags (outermost first, by TPID) and a payload.
#[derive(Clone, Debug)]
pub struct Frame {
    pub vlan_tags: Vec<u16>,
    pub payload: Payload,
    /// UDP payload bytes after the headers.
    pub data_len: usize,
}

impl Frame {
    /// A UDP packet between two addresses of the same family.
    pub fn ip(src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Self::v4(src, dst),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Self::v6(src, dst),
            _ => panic!("{src} and {dst} are of different families"),
        }
    }

    pub fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            vlan_tags: Vec::new(),
            payload: Payload::V4 {
                src,
                dst,
                options: 0,
                fragment_offset: 0,
                more_fragments: false,
            },
            data_len: 18,
        }
    }

    pub fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self {
            vlan_tags: Vec::new(),
            payload: Payload::V6 {
                src,
                dst,
                extensions: Vec::new(),
            },
            data_len: 18,
        }
    }

    /// An ARP request.
    pub fn arp() -> Self {
        let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
        body.extend_from_slice(&SRC_MAC);
        body.extend_from_slice(&[192, 0, 2, 1]);
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(&[192, 0, 2, 2]);
        Self::other(ETH_P_ARP, body)
    }

    pub fn other(ethertype: u16, body: Vec<u8>) -> Self {
        Self {
            vlan_tags: Vec::new(),
            payload: Payload::Other { ethertype, body },
            data_len: 0,
        }
    }

    /// Adds a VLAN tag inside the ones already there (call outermost first).
    pub fn tagged(mut self, tpid: u16) -> Self {
        self.vlan_tags.push(tpid);
        self
    }

    pub fn with_ipv4_options(mut self, bytes: usize) -> Self {
        if let Payload::V4 { options, .. } = &mut self.payload {
            assert!(
                bytes.is_multiple_of(4) && bytes <= 40,
                "IPv4 options are 0..=40 bytes, 4-aligned"
            );
            *options = bytes;
        }
        self
    }

    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        if let Payload::V4 {
            fragment_offset,
            more_fragments,
            ..
        } = &mut self.payload
        {
            *fragment_offset = offset;
            *more_fragments = more;
        }
        self
    }

    pub fn with_extensions(mut self, headers: &[u8]) -> Self {
        if let Payload::V6 { extensions, .. } = &mut self.payload {
            extensions.extend_from_slice(headers);
        }
        self
    }

    pub fn with_data_len(mut self, len: usize) -> Self {
        self.data_len = len;
        self
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&DST_MAC);
        out.extend_from_slice(&SRC_MAC);
        for (i, tpid) in self.vlan_tags.iter().enumerate() {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&(100 + i as u16).to_be_bytes()); // TCI: VLAN id 100, 101
        }
        match &self.payload {
            Payload::V4 {
                src,
                dst,
                options,
                fragment_offset,
                more_fragments,
            } => {
                out.extend_from_slice(&ETH_P_IP.to_be_bytes());
                out.extend_from_slice(&ipv4_header(
                    *src,
                    *dst,
                    *options,
                    *fragment_offset,
                    *more_fragments,
                    8 + self.data_len,
                ));
                out.extend_from_slice(&udp(self.data_len));
            }
            Payload::V6 {
                src,
                dst,
                extensions,
            } => {
                out.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                let ext_len = extensions.len() * 8;
                let first = extensions.first().copied().unwrap_or(17);
                let mut header = vec![0x60, 0, 0, 0];
                header.extend_from_slice(&((ext_len + 8 + self.data_len) as u16).to_be_bytes());
                header.extend_from_slice(&[first, 64]);
                header.extend_from_slice(&src.octets());
                header.extend_from_slice(&dst.octets());
                out.extend_from_slice(&header);
                for (i, _) in extensions.iter().enumerate() {
                    let next = extensions.get(i + 1).copied().unwrap_or(17);
                    // Next header, length 0 (8 bytes), then padding / fragment fields.
                    out.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
                }
                out.extend_from_slice(&udp(self.data_len));
            }
            Payload::Other { ethertype, body } => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend_from_slice(body);
            }
        }
        out
    }
}

fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    options: usize,
    fragment_offset: u16,
    more_fragments: bool,
    l4_len: usize,
) -> Vec<u8> {
    let header_len = 20 + options;
    let total = (header_len + l4_len) as u16;
    let flags_frag = (u16::from(more_fragments) << 13) | (fragment_offset & 0x1fff);
    let mut h = vec![0x40 | (header_len / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&flags_frag.to_be_bytes());
    h.extend_from_slice(&[64, 17, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    // Options: NOPs, ending with End of Options.
    h.extend(std::iter::repeat_n(1u8, options));
    if let Some(last) = h.last_mut().filter(|_| options > 0) {
        *last = 0;
    }
    let checksum = internet_checksum(&h);
    h[10..12].copy_from_slice(&checksum.to_be_bytes());
    h
}

fn udp(data_len: usize) -> Vec<u8> {
    let mut u = vec![0x30, 0x39, 0x00, 0x35];
    u.extend_from_slice(&((8 + data_len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]); // checksum optional for IPv4; tests never deliver it
    u.extend(std::iter::repeat_n(0xabu8, data_len));
    u
}

/// RFC 1071 checksum.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let bytes = Frame::v4(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        )
        .with_ipv4_options(8)
        .bytes();
        let header = &bytes[14..14 + 28];
        assert_eq!(header[0], 0x47, "version 4, IHL 7");
        assert_eq!(
            internet_checksum(header),
            0,
            "a correct header sums to zero"
        );
    }

    #[test]
    fn tags_and_extensions_land_where_expected() {
        let bytes = Frame::v6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
        .tagged(ETH_P_8021AD)
        .tagged(ETH_P_8021Q)
        .with_extensions(&[0, 60])
        .bytes();
        assert_eq!(&bytes[12..14], &ETH_P_8021AD.to_be_bytes());
        assert_eq!(&bytes[16..18], &ETH_P_8021Q.to_be_bytes());
        assert_eq!(&bytes[20..22], &ETH_P_IPV6.to_be_bytes());
        assert_eq!(bytes[22 + 6], 0, "next header: hop-by-hop");
        assert_eq!(bytes.len(), 22 + 40 + 16 + 8 + 18);
    }
}

#[cfg(test)]
mod parser_policy {
    //! The parser's policy on frames the kernel never lets BPF_PROG_TEST_RUN feed to the
    //! program (shorter than an Ethernet header): malformed, hence passed.
    use filter_common::parse::{parse_slice, Parsed};

    #[test]
    fn frames_shorter_than_ethernet_are_malformed() {
        for len in 0..14 {
            let mut frame = vec![0u8; len];
            if len >= 13 {
                frame[12] = 0x08; // first byte of the IPv4 ethertype
            }
            assert_eq!(parse_slice(&frame), Parsed::Malformed, "{len}-byte frame");
        }
    }

    #[test]
    fn addresses_come_out_in_network_order() {
        let frame = super::Frame::v4(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        assert_eq!(
            parse_slice(&frame.bytes()),
            Parsed::V4 {
                src: [192, 0, 2, 1],
                dst: [198, 51, 100, 2]
            }
        );
    }
}
