use filter_user::{
    compile::{compile, Numbering},
    dataplane::{Dataplane, LoadOptions},
    orders::validate::{check, Policy},
    sync::{Plan, Snapshot},
};
use std::time::Instant;
#[test]
#[ignore]
fn prof() {
    let bytes = std::fs::read("/tmp/bfx/big.json").unwrap();
    let t = Instant::now();
    let (list, p) = check(
        &bytes,
        &Policy {
            capacity_v4: 2_000_000,
            capacity_v6: 2_000_000,
            ..Policy::default()
        },
    );
    let list = list.unwrap_or_else(|| panic!("{p}"));
    eprintln!("parse+validate {:?}", t.elapsed());
    let t = Instant::now();
    let (l2, _) = filter_user::orders::parse::parse(&bytes);
    eprintln!("  parse alone {:?}", t.elapsed());
    drop(l2);
    let t = Instant::now();
    let c = compile(
        &list,
        time::OffsetDateTime::now_utc(),
        &Numbering::default(),
    )
    .unwrap();
    eprintln!("compile {:?}", t.elapsed());
    let mut dp = Dataplane::load(&LoadOptions {
        pin_dir: None,
        v4_capacity: 1 << 21,
        v6_capacity: 1 << 18,
    })
    .unwrap();
    let t = Instant::now();
    let current = Snapshot::read(dp.maps()).unwrap();
    eprintln!("read empty {:?}", t.elapsed());
    let t = Instant::now();
    let target = Snapshot::of(&c);
    eprintln!("snapshot of {:?}", t.elapsed());
    let t = Instant::now();
    let plan = Plan::between_checked(&current, &target, true);
    eprintln!(
        "plan {:?} (widen {}, long {}, mid {})",
        t.elapsed(),
        plan.fast.widen.len(),
        plan.fast.long_upserts.len(),
        plan.fast.mid.len()
    );
    let t = Instant::now();
    plan.apply(dp.maps_mut()).unwrap();
    eprintln!("apply (trie and fast path in parallel) {:?}", t.elapsed());
    let t = Instant::now();
    let _ = Snapshot::read(dp.maps()).unwrap();
    eprintln!("read full {:?}", t.elapsed());
}
