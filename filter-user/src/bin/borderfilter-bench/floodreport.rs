//! The flood on the shaped lists (`floodlists.rs`) in the report: its table, its memory
//! table, and issue 16's targets checked against the medians over the runs (the
//! spread is printed beside each).

use crate::{
    floodlists::{Flood, Row, Spread},
    target::Target,
};

fn range(s: &Spread, scale: f64, digits: usize) -> String {
    format!(
        "{:.d$} [{:.d$}-{:.d$}]",
        s.median * scale,
        s.min * scale,
        s.max * scale,
        d = digits
    )
}

fn label(r: &Row) -> String {
    format!("IPv{} {} {}", r.family, r.list, r.prefixes)
}

pub fn table(f: &Flood) -> String {
    let mut out = format!(
        "\nVeth flood to random blocked addresses, shaped lists, daemon's default capacities: median [min-max] over {} run{}\n",
        f.runs,
        if f.runs == 1 { "" } else { "s" }
    );
    out += "family  list     prefixes  contender           Mpps                 extra ns per frame     % of ceiling   extra vs nftables    extra vs xdp-filter  program ns\n";
    for r in &f.rows {
        let opt = |s: &Option<Spread>| s.as_ref().map_or(String::new(), |s| range(s, 1.0, 2));
        out += &format!(
            "IPv{}    {:<7}  {:>8}  {:<18}  {:<19}  {:<21}  {:<13}  {:<19}  {:<19}  {}\n",
            r.family,
            r.list,
            r.prefixes,
            r.contender,
            range(&r.mpps, 1.0, 2),
            range(&r.extra_ns, 1.0, 1),
            range(&r.of_ceiling, 100.0, 0),
            opt(&r.vs_nftables),
            opt(&r.vs_xdp_filter),
            r.program_ns.map_or(String::new(), |ns| format!("{ns:.0}")),
        );
    }
    out += "(program ns: the XDP program's own run time per frame, kernel BPF statistics, one more measurement; the ceiling's is the statistics' overhead)\n";
    for note in &f.notes {
        out += &format!("  note: {note}\n");
    }
    out += &format!(
        "(the flood part took {:.0} s, {:.1} s per measurement)\n",
        f.total_s, f.seconds_per_measurement
    );
    out += "\nKernel map memory per list, daemon's default capacities (memlock of each map)\n";
    out += "family  list     prefixes   entries       MiB  bytes/prefix  largest maps\n";
    for m in &f.memory {
        let mut maps = m.by_map.clone();
        maps.sort_by_key(|m| std::cmp::Reverse(m.1));
        let largest: Vec<String> = maps
            .iter()
            .take(3)
            .map(|(n, b)| format!("{n} {:.1} MiB", *b as f64 / 1048576.0))
            .collect();
        out += &format!(
            "IPv{}    {:<7}  {:>8}  {:>8}  {:>8.1}  {:>12.0}  {}\n",
            m.family,
            m.list,
            m.prefixes,
            m.entries,
            m.bytes as f64 / 1048576.0,
            m.bytes_per_prefix,
            largest.join(", ")
        );
    }
    out
}

/// Issue 16's flood and memory targets. Each flood target is judged on the median over
/// the runs; the range is in the measured text.
pub fn targets(f: &Flood) -> Vec<Target> {
    let mut out = Vec::new();
    let xdp_filter = |family: u8| {
        f.rows.iter().find(|r| {
            r.family == family
                && r.list == "exact"
                && r.prefixes == 9_000
                && r.contender == "xdp-filter"
        })
    };
    for r in f.rows.iter().filter(|r| r.contender == "borderfilter") {
        let l = label(r);
        if let Some(x) = xdp_filter(r.family) {
            out.push(Target {
                what: format!(
                    "veth flood, {l}: extra cost at most xdp-filter's on exact 9000 (issue 16)"
                ),
                measured: format!(
                    "{} ns vs {} ns",
                    range(&r.extra_ns, 1.0, 1),
                    range(&x.extra_ns, 1.0, 1)
                ),
                met: r.extra_ns.median <= x.extra_ns.median,
            });
        }
        if let Some(v) = &r.vs_nftables {
            out.push(Target {
                what: format!("veth flood, {l}: extra cost at most 1/5 of nftables' (issue 16)"),
                measured: format!("{}x", range(v, 1.0, 3)),
                met: v.median <= 0.2,
            });
        }
        out.push(Target {
            what: format!("veth flood, {l}: rate at least 75% of the ceiling (issue 16)"),
            measured: format!("{}%", range(&r.of_ceiling, 100.0, 0)),
            met: r.of_ceiling.median >= 0.75,
        });
    }
    for m in &f.memory {
        let l = format!("IPv{} {} {}", m.family, m.list, m.prefixes);
        if m.family == 4 && m.list == "spread" && m.prefixes == 1_000_000 {
            out.push(Target {
                what: format!("kernel map memory, {l}: at most 100 bytes per prefix (issue 16)"),
                measured: format!(
                    "{:.0} bytes per prefix ({:.1} MiB)",
                    m.bytes_per_prefix,
                    m.bytes as f64 / 1048576.0
                ),
                met: m.bytes_per_prefix <= 100.0,
            });
        }
        if m.prefixes <= 1_000 {
            out.push(Target {
                what: format!("kernel map memory, {l}: under 4 MiB in all (issue 16)"),
                measured: format!("{:.1} MiB", m.bytes as f64 / 1048576.0),
                met: m.bytes < 4 << 20,
            });
        }
    }
    out
}
