//! Reading the programs' per-device `netpoll_poll_dev` statistics (POLL_STATS), from
//! the running object or from the recorder's pin: raw per-CPU values, summed by the model.

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Map, PerCpuHashMap},
};
use netpoll_trace_common::{PollStats, maps};

/// Every device's per-CPU statistics in `map` (a POLL_STATS map).
pub fn read(map: &Map) -> Result<Vec<Vec<PollStats>>> {
    let stats: PerCpuHashMap<_, u64, PollStats> = PerCpuHashMap::try_from(map)?;
    let mut out = Vec::new();
    for entry in stats.iter() {
        let (_dev, values) = entry.context("reading POLL_STATS")?;
        out.push(values.to_vec());
    }
    Ok(out)
}

/// The statistics of a loaded object.
pub fn read_loaded(ebpf: &Ebpf) -> Result<Vec<Vec<PollStats>>> {
    read(
        ebpf.map(maps::POLL_STATS)
            .ok_or_else(|| anyhow!("eBPF object has no {} map", maps::POLL_STATS))?,
    )
}
