//! Table-driven BPF_PROG_TEST_RUN fixtures against the real, verifier-loaded program.
//! Each case is a frame, the XDP action expected and the counters expected to move
//! (one packet under SEEN and under the verdict, and under the rule that decided).

mod common;

use common::*;
use filter_common::{action, parse, types::EXCEPTION_RULE, verdict};
use filter_user::{
    dataplane::{xdp_action, Dataplane},
    frame::{Frame, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, ETH_P_LLDP},
};

// Rule numbers of the scenario.
const DROP_BOTH: u32 = 2;
const MONITOR: u32 = 3;
const DROP_DST_ONLY: u32 = 4;
const DROP_SRC_ONLY: u32 = 5;
/// An entry may name a rule slot that is not (or no longer) in use.
const UNUSED_SLOT: u32 = 9;
const RULES: u32 = 10;

/// An address no entry covers, used as the other end of most frames.
const CLIENT4: &str = "203.0.113.200";
const CLIENT6: &str = "2001:db8:c1::1";

/// The entries every case runs against. Only documentation ranges.
fn scenario(dp: &mut Dataplane) {
    set_rule(dp, EXCEPTION_RULE, action::EXEMPT);
    set_rule(dp, DROP_BOTH, action::DROP);
    set_rule(dp, MONITOR, action::MONITOR);
    set_rule(dp, DROP_DST_ONLY, action::DROP);
    set_rule(dp, DROP_SRC_ONLY, action::DROP);
    let ex = EXCEPTION_RULE;
    for (prefix, dst, src) in [
        // A block with an exception inside it.
        ("198.51.100.0/24", DROP_BOTH, DROP_BOTH),
        ("198.51.100.53/32", ex, ex),
        // Nested: a monitored /26 inside a dropped /25 (the longest wins).
        ("203.0.113.0/25", DROP_BOTH, DROP_BOTH),
        ("203.0.113.64/26", MONITOR, MONITOR),
        // A block inside an exception.
        ("192.0.2.0/25", ex, ex),
        ("192.0.2.64/26", DROP_BOTH, DROP_BOTH),
        // Direction-limited blocks.
        ("192.0.2.128/26", DROP_DST_ONLY, 0),
        ("192.0.2.192/26", 0, DROP_SRC_ONLY),
        ("192.0.2.160/28", UNUSED_SLOT, UNUSED_SLOT),
        // IPv6.
        ("2001:db8:66::/48", DROP_BOTH, DROP_BOTH),
        ("2001:db8:66::53/128", ex, ex),
        ("2001:db8:77::/48", MONITOR, MONITOR),
        ("2001:db8:d5::/48", DROP_DST_ONLY, 0),
        ("2001:db8:5c::/48", 0, DROP_SRC_ONLY),
    ] {
        insert(dp, prefix, dst, src);
    }
}

struct Case {
    what: &'static str,
    frame: Vec<u8>,
    action: u32,
    verdict: u32,
    rule: Option<u32>,
}

fn case(what: &'static str, frame: Vec<u8>, action: u32, verdict: u32, rule: Option<u32>) -> Case {
    Case {
        what,
        frame,
        action,
        verdict,
        rule,
    }
}

fn v4(src: &str, dst: &str) -> Frame {
    Frame::ip(addr(src), addr(dst))
}

fn dropped(what: &'static str, frame: Frame, rule: u32) -> Case {
    case(
        what,
        frame.bytes(),
        xdp_action::DROP,
        verdict::DROP,
        Some(rule),
    )
}

fn passed(what: &'static str, frame: Frame, verdict: u32, rule: Option<u32>) -> Case {
    case(what, frame.bytes(), xdp_action::PASS, verdict, rule)
}

fn truncated(what: &'static str, frame: Frame, len: usize) -> Case {
    let mut bytes = frame.bytes();
    bytes.truncate(len);
    case(what, bytes, xdp_action::PASS, verdict::MALFORMED, None)
}

