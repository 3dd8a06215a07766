//! Keeping the data plane's redirect target (the port and MAC addresses towards the
//! block-notice host) equal to what the configuration resolves to now.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use super::config::{format_mac, RedirectConfig, RedirectTo};
use crate::dataplane::{ifindex, netlink, Maps};

/// The target as the data plane uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// What the data plane holds, and why not when it holds nothing.
#[derive(Clone, Debug, Default)]
pub struct RedirectState {
    pub resolved: Option<Resolved>,
    pub problem: Option<String>,
}

fn resolve(config: &RedirectConfig) -> Result<Resolved, String> {
    let index = ifindex(&config.iface)
        .ok_or_else(|| format!("interface {} does not exist", config.iface))?;
    let links = netlink::links().map_err(|e| format!("listing interfaces: {e}"))?;
    let src_mac = links
        .iter()
        .find(|l| l.index == index)
        .and_then(|l| l.mac)
        .ok_or_else(|| format!("interface {} has no MAC address", config.iface))?;
    let dst_mac = match config.to {
        RedirectTo::Mac(mac) => mac,
        RedirectTo::Neighbor(ip) => {
            match netlink::neighbour(ip).map_err(|e| format!("reading the neighbour table: {e}"))? {
                Some((_, mac)) => mac,
                None => {
                    poke(ip);
                    return Err(format!(
                        "neighbour {ip} is not resolved yet (no usable ARP/ND entry)"
                    ));
                }
            }
        }
    };
    Ok(Resolved {
        ifindex: index,
        dst_mac,
        src_mac,
    })
}

/// Sends one datagram to `ip`, which makes the kernel resolve its link-layer address.
fn poke(ip: IpAddr) {
    let local: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("valid");
    if let Ok(s) = UdpSocket::bind(local) {
        // Port 9 (discard): nothing listens, the neighbour entry is what we want.
        let _ = s.send_to(b"", SocketAddr::new(ip, 9));
    }
}

impl RedirectState {
    /// Brings the data plane in line with `config` (nothing configured: no target).
    pub fn refresh(&mut self, config: Option<&RedirectConfig>, maps: &mut Maps) {
        let wanted = match config {
            None => Err("no redirect target is configured".to_string()),
            Some(c) => resolve(c),
        };
        match wanted {
            Ok(r) if self.resolved == Some(r) => {}
            Ok(r) => match maps.set_redirect(r.ifindex, r.dst_mac, r.src_mac) {
                Ok(()) => {
                    log::info!(
                        "redirecting to {} via {} (ifindex {})",
                        format_mac(&r.dst_mac),
                        config.map_or("", |c| c.iface.as_str()),
                        r.ifindex
                    );
                    self.resolved = Some(r);
                    self.problem = None;
                }
                Err(e) => self.fail(crate::error_chain(&e), config.is_some(), maps),
            },
            Err(why) => self.fail(why, config.is_some(), maps),
        }
    }

    fn fail(&mut self, why: String, configured: bool, maps: &mut Maps) {
        let changed = self.resolved.is_some() || self.problem.as_deref() != Some(why.as_str());
        if changed {
            if let Err(e) = maps.clear_redirect() {
                log::error!("clearing the redirect target: {}", crate::error_chain(&e));
            }
            if configured {
                log::warn!("redirect orders drop their packets until this is fixed: {why}");
            }
        }
        self.resolved = None;
        self.problem = Some(why);
    }
}
