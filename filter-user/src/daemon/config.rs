//! The daemon's settings, as `borderfilter run` takes them.

use std::{net::SocketAddr, path::PathBuf};

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
}
