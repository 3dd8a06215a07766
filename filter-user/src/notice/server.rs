//! The notice server's connections: listening, reading each request head with the
//! tolerant reader, answering 451 and closing, within limits that keep it up under abuse.
//!
//! Why not hyper (which the metrics endpoint uses, see `crate::http`): hyper answers
//! `400 Bad Request` with an empty body to request lines it finds irregular, and every
//! request that reaches the notice host must get the notice. The server needs nothing
//! from a request but `HEAD` and `Accept`, so a small reader that accepts anything is
//! simpler than bending a strict parser.
//!
//! Each connection gets one answer and is closed (`Connection: close`): no keep-alive, so
//! no request smuggling or pipelining questions, and one page per connection is all a
//! subscriber needs. The limits:
//!
//! - at most `max_connections` connections open at once; when full, a new connection
//!   closes the one that has waited longest for its client (a request head not complete,
//!   or the rest of a body after the answer). A real client sends its request at once, so
//!   the oldest waiting connections are almost always idle or deliberately slow ones, and
//!   a flood of them cannot lock real subscribers out, as it would if new connections
//!   waited for a free place;
//! - the request head must be complete `header_timeout` after the connection is accepted
//!   (a total, not a time between bytes, so trickling bytes does not extend it) and within
//!   `max_header_bytes`; past either, the page is sent anyway (if the client sent
//!   anything) and the connection closed;
//! - after the answer, what the client still sends (a body) is read and discarded for at
//!   most `header_timeout` and `max_body_bytes`, so that closing does not reset the
//!   connection while the client is still sending, which could destroy the answer before
//!   the client reads it;
//! - writing the answer to a client that does not read gives up after `header_timeout`.
//!
//! HTTPS cannot be answered (no certificate can name a blocked site): connections to the
//! reset port are accepted and reset at once (`SO_LINGER` 0), so the browser reports an
//! error at once (and an HTTPS-first browser falls back to `http://` and the page). The
//! kernel's refusal of a port nobody listens on would be as fast, but a firewall that
//! drops packets to closed ports leaves the browser waiting for its connect timeout; an
//! explicit listener does not depend on that, and says in the log what it does.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::{timeout, timeout_at, Instant},
};

use super::{
    follow, initial_list, page,
    request::{End, Head},
    NoticeConfig, Page, SharedList,
};

pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// HTTPS: the port whose connections are reset by default.
pub const DEFAULT_RESET_PORT: u16 = 443;

/// File descriptors kept free for everything but connections: listeners, the order list
/// and templates being read, the runtime's own, standard streams.
const RESERVED_FDS: u64 = 64;

/// Connections the kernel queues until they are accepted (capped by
/// `net.core.somaxconn`). Tokio's default, 128, fills within milliseconds when many
/// clients connect at once (measured: one connection in 129 waited a second); the kernel
/// then drops further SYNs, and those clients, real ones included, retry a second later.
const BACKLOG: u32 = 4096;

/// The limits that keep the server up under abuse (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("cannot listen on {addr} ({what})")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("starting the async runtime")]
    Runtime(#[source] io::Error),
}

/// A timeout given in seconds on the command line, with a fraction if wanted (`10`,
/// `0.5`): more than 0, at most an hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let seconds: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number of seconds"))?;
        if !(seconds > 0.0 && seconds <= 3600.0) {
            return Err(format!(
                "{text} is not between 0 (excluded) and 3600 seconds"
            ));
        }
        Ok(Self(Duration::from_secs_f64(seconds)))
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A bound server: listening, not yet answering.
pub struct Server {
    http: Vec<TcpListener>,
    reset: Vec<TcpListener>,
    shared: Arc<Shared>,
}

/// What every connection needs.
struct Shared {
    config: NoticeConfig,
    list: SharedList,
    connections: Arc<Connections>,
}

