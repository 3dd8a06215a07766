//! The block-notice server (`borderfilter notice`) on loopback, spoken to with raw bytes:
//! every request that reaches it gets the 451 page however malformed, nothing from the
//! request is echoed, slow and idle clients are cut off, a flood of idle connections and
//! oversized requests does not lock out a real one, and HTTPS connections are reset at
//! once. The server runs in this process on ephemeral ports (no root, no namespaces);
//! the last test runs the binary with its options.
//!
//! Loopback is never under an order (it cannot be blocked), so every page here is the
//! default notice with `-` for each field; which order a page names is tested in the
//! module (`notice::tests`) and end to end (tests/tests/e2e_redirect.rs).

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use filter_user::notice::{Handle, Limits, NoticeConfig, Server};

/// In every request: an answer that contains it echoes the request.
const MARKER: &str = "zqxreflect";
/// In every default notice.
const NOTICE_TEXT: &str = "Access to this service is blocked";

struct Running {
    http: SocketAddr,
    reset: Option<SocketAddr>,
    handle: Handle,
}

fn orders_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bf-notice-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the test directory");
    let path = dir.join("orders.json");
    std::fs::write(&path, r#"{"version": 1, "orders": []}"#).expect("writing the list");
    path
}

/// Starts a server on 127.0.0.1 with ephemeral ports, on its own runtime; it lives until
/// the test process ends.
#[track_caller]
fn start(limits: Limits, reset: bool) -> Running {
    let config = NoticeConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        orders: orders_file(),
        templates: None,
        blocked_by: None,
        max_list_bytes: 1 << 20,
        limits,
        reset_port: reset.then_some(0),
        fleet: None,
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let server = Server::bind(config).await.expect("binding the server");
            let bound = (
                server.http_addrs()[0],
                server.reset_addrs().first().copied(),
                server.handle(),
            );
            tx.send(bound).expect("the test waits");
            server.run().await
        })
    });
    let (http, reset, handle) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server to bind within 10 s");
    Running {
        http,
        reset,
        handle,
    }
}

fn limits(header_timeout: Duration) -> Limits {
    Limits {
        header_timeout,
        ..Limits::default()
    }
}

/// What came back on a connection, and how it ended.
struct Answer {
    bytes: Vec<u8>,
    /// `None`: the server closed the connection (end of file); otherwise the error.
    error: Option<ErrorKind>,
    elapsed: Duration,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn head_and_body(&self) -> (String, &[u8]) {
        let split = self
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers in {:?}", self.text()));
        (
            String::from_utf8_lossy(&self.bytes[..split]).to_ascii_lowercase(),
            &self.bytes[split + 4..],
        )
    }
}

/// Reads until the server closes the connection (or fails it), at most `limit`.
#[track_caller]
fn read_to_close(stream: &mut TcpStream, started: Instant, limit: Duration) -> Answer {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "the connection was still open after {limit:?}; got {:?}",
            String::from_utf8_lossy(&bytes)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => {
                return Answer {
                    bytes,
                    error: None,
                    elapsed: started.elapsed(),
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                return Answer {
                    bytes,
                    error: Some(e.kind()),
                    elapsed: started.elapsed(),
                }
            }
        }
    }
}

/// Sends `request` (and shuts down the sending side if `shut`), reads the answer.
#[track_caller]
fn exchange(to: SocketAddr, request: &[u8], shut: bool) -> Answer {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connecting");
    s.write_all(request).expect("sending the request");
    if shut {
        s.shutdown(Shutdown::Write).expect("shutting down");
    }
    read_to_close(&mut s, started, Duration::from_secs(10))
}

