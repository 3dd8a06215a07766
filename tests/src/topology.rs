//! The topology of every end-to-end test: a client, a router running borderfilter on
//! both of its links, and a server holding the addresses the orders talk about.
//!
//! ```text
//!  client  c0 ---- rc  router  rs ---- s0  server
//!  192.0.2.2/26    .1      .65/26      .66   + 198.51.100.x, 203.0.113.x, 2001:db8:66::x ...
//! ```
//! Every address is in a documentation range; nothing leaves the namespaces.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Once,
};

use crate::netns::{sh, veth, Netns};

pub const CLIENT_V4: &str = "192.0.2.2";
pub const CLIENT_V6: &str = "2001:db8:c1::2";
/// Addresses the server answers on, for the orders of the tests to block or allow.
pub const SERVER_V4: &[&str] = &[
    "198.51.100.10",
    "198.51.100.20",
    "198.51.100.53",
    "203.0.113.10",
    "203.0.113.70",
    "203.0.113.80",
];
pub const SERVER_V6: &[&str] = &[
    "2001:db8:66::10",
    "2001:db8:66::53",
    "2001:db8:77::10",
    "2001:db8:77::20",
];
/// The router's interfaces, which the daemon filters.
pub const ROUTER_IFACES: [&str; 2] = ["rc", "rs"];

/// Where the tests mount their own bpffs: outside /sys, so that pins survive `ip netns
/// exec` (which remounts /sys) and restarts of the daemon.
pub const BPFFS: &str = "/tmp/borderfilter-tests/bpffs";

pub fn mount_bpffs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::fs::create_dir_all(BPFFS).expect("creating the bpffs mount point");
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(BPFFS));
        if !mounted {
            sh("mount", &["-t", "bpf", "bpf", BPFFS]);
        }
    });
}

pub struct Topology {
    pub tag: String,
    /// Files of this test: the order list, the socket, the audit log, the daemon's log.
    pub dir: PathBuf,
    pub pin_dir: PathBuf,
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
    /// The block-notice host, behind the router's `rn`, when the test asked for one.
    pub notice: Option<Netns>,
}

/// The router's interface towards the notice host, and the notice host's address.
pub const NOTICE_IFACE: &str = "rn";
pub const NOTICE_V4: &str = "192.0.2.130";

