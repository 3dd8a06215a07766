//! `run`'s options for orders that name domains.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use crate::{
    daemon::names::{book::Timers, resolver::ResolverConfigArgs, NamesConfig},
    paths,
};

#[derive(Debug, Args)]
#[command(next_help_heading = "Orders that name domains")]
pub struct NamesArgs {
    /// DNS resolver to ask for the names in orders, as IP or IP:PORT (repeat for
    /// several; they are tried in turn). Default: the servers of /etc/resolv.conf.
    #[arg(long = "resolver", value_name = "ADDR", value_parser = parse_resolver)]
    pub resolvers: Vec<SocketAddr>,
    /// A name is resolved again when its TTL runs out, but not sooner than this many
    /// seconds; a failed resolution is retried after it too.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dns_min_ttl: u64,
    /// A name is resolved again at the latest after this many seconds, whatever its TTL.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub dns_max_ttl: u64,
    /// Seconds an address a name no longer returns stays blocked (clients and resolvers
    /// cache answers): then it is released.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    pub dns_grace: u64,
    /// Seconds to wait for a resolver's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub dns_timeout: u64,
    /// File of shared-hosting ranges (CDNs, large hosters: one address, thousands of
    /// sites), one prefix per line with an optional label, # for comments. An address a
    /// name resolves to inside one is not blocked (and is reported) unless the order says
    /// "allow_shared": true. Read at start and again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub shared_ranges: Option<PathBuf>,
    /// Where the addresses names resolved to are kept, so that a restart while DNS is
    /// down enforces them.
    #[arg(long, value_name = "PATH", default_value = paths::NAMES_STATE)]
    pub names_state: PathBuf,
}

impl NamesArgs {
    pub fn config(&self) -> anyhow::Result<NamesConfig> {
        if self.dns_min_ttl > self.dns_max_ttl {
            anyhow::bail!(
                "--dns-min-ttl {} is above --dns-max-ttl {}",
                self.dns_min_ttl,
                self.dns_max_ttl
            );
        }
        Ok(NamesConfig {
            resolver: ResolverConfigArgs {
                servers: (!self.resolvers.is_empty()).then(|| self.resolvers.clone()),
                timeout: Duration::from_secs(self.dns_timeout),
            },
            timers: Timers {
                min_ttl: Duration::from_secs(self.dns_min_ttl),
                max_ttl: Duration::from_secs(self.dns_max_ttl),
                grace: Duration::from_secs(self.dns_grace),
            },
            shared_ranges: self.shared_ranges.clone(),
            state: self.names_state.clone(),
        })
    }
}

/// `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353`.
fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!("{text:?} is not an address like 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53")
    })
}
