//! The daemon's settings, as `borderfilter run` takes them.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use crate::{dataplane::AttachMode, prefix::Prefix};

#[derive(Clone, Debug)]
pub struct Config {
    pub ifaces: Vec<String>,
    pub orders: PathBuf,
    pub socket: PathBuf,
    pub pin_dir: PathBuf,
    pub xdp_mode: AttachMode,
    pub protect: Vec<Prefix>,
    pub metrics: Option<SocketAddr>,
    pub capacity_v4: u32,
    pub capacity_v6: u32,
    pub max_list_bytes: u64,
    /// Let any local user run read-only commands (socket mode 0666).
    pub public_read: bool,
    pub audit_log: PathBuf,
    /// Where packets of redirect orders go; `None`: redirect orders are refused.
    pub redirect: Option<RedirectConfig>,
    /// Follow the fleet's list in etcd instead of `orders`.
    pub fleet: Option<super::source::etcd::FleetConfig>,
    /// Resolving the names in orders.
    pub names: super::names::NamesConfig,
}

/// The way to the block-notice host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectConfig {
    /// The interface that leads to the notice host. It must not be filtered itself
    /// (the notice host answers from blocked addresses).
    pub iface: String,
    pub to: RedirectTo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectTo {
    /// The notice host's MAC address, given.
    Mac([u8; 6]),
    /// The notice host's IP address, resolved from the kernel's neighbour table (and
    /// re-resolved when it changes).
    Neighbor(IpAddr),
}

/// Parses `02:00:5e:10:00:01`.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let bytes: Option<Vec<u8>> = parts
        .iter()
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect();
    match bytes {
        Some(b) if b.len() == 6 => Ok(b.try_into().expect("six bytes")),
        _ => Err(format!(
            "{text:?} is not a MAC address like 02:00:5e:10:00:01"
        )),
    }
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
