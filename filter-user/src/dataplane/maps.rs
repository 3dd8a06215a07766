//! Typed access to the program's maps: prefix entries, rules and counters.

use std::net::IpAddr;

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, Map, MapData, MapError, PerCpuArray},
    Ebpf,
};
use filter_common::{
    maps::{self as names, RULE_CAPACITY},
    verdict, Counter, Entry, RedirectTarget, Rule,
};

use super::{batch, fastmaps::FastMaps, DataplaneError};
use crate::prefix::{Family, Prefix};

/// One entry of a prefix trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrefixEntry {
    pub prefix: Prefix,
    pub entry: Entry,
}

/// The program's maps, taken out of the loaded object.
pub struct Maps {
    v4: Map,
    v6: Map,
    rules: Map,
    rule_stats: Map,
    verdicts: Map,
    redirect_port: Map,
    redirect_target: Map,
    fast: FastMaps,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, DataplaneError> {
    ebpf.take_map(name)
        .ok_or(DataplaneError::MissingMap { name, source: None })
}

fn map_err(
    op: &'static str,
    map: &'static str,
    what: impl ToString,
) -> impl FnOnce(MapError) -> DataplaneError {
    let what = what.to_string();
    move |source| DataplaneError::Map {
        op,
        map,
        what,
        source: Box::new(source),
    }
}

fn errno(error: &MapError) -> Option<i32> {
    match error {
        MapError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    }
}

impl Maps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self {
            v4: take(ebpf, names::V4_PREFIXES)?,
            v6: take(ebpf, names::V6_PREFIXES)?,
            rules: take(ebpf, names::RULES)?,
            rule_stats: take(ebpf, names::RULE_STATS)?,
            verdicts: take(ebpf, names::VERDICT_STATS)?,
            redirect_port: take(ebpf, names::REDIRECT_PORT)?,
            redirect_target: take(ebpf, names::REDIRECT_TARGET)?,
            fast: FastMaps::new(
                take(ebpf, names::V4_HINT)?,
                take(ebpf, names::V6_HINT)?,
                take(ebpf, names::V4_SLOTS)?,
                take(ebpf, names::V4_LONG)?,
            )?,
        })
    }

    fn trie_name(family: Family) -> &'static str {
        match family {
            Family::V4 => names::V4_PREFIXES,
            Family::V6 => names::V6_PREFIXES,
        }
    }

    /// The fast-path index: hint bitmaps, slot table, long entries.
    pub fn fast(&self) -> &FastMaps {
        &self.fast
    }

    /// The kernel ids of the maps: a program that uses them is one of ours.
    pub fn ids(&self) -> std::collections::HashSet<u32> {
        [
            &self.v4,
            &self.v6,
            &self.rules,
            &self.rule_stats,
            &self.verdicts,
        ]
        .iter()
        .filter_map(|m| batch::map_data(m).info().ok().map(|i| i.id()))
        .collect()
    }

    /// Capacity (max entries) of the trie for `family`, as the kernel reports it.
    pub fn capacity(&self, family: Family) -> Result<u32, DataplaneError> {
        let map = match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        batch::map_data(map)
            .info()
            .map(|i| i.max_entries())
            .map_err(map_err(
                "reading the capacity of",
                Self::trie_name(family),
                "the map",
            ))
    }

    /// Adds `prefix` or changes its entry.
    pub fn insert(&mut self, prefix: &Prefix, entry: Entry) -> Result<(), DataplaneError> {
        let family = prefix.family();
        let name = Self::trie_name(family);
        let result = match prefix.addr() {
            IpAddr::V4(a) => trie_v4(&mut self.v4)?.insert(
                &Key::new(prefix.length().into(), a.octets()),
                entry,
                0,
            ),
            IpAddr::V6(a) => trie_v6(&mut self.v6)?.insert(
                &Key::new(prefix.length().into(), a.octets()),
                entry,
                0,
            ),
        };
        match result {
            Err(e) if matches!(errno(&e), Some(libc::ENOSPC) | Some(libc::E2BIG)) => {
                Err(DataplaneError::MapFull {
                    map: name,
                    capacity: self.capacity(family).unwrap_or(0),
                    what: prefix.to_string(),
                })
            }
            other => other.map_err(map_err("inserting", name, prefix)),
        }
    }

    /// Adds or changes many entries, in the order given (within each family).
    pub fn insert_many(&self, entries: &[(Prefix, Entry)]) -> Result<(), DataplaneError> {
        for family in [Family::V4, Family::V6] {
            let items: Vec<&(Prefix, Entry)> = entries
                .iter()
                .filter(|(p, _)| p.family() == family)
                .collect();
            for chunk in items.chunks(BATCH) {
                let mut keys = Vec::with_capacity(chunk.len() * key_size(family));
                let mut values = Vec::with_capacity(chunk.len() * size_of::<Entry>());
                for (prefix, entry) in chunk {
                    push_key(&mut keys, prefix);
                    values.extend_from_slice(&entry.dst_rule.to_ne_bytes());
                    values.extend_from_slice(&entry.src_rule.to_ne_bytes());
                }
                let map = batch::map_data(self.trie(family)).fd();
                match batch::update(map, &keys, &values, chunk.len()) {
                    Ok(()) => {}
                    Err((done, e)) => {
                        let prefix = chunk
                            .get(done)
                            .map_or_else(String::new, |(p, _)| p.to_string());
                        if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::E2BIG)) {
                            return Err(DataplaneError::MapFull {
                                map: Self::trie_name(family),
                                capacity: self.capacity(family).unwrap_or(0),
                                what: prefix,
                            });
                        }
                        return Err(map_err("inserting", Self::trie_name(family), prefix)(
                            MapError::SyscallError(aya::sys::SyscallError {
                                call: "BPF_MAP_UPDATE_BATCH",
                                io_error: e,
                            }),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes many prefixes; absent ones are skipped.
    pub fn remove_many(&self, prefixes: &[Prefix]) -> Result<(), DataplaneError> {
        for family in [Family::V4, Family::V6] {
            let items: Vec<&Prefix> = prefixes.iter().filter(|p| p.family() == family).collect();
            let mut start = 0;
            while start < items.len() {
                let chunk = &items[start..(start + BATCH).min(items.len())];
                let mut keys = Vec::with_capacity(chunk.len() * key_size(family));
                for prefix in chunk {
                    push_key(&mut keys, prefix);
                }
                let map = batch::map_data(self.trie(family)).fd();
                match batch::delete(map, &keys, chunk.len()) {
                    Ok(()) => start += chunk.len(),
                    // An absent key stops the batch: skip it and go on after it.
                    Err((done, e)) if e.raw_os_error() == Some(libc::ENOENT) => start += done + 1,
                    Err((done, e)) => {
                        let prefix = chunk.get(done).map_or_else(String::new, |p| p.to_string());
                        return Err(map_err("removing", Self::trie_name(family), prefix)(
                            MapError::SyscallError(aya::sys::SyscallError {
                                call: "BPF_MAP_DELETE_BATCH",
                                io_error: e,
                            }),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn trie(&self, family: Family) -> &Map {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Removes `prefix`; removing an absent prefix is not an error.
    pub fn remove(&mut self, prefix: &Prefix) -> Result<(), DataplaneError> {
        let name = Self::trie_name(prefix.family());
        let result = match prefix.addr() {
            IpAddr::V4(a) => {
                trie_v4(&mut self.v4)?.remove(&Key::new(prefix.length().into(), a.octets()))
            }
            IpAddr::V6(a) => {
                trie_v6(&mut self.v6)?.remove(&Key::new(prefix.length().into(), a.octets()))
            }
        };
        match result {
            Err(e) if matches!(e, MapError::KeyNotFound) || errno(&e) == Some(libc::ENOENT) => {
                Ok(())
            }
            other => other.map_err(map_err("removing", name, prefix)),
        }
    }

    /// The entry the kernel's longest-prefix match gives for `addr`, as the program sees it.
    pub fn lookup(&self, addr: IpAddr) -> Result<Option<Entry>, DataplaneError> {
        let name = Self::trie_name(Prefix::host(addr).family());
        let result = match addr {
            IpAddr::V4(a) => trie_v4_ref(&self.v4)?.get(&Key::new(32, a.octets()), 0),
            IpAddr::V6(a) => trie_v6_ref(&self.v6)?.get(&Key::new(128, a.octets()), 0),
        };
        match result {
            Ok(entry) => Ok(Some(entry)),
            Err(e) if matches!(e, MapError::KeyNotFound) || errno(&e) == Some(libc::ENOENT) => {
                Ok(None)
            }
            Err(e) => Err(map_err("looking up", name, addr)(e)),
        }
    }

    /// Every entry of the trie for `family`, sorted by prefix.
    pub fn prefixes(&self, family: Family) -> Result<Vec<PrefixEntry>, DataplaneError> {
        let name = Self::trie_name(family);
        let ks = key_size(family);
        match batch::lookup_all(
            batch::map_data(self.trie(family)).fd(),
            ks,
            size_of::<Entry>(),
        ) {
            Ok((keys, values)) => {
                let mut out: Vec<PrefixEntry> = keys
                    .chunks_exact(ks)
                    .zip(values.chunks_exact(size_of::<Entry>()))
                    .map(|(k, v)| {
                        let len = u32::from_ne_bytes(k[..4].try_into().expect("4 bytes")) as u8;
                        let addr = match family {
                            Family::V4 => {
                                IpAddr::from(<[u8; 4]>::try_from(&k[4..]).expect("4 bytes"))
                            }
                            Family::V6 => {
                                IpAddr::from(<[u8; 16]>::try_from(&k[4..]).expect("16 bytes"))
                            }
                        };
                        let word =
                            |i: usize| u32::from_ne_bytes(v[i..i + 4].try_into().expect("4 bytes"));
                        PrefixEntry {
                            prefix: Prefix::new_truncating(addr, len),
                            entry: Entry {
                                dst_rule: word(0),
                                src_rule: word(4),
                            },
                        }
                    })
                    .collect();
                out.sort();
                return Ok(out);
            }
            Err(e) if batch::unsupported(&e) => {}
            Err(e) => {
                return Err(map_err("listing", name, "entries")(MapError::SyscallError(
                    aya::sys::SyscallError {
                        call: "BPF_MAP_LOOKUP_BATCH",
                        io_error: e,
                    },
                )))
            }
        }
        let mut out = Vec::new();
        match family {
            Family::V4 => {
                for item in trie_v4_ref(&self.v4)?.iter() {
                    let (key, entry) = item.map_err(map_err("listing", name, "entries"))?;
                    let prefix =
                        Prefix::new_truncating(IpAddr::from(key.data()), key.prefix_len() as u8);
                    out.push(PrefixEntry { prefix, entry });
                }
            }
            Family::V6 => {
                for item in trie_v6_ref(&self.v6)?.iter() {
                    let (key, entry) = item.map_err(map_err("listing", name, "entries"))?;
                    let prefix =
                        Prefix::new_truncating(IpAddr::from(key.data()), key.prefix_len() as u8);
                    out.push(PrefixEntry { prefix, entry });
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn set_rule(&mut self, number: u32, rule: Rule) -> Result<(), DataplaneError> {
        self.rules_mut()?.set(number, rule, 0).map_err(map_err(
            "writing",
            names::RULES,
            format!("rule {number}"),
        ))
    }

    pub fn rule(&self, number: u32) -> Result<Rule, DataplaneError> {
        self.rules_ref()?.get(&number, 0).map_err(map_err(
            "reading",
            names::RULES,
            format!("rule {number}"),
        ))
    }

    /// Every rule slot that is in use, by number.
    pub fn rules(&self) -> Result<Vec<(u32, Rule)>, DataplaneError> {
        let mut out = Vec::new();
        for (number, rule) in self.rules_ref()?.iter().enumerate() {
            let rule = rule.map_err(map_err("listing", names::RULES, "rules"))?;
            if rule != Rule::default() {
                out.push((number as u32, rule));
            }
        }
        Ok(out)
    }

    /// Packets and bytes counted for rule `number`, summed over CPUs.
    pub fn rule_counter(&self, number: u32) -> Result<Counter, DataplaneError> {
        let stats = per_cpu(&self.rule_stats, names::RULE_STATS)?;
        let values = stats.get(&number, 0).map_err(map_err(
            "reading",
            names::RULE_STATS,
            format!("rule {number}"),
        ))?;
        Ok(sum(values.iter().copied()))
    }

    /// Packets and bytes of rules `0..count` (at most the map's [`RULE_CAPACITY`]),
    /// indexed by rule number, summed over CPUs: read in batches of elements, a few
    /// system calls for all, where [`Maps::rule_counter`] takes one per rule.
    pub fn rule_counters(&self, count: u32) -> Result<Vec<Counter>, DataplaneError> {
        let count = count.min(RULE_CAPACITY);
        summed(&self.rule_stats, names::RULE_STATS, count, |n| {
            format!("rule {n}")
        })
    }

    /// [`Maps::rule_counters`] by batch lookups only: `None` where the kernel has no
    /// batch lookups for per-CPU arrays (before 5.6), where `rule_counters` reads the
    /// rules one by one instead.
    pub fn rule_counters_batched(
        &self,
        count: u32,
    ) -> Result<Option<Vec<Counter>>, DataplaneError> {
        summed_batched(
            &self.rule_stats,
            names::RULE_STATS,
            count.min(RULE_CAPACITY),
        )
    }

    /// Zeroes the counters of rule `number` (before the slot is given to a new order).
    pub fn reset_rule_counter(&mut self, number: u32) -> Result<(), DataplaneError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Map {
            op: "counting CPUs for",
            map: names::RULE_STATS,
            what: format!("rule {number}"),
            source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            })),
        })?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![Counter::default(); cpus])
            .expect("one value per CPU");
        let mut stats: PerCpuArray<&mut MapData, Counter> =
            PerCpuArray::try_from(&mut self.rule_stats).map_err(|source| {
                DataplaneError::MissingMap {
                    name: names::RULE_STATS,
                    source: Some(Box::new(source)),
                }
            })?;
        stats.set(number, zeros, 0).map_err(map_err(
            "resetting",
            names::RULE_STATS,
            format!("rule {number}"),
        ))
    }

    /// Sends redirected packets out of interface `ifindex`, re-addressed from `src_mac`
    /// to `dst_mac`. The port is written before the addresses are enabled.
    pub fn set_redirect(
        &mut self,
        ifindex: u32,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
    ) -> Result<(), DataplaneError> {
        let mut port = aya::maps::DevMap::try_from(&mut self.redirect_port).map_err(|source| {
            DataplaneError::MissingMap {
                name: names::REDIRECT_PORT,
                source: Some(Box::new(source)),
            }
        })?;
        port.set(0, ifindex, None, 0)
            .map_err(|source| DataplaneError::RedirectPort {
                ifindex,
                source: Box::new(source),
            })?;
        let target = RedirectTarget {
            dst_mac,
            src_mac,
            enabled: 1,
            _pad: [0; 3],
        };
        self.write_target(target)
    }

    /// Stops redirecting: packets of redirect orders are dropped.
    pub fn clear_redirect(&mut self) -> Result<(), DataplaneError> {
        self.write_target(RedirectTarget::default())
    }

    pub fn redirect_target(&self) -> Result<RedirectTarget, DataplaneError> {
        Array::<_, RedirectTarget>::try_from(&self.redirect_target)
            .map_err(|source| DataplaneError::MissingMap {
                name: names::REDIRECT_TARGET,
                source: Some(Box::new(source)),
            })?
            .get(&0, 0)
            .map_err(map_err("reading", names::REDIRECT_TARGET, "the target"))
    }

    fn write_target(&mut self, target: RedirectTarget) -> Result<(), DataplaneError> {
        Array::<_, RedirectTarget>::try_from(&mut self.redirect_target)
            .map_err(|source| DataplaneError::MissingMap {
                name: names::REDIRECT_TARGET,
                source: Some(Box::new(source)),
            })?
            .set(0, target, 0)
            .map_err(map_err("writing", names::REDIRECT_TARGET, "the target"))
    }

    /// Packets and bytes per verdict, summed over CPUs, indexed by `verdict` constants.
    pub fn verdict_counters(&self) -> Result<[Counter; verdict::COUNT as usize], DataplaneError> {
        let read = summed(&self.verdicts, names::VERDICT_STATS, verdict::COUNT, |i| {
            verdict::NAMES[i as usize].to_string()
        })?;
        let mut out = [Counter::default(); verdict::COUNT as usize];
        out.copy_from_slice(&read);
        Ok(out)
    }

    fn rules_ref(&self) -> Result<Array<&MapData, Rule>, DataplaneError> {
        Array::try_from(&self.rules).map_err(|source| DataplaneError::MissingMap {
            name: names::RULES,
            source: Some(Box::new(source)),
        })
    }

    fn rules_mut(&mut self) -> Result<Array<&mut MapData, Rule>, DataplaneError> {
        Array::try_from(&mut self.rules).map_err(|source| DataplaneError::MissingMap {
            name: names::RULES,
            source: Some(Box::new(source)),
        })
    }
}

/// Elements per batch system call.
const BATCH: usize = 8192;

fn key_size(family: Family) -> usize {
    4 + usize::from(family.bits() / 8)
}

/// Appends the LPM key of `prefix`: prefix length (host order), then the address bytes.
fn push_key(keys: &mut Vec<u8>, prefix: &Prefix) {
    keys.extend_from_slice(&u32::from(prefix.length()).to_ne_bytes());
    keys.extend_from_slice(&prefix.addr_bytes());
}

fn sum(values: impl Iterator<Item = Counter>) -> Counter {
    values.fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}

/// Elements `0..count` of the per-CPU counter array `map`, each summed over CPUs: in
/// batches, or one element at a time (`what` names one in errors) where the kernel has
/// no batch lookups for the map.
fn summed(
    map: &Map,
    name: &'static str,
    count: u32,
    what: impl Fn(u32) -> String,
) -> Result<Vec<Counter>, DataplaneError> {
    if let Some(out) = summed_batched(map, name, count)? {
        return Ok(out);
    }
    let stats = per_cpu(map, name)?;
    (0..count)
        .map(|i| {
            let values = stats
                .get(&i, 0)
                .map_err(map_err("reading", name, what(i)))?;
            Ok(sum(values.iter().copied()))
        })
        .collect()
}

/// [`summed`] by BPF_MAP_LOOKUP_BATCH; `None` where the kernel has none for the map.
fn summed_batched(
    map: &Map,
    name: &'static str,
    count: u32,
) -> Result<Option<Vec<Counter>>, DataplaneError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Map {
        op: "counting CPUs for",
        map: name,
        what: "the counters".into(),
        source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
            call: "nr_cpus",
            io_error: e,
        })),
    })?;
    // The kernel copies a per-CPU element as one value per possible CPU, each rounded
    // up to 8 bytes.
    let stride = size_of::<Counter>().next_multiple_of(8);
    let word = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let mut out = vec![Counter::default(); count as usize];
    let read = batch::lookup_array(batch::map_data(map).fd(), count, stride * cpus, |i, v| {
        if let Some(slot) = out.get_mut(i as usize) {
            *slot = sum(v.chunks_exact(stride).map(|c| Counter {
                packets: word(c, std::mem::offset_of!(Counter, packets)),
                bytes: word(c, std::mem::offset_of!(Counter, bytes)),
            }));
        }
    });
    match read {
        Ok(()) => Ok(Some(out)),
        Err(e) if batch::unsupported(&e) => Ok(None),
        Err(e) => Err(map_err("reading", name, "the counters")(
            MapError::SyscallError(aya::sys::SyscallError {
                call: "BPF_MAP_LOOKUP_BATCH",
                io_error: e,
            }),
        )),
    }
}

fn per_cpu<'a>(
    map: &'a Map,
    name: &'static str,
) -> Result<PerCpuArray<&'a MapData, Counter>, DataplaneError> {
    PerCpuArray::try_from(map).map_err(|source| DataplaneError::MissingMap {
        name,
        source: Some(Box::new(source)),
    })
}

fn trie_v4(map: &mut Map) -> Result<LpmTrie<&mut MapData, [u8; 4], Entry>, DataplaneError> {
    LpmTrie::try_from(map).map_err(|source| DataplaneError::MissingMap {
        name: names::V4_PREFIXES,
        source: Some(Box::new(source)),
    })
}

fn trie_v6(map: &mut Map) -> Result<LpmTrie<&mut MapData, [u8; 16], Entry>, DataplaneError> {
    LpmTrie::try_from(map).map_err(|source| DataplaneError::MissingMap {
        name: names::V6_PREFIXES,
        source: Some(Box::new(source)),
    })
}

fn trie_v4_ref(map: &Map) -> Result<LpmTrie<&MapData, [u8; 4], Entry>, DataplaneError> {
    LpmTrie::try_from(map).map_err(|source| DataplaneError::MissingMap {
        name: names::V4_PREFIXES,
        source: Some(Box::new(source)),
    })
}

fn trie_v6_ref(map: &Map) -> Result<LpmTrie<&MapData, [u8; 16], Entry>, DataplaneError> {
    LpmTrie::try_from(map).map_err(|source| DataplaneError::MissingMap {
        name: names::V6_PREFIXES,
        source: Some(Box::new(source)),
    })
}

impl Maps {
    /// Kernel memory of each map (the `memlock` line of its fdinfo), in bytes.
    pub fn memory(&self) -> Vec<(String, u64)> {
        let mut maps: Vec<&Map> = vec![
            &self.v4,
            &self.v6,
            &self.rules,
            &self.rule_stats,
            &self.verdicts,
            &self.redirect_port,
            &self.redirect_target,
            &self.fast.slots,
            &self.fast.long,
        ];
        maps.extend(self.fast.hint_maps());
        maps.into_iter()
            .filter_map(|m| {
                let data = batch::map_data(m);
                let name = data.info().ok()?.name_as_str()?.to_string();
                let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(data.fd()));
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
                let bytes = info
                    .lines()
                    .find_map(|l| l.strip_prefix("memlock:"))?
                    .trim()
                    .parse()
                    .ok()?;
                Some((name, bytes))
            })
            .collect()
    }
}
