//! Real traffic from inside the namespaces: TCP connections, UDP datagrams, ICMP echo.

use std::{
    collections::HashMap,
    io::Read,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::Netns;

pub const TCP_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 5353;

pub fn sock(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().expect("a valid address"), port)
}

/// Tries a TCP connection from `ns`; true if it is established within `timeout`.
pub fn tcp_connects(ns: &Netns, to: SocketAddr, timeout: Duration) -> bool {
    ns.run(move || TcpStream::connect_timeout(&to, timeout).is_ok())
}

/// Servers in a namespace that count, per local address, TCP connections accepted and UDP
/// datagrams received. They stop when dropped.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    tcp: HashMap<IpAddr, Arc<AtomicU64>>,
    udp: HashMap<IpAddr, Arc<AtomicU64>>,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Listens on TCP_PORT and UDP_PORT of each address in `addrs`.
    pub fn start(ns: &Netns, addrs: &[&str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut l = Self {
            stop: Arc::clone(&stop),
            tcp: HashMap::new(),
            udp: HashMap::new(),
            threads: Vec::new(),
        };
        for a in addrs {
            let ip: IpAddr = a.parse().expect("a valid address");
            let (tcp_count, udp_count) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            l.tcp.insert(ip, Arc::clone(&tcp_count));
            l.udp.insert(ip, Arc::clone(&udp_count));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stop = Arc::clone(&stop);
            l.threads.push(ns.spawn(move || {
                let listener = TcpListener::bind((ip, TCP_PORT)).expect("binding TCP");
                listener.set_nonblocking(true).expect("non-blocking");
                let udp = UdpSocket::bind((ip, UDP_PORT)).expect("binding UDP");
                udp.set_read_timeout(Some(Duration::from_millis(5)))
                    .expect("timeout");
                ready_tx.send(()).expect("ready");
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    while let Ok((mut s, _)) = listener.accept() {
                        tcp_count.fetch_add(1, Ordering::Relaxed);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
                        let _ = s.read(&mut buf);
                    }
                    // A bounded batch: a steady stream of datagrams must not keep
                    // connections waiting in the accept queue (which then drops SYNs).
                    for _ in 0..256 {
                        if udp.recv_from(&mut buf).is_err() {
                            break;
                        }
                        udp_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
            ready_rx.recv().expect("listener thread started");
        }
        l
    }

    pub fn tcp(&self, addr: &str) -> u64 {
        self.tcp[&addr.parse::<IpAddr>().expect("valid")].load(Ordering::Relaxed)
    }

    pub fn udp(&self, addr: &str) -> u64 {
        self.udp[&addr.parse::<IpAddr>().expect("valid")].load(Ordering::Relaxed)
    }

    /// The live counter of datagrams received on `addr`, for a thread to watch.
    pub fn udp_counter(&self, addr: &str) -> Arc<AtomicU64> {
        Arc::clone(&self.udp[&addr.parse::<IpAddr>().expect("valid")])
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends `count` UDP datagrams of `payload` bytes from `ns` (from `from`, if given) to `to`.
pub fn udp_send(ns: &Netns, from: Option<IpAddr>, to: SocketAddr, count: u64, payload: usize) {
    ns.run(move || {
        let local: SocketAddr = match (from, to) {
            (Some(ip), _) => SocketAddr::new(ip, 0),
            (None, SocketAddr::V4(_)) => "0.0.0.0:0".parse().expect("valid"),
            (None, SocketAddr::V6(_)) => "[::]:0".parse().expect("valid"),
        };
        let s = UdpSocket::bind(local).expect("binding the sender");
        let data = vec![0x5au8; payload];
        for _ in 0..count {
            // ENOBUFS or a neighbour not yet resolved may refuse a datagram; tests that
            // count exactly check what was accepted for sending.
            s.send_to(&data, to).expect("sending a datagram");
        }
    })
}

/// A stream of UDP datagrams from `ns` to several destinations, one round every
/// `interval`, until stopped. Counts what it sent per destination.
pub struct Stream {
    stop: Arc<AtomicBool>,
    sent: HashMap<SocketAddr, Arc<AtomicU64>>,
    thread: Option<JoinHandle<()>>,
}

impl Stream {
    pub fn start(ns: &Netns, to: &[SocketAddr], interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent: HashMap<SocketAddr, Arc<AtomicU64>> = to
            .iter()
            .map(|a| (*a, Arc::new(AtomicU64::new(0))))
            .collect();
        let (stop2, sent2) = (Arc::clone(&stop), sent.clone());
        let thread = ns.spawn(move || {
            let v4 = UdpSocket::bind("0.0.0.0:0").expect("bind");
            let v6 = UdpSocket::bind("[::]:0").expect("bind");
            let mut next = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                for (addr, count) in &sent2 {
                    let s = if addr.is_ipv4() { &v4 } else { &v6 };
                    if s.send_to(b"stream", addr).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                next += interval;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    pub fn sent(&self, to: SocketAddr) -> u64 {
        self.sent[&to].load(Ordering::Relaxed)
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// TCP connection attempts from `ns` to each target (a thread per target), one every
/// `interval`, until stopped: each attempt waits at most `timeout` for the handshake.
/// Counts attempts and connections established per target (the server's `Listeners`
/// count what it accepted).
pub struct TcpAttempts {
    stop: Arc<AtomicBool>,
    counts: HashMap<SocketAddr, (Arc<AtomicU64>, Arc<AtomicU64>)>,
    threads: Vec<JoinHandle<()>>,
}

impl TcpAttempts {
    pub fn start(ns: &Netns, to: &[SocketAddr], timeout: Duration, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: HashMap<_, _> = to
            .iter()
            .map(|a| {
                (
                    *a,
                    (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))),
                )
            })
            .collect();
        let threads = counts
            .iter()
            .map(|(addr, (tried, connected))| {
                let (addr, stop) = (*addr, Arc::clone(&stop));
                let (tried, connected) = (Arc::clone(tried), Arc::clone(connected));
                ns.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        tried.fetch_add(1, Ordering::Relaxed);
                        if TcpStream::connect_timeout(&addr, timeout).is_ok() {
                            connected.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(interval);
                    }
                })
            })
            .collect();
        Self {
            stop,
            counts,
            threads,
        }
    }

    /// (attempts, connections established) to `to`.
    pub fn counts(&self, to: SocketAddr) -> (u64, u64) {
        let (tried, connected) = &self.counts[&to];
        (
            tried.load(Ordering::Relaxed),
            connected.load(Ordering::Relaxed),
        )
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for TcpAttempts {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Watches a counter (e.g. datagrams received on an allowed address) from a thread and
/// records the longest time it stood still: how long allowed traffic stalled.
pub struct StallWatch {
    stop: Arc<AtomicBool>,
    longest_ms: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl StallWatch {
    pub fn start(counter: Arc<AtomicU64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let longest_ms = Arc::new(AtomicU64::new(0));
        let (stop2, longest2) = (Arc::clone(&stop), Arc::clone(&longest_ms));
        let thread = std::thread::spawn(move || {
            let (mut last, mut since) = (counter.load(Ordering::Relaxed), Instant::now());
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                let now = counter.load(Ordering::Relaxed);
                if now != last {
                    (last, since) = (now, Instant::now());
                }
                longest2.fetch_max(since.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        });
        Self {
            stop,
            longest_ms,
            thread: Some(thread),
        }
    }

    /// The longest stall so far.
    pub fn longest(&self) -> Duration {
        Duration::from_millis(self.longest_ms.load(Ordering::Relaxed))
    }

    pub fn stop(&mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.longest()
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One ICMP (or ICMPv6) echo from `ns` to `dst`; true if the reply comes within `timeout`.
pub fn ping(ns: &Netns, dst: IpAddr, timeout: Duration) -> bool {
    ns.run(move || ping_here(dst, timeout))
}

fn ping_here(dst: IpAddr, timeout: Duration) -> bool {
    let (domain, proto, request, reply) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8),
    };
    // SAFETY: plain socket creation; the fd is owned right away.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW, proto) };
    assert!(
        fd >= 0,
        "raw ICMP socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ident = (std::process::id() as u16) ^ 0x4246;
    let mut packet = vec![request, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet.extend_from_slice(b"borderfilter-test");
    if dst.is_ipv4() {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    } // ICMPv6 checksums are filled in by the kernel for raw ICMPv6 sockets.
    let (addr, len) = sockaddr(dst);
    // SAFETY: valid buffer and address of the given lengths.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc < 0 {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let tv = libc::timeval {
            tv_sec: left.as_secs() as _,
            tv_usec: left.subsec_micros().max(1000) as _,
        };
        // SAFETY: setting a timeval option on our socket.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        // SAFETY: receiving into our buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return false;
        }
        // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
        let icmp = if dst.is_ipv4() {
            &buf[usize::from(buf[0] & 0x0f) * 4..n as usize]
        } else {
            &buf[..n as usize]
        };
        if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == ident.to_be_bytes() {
            return true;
        }
    }
    false
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match ip {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            (storage, size_of::<libc::sockaddr_in>() as u32)
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            (storage, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A plain HTTP/1.1 GET from `ns`: (status code, headers and body as text).
pub fn http_get(
    ns: &Netns,
    to: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> Option<(u16, String)> {
    http_get_host(ns, to, &to.to_string(), path, accept)
}

/// [`http_get`] naming `host` in the `Host` header, as a browser asking for a site does.
pub fn http_get_host(
    ns: &Netns,
    to: SocketAddr,
    host: &str,
    path: &str,
    accept: Option<&str>,
) -> Option<(u16, String)> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{}\r\n",
        accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default()
    );
    ns.run(move || {
        use std::io::Write;
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, text))
    })
}

/// The body of an HTTP response text.
pub fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
