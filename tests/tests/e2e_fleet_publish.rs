//! Publishing the fleet's list to a real etcd and pulling it back, with the real
//! `borderfilter` binary: sizes that need several chunks, racing publishes, bad keys
//! written behind its back, validation, the mass-removal guard, old generations, TLS
//! with client certificates, and a three-member cluster. No root needed: etcd listens
//! on loopback.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use borderfilter_tests::{
    daemon::bin,
    etcd::{Certs, Etcd},
    unique_tag,
};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("borderfilter-fleet-{}", unique_tag(test)));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }
    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, contents).expect("writing a test file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A valid order list: one order with `n` /32 prefixes from 10.0.0.0/8 (starting at
/// `first`), named `id`.
fn list(id: &str, first: u32, n: u32) -> Vec<u8> {
    let prefixes: Vec<String> = (first..first + n)
        .map(|i| format!("\"10.{}.{}.{}\"", (i >> 16) & 255, (i >> 8) & 255, i & 255))
        .collect();
    format!(
        r#"{{
  "version": 1,
  "orders": [
    {{
      "id": "{id}",
      "authority": "Københavns Byret, fogedretten",
      "issued": "2006-10-25",
      "action": "drop",
      "prefixes": [{}]
    }}
  ]
}}
"#,
        prefixes.join(", ")
    )
    .into_bytes()
}

/// Runs `borderfilter ARGS --etcd ENDPOINTS --etcd-prefix PREFIX EXTRA`.
fn bf(etcd: &Etcd, prefix: &str, args: &[&str], extra: &[String]) -> Output {
    Command::new(bin())
        .args(args)
        .args(["--etcd", &etcd.endpoints(), "--etcd-prefix", prefix])
        .args(extra)
        .env_remove("BORDERFILTER_ETCD")
        .output()
        .expect("running borderfilter")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts that `out` exited 1 with every one of `expect` in its stderr.
#[track_caller]
fn refused(out: &Output, what: &str, expect: &[&str]) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected a refusal (exit 1), got {}\nstdout: {}\nstderr: {err}",
        out.status,
        text(&out.stdout)
    );
    for e in expect {
        assert!(
            err.contains(e),
            "{what}: expected {e:?} in stderr, got: {err}"
        );
    }
    err
}

#[track_caller]
fn publish(etcd: &Etcd, prefix: &str, file: &Path, args: &[&str]) -> u64 {
    let mut all = vec!["--json", "publish", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = ok(&bf(etcd, prefix, &all, &[]), "publish");
    let v: serde_json::Value = serde_json::from_str(&out).expect("publish --json prints JSON");
    v["version"].as_u64().expect("a version number")
}

#[track_caller]
fn pull(etcd: &Etcd, prefix: &str, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["fleet", "pull"];
    all.extend_from_slice(args);
    let out = bf(etcd, prefix, &all, &[]);
    ok(&out, "fleet pull");
    out.stdout
}

#[test]
fn small_and_large_lists_come_back_byte_for_byte() {
    let etcd = Etcd::start("fleet_round_trip");
    let dir = Scratch::new("fleet_round_trip");
    let p = "/rt";
    let small = list("BS-1/2026", 0, 3);
    assert_eq!(publish(&etcd, p, &dir.file("small.json", &small), &[]), 1);
    assert_eq!(pull(&etcd, p, &[]), small);

    // More than 3 MiB: several chunks, and one request per chunk under etcd's limit.
    let large = list("BS-2/2026", 0, 260_000);
    assert!(
        large.len() > 3 << 20,
        "the large list has {} bytes",
        large.len()
    );
    let out = bf(
        &etcd,
        p,
        &[
            "--json",
            "publish",
            dir.file("large.json", &large).to_str().unwrap(),
            "--base",
            "1",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out, "publish large")).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["size"], large.len());
    let chunks = v["chunks"].as_u64().unwrap();
    assert!(chunks >= 4, "{} bytes in {chunks} chunks", large.len());
    assert_eq!(
        pull(&etcd, p, &[]),
        large,
        "the large list pulled back differs"
    );
    assert_eq!(pull(&etcd, p, &["--version", "1"]), small);

    // The keys as documented: chunks named by their digest, a manifest per version.
    let manifest: serde_json::Value =
        serde_json::from_str(&etcd.get(&format!("{p}/list/versions/2")).unwrap()).unwrap();
    assert_eq!(manifest["base"], 1);
    assert_eq!(manifest["chunks"].as_array().unwrap().len() as u64, chunks);
    let pointer: serde_json::Value =
        serde_json::from_str(&etcd.get(&format!("{p}/list/current")).unwrap()).unwrap();
    assert_eq!(pointer["version"], 2);
    assert_eq!(pointer["sha256"], manifest["sha256"]);
    assert_eq!(
        etcd.keys(&format!("{p}/list/chunks/")).len() as u64,
        chunks + 1,
        "the small list's chunk and the large list's"
    );

    // pull --json carries the version and the list.
    let out = bf(&etcd, p, &["--json", "fleet", "pull"], &[]);
    let v: serde_json::Value = serde_json::from_str(&ok(&out, "pull --json")).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["list"].as_str().unwrap().as_bytes(), &large[..]);
}