fn cases() -> Vec<Case> {
    let blocked4 = "198.51.100.10";
    let blocked6 = "2001:db8:66::10";
    let ex = Some(EXCEPTION_RULE);
    vec![
        // IPv4, both directions, nesting and exceptions.
        dropped(
            "v4 destination in a block",
            v4(CLIENT4, blocked4),
            DROP_BOTH,
        ),
        dropped("v4 source in a block", v4(blocked4, CLIENT4), DROP_BOTH),
        passed(
            "v4 exception inside a block",
            v4(CLIENT4, "198.51.100.53"),
            verdict::EXEMPT,
            ex,
        ),
        passed(
            "v4 exception as source",
            v4("198.51.100.53", CLIENT4),
            verdict::EXEMPT,
            ex,
        ),
        dropped(
            "v4 outer of nested prefixes",
            v4(CLIENT4, "203.0.113.10"),
            DROP_BOTH,
        ),
        passed(
            "v4 inner of nested prefixes wins",
            v4(CLIENT4, "203.0.113.70"),
            verdict::MONITOR,
            Some(MONITOR),
        ),
        dropped(
            "v4 block inside an exception",
            v4(CLIENT4, "192.0.2.70"),
            DROP_BOTH,
        ),
        passed(
            "v4 exception around a block",
            v4(CLIENT4, "192.0.2.10"),
            verdict::EXEMPT,
            ex,
        ),
        dropped(
            "v4 dst-only block by destination",
            v4(CLIENT4, "192.0.2.130"),
            DROP_DST_ONLY,
        ),
        passed(
            "v4 dst-only block by source",
            v4("192.0.2.130", CLIENT4),
            verdict::PASS,
            None,
        ),
        dropped(
            "v4 src-only block by source",
            v4("192.0.2.200", CLIENT4),
            DROP_SRC_ONLY,
        ),
        passed(
            "v4 src-only block by destination",
            v4(CLIENT4, "192.0.2.200"),
            verdict::PASS,
            None,
        ),
        passed(
            "v4 nothing matches",
            v4(CLIENT4, "203.0.113.201"),
            verdict::PASS,
            None,
        ),
        dropped(
            "v4 monitored destination, blocked source",
            v4(blocked4, "203.0.113.70"),
            DROP_BOTH,
        ),
        passed(
            "v4 exempt destination, monitored source",
            v4("203.0.113.70", "192.0.2.10"),
            verdict::MONITOR,
            Some(MONITOR),
        ),
        passed(
            "v4 entry naming an unused rule slot",
            v4(CLIENT4, "192.0.2.161"),
            verdict::PASS,
            None,
        ),
        // IPv6.
        dropped(
            "v6 destination in a block",
            Frame::ip(addr(CLIENT6), addr(blocked6)),
            DROP_BOTH,
        ),
        dropped(
            "v6 source in a block",
            Frame::ip(addr(blocked6), addr(CLIENT6)),
            DROP_BOTH,
        ),
        passed(
            "v6 exception inside a block",
            Frame::ip(addr(CLIENT6), addr("2001:db8:66::53")),
            verdict::EXEMPT,
            ex,
        ),
        passed(
            "v6 monitored",
            Frame::ip(addr(CLIENT6), addr("2001:db8:77::1")),
            verdict::MONITOR,
            Some(MONITOR),
        ),
        dropped(
            "v6 dst-only block by destination",
            Frame::ip(addr(CLIENT6), addr("2001:db8:d5::1")),
            DROP_DST_ONLY,
        ),
        passed(
            "v6 dst-only block by source",
            Frame::ip(addr("2001:db8:d5::1"), addr(CLIENT6)),
            verdict::PASS,
            None,
        ),
        dropped(
            "v6 src-only block by source",
            Frame::ip(addr("2001:db8:5c::1"), addr(CLIENT6)),
            DROP_SRC_ONLY,
        ),
        passed(
            "v6 nothing matches",
            Frame::ip(addr(CLIENT6), addr("2001:db8:99::1")),
            verdict::PASS,
            None,
        ),
        dropped(
            "v6 with hop-by-hop, destination-options and fragment headers",
            Frame::ip(addr(CLIENT6), addr(blocked6)).with_extensions(&[0, 60, 44]),
            DROP_BOTH,
        ),
        // VLAN tags.
        dropped(
            "802.1Q tagged",
            v4(CLIENT4, blocked4).tagged(ETH_P_8021Q),
            DROP_BOTH,
        ),
        dropped(
            "802.1ad tagged",
            v4(CLIENT4, blocked4).tagged(ETH_P_8021AD),
            DROP_BOTH,
        ),
        dropped(
            "QinQ (802.1ad outer, 802.1Q inner)",
            v4(CLIENT4, blocked4)
                .tagged(ETH_P_8021AD)
                .tagged(ETH_P_8021Q),
            DROP_BOTH,
        ),
        dropped(
            "two 802.1Q tags, IPv6",
            Frame::ip(addr(CLIENT6), addr(blocked6))
                .tagged(ETH_P_8021Q)
                .tagged(ETH_P_8021Q),
            DROP_BOTH,
        ),
        dropped(
            "802.1Q outer, 802.1ad inner",
            v4(blocked4, CLIENT4)
                .tagged(ETH_P_8021Q)
                .tagged(ETH_P_8021AD),
            DROP_BOTH,
        ),
        passed(
            "three tags are beyond the parser: not IP, passed",
            v4(CLIENT4, blocked4)
                .tagged(ETH_P_8021AD)
                .tagged(ETH_P_8021Q)
                .tagged(ETH_P_8021Q),
            verdict::NOT_IP,
            None,
        ),
        // IPv4 header variants.
        dropped(
            "v4 with 40 bytes of options",
            v4(CLIENT4, blocked4).with_ipv4_options(40),
            DROP_BOTH,
        ),
        dropped(
            "v4 with options, tagged",
            v4(blocked4, CLIENT4)
                .with_ipv4_options(12)
                .tagged(ETH_P_8021Q),
            DROP_BOTH,
        ),
        dropped(
            "v4 first fragment",
            v4(CLIENT4, blocked4).fragment(0, true),
            DROP_BOTH,
        ),
        dropped(
            "v4 non-first fragment",
            v4(CLIENT4, blocked4).fragment(185, true),
            DROP_BOTH,
        ),
        dropped(
            "v4 last fragment",
            v4(CLIENT4, blocked4).fragment(370, false),
            DROP_BOTH,
        ),
        // Not IP.
        passed("ARP", Frame::arp(), verdict::NOT_IP, None),
        passed(
            "ARP, tagged",
            Frame::arp().tagged(ETH_P_8021Q),
            verdict::NOT_IP,
            None,
        ),
        passed(
            "LLDP",
            Frame::other(ETH_P_LLDP, vec![0; 46]),
            verdict::NOT_IP,
            None,
        ),
        passed(
            "802.3 length field instead of an ethertype",
            Frame::other(0x002e, vec![0xaa; 46]),
            verdict::NOT_IP,
            None,
        ),
        // Truncated inside each header, and inconsistent headers.
        truncated(
            "only an Ethernet header announcing IPv4",
            v4(CLIENT4, blocked4),
            parse::ETH_HLEN,
        ),
        truncated(
            "inside a VLAN tag",
            v4(CLIENT4, blocked4).tagged(ETH_P_8021Q),
            parse::ETH_HLEN + 2,
        ),
        truncated(
            "inside the second VLAN tag",
            v4(CLIENT4, blocked4)
                .tagged(ETH_P_8021AD)
                .tagged(ETH_P_8021Q),
            20,
        ),
        truncated(
            "inside the IPv4 header",
            v4(CLIENT4, blocked4),
            parse::ETH_HLEN + 19,
        ),
        truncated(
            "inside IPv4 options",
            v4(CLIENT4, blocked4).with_ipv4_options(40),
            parse::ETH_HLEN + 59,
        ),
        truncated(
            "inside the IPv6 source",
            Frame::ip(addr(CLIENT6), addr(blocked6)),
            parse::ETH_HLEN + 20,
        ),
        truncated(
            "inside the IPv6 destination",
            Frame::ip(addr(CLIENT6), addr(blocked6)),
            parse::ETH_HLEN + 39,
        ),
        case(
            "IPv4 ethertype, version 6 in the header",
            {
                let mut b = v4(CLIENT4, blocked4).bytes();
                b[parse::ETH_HLEN] = 0x65;
                b
            },
            xdp_action::PASS,
            verdict::MALFORMED,
            None,
        ),
        case(
            "IPv4 with IHL 4",
            {
                let mut b = v4(CLIENT4, blocked4).bytes();
                b[parse::ETH_HLEN] = 0x44;
                b
            },
            xdp_action::PASS,
            verdict::MALFORMED,
            None,
        ),
        case(
            "IPv6 ethertype carrying an IPv4 header",
            {
                let mut b = v4(CLIENT4, blocked4).with_data_len(40).bytes();
                b[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
                b
            },
            xdp_action::PASS,
            verdict::MALFORMED,
            None,
        ),
        case(
            "ethertype IPv4, no payload at all",
            {
                let mut b = vec![0u8; parse::ETH_HLEN];
                b[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
                b
            },
            xdp_action::PASS,
            verdict::MALFORMED,
            None,
        ),
    ]
}

#[test]
fn fixtures() {
    let mut dp = load();
    scenario(&mut dp);
    let cases = cases();
    assert!(cases.len() >= 30, "the issue asks for at least 30 cases");
    let mut failures = Vec::new();
    for c in &cases {
        let before = counters(&dp, RULES);
        let got = dp.test_run(&c.frame).unwrap_or_else(|e| {
            panic!(
                "{}: test_run failed: {}",
                c.what,
                filter_user::error_chain(&e)
            )
        });
        let after = counters(&dp, RULES);
        let expected = plus_one(&before, c.verdict, c.rule, c.frame.len() as u64);
        if got != c.action {
            failures.push(format!(
                "{}: XDP action {got}, expected {}",
                c.what, c.action
            ));
        }
        if after != expected {
            failures.push(format!(
                "{}: counters moved wrongly\n  expected {:?}\n  got      {:?}",
                c.what, expected, after
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Frames shorter than an Ethernet header never reach an XDP program: the kernel
/// refuses them in BPF_PROG_TEST_RUN (and drivers drop runts before XDP). Their policy
/// (malformed, passed) is checked on the parser itself in `frame.rs`'s unit tests.
#[test]
fn frames_shorter_than_ethernet_are_refused_by_the_kernel() {
    let dp = load();
    for len in [0usize, 1, parse::ETH_HLEN - 1] {
        let before = counters(&dp, 1);
        let result = dp.test_run(&vec![0u8; len]);
        assert!(result.is_err(), "a {len}-byte frame was run: {result:?}");
        assert_eq!(
            counters(&dp, 1),
            before,
            "a refused {len}-byte frame moved counters"
        );
    }
}

/// A veth pair in the current namespace, deleted on drop.
struct Veth(String);

impl Veth {
    fn new() -> Self {
        let name = format!("bfx{}", std::process::id() % 100_000);
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .output();
        let ok = std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{name}p"),
            ])
            .status()
            .expect("ip")
            .success();
        assert!(ok, "creating veth {name}");
        Self(name)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

#[test]
fn redirect_rewrites_the_ethernet_header_and_fails_closed_without_a_target() {
    let mut dp = load();
    scenario(&mut dp);
    const REDIRECT_RULE: u32 = 6;
    set_rule(&mut dp, REDIRECT_RULE, action::REDIRECT);
    insert(&mut dp, "203.0.113.128/28", REDIRECT_RULE, REDIRECT_RULE);
    let to = v4(CLIENT4, "203.0.113.130").bytes();
    let from = v4("203.0.113.130", CLIENT4).bytes();

    // No target configured: redirect orders drop, counted as drop.
    let before = counters(&dp, RULES);
    assert_eq!(dp.test_run(&to).unwrap(), xdp_action::DROP);
    assert_eq!(
        counters(&dp, RULES),
        plus_one(&before, verdict::DROP, Some(REDIRECT_RULE), to.len() as u64)
    );

    let port = Veth::new();
    let ifindex = filter_user::dataplane::ifindex(&port.0).expect("the veth exists");
    let (notice, ours) = ([0x02, 0xaa, 0, 0, 0, 1], [0x02, 0xbb, 0, 0, 0, 2]);
    dp.maps_mut()
        .set_redirect(ifindex, notice, ours)
        .expect("setting the redirect target");
    let before = counters(&dp, RULES);
    let (action, out) = dp.test_run_frame(&to).unwrap();
    assert_eq!(action, xdp_action::REDIRECT);
    assert_eq!(&out[0..6], &notice, "destination MAC is the notice host's");
    assert_eq!(&out[6..12], &ours, "source MAC is the redirect interface's");
    assert_eq!(&out[12..], &to[12..], "the IP packet is unchanged");
    assert_eq!(
        counters(&dp, RULES),
        plus_one(
            &before,
            verdict::REDIRECT,
            Some(REDIRECT_RULE),
            to.len() as u64
        )
    );

    // Matched by source: the blocked service's traffic is dropped, never redirected.
    let before = counters(&dp, RULES);
    assert_eq!(dp.test_run(&from).unwrap(), xdp_action::DROP);
    assert_eq!(
        counters(&dp, RULES),
        plus_one(
            &before,
            verdict::DROP,
            Some(REDIRECT_RULE),
            from.len() as u64
        )
    );

    dp.maps_mut().clear_redirect().unwrap();
    assert_eq!(
        dp.test_run(&to).unwrap(),
        xdp_action::DROP,
        "cleared target: fail closed"
    );
}

/// Runs the calling thread on `cpu` only; gives the previous CPU set back.
fn pin_to_cpu(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is an empty set; the calls get valid pointers to sets of
    // the size passed, for the calling thread (pid 0).
    unsafe {
        let mut before: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut before);
        let mut only: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut only);
        let rc = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &only);
        assert_eq!(rc, 0, "pinning the test thread to CPU {cpu}");
        before
    }
}

/// The daemon reads the rule counters of all orders in batches (BPF_MAP_LOOKUP_BATCH on
/// the per-CPU array, each CPU's value at its 8-byte-aligned place); that must give the
/// same numbers as reading each rule on its own. Packets are counted on two CPUs, so a
/// wrong per-CPU layout would show.
#[test]
fn batched_rule_counters_equal_per_rule_reads() {
    let mut dp = load();
    scenario(&mut dp);
    let frames = [
        (v4(CLIENT4, "198.51.100.10").bytes(), 3), // DROP_BOTH
        (v4("198.51.100.53", CLIENT4).bytes(), 2), // the exception
        (v4(CLIENT4, "203.0.113.70").with_data_len(300).bytes(), 5), // MONITOR
        (v4(CLIENT4, "192.0.2.130").bytes(), 1),   // DROP_DST_ONLY
        (Frame::ip(addr("2001:db8:5c::1"), addr(CLIENT6)).bytes(), 4), // DROP_SRC_ONLY
    ];
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let before = pin_to_cpu(0);
    for cpu in 0..cpus.min(2) {
        pin_to_cpu(cpu);
        for (frame, times) in &frames {
            for _ in 0..*times {
                dp.test_run(frame).expect("running a frame");
            }
        }
    }
    // SAFETY: `before` is the set sched_getaffinity gave for this thread.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &before) };

    let maps = dp.maps();
    let one_by_one: Vec<_> = (0..RULES)
        .map(|r| maps.rule_counter(r).expect("reading one rule's counter"))
        .collect();
    let moved: Vec<u32> = (0..RULES)
        .filter(|&r| one_by_one[r as usize].packets > 0)
        .collect();
    assert_eq!(
        moved,
        [
            EXCEPTION_RULE,
            DROP_BOTH,
            MONITOR,
            DROP_DST_ONLY,
            DROP_SRC_ONLY
        ],
        "the frames should have counted under these rules: {one_by_one:?}"
    );
    let Some(batched) = maps
        .rule_counters_batched(RULES)
        .expect("reading the counters in a batch")
    else {
        eprintln!(
            "SKIPPED: this kernel has no BPF_MAP_LOOKUP_BATCH for per-CPU arrays \
             (Linux 5.6 or later has it); the daemon reads rule by rule there"
        );
        return;
    };
    assert_eq!(
        batched, one_by_one,
        "batched reads against one read per rule"
    );
    assert_eq!(
        maps.rule_counters(RULES).expect("rule_counters"),
        one_by_one
    );

    // The whole map: more elements than one batch holds.
    let capacity = filter_common::maps::RULE_CAPACITY;
    let all = maps
        .rule_counters_batched(capacity + 10)
        .expect("reading every counter")
        .expect("batch lookups worked a moment ago");
    assert_eq!(all.len(), capacity as usize, "clamped to the map's size");
    assert_eq!(&all[..RULES as usize], &one_by_one[..]);
    assert!(
        all[RULES as usize..]
            .iter()
            .all(|c| *c == Default::default()),
        "rules no frame matched stay at zero"
    );
}
