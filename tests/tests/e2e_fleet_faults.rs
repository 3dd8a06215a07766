//! End to end: routers following etcd through its faults. A three-member cluster loses
//! its leader while versions are being published: each publish completes or is refused,
//! never half-applied, and the routers converge to what etcd holds. A router whose client
//! certificate etcd does not accept is refused, and says so. The routers here run in this
//! host's network namespace (etcd is on loopback) and filter no interface: their maps are
//! what they enforce, and `status` names the list in force by its digest.

use std::{path::Path, process::Command, time::Duration};

use borderfilter_tests::{
    daemon::{bin, Daemon},
    etcd::{Certs, Etcd},
    poll,
    topology::{order, order_list, Topology},
};

const WAIT: Duration = Duration::from_secs(20);

fn list(n: usize) -> String {
    let host = format!("198.18.{}.{}", n / 250, 1 + n % 250);
    order_list(&[order("FAULTS", "drop", &[host.as_str()], "")], &[])
}

/// `borderfilter ARGS --etcd ENDPOINTS EXTRA...`.
fn bf(etcd: &Etcd, args: &[&str], extra: &[String]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .args(["--etcd", &etcd.endpoints(), "--etcd-timeout", "2"])
        .args(extra)
        .env_remove("BORDERFILTER_ETCD")
        .output()
        .expect("running borderfilter")
}

/// Publishes version `n` of the list; the outcome, and what it printed.
fn publish(etcd: &Etcd, dir: &Path, n: usize, extra: &[String]) -> (bool, String) {
    let file = dir.join(format!("list-{n}.json"));
    std::fs::write(&file, list(n)).unwrap();
    let out = bf(
        etcd,
        &["publish", file.to_str().unwrap(), "--base-any"],
        extra,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The digest of the list etcd's pointer names now.
fn current_sha(etcd: &Etcd, extra: &[String]) -> Option<String> {
    let out = bf(etcd, &["--json", "fleet", "status"], extra);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["current"]["sha256"].as_str().map(str::to_string)
}

fn enforced(d: &Daemon) -> Option<String> {
    d.status()["applied"]["sha256"].as_str().map(str::to_string)
}

fn router(t: &Topology, etcd: &Etcd, name: &str, extra: &[String]) -> Daemon {
    let copy = t.dir.join("fleet-list.json");
    let endpoints = etcd.endpoints();
    let mut args = vec![
        "--etcd",
        &endpoints,
        "--router-name",
        name,
        "--fleet-copy",
        copy.to_str().unwrap(),
        "--etcd-timeout",
        "2",
    ];
    args.extend(extra.iter().map(String::as_str));
    Daemon::start_on_host(t, &args)
}

#[test]
fn routers_converge_to_what_the_cluster_holds_when_its_leader_dies_mid_publish() {
    let mut etcd = Etcd::cluster("faults-leader");
    let routers: Vec<Topology> = (0..2)
        .map(|i| Topology::new(&format!("faults-leader-{i}")))
        .collect();
    let dir = routers[0].dir.clone();
    assert!(publish(&etcd, &dir, 0, &[]).0);
    let daemons: Vec<Daemon> = routers
        .iter()
        .enumerate()
        .map(|(i, t)| router(t, &etcd, &format!("r{i}"), &[]))
        .collect();

    // Publishes in a row; the leader is killed after the third starts.
    let mut outcomes = Vec::new();
    for n in 1..=8 {
        if n == 4 {
            let leader = poll::until("a leader", WAIT, || {
                let l = etcd.leader();
                (l.is_some(), l)
            })
            .unwrap();
            etcd.kill(leader);
            outcomes.push(publish(&etcd, &dir, n, &[]));
            etcd.restart(leader);
        } else {
            outcomes.push(publish(&etcd, &dir, n, &[]));
        }
    }
    for (ok, text) in &outcomes {
        assert!(
            *ok || text.contains("nothing was changed")
                || text.contains("did not answer")
                || text.contains("refused"),
            "a failed publish says that nothing was published: {text}"
        );
    }
    let succeeded = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert!(succeeded >= 6, "most publishes go through: {outcomes:#?}");
    // What etcd holds is whole (pull checks every chunk against the digests) ...
    let pulled = bf(&etcd, &["fleet", "pull"], &[]);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    // ... and every router enforces exactly it.
    let sha = current_sha(&etcd, &[]).expect("a current version");
    for d in &daemons {
        poll::until("the router to enforce what etcd holds", WAIT, || {
            let e = enforced(d);
            (e.as_deref() == Some(sha.as_str()), e)
        });
    }
}

#[test]
fn a_router_without_a_valid_client_certificate_is_refused_and_says_so() {
    let t = Topology::new("faults-tls");
    let certs = Certs::make(&t.dir.join("certs"));
    let etcd = Etcd::start_tls("faults-tls", &certs);
    let with_cert = etcd.client_args(Some(&certs));
    assert!(publish(&etcd, &t.dir, 1, &with_cert).0);

    // Only the CA: TLS, but no certificate of its own.
    let ca_only = vec!["--etcd-cacert".to_string(), certs.ca.display().to_string()];
    let d = router(&t, &etcd, "r-nocert", &ca_only);
    let s = poll::until("status to say why etcd cannot be followed", WAIT, || {
        let s = d.status();
        (
            s["source_problem"].is_string() || s["refusal"].is_object(),
            s,
        )
    });
    let said = s.to_string();
    assert!(said.contains("--etcd-cert"), "it says what to give: {s:#}");
    assert!(s["applied"].is_null(), "nothing was applied: {s:#}");
    drop(d);

    // With its certificate it follows.
    let t2 = Topology::new("faults-tls-2");
    let d = router(&t2, &etcd, "r-cert", &with_cert);
    let sha = current_sha(&etcd, &with_cert).expect("a current version");
    poll::until("the router to enforce the list", WAIT, || {
        let e = enforced(&d);
        (e.as_deref() == Some(sha.as_str()), e)
    });
}
