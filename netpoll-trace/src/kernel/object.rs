//! The embedded eBPF object and loading it: maps created (or opened from the flight
//! recorder's pins), this kernel's struct layout written to CONFIG. Attaching is
//! `attach`'s job.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, EbpfLoader, maps::Array};
use netpoll_trace_common::{Config, maps};

use super::{clock, profile::stage, recorder};

/// The programs, built by build.rs from netpoll-trace-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpoll-trace-ebpf"));

/// Where the flight recorder lives and how the programs feed it.
pub struct RecorderPlan {
    pub dir: PathBuf,
    /// Capacity of the ring when the pins are created (an existing ring keeps its own).
    pub ring_size: u32,
    /// Pin the links too, so recording outlives this process.
    pub persist: bool,
    /// Programs whose links an earlier process pinned: they are recording into
    /// these maps already, so nothing is attached a second time.
    pub reuse_links: Vec<String>,
}

/// Loads the object (maps from the recorder's pins when there is one) and writes
/// the configuration; attaches nothing.
pub fn load(config: &Config, recorder: Option<&RecorderPlan>) -> Result<Ebpf> {
    // The programs' log statements are switched off in the kernel unless the
    // userspace logger would show them (-v, -vv or RUST_LOG): quiet and cheap.
    let level: u8 = match log::max_level() {
        log::LevelFilter::Off => 0,
        log::LevelFilter::Error => 1,
        log::LevelFilter::Warn => 2,
        log::LevelFilter::Info => 3,
        log::LevelFilter::Debug => 4,
        log::LevelFilter::Trace => 5,
    };
    stage("loading the object");
    let mut loader = EbpfLoader::new();
    loader.override_global("AYA_LOG_LEVEL", &level, true);
    if let Some(r) = recorder {
        std::fs::create_dir_all(&r.dir).with_context(|| format!("creating pin directory {}", r.dir.display()))?;
        // aya opens a map already pinned at its path and pins a new one otherwise.
        for m in &recorder::MAPS {
            loader.map_pin_path(m.name, r.dir.join(m.name));
        }
        loader.map_max_entries(maps::RING, r.ring_size);
    }
    let mut ebpf = loader.load(EBPF_OBJECT).map_err(|e| {
        anyhow!("loading the eBPF object failed: {e}; run `netpoll-trace check` to see what this kernel lacks")
    })?;
    let mut cfg: Array<_, Config> = Array::try_from(
        ebpf.map_mut(maps::CONFIG).ok_or_else(|| anyhow!("eBPF object has no {} map", maps::CONFIG))?,
    )?;
    cfg.set(0, *config, 0).context("writing struct offsets to the CONFIG map")?;
    if let Some(r) = recorder {
        let meta = ebpf.map_mut(maps::META).ok_or_else(|| anyhow!("eBPF object has no {} map", maps::META))?;
        recorder::init_meta(meta, r.ring_size, clock::monotonic_ns())?;
    }
    stage("object loaded (aya parsed the kernel BTF in EbpfLoader::new)");
    Ok(ebpf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The maps of the built object are exactly those `netpoll_trace_common::maps` names
    /// (plus aya-log's and the compiler's data sections): a map renamed on one side only
    /// fails here, not in a guest.
    #[test]
    fn the_object_defines_exactly_the_named_maps() {
        let obj = aya_obj::Object::parse(EBPF_OBJECT).expect("the embedded object parses");
        let mut ours: Vec<&str> = obj
            .maps
            .keys()
            .map(String::as_str)
            .filter(|n| !n.starts_with('.') && !n.starts_with("AYA_"))
            .collect();
        ours.sort();
        let mut named = maps::ALL.to_vec();
        named.sort();
        assert_eq!(ours, named);
    }
}
