//! IP prefixes as the order list writes them and the LPM tries store them.

use std::{
    cmp::Ordering,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// A network prefix with no host bits set. Ordered by family, then address, then length,
/// so a sorted list puts every prefix right before the prefixes it contains.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a string is not a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{text:?} is not an IPv4 or IPv6 address or prefix")]
    Syntax { text: String },
    #[error("prefix length {len} is out of range for {family} (0 to {max})", family = family.name(), max = family.bits())]
    LengthOutOfRange { len: String, family: Family },
    #[error("{text} has host bits set; the network is {network}")]
    HostBits { text: String, network: Prefix },
}

impl Prefix {
    /// A prefix from an address and a length; host bits beyond `len` are cleared.
    /// Panics if `len` exceeds the family's width (a programming error, not input).
    pub fn new_truncating(addr: IpAddr, len: u8) -> Self {
        let family = family_of(addr);
        assert!(
            len <= family.bits(),
            "prefix length {len} > {}",
            family.bits()
        );
        Self {
            addr: mask(addr, len),
            len,
        }
    }

    /// The prefix that covers exactly `addr`.
    pub fn host(addr: IpAddr) -> Self {
        Self::new_truncating(addr, family_of(addr).bits())
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn length(&self) -> u8 {
        self.len
    }

    pub fn family(&self) -> Family {
        family_of(self.addr)
    }

    /// The address in network byte order, as LPM keys store it.
    pub fn addr_bytes(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        family_of(addr) == self.family() && mask(addr, self.len) == self.addr
    }

    /// True when every address of `other` is in `self` (a prefix contains itself).
    pub fn contains(&self, other: &Prefix) -> bool {
        other.len >= self.len && self.contains_addr(other.addr)
    }

    /// True when the two prefixes share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Number of addresses, saturating at `u128::MAX`.
    pub fn size(&self) -> u128 {
        let host_bits = u32::from(self.family().bits() - self.len);
        1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
    }
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// `addr` with every bit after the first `len` cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// Accepts `ADDR/LEN` or a bare address (a host prefix). Host bits are an error, since
    /// `198.51.100.7/24` is usually a typo for either the host or the network.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || PrefixError::Syntax {
            text: text.to_string(),
        };
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| syntax())?;
        let family = family_of(addr);
        let len = match len_text {
            None => family.bits(),
            Some(l) => {
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                match l.parse::<u8>() {
                    Ok(len) if len <= family.bits() => len,
                    _ => {
                        return Err(PrefixError::LengthOutOfRange {
                            len: l.to_string(),
                            family,
                        })
                    }
                }
            }
        };
        let prefix = Prefix::new_truncating(addr, len);
        if prefix.addr != addr {
            return Err(PrefixError::HostBits {
                text: text.to_string(),
                network: prefix,
            });
        }
        Ok(prefix)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Ord for Prefix {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.family(), self.addr, self.len).cmp(&(other.family(), other.addr, other.len))
    }
}

impl PartialOrd for Prefix {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn p(s: &str) -> Prefix {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn parses_cidr_and_bare_addresses() {
        assert_eq!(p("198.51.100.0/24").to_string(), "198.51.100.0/24");
        assert_eq!(p("203.0.113.7").to_string(), "203.0.113.7/32");
        assert_eq!(p("2001:db8:66::/48").to_string(), "2001:db8:66::/48");
        assert_eq!(p("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(p("0.0.0.0/0").length(), 0);
    }

    #[test]
    fn host_bits_name_the_network() {
        let err = "198.51.100.7/24".parse::<Prefix>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "198.51.100.7/24 has host bits set; the network is 198.51.100.0/24"
        );
        let err = "2001:db8::1/32".parse::<Prefix>().unwrap_err();
        assert!(
            err.to_string().ends_with("the network is 2001:db8::/32"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_syntax_and_lengths() {
        for bad in [
            "",
            "/",
            "198.51.100",
            "198.51.100.0/",
            "198.51.100.0/+8",
            "x/8",
            "198.51.100.0/24/1",
            " 198.51.100.0/24",
            "010.0.0.1",
            "1.2.3.4/ 8",
        ] {
            assert!(
                matches!(bad.parse::<Prefix>(), Err(PrefixError::Syntax { .. })),
                "{bad:?} should be a syntax error, got {:?}",
                bad.parse::<Prefix>()
            );
        }
        for bad in ["198.51.100.0/33", "2001:db8::/129", "198.51.100.0/300"] {
            assert!(
                matches!(
                    bad.parse::<Prefix>(),
                    Err(PrefixError::LengthOutOfRange { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn containment() {
        assert!(p("198.51.100.0/24").contains(&p("198.51.100.128/25")));
        assert!(p("198.51.100.0/24").contains(&p("198.51.100.0/24")));
        assert!(!p("198.51.100.128/25").contains(&p("198.51.100.0/24")));
        assert!(!p("198.51.100.0/24").contains(&p("2001:db8::/32")));
        assert!(p("0.0.0.0/0").contains_addr("203.0.113.1".parse().unwrap()));
        assert!(!p("0.0.0.0/0").contains_addr("2001:db8::1".parse().unwrap()));
        assert!(p("198.51.100.0/25").overlaps(&p("198.51.100.0/24")));
        assert!(!p("198.51.100.0/25").overlaps(&p("198.51.100.128/25")));
    }

    #[test]
    fn sorted_parents_come_first() {
        let mut v = [
            p("198.51.100.128/25"),
            p("198.51.100.0/24"),
            p("2001:db8::/32"),
            p("198.51.100.0/25"),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            s,
            [
                "198.51.100.0/24",
                "198.51.100.0/25",
                "198.51.100.128/25",
                "2001:db8::/32"
            ]
        );
    }
}
