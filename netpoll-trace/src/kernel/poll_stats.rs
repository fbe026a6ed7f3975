//! Reading the programs' per-device `netpoll_poll_dev` statistics (POLL_STATS), from
//! the running object or from the recorder's pin: raw per-CPU values, summed by the model.

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    maps::{HashMap, Map},
};
use netpoll_trace_common::{CpuDev, PollStats, maps};

/// Every device's per-CPU statistics in `map` (a POLL_STATS map).
pub fn read(map: &Map) -> Result<Vec<Vec<PollStats>>> {
    // Keyed by CPU and device (no per-CPU maps before 4.6): one entry per CPU that saw it.
    let stats: HashMap<_, CpuDev, PollStats> = HashMap::try_from(map)?;
    let mut out: Vec<(u64, Vec<PollStats>)> = Vec::new();
    for entry in stats.iter() {
        let (key, value) = entry.context("reading POLL_STATS")?;
        match out.iter_mut().find(|(dev, _)| *dev == key.dev) {
            Some((_, values)) => values.push(value),
            None => out.push((key.dev, vec![value])),
        }
    }
    Ok(out.into_iter().map(|(_, values)| values).collect())
}

/// The statistics of a loaded object.
pub fn read_loaded(ebpf: &Ebpf) -> Result<Vec<Vec<PollStats>>> {
    read(
        ebpf.map(maps::POLL_STATS)
            .ok_or_else(|| anyhow!("eBPF object has no {} map", maps::POLL_STATS))?,
    )
}
