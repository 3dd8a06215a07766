//! `cargo xtask run`: the main job. With `--iface`, runs the daemon on real interfaces.
//! Without, builds a client - router - server topology in network namespaces, runs the
//! daemon on the router, and shows a court order being enforced on real HTTP traffic.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::cmd::{self, step};

const DIR: &str = "/tmp/borderfilter-demo";
const NS: [&str; 5] = [
    "bfdemo-client",
    "bfdemo-router",
    "bfdemo-server",
    "bfdemo-notice",
    "bfdemo-dns",
];

const ORDERS: &str = r#"{
  "version": 1,
  "orders": [
    {
      "id": "BS-12345/2006",
      "authority": "Københavns Byret, fogedretten",
      "issued": "2006-10-25",
      "valid_from": "2006-10-26",
      "expires": "2030-10-25",
      "basis": "copyright",
      "action": "redirect",
      "direction": "both",
      "prefixes": ["198.51.100.0/24", "2001:db8:66::/48"],
      "note": "AllofMP3 and mirrors"
    }
  ],
  "exceptions": [
    { "prefix": "198.51.100.53/32", "reason": "shared resolver, not covered by the order" }
  ]
}
"#;

fn ip(args: &[&str]) -> anyhow::Result<()> {
    cmd::run_quiet(Command::new("ip").args(args))
}

fn in_ns(ns: &str, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]).args(args);
    c
}

