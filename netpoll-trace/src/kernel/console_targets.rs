//! The console write's view of netconsole's targets (NC_TARGETS). The statistics
//! themselves are read by `device_stats`.

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, maps::Array};
use netpoll_trace_common::{NC_TARGET_SLOTS, maps};

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
