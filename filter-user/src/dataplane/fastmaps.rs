//! The fast-path maps: the two hint bitmaps (memory-mapped, written word by word) and
//! the IPv4 slot and long-entry hash maps (written in batches).

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Map, MapError};
use filter_common::{maps as names, Entry, LongKey, LongValue, Slot};

use super::{batch, maps::Maps, DataplaneError};

/// A hint bitmap shared with the program through `mmap`. Stores are whole aligned words,
/// so the program sees each word old or new, never torn.
pub struct Hint {
    words: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is shared memory the kernel keeps alive while mapped; all access
// goes through atomics.
unsafe impl Send for Hint {}
unsafe impl Sync for Hint {}

impl Hint {
    /// Maps the `BPF_F_MMAPABLE` array behind `fd`, `len` words long.
    pub fn map(fd: impl AsFd, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of the map's memory; the length is the map's.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            words: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            len,
        })
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.len, "hint word {index} out of {}", self.len);
        // SAFETY: in bounds of the mapping, which lives as long as `self`.
        unsafe { &*self.words.as_ptr().add(index) }
    }

    pub fn get(&self, bit: u32) -> bool {
        self.word((bit >> 6) as usize).load(Ordering::Relaxed) & (1 << (bit & 63)) != 0
    }

    pub fn set(&self, bit: u32) {
        self.word((bit >> 6) as usize)
            .fetch_or(1 << (bit & 63), Ordering::Release);
    }

    pub fn clear(&self, bit: u32) {
        self.word((bit >> 6) as usize)
            .fetch_and(!(1 << (bit & 63)), Ordering::Release);
    }

    /// Every word, as the program sees them now.
    pub fn snapshot(&self) -> Vec<u64> {
        (0..self.len)
            .map(|i| self.word(i).load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Hint {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.words.as_ptr().cast(), self.len * 8) };
    }
}

/// The bytes of a slice of plain-old-data values, for the batch system calls.
fn bytes<T: aya::Pod>(items: &[T]) -> &[u8] {
    // SAFETY: `Pod` types have no padding or invalid bit patterns; the slice is valid.
    unsafe { std::slice::from_raw_parts(items.as_ptr().cast(), std::mem::size_of_val(items)) }
}

fn from_bytes<T: aya::Pod>(raw: &[u8]) -> Vec<T> {
    raw.chunks_exact(size_of::<T>())
        // SAFETY: each chunk holds exactly one `T`, written by the kernel from a `T`.
        .map(|c| unsafe { c.as_ptr().cast::<T>().read_unaligned() })
        .collect()
}

fn batch_error(op: &'static str, map: &'static str, io_error: io::Error) -> DataplaneError {
    DataplaneError::Map {
        op,
        map,
        what: "entries".into(),
        source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
            call: "BPF_MAP_*_BATCH",
            io_error,
        })),
    }
}

const CHUNK: usize = 8192;

/// Writes `items` into the hash map `map`, in order.
fn put<K: aya::Pod, V: aya::Pod>(
    map: &Map,
    name: &'static str,
    capacity: u32,
    items: &[(K, V)],
) -> Result<(), DataplaneError> {
    for chunk in items.chunks(CHUNK) {
        let keys: Vec<K> = chunk.iter().map(|(k, _)| *k).collect();
        let values: Vec<V> = chunk.iter().map(|(_, v)| *v).collect();
        if let Err((_, e)) = batch::update(
            Maps::map_data(map).fd(),
            bytes(&keys),
            bytes(&values),
            chunk.len(),
        ) {
            if matches!(
                e.raw_os_error(),
                Some(libc::E2BIG) | Some(libc::ENOSPC) | Some(libc::ENOMEM)
            ) {
                return Err(DataplaneError::MapFull {
                    map: name,
                    capacity,
                    what: format!("{} entries", items.len()),
                });
            }
            return Err(batch_error("writing", name, e));
        }
    }
    Ok(())
}

/// Deletes `keys` from the hash map `map`; absent keys are skipped.
fn delete<K: aya::Pod>(map: &Map, name: &'static str, keys: &[K]) -> Result<(), DataplaneError> {
    let mut start = 0;
    while start < keys.len() {
        let chunk = &keys[start..(start + CHUNK).min(keys.len())];
        match batch::delete(Maps::map_data(map).fd(), bytes(chunk), chunk.len()) {
            Ok(()) => start += chunk.len(),
            Err((done, e)) if e.raw_os_error() == Some(libc::ENOENT) => start += done + 1,
            Err((_, e)) => return Err(batch_error("deleting from", name, e)),
        }
    }
    Ok(())
}

fn read_all<K: aya::Pod + std::hash::Hash + Eq, V: aya::Pod>(
    map: &Map,
    name: &'static str,
) -> Result<HashMap<K, V>, DataplaneError> {
    let (keys, values) =
        batch::lookup_all(Maps::map_data(map).fd(), size_of::<K>(), size_of::<V>())
            .map_err(|e| batch_error("reading", name, e))?;
    Ok(from_bytes::<K>(&keys)
        .into_iter()
        .zip(from_bytes::<V>(&values))
        .collect())
}