#[test]
fn racing_publishes_from_one_base_one_wins_the_other_is_refused() {
    let etcd = Etcd::start("fleet_race");
    let dir = Scratch::new("fleet_race");
    let p = "/race";
    let mut base = publish(
        &etcd,
        p,
        &dir.file("base.json", &list("BS-0/2026", 0, 5)),
        &[],
    );
    for round in 0..5u32 {
        let a = list("BS-A/2026", 100 * round, 7);
        let b = list("BS-B/2026", 100 * round + 50, 9);
        let (fa, fb) = (dir.file("a.json", &a), dir.file("b.json", &b));
        let base_arg = base.to_string();
        // Both start together, from the same base.
        let (out_a, out_b) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                bf(
                    &etcd,
                    p,
                    &["publish", fa.to_str().unwrap(), "--base", &base_arg],
                    &[],
                )
            });
            let tb = s.spawn(|| {
                bf(
                    &etcd,
                    p,
                    &["publish", fb.to_str().unwrap(), "--base", &base_arg],
                    &[],
                )
            });
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let (winner, loser, loser_file, loser_list) =
            match (out_a.status.success(), out_b.status.success()) {
                (true, false) => (a, out_b, fb, b),
                (false, true) => (b, out_a, fa, a),
                (x, y) => panic!(
                    "round {round}: expected exactly one publish to win, got {x} and {y}:\n{}\n{}",
                    text(&out_a.stderr),
                    text(&out_b.stderr)
                ),
            };
        let won = base + 1;
        refused(
            &loser,
            "the losing publish",
            &[
                &format!("based on version {base}"),
                &format!("version {won} is current"),
                "Nothing was changed",
            ],
        );
        // The winner's list is current and whole; the loser's, still on disk, goes in on
        // top of it: nothing is lost.
        assert_eq!(pull(&etcd, p, &[]), winner, "round {round}");
        let next = publish(&etcd, p, &loser_file, &["--base", &won.to_string()]);
        assert_eq!(
            next,
            won + 1,
            "round {round}: versions go up by one per publish"
        );
        assert_eq!(pull(&etcd, p, &[]), loser_list);
        assert_eq!(pull(&etcd, p, &["--version", &won.to_string()]), winner);
        base = next;
    }
}

#[test]
fn bad_keys_are_refused_naming_the_key() {
    let etcd = Etcd::start("fleet_bad_keys");
    let dir = Scratch::new("fleet_bad_keys");
    let good = list("BS-1/2026", 0, 3);
    let file = dir.file("good.json", &good);

    // A corrupt chunk.
    let p = "/bad-chunk";
    publish(&etcd, p, &file, &[]);
    let chunk = etcd.keys(&format!("{p}/list/chunks/")).pop().unwrap();
    etcd.put(&chunk, b"{\"version\": 1, \"orders\": []}\n");
    refused(
        &bf(&etcd, p, &["fleet", "pull"], &[]),
        "pull with a corrupt chunk",
        &[&chunk, "corrupt"],
    );

    // A pointer to a missing version.
    let p = "/bad-missing";
    publish(&etcd, p, &file, &[]);
    let manifest = format!("{p}/list/versions/1");
    etcd.del(&manifest);
    refused(
        &bf(&etcd, p, &["fleet", "pull"], &[]),
        "pull with the manifest deleted",
        &[
            &manifest,
            "missing",
            &format!("{p}/list/current names version 1"),
        ],
    );

    // A non-JSON pointer: pull and publish refuse it.
    let p = "/bad-pointer";
    publish(&etcd, p, &file, &[]);
    let pointer = format!("{p}/list/current");
    etcd.put(&pointer, b"version one");
    refused(
        &bf(&etcd, p, &["fleet", "pull"], &[]),
        "pull with a non-JSON pointer",
        &[&pointer, "not a valid pointer"],
    );
    refused(
        &bf(
            &etcd,
            p,
            &["publish", file.to_str().unwrap(), "--base", "1"],
            &[],
        ),
        "publish over a non-JSON pointer",
        &[&pointer, "not a valid pointer"],
    );

    // A manifest whose digest does not match its chunks.
    let p = "/bad-digest";
    publish(&etcd, p, &file, &[]);
    let manifest = format!("{p}/list/versions/1");
    let text = etcd.get(&manifest).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let wrong = "0".repeat(64);
    m["sha256"] = wrong.clone().into();
    etcd.put(&manifest, m.to_string().as_bytes());
    refused(
        &bf(&etcd, p, &["fleet", "pull", "--version", "1"], &[]),
        "pull with a manifest whose digest does not match",
        &[&manifest, "corrupt", &wrong],
    );

    // A non-JSON manifest.
    etcd.put(&manifest, b"[1, 2");
    refused(
        &bf(&etcd, p, &["fleet", "pull"], &[]),
        "pull with a non-JSON manifest",
        &[&manifest, "not a valid manifest"],
    );
}

