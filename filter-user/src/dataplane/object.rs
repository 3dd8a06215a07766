//! The compiled XDP program (built by `build.rs`) and the shape of the maps it declares.

use std::path::Path;

use aya::maps::{lpm_trie::Key, MapInfo, MapType};
use filter_common::{
    maps as names, verdict, Counter, Entry, LongKey, LongValue, RedirectTarget, Rule, SlotCell,
};

use super::DataplaneError;

/// The object file, embedded at build time.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter.o"));

/// The XDP entry point's name in the object.
pub const PROGRAM_NAME: &str = "borderfilter";

/// What a map must look like for this build's program to use it.
#[derive(Clone, Copy, Debug)]
pub struct MapShape {
    pub name: &'static str,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    /// `None` for the tries: a pinned trie keeps the capacity it was created with.
    pub max_entries: Option<u32>,
}

const fn size<T>() -> u32 {
    size_of::<T>() as u32
}

/// Every map of the program.
pub const SHAPES: [MapShape; 11] = [
    MapShape {
        name: names::V4_PREFIXES,
        map_type: MapType::LpmTrie,
        key_size: size::<Key<[u8; 4]>>(),
        value_size: size::<Entry>(),
        max_entries: None,
    },
    MapShape {
        name: names::V6_PREFIXES,
        map_type: MapType::LpmTrie,
        key_size: size::<Key<[u8; 16]>>(),
        value_size: size::<Entry>(),
        max_entries: None,
    },
    MapShape {
        name: names::RULES,
        map_type: MapType::Array,
        key_size: size::<u32>(),
        value_size: size::<Rule>(),
        max_entries: Some(names::RULE_CAPACITY),
    },
    MapShape {
        name: names::RULE_STATS,
        map_type: MapType::PerCpuArray,
        key_size: size::<u32>(),
        value_size: size::<Counter>(),
        max_entries: Some(names::RULE_CAPACITY),
    },
    MapShape {
        name: names::VERDICT_STATS,
        map_type: MapType::PerCpuArray,
        key_size: size::<u32>(),
        value_size: size::<Counter>(),
        max_entries: Some(verdict::COUNT),
    },
    MapShape {
        name: names::REDIRECT_PORT,
        map_type: MapType::DevMap,
        key_size: size::<u32>(),
        // struct bpf_devmap_val: ifindex and a chained program.
        value_size: 8,
        max_entries: Some(1),
    },
    MapShape {
        name: names::REDIRECT_TARGET,
        map_type: MapType::Array,
        key_size: size::<u32>(),
        value_size: size::<RedirectTarget>(),
        max_entries: Some(1),
    },
    MapShape {
        name: names::V4_HINT,
        map_type: MapType::Array,
        key_size: size::<u32>(),
        value_size: size::<u64>(),
        max_entries: Some(names::HINT_WORDS),
    },
    MapShape {
        name: names::V4_SLOTS,
        map_type: MapType::Array,
        key_size: size::<u32>(),
        value_size: size::<SlotCell>(),
        max_entries: None,
    },
    MapShape {
        name: names::V4_LONG,
        map_type: MapType::Hash,
        key_size: size::<LongKey>(),
        value_size: size::<LongValue>(),
        max_entries: None,
    },
    MapShape {
        name: names::V6_HINT,
        map_type: MapType::Array,
        key_size: size::<u32>(),
        value_size: size::<u64>(),
        max_entries: Some(names::HINT_WORDS),
    },
];

/// The size of the slot table pinned at `path`: a power of two, or the pin is not ours.
pub fn pinned_slot_cells(path: &Path) -> Result<u32, DataplaneError> {
    let info = MapInfo::from_pin(path).map_err(|source| DataplaneError::OpenPin {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let cells = info.max_entries();
    if !cells.is_power_of_two() {
        return Err(DataplaneError::PinnedMismatch {
            path: path.to_path_buf(),
            what: "capacity",
            found: cells.to_string(),
            expected: "a power of two".into(),
        });
    }
    Ok(cells)
}

impl MapShape {
    /// Checks that the map pinned at `path` has this shape, so that a build with a
    /// different layout never writes into maps it would misread.
    pub fn check_pinned(&self, path: &Path) -> Result<(), DataplaneError> {
        let info = MapInfo::from_pin(path).map_err(|source| DataplaneError::OpenPin {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let mismatch = |what: &'static str, found: String, expected: String| {
            Err(DataplaneError::PinnedMismatch {
                path: path.to_path_buf(),
                what,
                found,
                expected,
            })
        };
        match info.map_type() {
            Ok(t) if t == self.map_type => {}
            Ok(t) => return mismatch("type", format!("{t:?}"), format!("{:?}", self.map_type)),
            Err(_) => return mismatch("type", "unknown".into(), format!("{:?}", self.map_type)),
        }
        if info.key_size() != self.key_size {
            return mismatch(
                "key size",
                info.key_size().to_string(),
                self.key_size.to_string(),
            );
        }
        if info.value_size() != self.value_size {
            return mismatch(
                "value size",
                info.value_size().to_string(),
                self.value_size.to_string(),
            );
        }
        if let Some(expected) = self.max_entries {
            if info.max_entries() != expected {
                return mismatch(
                    "capacity",
                    info.max_entries().to_string(),
                    expected.to_string(),
                );
            }
        }
        Ok(())
    }
}
