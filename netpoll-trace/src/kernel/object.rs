//! The embedded eBPF objects and loading one: maps created (or opened from the flight
//! recorder's pins), this kernel's struct layout written to CONFIG. Attaching, and
//! choosing the object by trying, is `attach`'s job.
//!
//! Two objects, same map and program names and layouts (`netpoll_trace_common`):
//! - modern: fentry/fexit and kprobes, aya-log (a ring buffer, 5.8) and global data (5.2);
//! - legacy: kprobes only, no aya-log, no global data, no bpf-to-bpf calls: loads on 4.4 (no per-CPU maps either).

use std::{fmt, path::PathBuf};

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, EbpfLoader, maps::Array};
use netpoll_trace_common::{Config, maps};

pub use super::embedded::{ObjectKind, size_cpu_maps};
use super::{clock, profile::stage, recorder};

/// What the user asked for (`--object`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectChoice {
    /// The modern object, else (when the kernel refuses to load it) the legacy one.
    Auto,
    Only(ObjectKind),
}

/// How far loading got before the kernel refused: what a fallback can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The object as a whole (a map the kernel cannot create, global data): no program
    /// of this object will load.
    Object,
    /// One program (the verifier): another method's programs, or the other object, may load.
    Program,
}

/// The kernel refused to load (part of) an object; carries the one-line reason.
#[derive(Debug)]
pub struct LoadRefused {
    pub refusal: Refusal,
    pub reason: String,
}

impl fmt::Display for LoadRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for LoadRefused {}

/// How far a failed load got, when the error is a load failure (None: something else,
/// e.g. attaching, failed).
pub fn refusal(e: &anyhow::Error) -> Option<Refusal> {
    e.downcast_ref::<LoadRefused>().map(|r| r.refusal)
}

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
/// the configuration; attaches nothing, and loads no program (the attachers do).
pub fn load(kind: ObjectKind, config: &Config, recorder: Option<&RecorderPlan>) -> Result<Ebpf> {
    let mut ebpf = load_maps(kind, recorder)?;
    write_config(&mut ebpf, config)?;
    Ok(ebpf)
}

/// The target of the programs' log records (aya-log sends the eBPF crate's module path).
const EBPF_LOG_TARGET: &str = "netpoll_trace_ebpf";

/// AYA_LOG_LEVEL for the programs: the most verbose level `enabled` lets through for
/// their target, 0 for none. A log statement the level lets through is walked by the
/// verifier on every path to it, so a start-up profile (`RUST_LOG=warn,
/// netpoll_trace::kernel::profile=debug`) measures the programs a default run loads.
fn ebpf_log_level(enabled: impl Fn(log::Level) -> bool) -> u8 {
    use log::Level::*;
    [Trace, Debug, Info, Warn, Error]
        .into_iter()
        .find(|&l| enabled(l))
        .map_or(0, |l| l as u8)
}

/// Loads the object and creates (or opens) its maps, without the configuration: what
/// start-up can do while the struct offsets are still being resolved.
pub fn load_maps(kind: ObjectKind, recorder: Option<&RecorderPlan>) -> Result<Ebpf> {
    // The programs' log statements are switched off in the kernel unless the
    // userspace logger would show them (-v, -vv or RUST_LOG naming their target): quiet
    // and cheap, and what the verifier walks does not change with userspace's own level.
    let level = ebpf_log_level(|l| log::log_enabled!(target: EBPF_LOG_TARGET, l));
    stage(&format!("loading the {kind} object"));
    let mut loader = EbpfLoader::new();
    size_cpu_maps(&mut loader);
    // Not required: the legacy object has no globals at all.
    loader.override_global("AYA_LOG_LEVEL", &level, false);
    // Pins aya cannot reopen (before 4.13 it has no BPF_OBJ_GET_INFO_BY_FD): adopted below.
    let mut adopt = Vec::new();
    if let Some(r) = recorder {
        std::fs::create_dir_all(&r.dir)
            .with_context(|| format!("creating pin directory {}", r.dir.display()))?;
        // aya opens a map already pinned at its path and pins a new one otherwise.
        let aya_reopens = recorder::pins::info_by_fd_supported();
        for m in &recorder::MAPS {
            let pin = r.dir.join(m.name);
            if !aya_reopens && pin.exists() {
                adopt.push((m.name, pin));
            } else {
                loader.map_pin_path(m.name, pin);
            }
        }
        loader.map_max_entries(maps::RING, r.ring_size);
    } else {
        // No recorder: the programs never write the ring (META stays unset), and a hash
        // map's entries are allocated when it is made (1,024 events, ~200 KiB of kernel
        // memory zeroed at every start-up).
        loader.map_max_entries(maps::RING, 1);
    }
    let mut ebpf = loader.load(kind.bytes()).map_err(|e| {
        anyhow::Error::new(LoadRefused {
            refusal: Refusal::Object,
            reason: format!(
                "loading the {kind} eBPF object failed: {e}; run `netpoll-trace check` to see what this kernel lacks"
            ),
        })
    })?;
    // No program is loaded yet, so every program will refer to the pinned maps.
    for (name, pin) in &adopt {
        let map = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("eBPF object has no {name} map"))?;
        recorder::pins::adopt(map, pin, false).map_err(|e| {
            anyhow::Error::new(LoadRefused {
                refusal: Refusal::Object,
                reason: format!("reusing the flight recorder's pins failed: {e:#}"),
            })
        })?;
    }
    if let Some(r) = recorder {
        let meta = ebpf
            .map_mut(maps::META)
            .ok_or_else(|| anyhow!("eBPF object has no {} map", maps::META))?;
        recorder::init_meta(meta, r.ring_size, clock::monotonic_ns())?;
    }
    stage(&format!("{kind} object loaded"));
    Ok(ebpf)
}

