//! End to end: requests to addresses under a redirect order reach the block-notice host,
//! which answers 451 naming the order, even to request lines a strict parser refuses, and
//! resets HTTPS connections at once; the real server never sees them. IPv4 and IPv6.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use borderfilter_tests::{
    daemon::Daemon,
    netns::Netns,
    poll,
    topology::{order, order_list, Topology, NOTICE_IFACE, NOTICE_V4},
    traffic::{body, http_get, sock, tcp_connects, Listeners, TCP_PORT},
};

fn list(action: &str) -> String {
    order_list(
        &[
            order(
                "R-1/2026",
                action,
                &["198.51.100.0/24", "2001:db8:66::/48"],
                "\"basis\": \"gambling\"",
            ),
            order("D-1/2026", "drop", &["203.0.113.80"], ""),
        ],
        &[],
    )
}

#[test]
fn redirected_requests_get_the_notice_page_and_never_reach_the_server() {
    let t = Topology::with_notice("redirect");
    t.write_orders(&list("redirect"));
    let d = Daemon::start(
        &t,
        &[
            "--redirect-iface",
            NOTICE_IFACE,
            "--redirect-neighbor",
            NOTICE_V4,
        ],
    );
    let _notice = Daemon::notice(&t);
    let server = Listeners::start(
        &t.server,
        &[
            "198.51.100.10",
            "2001:db8:66::10",
            "203.0.113.10",
            "203.0.113.80",
        ],
    );
    let status = d.status();
    assert_eq!(status["redirect"]["ready"], true, "{status}");

    for addr in ["198.51.100.10", "2001:db8:66::10"] {
        let (code, text) = http_get(
            &t.client,
            sock(addr, TCP_PORT),
            "/some/path?q=%3Cb%3E",
            None,
        )
        .unwrap_or_else(|| panic!("no answer from {addr}:\n{}", d.log_text()));
        assert_eq!(code, 451, "{text}");
        assert!(
            text.contains("R-1/2026") && text.contains("Test Court"),
            "the page names the order and the authority:\n{text}"
        );
        assert!(
            text.contains("Spillemyndigheden"),
            "the gambling template was chosen:\n{text}"
        );
        assert!(text.contains(addr), "the page names the address tried");
        assert!(
            !text.contains("<b>") && !text.contains("%3Cb"),
            "request data is never echoed"
        );
        // A raw `<` and `>` in the query, as some clients send it: hyper refused such
        // request lines with an empty 400.
        let (code, text) = http_get(
            &t.client,
            sock(addr, TCP_PORT),
            "/some/path?q=<script>",
            None,
        )
        .expect("an answer to a request line with a raw <");
        assert_eq!(code, 451, "{text}");
        assert!(
            text.contains("R-1/2026") && !text.contains("<script>"),
            "{text}"
        );
        let (ended, took) = https_attempt(&t.client, sock(addr, 443));
        assert_eq!(
            ended,
            Some(ErrorKind::ConnectionReset),
            "HTTPS to {addr}: the notice host resets the connection (not refused by the real server, not a timeout)"
        );
        assert!(took < Duration::from_secs(2), "HTTPS reset after {took:?}");
        let (code, text) =
            http_get(&t.client, sock(addr, TCP_PORT), "/", Some("text/plain")).expect("an answer");
        assert_eq!(code, 451);
        assert!(
            text.contains("text/plain") && body(&text).contains("Case: R-1/2026"),
            "{text}"
        );
        assert_eq!(
            server.tcp(addr),
            0,
            "the real server saw a connection to {addr}"
        );
    }
    assert!(
        tcp_connects(
            &t.client,
            sock("203.0.113.10", TCP_PORT),
            Duration::from_secs(3)
        ),
        "unblocked: reaches the server"
    );
    poll::until(
        "the server to count the connection",
        Duration::from_secs(2),
        || (server.tcp("203.0.113.10") == 1, server.tcp("203.0.113.10")),
    );
    assert!(
        !tcp_connects(
            &t.client,
            sock("203.0.113.80", TCP_PORT),
            Duration::from_millis(500)
        ),
        "dropped: times out"
    );

    // Switching the order to drop in the file: requests time out, no restart.
    t.write_orders(&list("drop"));
    poll::until(
        "the order to drop instead of redirect",
        Duration::from_secs(5),
        || {
            let r = http_get(&t.client, sock("198.51.100.10", TCP_PORT), "/", None);
            (r.is_none(), r.map(|x| x.0))
        },
    );
    // And back to redirect.
    t.write_orders(&list("redirect"));
    poll::until(
        "the order to redirect again",
        Duration::from_secs(5),
        || {
            let r = http_get(&t.client, sock("198.51.100.10", TCP_PORT), "/", None);
            (r.as_ref().is_some_and(|x| x.0 == 451), r.map(|x| x.0))
        },
    );
    assert_eq!(server.tcp("198.51.100.10"), 0);
    let stats = d.ok(&["stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("redirect") && !l.contains(" 0 ")),
        "redirects are counted:\n{stats}"
    );
}

/// How an HTTPS connection from `ns` to `to` ends when the client sends the start of a
/// TLS ClientHello: the error that ended it (`None`: closed normally; `WouldBlock`: still
/// open after 5 s), and how long that took.
fn https_attempt(ns: &Netns, to: SocketAddr) -> (Option<ErrorKind>, Duration) {
    ns.run(move || {
        let started = Instant::now();
        let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => return (Some(e.kind()), started.elapsed()),
        };
        let _ = s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let ended = match s.read(&mut buf) {
            Ok(_) => None,
            Err(e) => Some(e.kind()),
        };
        (ended, started.elapsed())
    })
}

#[test]
fn redirect_orders_are_refused_without_a_target_and_the_target_must_not_be_filtered() {
    let t = Topology::with_notice("redirect-config");
    t.write_orders(&list("redirect"));
    let d = Daemon::start(&t, &[]);
    let status = d.status();
    let problems = status["refusal"]["problems"].to_string();
    assert!(
        problems.contains("R-1/2026") && problems.contains("no redirect target"),
        "{status}"
    );
    drop(d);
    // A daemon refused for its configuration loads and pins nothing.
    let never = t.pin_dir.with_extension("never");
    let out = std::process::Command::new(borderfilter_tests::daemon::bin())
        .args([
            "run",
            "--iface",
            NOTICE_IFACE,
            "--redirect-iface",
            NOTICE_IFACE,
            "--redirect-mac",
            "02:00:00:00:00:01",
        ])
        .args([
            "--orders",
            t.orders_path().to_str().unwrap(),
            "--pin-dir",
            never.to_str().unwrap(),
            "--no-metrics",
        ])
        .args(["--socket", t.dir.join("other.sock").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must not be filtered") || err.contains("no such interface"),
        "{err}"
    );
    assert!(!never.exists(), "{} was created", never.display());
}