impl Server {
    /// Reads the order list and binds every address: the `--listen` ones, then the reset
    /// port on each of their addresses (skipped where an HTTP listener has that port).
    pub async fn bind(mut config: NoticeConfig) -> Result<Self, NoticeError> {
        config.limits.max_connections = fit_fd_limit(config.limits.max_connections);
        let mut http = Vec::new();
        for &addr in &config.listen {
            let listener = listen(addr).map_err(|source| NoticeError::Listen {
                what: "HTTP",
                addr,
                source,
            })?;
            http.push(listener);
        }
        let mut reset: Vec<TcpListener> = Vec::new();
        if let Some(port) = config.reset_port {
            let mut ips: Vec<IpAddr> = config
                .listen
                .iter()
                .filter(|a| port == 0 || a.port() != port)
                .map(SocketAddr::ip)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // Wildcards first ([::], then 0.0.0.0): an address one of them already covers
            // cannot be bound again on Linux, and need not be.
            ips.sort_by_key(|ip| (!ip.is_unspecified(), ip.is_ipv4()));
            for ip in ips {
                let addr = SocketAddr::new(ip, port);
                match listen(addr) {
                    Ok(listener) => reset.push(listener),
                    Err(e)
                        if e.kind() == io::ErrorKind::AddrInUse
                            && reset
                                .iter()
                                .any(|l| l.local_addr().is_ok_and(|a| a.ip().is_unspecified())) =>
                    {
                        log::debug!("{addr}: covered by the wildcard reset listener ({e})");
                    }
                    Err(source) => {
                        return Err(NoticeError::Listen {
                            what: "HTTPS resets; choose another --reset-port or --no-reset",
                            addr,
                            source,
                        })
                    }
                }
            }
        }
        let list = initial_list(&config);
        let connections = Arc::new(Connections::new(config.limits.max_connections));
        Ok(Self {
            http,
            reset,
            shared: Arc::new(Shared {
                config,
                list,
                connections,
            }),
        })
    }

    /// The addresses answered with the notice (with the ports actually bound).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The addresses whose connections are reset.
    pub fn reset_addrs(&self) -> Vec<SocketAddr> {
        self.reset
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// A view of the running server, for tests and logs.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Answers until the process ends.
    pub async fn run(self) -> Result<(), NoticeError> {
        let limits = self.shared.config.limits;
        let mut tasks = JoinSet::new();
        tasks.spawn(follow(
            Arc::clone(&self.shared.list),
            self.shared.config.clone(),
        ));
        for listener in self.http {
            if let Ok(addr) = listener.local_addr() {
                log::info!(
                    "answering every HTTP request on {addr} with the block notice (451); \
                     at most {} connections, {} bytes of request head within {:?}",
                    limits.max_connections,
                    limits.max_header_bytes,
                    limits.header_timeout,
                );
            }
            tasks.spawn(accept_http(listener, Arc::clone(&self.shared)));
        }
        for listener in self.reset {
            if let Ok(addr) = listener.local_addr() {
                log::info!("resetting every connection on {addr} (HTTPS cannot be answered)");
            }
            tasks.spawn(accept_reset(listener));
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                log::error!("a notice server task ended: {e}");
            }
        }
        Ok(())
    }
}

/// A listening socket on `addr` with a deep [`BACKLOG`]. Like `TcpListener::bind`, it
/// reuses the address (a restart does not wait for old connections to time out) and
/// leaves an IPv6 wildcard accepting IPv4 where the system does.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A view of a running server.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Connections open now (answered, or waiting for their client).
    pub fn open_connections(&self) -> usize {
        let c = &self.shared.connections;
        c.max - c.permits.available_permits()
    }

    /// The connection limit in force (`max_connections`, lowered to what the process's
    /// file descriptor limit allows).
    pub fn max_connections(&self) -> usize {
        self.shared.connections.max
    }

    /// Connections closed to make room for new ones.
    pub fn evicted(&self) -> u64 {
        self.shared.connections.evicted.load(Ordering::Relaxed)
    }
}