/// A complete 451 notice: status, framing, `Connection: close`, the page in `format`
/// (or no body for HEAD), nothing of the request.
#[track_caller]
fn assert_notice(answer: &Answer, what: &str, format: &str, head_only: bool) {
    let text = answer.text();
    assert!(
        text.starts_with("HTTP/1.1 451 Unavailable For Legal Reasons\r\n"),
        "{what}: not a 451: {text:?}"
    );
    assert_eq!(
        answer.error, None,
        "{what}: the connection failed: {text:?}"
    );
    let (head, body) = answer.head_and_body();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Content-Length in {head:?}"));
    assert!(head.contains("\r\nconnection: close"), "{what}: {head:?}");
    assert!(
        head.contains(&format!("\r\ncontent-type: {format}; charset=utf-8")),
        "{what}: expected {format}: {head:?}"
    );
    if head_only {
        assert!(body.is_empty() && length > 0, "{what}: HEAD: {text:?}");
    } else {
        assert_eq!(body.len(), length, "{what}: the body is cut: {text:?}");
        assert!(
            String::from_utf8_lossy(body).contains(NOTICE_TEXT),
            "{what}: not the notice: {text:?}"
        );
    }
    assert!(
        !text.to_ascii_lowercase().contains(MARKER),
        "{what}: the answer echoes the request: {text:?}"
    );
}

/// Raises this process's open files limit to the hard limit and checks it fits `wanted`.
#[track_caller]
fn need_fds(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct they are given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= wanted,
        "this test needs {wanted} open files; the hard limit is {} (ulimit -Hn)",
        limit.rlim_cur
    );
}

/// A request and the answer it must get.
struct Case {
    what: &'static str,
    request: &'static [u8],
    /// Shut down the sending side after the request.
    shut: bool,
    /// The page's media type.
    format: &'static str,
    head_only: bool,
}

#[test]
fn every_request_gets_the_page_however_malformed_and_nothing_is_echoed() {
    let server = start(Limits::default(), false);
    let html = "text/html";
    let text = "text/plain";
    let cases = [
        Case {
            what: "raw < and > in the query",
            request: b"GET /zqxreflect?q=<script>alert(1)</script> HTTP/1.1\r\nHost: blocked.example\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "the Host header is not echoed",
            request: b"GET / HTTP/1.1\r\nHost: <b>zqxreflect</b>.example\r\nUser-Agent: zqxreflect\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "HTTP/1.0, Accept: text/plain",
            request: b"GET /zqxreflect HTTP/1.0\r\nAccept: text/plain\r\n\r\n",
            shut: false,
            format: text,
            head_only: false,
        },
        Case {
            what: "no version (HTTP/0.9): answered after the request line",
            request: b"GET /zqxreflect\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "no version, then headers",
            request: b"GET /zqxreflect\r\nAccept: text/plain\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "bytes that are not HTTP, one line",
            request: b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1zqxreflect\x03\x03\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "bytes that are not HTTP, no line end, then the client shuts down",
            request: b"\x00\xff\xfe<zqxreflect>\x01\x02",
            shut: true,
            format: html,
            head_only: false,
        },
        Case {
            what: "a request line cut short, then the client shuts down",
            request: b"GET /zqxreflect HTT",
            shut: true,
            format: html,
            head_only: false,
        },
        Case {
            what: "lowercase, tabs, bare LF, header name without space",
            request: b"get\t/zqxreflect\thttp/1.1\nACCEPT:TEXT/PLAIN\n\n",
            shut: false,
            format: text,
            head_only: false,
        },
        Case {
            what: "blank lines before the request line",
            request: b"\r\n\r\nGET /zqxreflect HTTP/1.1\r\nAccept: text/plain\r\n\r\n",
            shut: false,
            format: text,
            head_only: false,
        },
        Case {
            what: "lines that are not headers, NUL and non-UTF-8 bytes",
            request: b"GET /\xff\x00zqxreflect HTTP/1.1\r\nnot a header\r\n<zqxreflect>: \x00\r\n\xfe\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "absolute-form target, spaces in the target",
            request: b"GET http://blocked.example/a b/<zqxreflect> HTTP/1.1\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "CONNECT",
            request: b"CONNECT zqxreflect.example:443 HTTP/1.1\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "OPTIONS *",
            request: b"OPTIONS * HTTP/1.1\r\nAccept: text/plain, text/html\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "HEAD: headers only",
            request: b"HEAD /zqxreflect HTTP/1.1\r\nAccept: text/plain\r\n\r\n",
            shut: false,
            format: text,
            head_only: true,
        },
        Case {
            what: "keep-alive asked, close given; a pipelined second request is not answered",
            request: b"GET /1 HTTP/1.1\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "POST with a body",
            request: b"POST /zqxreflect HTTP/1.1\r\nContent-Length: 11\r\n\r\nzqxreflect!",
            shut: false,
            format: html,
            head_only: false,
        },
        Case {
            what: "chunked body with a bad chunk size",
            request: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nzqxreflect\r\n",
            shut: false,
            format: html,
            head_only: false,
        },
    ];
    for c in cases {
        let what = c.what;
        let answer = exchange(server.http, c.request, c.shut);
        assert_notice(&answer, what, c.format, c.head_only);
        assert_eq!(
            answer.text().matches("HTTP/1.1 451").count(),
            1,
            "{what}: one answer per connection"
        );
        assert!(
            answer.elapsed < Duration::from_secs(2),
            "{what}: answered after {:?}, not at once",
            answer.elapsed
        );
    }
}

