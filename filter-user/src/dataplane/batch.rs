//! BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH and BPF_MAP_LOOKUP_BATCH, which aya does
//! not wrap: one system call for thousands of elements instead of one each. A million
//! prefixes load several times faster this way, and a scrape reads the counters of
//! 10,000 orders in a few calls. Kernels without batch support for a map type answer EINVAL or
//! ENOTSUPP; then the same work is done one element at a time, still without needing
//! exclusive access to the map (so that several maps can be written in parallel).

use aya::maps::{Map, MapData};

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// The kernel's internal "operation not supported" errno, seen by user space as is.
const ENOTSUPP: i32 = 524;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Whether an error means "this map or kernel has no batch operations".
pub fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(ENOTSUPP))
}

/// `union bpf_attr`'s element members (map_fd, key, value, flags).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn call<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix of the size we pass; the
    // buffers it points to outlive the call and hold the elements it says.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A,
            std::mem::size_of::<A>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `count` key/value pairs, packed in `keys` and `values`, in order. Returns how
/// many the kernel wrote before an error, with the error.
pub fn update(
    map: &impl AsFd,
    keys: &[u8],
    values: &[u8],
    count: usize,
) -> Result<(), (usize, io::Error)> {
    let fd = map.as_fd().as_raw_fd() as u32;
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: count as u32,
        map_fd: fd,
        ..BatchAttr::default()
    };
    match call(BPF_MAP_UPDATE_BATCH, &mut attr) {
        Err(e) if unsupported(&e) && attr.count == 0 => {
            let (ks, vs) = (keys.len() / count.max(1), values.len() / count.max(1));
            for i in 0..count {
                let mut elem = ElemAttr {
                    map_fd: fd,
                    key: keys[i * ks..].as_ptr() as u64,
                    value: values[i * vs..].as_ptr() as u64,
                    ..ElemAttr::default()
                };
                call(BPF_MAP_UPDATE_ELEM, &mut elem).map_err(|e| (i, e))?;
            }
            Ok(())
        }
        other => other.map_err(|e| (attr.count as usize, e)),
    }
}

/// Deletes `count` keys packed in `keys`. An absent key stops with ENOENT and the number
/// of keys deleted before it.
pub fn delete(map: &impl AsFd, keys: &[u8], count: usize) -> Result<(), (usize, io::Error)> {
    let fd = map.as_fd().as_raw_fd() as u32;
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        count: count as u32,
        map_fd: fd,
        ..BatchAttr::default()
    };
    match call(BPF_MAP_DELETE_BATCH, &mut attr) {
        Err(e) if unsupported(&e) && attr.count == 0 => {
            let ks = keys.len() / count.max(1);
            for i in 0..count {
                let mut elem = ElemAttr {
                    map_fd: fd,
                    key: keys[i * ks..].as_ptr() as u64,
                    ..ElemAttr::default()
                };
                call(BPF_MAP_DELETE_ELEM, &mut elem).map_err(|e| (i, e))?;
            }
            Ok(())
        }
        other => other.map_err(|e| (attr.count as usize, e)),
    }
}

/// Reads every element of a map whose keys are `key_size` and values `value_size`
/// bytes. Returns the packed keys and values.
pub fn lookup_all(
    map: &impl AsFd,
    key_size: usize,
    value_size: usize,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    const CHUNK: usize = 8192;
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    lookup_batches(map, key_size, value_size, CHUNK, usize::MAX, |k, v| {
        keys.extend_from_slice(k);
        values.extend_from_slice(v);
    })?;
    Ok((keys, values))
}

/// How many bytes of values one batch of [`lookup_array`] asks for at most: a per-CPU
/// value is copied once per possible CPU, so a batch of a fixed number of elements
/// would grow with the machine.
const ARRAY_BATCH_BYTES: usize = 1 << 20;

/// Reads elements `0..count` of an `ARRAY` or `PERCPU_ARRAY` map, in batches, calling
/// `each(index, value)` for each in order. `value_size` is what the kernel copies per
/// element: the value size for an array; for a per-CPU array the value size rounded up
/// to 8 bytes, times the number of possible CPUs (the values of CPU 0, 1, ... in turn).
/// A kernel without batch lookups for the map answers EINVAL or ENOTSUPP
/// ([`unsupported`]) before any element is given.
pub fn lookup_array(
    map: &impl AsFd,
    count: u32,
    value_size: usize,
    mut each: impl FnMut(u32, &[u8]),
) -> io::Result<()> {
    let chunk = (ARRAY_BATCH_BYTES / value_size.max(1)).clamp(1, count.max(1) as usize);
    lookup_batches(map, 4, value_size, chunk, count as usize, |keys, values| {
        for (key, value) in keys.chunks_exact(4).zip(values.chunks_exact(value_size)) {
            each(u32::from_ne_bytes(key.try_into().expect("4 bytes")), value);
        }
    })
}

/// BPF_MAP_LOOKUP_BATCH from the first key on, `chunk` elements per call, until the
/// map ends or `limit` elements have been read; `each` gets the packed keys and values
/// of every batch.
fn lookup_batches(
    map: &impl AsFd,
    key_size: usize,
    value_size: usize,
    chunk: usize,
    limit: usize,
    mut each: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let mut cursor = vec![0u8; key_size.max(8)];
    let mut next = vec![0u8; key_size.max(8)];
    let mut key_buf = vec![0u8; chunk * key_size];
    let mut value_buf = vec![0u8; chunk * value_size];
    let mut first = true;
    let mut read = 0;
    while read < limit {
        let want = chunk.min(limit - read);
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { cursor.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: key_buf.as_mut_ptr() as u64,
            values: value_buf.as_mut_ptr() as u64,
            count: want as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = call(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(want);
        each(&key_buf[..got * key_size], &value_buf[..got * value_size]);
        read += got;
        match result {
            // Nothing more to give without an error: do not ask again from a cursor
            // the kernel did not write.
            Ok(()) if got == 0 => return Ok(()),
            Ok(()) => {}
            // ENOENT: the last batch has been read.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
        std::mem::swap(&mut cursor, &mut next);
        first = false;
    }
    Ok(())
}

/// The kernel map behind a map taken out of the loaded object.
pub(super) fn map_data(map: &Map) -> &MapData {
    match map {
        Map::LpmTrie(m)
        | Map::Array(m)
        | Map::PerCpuArray(m)
        | Map::DevMap(m)
        | Map::HashMap(m) => m,
        // `Maps::take` only ever stores the kinds above.
        other => unreachable!("unexpected map kind {other:?}"),
    }
}
