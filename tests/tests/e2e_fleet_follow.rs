//! End to end, with a real etcd: routers follow the fleet's list. Three routers block
//! what is published, within a second; etcd stopped while traffic flows changes nothing
//! they enforce (not one blocked packet passes), status and `fleet status` say so, and a
//! router SIGKILLed meanwhile resumes from its local copy; a list one router's
//! `--protect` forbids is refused there, reported centrally, and applied elsewhere; a CLI
//! edit on a router publishes a version every router enforces; bad data in etcd is
//! refused with the key named.

use std::time::{Duration, Instant};

use borderfilter_tests::{
    fleet::FleetNet,
    poll,
    topology::{order, order_list, Topology},
    traffic::{sock, tcp_connects, Listeners, Stream, TCP_PORT, UDP_PORT},
};

const TARGET: &str = "198.51.100.20";
const OTHER: &str = "203.0.113.10";
const WAIT: Duration = Duration::from_secs(10);

fn blocked(t: &Topology, addr: &str) -> bool {
    !tcp_connects(&t.client, sock(addr, TCP_PORT), Duration::from_millis(400))
}

fn list_blocking(addrs: &[&str]) -> String {
    order_list(&[order("FLEET-1", "drop", addrs, "")], &[])
}

/// Each router's state in `fleet status`, by name.
fn states(f: &FleetNet) -> Vec<(String, String, Option<u64>)> {
    f.status()["routers"]
        .as_array()
        .expect("routers")
        .iter()
        .map(|r| {
            (
                r["router"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
                r["version"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn three_routers_enforce_what_is_published_and_keep_it_while_etcd_is_down() {
    let mut f = FleetNet::new("fleet-follow", 3);
    let servers: Vec<Listeners> = f
        .routers
        .iter()
        .map(|t| Listeners::start(&t.server, &[TARGET, OTHER]))
        .collect();
    let v1 = f.publish(&list_blocking(&[TARGET]));
    let mut daemons: Vec<_> = (0..3).map(|i| f.start_router(i, &[])).collect();
    for t in &f.routers {
        assert!(blocked(t, TARGET), "version {v1} blocks {TARGET}");
        assert!(!blocked(t, OTHER));
    }
    let all_in_sync = |f: &FleetNet, v: u64| {
        let s = states(f);
        let ok = s.len() == 3
            && s.iter()
                .all(|(_, st, ver)| st == "in sync" && *ver == Some(v));
        (ok, s)
    };
    poll::until("every router in sync with version 1", WAIT, || {
        all_in_sync(&f, v1)
    });

    // A new version reaches every router within a second.
    let published = Instant::now();
    let v2 = f.publish(&list_blocking(&[TARGET, OTHER]));
    for t in &f.routers {
        poll::until(
            "the new version to block OTHER",
            Duration::from_secs(2),
            || {
                let b = blocked(t, OTHER);
                (b, b)
            },
        );
    }
    let took = published.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the last router enforced after {took:?}"
    );
    eprintln!("publish to the last router blocking: {took:?}");
    poll::until("every router in sync with version 2", WAIT, || {
        all_in_sync(&f, v2)
    });
    let audit = f.cli(&["--json", "fleet", "audit", "--order", "FLEET-1"]);
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 3, "{audit:#}");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["enforcing_since"].is_string()),
        "{audit:#}"
    );

    // etcd goes away while traffic flows: nothing changes on the routers, and not one
    // datagram to a blocked address reaches a server.
    let targets = [sock(TARGET, UDP_PORT), sock(OTHER, UDP_PORT)];
    let mut streams: Vec<Stream> = f
        .routers
        .iter()
        .map(|t| Stream::start(&t.client, &targets, Duration::from_millis(2)))
        .collect();
    f.stop_etcd();
    let status = poll::until("status to say etcd is unreachable", WAIT, || {
        let s = daemons[0].status();
        (s["source_problem"].is_string(), s)
    });
    assert!(
        status["source_problem"]
            .as_str()
            .unwrap()
            .contains("etcd unreachable since"),
        "{status:#}"
    );
    for t in &f.routers {
        assert!(blocked(t, TARGET) && blocked(t, OTHER), "still enforced");
    }
    // A router killed and started again while etcd is down resumes its local copy.
    daemons[1].kill();
    daemons[1] = f.start_router(1, &[]);
    let s = daemons[1].status();
    assert_eq!(s["applied"]["orders_active"], 1, "{s:#}");
    let log = daemons[1].log_text();
    assert!(
        log.contains("enforcing the local copy of version 2"),
        "{log}"
    );
    assert!(blocked(&f.routers[1], OTHER));
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.stop();
        let sent: u64 = targets.iter().map(|t| stream.sent(*t)).sum();
        assert!(sent > 100, "router {i}: the stream ran ({sent} datagrams)");
        for a in [TARGET, OTHER] {
            assert_eq!(servers[i].udp(a), 0, "router {i}: {a} reached the server");
        }
    }

    // etcd back: the routers report again, and a version published now reaches them.
    f.start_etcd();
    let v3 = f.publish(&list_blocking(&[OTHER]));
    for t in &f.routers {
        poll::until("version 3 to let TARGET through", WAIT, || {
            let b = blocked(t, TARGET);
            (!b, b)
        });
        assert!(blocked(t, OTHER));
    }
    poll::until("every router in sync with version 3", WAIT, || {
        all_in_sync(&f, v3)
    });
    for d in &daemons {
        poll::until("status to say etcd is back", WAIT, || {
            let s = d.status();
            (s["source_problem"].is_null(), s)
        });
    }
    drop(servers);
}

#[test]
fn a_router_refuses_what_its_protect_forbids_and_reports_it() {
    let f = FleetNet::new("fleet-protect", 2);
    let _servers: Vec<Listeners> = f
        .routers
        .iter()
        .map(|t| Listeners::start(&t.server, &[TARGET]))
        .collect();
    let v1 = f.publish(&list_blocking(&[OTHER]));
    let _d0 = f.start_router(0, &[]);
    let d1 = f.start_router(1, &["--protect", "198.51.100.0/24"]);
    let v2 = f.publish(&list_blocking(&[OTHER, TARGET]));
    poll::until("router 0 to block TARGET", WAIT, || {
        let b = blocked(&f.routers[0], TARGET);
        (b, b)
    });
    let rows = poll::until("router 1 to report its refusal", WAIT, || {
        let s = states(&f);
        let refusing = s.iter().any(|(r, st, _)| r == "r1" && st == "refusing");
        (refusing, s)
    });
    assert!(
        rows.contains(&("r0".into(), "in sync".into(), Some(v2))),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("r1".into(), "refusing".into(), Some(v1))),
        "router 1 keeps version {v1}: {rows:?}"
    );
    let status = f.status();
    let why = status["routers"][1]["refusal"].as_str().unwrap_or_default();
    assert!(why.contains("198.51.100.0/24"), "{status:#}");
    assert!(
        !blocked(&f.routers[1], TARGET),
        "router 1 keeps its previous list"
    );
    let s = d1.status();
    assert!(s["refusal"].is_object(), "{s:#}");
    // Scripts: `fleet status` exits 1 while a router refuses.
    assert_eq!(f.cli(&["fleet", "status"]).status.code(), Some(1));
}