/// Raises the soft limit on open files to the hard limit (each connection holds one, and
/// the usual soft limit, 1024, is below the default `max_connections`), and lowers
/// `wanted` to what fits, with a warning: serving fewer connections beats failing accepts.
fn fit_fd_limit(wanted: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return wanted;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let fits = usize::try_from(limit.rlim_cur.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if wanted > fits {
        log::warn!(
            "--max-connections {wanted} lowered to {fits}: the open files limit is {} \
             (raise LimitNOFILE or ulimit -n)",
            limit.rlim_cur
        );
    }
    wanted.min(fits).max(1)
}

/// The connections open now, and which of them may be closed to make room.
struct Connections {
    max: usize,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    evicted: AtomicU64,
    /// Connections waiting for their client, by age (ids grow): the oldest is closed
    /// when the server is full.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
    /// When the last "full" warning was logged: one a minute is enough.
    warned: Mutex<Option<std::time::Instant>>,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            max,
            permits: Arc::new(Semaphore::new(max)),
            next_id: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            waiting: Mutex::new(BTreeMap::new()),
            warned: Mutex::new(None),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection: at once if there is one; otherwise after closing
    /// the connection that has waited longest for its client or, if every connection is
    /// busy answering (which ends within the header timeout), when one ends.
    async fn admit(self: &Arc<Self>) -> Option<Slot> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let oldest = self.waiting().pop_first();
                if let Some((_, close)) = oldest {
                    close.notify_one();
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                self.warn_full();
                Arc::clone(&self.permits).acquire_owned().await.ok()?
            }
        };
        let slot = Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            close: Arc::new(Notify::new()),
            connections: Arc::clone(self),
            _permit: permit,
        };
        // Waiting from the start, before its task first runs: a burst of connections
        // must find the earlier ones of the burst to close.
        slot.waiting();
        Some(slot)
    }

    fn warn_full(&self) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *warned = Some(std::time::Instant::now());
            log::warn!(
                "{} connections open (--max-connections): closing those that waited longest \
                 for their client to make room (logged once a minute)",
                self.max
            );
        }
    }
}

/// One connection's place among the `max_connections`; freed when dropped.
struct Slot {
    id: u64,
    /// Notified when the connection is to be closed to make room.
    close: Arc<Notify>,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// The connection waits for its client: it may be closed to make room.
    fn waiting(&self) {
        self.connections
            .waiting()
            .insert(self.id, Arc::clone(&self.close));
    }

    /// The connection is being answered: it is not closed to make room.
    fn busy(&self) {
        self.connections.waiting().remove(&self.id);
    }

    /// Returns when the connection is to be closed to make room.
    async fn evicted(&self) {
        self.close.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.waiting().remove(&self.id);
    }
}

async fn accept_http(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        let Some(slot) = shared.connections.admit().await else {
            return;
        };
        tokio::spawn(connection(stream, slot, Arc::clone(&shared)));
    }
}

/// Accepts and resets every connection: the kernel sends a TCP reset when a socket with
/// `SO_LINGER` 0 is closed. Nothing is read, nothing is kept.
async fn accept_reset(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(e) = stream.set_zero_linger() {
                    log::debug!("setting SO_LINGER 0: {e}");
                }
                drop(stream);
            }
            Err(e) => accept_failed(&e).await,
        }
    }
}