#[test]
fn oversized_heads_and_bodies_get_the_whole_page() {
    let server = start(
        Limits {
            max_header_bytes: 4096,
            max_body_bytes: 1 << 20,
            ..Limits::default()
        },
        false,
    );
    // A head far over the limit (cookies for the blocked site, say): the page, chosen
    // from the lines read; the rest is read and discarded, so the answer arrives whole.
    let mut big = b"GET /zqxreflect HTTP/1.1\r\nAccept: text/plain\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("Cookie: c{i}=zqxreflect-{i:040}\r\n").as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert!(big.len() > 100_000);
    assert_notice(
        &exchange(server.http, &big, false),
        "a 100 kB head",
        "text/plain",
        false,
    );
    // One line over the limit: the request line itself.
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 50_000));
    long_line.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_notice(
        &exchange(server.http, &long_line, false),
        "a 50 kB request line",
        "text/html",
        false,
    );
    // A 512 kB body: answered, read and discarded.
    let mut post = b"POST / HTTP/1.1\r\nContent-Length: 524288\r\n\r\n".to_vec();
    post.extend(std::iter::repeat_n(b'z', 524_288));
    assert_notice(
        &exchange(server.http, &post, false),
        "a 512 kB body",
        "text/html",
        false,
    );
}

#[test]
fn slow_and_idle_clients_are_cut_off_at_the_header_timeout() {
    let timeout = Duration::from_millis(600);
    let server = start(limits(timeout), false);
    let margin = Duration::from_millis(1500);

    // Connected, silent: closed without a word at the timeout.
    let started = Instant::now();
    let mut idle = TcpStream::connect(server.http).unwrap();
    let answer = read_to_close(&mut idle, started, timeout + margin);
    assert!(
        answer.bytes.is_empty() && answer.error.is_none(),
        "an idle connection is closed with nothing sent: {:?} {:?}",
        answer.text(),
        answer.error
    );
    assert!(
        answer.elapsed >= timeout - Duration::from_millis(100),
        "closed after {:?}, before the timeout",
        answer.elapsed
    );

    // A head begun and never finished: the page at the timeout, then closed.
    let started = Instant::now();
    let mut partial = TcpStream::connect(server.http).unwrap();
    partial
        .write_all(b"GET /zqxreflect HTTP/1.1\r\nAccept: text/plain\r\nX-Slow: ")
        .unwrap();
    let answer = read_to_close(&mut partial, started, timeout + margin);
    assert!(answer.elapsed >= timeout - Duration::from_millis(100));
    assert_notice(&answer, "a head never finished", "text/plain", false);

    // One byte every 50 ms, forever: each read makes progress, but the timeout counts
    // from the connection, so it still ends at the timeout.
    let started = Instant::now();
    let mut trickle = TcpStream::connect(server.http).unwrap();
    let mut writer = trickle.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(10);
        let mut sent = 0;
        for byte in b"GET / HTTP/1.1\r\nX-Trickle: "
            .iter()
            .chain([b'a'; 1000].iter())
        {
            if Instant::now() > until || writer.write_all(&[*byte]).is_err() {
                break;
            }
            sent += 1;
            thread::sleep(Duration::from_millis(50));
        }
        sent
    });
    let answer = read_to_close(&mut trickle, started, timeout + margin);
    assert_notice(&answer, "a trickling head", "text/html", false);
    drop(trickle);
    let sent = sender.join().unwrap();
    assert!(
        sent < 100,
        "the trickle went on for {sent} bytes after the answer"
    );

    // And the server still answers at once.
    assert_notice(
        &exchange(server.http, b"GET / HTTP/1.1\r\n\r\n", false),
        "after the slow ones",
        "text/html",
        false,
    );
}

