//! `cargo xtask bpfcheck [OBJECT...]`: can an eBPF object load on Linux 4.14?
//!
//! A static check of the ELF, for CI (no 4.14 kernel here): the legacy object must
//! pass, the modern one (aya-log, fentry) fails. Per program: at most 4,096
//! instructions (BPF_MAXINSNS); no bpf-to-bpf call (4.16); no loop (a jump back into
//! the path that led to it; bounded loops: 5.3) and no unreachable instruction, as
//! 4.14's check_cfg walks them; only 4.14's helpers (and for kprobes only those it
//! offers them) and opcodes (BPF CPU v1/v2: no JMP32 class, 5.1; no atomic but XADD,
//! 5.12; no v4 sign-extending or byte-swap forms, 6.6); relocations only to maps.
//! Per object: ELF for BPF with e_flags 0, no global data sections (.data, .rodata,
//! .bss: 5.2), no BTF-defined `.maps`, only map types 4.14 has (no ring buffer, 5.8).
//! 4.9's rule on top (`stack_args`): a helper's map key or value, probe_read's or
//! get_current_comm's destination and perf output's data must be a stack pointer (4.9's
//! ARG_PTR_TO_MAP_KEY/VALUE, ARG_PTR_TO_STACK, ARG_PTR_TO_RAW_STACK; 4.10/4.11 let map
//! values in): a map value pointer there is refused ("R1 type=map_value_adj expected=fp").
//! The ELF is read through the `object` crate (aya's own reader): only headers, sections,
//! symbols and relocations are needed (`elf`); the per-program rules are in `program`.

mod elf;
mod program;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{build, cache};
use elf::{Report, check_for, parse};

/// The oldest kernel the check holds an object to: 4.9 (default; 4.14's rules and 4.9's
/// helper-argument and jump rules) or 4.4 (also: no per-CPU maps, 4.6; helpers up to
/// perf_event_output; no arithmetic on a pointer but r10 + constant, as 4.4's verifier
/// makes the result of any other pointer arithmetic a plain number, so a map value can
/// be reached only at constant offsets: PTR_TO_MAP_VALUE_ADJ came in 4.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Floor {
    K4_4,
    K4_9,
}

impl Floor {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "4.4" => Ok(Self::K4_4),
            "4.9" | "4.14" => Ok(Self::K4_9),
            other => bail!("--kernel {other}: the check knows 4.4 and 4.9 (which includes 4.14)"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::K4_4 => "Linux 4.4 rules: 4.9's, and no per-CPU maps or pointer arithmetic",
            Self::K4_9 => "Linux 4.14 rules, and 4.9's for helper arguments and jumps",
        }
    }
}

/// 4.4's last helper (perf_event_output) and last map type (perf_event_array).
const LAST_HELPER_4_4: i32 = 25;
const LAST_MAP_TYPE_4_4: u32 = 4;

/// 4.14's instruction limit per program (BPF_MAXINSNS, include/uapi/linux/bpf_common.h).
pub const MAX_INSNS: usize = 4096;

/// The helpers 4.14 has, indexed by id: the `__BPF_FUNC_MAPPER` list of
/// include/uapi/linux/bpf.h in Linux 4.14.325 (commit 62588ebe7), whose order gives
/// the ids. 0 (unspec) is no helper. A program type can call only some of these; the
/// kernel's loader says which, this check only rules out the newer ones.
pub const HELPERS_4_14: [&str; 54] = [
    "unspec",
    "map_lookup_elem",
    "map_update_elem",
    "map_delete_elem",
    "probe_read",
    "ktime_get_ns",
    "trace_printk",
    "get_prandom_u32",
    "get_smp_processor_id",
    "skb_store_bytes",
    "l3_csum_replace",
    "l4_csum_replace",
    "tail_call",
    "clone_redirect",
    "get_current_pid_tgid",
    "get_current_uid_gid",
    "get_current_comm",
    "get_cgroup_classid",
    "skb_vlan_push",
    "skb_vlan_pop",
    "skb_get_tunnel_key",
    "skb_set_tunnel_key",
    "perf_event_read",
    "redirect",
    "get_route_realm",
    "perf_event_output",
    "skb_load_bytes",
    "get_stackid",
    "csum_diff",
    "skb_get_tunnel_opt",
    "skb_set_tunnel_opt",
    "skb_change_proto",
    "skb_change_type",
    "skb_under_cgroup",
    "get_hash_recalc",
    "get_current_task",
    "probe_write_user",
    "current_task_under_cgroup",
    "skb_change_tail",
    "skb_pull_data",
    "csum_update",
    "set_hash_invalid",
    "get_numa_node_id",
    "skb_change_head",
    "xdp_adjust_head",
    "probe_read_str",
    "get_socket_cookie",
    "get_socket_uid",
    "set_hash",
    "setsockopt",
    "skb_adjust_room",
    "redirect_map",
    "sk_redirect_map",
    "sock_map_update",
];

