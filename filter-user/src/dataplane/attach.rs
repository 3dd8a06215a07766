//! Attaching the program to interfaces, finding where it is attached, and detaching.
//!
//! Attachments are made through netlink (see `netlink`): they belong to the interface
//! and outlive the daemon. An interface runs "our" program when its XDP program uses the
//! maps of our pin directory; re-attaching to such an interface replaces the program
//! atomically (the kernel swaps it between two packets), so restarts and upgrades never
//! leave an instant without a filter. An interface running someone else's XDP program is
//! left alone: replacing it could take down whatever it does.

use std::{collections::HashSet, fmt, os::fd::AsFd, path::Path, str::FromStr};

use aya::{
    maps::MapInfo,
    programs::{loaded_programs, ProgramInfo},
};

use super::{
    netlink::{
        self, Attached, LinkXdp, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE,
        XDP_FLAGS_UPDATE_IF_NOEXIST,
    },
    Dataplane, DataplaneError,
};

/// How to attach to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native if the driver supports it, else generic (with a warning).
    #[default]
    Auto,
    /// In the driver: fastest; fails if the driver has no XDP support.
    Native,
    /// In the kernel's generic receive path: works everywhere, slower.
    Generic,
}

impl AttachMode {
    pub const fn name(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }

    fn flags(self) -> u32 {
        match self {
            AttachMode::Native => XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => XDP_FLAGS_SKB_MODE,
            AttachMode::Auto => 0,
        }
    }

    fn of(attached: Attached) -> Self {
        match attached {
            Attached::Generic => AttachMode::Generic,
            // Hardware offload and mixed modes are reported as native: the program runs
            // before the kernel's stack either way.
            Attached::Driver | Attached::Hardware | Attached::Multi => AttachMode::Native,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AttachMode::Auto),
            "native" => Ok(AttachMode::Native),
            "generic" => Ok(AttachMode::Generic),
            other => Err(format!(
                "unknown XDP mode {other:?}: use auto, native or generic"
            )),
        }
    }
}

/// An interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    pub iface: String,
    /// The mode it is actually attached in (never `Auto`).
    pub mode: AttachMode,
    /// True when our program was already there (and has been replaced by this one).
    pub reused: bool,
}

/// The interface index of `iface`, or `None` when there is no such interface.
pub fn ifindex(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

fn program_info(id: u32) -> Option<ProgramInfo> {
    loaded_programs().flatten().find(|p| p.id() == id)
}

/// Whether program `id` uses any of `map_ids` (i.e. is one of ours).
fn uses_maps(id: u32, map_ids: &HashSet<u32>) -> bool {
    program_info(id)
        .and_then(|p| p.map_ids().ok().flatten())
        .is_some_and(|ids| ids.iter().any(|m| map_ids.contains(m)))
}

fn netlink_error(op: &'static str, iface: &str, source: std::io::Error) -> DataplaneError {
    DataplaneError::Netlink {
        op,
        iface: iface.to_string(),
        source,
    }
}

/// The interfaces whose XDP program uses the maps pinned in `pin_dir`.
pub fn pinned_attachments(pin_dir: &Path) -> Vec<Attachment> {
    let map_ids: HashSet<u32> = super::object::SHAPES
        .iter()
        .filter_map(|s| MapInfo::from_pin(pin_dir.join(s.name)).ok().map(|i| i.id()))
        .collect();
    attachments_using(&map_ids)
}

fn attachments_using(map_ids: &HashSet<u32>) -> Vec<Attachment> {
    if map_ids.is_empty() {
        return Vec::new();
    }
    netlink::links()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| {
            let (id, attached) = l.prog?;
            uses_maps(id, map_ids).then(|| Attachment {
                iface: l.name,
                mode: AttachMode::of(attached),
                reused: true,
            })
        })
        .collect()
}

impl Dataplane {
    fn map_ids(&self) -> HashSet<u32> {
        self.maps().ids()
    }

    /// The interfaces running this data plane's program (or an older one on its maps).
    pub fn attachments(&self) -> Vec<Attachment> {
        attachments_using(&self.map_ids())
    }

