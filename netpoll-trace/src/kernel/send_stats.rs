//! Reading the programs' per-device send-path statistics (SEND_STATS), from the
//! running object or from the recorder's pin: raw per-CPU values, summed by the model.

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map},
};
use netpoll_trace_common::{CpuDev, NC_TARGET_SLOTS, SendStats, maps};

/// Every device's per-CPU statistics in `map` (a SEND_STATS map).
pub fn read(map: &Map) -> Result<Vec<Vec<SendStats>>> {
    // Keyed by CPU and device (no per-CPU maps before 4.6): one entry per CPU that saw it.
    let stats: HashMap<_, CpuDev, SendStats> = HashMap::try_from(map)?;
    let mut out: Vec<(u64, Vec<SendStats>)> = Vec::new();
    for entry in stats.iter() {
        let (key, value) = entry.context("reading SEND_STATS")?;
        match out.iter_mut().find(|(dev, _)| *dev == key.dev) {
            Some((_, values)) => values.push(value),
            None => out.push((key.dev, vec![value])),
        }
    }
    Ok(out.into_iter().map(|(_, values)| values).collect())
}

/// The statistics of a loaded object.
pub fn read_loaded(ebpf: &Ebpf) -> Result<Vec<Vec<SendStats>>> {
    read(
        ebpf.map(maps::SEND_STATS)
            .ok_or_else(|| anyhow!("eBPF object has no {} map", maps::SEND_STATS))?,
    )
}

/// Tells the console write's probe which netpolls to check (`NC_TARGETS`): `netpolls`
/// in the first slots, the rest cleared.
pub fn watch_targets(ebpf: &mut Ebpf, netpolls: &[u64]) -> Result<()> {
    let map = ebpf
        .map_mut(maps::NC_TARGETS)
        .ok_or_else(|| anyhow!("eBPF object has no {} map", maps::NC_TARGETS))?;
    let mut slots: Array<_, u64> = Array::try_from(map)?;
    for i in 0..NC_TARGET_SLOTS {
        let np = netpolls.get(i as usize).copied().unwrap_or(0);
        slots
            .set(i, &np, 0)
            .with_context(|| format!("writing {}[{i}]", maps::NC_TARGETS))?;
    }
    Ok(())
}