/// Everything the demo made, removed on drop (also after an error).
struct Demo {
    daemon: Option<Child>,
    web: Option<Child>,
    notice: Option<Child>,
    dns: Option<Child>,
    bin: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for child in [
            self.daemon.take(),
            self.web.take(),
            self.notice.take(),
            self.dns.take(),
        ]
        .into_iter()
        .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(&self.bin)
            .args([
                "--socket",
                &format!("{DIR}/control.sock"),
                "detach",
                "--yes",
                "--pin-dir",
                &format!("{DIR}/bpffs/pins"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        teardown();
    }
}

fn teardown() {
    for ns in NS {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    let _ = Command::new("umount")
        .arg(format!("{DIR}/bpffs"))
        .stderr(Stdio::null())
        .status();
}

/// The demo's network, as `ip` command lines (`{c}`, `{r}`, `{s}`, `{n}`, `{d}`: the
/// client, router, server, notice-host and DNS-server namespaces).
const TOPOLOGY: &[&str] = &[
    "-n {c} link add eth0 type veth peer name to-client netns {r}",
    "-n {s} link add eth0 type veth peer name to-server netns {r}",
    "-n {n} link add eth0 type veth peer name to-notice netns {r}",
    "-n {d} link add eth0 type veth peer name to-dns netns {r}",
    "-n {d} link set eth0 up",
    "-n {r} link set to-dns up",
    "-n {r} addr add 192.0.2.193/26 dev to-dns",
    "-n {d} addr add 192.0.2.194/26 dev eth0",
    "-n {d} route add default via 192.0.2.193",
    "-n {c} link set eth0 up",
    "-n {s} link set eth0 up",
    "-n {n} link set eth0 up",
    "-n {r} link set to-client up",
    "-n {r} link set to-server up",
    "-n {r} link set to-notice up",
    "-n {c} addr add 192.0.2.2/26 dev eth0",
    "-n {c} addr add 2001:db8:c1::2/64 dev eth0 nodad",
    "-n {c} route add default via 192.0.2.1",
    "-n {c} -6 route add default via 2001:db8:c1::1",
    "-n {r} addr add 192.0.2.1/26 dev to-client",
    "-n {r} addr add 2001:db8:c1::1/64 dev to-client nodad",
    "-n {r} addr add 192.0.2.65/26 dev to-server",
    "-n {r} addr add 2001:db8:5e::1/64 dev to-server nodad",
    "-n {r} addr add 192.0.2.129/26 dev to-notice",
    "-n {r} addr add 2001:db8:4e::1/64 dev to-notice nodad",
    "-n {r} route add 198.51.100.0/24 via 192.0.2.66",
    "-n {r} route add 203.0.113.0/24 via 192.0.2.66",
    "-n {r} -6 route add 2001:db8::/32 via 2001:db8:5e::2",
    "-n {s} addr add 192.0.2.66/26 dev eth0",
    "-n {s} addr add 2001:db8:5e::2/64 dev eth0 nodad",
    "-n {s} route add default via 192.0.2.65",
    "-n {s} -6 route add default via 2001:db8:5e::1",
    "-n {s} addr add 198.51.100.10/32 dev lo",
    "-n {s} addr add 198.51.100.53/32 dev lo",
    "-n {s} addr add 203.0.113.10/32 dev lo",
    "-n {s} addr add 203.0.113.80/32 dev lo",
    "-n {n} addr add 192.0.2.130/26 dev eth0",
    "-n {n} addr add 2001:db8:4e::2/64 dev eth0 nodad",
    "-n {n} route add default via 192.0.2.129",
    "-n {n} -6 route add default via 2001:db8:4e::1",
    // The notice host answers for the addresses redirected to it.
    "-n {n} route add local 198.51.100.0/24 dev lo",
    "-n {n} -6 route add local 2001:db8:66::/48 dev lo",
];

fn topology() -> anyhow::Result<()> {
    teardown();
    // A fresh start: no order list, audit trail or logs of an earlier run.
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(DIR)?;
    let [c, r, s, n, d] = NS;
    for ns in NS {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let dad = [
            "-q",
            "-w",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.accept_dad=0",
        ];
        cmd::run_quiet(&mut in_ns(ns, "sysctl", &dad))?;
    }
    for line in TOPOLOGY {
        let line = line
            .replace("{c}", c)
            .replace("{r}", r)
            .replace("{s}", s)
            .replace("{n}", n)
            .replace("{d}", d);
        ip(&line.split_whitespace().collect::<Vec<_>>())?;
    }
    let forwarding = [
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.rp_filter=0",
    ];
    cmd::run_quiet(&mut in_ns(r, "sysctl", &forwarding))?;
    // The notice host takes redirected frames (GRO on its veth). Veth checksum offload
    // would leave the client's TCP checksums unfinished in redirected frames; frames
    // from a real wire always carry complete ones.
    cmd::run_quiet(&mut in_ns(n, "ethtool", &["-K", "eth0", "gro", "on"]))?;
    cmd::run_quiet(&mut in_ns(c, "ethtool", &["-K", "eth0", "tx", "off"]))?;
    std::fs::create_dir_all(format!("{DIR}/bpffs"))?;
    cmd::run_quiet(Command::new("mount").args(["-t", "bpf", "bpf", &format!("{DIR}/bpffs")]))?;
    Ok(())
}

/// Waits (a few seconds at most) until the daemon blocks `addr`: a name is resolved just
/// after the order naming it is added.
fn wait_blocked(bin: &Path, addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new(bin)
            .args([
                "--socket",
                &format!("{DIR}/control.sock"),
                "--json",
                "check",
                addr,
            ])
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains("\"verdict\": \"drop\"") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not block {addr}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        sleep(Duration::from_millis(50));
    }
}

/// Says what happens next, then shows the command and its output as a user would type it.
fn show(what: &str, bin: &Path, args: &[&str]) -> anyhow::Result<()> {
    println!("\n# {what}");
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.to_string()
            }
        })
        .collect();
    println!("$ borderfilter {}", quoted.join(" "));
    let out = Command::new(bin)
        .args(["--socket", &format!("{DIR}/control.sock")])
        .args(args)
        .output()?;
    print!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A request answered by the notice host: shows the status and the plain-text page.