#[test]
fn a_cli_edit_on_one_router_is_published_for_all_and_bad_data_is_refused() {
    let f = FleetNet::new("fleet-edit", 2);
    let _servers: Vec<Listeners> = f
        .routers
        .iter()
        .map(|t| Listeners::start(&t.server, &[TARGET, OTHER]))
        .collect();
    let v1 = f.publish(&list_blocking(&[OTHER]));
    let d0 = f.start_router(0, &[]);
    let d1 = f.start_router(1, &[]);
    d0.ok(&["block", "add", TARGET, "--order", "FLEET-1"]);
    assert!(blocked(&f.routers[0], TARGET), "enforced where it was made");
    poll::until("the other router to block it too", WAIT, || {
        let b = blocked(&f.routers[1], TARGET);
        (b, b)
    });
    let pulled = f.cli(&["fleet", "pull"]);
    assert!(String::from_utf8_lossy(&pulled.stdout).contains(TARGET));
    assert!(
        String::from_utf8_lossy(&pulled.stderr).contains(&format!("version {}", v1 + 1)),
        "the edit is a new version: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );

    // Someone writes garbage over the pointer: refused, the key named, nothing changes.
    let out = f.etcdctl(&["put", "/borderfilter/list/current", "not json"]);
    assert!(out.status.success());
    let s = poll::until("router 1 to refuse the pointer", WAIT, || {
        let s = d1.status();
        (s["refusal"].is_object(), s)
    });
    let problems = s["refusal"]["problems"].to_string();
    assert!(
        problems.contains("/borderfilter/list/current"),
        "{problems}"
    );
    assert!(blocked(&f.routers[1], TARGET) && blocked(&f.routers[1], OTHER));
}

/// `GET /` to `addr:8080` from inside `ns`: the answer's status line and body.
fn get(ns: &borderfilter_tests::netns::Netns, addr: &'static str) -> String {
    ns.run(move || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect((addr, 8080)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ =
            s.write_all(b"GET / HTTP/1.1\r\nHost: blocked.example\r\nAccept: text/plain\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
}

#[test]
fn the_notice_host_follows_the_fleets_list() {
    let f = FleetNet::new("fleet-notice", 0);
    // The notice host answers for the blocked address itself.
    f.mgmt
        .ip(&["addr", "add", &format!("{TARGET}/32"), "dev", "lo"]);
    f.publish(&order_list(
        &[order("NOTICE-1", "redirect", &[TARGET], "")],
        &[],
    ));
    let mut cmd = std::process::Command::new(borderfilter_tests::daemon::bin());
    cmd.args(["notice", "--listen", "0.0.0.0:8080", "--no-reset", "--etcd"])
        .arg(format!(
            "127.0.0.1:{}",
            borderfilter_tests::fleet::ETCD_PORT
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    borderfilter_tests::netns::start_in(&mut cmd, f.mgmt.path());
    let mut notice = cmd.spawn().expect("starting borderfilter notice");
    let page = poll::until("the page to name the published order", WAIT, || {
        let p = get(&f.mgmt, TARGET);
        (p.starts_with("HTTP/1.1 451") && p.contains("NOTICE-1"), p)
    });
    assert!(page.contains("451"), "{page}");
    f.publish(&order_list(
        &[order("NOTICE-2", "redirect", &[TARGET], "")],
        &[],
    ));
    poll::until("the page to name the next version's order", WAIT, || {
        let p = get(&f.mgmt, TARGET);
        (p.contains("NOTICE-2") && !p.contains("NOTICE-1"), p)
    });
    let _ = notice.kill();
    let _ = notice.wait();
}
