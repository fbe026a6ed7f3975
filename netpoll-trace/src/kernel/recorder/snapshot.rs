//! What a dump shows, read from the pins without attaching anything: raw, as the
//! programs left it (decoding, summing and diagnosis are the model's).

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Array, HashMap, Map};
use netpoll_trace_common::{
    CounterKey, CpuCounterKey, PollStats, RecorderMeta, SendStats, SetupEvent, loss, maps,
};

use super::{Found, MAPS, inspect, open};
use crate::kernel::device_stats;

/// Everything a dump shows, read from the pins without attaching anything.
pub struct Snapshot {
    pub meta: RecorderMeta,
    /// Ring entries by sequence number, oldest first.
    pub events: Vec<(u64, SetupEvent)>,
    /// Per-key totals over all CPUs.
    pub counters: Vec<(CounterKey, u64)>,
    /// Per `loss::*` slot, the total over all CPUs.
    pub losses: [u64; loss::SLOTS as usize],
    /// Per device, its per-CPU poll statistics.
    pub polls: Vec<Vec<PollStats>>,
    /// Per device, its per-CPU send-path statistics.
    pub sends: Vec<Vec<SendStats>>,
    pub links: Vec<String>,
    /// Kernel memory the pinned maps take (their fdinfo `memlock`).
    pub memlock_bytes: u64,
}

pub fn read(dir: &Path) -> Result<Snapshot> {
    let Found::Recorder(insp) = inspect(dir)? else {
        bail!(
            "no flight recorder at {} (nothing pinned); start one with `netpoll-trace agent` or `netpoll-trace watch --persist`",
            dir.display()
        );
    };
    // Every pinned map counts towards the memory; the ones a dump reads are used as opened.
    let mut memlock_bytes = 0;
    let mut open_counted = |name: &str| -> Result<Map> {
        let map = open(dir, name)?;
        memlock_bytes += memlock_of(&map).unwrap_or(0);
        Ok(map)
    };
    let ring: HashMap<_, u64, SetupEvent> = HashMap::try_from(open_counted(maps::RING)?)?;
    let mut events: Vec<(u64, SetupEvent)> = ring
        .iter()
        .collect::<Result<_, _>>()
        .context("reading RING")?;
    events.sort_by_key(|(seq, _)| *seq);

    let counters_map: HashMap<_, CpuCounterKey, u64> =
        HashMap::try_from(open_counted(maps::COUNTERS)?)?;
    let mut counters: Vec<(CounterKey, u64)> = Vec::new();
    for entry in counters_map.iter() {
        let (k, n) = entry.context("reading COUNTERS")?;
        match counters.iter_mut().find(|(key, _)| *key == k.key) {
            Some((_, total)) => *total += n,
            None => counters.push((k.key, n)),
        }
    }
    let loss_totals = losses(&open_counted(maps::LOSSES)?)?;
    let polls = device_stats::read(&open_counted(maps::POLL_STATS)?)?;
    let sends = device_stats::read(&open_counted(maps::SEND_STATS)?)?;
    let read = [
        maps::RING,
        maps::COUNTERS,
        maps::LOSSES,
        maps::POLL_STATS,
        maps::SEND_STATS,
    ];
    for m in MAPS.iter().filter(|m| !read.contains(&m.name)) {
        open_counted(m.name)?;
    }
    Ok(Snapshot {
        meta: insp.meta,
        events,
        counters,
        losses: loss_totals,
        polls,
        sends,
        links: insp.links,
        memlock_bytes,
    })
}

/// Each `loss::*` slot of a `LOSSES` map, summed over the CPUs.
pub fn losses(map: &Map) -> Result<[u64; loss::SLOTS as usize]> {
    // loss::SLOTS entries per CPU (no per-CPU maps before 4.6).
    let losses: Array<_, u64> = Array::try_from(map)?;
    let mut totals = [0u64; loss::SLOTS as usize];
    for (i, n) in losses.iter().enumerate() {
        totals[i % loss::SLOTS as usize] += n.context("reading LOSSES")?;
    }
    Ok(totals)
}

/// `losses` of the loaded programs.
pub fn losses_loaded(ebpf: &aya::Ebpf) -> Result<[u64; loss::SLOTS as usize]> {
    losses(
        ebpf.map(maps::LOSSES)
            .ok_or_else(|| anyhow::anyhow!("eBPF object has no {} map", maps::LOSSES))?,
    )
}

/// The `memlock` line of a map fd's fdinfo (bytes the kernel charges for it).
fn memlock_of(map: &Map) -> Option<u64> {
    let fd = match map {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerfEventArray(d) => d.fd(),
        _ => return None,
    };
    let text =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}
