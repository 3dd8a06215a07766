//! Looking at the data plane from outside the daemon, with raw `bpf(2)` calls: how many
//! entries a pinned trie holds (to kill the daemon while it writes one), and what the
//! program attached to an interface decides for a frame (BPF_PROG_TEST_RUN), which shows
//! what the kernel enforces even while no daemon runs.

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use crate::netns::Netns;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_F_RDONLY: u32 = 1 << 3;

/// `enum xdp_action`.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// `union bpf_attr`, zeroed, large enough for the commands used here.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }
    fn u32_at(&mut self, offset: usize, v: u32) -> &mut Self {
        self.0[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, offset: usize, v: u64) -> &mut Self {
        self.0[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn read_u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.0[offset..offset + 4].try_into().expect("4 bytes"))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, zero-padded bpf_attr of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Opens the map (read-only) or program pinned at `path`.
pub fn pinned(path: &Path) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut attr = Attr::new();
    attr.u64_at(0, name.as_ptr() as u64)
        .u32_at(12, BPF_F_RDONLY);
    bpf(BPF_OBJ_GET, &mut attr).map(owned)
}

/// A field of `/proc/self/fdinfo/FD` of a BPF object.
fn fdinfo(fd: &OwnedFd, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .parse()
        .ok()
}

/// The memory the kernel accounts to the map pinned at `path`. For an LPM trie this is
/// its entry count times the size of a node (`trie_mem_usage`), so it grows and shrinks
/// with the entries: a cheap way to watch a sync fill the trie.
pub fn map_memory(path: &Path) -> Option<u64> {
    fdinfo(&pinned(path).ok()?, "memlock")
}

/// The XDP program attached to `iface` in `ns`, opened for BPF_PROG_TEST_RUN.
pub struct AttachedProgram {
    fd: OwnedFd,
    pub id: u32,
}

impl AttachedProgram {
    /// The program `ip link` shows on `iface`, or `None` if none is attached.
    pub fn of(ns: &Netns, iface: &str) -> Option<Self> {
        let out = ns.ip(&["-j", "-d", "link", "show", "dev", iface]);
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let xdp = &links[0]["xdp"];
        let id = xdp["prog"]["id"]
            .as_u64()
            .or_else(|| xdp["attached"][0]["prog"]["id"].as_u64())?;
        let mut attr = Attr::new();
        attr.u32_at(0, id as u32);
        let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
            .unwrap_or_else(|e| panic!("opening XDP program {id}: {e}"));
        Some(Self {
            fd: owned(fd),
            id: id as u32,
        })
    }

    /// Runs the program once on a UDP frame from `src` to `dst` and returns the XDP
    /// action it chose (counters count it like a real packet).
    pub fn verdict(&self, src: IpAddr, dst: IpAddr) -> u32 {
        let frame = udp_frame(src, dst);
        let mut out = vec![0u8; frame.len() + 256];
        let mut attr = Attr::new();
        attr.u32_at(0, self.fd.as_raw_fd() as u32)
            .u32_at(8, frame.len() as u32)
            .u32_at(12, out.len() as u32)
            .u64_at(16, frame.as_ptr() as u64)
            .u64_at(24, out.as_mut_ptr() as u64)
            .u32_at(32, 1);
        bpf(BPF_PROG_TEST_RUN, &mut attr)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on program {}: {e}", self.id));
        attr.read_u32(4)
    }
}

/// An Ethernet frame carrying a UDP datagram from `src` to `dst` (same family).
pub fn udp_frame(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    let udp = [0x30, 0x39, 0x14, 0xe9, 0, 12, 0, 0, b'p', b'r', b'o', b'b'];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut h = vec![
                0x45,
                0,
                0,
                20 + udp.len() as u8,
                0,
                1,
                0x40,
                0,
                64,
                17,
                0,
                0,
            ];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let sum = !h
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .fold(0u32, |a, b| {
                    let s = a + b;
                    (s & 0xffff) + (s >> 16)
                }) as u16;
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0, 0, udp.len() as u8, 17, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
    f.extend_from_slice(&udp);
    f
}
