//! `borderfilter doctor`: checks that this host can run the daemon with the given options
//! (or those in /etc/default/borderfilter, as the systemd unit passes them), one line per
//! check, each failure with its fix. It changes nothing.
//!
//! - `defaults`: the options as the unit gives them;
//! - `host`: kernel, BTF, bpffs, memlock, capabilities;
//! - `network`: interfaces, the order list, the control socket, the metrics address;
//! - `netdev`: what a driver can do (driver name, XDP features);
//! - `names`: the resolvers, shared ranges, timers and state file of orders that name domains.

mod defaults;
mod host;
mod names;
mod netdev;
mod network;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{DoctorArgs, RunArgs, EXIT_REFUSED};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, check: &str, status: Status, detail: String, fix: Option<String>) {
        self.0.push(Check {
            check: check.to_string(),
            status,
            detail,
            fix,
        });
    }
    fn pass(&mut self, check: &str, detail: String) {
        self.add(check, Status::Pass, detail, None);
    }
    fn warn(&mut self, check: &str, detail: String, fix: impl Into<String>) {
        self.add(check, Status::Warn, detail, Some(fix.into()));
    }
    fn fail(&mut self, check: &str, detail: String, fix: impl Into<String>) {
        self.add(check, Status::Fail, detail, Some(fix.into()));
    }
    fn count(&self, status: Status) -> usize {
        self.0.iter().filter(|c| c.status == status).count()
    }
}

pub fn doctor(args: DoctorArgs, socket: PathBuf, json: bool) -> anyhow::Result<i32> {
    let mut report = Report::default();
    let source;
    let options = match &args.defaults {
        None => {
            source = "the command line".to_string();
            Some((args.run, socket))
        }
        Some(path) => {
            source = path.display().to_string();
            defaults::options_from_file(path, socket, &mut report)
        }
    };
    if let Some((run, socket)) = &options {
        checks(run, socket, &mut report);
    }
    let failed = report.count(Status::Fail);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": failed == 0,
                "options_from": source,
                "checks": report.0,
            }))?
        );
    } else {
        print!("{}", render(&report, &source));
    }
    Ok(if failed == 0 { 0 } else { EXIT_REFUSED })
}

fn render(report: &Report, source: &str) -> String {
    let width = report.0.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = format!("borderfilter doctor: options from {source}\n");
    for c in &report.0 {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        out += &format!("{tag}  {:width$}  {}\n", c.check, c.detail);
        if let Some(fix) = &c.fix {
            out += &format!("      {:width$}  fix: {fix}\n", "");
        }
    }
    out += &format!(
        "{} checks: {} passed, {} warning(s), {} failed\n",
        report.0.len(),
        report.count(Status::Pass),
        report.count(Status::Warn),
        report.count(Status::Fail)
    );
    out
}

fn checks(run: &RunArgs, socket: &Path, report: &mut Report) {
    let kernel = host::kernel_version();
    host::check_kernel(kernel.as_ref(), report);
    host::check_btf(report);
    host::check_bpffs(&run.pin_dir, report);
    host::check_memlock(kernel.as_ref(), report);
    host::check_capabilities(report);
    network::check_interfaces(run, report);
    network::check_orders(run, report);
    names::check_names(run, report);
    network::check_socket(socket, &run.pin_dir, report);
    network::check_metrics(run, report);
}