/// Whether the server has closed this connection (end of file or reset), without waiting.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn a_flood_of_idle_slow_and_oversized_connections_does_not_lock_out_a_real_request() {
    const IDLE: usize = 2000;
    const MAX: usize = 256;
    need_fds(IDLE as u64 + MAX as u64 + 512);
    // A long header timeout: only the connection limit's eviction can keep the server
    // answering here.
    let server = start(
        Limits {
            max_connections: MAX,
            max_header_bytes: 4096,
            header_timeout: Duration::from_secs(60),
            max_body_bytes: 64 * 1024,
        },
        false,
    );
    assert_eq!(server.handle.max_connections(), MAX);

    let mut idle = Vec::with_capacity(IDLE);
    // Connections that waited a second or more: their SYN was dropped because the listen
    // backlog was full, and a real subscriber's could be too.
    let mut retried = 0;
    for i in 0..IDLE {
        let started = Instant::now();
        let mut s = TcpStream::connect_timeout(&server.http, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        retried += usize::from(started.elapsed() >= Duration::from_millis(900));
        if i % 2 == 1 {
            // Slow rather than idle: a head begun, never finished.
            s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
        }
        idle.push(s);
    }
    assert_eq!(
        retried,
        0,
        "{retried} connections waited for a SYN retry: the listen backlog overflowed \
         (net.core.somaxconn: {:?})",
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").map(|s| s.trim().to_string())
    );
    // Oversized heads and bodies far past the limits, sent in parallel.
    let http = server.http;
    let abusers: Vec<_> = (0..16)
        .map(|i| {
            thread::spawn(move || {
                let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(5)).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let filler = vec![b'x'; 4 << 20];
                let head: &[u8] = if i % 2 == 0 {
                    b"GET / HTTP/1.1\r\nX-Big: "
                } else {
                    b"POST / HTTP/1.1\r\nContent-Length: 4194304\r\n\r\n"
                };
                let _ = s.write_all(head).and_then(|()| s.write_all(&filler));
                let mut sink = Vec::new();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.read_to_end(&mut sink);
            })
        })
        .collect();

    for i in 0..5 {
        let answer = exchange(
            server.http,
            b"GET /real HTTP/1.1\r\nHost: blocked.example\r\n\r\n",
            false,
        );
        assert_notice(&answer, &format!("real request {i}"), "text/html", false);
        eprintln!("real request {i}: answered in {:?}", answer.elapsed);
        assert!(
            answer.elapsed < Duration::from_secs(1),
            "real request {i} took {:?} among {IDLE} idle connections",
            answer.elapsed
        );
        assert!(
            server.handle.open_connections() <= MAX,
            "{} connections open, more than {MAX}",
            server.handle.open_connections()
        );
    }
    for a in abusers {
        a.join().expect("an abuser thread");
    }

    // The idle ones beyond the limit were closed to make room.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut closed = 0;
    while Instant::now() < deadline {
        closed = idle.iter_mut().map(|s| closed_by_server(s) as usize).sum();
        if closed >= IDLE - MAX {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        closed >= IDLE - MAX,
        "{closed} of {IDLE} idle connections closed; at most {MAX} may stay open"
    );
    assert!(server.handle.evicted() >= (IDLE - MAX) as u64);
    assert!(server.handle.open_connections() <= MAX);
}

