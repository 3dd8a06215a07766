//! What can go wrong between user space and the program in the kernel.

use std::path::PathBuf;

use aya::{maps::MapError, programs::ProgramError, EbpfError};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP object failed (are you root, with CAP_BPF and CAP_NET_ADMIN?)")]
    Load(#[source] Box<EbpfError>),
    #[error("the kernel verifier rejected the XDP program")]
    Verifier {
        #[source]
        source: Box<ProgramError>,
    },
    #[error("the object has no XDP program named {}", super::PROGRAM_NAME)]
    MissingProgram,
    #[error("the object has no map {name}, or it has an unexpected type")]
    MissingMap {
        name: &'static str,
        #[source]
        source: Option<Box<MapError>>,
    },
    #[error(transparent)]
    NotBpffs(#[from] super::NotBpffs),
    #[error("cannot create the pin directory {path} (is bpffs mounted there?)")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the pinned object {path}")]
    OpenPin {
        path: PathBuf,
        #[source]
        source: Box<MapError>,
    },
    #[error(
        "the map pinned at {path} has {what} {found}, this build needs {expected}; \
         run `borderfilter detach` with the same --pin-dir to replace it \
         (enforcement stops until the filter is started again)"
    )]
    PinnedMismatch {
        path: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
    },
    #[error("{op} {what} in map {map} failed")]
    Map {
        op: &'static str,
        map: &'static str,
        what: String,
        #[source]
        source: Box<MapError>,
    },
    #[error("interface {ifindex} cannot take redirected frames (its driver has no XDP transmit)")]
    RedirectPort {
        ifindex: u32,
        #[source]
        source: Box<aya::maps::xdp::XdpMapError>,
    },
    #[error("map {map} is full ({capacity} entries): cannot add {what}")]
    MapFull {
        map: &'static str,
        capacity: u32,
        what: String,
    },
    #[error("attaching to interface {iface} in {mode} mode failed")]
    Attach {
        iface: String,
        mode: super::AttachMode,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("interface {iface} does not exist")]
    NoSuchInterface { iface: String },
    #[error("{op} {iface} failed")]
    Netlink {
        op: &'static str,
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{iface} already runs another XDP program ({name:?}, id {id}); borderfilter will not \
         replace it. Remove it first (`ip link set dev {iface} xdp off`) if it is not needed"
    )]
    ForeignProgram {
        iface: String,
        id: u32,
        name: String,
    },
    #[error("{op} {path} failed")]
    PinIo {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running the program on a test frame failed")]
    TestRun {
        #[source]
        source: Box<ProgramError>,
    },
}
