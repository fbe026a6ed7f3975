//! The two eBPF objects embedded in the binary (built by build.rs from netpoll-trace-ebpf)
//! and what every load of them sets first: the CPU-keyed maps' sizes. Below `object`
//! (loading) and `recorder` (whose pins, before 4.13, are read through the legacy object's
//! own maps), so that neither imports the other for them.

use std::fmt;

use aya::EbpfLoader;
use netpoll_trace_common::{loss, maps, per_cpu};

/// The programs, built by build.rs from netpoll-trace-ebpf.
static MODERN_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpoll-trace-ebpf"));
static LEGACY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpoll-trace-ebpf-legacy"));

/// Which of the two embedded objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Modern,
    Legacy,
}

impl ObjectKind {
    /// In the order `Auto` tries them.
    pub const ALL: [Self; 2] = [Self::Modern, Self::Legacy];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Legacy => "legacy",
        }
    }

    pub(crate) fn bytes(self) -> &'static [u8] {
        match self {
            Self::Modern => MODERN_OBJECT,
            Self::Legacy => LEGACY_OBJECT,
        }
    }

    /// The object has aya-log's AYA_LOGS map and AYA_LOG_LEVEL global.
    pub fn has_log(self) -> bool {
        self == Self::Modern
    }

    /// The object has fentry/fexit programs (the legacy one has kprobes only).
    pub fn has_fentry(self) -> bool {
        self == Self::Modern
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sizes the CPU-keyed maps for this machine's possible CPUs (the programs index them
/// by `bpf_get_smp_processor_id()`; per-CPU maps came in 4.6, and the legacy object
/// loads on 4.4): a slot per CPU, `loss::SLOTS` per CPU, `per_cpu::*` entries per CPU.
pub fn size_cpu_maps(loader: &mut EbpfLoader<'_>) {
    let cpus = aya::util::nr_cpus().map_or(1, u32::from);
    for name in [
        maps::POLL_CPU,
        maps::POLL_SCRATCH,
        maps::SEND_CPU,
        maps::SEND_SCRATCH,
    ] {
        loader.map_max_entries(name, cpus);
    }
    loader.map_max_entries(maps::LOSSES, loss::SLOTS * cpus);
    loader.map_max_entries(maps::POLL_STATS, per_cpu::DEVICES * cpus);
    loader.map_max_entries(maps::SEND_STATS, per_cpu::DEVICES * cpus);
    loader.map_max_entries(maps::COUNTERS, per_cpu::COUNTERS * cpus);
}

#[cfg(test)]
mod tests {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

    use super::*;

    fn parsed(kind: ObjectKind) -> object::File<'static> {
        object::File::parse(kind.bytes()).unwrap_or_else(|e| panic!("the {kind} object: {e}"))
    }

    /// aya parses every section it is handed and collects each one's relocations: the
    /// objects keep only what aya and the kernel use (build.rs `strip_debug`).
    #[test]
    fn the_objects_carry_no_dwarf_and_no_relocations_of_their_btf_ext() {
        for kind in ObjectKind::ALL {
            let obj = parsed(kind);
            let names: Vec<&str> = obj.sections().filter_map(|s| s.name().ok()).collect();
            assert!(
                names.contains(&".BTF") && names.contains(&".BTF.ext"),
                "{kind}: {names:?}"
            );
            for s in obj.sections() {
                let name = s.name().unwrap_or_default();
                assert!(!name.starts_with(".debug"), "{kind}: {name}");
                if name == ".BTF.ext" {
                    assert_eq!(s.relocations().count(), 0, "{kind}: relocations of {name}");
                }
            }
        }
    }

    /// Every function a program calls is copied into it by aya and loaded and checked by
    /// the kernel, executed or not: the modern object's only out-of-line functions are the
    /// set-up return's one log statement (one per context type: kprobe and fexit).
    #[test]
    fn the_programs_call_no_more_than_their_one_log_statement() {
        let obj = parsed(ObjectKind::Modern);
        let text = obj.section_by_name(".text").expect(".text").index();
        let called: Vec<String> = obj
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.section_index() == Some(text))
            .filter(|s| s.is_local())
            .filter_map(|s| s.name().ok().map(String::from))
            .collect();
        assert!(
            called.len() <= 2,
            "{} out-of-line functions: {called:?}",
            called.len()
        );
    }
}