    /// Attaches the program to `iface`. An interface already running our program gets
    /// this one in its place, atomically, in the mode it is in; one running a foreign
    /// XDP program is refused.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Attachment, DataplaneError> {
        let Some(index) = ifindex(iface) else {
            return Err(DataplaneError::NoSuchInterface {
                iface: iface.to_string(),
            });
        };
        let link: Option<LinkXdp> = netlink::links()
            .map_err(|e| netlink_error("listing interfaces for", iface, e))?
            .into_iter()
            .find(|l| l.index == index);
        let program_fd = self
            .program()?
            .fd()
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_string(),
                mode,
                source: Box::new(source),
            })?;
        let new = program_fd.as_fd();
        if let Some((id, attached)) = link.and_then(|l| l.prog) {
            if !uses_maps(id, &self.map_ids()) {
                let name = program_info(id)
                    .and_then(|p| p.name_as_str().map(str::to_string))
                    .unwrap_or_default();
                return Err(DataplaneError::ForeignProgram {
                    iface: iface.to_string(),
                    id,
                    name,
                });
            }
            let current = AttachMode::of(attached);
            let old = program_info(id).and_then(|p| p.fd().ok()).ok_or_else(|| {
                netlink_error(
                    "finding the program attached to",
                    iface,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })?;
            netlink::set_xdp(index, Some(new), current.flags(), Some(old.as_fd()))
                .map_err(|e| netlink_error("replacing the program on", iface, e))?;
            if mode != AttachMode::Auto && mode != current {
                log::warn!(
                    "{iface} stays in {current} mode (the program was replaced in place so that \
                     enforcement never pauses); run `borderfilter detach` and start again to switch \
                     it to {mode} mode"
                );
            }
            return Ok(Attachment {
                iface: iface.to_string(),
                mode: current,
                reused: true,
            });
        }
        let attach = |m: AttachMode| {
            netlink::set_xdp(
                index,
                Some(new),
                m.flags() | XDP_FLAGS_UPDATE_IF_NOEXIST,
                None,
            )
            .map_err(|e| {
                netlink_error(
                    if m == AttachMode::Native {
                        "attaching in native mode to"
                    } else {
                        "attaching in generic mode to"
                    },
                    iface,
                    e,
                )
            })
        };
        let actual = match mode {
            AttachMode::Auto => match attach(AttachMode::Native) {
                Ok(()) => AttachMode::Native,
                Err(e) => {
                    log::warn!(
                        "{iface}: {}; falling back to generic mode, which is slower",
                        crate::error_chain(&e)
                    );
                    attach(AttachMode::Generic)?;
                    AttachMode::Generic
                }
            },
            m => {
                attach(m)?;
                m
            }
        };
        if self.pin_dir().is_none() {
            self.owned_attachments.push((index, actual));
        }
        Ok(Attachment {
            iface: iface.to_string(),
            mode: actual,
            reused: false,
        })
    }

    /// Removes the attachments made by an unpinned data plane (tests, benchmarks).
    pub(super) fn detach_owned(&mut self) {
        for (index, mode) in std::mem::take(&mut self.owned_attachments) {
            let _ = netlink::set_xdp(index, None, mode.flags(), None);
        }
    }
}

/// Removes the program from every interface running it on the maps pinned in `pin_dir`,
/// then removes the pins. Returns the interfaces it detached from.
pub fn detach_pinned(pin_dir: &Path) -> Result<Vec<String>, DataplaneError> {
    let mut detached = Vec::new();
    for a in pinned_attachments(pin_dir) {
        let index = ifindex(&a.iface).ok_or_else(|| DataplaneError::NoSuchInterface {
            iface: a.iface.clone(),
        })?;
        netlink::set_xdp(index, None, a.mode.flags(), None)
            .map_err(|e| netlink_error("detaching from", &a.iface, e))?;
        detached.push(a.iface);
    }
    for shape in &super::object::SHAPES {
        let path = pin_dir.join(shape.name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DataplaneError::PinIo {
                    op: "removing",
                    path,
                    source,
                })
            }
        }
    }
    // Leave the directory if something else lives there.
    let _ = std::fs::remove_dir(pin_dir);
    Ok(detached)
}
