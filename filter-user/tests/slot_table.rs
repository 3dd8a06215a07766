//! The IPv4 slot table under pressure: an open-addressed table whose cells are found by
//! probing at most `SLOT_PROBES` cells from a /24's home. A /24 whose slot lies further
//! (a crowded table) must be answered by the trie, exactly; a table reused from its pins
//! must know which cells are taken, so that a later sync neither loses nor duplicates a
//! /24's slot.
//!
//! The /24s are taken from 198.18.0.0/15 (RFC 2544 benchmarking space): the
//! documentation ranges hold only three /24s, and these tests need many whose homes
//! collide. No packet leaves the kernel's test harness.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::Command,
};

use common::*;
use filter_common::{
    action,
    maps::{slot_home, SLOT_PROBES},
    Entry,
};
use filter_user::{
    dataplane::{model, xdp_action, Dataplane, LoadOptions},
    prefix::Prefix,
    sync::{Plan, Snapshot},
};

const DROP_RULE: u32 = 2;
const EXEMPT_RULE: u32 = 3;
/// A small capacity: 32 trie entries, a table of 64 cells.
const CAPACITY: u32 = 32;
const CELLS: u32 = 64;

/// `n` /24 numbers in 198.18.0.0/15 whose homes fall on two neighbouring cells of a
/// 64-cell table.
fn colliding_blocks(n: usize) -> Vec<u32> {
    let first = u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 8;
    let home = |b: u32| slot_home(b) & (CELLS - 1);
    let target = home(first);
    let blocks: Vec<u32> = (first..first + 512)
        .filter(|b| home(*b).wrapping_sub(target) & (CELLS - 1) <= 1)
        .take(n)
        .collect();
    assert_eq!(
        blocks.len(),
        n,
        "not enough colliding /24s in 198.18.0.0/15"
    );
    blocks
}

fn net(block: u32, low: u8, len: u8) -> Prefix {
    Prefix::new_truncating(
        IpAddr::V4(Ipv4Addr::from((block << 8) | u32::from(low))),
        len,
    )
}

/// Each block dropped as a /24 with one exempted host inside, or two for every third
/// block (so slots carry inline entries too).
fn list(blocks: &[u32]) -> BTreeMap<Prefix, Entry> {
    let drop = Entry {
        dst_rule: DROP_RULE,
        src_rule: DROP_RULE,
    };
    let exempt = Entry {
        dst_rule: EXEMPT_RULE,
        src_rule: EXEMPT_RULE,
    };
    let mut entries = BTreeMap::new();
    for (i, b) in blocks.iter().enumerate() {
        entries.insert(net(*b, 0, 24), drop);
        if i % 2 == 0 {
            entries.insert(net(*b, 77, 32), exempt);
        }
    }
    entries
}

fn actions() -> HashMap<u32, u8> {
    HashMap::from([(DROP_RULE, action::DROP), (EXEMPT_RULE, action::EXEMPT)])
}

/// Syncs the maps to `entries`.
fn sync_to(dp: &mut Dataplane, entries: &BTreeMap<Prefix, Entry>) {
    let current = Snapshot::read(dp.maps()).expect("reading the maps");
    let mut target = current.clone();
    target.entries = entries.clone();
    Plan::between(&current, &target)
        .apply(dp.maps_mut())
        .unwrap_or_else(|e| panic!("applying: {}", filter_user::error_chain(&e)));
}

/// Every address of every block in `blocks` gets the model's XDP action.
#[track_caller]
fn assert_answers(dp: &Dataplane, entries: &BTreeMap<Prefix, Entry>, blocks: &[u32]) {
    let list = as_list(entries);
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for b in blocks {
        for low in 0..=255u32 {
            let dst = IpAddr::V4(Ipv4Addr::from((b << 8) | low));
            let (verdict, _) = model::decide(&list, &actions(), false, src, dst);
            let want = if verdict == filter_common::verdict::DROP {
                xdp_action::DROP
            } else {
                xdp_action::PASS
            };
            let got = dp
                .test_run(&filter_user::frame::Frame::ip(src, dst).bytes())
                .unwrap();
            assert_eq!(got, want, "{dst}");
        }
    }
}

/// How far each /24's cell lies from its home, from the table itself; each /24 once.
fn distances(dp: &Dataplane) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for (at, block) in dp.maps().fast().slot_cells() {
        let d = at.wrapping_sub(slot_home(block)) & (CELLS - 1);
        assert!(out.insert(block, d).is_none(), "/24 {block} has two cells");
    }
    out
}

fn small(pin_dir: Option<PathBuf>) -> Dataplane {
    require_root();
    let dp = Dataplane::load(&LoadOptions {
        pin_dir,
        v4_capacity: CAPACITY,
        v6_capacity: 1024,
    })
    .unwrap_or_else(|e| panic!("loading: {}", filter_user::error_chain(&e)));
    assert_eq!(dp.maps().fast().slot_cells_total(), CELLS);
    dp
}

fn rules(dp: &mut Dataplane) {
    set_rule(dp, DROP_RULE, action::DROP);
    set_rule(dp, EXEMPT_RULE, action::EXEMPT);
}

#[test]
fn slots_beyond_the_probe_range_are_answered_by_the_trie() {
    let mut dp = small(None);
    rules(&mut dp);
    let blocks = colliding_blocks(12);
    let entries = list(&blocks);
    sync_to(&mut dp, &entries);
    assert_fast_path_consistent(&dp);
    let d = distances(&dp);
    let far = d.values().filter(|d| **d >= SLOT_PROBES).count();
    assert!(
        far >= 2 && far < d.len(),
        "twelve /24s on two homes: some near, some beyond the probes: {d:?}"
    );
    assert_answers(&dp, &entries, &blocks);
}

/// A bpffs of the test's own, unmounted (and so unpinned) when dropped.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(format!(
            "/tmp/borderfilter-tests/{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a bpffs at {}", dir.display());
        Self(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_table_reused_from_its_pins_knows_its_cells() {
    let fs = Bpffs::new("slot-table");
    let pins = fs.0.join("maps");
    let blocks = colliding_blocks(10);
    let before = list(&blocks[..7]);
    {
        let mut dp = small(Some(pins.clone()));
        rules(&mut dp);
        sync_to(&mut dp, &before);
    }
    // A restart: the same pins, another capacity asked for (the table keeps its size).
    let mut dp = Dataplane::load(&LoadOptions {
        pin_dir: Some(pins),
        v4_capacity: 1 << 12,
        v6_capacity: 1024,
    })
    .unwrap();
    assert_eq!(dp.maps().fast().slot_cells_total(), CELLS);
    assert_eq!(distances(&dp).len(), 7);
    assert_answers(&dp, &before, &blocks);
    // Two /24s go, three come: the freed cells are taken again, nothing twice.
    let mut after = list(&blocks[2..]);
    after.insert(
        net(blocks[9], 128, 25),
        Entry {
            dst_rule: EXEMPT_RULE,
            src_rule: EXEMPT_RULE,
        },
    );
    sync_to(&mut dp, &after);
    assert_fast_path_consistent(&dp);
    let cells = distances(&dp);
    assert_eq!(
        cells.keys().copied().collect::<Vec<_>>(),
        blocks[2..].to_vec(),
        "exactly the listed /24s have cells"
    );
    assert_answers(&dp, &after, &blocks);
}
