//! The demo's DNS server: a real authoritative server (knot) in a namespace of its own
//! behind the router, serving the zone of the name a court order lists, so that the
//! daemon resolves it as it would through an ISP's resolvers.

use std::{
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// The server's address (the router's end of the link is 192.0.2.193).
pub const ADDR: &str = "192.0.2.194";
/// The name the demo's order lists, and the address it resolves to.
pub const NAME: &str = "allofmp3.example";
pub const NAME_ADDR: &str = "203.0.113.80";

/// Starts knotd in `ns` with its files under `dir`, and waits until it answers from the
/// router namespace `router`.
pub fn start(ns: &str, router: &str, dir: &str) -> anyhow::Result<Child> {
    let dns = format!("{dir}/dns");
    std::fs::create_dir_all(format!("{dns}/run"))?;
    std::fs::create_dir_all(format!("{dns}/storage"))?;
    std::fs::write(
        format!("{dns}/{NAME}.zone"),
        format!(
            "$ORIGIN {NAME}.\n$TTL 60\n@ IN SOA ns.dns.invalid. hostmaster.dns.invalid. 1 60 60 600 1\n\
             @ IN NS ns.dns.invalid.\n@ 60 IN A {NAME_ADDR}\nwww 60 IN A {NAME_ADDR}\n"
        ),
    )?;
    let conf = format!("{dns}/knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n    rundir: \"{dns}/run\"\n    listen: {ADDR}@53\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: \"{dns}/storage\"\n\
             control:\n    listen: \"{dns}/run/knot.sock\"\n\
             template:\n  - id: default\n    storage: \"{dns}\"\n    zonefile-sync: -1\n    journal-content: none\n\
             zone:\n  - domain: \"{NAME}.\"\n    file: \"{dns}/{NAME}.zone\"\n"
        ),
    )?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "knotd", "-c", &conf])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(format!("{dns}/knotd.log"))?)
        .spawn()
        .context("starting knotd (Debian package knot)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                router,
                "kdig",
                &format!("@{ADDR}"),
                "+short",
                "+tcp",
                NAME,
                "A",
            ])
            .output()
            .context("running kdig (Debian package knot-dnsutils)")?;
        if String::from_utf8_lossy(&out.stdout).contains(NAME_ADDR) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            bail!(
                "the demo's DNS server did not answer; its log:\n{}",
                std::fs::read_to_string(format!("{dns}/knotd.log")).unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(50));
    }
}