impl Topology {
    #[track_caller]
    pub fn new(test: &str) -> Self {
        crate::require_root();
        mount_bpffs();
        let tag = crate::unique_tag(test);
        let dir = PathBuf::from(format!("/tmp/borderfilter-tests/{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test directory");
        let t = Self {
            pin_dir: Path::new(BPFFS).join(&tag),
            client: Netns::new(&format!("bf{tag}c")),
            router: Netns::new(&format!("bf{tag}r")),
            server: Netns::new(&format!("bf{tag}s")),
            notice: None,
            tag,
            dir,
        };
        for ns in [&t.client, &t.router, &t.server] {
            // No duplicate address detection: addresses are usable at once.
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
        }
        veth(&t.client, "c0", &t.router, "rc");
        veth(&t.router, "rs", &t.server, "s0");
        t.router.sysctl("net.ipv4.ip_forward", "1");
        t.router.sysctl("net.ipv6.conf.all.forwarding", "1");

        t.client.ip(&["addr", "add", "192.0.2.2/26", "dev", "c0"]);
        t.client
            .ip(&["addr", "add", "2001:db8:c1::2/64", "dev", "c0", "nodad"]);
        t.client
            .ip(&["route", "add", "default", "via", "192.0.2.1"]);
        t.client
            .ip(&["-6", "route", "add", "default", "via", "2001:db8:c1::1"]);

        t.router.ip(&["addr", "add", "192.0.2.1/26", "dev", "rc"]);
        t.router
            .ip(&["addr", "add", "2001:db8:c1::1/64", "dev", "rc", "nodad"]);
        t.router.ip(&["addr", "add", "192.0.2.65/26", "dev", "rs"]);
        t.router
            .ip(&["addr", "add", "2001:db8:5e::1/64", "dev", "rs", "nodad"]);
        for net in ["198.51.100.0/24", "203.0.113.0/24"] {
            t.router.ip(&["route", "add", net, "via", "192.0.2.66"]);
        }
        for net in ["2001:db8:66::/48", "2001:db8:77::/48"] {
            t.router
                .ip(&["-6", "route", "add", net, "via", "2001:db8:5e::2"]);
        }

        t.server.ip(&["addr", "add", "192.0.2.66/26", "dev", "s0"]);
        t.server
            .ip(&["addr", "add", "2001:db8:5e::2/64", "dev", "s0", "nodad"]);
        t.server
            .ip(&["route", "add", "default", "via", "192.0.2.65"]);
        t.server
            .ip(&["-6", "route", "add", "default", "via", "2001:db8:5e::1"]);
        for a in SERVER_V4 {
            t.server
                .ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        for a in SERVER_V6 {
            t.server
                .ip(&["addr", "add", &format!("{a}/128"), "dev", "lo"]);
        }
        t
    }

    /// The topology plus a block-notice host: it accepts traffic for 198.51.100.0/24 and
    /// 2001:db8:66::/48 (local routes) and receives redirected frames (GRO on its veth).
    #[track_caller]
    pub fn with_notice(test: &str) -> Self {
        let mut t = Self::new(test);
        let n = Netns::new(&format!("bf{}n", t.tag));
        n.sysctl("net.ipv6.conf.all.accept_dad", "0");
        n.sysctl("net.ipv6.conf.default.accept_dad", "0");
        veth(&t.router, NOTICE_IFACE, &n, "n0");
        t.router
            .ip(&["addr", "add", "192.0.2.129/26", "dev", NOTICE_IFACE]);
        t.router.ip(&[
            "addr",
            "add",
            "2001:db8:4e::1/64",
            "dev",
            NOTICE_IFACE,
            "nodad",
        ]);
        n.ip(&["addr", "add", "192.0.2.130/26", "dev", "n0"]);
        n.ip(&["addr", "add", "2001:db8:4e::2/64", "dev", "n0", "nodad"]);
        n.ip(&["route", "add", "default", "via", "192.0.2.129"]);
        n.ip(&["-6", "route", "add", "default", "via", "2001:db8:4e::1"]);
        // The notice host answers for the blocked addresses it is sent.
        n.ip(&["route", "add", "local", "198.51.100.0/24", "dev", "lo"]);
        n.ip(&[
            "-6",
            "route",
            "add",
            "local",
            "2001:db8:66::/48",
            "dev",
            "lo",
        ]);
        // A veth takes XDP_REDIRECTed frames only with GRO (or an XDP program) on its peer.
        n.exec("ethtool", &["-K", "n0", "gro", "on"]);
        // A veth leaves TCP checksums to "hardware" that a redirected frame never meets:
        // the client computes them itself, as packets from a real wire have them.
        t.client.exec("ethtool", &["-K", "c0", "tx", "off"]);
        // Replies from the notice host come from blocked addresses through rn: the
        // router must not drop them as spoofed.
        t.router.sysctl("net.ipv4.conf.all.rp_filter", "0");
        t.router
            .sysctl(&format!("net.ipv4.conf.{NOTICE_IFACE}.rp_filter"), "0");
        let mac = |ns: &Netns, dev: &str| -> String {
            let out = ns.ip(&["-br", "link", "show", "dev", dev]);
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .nth(2)
                .expect("a MAC address")
                .to_string()
        };
        let (router_mac, notice_mac) = (mac(&t.router, NOTICE_IFACE), mac(&n, "n0"));
        for a in ["192.0.2.130", "2001:db8:4e::2"] {
            t.router.ip(&[
                "neigh",
                "replace",
                a,
                "lladdr",
                &notice_mac,
                "dev",
                NOTICE_IFACE,
                "nud",
                "permanent",
            ]);
        }
        for a in ["192.0.2.129", "2001:db8:4e::1"] {
            n.ip(&[
                "neigh",
                "replace",
                a,
                "lladdr",
                &router_mac,
                "dev",
                "n0",
                "nud",
                "permanent",
            ]);
        }
        t.notice = Some(n);
        t
    }

    pub fn orders_path(&self) -> PathBuf {
        self.dir.join("orders.json")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Writes the order list file atomically, as an editor would (temporary file, rename).
    #[track_caller]
    pub fn write_orders(&self, text: &str) {
        let temp = self.dir.join("orders.json.tmp");
        std::fs::write(&temp, text).expect("writing the order list");
        std::fs::rename(&temp, self.orders_path()).expect("renaming the order list");
    }

    pub fn client_addr(v6: bool) -> IpAddr {
        if v6 { CLIENT_V6 } else { CLIENT_V4 }
            .parse()
            .expect("a valid constant")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Pins of a test that failed before detaching.
        if let Ok(dir) = std::fs::read_dir(&self.pin_dir) {
            for e in dir.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
            let _ = std::fs::remove_dir(&self.pin_dir);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An order list with the given orders (JSON objects) and exceptions.
pub fn order_list(orders: &[String], exceptions: &[String]) -> String {
    format!(
        "{{\"version\": 1, \"orders\": [{}], \"exceptions\": [{}]}}",
        orders.join(",\n"),
        exceptions.join(",\n")
    )
}

/// One order as JSON. `extra` is spliced in (e.g. `"direction": "dst"`); the basis is
/// copyright unless `extra` gives one.
pub fn order(id: &str, action: &str, prefixes: &[&str], extra: &str) -> String {
    let prefixes: Vec<String> = prefixes.iter().map(|p| format!("\"{p}\"")).collect();
    let basis = if extra.contains("\"basis\"") {
        ""
    } else {
        "\"basis\": \"copyright\", "
    };
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "{{\"id\": \"{id}\", \"authority\": \"Test Court\", \"issued\": \"2026-01-01\", {basis}\"action\": \"{action}\", \"prefixes\": [{}]{extra}}}",
        prefixes.join(", ")
    )
}

pub fn exception(prefix: &str, reason: &str) -> String {
    format!("{{\"prefix\": \"{prefix}\", \"reason\": \"{reason}\"}}")
}

/// A large order list: `v4` IPv4 and `v6` IPv6 prefixes in `orders` orders, with a mix of
/// lengths (mostly /32 and /24 for IPv4, /48 to /64 for IPv6). The bulk lies in
/// 240.0.0.0/4 and 2001:db8:8000::/33, where no test sends a packet; `seed` varies it.
pub fn big_list(v4: usize, v6: usize, orders: usize, seed: u64) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut v4_set = std::collections::HashSet::with_capacity(v4);
    while v4_set.len() < v4 {
        // 240.0.0.0/5: reserved space, clear of the broadcast address at its top.
        let addr: u32 = 0xf000_0000 | (rng.random::<u32>() & 0x07ff_ffff);
        let len = [32u8, 32, 32, 24, 28, 30, 22][rng.random_range(0..7)];
        let net = if len == 32 {
            addr
        } else {
            addr & (u32::MAX << (32 - len))
        };
        v4_set.insert((net, len));
    }
    let mut v6_set = std::collections::HashSet::with_capacity(v6);
    while v6_set.len() < v6 {
        let len = [48u8, 56, 64][rng.random_range(0..3)];
        // 2001:db8:8000::/33, then 31 random bits down to /64.
        let random = u128::from(rng.random::<u32>() & 0x7fff_ffff) << 64;
        let bits: u128 = (0x2001_0db8u128 << 96) | (1u128 << 95) | random;
        let net = bits & (u128::MAX << (128 - u32::from(len)));
        v6_set.insert((net, len));
    }
    let mut all: Vec<String> = v4_set
        .into_iter()
        .map(|(a, l)| format!("\"{}/{l}\"", std::net::Ipv4Addr::from(a)))
        .chain(
            v6_set
                .into_iter()
                .map(|(a, l)| format!("\"{}/{l}\"", std::net::Ipv6Addr::from(a))),
        )
        .collect();
    all.sort();
    let per_order = all.len().div_ceil(orders.max(1));
    let orders: Vec<String> = all
        .chunks(per_order.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            format!(
                "{{\"id\": \"BULK-{i}\", \"authority\": \"Test Court\", \"issued\": \"2026-01-01\", \"action\": \"drop\", \"prefixes\": [\n{}\n]}}",
                chunk.join(",\n")
            )
        })
        .collect();
    order_list(&orders, &[])
}