#[test]
fn a_list_that_fails_validation_publishes_nothing() {
    let etcd = Etcd::start("fleet_invalid");
    let dir = Scratch::new("fleet_invalid");
    let p = "/invalid";
    let bad = String::from_utf8(list("BS-1/2026", 0, 3))
        .unwrap()
        .replace("\"10.0.0.1\"", "\"10.0.0.300\"");
    let out = bf(
        &etcd,
        p,
        &[
            "publish",
            dir.file("bad.json", bad.as_bytes()).to_str().unwrap(),
        ],
        &[],
    );
    refused(
        &out,
        "publishing an invalid list",
        &["10.0.0.300", "nothing was published"],
    );
    assert_eq!(
        etcd.keys(p),
        Vec::<String>::new(),
        "an invalid list wrote keys"
    );

    // Over a published list: it stays current, unchanged.
    let good = list("BS-1/2026", 0, 3);
    publish(&etcd, p, &dir.file("good.json", &good), &[]);
    let before = etcd.keys(p);
    let out = bf(
        &etcd,
        p,
        &[
            "publish",
            dir.file("bad.json", bad.as_bytes()).to_str().unwrap(),
            "--base",
            "1",
        ],
        &[],
    );
    refused(
        &out,
        "publishing an invalid list over a good one",
        &["nothing was published"],
    );
    assert_eq!(etcd.keys(p), before);
    assert_eq!(pull(&etcd, p, &[]), good);
}

#[test]
fn the_mass_removal_guard_needs_force() {
    let etcd = Etcd::start("fleet_guard");
    let dir = Scratch::new("fleet_guard");
    let p = "/guard";
    publish(
        &etcd,
        p,
        &dir.file("full.json", &list("BS-1/2026", 0, 300)),
        &[],
    );
    let small = dir.file("small.json", &list("BS-1/2026", 0, 100));
    let out = bf(
        &etcd,
        p,
        &["publish", small.to_str().unwrap(), "--base", "1"],
        &[],
    );
    refused(
        &out,
        "publishing a list that drops 200 of 300 prefixes",
        &[
            "stop enforcing 200 of the 300 prefixes version 1 enforces",
            "--force",
        ],
    );
    assert_eq!(
        etcd.keys(&format!("{p}/list/versions/")).len(),
        1,
        "a refused publish wrote a version"
    );
    // Dropping 100 of 300 is not more than half: no --force needed.
    assert_eq!(
        publish(
            &etcd,
            p,
            &dir.file("two-thirds.json", &list("BS-1/2026", 0, 200)),
            &["--base", "1"]
        ),
        2
    );
    // 200 -> 50: 150 dropped, more than half.
    let tiny = dir.file("tiny.json", &list("BS-1/2026", 0, 50));
    refused(
        &bf(
            &etcd,
            p,
            &["publish", tiny.to_str().unwrap(), "--base", "2"],
            &[],
        ),
        "publishing a list that drops 150 of 200",
        &["--force"],
    );
    assert_eq!(publish(&etcd, p, &tiny, &["--base", "2", "--force"]), 3);
}

