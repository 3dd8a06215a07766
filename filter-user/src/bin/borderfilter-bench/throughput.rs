//! Frames per second through a veth pair (the rig in `flood.rs`) on the benchmark's own
//! list: borderfilter with 100,000 prefixes against the drop-all ceiling and nftables
//! dropping the same prefixes. Two mixes: every frame to a blocked address (inside
//! 198.18.0.0/16, which the list holds as 65,536 /32s), and 1% of them, the rest to
//! addresses of 198.19.0.0/16 the list does not block (checked against the list).
//! `floodlists.rs` floods the lists shaped like real ones.

use std::net::{IpAddr, Ipv4Addr};

use filter_user::{
    dataplane::{Dataplane, LoadOptions},
    error_chain,
    prefix::Prefix,
};
use serde::Serialize;

use crate::{
    flood::{self, Contender, Rig},
    lists, shaped, Options,
};

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// "all blocked" or "1% blocked".
    pub mix: &'static str,
    /// "ceiling (drop all)", "borderfilter", "nftables".
    pub contender: &'static str,
    pub mpps: f64,
    /// 1/rate - 1/ceiling rate, in nanoseconds: what the contender adds per frame.
    pub extra_ns: f64,
    pub frames_sent: u64,
    pub frames_received: u64,
}

/// The 100,000 prefixes: every address of 198.18.0.0/16 (which the blocked frames
/// target) and the rest in 240.0.0.0/5 (never sent to).
fn prefixes() -> Vec<Prefix> {
    let mut rng = lists::rng(100);
    let mut all: Vec<Prefix> = (0..65_536u32)
        .map(|i| Prefix::host(IpAddr::V4(Ipv4Addr::from(0xc612_0000 | i))))
        .collect();
    all.extend(lists::v4_within(
        100_000 - all.len(),
        0xf000_0000,
        5,
        &mut rng,
    ));
    all
}

pub fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let rounds = if options.quick { 1 } else { 3 };
    let mut rig = Rig::new(options)?;
    // The filter with the 100,000 prefixes (the benchmark's own capacities).
    let list = prefixes();
    let entries = lists::dropping(&list);
    let filter = {
        let mut dp = Dataplane::load(&LoadOptions {
            pin_dir: None,
            v4_capacity: 200_000,
            v6_capacity: 1024,
        })
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        let empty = filter_user::sync::Snapshot::read(dp.maps())
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        let target = filter_user::sync::Snapshot::new(
            entries.clone(),
            std::collections::BTreeMap::from([(
                2,
                filter_common::Rule::new(filter_common::action::DROP, 2),
            )]),
        );
        filter_user::sync::Plan::between(&empty, &target)
            .apply(dp.maps_mut())
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        dp
    };
    let target_net: Prefix = "198.18.0.0/16".parse()?;
    let mut rng = lists::rng(11);
    let blocked: Vec<IpAddr> = (0..filter_common::bench::SAMPLES)
        .map(|_| lists::inside(&target_net, &mut rng))
        .collect();
    let pass: Vec<IpAddr> = shaped::draw(&entries, false, false, false, 12)?
        .into_iter()
        .filter(|a| matches!(a, IpAddr::V4(v) if v.octets()[1] == 19))
        .collect();
    let template = rig.template(flood::unblocked_source(&entries, 4)?);
    let mut rows = Vec::new();
    for (mix, per_mille) in [("all blocked", 1000u32), ("1% blocked", 10)] {
        rig.destinations(4, &blocked, &pass, per_mille)?;
        let contenders = [
            Contender::Ceiling,
            Contender::Borderfilter(&filter),
            Contender::Nftables,
        ];
        // Rounds interleave the contenders, so that a busy moment of the shared machine
        // falls on all of them.
        let mut results = vec![Vec::new(); contenders.len()];
        for _ in 0..rounds {
            for (c, contender) in contenders.iter().enumerate() {
                // The table only while nftables is measured: the frames borderfilter
                // passes would go through its chain.
                if matches!(contender, Contender::Nftables) {
                    let took = rig.load_nft(&list)?;
                    eprintln!(
                        "  nftables took {took:.2} s to load {} prefixes",
                        list.len()
                    );
                }
                results[c].push(rig.measure(*contender, &template)?);
                if matches!(contender, Contender::Nftables) {
                    rig.unload_nft()?;
                }
            }
        }
        let mut ceiling_rate = 0.0;
        for (contender, mut results) in contenders.iter().zip(results) {
            results.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let m = results[results.len() / 2];
            if matches!(contender, Contender::Ceiling) {
                ceiling_rate = m.rate;
            }
            let extra_ns = (1.0 / m.rate - 1.0 / ceiling_rate) * 1e9;
            eprintln!(
                "  {mix:<11} {:<19} {:6.2} Mpps (+{:5.1} ns per frame over the ceiling)",
                contender.name(),
                m.rate / 1e6,
                extra_ns
            );
            rows.push(Row {
                mix,
                contender: contender.name(),
                mpps: m.rate / 1e6,
                extra_ns,
                frames_sent: m.sent,
                frames_received: m.received,
            });
        }
    }
    Ok(rows)
}
