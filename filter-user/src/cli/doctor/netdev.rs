//! What an interface's driver can do, asked the way `ethtool -i` and `ynl` ask: the
//! driver's name (SIOCETHTOOL, ETHTOOL_GDRVINFO) and its XDP features (the "netdev"
//! generic netlink family, Linux 6.3 and later).

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

const NETLINK_GENERIC: i32 = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;

/// `enum netdev_xdp_act` bits.
pub const XDP_ACT_BASIC: u64 = 1 << 0;
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

/// The driver of `iface`, as `ethtool -i` names it.
pub fn driver(iface: &str) -> Option<String> {
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        counts: [u32; 5],
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut DrvInfo,
        _pad: [u8; 16],
    }
    const ETHTOOL_GDRVINFO: u32 = 3;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;

    let name = CString::new(iface).ok()?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return None;
    }
    let socket = socket(libc::AF_INET, libc::SOCK_DGRAM, 0).ok()?;
    // SAFETY: all-zero is valid for both plain-data structs.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut info,
        _pad: [0; 16],
    };
    request.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: SIOCETHTOOL reads the name and writes a `struct ethtool_drvinfo` (which
    // `DrvInfo` lays out) through `data`; both live across the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut request) };
    if rc != 0 {
        return None;
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// The XDP features (`XDP_ACT_*` bits) the driver of interface `index` reports, or `None`
/// when the kernel cannot say (before Linux 6.3 there is no "netdev" family).
pub fn xdp_features(index: u32) -> io::Result<Option<u64>> {
    let socket = socket(libc::AF_NETLINK, libc::SOCK_RAW, NETLINK_GENERIC)?;
    let timeout = libc::timeval {
        tv_sec: Duration::from_secs(2).as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setting a socket option from a value that lives across the call.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let family = match request(
        &socket,
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        &attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
    ) {
        Ok(reply) => attributes(&reply)
            .find(|(kind, _)| *kind == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, v)| v.get(..2))
            .map(|v| u16::from_ne_bytes([v[0], v[1]])),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(family) = family else {
        return Ok(None);
    };
    let reply = request(
        &socket,
        family,
        NETDEV_CMD_DEV_GET,
        &attr(NETDEV_A_DEV_IFINDEX, &index.to_ne_bytes()),
    )?;
    let features = attributes(&reply)
        .find(|(kind, _)| *kind == NETDEV_A_DEV_XDP_FEATURES)
        .and_then(|(_, v)| v.get(..8))
        .map(|v| u64::from_ne_bytes(v.try_into().expect("8 bytes")));
    Ok(features)
}

fn socket(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the fd is owned right away.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(4 + payload.len() + 3);
    a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize((a.len() + 3) & !3, 0);
    a
}

/// Sends a generic netlink request and returns the attributes of the answer.
fn request(socket: &OwnedFd, family: u16, cmd: u8, attrs: &[u8]) -> io::Result<Vec<u8>> {
    let mut m = Vec::with_capacity(20 + attrs.len());
    m.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: command, version, reserved
    m.extend_from_slice(attrs);
    // SAFETY: the buffer is valid for its length; a null address sends to the kernel.
    if unsafe { libc::send(socket.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: receiving into our own buffer of the given length.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    let header = |at: usize| {
        buf.get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let len = buf.get(..4).map_or(0, |b| {
        u32::from_ne_bytes(b.try_into().expect("4 bytes")) as usize
    });
    if len < 20 || len > buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short netlink answer",
        ));
    }
    if header(4) == Some(NLMSG_ERROR) {
        let code = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
        return Err(io::Error::from_raw_os_error(-code));
    }
    Ok(buf[20..len].to_vec())
}

/// (type without flags, payload) of each attribute in `buf`.
fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + 4)?;
        let len = usize::from(u16::from_ne_bytes([head[0], head[1]]));
        let kind = u16::from_ne_bytes([head[2], head[3]]) & 0x3fff;
        let value = buf.get(at + 4..at + len.max(4))?;
        at += (len.max(4) + 3) & !3;
        Some((kind, value))
    })
}