/// The helpers 4.14 offers kprobe programs: kprobe_prog_func_proto and the
/// tracing_func_proto it falls back to (kernel/trace/bpf_trace.c, same commit).
pub const KPROBE_HELPERS_4_14: [&str; 20] = [
    "map_lookup_elem",
    "map_update_elem",
    "map_delete_elem",
    "probe_read",
    "ktime_get_ns",
    "tail_call",
    "get_current_pid_tgid",
    "get_current_task",
    "get_current_uid_gid",
    "get_current_comm",
    "trace_printk",
    "get_smp_processor_id",
    "get_numa_node_id",
    "perf_event_read",
    "probe_write_user",
    "current_task_under_cgroup",
    "get_prandom_u32",
    "probe_read_str",
    "perf_event_output",
    "get_stackid",
];

/// 4.14's `enum bpf_map_type` (same header), indexed by type.
pub const MAP_TYPES_4_14: [&str; 16] = [
    "unspec",
    "hash",
    "array",
    "prog_array",
    "perf_event_array",
    "percpu_hash",
    "percpu_array",
    "stack_trace",
    "cgroup_array",
    "lru_hash",
    "lru_percpu_hash",
    "lpm_trie",
    "array_of_maps",
    "hash_of_maps",
    "devmap",
    "sockmap",
];

/// BPF_MAP_TYPE_RINGBUF (5.8): named, as aya-log's map is the usual culprit.
const MAP_TYPE_RINGBUF: u32 = 27;

/// The section aya puts `bpf_map_def` maps in (type is their first u32).
const MAPS_SECTION: &str = "maps";

fn helper_name(id: i32) -> String {
    usize::try_from(id)
        .ok()
        .and_then(|i| HELPERS_4_14.get(i))
        .map_or_else(|| format!("#{id}"), |n| n.to_string())
}

fn map_type_name(kind: u32) -> String {
    match kind {
        MAP_TYPE_RINGBUF => "ringbuf".into(),
        k => MAP_TYPES_4_14
            .get(k as usize)
            .map_or_else(|| format!("type {k}"), |n| n.to_string()),
    }
}

/// Prints the report; returns whether the object passes.
fn print(path: &Path, r: &Report, floor: Floor) -> bool {
    println!("bpfcheck: {} ({})", path.display(), floor.label());
    for p in &r.programs {
        let helpers: Vec<_> = p.check.helpers.iter().map(|&h| helper_name(h)).collect();
        let verdict = if p.check.problems.is_empty() {
            "ok"
        } else {
            "FAIL"
        };
        println!(
            "  {:<4} {}/{}: {} insns, cpu {}, helpers: {}",
            verdict,
            p.section,
            p.name,
            p.check.insns,
            if p.check.needs_v2 { "v2" } else { "v1" },
            if helpers.is_empty() {
                "none".into()
            } else {
                helpers.join(", ")
            }
        );
        // The first dozen say enough; the modern object has hundreds.
        for (n, problem) in p.check.problems.iter().enumerate().take(12) {
            println!("         - {problem}");
            if n == 11 && p.check.problems.len() > 12 {
                println!("         - ... and {} more", p.check.problems.len() - 12);
            }
        }
    }
    let maps: Vec<_> = r
        .maps
        .iter()
        .map(|(n, k)| format!("{n} ({})", map_type_name(*k)))
        .collect();
    println!("  maps: {}", maps.join(", "));
    for problem in &r.problems {
        println!("  FAIL {problem}");
    }
    let ok = r.ok();
    println!(
        "bpfcheck: {}: {}",
        path.display(),
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

pub fn check_file(path: &Path, floor: Floor) -> Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let obj = parse(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Ok(print(path, &check_for(&obj, floor), floor))
}

/// `cargo xtask bpfcheck`: the given objects, or the legacy object the lab embeds.
pub fn run(objects: &[PathBuf], floor: Floor) -> Result<bool> {
    let objects = if objects.is_empty() {
        vec![legacy_object()?]
    } else {
        objects.to_vec()
    };
    let mut ok = true;
    for o in &objects {
        ok &= check_file(o, floor)?;
    }
    Ok(ok)
}

/// The legacy object of the static build the lab uses, built first if stale.
pub fn legacy_object() -> Result<PathBuf> {
    let binary = build::static_binary()?;
    // target/<triple>/release/netpoll-trace -> target/<triple>/release/build/netpoll-trace-*/out/
    let build_dir = binary
        .parent()
        .map(|d| d.join("build"))
        .unwrap_or_else(|| cache::workspace_root().join("target"));
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(&build_dir)
        .with_context(|| format!("listing {}", build_dir.display()))?
        .flatten()
    {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("netpoll-trace-")
        {
            continue;
        }
        let candidate = entry.path().join("out").join("netpoll-trace-ebpf-legacy");
        if let Ok(modified) = candidate.metadata().and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            newest = Some((modified, candidate));
        }
    }
    match newest {
        Some((_, path)) => Ok(path),
        None => bail!(
            "no netpoll-trace-ebpf-legacy under {} after the build",
            build_dir.display()
        ),
    }
}
