//! The programs' per-device statistics (POLL_STATS, SEND_STATS), from the running
//! object or from the recorder's pin: raw per-CPU values, summed by the model. A
//! device's entries are keyed by CPU, address and ifindex (`CpuDev`), so a device
//! re-created at a freed address is a new device; `retire` deletes an unregistered
//! device's entries, which would otherwise fill the map.

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, Pod,
    maps::{HashMap, Map, MapData},
};
use netpoll_trace_common::CpuDev;

/// A device's identity in the statistics maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceKey {
    /// The `struct net_device *`.
    pub dev: u64,
    pub ifindex: i32,
}

/// Every device's per-CPU values in `map` (POLL_STATS or SEND_STATS), one entry per
/// device, in the order first seen.
pub fn read<V: Pod>(map: &Map) -> Result<Vec<Vec<V>>> {
    let stats: HashMap<_, CpuDev, V> = HashMap::try_from(map)?;
    let mut out: Vec<(DeviceKey, Vec<V>)> = Vec::new();
    for entry in stats.iter() {
        let (key, value) = entry.context("reading a device statistics map")?;
        let id = DeviceKey {
            dev: key.dev,
            ifindex: key.ifindex,
        };
        match out.iter_mut().find(|(k, _)| *k == id) {
            Some((_, values)) => values.push(value),
            None => out.push((id, vec![value])),
        }
    }
    Ok(out.into_iter().map(|(_, values)| values).collect())
}

/// The map `name` of a loaded object.
pub fn map<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Map> {
    ebpf.map(name)
        .ok_or_else(|| anyhow!("eBPF object has no {name} map"))
}

/// Removes `device`'s entries (every CPU's) from the map `name` and returns their
/// last values: its counts end where its identity ends.
pub fn retire<V: Pod>(ebpf: &mut Ebpf, name: &str, device: DeviceKey) -> Result<Vec<V>> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no {name} map"))?;
    let mut stats: HashMap<&mut MapData, CpuDev, V> = HashMap::try_from(map)?;
    let mine: Vec<CpuDev> = stats
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.dev == device.dev && k.ifindex == device.ifindex)
        .collect();
    let mut values = Vec::with_capacity(mine.len());
    for key in mine {
        // Gone already (a racing delete): nothing to keep.
        if let Ok(v) = stats.get(&key, 0) {
            values.push(v);
        }
        stats
            .remove(&key)
            .or_else(|e| match e {
                aya::maps::MapError::KeyNotFound => Ok(()),
                e => Err(e),
            })
            .with_context(|| format!("deleting a statistics entry of {name}"))?;
    }
    Ok(values)
}