#[test]
fn https_connections_are_reset_at_once() {
    let server = start(Limits::default(), true);
    let reset = server.reset.expect("a reset listener");
    assert_eq!(reset.ip(), server.http.ip(), "on the same address");
    assert_ne!(reset.port(), server.http.port());
    for i in 0..3 {
        assert_reset(reset, &format!("connection {i}"));
    }
}

/// Connects to `to` and expects the connection to be accepted, then reset within a
/// second. On loopback the reset may arrive before `connect` returns; a refused
/// connection (nobody listening) does not count.
#[track_caller]
fn assert_reset(to: SocketAddr, what: &str) {
    let started = Instant::now();
    let ended = match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
        Err(e) => Some(e.kind()),
        Ok(mut s) => {
            // What a browser sends first: the start of a TLS ClientHello.
            let _ = s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
            let answer = read_to_close(&mut s, started, Duration::from_secs(5));
            assert!(answer.bytes.is_empty(), "{what}: {:?}", answer.text());
            answer.error
        }
    };
    assert_eq!(
        ended,
        Some(ErrorKind::ConnectionReset),
        "{what}: expected a reset"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{what}: reset after {:?}",
        started.elapsed()
    );
}

/// The binary, killed when dropped.
struct Notice(Child);

impl Drop for Notice {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address in the log line that starts with `prefix`.
fn address_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest.split([' ', ';']).next()?.parse().ok()
}

#[test]
fn the_binary_takes_the_options_and_logs_its_ports() {
    let bin = env!("CARGO_BIN_EXE_borderfilter");
    let help = Command::new(bin)
        .args(["notice", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--max-connections <N>",
        "[default: 1024]",
        "--max-header-bytes <BYTES>",
        "[default: 16384]",
        "--header-timeout <SECONDS>",
        "[default: 10]",
        "--max-body-bytes <BYTES>",
        "--reset-port <PORT>",
        "[default: 443]",
        "--no-reset",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    let usage = Command::new(bin)
        .args(["notice", "--no-reset", "--reset-port", "8443"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2), "--no-reset with --reset-port");

    let orders = orders_file();
    let mut child = Command::new(bin)
        .args(["notice", "--listen", "127.0.0.1:0", "--reset-port", "0"])
        .args(["--header-timeout", "2", "--max-connections", "4"])
        .arg("--orders")
        .arg(&orders)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting borderfilter notice");
    let stderr = child.stderr.take().unwrap();
    let _notice = Notice(child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut http, mut reset) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while http.is_none() || reset.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the server did not log its ports:\n{log}"));
        http = http.or(address_after(&line, "HTTP request on "));
        reset = reset.or(address_after(&line, "resetting every connection on "));
        log.push_str(&line);
        log.push('\n');
    }
    let (http, reset) = (http.unwrap(), reset.unwrap());
    assert!(log.contains("at most 4 connections"), "{log}");

    assert_notice(
        &exchange(
            http,
            b"GET /some/path?q=<zqxreflect> HTTP/1.1\r\n\r\n",
            false,
        ),
        "through the binary",
        "text/html",
        false,
    );
    // --max-connections 4: five idle connections, and a real request still answered,
    // well before the header timeout would free a place.
    let _idle: Vec<_> = (0..5).map(|_| TcpStream::connect(http).unwrap()).collect();
    let answer = exchange(http, b"GET / HTTP/1.1\r\n\r\n", false);
    assert_notice(&answer, "past --max-connections", "text/html", false);
    assert!(
        answer.elapsed < Duration::from_secs(1),
        "answered after {:?}",
        answer.elapsed
    );
    // --header-timeout 2 is in force.
    let started = Instant::now();
    let mut idle = TcpStream::connect(http).unwrap();
    let answer = read_to_close(&mut idle, started, Duration::from_secs(5));
    assert!(
        answer.bytes.is_empty() && answer.elapsed >= Duration::from_millis(1900),
        "an idle connection closed after {:?}",
        answer.elapsed
    );
    assert_reset(reset, "through the binary");
}