/// After a failed accept (out of file descriptors, most likely): wait a little rather
/// than spin, and say so at debug level only, since a flood would fill the log.
async fn accept_failed(e: &io::Error) {
    log::debug!("accepting a connection: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// One connection (its slot waiting): read the request head, answer, let the client
/// finish, close.
async fn connection(mut stream: TcpStream, slot: Slot, shared: Arc<Shared>) {
    let limits = shared.config.limits;
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let mut head = Head::new(limits.max_header_bytes);
    let deadline = Instant::now() + limits.header_timeout;
    let end = tokio::select! {
        end = read_head(&mut stream, &mut head, deadline) => end,
        () = slot.evicted() => return,
    };
    // Nothing asked (an idle connection, a port scan) or nobody to answer.
    if head.is_empty() || end == End::Failed {
        return;
    }
    slot.busy();
    let request = head.request();
    let page = {
        let list = shared.list.read().unwrap_or_else(|p| p.into_inner());
        page(
            list.as_ref(),
            local.ip().to_canonical(),
            &request.accept,
            request.host.as_ref(),
            &shared.config,
        )
    };
    let answer = response(&page, request.head_only);
    let written = timeout(limits.header_timeout, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) || end == End::Closed {
        return;
    }
    slot.waiting();
    tokio::select! {
        () = drain(&mut stream, limits.max_body_bytes, Instant::now() + limits.header_timeout) => {}
        () = slot.evicted() => {}
    }
}

/// Reads into `head` until it says stop, the client closes, or `deadline`.
async fn read_head(stream: &mut TcpStream, head: &mut Head, deadline: Instant) -> End {
    let mut chunk = [0u8; 4096];
    loop {
        let want = head.room().min(chunk.len());
        match timeout_at(deadline, stream.read(&mut chunk[..want])).await {
            Err(_) => return End::TimedOut,
            Ok(Ok(0)) => return End::Closed,
            Ok(Ok(n)) => {
                if let Some(end) = head.push(&chunk[..n]) {
                    return end;
                }
            }
            Ok(Err(_)) => return End::Failed,
        }
    }
}

/// Reads and discards what the client still sends, up to `max` bytes or `deadline`.
async fn drain(stream: &mut TcpStream, max: u64, deadline: Instant) {
    let mut chunk = [0u8; 4096];
    let mut total = 0u64;
    while total < max {
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => total += n as u64,
            _ => return,
        }
    }
}

/// The bytes of the answer: status 451, the page, `Connection: close`.
fn response(page: &Page, head_only: bool) -> Vec<u8> {
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 451 Unavailable For Legal Reasons\r\n\
         Date: {date}\r\n\
         Content-Type: {}\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n",
        page.content_type,
        page.body.len()
    );
    if let Some(link) = &page.link {
        head.push_str(&format!("Link: {link}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(page.body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_seconds_with_a_fraction() {
        assert_eq!("10".parse(), Ok(Seconds(Duration::from_secs(10))));
        assert_eq!("0.25".parse(), Ok(Seconds(Duration::from_millis(250))));
        assert_eq!(Seconds(DEFAULT_HEADER_TIMEOUT).to_string(), "10");
        for bad in ["0", "-1", "NaN", "inf", "3601", "10s", ""] {
            assert!(bad.parse::<Seconds>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_answer_is_451_with_length_and_close_and_no_body_for_head() {
        let page = Page {
            content_type: "text/plain; charset=utf-8",
            link: Some("<https://x.invalid/>; rel=\"blocked-by\"".into()),
            body: "blocked\n".into(),
        };
        let full = String::from_utf8(response(&page, false)).unwrap();
        assert!(full.starts_with("HTTP/1.1 451 Unavailable For Legal Reasons\r\n"));
        for line in [
            "Content-Length: 8\r\n",
            "Connection: close\r\n",
            "Link: <https://x.invalid/>; rel=\"blocked-by\"\r\n",
        ] {
            assert!(full.contains(line), "{line:?} missing from {full:?}");
        }
        assert!(full.ends_with("\r\n\r\nblocked\n"), "{full:?}");
        let head = String::from_utf8(response(&page, true)).unwrap();
        assert!(
            head.contains("Content-Length: 8\r\n") && head.ends_with("\r\n\r\n"),
            "HEAD: the length of the body, not the body: {head:?}"
        );
    }
}
