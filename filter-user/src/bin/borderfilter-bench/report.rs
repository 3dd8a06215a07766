//! The benchmark report: a table for people and `report.json` with every figure, the
//! machine and the date, and the targets of the fast-path issue checked against them.

use serde::Serialize;

use crate::{classify, fleet, floodlists, scrape, shaped, sync, target::Target, throughput};

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub quick: bool,
    pub machine: Machine,
    pub classification: Vec<classify::Row>,
    /// Classification on lists shaped like real ones and the worst case (issue 16).
    pub shaped: Vec<shaped::Row>,
    pub throughput: Vec<throughput::Row>,
    /// The veth flood and map memory on the shaped lists (issue 16); `None` when the run
    /// left it out (`--only`).
    pub flood: Option<floodlists::Flood>,
    /// `None` when the run left the sync benchmarks out (`--only`).
    pub sync: Option<sync::Sync>,
    /// `None` when the run left the scrape out (`--only`).
    pub scrape: Option<scrape::Scrape>,
    /// `None` when the run left the fleet out (`--only`).
    pub fleet: Option<fleet::FleetBench>,
    pub targets: Vec<Target>,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    Machine { cpu, cpus, kernel }
}

impl Report {
    pub fn new(quick: bool) -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self {
            date: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            quick,
            machine: machine(),
            classification: Vec::new(),
            shaped: Vec::new(),
            throughput: Vec::new(),
            flood: None,
            sync: None,
            scrape: None,
            fleet: None,
            targets: Vec::new(),
        }
    }

    /// Checks the targets of the fast-path issue against the figures.
    pub fn evaluate(&mut self) {
        let class = |stream: &str| {
            self.classification
                .iter()
                .find(|r| r.family == 4 && r.prefixes == 1_000_000 && r.stream == stream)
        };
        if let Some(r) = class("uniform") {
            self.targets.push(Target {
                what: "IPv4, 1,000,000 prefixes, not blocked (uniform stream): at most 1/5 of the LPM baseline".into(),
                measured: format!("{:.1} ns vs {:.1} ns: {:.3}x", r.filter_ns, r.baseline_ns, r.ratio),
                met: r.ratio <= 0.2,
            });
        }
        if let Some(r) = class("blocked") {
            self.targets.push(Target {
                what: "IPv4, 1,000,000 prefixes, blocked decision: no slower than the LPM baseline"
                    .into(),
                measured: format!(
                    "{:.1} ns vs {:.1} ns: {:.3}x",
                    r.filter_ns, r.baseline_ns, r.ratio
                ),
                met: r.ratio <= 1.0,
            });
        }
        self.evaluate_shaped();
        if let Some(f) = &self.flood {
            self.targets.extend(crate::floodreport::targets(f));
        }
        let thr = |c: &str| {
            self.throughput
                .iter()
                .find(|r| r.mix == "all blocked" && r.contender == c)
        };
        if let (Some(ceiling), Some(bf), Some(nft)) = (
            thr("ceiling (drop all)"),
            thr("borderfilter"),
            thr("nftables"),
        ) {
            self.targets.push(Target {
                what: "veth, 100,000 prefixes, all blocked: extra cost at most 1/3 of nftables'"
                    .into(),
                measured: format!("{:.1} ns vs {:.1} ns", bf.extra_ns, nft.extra_ns),
                met: bf.extra_ns <= nft.extra_ns / 3.0,
            });
            self.targets.push(Target {
                what: "veth, 100,000 prefixes, all blocked: rate at least 75% of the ceiling"
                    .into(),
                measured: format!(
                    "{:.2} of {:.2} Mpps: {:.0}%",
                    bf.mpps,
                    ceiling.mpps,
                    100.0 * bf.mpps / ceiling.mpps
                ),
                met: bf.mpps >= 0.75 * ceiling.mpps,
            });
        }
        if let Some(s) = &self.sync {
            self.targets.push(Target {
                what: "1,000,000 prefixes load in under 3 seconds".into(),
                measured: format!("{:.2} s", s.load_total_s),
                met: s.load_total_s < 3.0,
            });
            self.targets.push(Target {
                what: "a single CLI change is enforced within 100 ms at p99".into(),
                measured: format!(
                    "p99 {:.1} ms (median {:.1} ms)",
                    s.block_add_p99_ms, s.block_add_median_ms
                ),
                met: s.block_add_p99_ms <= 100.0,
            });
            self.targets.push(Target {
                what: "a single CLI change returns, durable, within 100 ms at p99".into(),
                measured: format!(
                    "p99 {:.1} ms (median {:.1} ms)",
                    s.block_add_cli_p99_ms, s.block_add_cli_median_ms
                ),
                met: s.block_add_cli_p99_ms <= 100.0,
            });
        }
        if let Some(s) = &self.scrape {
            self.targets.push(Target {
                what: format!(
                    "a /metrics scrape with {} orders in under 50 ms (issue 12)",
                    s.orders
                ),
                measured: format!("median {:.1} ms (max {:.1} ms)", s.median_ms, s.max_ms),
                met: s.median_ms < 50.0,
            });
        }
        if let Some(f) = &self.fleet {
            self.targets.push(Target {
                what: format!(
                    "a publish enforced by all {} routers within 1 s (issue 13)",
                    f.routers
                ),
                measured: format!(
                    "median {:.0} ms, p99 {:.0} ms over {} publishes",
                    f.median_ms, f.p99_ms, f.publishes
                ),
                met: f.p99_ms <= 1000.0,
            });
        }
    }

    /// Issue 16's classification targets, on the shaped lists.
    fn evaluate_shaped(&mut self) {
        let find = |list: &str, family: u8, n: usize| {
            self.shaped.iter().find(|r| {
                r.list == list && r.family == family && r.prefixes == n && r.stream == "blocked"
            })
        };
        let measured = |r: &shaped::Row| {
            format!(
                "{:.1} ns vs LPM trie {:.1} ns ({:.3}x), empty list {:.1} ns ({:.1}x)",
                r.filter_ns, r.lpm_ns, r.vs_lpm, r.empty_ns, r.vs_empty
            )
        };
        let mut targets = Vec::new();
        if let Some(r) = find("spread", 4, 1_000_000) {
            targets.push(Target {
                what: "IPv4 1,000,000 spread, blocked: at most 1/10 of the LPM trie (issue 16)"
                    .into(),
                measured: measured(r),
                met: r.vs_lpm <= 0.1,
            });
            targets.push(Target {
                what: "IPv4 1,000,000 spread, blocked: at most 3x the empty-list cost (issue 16)"
                    .into(),
                measured: measured(r),
                met: r.vs_empty <= 3.0,
            });
        }
        for list in ["spread", "crowded"] {
            if let Some(r) = find(list, 6, 100_000) {
                targets.push(Target {
                    what: format!(
                        "IPv6 100,000 {list}, blocked: at most 1/4 of the LPM trie (issue 16)"
                    ),
                    measured: measured(r),
                    met: r.vs_lpm <= 0.25,
                });
            }
        }
        self.targets.extend(targets);
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "\nborderfilter benchmarks, {} ({}), {} x {}, kernel {}\n\n",
            self.date,
            if self.quick { "quick" } else { "full" },
            self.machine.cpus,
            self.machine.cpu,
            self.machine.kernel
        );
        if !self.classification.is_empty() {
            out += "Classification cost per packet (ns, random addresses, minus drawing them)\n";
            out += "family  prefixes   stream    borderfilter  LPM trie  ratio\n";
            for r in &self.classification {
                out += &format!(
                    "IPv{}    {:>9}  {:<8}  {:>12.1}  {:>8.1}  {:>5.2}\n",
                    r.family, r.prefixes, r.stream, r.filter_ns, r.baseline_ns, r.ratio
                );
            }
        }
        if !self.shaped.is_empty() {
            out += "\nClassification on shaped lists, daemon's default capacities, 100 orders (ns per packet, addresses in 198.18.0.0/15 or 2001:db8::/33)\n";
            out += "family  list     prefixes  stream       borderfilter  LPM trie  empty list  vs LPM  vs empty  poptrie (candidate)  vs LPM     size\n";
            for r in &self.shaped {
                out += &format!(
                    "IPv{}    {:<7}  {:>8}  {:<11}  {:>12.1}  {:>8.1}  {:>10.1}  {:>6.2}  {:>8.1}  {:>19.1}  {:>6.2}  {:>5.1} MiB\n",
                    r.family, r.list, r.prefixes, r.stream, r.filter_ns, r.lpm_ns, r.empty_ns, r.vs_lpm, r.vs_empty,
                    r.poptrie_ns, r.poptrie_vs_lpm, r.poptrie_bytes as f64 / 1048576.0
                );
            }
        }
        if !self.throughput.is_empty() {
            out += "\nThroughput through a veth pair, 100,000 prefixes (Mpps; extra ns per frame over the ceiling)\n";
            out += "mix          contender            Mpps   extra ns\n";
            for r in &self.throughput {
                out += &format!(
                    "{:<12} {:<19} {:>6.2}   {:>8.1}\n",
                    r.mix, r.contender, r.mpps, r.extra_ns
                );
            }
        }
        if let Some(f) = &self.flood {
            out += &crate::floodreport::table(f);
        }
        if let Some(s) = &self.sync {
            out += &format!(
            "\nSync: 1,000,000 prefixes load in {:.2} s (check {:.2}, compile {:.2}, plan {:.2}, apply {:.2}); a 1% change in {:.2} s\n",
            s.load_total_s, s.load_check_s, s.load_compile_s, s.load_plan_s, s.load_apply_s, s.change_total_s
        );
            out += &format!(
            "      block add until enforced: median {:.1} ms, p99 {:.1} ms over {} tries; until the command returns (durable: journaled or written): median {:.1} ms, p99 {:.1} ms\n",
            s.block_add_median_ms, s.block_add_p99_ms, s.block_add_tries, s.block_add_cli_median_ms, s.block_add_cli_p99_ms
        );
            out += &format!(
                "Memory: {:.0} bytes of kernel map memory per prefix at 1,000,000 ({} MiB)\n",
                s.memory_bytes_per_prefix,
                s.memory_bytes >> 20
            );
        }
        if let Some(s) = &self.scrape {
            out += &format!(
                "Scrape: counters of {} orders read in {:.1} ms (median of {}, max {:.1}); `borderfilter stats` {:.1} ms\n",
                s.orders, s.median_ms, s.tries, s.max_ms, s.stats_median_ms
            );
        }
        if let Some(f) = &self.fleet {
            out += &format!(
                "Fleet: publish until the last of {} routers enforces: median {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} publishes (publish alone {:.0} ms)\n",
                f.routers, f.median_ms, f.p99_ms, f.max_ms, f.publishes, f.publish_median_ms
            );
        }
        out += "\nTargets\n";
        for t in &self.targets {
            out += &format!(
                "  [{}] {}: {}\n",
                if t.met { "met" } else { "MISSED" },
                t.what,
                t.measured
            );
        }
        out
    }
}
