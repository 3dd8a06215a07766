//! The XDP program in the kernel: loading it (reusing pinned maps), attaching it, and
//! typed access to its maps.
//!
//! - `bpffs`: whether the pin directory is on a bpf filesystem, checked before loading;
//! - `object`: the embedded program and the shape of every map it declares;
//! - `maps`: typed reads and writes (prefix entries, rules, counters);
//! - `attach`: attaching to interfaces (through netlink, so the attachment outlives the
//!   daemon without pinned links), finding our attachments, detaching;
//! - `model`: a plain-Rust model of the program's decision, for tests and `check`.

mod attach;
mod batch;
mod bpffs;
mod error;
mod fastmaps;
mod maps;
pub mod model;
pub mod netlink;
mod object;

use std::path::{Path, PathBuf};

use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use filter_common::maps as names;

pub use attach::{detach_pinned, ifindex, pinned_attachments, AttachMode, Attachment};
pub use bpffs::{check_pin_dir, NotBpffs};
pub use error::DataplaneError;
pub use fastmaps::{FastMaps, Hint};
pub use maps::{Maps, PrefixEntry};
pub use object::{MapShape, OBJECT, PROGRAM_NAME, SHAPES};

/// The XDP actions of the kernel ABI (`enum xdp_action` in `linux/bpf.h`), as
/// [`Dataplane::test_run`] returns them.
pub mod xdp_action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
}

/// How to load the program.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// bpffs directory for pins. `None`: nothing is pinned and everything goes away with
    /// this process (tests, benchmarks).
    pub pin_dir: Option<PathBuf>,
    /// Capacity of the IPv4 trie when it is created (an existing pinned map keeps its own).
    pub v4_capacity: u32,
    /// Capacity of the IPv6 trie when it is created.
    pub v6_capacity: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pin_dir: None,
            v4_capacity: names::DEFAULT_PREFIX_CAPACITY,
            v6_capacity: names::DEFAULT_PREFIX_CAPACITY,
        }
    }
}

/// The loaded program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    maps: Maps,
    pin_dir: Option<PathBuf>,
    /// True when the maps were already pinned (a restart), false when created now.
    reused: bool,
    /// Attachments an unpinned data plane made, removed when it is dropped.
    owned_attachments: Vec<(u32, AttachMode)>,
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach_owned();
    }
}

impl Dataplane {
    /// Loads the program through the verifier. With a pin directory, maps pinned there
    /// are reused (their contents keep enforcing) after checking that their shape is
    /// the one this build expects; missing ones are created and pinned. A pin directory
    /// that is not on a bpf filesystem is refused before anything is loaded or created.
    pub fn load(options: &LoadOptions) -> Result<Self, DataplaneError> {
        Self::load_object(OBJECT, &[PROGRAM_NAME], options)
    }

    /// Loads another object built from the same maps (the benchmarks' `bench.o`), with
    /// the programs named in `programs`.
    pub fn load_object(
        object: &[u8],
        programs: &[&str],
        options: &LoadOptions,
    ) -> Result<Self, DataplaneError> {
        if let Some(dir) = &options.pin_dir {
            check_pin_dir(dir)?;
        }
        raise_memlock_limit();
        // The slot table keeps the size it was created with; the program is told it.
        let slot_cells = match &options.pin_dir {
            Some(dir) if dir.join(names::V4_SLOTS).exists() => {
                object::pinned_slot_cells(&dir.join(names::V4_SLOTS))?
            }
            _ => names::slot_table_len(options.v4_capacity),
        };
        let slot_mask = slot_cells - 1;
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(names::V4_PREFIXES, options.v4_capacity)
            .map_max_entries(names::V6_PREFIXES, options.v6_capacity)
            // One long entry at most per IPv4 entry; slots are per /24 touched, up to 256
            // for a /16, so the table has cells for one and a half times the entries
            // (rounded up to a power of two; the long entries' map is not preallocated).
            .map_max_entries(names::V4_SLOTS, slot_cells)
            .map_max_entries(names::V4_LONG, options.v4_capacity)
            .override_global(names::SLOT_MASK_GLOBAL, &slot_mask, true);
        let mut reused = false;
        if let Some(dir) = &options.pin_dir {
            std::fs::create_dir_all(dir).map_err(|source| DataplaneError::PinDir {
                path: dir.clone(),
                source,
            })?;
            for shape in &object::SHAPES {
                let path = dir.join(shape.name);
                if path.exists() {
                    shape.check_pinned(&path)?;
                    reused = true;
                }
                loader.map_pin_path(shape.name, path);
            }
        }
        let mut ebpf = loader
            .load(object)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        for name in programs {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Verifier {
                    source: Box::new(source),
                })?;
        }
        let maps = Maps::take(&mut ebpf)?;
        Ok(Self {
            ebpf,
            maps,
            pin_dir: options.pin_dir.clone(),
            reused,
            owned_attachments: Vec::new(),
        })
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// True when this load found the maps already pinned and reused them.
    pub fn reused_pinned_maps(&self) -> bool {
        self.reused
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// The filter program.
    pub fn program(&self) -> Result<&Xdp, DataplaneError> {
        self.program_named(PROGRAM_NAME)
    }

    /// A program of the loaded object by name.
    pub fn program_named(&self, name: &str) -> Result<&Xdp, DataplaneError> {
        let program = self
            .ebpf
            .program(name)
            .ok_or(DataplaneError::MissingProgram)?;
        program
            .try_into()
            .map_err(|_| DataplaneError::MissingProgram)
    }

    /// A map of the loaded object that is not one of the filter's (the benchmarks').
    pub fn extra_map(&mut self, name: &str) -> Option<&mut aya::maps::Map> {
        self.ebpf.map_mut(name)
    }

    /// Runs the loaded program once on `frame` (BPF_PROG_TEST_RUN) and returns the XDP
    /// action it chose. Counters are updated as for a real packet.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, DataplaneError> {
        self.test_run_frame(frame).map(|(action, _)| action)
    }

    /// Like [`Dataplane::test_run`], also returning the frame as the program left it.
    pub fn test_run_frame(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), DataplaneError> {
        let mut out = vec![0u8; frame.len().max(64) + 256];
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        let result =
            self.program()?
                .test_run(options)
                .map_err(|source| DataplaneError::TestRun {
                    source: Box::new(source),
                })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, DataplaneError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram)?;
    program
        .try_into()
        .map_err(|_| DataplaneError::MissingProgram)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use the memory
/// cgroup and ignore it. Raising it is harmless either way; failing to is not fatal
/// (the load itself reports EPERM with a clear error if it mattered).
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if rc != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}
