//! The checks for orders that name domains: the resolvers, the shared-ranges file, the
//! timers and the state file, as `run` would read them.

use super::Report;
use crate::{
    cli::RunArgs,
    daemon::names::{guard, store},
};

pub(super) fn check_names(run: &RunArgs, report: &mut Report) {
    let names = &run.names;
    if let Err(e) = names.config() {
        report.fail(
            "names",
            e.to_string(),
            "make --dns-min-ttl at most --dns-max-ttl",
        );
        return;
    }
    let resolvers = if names.resolvers.is_empty() {
        match hickory_resolver::system_conf::read_system_conf() {
            Ok((config, _)) if !config.name_servers().is_empty() => format!(
                "resolvers from /etc/resolv.conf: {}",
                config
                    .name_servers()
                    .iter()
                    .map(|s| s.ip.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ok(_) | Err(_) => {
                report.warn(
                    "names",
                    "no --resolver given and /etc/resolv.conf names no usable server: orders that name domains would keep only their last known addresses".into(),
                    "give --resolver ADDR (your recursive resolvers)",
                );
                return;
            }
        }
    } else {
        format!(
            "resolvers {}",
            names
                .resolvers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let shared = match &names.shared_ranges {
        Some(path) => match guard::read_shared_ranges(path) {
            Ok(ranges) => format!("; {} shared-hosting range(s)", ranges.len()),
            Err(e) => {
                report.fail(
                    "names",
                    e.to_string(),
                    "correct the file: one prefix per line, an optional label, # for comments",
                );
                return;
            }
        },
        None => {
            "; no --shared-ranges (every address a name gives is blocked unless protected)".into()
        }
    };
    if let Err(e) = store::load(&names.names_state) {
        report.fail(
            "names",
            e.to_string(),
            "move the file aside (the names are then resolved again)",
        );
        return;
    }
    report.pass("names", format!("{resolvers}{shared}"));
}