fn notice_page(url: &str) -> anyhow::Result<()> {
    println!("$ curl -i -H 'Accept: text/plain' {url}   (from the client)");
    let out = in_ns(
        NS[0],
        "curl",
        &[
            "-sS",
            "-i",
            "--max-time",
            "3",
            "-H",
            "Accept: text/plain",
            url,
        ],
    )
    .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text
        .lines()
        .filter(|l| !l.to_lowercase().starts_with("date:"))
    {
        println!("  {line}");
    }
    if !out.status.success() {
        println!("no answer: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// An HTTP request from the client namespace, shown like the curl command it is.
fn curl(url: &str) -> anyhow::Result<()> {
    println!("$ curl --max-time 2 {url}   (from the client)");
    let started = Instant::now();
    let out = in_ns(
        NS[0],
        "curl",
        &[
            "-sS",
            "--max-time",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "HTTP %{http_code} in %{time_total}s\n",
            url,
        ],
    )
    .output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        println!("{text}: the request reached the server");
    } else {
        println!(
            "no answer after {:.1}s: the packets were dropped at the router",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn run(ifaces: &[String], keep: bool, daemon_args: &[String]) -> anyhow::Result<()> {
    crate::setup::all()?;
    cmd::cargo_build(false)?;
    let bin = cmd::borderfilter_bin();
    if !ifaces.is_empty() {
        step(&format!("running borderfilter on {}", ifaces.join(", ")));
        let mut c = Command::new(&bin);
        c.arg("run");
        for i in ifaces {
            c.args(["--iface", i]);
        }
        return cmd::run(c.args(daemon_args));
    }
    if !cmd::is_root() {
        bail!("the demo builds network namespaces and loads an XDP program: run it as root");
    }

    step("building a client - router - server topology in network namespaces");
    topology()?;
    let mut demo = Demo {
        daemon: None,
        web: None,
        notice: None,
        dns: None,
        bin: bin.clone(),
    };
    // The real server: a page that says so, served on every server address.
    let webroot = format!("{DIR}/webroot");
    std::fs::create_dir_all(&webroot)?;
    std::fs::write(
        format!("{webroot}/index.html"),
        "the real server answered\n",
    )?;
    demo.web = Some(
        in_ns(
            NS[2],
            "python3",
            &[
                "-m",
                "http.server",
                "80",
                "--bind",
                "::",
                "--directory",
                &webroot,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the demo web server (python3)")?,
    );
    std::fs::write(format!("{DIR}/orders.json"), ORDERS)?;
    demo.notice = Some(
        in_ns(
            NS[3],
            bin.to_str().context("binary path")?,
            &[
                "notice",
                "--listen",
                "[::]:80",
                "--orders",
                &format!("{DIR}/orders.json"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(format!("{DIR}/notice.log"))?)
        .spawn()?,
    );
    demo.dns = Some(crate::demo_dns::start(NS[4], NS[1], DIR)?);
    println!("client 192.0.2.2 -- router (borderfilter on to-client, to-server) -- server 198.51.100.10, 198.51.100.53, 203.0.113.10, 203.0.113.80");
    println!("                       router to-notice -- block-notice host (answers for redirected addresses)");
    println!(
        "                       router to-dns    -- DNS server {} (knot: {} is {})",
        crate::demo_dns::ADDR,
        crate::demo_dns::NAME,
        crate::demo_dns::NAME_ADDR
    );

    step("starting the daemon on the router");
    let log = std::fs::File::create(format!("{DIR}/daemon.log"))?;
    demo.daemon = Some(
        in_ns(
            NS[1],
            bin.to_str().context("binary path")?,
            &[
                "--socket",
                &format!("{DIR}/control.sock"),
                "run",
                "--iface",
                "to-client",
                "--iface",
                "to-server",
                "--redirect-iface",
                "to-notice",
                "--redirect-neighbor",
                "192.0.2.130",
                "--orders",
                &format!("{DIR}/orders.json"),
                "--pin-dir",
                &format!("{DIR}/bpffs/pins"),
                "--audit-log",
                &format!("{DIR}/audit.jsonl"),
                "--metrics",
                "127.0.0.1:10431",
                "--resolver",
                crate::demo_dns::ADDR,
                "--names-state",
                &format!("{DIR}/names.json"),
            ],
        )
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&format!("{DIR}/control.sock")).exists() {
        if Instant::now() > deadline {
            bail!(
                "the daemon did not start; its log:\n{}",
                std::fs::read_to_string(format!("{DIR}/daemon.log")).unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(100));
    }
    // The web server needs a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_ns(
        NS[2],
        "curl",
        &["-s", "-o", "/dev/null", "http://203.0.113.10/"],
    )
    .status()?
    .success()
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(100));
    }

    show(
        "the order list in force (from the court order in orders.json)",
        &bin,
        &["status"],
    )?;
    show(
        "why is 198.51.100.10 blocked?",
        &bin,
        &["check", "198.51.100.10"],
    )?;
    println!("\n# an unblocked address reaches the real server");
    curl("http://203.0.113.10/")?;
    println!("\n# an address under the redirect order is answered by the block-notice host (451, RFC 7725)");
    notice_page("http://198.51.100.10/")?;
    println!("\n# the exception inside the blocked range reaches the real server");
    curl("http://198.51.100.53/")?;
    show("a new order arrives: block 203.0.113.10 from the CLI (written to orders.json, applied at once)", &bin, &[
        "orders", "add", "--id", "DEMO-2/2026", "--authority", "Retten i Glostrup", "--issued", "2026-11-20",
        "--action", "drop", "--basis", "gambling", "203.0.113.10",
    ])?;
    curl("http://203.0.113.10/")?;
    show(
        "a court order names a domain: the daemon resolves it through the ISP's resolver and blocks its addresses",
        &bin,
        &[
            "orders", "add", "--id", "DEMO-3/2026", "--authority", "Østre Landsret", "--issued", "2026-11-25",
            "--action", "drop", "--basis", "copyright", "--domain", crate::demo_dns::NAME,
        ],
    )?;
    wait_blocked(&bin, crate::demo_dns::NAME_ADDR)?;
    curl(&format!("http://{}/", crate::demo_dns::NAME_ADDR))?;
    show(
        &format!(
            "why is {} blocked? (provenance: the name, when it resolved, the TTL)",
            crate::demo_dns::NAME_ADDR
        ),
        &bin,
        &["check", crate::demo_dns::NAME_ADDR],
    )?;
    show(
        "a typo is refused and changes nothing",
        &bin,
        &["block", "add", "203.0.113.7/24", "--order", "DEMO-2/2026"],
    )?;
    show(
        "packet counters per order and per verdict",
        &bin,
        &["stats"],
    )?;
    println!("\n# the same counters for Prometheus (from the router's loopback)");
    println!("$ curl -s http://127.0.0.1:10431/metrics | grep order_packets");
    let out = in_ns(NS[1], "curl", &["-s", "http://127.0.0.1:10431/metrics"]).output()?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("borderfilter_order_packets"))
    {
        println!("{line}");
    }
    show("the audit trail", &bin, &["audit"])?;
    show(
        "since when is 203.0.113.10 blocked, by which order, who decided? (compliance)",
        &bin,
        &["audit", "--prefix", "203.0.113.10"],
    )?;
    let (orders, pins) = (format!("{DIR}/orders.json"), format!("{DIR}/bpffs/pins"));
    let names = format!("{DIR}/names.json");
    show(
        "proof that the data plane enforces exactly the file and what its names resolved to (read from the pinned maps)",
        &bin,
        &["verify", "--orders", &orders, "--pin-dir", &pins, "--names-state", &names],
    )?;

    if keep {
        println!("\nThe demo keeps running. Try, for example:");
        println!(
            "  ip netns exec {} curl --max-time 2 http://198.51.100.10/",
            NS[0]
        );
        println!(
            "  {} --socket {DIR}/control.sock orders list",
            bin.display()
        );
        println!("  edit {DIR}/orders.json and watch `status`");
        println!("Press Enter to tear it down.");
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    step("tearing the demo down (namespaces, pins)");
    drop(demo);
    Ok(())
}