#[test]
fn generations_beyond_keep_are_removed_with_their_chunks() {
    let etcd = Etcd::start("fleet_keep");
    let dir = Scratch::new("fleet_keep");
    let p = "/keep";
    let lists: Vec<Vec<u8>> = (0..5)
        .map(|i| list(&format!("BS-{i}/2026"), i * 10, 3))
        .collect();
    for (i, l) in lists.iter().enumerate() {
        let mut args = vec!["--keep".to_string(), "2".to_string()];
        if i > 0 {
            args.extend(["--base".to_string(), i.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            publish(&etcd, p, &dir.file("l.json", l), &args),
            i as u64 + 1
        );
    }
    assert_eq!(
        etcd.keys(&format!("{p}/list/versions/")),
        [
            format!("{p}/list/versions/4"),
            format!("{p}/list/versions/5")
        ]
    );
    // Each list is one chunk: only the kept versions' chunks remain.
    let chunks = etcd.keys(&format!("{p}/list/chunks/"));
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(pull(&etcd, p, &["--version", "4"]), lists[3]);
    assert_eq!(pull(&etcd, p, &[]), lists[4]);
    refused(
        &bf(&etcd, p, &["fleet", "pull", "--version", "3"], &[]),
        "pulling a removed version",
        &[&format!("{p}/list/versions/3"), "missing"],
    );
    // A version shared by a kept manifest keeps its chunk: publish list 4 again.
    publish(
        &etcd,
        p,
        &dir.file("again.json", &lists[3]),
        &["--base", "5", "--keep", "1"],
    );
    assert_eq!(etcd.keys(&format!("{p}/list/chunks/")).len(), 1);
    assert_eq!(pull(&etcd, p, &[]), lists[3]);
}

#[test]
fn tls_with_client_certificates() {
    let dir = Scratch::new("fleet_tls");
    let certs = Certs::make(&dir.0.join("certs"));
    let etcd = Etcd::start_tls("fleet_tls", &certs);
    let p = "/tls";
    let l = list("BS-1/2026", 0, 3);
    let file = dir.file("l.json", &l);
    let f = file.to_str().unwrap();

    // The CA, but no client certificate: etcd refuses, and the message says what to give.
    let out = bf(
        &etcd,
        p,
        &["publish", f],
        &["--etcd-cacert".into(), certs.ca.to_str().unwrap().into()],
    );
    refused(
        &out,
        "publish without a client certificate",
        &["client certificate", "--etcd-cert"],
    );
    assert_eq!(etcd.keys(p), Vec::<String>::new());

    // Plain HTTP to a TLS endpoint fails too.
    let plain = etcd.endpoints().replace("https://", "");
    let out = Command::new(bin())
        .args([
            "publish",
            f,
            "--etcd",
            &plain,
            "--etcd-prefix",
            p,
            "--etcd-timeout",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "plain HTTP: {}",
        text(&out.stderr)
    );

    // With the client certificate it works.
    let args = etcd.client_args(Some(&certs));
    ok(
        &bf(&etcd, p, &["publish", f], &args),
        "publish with a client certificate",
    );
    let out = bf(&etcd, p, &["fleet", "pull"], &args);
    assert_eq!(ok(&out, "pull with a client certificate").into_bytes(), l);
}

#[test]
fn a_three_member_cluster_serves_publishes_with_a_member_down() {
    let mut etcd = Etcd::cluster("fleet_cluster");
    let dir = Scratch::new("fleet_cluster");
    let p = "/cluster";
    let l1 = list("BS-1/2026", 0, 3);
    publish(&etcd, p, &dir.file("l1.json", &l1), &[]);
    assert_eq!(pull(&etcd, p, &[]), l1);
    // Kill the leader: the two others elect a new one and the next publish goes through.
    let leader =
        borderfilter_tests::poll::until("a leader", std::time::Duration::from_secs(10), || {
            let l = etcd.leader();
            (l.is_some(), l)
        })
        .unwrap();
    etcd.kill(leader);
    let l2 = list("BS-2/2026", 0, 4);
    let file = dir.file("l2.json", &l2);
    // Until the election is over a publish may fail; one that went through before its
    // answer was lost shows as version 2 being current.
    borderfilter_tests::poll::until(
        "a publish to the cluster without its old leader",
        std::time::Duration::from_secs(20),
        || {
            let out = bf(
                &etcd,
                p,
                &["publish", file.to_str().unwrap(), "--base", "1"],
                &[],
            );
            let err = text(&out.stderr);
            (
                out.status.success() || err.contains("version 2 is current"),
                err,
            )
        },
    );
    assert_eq!(pull(&etcd, p, &[]), l2);
    // The member comes back, catches up, and the cluster serves the same version.
    etcd.restart(leader);
    etcd.wait_healthy();
    let pointer: serde_json::Value =
        serde_json::from_str(&etcd.get(&format!("{p}/list/current")).unwrap()).unwrap();
    assert_eq!(pointer["version"], 2);
    assert_eq!(pull(&etcd, p, &[]), l2);
}

/// Runs etcdctl as `user` (after `auth enable`) and asserts it worked.
#[track_caller]
fn etcdctl_ok(etcd: &Etcd, user: Option<&str>, args: &[&str], input: &[u8]) {
    let mut all: Vec<&str> = Vec::new();
    let flag;
    if let Some(u) = user {
        flag = format!("--user={u}");
        all.push(&flag);
    }
    all.extend_from_slice(args);
    let out = etcd.etcdctl_input(&all, input);
    assert!(
        out.status.success(),
        "etcdctl {all:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn etcd_users_and_roles_as_docs_fleet_md_sets_them_up() {
    let etcd = Etcd::start("fleet_roles");
    let dir = Scratch::new("fleet_roles");
    let p = "/borderfilter";
    // The commands of docs/fleet.md, "Users and roles", with what each reads on stdin.
    let commands: &[(&str, &[u8])] = &[
        ("user add root --interactive=false", b"root-pw\n"),
        ("role add publisher", b""),
        (
            "role grant-permission publisher readwrite /borderfilter/list/ --prefix",
            b"",
        ),
        (
            "role grant-permission publisher read /borderfilter/routers/ --prefix",
            b"",
        ),
        ("user add alice --interactive=false", b"alice-pw\n"),
        ("user grant-role alice publisher", b""),
        ("role add router-r1", b""),
        (
            "role grant-permission router-r1 read /borderfilter/list/ --prefix",
            b"",
        ),
        (
            "role grant-permission router-r1 readwrite /borderfilter/routers/r1",
            b"",
        ),
        ("user add r1 --interactive=false", b"r1-pw\n"),
        ("user grant-role r1 router-r1", b""),
    ];
    for (command, input) in commands {
        let args: Vec<&str> = command.split_whitespace().collect();
        etcdctl_ok(&etcd, None, &args, input);
    }
    etcdctl_ok(&etcd, None, &["auth", "enable"], b"");

    let l = list("BS-1/2026", 0, 3);
    let file = dir.file("l.json", &l);
    let f = file.to_str().unwrap();
    let alice = dir.file("alice.pw", b"alice-pw\n");
    let as_user = |user: &str, pw: &Path| -> Vec<String> {
        vec![
            "--etcd-user".into(),
            user.into(),
            "--etcd-password-file".into(),
            pw.to_str().unwrap().into(),
        ]
    };

    // No user: etcd refuses, and the message says to give one.
    refused(
        &bf(&etcd, p, &["publish", f], &[]),
        "publish without a user",
        &["--etcd-user"],
    );
    // A wrong password.
    let wrong = dir.file("wrong.pw", b"nope\n");
    refused(
        &bf(&etcd, p, &["publish", f], &as_user("alice", &wrong)),
        "publish with a wrong password",
        &["wrong etcd user or password"],
    );
    // A router may read the list but not write it.
    let r1 = dir.file("r1.pw", b"r1-pw\n");
    refused(
        &bf(&etcd, p, &["publish", f], &as_user("r1", &r1)),
        "publish as a router",
        &["permission denied", "/borderfilter/list/"],
    );
    // The publisher may; the router reads what was published.
    ok(
        &bf(&etcd, p, &["publish", f], &as_user("alice", &alice)),
        "publish as the publisher",
    );
    let out = bf(&etcd, p, &["fleet", "pull"], &as_user("r1", &r1));
    assert_eq!(ok(&out, "pull as the router").into_bytes(), l);
    // The password from the environment instead of a file.
    let out = Command::new(bin())
        .args([
            "fleet",
            "pull",
            "--etcd",
            &etcd.endpoints(),
            "--etcd-user",
            "r1",
        ])
        .env("BORDERFILTER_ETCD_PASSWORD", "r1-pw")
        .output()
        .unwrap();
    assert_eq!(
        ok(&out, "pull with the password in the environment").into_bytes(),
        l
    );
}
