//! The fast-path maps: the two hint bitmaps and the IPv4 slot table (memory-mapped,
//! written word by word) and the long-entry hash map (written in batches).

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::{
        atomic::{fence, AtomicU64, Ordering},
        Mutex,
    },
};

use aya::maps::{Map, MapError};
use filter_common::{maps as names, Entry, LongKey, LongValue, Slot, SlotCell};

use super::{batch, DataplaneError};

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

/// Maps the memory of the `BPF_F_MMAPABLE` array behind `fd`, `words` 64-bit words long.
fn map_shared(fd: impl AsFd, words: usize) -> io::Result<NonNull<AtomicU64>> {
    // SAFETY: a fresh shared mapping of the map's memory; the length is the map's.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            words * 8,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_fd().as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(NonNull::new(ptr.cast()).expect("mmap never returns null on success"))
}

impl Hint {
    /// Maps the `BPF_F_MMAPABLE` array behind `fd`, `len` words long.
    pub fn map(fd: impl AsFd, len: usize) -> io::Result<Self> {
        Ok(Self {
            words: map_shared(fd, len)?,
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

/// Words in a slot-table cell.
const CELL_WORDS: usize = size_of::<SlotCell>() / 8;

/// The IPv4 slot table shared with the program through `mmap`: an open-addressed table
/// of [`SlotCell`]s (see `filter_common::maps::V4_SLOTS`). This process is its only
/// writer; it remembers which cell holds which /24, and finds a cell for a new /24 by
/// probing from its home. Cells are written word by word in place; the program copies a
/// cell and checks its /24 and seal, so a cell read half-written is ignored.
pub struct SlotTable {
    words: NonNull<AtomicU64>,
    cells: u32,
    /// Learnt from the table's contents at the first write (a table reused from its pins
    /// already holds slots); readers never need it.
    index: Mutex<Option<TableIndex>>,
}

// SAFETY: as for `Hint`: shared memory, all access through atomics.
unsafe impl Send for SlotTable {}
unsafe impl Sync for SlotTable {}

struct TableIndex {
    /// The cell of each /24 with a slot.
    at: HashMap<u32, u32>,
    /// Cells in use (including any this process cannot attribute to a /24).
    used: Vec<bool>,
}

impl SlotTable {
    /// Maps the table behind `fd`, `cells` cells long (a power of two).
    pub fn map(fd: impl AsFd, cells: u32) -> io::Result<Self> {
        if !cells.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the slot table has {cells} cells, not a power of two"),
            ));
        }
        Ok(Self {
            words: map_shared(fd, cells as usize * CELL_WORDS)?,
            cells,
            index: Mutex::new(None),
        })
    }

    /// Runs `f` on the index of the cells in use, learning it from the table first if
    /// this is the first write.
    fn with_index<R>(&self, f: impl FnOnce(&mut TableIndex) -> R) -> R {
        let mut guard = self.index.lock().expect("slot index poisoned");
        let index = guard.get_or_insert_with(|| {
            let mut index = TableIndex {
                at: HashMap::new(),
                used: vec![false; self.cells as usize],
            };
            for (at, cell) in self.cells() {
                index.used[at as usize] = true;
                index.at.entry(cell.block).or_insert(at);
            }
            index
        });
        f(index)
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.cells as usize * CELL_WORDS);
        // SAFETY: in bounds of the mapping, which lives as long as `self`.
        unsafe { &*self.words.as_ptr().add(index) }
    }

    fn read(&self, at: u32) -> [u64; CELL_WORDS] {
        let base = at as usize * CELL_WORDS;
        std::array::from_fn(|i| self.word(base + i).load(Ordering::Acquire))
    }

    fn write(&self, at: u32, words: [u64; CELL_WORDS]) {
        let base = at as usize * CELL_WORDS;
        for (i, w) in words.into_iter().enumerate() {
            self.word(base + i).store(w, Ordering::Relaxed);
        }
        fence(Ordering::Release);
    }

    /// Every cell in use, with its position, as the program sees them now.
    fn cells(&self) -> impl Iterator<Item = (u32, SlotCell)> + '_ {
        (0..self.cells).filter_map(|at| {
            let words = self.read(at);
            // SAFETY: `SlotCell` is plain old data of exactly these 64 bytes.
            (words != [0; CELL_WORDS]).then(|| {
                (at, unsafe {
                    std::mem::transmute::<[u64; CELL_WORDS], SlotCell>(words)
                })
            })
        })
    }

    /// Cells in the table.
    pub fn len(&self) -> u32 {
        self.cells
    }

    /// Writes `slot` as the slot of `block`, in the cell that already holds it or in the
    /// first free one from its home. `None` when every cell is taken.
    fn put(&self, index: &mut TableIndex, block: u32, slot: Slot) -> Option<()> {
        let at = match index.at.get(&block) {
            Some(at) => *at,
            None => {
                let home = names::slot_home(block);
                let at = (0..self.cells)
                    .map(|i| home.wrapping_add(i) & (self.cells - 1))
                    .find(|at| !index.used[*at as usize])?;
                index.used[at as usize] = true;
                index.at.insert(block, at);
                at
            }
        };
        let cell = SlotCell {
            slot,
            block,
            _pad: 0,
        };
        // SAFETY: `SlotCell` is plain old data of exactly these 64 bytes.
        self.write(at, unsafe {
            std::mem::transmute::<SlotCell, [u64; CELL_WORDS]>(cell)
        });
        Some(())
    }

    /// Frees the cells of `blocks` that have one.
    fn remove_all(&self, blocks: &[u32]) {
        self.with_index(|index| {
            for block in blocks {
                if let Some(at) = index.at.remove(block) {
                    self.write(at, [0; CELL_WORDS]);
                    index.used[at as usize] = false;
                }
            }
        });
    }

    /// Writes every slot in `items`; stops at the first that finds no free cell.
    fn put_all(&self, items: &[(u32, Slot)]) -> Result<(), DataplaneError> {
        self.with_index(|index| {
            for (block, slot) in items {
                if self.put(index, *block, *slot).is_none() {
                    return Err(DataplaneError::MapFull {
                        map: names::V4_SLOTS,
                        capacity: self.cells,
                        what: format!("{} slots", items.len()),
                    });
                }
            }
            Ok(())
        })
    }
}