impl Maps {
    pub fn v4_hint(&self) -> &Hint {
        &self.fast.v4_hint
    }

    pub fn v6_hint(&self) -> &Hint {
        &self.fast.v6_hint
    }

    /// How many /24 slots the IPv4 index has room for.
    pub fn slot_capacity(&self) -> u32 {
        self.fast.slot_capacity
    }

    /// The slots, as user space computes them: the seal is checked and cleared (a slot
    /// whose seal does not match keeps it, so that it differs from any derived slot).
    pub fn slots(&self) -> Result<HashMap<u32, Slot>, DataplaneError> {
        let mut slots: HashMap<u32, Slot> = read_all(&self.fast.slots, names::V4_SLOTS)?;
        for (block, slot) in slots.iter_mut() {
            if slot.seal == slot.seal(*block) {
                slot.seal = 0;
            }
        }
        Ok(slots)
    }

    /// The long entries; one whose value names another key reads as an impossible entry.
    pub fn long_entries(&self) -> Result<HashMap<LongKey, Entry>, DataplaneError> {
        let values: HashMap<LongKey, LongValue> = read_all(&self.fast.long, names::V4_LONG)?;
        Ok(values
            .into_iter()
            .map(|(k, v)| {
                let e = if v.key == k {
                    v.entry
                } else {
                    Entry {
                        dst_rule: u32::MAX,
                        src_rule: u32::MAX,
                    }
                };
                (k, e)
            })
            .collect())
    }

    /// Writes slots, each sealed for its /24.
    pub fn put_slots(&self, items: &[(u32, Slot)]) -> Result<(), DataplaneError> {
        let sealed: Vec<(u32, Slot)> = items.iter().map(|(b, s)| (*b, s.sealed(*b))).collect();
        put(
            &self.fast.slots,
            names::V4_SLOTS,
            self.fast.slot_capacity,
            &sealed,
        )
    }

    /// Writes slots exactly as given, seal included: for the tests of the seal.
    #[doc(hidden)]
    pub fn put_slots_as_is(&self, items: &[(u32, Slot)]) -> Result<(), DataplaneError> {
        put(
            &self.fast.slots,
            names::V4_SLOTS,
            self.fast.slot_capacity,
            items,
        )
    }

    /// Writes long-entry values exactly as given: for the tests of the key check.
    #[doc(hidden)]
    pub fn put_long_as_is(&self, items: &[(LongKey, LongValue)]) -> Result<(), DataplaneError> {
        put(
            &self.fast.long,
            names::V4_LONG,
            self.fast.long_capacity,
            items,
        )
    }

    pub fn delete_slots(&self, keys: &[u32]) -> Result<(), DataplaneError> {
        delete(&self.fast.slots, names::V4_SLOTS, keys)
    }

    pub fn put_long(&self, items: &[(LongKey, Entry)]) -> Result<(), DataplaneError> {
        let values: Vec<(LongKey, LongValue)> = items
            .iter()
            .map(|(key, entry)| {
                (
                    *key,
                    LongValue {
                        entry: *entry,
                        key: *key,
                    },
                )
            })
            .collect();
        put(
            &self.fast.long,
            names::V4_LONG,
            self.fast.long_capacity,
            &values,
        )
    }

    pub fn delete_long(&self, keys: &[LongKey]) -> Result<(), DataplaneError> {
        delete(&self.fast.long, names::V4_LONG, keys)
    }
}

/// The fast-path maps of a loaded program.
pub struct FastMaps {
    /// The hint maps stay open beside their mappings (the mappings need the maps alive).
    _hint_maps: [Map; 2],
    pub(super) v4_hint: Hint,
    pub(super) v6_hint: Hint,
    pub(super) slots: Map,
    pub(super) long: Map,
    pub(super) slot_capacity: u32,
    pub(super) long_capacity: u32,
}

impl FastMaps {
    pub(super) fn hint_maps(&self) -> [&Map; 2] {
        [&self._hint_maps[0], &self._hint_maps[1]]
    }

    pub(super) fn new(
        v4_hint: Map,
        v6_hint: Map,
        slots: Map,
        long: Map,
    ) -> Result<Self, DataplaneError> {
        let mmap = |map: &Map, name: &'static str| {
            Hint::map(Maps::map_data(map).fd(), names::HINT_WORDS as usize).map_err(|source| {
                DataplaneError::PinIo {
                    op: "memory-mapping map",
                    path: name.into(),
                    source,
                }
            })
        };
        let capacity = |map: &Map| {
            Maps::map_data(map)
                .info()
                .map(|i| i.max_entries())
                .unwrap_or(0)
        };
        Ok(Self {
            v4_hint: mmap(&v4_hint, names::V4_HINT)?,
            v6_hint: mmap(&v6_hint, names::V6_HINT)?,
            slot_capacity: capacity(&slots),
            long_capacity: capacity(&long),
            _hint_maps: [v4_hint, v6_hint],
            slots,
            long,
        })
    }
}
