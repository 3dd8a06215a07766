//! Attaching the program to interfaces, and the pinned links that keep it attached when
//! the process that attached it is gone.
//!
//! A pinned link is named `link.<mode>.<iface>` in the pin directory, so that a restarted
//! daemon (or `status`) knows in which mode each interface was attached. Re-attaching to an
//! interface that already has a pinned link replaces the program on that link atomically
//! (`bpf_link_update`): there is no instant without a filter.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
    XdpMode,
};

use super::{Dataplane, DataplaneError};

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

    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
            AttachMode::Auto => XdpMode::Default,
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
    /// True when an existing pinned link was kept (and its program replaced).
    pub reused: bool,
}

const LINK_PREFIX: &str = "link.";

fn link_pin_name(mode: AttachMode, iface: &str) -> String {
    format!("{LINK_PREFIX}{}.{iface}", mode.name())
}

/// The attachments pinned in `pin_dir`, read from the pin names.
pub fn pinned_attachments(pin_dir: &Path) -> Vec<(Attachment, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(pin_dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(LINK_PREFIX)?;
            let (mode, iface) = rest.split_once('.')?;
            let mode = mode.parse().ok()?;
            Some((
                Attachment {
                    iface: iface.to_string(),
                    mode,
                    reused: true,
                },
                e.path(),
            ))
        })
        .collect();
    out.sort_by(|a, b| a.0.iface.cmp(&b.0.iface));
    out
}

impl Dataplane {
    /// Attaches the program to `iface`. With a pin directory the link is pinned, so the
    /// program stays attached after this process exits; an interface that already has a
    /// pinned link keeps it and gets this program atomically.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Attachment, DataplaneError> {
        if ifindex(iface).is_none() {
            return Err(DataplaneError::NoSuchInterface {
                iface: iface.to_string(),
            });
        }
        if let Some(pin_dir) = self.pin_dir().map(Path::to_path_buf) {
            if let Some((existing, path)) = pinned_attachments(&pin_dir)
                .into_iter()
                .find(|(a, _)| a.iface == iface)
            {
                self.replace_on_link(&path)?;
                if mode != AttachMode::Auto && mode != existing.mode {
                    log::warn!(
                        "{iface} stays attached in {} mode (its pinned link is kept so \
                         that enforcement never pauses); run `borderfilter detach` and \
                         start again to switch it to {mode} mode",
                        existing.mode
                    );
                }
                return Ok(existing);
            }
        }
        let actual = self.attach_new(iface, mode)?;
        if let Some(pin_dir) = self.pin_dir().map(Path::to_path_buf) {
            let path = pin_dir.join(link_pin_name(actual.1, iface));
            let program = self.program_mut()?;
            let link = program
                .take_link(actual.0)
                .map_err(|source| DataplaneError::Attach {
                    iface: iface.to_string(),
                    mode: actual.1,
                    source: Box::new(source),
                })?;
            let fd_link = FdLink::try_from(link).map_err(|source| DataplaneError::Link {
                op: "converting",
                path: path.clone(),
                source: Box::new(source),
            })?;
            fd_link.pin(&path).map_err(|e| DataplaneError::PinIo {
                op: "pinning the link at",
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
        }
        Ok(Attachment {
            iface: iface.to_string(),
            mode: actual.1,
            reused: false,
        })
    }

    fn attach_new(
        &mut self,
        iface: &str,
        mode: AttachMode,
    ) -> Result<(aya::programs::xdp::XdpLinkId, AttachMode), DataplaneError> {
        let program = self.program_mut()?;
        let attempt = |program: &mut aya::programs::Xdp, m: AttachMode| {
            program
                .attach(iface, m.xdp_mode())
                .map_err(|source| DataplaneError::Attach {
                    iface: iface.to_string(),
                    mode: m,
                    source: Box::new(source),
                })
        };
        match mode {
            AttachMode::Auto => match attempt(program, AttachMode::Native) {
                Ok(id) => Ok((id, AttachMode::Native)),
                Err(native_error) => {
                    log::warn!(
                        "{iface}: native XDP failed ({}); falling back to generic mode, \
                         which is slower",
                        crate::error_chain(&native_error)
                    );
                    attempt(program, AttachMode::Generic).map(|id| (id, AttachMode::Generic))
                }
            },
            m => attempt(program, m).map(|id| (id, m)),
        }
    }

    /// Puts this program on the link pinned at `path`, atomically replacing the old one.
    fn replace_on_link(&mut self, path: &Path) -> Result<(), DataplaneError> {
        let pinned = PinnedLink::from_pin(path).map_err(|source| DataplaneError::Link {
            op: "opening",
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let link =
            XdpLink::try_from(FdLink::from(pinned)).map_err(|source| DataplaneError::Link {
                op: "reading",
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        let replace_error = |source| DataplaneError::ReplaceProgram {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let program = self.program_mut()?;
        let id = program.attach_to_link(link).map_err(replace_error)?;
        // Our handle is closed here; the pin keeps the link, and so the attachment.
        drop(program.take_link(id).map_err(replace_error)?);
        Ok(())
    }
}

/// Removes the program from every interface pinned in `pin_dir` and removes the pins
/// (maps included). Returns the interfaces it detached from.
pub fn detach_pinned(pin_dir: &Path) -> Result<Vec<String>, DataplaneError> {
    let mut detached = Vec::new();
    for (attachment, path) in pinned_attachments(pin_dir) {
        std::fs::remove_file(&path).map_err(|source| DataplaneError::PinIo {
            op: "removing",
            path: path.clone(),
            source,
        })?;
        detached.push(attachment.iface);
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

/// The interface index of `iface`, or `None` when there is no such interface.
pub fn ifindex(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}