impl Drop for SlotTable {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe {
            libc::munmap(
                self.words.as_ptr().cast(),
                self.cells as usize * size_of::<SlotCell>(),
            )
        };
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
            batch::map_data(map).fd(),
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
        match batch::delete(batch::map_data(map).fd(), bytes(chunk), chunk.len()) {
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
        batch::lookup_all(batch::map_data(map).fd(), size_of::<K>(), size_of::<V>())
            .map_err(|e| batch_error("reading", name, e))?;
    Ok(from_bytes::<K>(&keys)
        .into_iter()
        .zip(from_bytes::<V>(&values))
        .collect())
}

/// The fast-path maps of a loaded program.
pub struct FastMaps {
    /// The hint maps stay open beside their mappings (the mappings need the maps alive).
    _hint_maps: [Map; 2],
    pub(super) v4_hint: Hint,
    pub(super) v6_hint: Hint,
    /// The slot table's map, kept open beside its mapping.
    pub(super) slots: Map,
    pub(super) slot_table: SlotTable,
    pub(super) long: Map,
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
            Hint::map(batch::map_data(map).fd(), names::HINT_WORDS as usize).map_err(|source| {
                DataplaneError::PinIo {
                    op: "memory-mapping map",
                    path: name.into(),
                    source,
                }
            })
        };
        let capacity = |map: &Map| {
            batch::map_data(map)
                .info()
                .map(|i| i.max_entries())
                .unwrap_or(0)
        };
        let cells = capacity(&slots);
        let slot_table = SlotTable::map(batch::map_data(&slots).fd(), cells).map_err(|source| {
            DataplaneError::PinIo {
                op: "memory-mapping map",
                path: names::V4_SLOTS.into(),
                source,
            }
        })?;
        Ok(Self {
            v4_hint: mmap(&v4_hint, names::V4_HINT)?,
            v6_hint: mmap(&v6_hint, names::V6_HINT)?,
            slot_table,
            long_capacity: capacity(&long),
            _hint_maps: [v4_hint, v6_hint],
            slots,
            long,
        })
    }
}

impl FastMaps {
    pub fn v4_hint(&self) -> &Hint {
        &self.v4_hint
    }

    pub fn v6_hint(&self) -> &Hint {
        &self.v6_hint
    }

    /// How many /24 slots the IPv4 index takes (seven eighths of its cells: see
    /// `filter_common::maps::slot_table_room`).
    pub fn slot_capacity(&self) -> u32 {
        names::slot_table_room(self.slot_table.len())
    }

    /// The slots, read from the whole table as the program sees it now, as user space
    /// computes them: the seal is checked and cleared (a slot whose seal does not match
    /// keeps it, so that it differs from any derived slot).
    pub fn slots(&self) -> Result<HashMap<u32, Slot>, DataplaneError> {
        Ok(self
            .slot_table
            .cells()
            .map(|(_, cell)| {
                let mut slot = cell.slot;
                if slot.seal == slot.seal(cell.block) {
                    slot.seal = 0;
                }
                (cell.block, slot)
            })
            .collect())
    }

    /// The long entries; one whose value names another key reads as an impossible entry.
    pub fn long_entries(&self) -> Result<HashMap<LongKey, Entry>, DataplaneError> {
        let values: HashMap<LongKey, LongValue> = read_all(&self.long, names::V4_LONG)?;
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

    /// The cells in use and the /24 each names, from the whole table: for the tests of
    /// the table's placement.
    #[doc(hidden)]
    pub fn slot_cells(&self) -> Vec<(u32, u32)> {
        self.slot_table
            .cells()
            .map(|(at, cell)| (at, cell.block))
            .collect()
    }

    /// Cells in the slot table.
    pub fn slot_cells_total(&self) -> u32 {
        self.slot_table.len()
    }

    /// Writes slots, each sealed for its /24.
    pub fn put_slots(&self, items: &[(u32, Slot)]) -> Result<(), DataplaneError> {
        let sealed: Vec<(u32, Slot)> = items.iter().map(|(b, s)| (*b, s.sealed(*b))).collect();
        self.slot_table.put_all(&sealed)
    }

    /// Writes slots exactly as given, seal included: for the tests of the seal.
    #[doc(hidden)]
    pub fn put_slots_as_is(&self, items: &[(u32, Slot)]) -> Result<(), DataplaneError> {
        self.slot_table.put_all(items)
    }

    /// Writes long-entry values exactly as given: for the tests of the key check.
    #[doc(hidden)]
    pub fn put_long_as_is(&self, items: &[(LongKey, LongValue)]) -> Result<(), DataplaneError> {
        put(&self.long, names::V4_LONG, self.long_capacity, items)
    }

    pub fn delete_slots(&self, keys: &[u32]) -> Result<(), DataplaneError> {
        self.slot_table.remove_all(keys);
        Ok(())
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
        put(&self.long, names::V4_LONG, self.long_capacity, &values)
    }

    pub fn delete_long(&self, keys: &[LongKey]) -> Result<(), DataplaneError> {
        delete(&self.long, names::V4_LONG, keys)
    }
}