/// Writes this kernel's struct layout for the programs (before any of them is attached).
pub fn write_config(ebpf: &mut Ebpf, config: &Config) -> Result<()> {
    let mut cfg: Array<_, Config> = Array::try_from(
        ebpf.map_mut(maps::CONFIG)
            .ok_or_else(|| anyhow!("eBPF object has no {} map", maps::CONFIG))?,
    )?;
    cfg.set(0, config, 0)
        .context("writing struct offsets to the CONFIG map")
}

/// Sets `flag` (a `config_flags` bit) in the CONFIG map the programs read.
pub fn set_config_flag(ebpf: &mut Ebpf, flag: u32) -> Result<()> {
    let mut cfg: Array<_, Config> = Array::try_from(
        ebpf.map_mut(maps::CONFIG)
            .ok_or_else(|| anyhow!("eBPF object has no {} map", maps::CONFIG))?,
    )?;
    let mut c = cfg.get(&0, 0).context("reading the CONFIG map")?;
    c.flags |= flag;
    cfg.set(0, &c, 0).context("writing the CONFIG map")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The maps of each built object are exactly those `netpoll_trace_common::maps` names
    /// (plus, in the modern one only, aya-log's and the compiler's data sections): a map
    /// renamed on one side only fails here, not in a guest.
    #[test]
    fn the_programs_log_at_the_level_their_own_target_is_shown() {
        assert_eq!(ebpf_log_level(|_| false), 0);
        assert_eq!(ebpf_log_level(|l| l <= log::Level::Warn), 2);
        assert_eq!(ebpf_log_level(|l| l <= log::Level::Debug), 4);
        assert_eq!(ebpf_log_level(|_| true), 5);
    }

    #[test]
    fn the_object_defines_exactly_the_named_maps() {
        for kind in ObjectKind::ALL {
            let obj = aya_obj::Object::parse(kind.bytes())
                .unwrap_or_else(|e| panic!("the {kind} object parses: {e}"));
            let all: Vec<&str> = obj.maps.keys().map(String::as_str).collect();
            let mut ours: Vec<&str> = all
                .iter()
                .copied()
                .filter(|n| !n.starts_with('.') && !n.starts_with("AYA_"))
                .collect();
            ours.sort();
            let mut named = maps::ALL.to_vec();
            named.sort();
            assert_eq!(ours, named, "{kind} object");
            // The legacy object must have neither aya-log's map nor global data (4.14
            // has no ring buffer and no global data): the loader relies on it.
            let extra = all
                .iter()
                .any(|n| n.starts_with('.') || n.starts_with("AYA_"));
            assert_eq!(
                extra,
                kind.has_log(),
                "{kind} object's aya-log and data maps: {all:?}"
            );
        }
    }

    /// The programs of each built object are exactly those `netpoll_trace_common::programs`
    /// names: every one in the modern object, the kprobe ones (`KPROBE`) in the legacy
    /// object. A Rust function's name cannot be a constant, so the eBPF side writes each
    /// name once more: one renamed on one side only fails here, not in a guest.
    #[test]
    fn the_object_defines_exactly_the_named_programs() {
        use netpoll_trace_common::programs;
        for kind in ObjectKind::ALL {
            let obj = aya_obj::Object::parse(kind.bytes())
                .unwrap_or_else(|e| panic!("the {kind} object parses: {e}"));
            let ours: Vec<&str> = obj.programs.keys().map(String::as_str).collect();
            let (table, named) = if kind.has_fentry() {
                ("ALL", &programs::ALL[..])
            } else {
                ("KPROBE", &programs::KPROBE[..])
            };
            let lacks: Vec<&str> = named
                .iter()
                .copied()
                .filter(|n| !ours.contains(n))
                .collect();
            let unnamed: Vec<&str> = ours
                .iter()
                .copied()
                .filter(|n| !named.contains(n))
                .collect();
            assert!(
                lacks.is_empty() && unnamed.is_empty(),
                "the {kind} object lacks {lacks:?} of programs::{table} and has {unnamed:?}, which it does not name"
            );
        }
    }

    /// Both objects have the kprobe programs of every target; only the modern one has
    /// fentry programs (`has_fentry`), so `--object legacy --attach fentry` is refused
    /// before anything loads.
    #[test]
    fn the_objects_have_the_programs_their_methods_need() {
        use crate::kernel::targets::TARGETS;
        for kind in ObjectKind::ALL {
            let obj = aya_obj::Object::parse(kind.bytes()).unwrap();
            let has = |p: &str| obj.programs.contains_key(p);
            for t in &TARGETS {
                assert!(
                    has(t.kprobe.0) && t.kprobe.1.is_none_or(has),
                    "{kind} lacks {:?}",
                    t.kprobe
                );
                // A module's function has kprobes only, in both objects.
                assert_eq!(
                    t.fentry.0.is_none_or(has) && t.fentry.1.is_none_or(has),
                    kind.has_fentry() || t.module.is_some(),
                    "{kind} and {:?}",
                    t.fentry
                );
            }
        }
    }
}
