//! Asking DNS: a name's A and AAAA records through the configured resolvers
//! (hickory-resolver, a stub resolver; no cache of its own, so that every resolution is
//! a fresh question and the TTL clamps are ours).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
    net::{runtime::TokioRuntimeProvider, DnsError, NetError},
    proto::{
        op::ResponseCode,
        rr::{RData, RecordType},
    },
    TokioResolver,
};

use super::book::Answer;
use crate::orders::DomainName;

/// Where to ask, and how long to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfigArgs {
    /// `None`: the system's (`/etc/resolv.conf`).
    pub servers: Option<Vec<SocketAddr>>,
    pub timeout: Duration,
}

pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    pub fn new(args: &ResolverConfigArgs) -> anyhow::Result<Self> {
        let (config, mut opts) = match &args.servers {
            Some(servers) => {
                let name_servers = servers
                    .iter()
                    .map(|s| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = s.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = s.port();
                        NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                (
                    ResolverConfig::from_name_servers(name_servers),
                    ResolverOpts::default(),
                )
            }
            None => hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                anyhow::anyhow!(
                    "reading /etc/resolv.conf for the names in orders: {e}; give --resolver ADDR"
                )
            })?,
        };
        opts.timeout = args.timeout;
        opts.attempts = 1;
        // Names in orders are whole names: never tried under a search domain, never taken
        // from /etc/hosts.
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        // No cache: each resolution asks, so a TTL longer than --dns-max-ttl is never
        // served from memory.
        opts.cache_size = 0;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = opts;
        let inner = builder
            .build()
            .map_err(|e| anyhow::anyhow!("setting up the resolver: {e}"))?;
        Ok(Self { inner })
    }

    /// Resolves `name`'s A and AAAA records.
    pub async fn resolve(&self, name: &DomainName) -> Answer {
        // Fully qualified: no search list.
        let fqdn = format!("{name}.");
        let (v4, v6) = tokio::join!(
            self.family(&fqdn, RecordType::A),
            self.family(&fqdn, RecordType::AAAA)
        );
        let ttl = [&v4, &v6]
            .into_iter()
            .filter_map(|r| r.as_ref().ok().and_then(|(_, ttl)| *ttl))
            .min();
        Answer {
            v4: v4.map(|(a, _)| a),
            v6: v6.map(|(a, _)| a),
            ttl,
        }
    }

    /// One family's addresses and the smallest TTL along the answer (CNAMEs included).
    async fn family(
        &self,
        fqdn: &str,
        rtype: RecordType,
    ) -> Result<(Vec<IpAddr>, Option<u32>), String> {
        let lookup = match rtype {
            RecordType::A => self.inner.ipv4_lookup(fqdn).await,
            _ => self.inner.ipv6_lookup(fqdn).await,
        };
        match lookup {
            Ok(lookup) => {
                let addrs: Vec<IpAddr> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    })
                    .collect();
                let ttl = lookup.answers().iter().map(|r| r.ttl).min();
                Ok((addrs, ttl))
            }
            // A CNAME chain that loops (or is longer than the resolver follows) ends
            // without an answer and without the SOA a real "no records" answer carries.
            Err(NetError::Dns(DnsError::NoRecordsFound(nr)))
                if nr.response_code == ResponseCode::NoError && nr.soa.is_none() =>
            {
                Err(
                    "no address at the end of the CNAME chain: it loops, or is longer than 8 names"
                        .into(),
                )
            }
            // The name exists without records of this type: an empty answer, not a failure.
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Ok((Vec::new(), None)),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// A failure as an operator reads it.
fn describe(e: &NetError) -> String {
    if e.is_nx_domain() {
        return "NXDOMAIN: the name does not exist".into();
    }
    match e {
        NetError::Timeout => "no answer from the resolvers (timed out)".into(),
        NetError::Dns(DnsError::ResponseCode(code)) => format!("the resolver answered {code}"),
        other => other.to_string(),
    }
}
