//! XDP attachment through rtnetlink (`RTM_SETLINK` with `IFLA_XDP`), the way `ip link set
//! dev IF xdp` does it, and the query of what each interface runs.
//!
//! Why not bpf_link: an XDP link lives only as long as an fd or a pin holds it, and
//! pinning links is refused on some hosts (EPERM from BPF_OBJ_PIN, seen on our build
//! machines). A netlink attachment belongs to the interface: it outlives the daemon with
//! nothing pinned, and a new program replaces the old one atomically.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour states with a usable link-layer address.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

pub const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
pub const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// How a program is attached to an interface, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Driver,
    Generic,
    Hardware,
    /// Several programs in different modes.
    Multi,
}

/// An interface and the XDP program it runs, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkXdp {
    pub index: u32,
    pub name: String,
    /// The interface's MAC address, when it has one.
    pub mac: Option<[u8; 6]>,
    pub prog: Option<(u32, Attached)>,
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket creation; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is valid for its length; a null address sends to the kernel.
        let rc = unsafe { libc::send(self.0.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: receiving into our own buffer of the given length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align4(buf.len()), 0);
}

/// A request: netlink header, `ifinfomsg` for interface `index`, then `attrs`.
fn message(kind: u16, flags: u16, index: u32, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + attrs.len());
    let len = 16 + 16 + attrs.len();
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
                                              // ifinfomsg: family, pad, type, index, flags, change
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    m.extend_from_slice(&(index as i32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(attrs);
    m
}

/// The netlink messages in a buffer: (type, payload).
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < 16 || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + 16..at + len]));
        at += align4(len);
    }
    out
}

/// Attributes in a buffer: (type without flags, payload).
fn attributes(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16::from_ne_bytes(buf[at..at + 2].try_into().expect("2 bytes")) as usize;
        let kind =
            u16::from_ne_bytes(buf[at + 2..at + 4].try_into().expect("2 bytes")) & !NLA_F_NESTED;
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + 4..at + len]));
        at += align4(len);
    }
    out
}

/// The error code of an `NLMSG_ERROR` payload (0 is the ACK).
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

/// Sets (or with `prog: None`, removes) the XDP program of interface `index`. With
/// `expected`, the kernel replaces only if that program is the one attached now.
pub fn set_xdp(
    index: u32,
    prog: Option<BorrowedFd<'_>>,
    flags: u32,
    expected: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut xdp = Vec::new();
    let fd = prog.map_or(-1, |p| p.as_raw_fd());
    push_attr(&mut xdp, IFLA_XDP_FD, &fd.to_ne_bytes());
    let mut flags = flags;
    if let Some(old) = expected {
        flags |= XDP_FLAGS_REPLACE;
        push_attr(
            &mut xdp,
            IFLA_XDP_EXPECTED_FD,
            &old.as_raw_fd().to_ne_bytes(),
        );
    }
    push_attr(&mut xdp, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    let mut attrs = Vec::new();
    push_attr(&mut attrs, IFLA_XDP | NLA_F_NESTED, &xdp);
    let socket = Socket::open()?;
    socket.send(&message(
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        index,
        &attrs,
    ))?;
    loop {
        let reply = socket.recv()?;
        for (kind, payload) in messages(&reply) {
            if kind == NLMSG_ERROR {
                return match error_code(payload) {
                    0 => Ok(()),
                    e => Err(io::Error::from_raw_os_error(-e)),
                };
            }
        }
    }
}

/// Every interface of this network namespace and its XDP program.
pub fn links() -> io::Result<Vec<LinkXdp>> {
    let socket = Socket::open()?;
    socket.send(&message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 0, &[]))?;
    let mut out = Vec::new();
    loop {
        let reply = socket.recv()?;
        for (kind, payload) in messages(&reply) {
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR if error_code(payload) != 0 => {
                    return Err(io::Error::from_raw_os_error(-error_code(payload)))
                }
                RTM_NEWLINK if payload.len() >= 16 => {
                    let index =
                        i32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes")) as u32;
                    let mut link = LinkXdp {
                        index,
                        name: String::new(),
                        mac: None,
                        prog: None,
                    };
                    let mut attached = 0u8;
                    let mut prog_id = 0u32;
                    for (kind, value) in attributes(&payload[16..]) {
                        match kind {
                            IFLA_ADDRESS => link.mac = value.try_into().ok(),
                            IFLA_IFNAME => {
                                link.name = String::from_utf8_lossy(
                                    value.split(|b| *b == 0).next().unwrap_or(value),
                                )
                                .into_owned()
                            }
                            IFLA_XDP => {
                                for (k, v) in attributes(value) {
                                    match k {
                                        IFLA_XDP_ATTACHED => {
                                            attached = v.first().copied().unwrap_or(0)
                                        }
                                        IFLA_XDP_PROG_ID if v.len() >= 4 => {
                                            prog_id = u32::from_ne_bytes(
                                                v[..4].try_into().expect("4 bytes"),
                                            )
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    let mode = match attached {
                        1 => Some(Attached::Driver),
                        2 => Some(Attached::Generic),
                        3 => Some(Attached::Hardware),
                        4 => Some(Attached::Multi),
                        _ => None,
                    };
                    link.prog = mode.filter(|_| prog_id != 0).map(|m| (prog_id, m));
                    out.push(link);
                }
                _ => {}
            }
        }
    }
}

/// The link-layer address of neighbour `ip`, if the kernel has a usable one.
pub fn neighbour(ip: std::net::IpAddr) -> io::Result<Option<(u32, [u8; 6])>> {
    let family = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    let wanted: Vec<u8> = match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    let socket = Socket::open()?;
    // ndmsg: family, 3 pad bytes, ifindex, state, flags, type
    let mut m = Vec::with_capacity(28);
    m.extend_from_slice(&28u32.to_ne_bytes());
    m.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(&[0u8; 8]);
    socket.send(&m)?;
    let mut found = None;
    loop {
        let reply = socket.recv()?;
        for (kind, payload) in messages(&reply) {
            match kind {
                NLMSG_DONE => return Ok(found),
                NLMSG_ERROR if error_code(payload) != 0 => {
                    return Err(io::Error::from_raw_os_error(-error_code(payload)))
                }
                RTM_NEWNEIGH if payload.len() >= 12 => {
                    let index =
                        i32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes")) as u32;
                    let state = u16::from_ne_bytes(payload[8..10].try_into().expect("2 bytes"));
                    let (mut dst, mut lladdr) = (None, None);
                    for (k, v) in attributes(&payload[12..]) {
                        match k {
                            NDA_DST => dst = Some(v),
                            NDA_LLADDR => lladdr = <[u8; 6]>::try_from(v).ok(),
                            _ => {}
                        }
                    }
                    if dst == Some(wanted.as_slice()) && state & NUD_USABLE != 0 {
                        if let Some(mac) = lladdr {
                            found = Some((index, mac));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
