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
//! symbols and relocations are needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use object::LittleEndian;
use object::elf;
use object::read::elf::{FileHeader as _, Rel as _, SectionHeader as _, Sym as _};

use crate::{build, cache};

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

// Instruction classes and fields (include/uapi/linux/bpf.h, bpf_common.h).
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const CLASS_ALU64: u8 = 0x07;
const LDDW: u8 = 0x18;
const MODE_MEM: u8 = 0x60;
const MODE_MEMSX: u8 = 0x80;
const MODE_ATOMIC: u8 = 0xc0;
const SIZE_W: u8 = 0x00;
const SIZE_DW: u8 = 0x18;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
const OP_JSLE: u8 = 0xd0;
const OP_ARSH: u8 = 0xc0;
const OP_END: u8 = 0xd0;
/// JLT, JLE, JSLT, JSLE: BPF CPU v2, Linux 4.14 (not 4.9).
const V2_JUMPS: [u8; 4] = [0xa0, 0xb0, 0xc0, 0xd0];
/// lddw source registers: 0 a constant, 1 a map fd (BPF_PSEUDO_MAP_FD); the others
/// (map value, BTF id, function) came after 4.14.
const LDDW_SRC_MAX: u8 = 1;

/// One 8-byte instruction: opcode, dst/src registers, offset, immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    #[cfg(test)]
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    fn decode(b: &[u8]) -> Self {
        Self {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

pub fn decode(bytes: &[u8]) -> Vec<Insn> {
    bytes
        .as_chunks::<8>()
        .0
        .iter()
        .map(|c| Insn::decode(c))
        .collect()
}

/// What one program needs of the kernel, and what 4.14 would refuse.
#[derive(Debug, Default)]
pub struct ProgramCheck {
    pub insns: usize,
    pub helpers: BTreeSet<i32>,
    /// Uses JLT/JLE/JSLT/JSLE: BPF CPU v2 (4.14 has them, 4.9 does not).
    pub needs_v2: bool,
    pub problems: Vec<String>,
}

/// The per-program rules, on the program's instructions alone.
#[cfg(test)]
pub fn check_program(insns: &[Insn]) -> ProgramCheck {
    check_program_for(insns, Floor::K4_9)
}

/// `check_program` held to `floor`'s rules.
pub fn check_program_for(insns: &[Insn], floor: Floor) -> ProgramCheck {
    let mut c = ProgramCheck {
        insns: insns.len(),
        ..Default::default()
    };
    if insns.len() > MAX_INSNS {
        c.problems.push(format!(
            "{} instructions, more than 4.14's {MAX_INSNS}",
            insns.len()
        ));
    }
    // Where control can go after each instruction; None for the second half of a lddw.
    let mut successors: Vec<Option<Vec<usize>>> = vec![None; insns.len()];
    let mut i = 0;
    while i < insns.len() {
        let (width, next) = check_insn(&mut c, insns, i);
        successors[i] = Some(next);
        i += width;
    }
    check_cfg(&mut c, &successors);
    if floor == Floor::K4_4 {
        for &h in &c.helpers {
            if h > LAST_HELPER_4_4 {
                c.problems
                    .push(format!("helper {}: not in 4.4", helper_name(h)));
            }
        }
    }
    if c.problems.is_empty() {
        stack_args(&mut c, insns, &successors, floor);
    }
    c
}

/// The helpers whose pointer arguments 4.9 takes only from the stack, and those
/// arguments' registers (Linux 4.9.337: kernel/bpf/helpers.c, kernel/trace/bpf_trace.c,
/// check_func_arg in kernel/bpf/verifier.c): map_lookup/delete's key, map_update's key
/// and value, probe_read's and get_current_comm's destination (ARG_PTR_TO_RAW_STACK),
/// trace_printk's format and perf_event_output's data (ARG_PTR_TO_STACK). probe_read_str
/// (4.11) is listed for the same destination.
const STACK_ARGS_4_9: [(i32, &[u8]); 8] = [
    (1, &[2]),
    (2, &[2, 3]),
    (3, &[2]),
    (4, &[1]),
    (6, &[1]),
    (16, &[1]),
    (25, &[4]),
    (45, &[1]),
];

/// What a register or a spilled stack slot may hold: a set of these bits.
mod may {
    pub const SCALAR: u8 = 1;
    pub const STACK: u8 = 2;
    pub const MAP_VALUE: u8 = 4;
    pub const CTX: u8 = 8;
    pub const MAP: u8 = 16;
    /// r10 itself or a copy (4.4's FRAME_PTR, the only pointer it lets arithmetic keep).
    pub const FRAME: u8 = 32;
}

/// The registers' and r10-relative 8-byte spill slots' possible kinds before an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kinds {
    regs: [u8; 11],
    slots: std::collections::BTreeMap<i16, u8>,
}

impl Kinds {
    /// Joins `other` in; true if anything changed. A slot one side lacks holds a scalar there.
    fn join(&mut self, other: &Kinds) -> bool {
        let before = self.clone();
        for (r, o) in self.regs.iter_mut().zip(other.regs) {
            *r |= o;
        }
        let keys: BTreeSet<i16> = self
            .slots
            .keys()
            .chain(other.slots.keys())
            .copied()
            .collect();
        for k in keys {
            let a = self.slots.get(&k).copied().unwrap_or(may::SCALAR);
            let b = other.slots.get(&k).copied().unwrap_or(may::SCALAR);
            self.slots.insert(k, a | b);
        }
        *self != before
    }

    /// A store of `size` bytes at r10+`off` overwrites every slot it overlaps.
    fn clobber(&mut self, off: i16, size: i16) {
        let (lo, hi) = (i32::from(off), i32::from(off) + i32::from(size));
        self.slots
            .retain(|&s, _| i32::from(s) + 8 <= lo || i32::from(s) >= hi);
    }
}

/// What a set of kinds is, for a message.
fn describe(kinds: u8) -> String {
    let names = [
        (may::MAP_VALUE, "a map value"),
        (may::STACK, "a stack pointer"),
        (may::FRAME, "the frame pointer"),
        (may::CTX, "the context"),
        (may::MAP, "a map"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| kinds & b != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("which may hold {}", v.join(" or "))
}

/// 4.9's rule for helper pointer arguments, by a forward data-flow over the program:
/// which kinds of pointer may reach each call's argument registers on some path
/// (registers copied, offset by arithmetic, spilled to and filled from the stack; a
/// map_lookup_elem result is a map value). A map value pointer is reported; the real
/// verifier walks each path, so any path that passes one is refused.
fn stack_args(
    c: &mut ProgramCheck,
    insns: &[Insn],
    successors: &[Option<Vec<usize>>],
    floor: Floor,
) {
    let mut state: Vec<Option<Kinds>> = vec![None; insns.len()];
    let mut entry = Kinds {
        regs: [may::SCALAR; 11],
        slots: Default::default(),
    };
    entry.regs[1] = may::CTX;
    entry.regs[10] = may::FRAME;
    if insns.is_empty() {
        return;
    }
    state[0] = Some(entry);
    let mut work = vec![0usize];
    let mut reported = BTreeSet::new();
    while let Some(i) = work.pop() {
        let Some(mut k) = state[i].clone() else {
            continue;
        };
        let insn = insns[i];
        let class = insn.code & 0x07;
        let (dst, src) = (insn.dst as usize, insn.src as usize);
        if dst > 10 || src > 10 {
            continue; // not a valid register: the kernel refuses it anyway
        }
        match class {
            CLASS_LD if insn.code == LDDW => {
                k.regs[dst] = if insn.src == 1 { may::MAP } else { may::SCALAR };
            }
            CLASS_LDX => {
                k.regs[dst] = if src == 10 && insn.code & 0x18 == SIZE_DW {
                    k.slots.get(&insn.off).copied().unwrap_or(may::SCALAR)
                } else {
                    may::SCALAR
                };
            }
            CLASS_ST | CLASS_STX if dst == 10 => {
                let size = match insn.code & 0x18 {
                    SIZE_DW => 8,
                    SIZE_W => 4,
                    0x08 => 2,
                    _ => 1,
                };
                let spill = class == CLASS_STX && insn.code & 0xe0 == MODE_MEM && size == 8;
                k.clobber(insn.off, size);
                if spill {
                    k.slots.insert(insn.off, k.regs[src]);
                }
            }
            CLASS_ALU | CLASS_ALU64 => {
                let op = insn.code & 0xf0;
                let by_reg = insn.code & 0x08 != 0;
                const MOV: u8 = 0xb0;
                const ADD: u8 = 0x00;
                const SUB: u8 = 0x10;
                let pointers = !may::SCALAR;
                let frame_plus_k =
                    class == CLASS_ALU64 && op == ADD && !by_reg && k.regs[dst] == may::FRAME;
                if floor == Floor::K4_4 && op != MOV && !frame_plus_k {
                    let culprit = if k.regs[dst] & pointers != 0 {
                        Some((dst, k.regs[dst]))
                    } else if by_reg && k.regs[src] & pointers != 0 {
                        Some((src, k.regs[src]))
                    } else {
                        None
                    };
                    if let Some((r, kinds)) = culprit
                        && reported.insert((i, 100 + r as u8))
                    {
                        c.problems.push(format!(
                            "insn {i}: arithmetic on R{r}, {}; 4.4 keeps a pointer only through r10 + constant (map value offsets: 4.9)",
                            describe(kinds)
                        ));
                    }
                }
                k.regs[dst] = match op {
                    _ if class == CLASS_ALU => may::SCALAR,
                    MOV if by_reg => k.regs[src],
                    _ if frame_plus_k => may::STACK,
                    // The frame pointer moved is a stack pointer.
                    ADD | SUB if k.regs[dst] & pointers != 0 => {
                        let moved_frame = if k.regs[dst] & may::FRAME != 0 {
                            may::STACK
                        } else {
                            0
                        };
                        (k.regs[dst] & !may::FRAME) | moved_frame
                    }
                    ADD if by_reg && k.regs[src] & pointers != 0 => k.regs[src],
                    _ => may::SCALAR,
                };
            }
            CLASS_JMP if insn.code & 0xf0 == OP_CALL && insn.src == 0 => {
                if let Some((_, args)) = STACK_ARGS_4_9.iter().find(|(h, _)| *h == insn.imm) {
                    for &r in *args {
                        if k.regs[r as usize] & may::MAP_VALUE != 0 && reported.insert((i, r)) {
                            c.problems.push(format!(
                                "insn {i}: helper {} takes R{r} from a map value; 4.9 takes only a stack pointer there (\"R{r} type=map_value_adj expected=fp\" when offset): copy through the stack",
                                helper_name(insn.imm)
                            ));
                        }
                    }
                }
                for r in 1..=5 {
                    k.regs[r] = may::SCALAR;
                }
                k.regs[0] = if insn.imm == 1 {
                    may::MAP_VALUE
                } else {
                    may::SCALAR
                };
            }
            _ => {}
        }
        for &t in successors[i].as_deref().unwrap_or_default() {
            if t >= insns.len() {
                continue;
            }
            let changed = match &mut state[t] {
                Some(s) => s.join(&k),
                slot @ None => {
                    *slot = Some(k.clone());
                    true
                }
            };
            if changed {
                work.push(t);
            }
        }
    }
}

/// Checks one instruction's opcode; returns its width in slots and its successors.
fn check_insn(c: &mut ProgramCheck, insns: &[Insn], i: usize) -> (usize, Vec<usize>) {
    let insn = insns[i];
    let class = insn.code & 0x07;
    let op = insn.code & 0xf0;
    let mut bad = |what: String| c.problems.push(format!("insn {i}: {what}"));
    match class {
        CLASS_LD => {
            if insn.code != LDDW {
                bad(format!(
                    "opcode {:#04x}: packet load (socket filters only)",
                    insn.code
                ));
                return (1, vec![i + 1]);
            }
            if insn.src > LDDW_SRC_MAX {
                bad(format!(
                    "64-bit load with pseudo source {} (4.14 knows only map fds)",
                    insn.src
                ));
            }
            (2, vec![i + 2])
        }
        CLASS_LDX | CLASS_ST => {
            match insn.code & 0xe0 {
                MODE_MEM => {}
                MODE_MEMSX => bad(format!(
                    "opcode {:#04x}: sign-extending load (BPF CPU v4, Linux 6.6)",
                    insn.code
                )),
                _ => bad(format!("opcode {:#04x}: unknown memory mode", insn.code)),
            }
            (1, vec![i + 1])
        }
        CLASS_STX => {
            match insn.code & 0xe0 {
                MODE_MEM => {}
                // XADD: atomic add without fetch, 32 or 64 bits, is all 4.14 has.
                MODE_ATOMIC if insn.imm == 0 && matches!(insn.code & 0x18, SIZE_W | SIZE_DW) => {}
                MODE_ATOMIC => bad(format!(
                    "opcode {:#04x} imm {:#x}: atomic operation other than add (fetch/and/or/xor/xchg/cmpxchg: Linux 5.12)",
                    insn.code, insn.imm
                )),
                _ => bad(format!("opcode {:#04x}: unknown memory mode", insn.code)),
            }
            (1, vec![i + 1])
        }
        CLASS_ALU | CLASS_ALU64 => {
            if op > OP_END {
                bad(format!("opcode {:#04x}: unknown ALU operation", insn.code));
            } else if op == OP_END && class == CLASS_ALU64 {
                bad(format!(
                    "opcode {:#04x}: unconditional byte swap (BPF CPU v4, Linux 6.6)",
                    insn.code
                ));
            } else if op == OP_ARSH && class == CLASS_ALU {
                bad(format!(
                    "opcode {:#04x}: 32-bit arithmetic shift (Linux 4.20)",
                    insn.code
                ));
            } else if insn.off != 0 {
                bad(format!(
                    "opcode {:#04x} off {}: signed division or sign-extending move (BPF CPU v4, Linux 6.6)",
                    insn.code, insn.off
                ));
            }
            (1, vec![i + 1])
        }
        CLASS_JMP32 => {
            bad(format!(
                "opcode {:#04x}: JMP32 class (BPF CPU v3, Linux 5.1)",
                insn.code
            ));
            (1, vec![i + 1])
        }
        CLASS_JMP => match op {
            OP_CALL => {
                match insn.src {
                    0 => {
                        if insn.imm <= 0 || insn.imm as usize >= HELPERS_4_14.len() {
                            bad(format!(
                                "helper {} is not in 4.14 (its last is {})",
                                insn.imm,
                                HELPERS_4_14.len() - 1
                            ));
                        }
                        c.helpers.insert(insn.imm);
                    }
                    1 => bad("bpf-to-bpf call (Linux 4.16): inline the callee".into()),
                    s => bad(format!(
                        "call with source {s}: kernel function call (Linux 5.13)"
                    )),
                }
                (1, vec![i + 1])
            }
            OP_EXIT => (1, Vec::new()),
            _ if op > OP_JSLE => {
                bad(format!("opcode {:#04x}: unknown jump", insn.code));
                (1, vec![i + 1])
            }
            _ => {
                let v2 = V2_JUMPS.contains(&op);
                if v2 {
                    bad(format!(
                        "opcode {:#04x}: JLT/JLE/JSLT/JSLE (BPF CPU v2, Linux 4.14; 4.9 refuses it)",
                        insn.code
                    ));
                }
                c.needs_v2 |= v2;
                let target = i as i64 + 1 + i64::from(insn.off);
                let mut next = Vec::new();
                if op != 0 {
                    next.push(i + 1); // conditional: may fall through
                }
                match usize::try_from(target) {
                    Ok(t) => next.push(t),
                    Err(_) => bad(format!("jump by {} before the program's start", insn.off)),
                }
                (1, next)
            }
        },
        _ => unreachable!("a class is 3 bits"),
    }
}

/// 4.14's check_cfg (kernel/bpf/verifier.c): a depth-first walk from the first
/// instruction; an edge back to an instruction still on the walk's path is a loop,
/// which it refuses (bounded loops came in 5.3), and so is any instruction the walk
/// never reaches. A jump to a lower address that closes no loop is allowed: LLVM
/// places cold blocks last and jumps back from them.
fn check_cfg(c: &mut ProgramCheck, successors: &[Option<Vec<usize>>]) {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; successors.len()];
    let mut path: Vec<(usize, usize)> = Vec::new(); // (instruction, next successor to follow)
    if !successors.is_empty() {
        state[0] = ON_PATH;
        path.push((0, 0));
    }
    while let Some((i, k)) = path.last_mut() {
        let (i, edges) = (*i, successors[*i].as_deref().unwrap_or_default());
        let Some(&t) = edges.get(*k) else {
            state[i] = DONE;
            path.pop();
            continue;
        };
        *k += 1;
        match (successors.get(t), state.get(t)) {
            (None, _) => c
                .problems
                .push(format!("insn {i}: control leaves the program")),
            (Some(None), _) => c
                .problems
                .push(format!("insn {i}: jump into the middle of a 64-bit load")),
            (_, Some(&ON_PATH)) => c.problems.push(format!(
                "insn {i}: jumps back to insn {t}, a loop (Linux 5.3)"
            )),
            (_, Some(&NEW)) => {
                state[t] = ON_PATH;
                path.push((t, 0));
            }
            _ => {} // done already: a forward or cross edge
        }
    }
    // One line per dead stretch, as the verifier stops at the first.
    let mut previous_dead = false;
    for (i, s) in successors.iter().enumerate() {
        if s.is_none() {
            continue;
        }
        let dead = state[i] == NEW;
        if dead && !previous_dead {
            c.problems
                .push(format!("insn {i}: unreachable (4.14 refuses dead code)"));
        }
        previous_dead = dead;
    }
}

/// The parts of an ELF object the check reads.
#[derive(Debug, Default)]
pub struct Object {
    pub e_flags: u32,
    pub sections: Vec<Section>,
    pub symbols: Vec<Symbol>,
    pub relocs: Vec<Reloc>,
}

#[derive(Debug, Default)]
pub struct Section {
    pub name: String,
    pub executable: bool,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct Symbol {
    pub name: String,
    /// Section index (0: undefined).
    pub section: usize,
    pub value: u64,
    pub size: u64,
    pub is_func: bool,
}

/// A relocation in section `target` at `offset`, naming symbol `symbol`.
#[derive(Debug)]
pub struct Reloc {
    pub target: usize,
    pub offset: u64,
    pub symbol: usize,
}

/// Parses a little-endian ELF64 BPF object (what bpfel-unknown-none produces) through the
/// `object` crate: sections, the symbol table and SHT_REL relocations are all the check reads.
pub fn parse(b: &[u8]) -> Result<Object> {
    match object::FileKind::parse(b) {
        Ok(object::FileKind::Elf64) => {}
        Ok(object::FileKind::Elf32) => bail!("not a little-endian 64-bit ELF (bpfel)"),
        _ => bail!("not an ELF file"),
    }
    let not_bpfel = || anyhow!("not a little-endian 64-bit ELF (bpfel)");
    let header = elf::FileHeader64::<LittleEndian>::parse(b).map_err(|_| not_bpfel())?;
    let e = header.endian().map_err(|_| not_bpfel())?;
    ensure!(
        header.e_machine(e) == elf::EM_BPF,
        "not a BPF object (e_machine {})",
        header.e_machine(e).0
    );
    let sections = header
        .sections(e, b)
        .context("reading the section headers")?;
    let mut obj = Object {
        e_flags: header.e_flags(e).0,
        ..Default::default()
    };
    for (n, s) in sections.enumerate() {
        let data = s
            .data(e, b)
            .map_err(|_| anyhow!("section {} lies outside the file", n.0))?;
        obj.sections.push(Section {
            name: sections
                .section_name(e, s)
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default(),
            executable: s.sh_flags(e).0 & elf::SHF_EXECINSTR.0 != 0,
            data: data.to_vec(),
        });
    }
    // The first SHT_SYMTAB, with its null symbol: relocations index symbols from 0.
    let symbols = sections
        .symbols(e, b, elf::SHT_SYMTAB)
        .context("reading the symbol table")?;
    for sym in symbols.iter() {
        obj.symbols.push(Symbol {
            name: sym
                .name(e, symbols.strings())
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default(),
            section: usize::from(sym.st_shndx(e).0),
            value: sym.st_value(e),
            size: sym.st_size(e),
            is_func: sym.st_type() == elf::STT_FUNC,
        });
    }
    for (n, s) in sections.enumerate() {
        let Some((rels, _symtab)) = s
            .rel(e, b)
            .with_context(|| format!("reading relocation section {}", n.0))?
        else {
            continue;
        };
        for rel in rels {
            obj.relocs.push(Reloc {
                target: s.sh_info(e) as usize,
                offset: rel.r_offset(e),
                symbol: rel.r_sym(e) as usize,
            });
        }
    }
    Ok(obj)
}

/// One program of the object and its check.
#[derive(Debug)]
pub struct ProgramReport {
    pub section: String,
    pub name: String,
    pub check: ProgramCheck,
}

#[derive(Debug, Default)]
pub struct Report {
    pub programs: Vec<ProgramReport>,
    /// (map name, map type)
    pub maps: Vec<(String, u32)>,
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.programs.iter().all(|p| p.check.problems.is_empty())
    }
}

fn is_global_data(name: &str) -> bool {
    [".data", ".rodata", ".bss"]
        .iter()
        .any(|g| name == *g || name.starts_with(&format!("{g}.")))
}

/// The per-object rules, and the per-program ones on every program (4.9's floor).
#[cfg(test)]
pub fn check(obj: &Object) -> Report {
    check_for(obj, Floor::K4_9)
}

/// `check` held to `floor`'s rules.
pub fn check_for(obj: &Object, floor: Floor) -> Report {
    let mut r = Report::default();
    if obj.e_flags != 0 {
        r.problems.push(format!(
            "ELF e_flags {:#x}: LLVM writes 0 for every BPF CPU; unknown ABI",
            obj.e_flags
        ));
    }
    for s in &obj.sections {
        if is_global_data(&s.name) {
            r.problems
                .push(format!("section {}: global data (Linux 5.2)", s.name));
        } else if s.name == ".maps" {
            r.problems
                .push("section .maps: BTF-defined maps (need kernel BTF, after 4.14)".into());
        }
    }
    let maps = obj.sections.iter().position(|s| s.name == MAPS_SECTION);
    for sym in obj
        .symbols
        .iter()
        .filter(|s| Some(s.section) == maps && !s.name.is_empty())
    {
        let data = &obj.sections[sym.section].data;
        let Some(kind) = data.get(sym.value as usize..sym.value as usize + 4) else {
            r.problems
                .push(format!("map {}: definition outside its section", sym.name));
            continue;
        };
        let kind = u32::from_le_bytes(kind.try_into().expect("4 bytes"));
        if kind == MAP_TYPE_RINGBUF {
            r.problems
                .push(format!("map {}: ring buffer (Linux 5.8)", sym.name));
        } else if kind == 0 || kind as usize >= MAP_TYPES_4_14.len() {
            r.problems
                .push(format!("map {}: type {kind} is not in 4.14", sym.name));
        } else if floor == Floor::K4_4 && kind > LAST_MAP_TYPE_4_4 {
            r.problems.push(format!(
                "map {}: {} is not in 4.4 (per-CPU maps: 4.6)",
                sym.name,
                map_type_name(kind)
            ));
        }
        r.maps.push((sym.name.clone(), kind));
    }
    for (idx, sec) in obj.sections.iter().enumerate() {
        // .text holds functions for bpf-to-bpf calls, not programs; a call to one is
        // reported where it is made.
        if !sec.executable || sec.name == ".text" {
            continue;
        }
        for sym in obj.symbols.iter().filter(|s| s.section == idx && s.is_func) {
            let (start, end) = (sym.value as usize, (sym.value + sym.size) as usize);
            let Some(code) = sec.data.get(start..end) else {
                r.problems
                    .push(format!("program {}: outside its section", sym.name));
                continue;
            };
            let mut check = check_program_for(&decode(code), floor);
            if sec.name.starts_with("kprobe") || sec.name.starts_with("kretprobe") {
                for &h in &check.helpers {
                    let name = helper_name(h);
                    if HELPERS_4_14.contains(&name.as_str())
                        && !KPROBE_HELPERS_4_14.contains(&name.as_str())
                    {
                        check.problems.push(format!(
                            "helper {name}: 4.14 does not offer it to kprobe programs"
                        ));
                    }
                }
            }
            for rel in obj
                .relocs
                .iter()
                .filter(|rel| rel.target == idx && (start..end).contains(&(rel.offset as usize)))
            {
                let insn = (rel.offset as usize - start) / 8;
                match obj.symbols.get(rel.symbol) {
                    Some(t) if maps.is_some() && Some(t.section) == maps => {}
                    Some(t) => {
                        let place = obj
                            .sections
                            .get(t.section)
                            .map_or("undefined", |s| s.name.as_str());
                        let place = if t.section == 0 { "undefined" } else { place };
                        // An unnamed symbol is a section's own: a call into .text, say.
                        let name = if t.name.is_empty() {
                            "a local function"
                        } else {
                            t.name.as_str()
                        };
                        check.problems.push(format!(
                            "insn {insn}: relocation to {name} in {place}, not a map"
                        ));
                    }
                    None => check
                        .problems
                        .push(format!("insn {insn}: relocation to a missing symbol")),
                }
            }
            r.programs.push(ProgramReport {
                section: sec.name.clone(),
                name: sym.name.clone(),
                check,
            });
        }
    }
    if r.programs.is_empty() {
        r.problems.push("no programs found".into());
    }
    r
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const MOV_R0_0: Insn = Insn::new(0xb7, 0, 0, 0, 0);
    const EXIT: Insn = Insn::new(0x95, 0, 0, 0, 0);

    fn call(src: u8, imm: i32) -> Insn {
        Insn::new(0x85, 0, src, 0, imm)
    }

    fn problems(insns: &[Insn]) -> Vec<String> {
        check_program(insns).problems
    }

    #[test]
    fn a_plain_program_passes() {
        assert_eq!(problems(&[MOV_R0_0, EXIT]), Vec::<String>::new());
    }

    #[test]
    fn helper_calls_pass_within_4_14_and_fail_beyond() {
        let c = check_program(&[call(0, 4), call(0, 45), call(0, 53), MOV_R0_0, EXIT]);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.helpers, BTreeSet::from([4, 45, 53]));
        // 54 is the first id after 4.14 (msg_redirect_map); 131 is ringbuf_reserve.
        for id in [54, 131, 0] {
            let p = problems(&[call(0, id), EXIT]);
            assert!(p.len() == 1 && p[0].contains("not in 4.14"), "{id}: {p:?}");
        }
    }

    #[test]
    fn bpf_to_bpf_and_kfunc_calls_fail() {
        let p = problems(&[call(1, -1), EXIT]);
        assert!(p.len() == 1 && p[0].contains("bpf-to-bpf"), "{p:?}");
        let p = problems(&[call(2, 7), EXIT]);
        assert!(p.len() == 1 && p[0].contains("5.13"), "{p:?}");
    }

    #[test]
    fn jumps_pass_loops_fail() {
        // if r0 == 0 goto +1; r0 = 0; exit
        assert!(problems(&[Insn::new(0x15, 0, 0, 1, 0), MOV_R0_0, EXIT]).is_empty());
        // r0 = 0; if r0 == 0 goto -2 (back to the mov, a loop); exit
        let p = problems(&[MOV_R0_0, Insn::new(0x15, 0, 0, -2, 0), EXIT]);
        assert!(
            p.len() == 1 && p[0].contains("insn 1: jumps back to insn 0, a loop"),
            "{p:?}"
        );
        // A cold block placed last that jumps back to the join, as LLVM lays code out:
        // 0: if r0 == 0 goto +2 (to 3); 1: r0 = 0; 2: exit; 3: r0 = 0; 4: goto -4 (to 1)
        let cold = [
            Insn::new(0x15, 0, 0, 2, 0),
            MOV_R0_0,
            EXIT,
            MOV_R0_0,
            Insn::new(0x05, 0, 0, -4, 0),
        ];
        assert!(problems(&cold).is_empty(), "{:?}", problems(&cold));
        // ... unless the join leads back to the cold block: 2 jumps to 3 instead of exiting.
        let looped = [
            Insn::new(0x15, 0, 0, 2, 0),
            MOV_R0_0,
            Insn::new(0x05, 0, 0, 0, 0),
            MOV_R0_0,
            Insn::new(0x05, 0, 0, -4, 0),
        ];
        let p = problems(&looped);
        assert!(p.iter().any(|p| p.contains("a loop")), "{p:?}");
        let p = problems(&[Insn::new(0x05, 0, 0, -2, 0), EXIT]);
        assert!(
            p.len() == 2 && p[0].contains("before the program's start"),
            "{p:?}"
        );
    }

    #[test]
    fn the_instruction_limit_is_4096() {
        let mut insns = vec![MOV_R0_0; MAX_INSNS - 1];
        insns.push(EXIT);
        assert!(problems(&insns).is_empty());
        insns.insert(0, MOV_R0_0);
        let p = problems(&insns);
        assert!(p.len() == 1 && p[0].contains("4097 instructions"), "{p:?}");
    }

    #[test]
    fn jmp32_and_v4_forms_fail_v1_and_v2_pass() {
        // JMP32 jeq (v3)
        let p = problems(&[Insn::new(0x16, 0, 0, 0, 0), EXIT]);
        assert!(p.len() == 1 && p[0].contains("JMP32"), "{p:?}");
        // movsx (ALU64 mov with off 8), ldsx (LDX MEMSX), bswap (ALU64 END)
        for insn in [
            Insn::new(0xbf, 0, 1, 8, 0),
            Insn::new(0x91, 0, 1, 0, 0),
            Insn::new(0xd7, 0, 0, 0, 16),
        ] {
            let p = problems(&[insn, EXIT]);
            assert!(p.len() == 1 && p[0].contains("v4"), "{insn:?}: {p:?}");
        }
        // 32-bit arsh (4.20)
        let p = problems(&[Insn::new(0xc4, 0, 0, 0, 1), EXIT]);
        assert!(p.len() == 1 && p[0].contains("4.20"), "{p:?}");
        // jlt (v2) is 4.14's, refused by 4.9, and reported as needing v2; jgt is neither.
        let c = check_program(&[Insn::new(0xa5, 0, 0, 0, 1), EXIT]);
        assert!(
            c.needs_v2 && c.problems.len() == 1 && c.problems[0].contains("4.9 refuses"),
            "{c:?}"
        );
        let c = check_program(&[Insn::new(0x25, 0, 0, 0, 1), EXIT]);
        assert!(c.problems.is_empty() && !c.needs_v2, "{c:?}");
    }

    /// r1 = map; r2 = r10 - 8 (a stack key); *(u64 *)(r10 - 8) = 0; call map_lookup_elem;
    /// if r0 == 0 goto exit; then `tail` (r0 holds the map value); r0 = 0; exit.
    fn after_lookup(tail: &[Insn]) -> Vec<Insn> {
        let mut p = vec![
            Insn::new(0x18, 1, 1, 0, 0),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(0xbf, 2, 10, 0, 0),
            Insn::new(0x07, 2, 0, 0, -8),
            Insn::new(0x7a, 10, 0, -8, 0),
            call(0, 1),
        ];
        p.push(Insn::new(0x15, 0, 0, tail.len() as i16, 0));
        p.extend_from_slice(tail);
        p.extend([MOV_R0_0, EXIT]);
        p
    }

    #[test]
    fn helper_pointer_arguments_from_the_stack_pass_from_a_map_value_fail() {
        // A stack key passes (after_lookup's own lookup); so does probe_read into the stack:
        // r1 = r10; r1 += -16; r2 = 8; r3 = r0; call probe_read.
        let to_stack = after_lookup(&[
            Insn::new(0xbf, 1, 10, 0, 0),
            Insn::new(0x07, 1, 0, 0, -16),
            Insn::new(0xb7, 2, 0, 0, 8),
            Insn::new(0xbf, 3, 0, 0, 0),
            call(0, 4),
        ]);
        assert!(problems(&to_stack).is_empty(), "{:?}", problems(&to_stack));
        // probe_read into the map value (at an offset), as the legacy object did on 4.9:
        // r1 = r0; r1 += 8; r2 = 8; r3 = 0; call probe_read.
        let into_value = after_lookup(&[
            Insn::new(0xbf, 1, 0, 0, 0),
            Insn::new(0x07, 1, 0, 0, 8),
            Insn::new(0xb7, 2, 0, 0, 8),
            Insn::new(0xb7, 3, 0, 0, 0),
            call(0, 4),
        ]);
        let p = problems(&into_value);
        assert!(
            p.len() == 1 && p[0].contains("helper probe_read takes R1 from a map value"),
            "{p:?}"
        );
        // The value pointer spilled to the stack and filled into R3 of map_update_elem.
        let spilled = after_lookup(&[
            Insn::new(0x7b, 10, 0, -24, 0),
            Insn::new(0x18, 1, 1, 0, 0),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(0xbf, 2, 10, 0, 0),
            Insn::new(0x07, 2, 0, 0, -8),
            Insn::new(0x79, 3, 10, -24, 0),
            Insn::new(0xb7, 4, 0, 0, 0),
            call(0, 2),
        ]);
        let p = problems(&spilled);
        assert!(
            p.len() == 1 && p[0].contains("map_update_elem takes R3 from a map value"),
            "{p:?}"
        );
        // ... unless the slot was overwritten first (a 4-byte store into it).
        let mut overwritten = spilled.clone();
        overwritten.insert(8, Insn::new(0x62, 10, 0, -20, 0));
        overwritten[6].off += 1; // the null check's jump skips one more instruction
        let p = problems(&overwritten);
        assert!(p.is_empty(), "{p:?}");
        // perf_event_output's data (R4) from a map value.
        let output = after_lookup(&[
            Insn::new(0xbf, 4, 0, 0, 0),
            Insn::new(0xbf, 1, 6, 0, 0),
            call(0, 25),
        ]);
        let p = problems(&output);
        assert!(
            p.len() == 1 && p[0].contains("perf_event_output takes R4"),
            "{p:?}"
        );
    }

    #[test]
    fn the_4_4_floor_refuses_map_value_arithmetic_and_per_cpu_maps() {
        // r1 = r0; r1 += 8; r2 = *(u64 *)(r1 + 0): a map value at an offset, through arithmetic.
        let adjusted = after_lookup(&[
            Insn::new(0xbf, 1, 0, 0, 0),
            Insn::new(0x07, 1, 0, 0, 8),
            Insn::new(0x79, 2, 1, 0, 0),
        ]);
        assert!(problems(&adjusted).is_empty());
        let p = check_program_for(&adjusted, Floor::K4_4).problems;
        assert!(
            p.len() == 1 && p[0].contains("arithmetic on R1, which may hold a map value"),
            "{p:?}"
        );
        // The same field through the instruction's offset is fine on 4.4, as is r10 + constant
        // (after_lookup's key) ...
        let folded = after_lookup(&[Insn::new(0x79, 2, 0, 8, 0)]);
        assert!(check_program_for(&folded, Floor::K4_4).problems.is_empty());
        // ... but not a stack pointer moved again.
        let moved = [
            Insn::new(0xbf, 1, 10, 0, 0),
            Insn::new(0x07, 1, 0, 0, -16),
            Insn::new(0x07, 1, 0, 0, 8),
            MOV_R0_0,
            EXIT,
        ];
        let p = check_program_for(&moved, Floor::K4_4).problems;
        assert!(p.len() == 1 && p[0].contains("a stack pointer"), "{p:?}");
        assert!(problems(&moved).is_empty());
        // A per-CPU array (6) passes 4.9's floor and fails 4.4's.
        assert!(check(&object(6, "maps", &[])).ok());
        let r = check_for(&object(6, "maps", &[]), Floor::K4_4);
        assert!(r.problems.iter().any(|p| p.contains("not in 4.4")), "{r:?}");
    }

    #[test]
    fn only_xadd_of_the_atomics_passes() {
        // lock *(u64 *)(r1 + 0) += r2
        assert!(problems(&[Insn::new(0xdb, 1, 2, 0, 0), EXIT]).is_empty());
        // the same with BPF_FETCH (0x01): atomic_fetch_add, 5.12
        let p = problems(&[Insn::new(0xdb, 1, 2, 0, 0x01), EXIT]);
        assert!(p.len() == 1 && p[0].contains("5.12"), "{p:?}");
    }

    #[test]
    fn lddw_of_a_map_fd_passes_of_a_map_value_fails() {
        let lddw = |src| [Insn::new(0x18, 1, src, 0, 0), Insn::new(0, 0, 0, 0, 0)];
        let mut ok = lddw(1).to_vec();
        ok.extend([MOV_R0_0, EXIT]);
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
        let mut bad = lddw(2).to_vec();
        bad.extend([MOV_R0_0, EXIT]);
        let p = problems(&bad);
        assert!(p.len() == 1 && p[0].contains("pseudo source 2"), "{p:?}");
    }

    #[test]
    fn dead_code_and_falling_off_the_end_fail() {
        let p = problems(&[EXIT, MOV_R0_0, EXIT]);
        assert!(
            p.len() == 1 && p[0].contains("insn 1: unreachable"),
            "{p:?}"
        );
        let p = problems(&[MOV_R0_0]);
        assert!(p.len() == 1 && p[0].contains("leaves the program"), "{p:?}");
        // 0: goto +1 (into the lddw's second half); 1-2: lddw; 3: exit
        let p = problems(&[
            Insn::new(0x05, 0, 0, 1, 0),
            Insn::new(0x18, 1, 0, 0, 0),
            Insn::new(0, 0, 0, 0, 0),
            EXIT,
        ]);
        assert!(
            p.iter().any(|p| p.contains("middle of a 64-bit load")),
            "{p:?}"
        );
    }

    fn encode(insns: &[Insn]) -> Vec<u8> {
        let mut code = Vec::new();
        for i in insns {
            code.extend([i.code, i.dst | i.src << 4]);
            code.extend(i.off.to_le_bytes());
            code.extend(i.imm.to_le_bytes());
        }
        code
    }

    /// An object with one kprobe program loading map `M` (of `map_type`) through a
    /// relocation to `reloc_to`'s section, plus `extra` sections.
    fn object(map_type: u32, reloc_to: &str, extra: &[&str]) -> Object {
        let code = encode(&[
            Insn::new(0x18, 1, 0, 0, 0),
            Insn::new(0, 0, 0, 0, 0),
            MOV_R0_0,
            EXIT,
        ]);
        let mut map = map_type.to_le_bytes().to_vec();
        map.resize(28, 0);
        let mut sections = vec![
            Section::default(),
            Section {
                name: "kprobe".into(),
                executable: true,
                data: code,
            },
            Section {
                name: "maps".into(),
                executable: false,
                data: map,
            },
        ];
        for name in extra {
            sections.push(Section {
                name: name.to_string(),
                executable: false,
                data: vec![0; 8],
            });
        }
        let mut symbols = vec![
            Symbol {
                name: "prog".into(),
                section: 1,
                value: 0,
                size: 32,
                is_func: true,
            },
            Symbol {
                name: "M".into(),
                section: 2,
                value: 0,
                size: 28,
                is_func: false,
            },
        ];
        if reloc_to != "maps" {
            let target = sections
                .iter()
                .position(|s| s.name == reloc_to)
                .expect("section");
            symbols.push(Symbol {
                name: "target".into(),
                section: target,
                value: 0,
                size: 8,
                is_func: false,
            });
        }
        let symbol = symbols.len() - 1;
        Object {
            e_flags: 0,
            sections,
            symbols,
            relocs: vec![Reloc {
                target: 1,
                offset: 0,
                symbol,
            }],
        }
    }

    #[test]
    fn maps_of_4_14_types_pass_a_ring_buffer_fails() {
        let r = check(&object(1, "maps", &[]));
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.maps, vec![("M".to_string(), 1)]);
        let r = check(&object(MAP_TYPE_RINGBUF, "maps", &[]));
        assert!(
            !r.ok() && r.problems.iter().any(|p| p.contains("ring buffer")),
            "{r:?}"
        );
    }

    #[test]
    fn global_data_sections_and_relocations_to_them_fail() {
        for section in [".rodata", ".data", ".bss", ".rodata.str1.1"] {
            let r = check(&object(1, "maps", &[section]));
            assert!(
                r.problems.iter().any(|p| p.contains("global data")),
                "{section}: {r:?}"
            );
        }
        let r = check(&object(1, ".rodata", &[".rodata"]));
        let prog = &r.programs[0].check.problems;
        assert!(
            prog.iter()
                .any(|p| p.contains("relocation to target in .rodata")),
            "{r:?}"
        );
    }

    #[test]
    fn kprobes_may_call_only_the_tracing_helpers() {
        let mut o = object(1, "maps", &[]);
        // r0 = 0; call 9 (skb_store_bytes: a 4.14 helper, for socket programs); exit
        o.sections[1].data = encode(&[MOV_R0_0, call(0, 9), EXIT]);
        o.symbols[0].size = 24;
        o.relocs.clear();
        let r = check(&o);
        let p = &r.programs[0].check.problems;
        assert!(
            p.len() == 1 && p[0].contains("skb_store_bytes: 4.14 does not offer it to kprobe"),
            "{r:?}"
        );
        o.sections[1].name = "socket".into();
        assert!(check(&o).ok(), "{:?}", check(&o));
    }

    #[test]
    fn nonzero_e_flags_fail() {
        let mut o = object(1, "maps", &[]);
        o.e_flags = 1;
        assert!(!check(&o).ok());
    }

    /// One section of a test ELF: name, sh_type, sh_flags, contents, sh_link, sh_info.
    type RawSection<'a> = (&'a str, u32, u64, Vec<u8>, u32, u32);

    const SHT_PROGBITS: u32 = 1;
    const SHT_SYMTAB: u32 = 2;
    const SHT_STRTAB: u32 = 3;
    const SHT_REL: u32 = 9;
    const SHF_EXECINSTR: u64 = 4;

    /// A little-endian ELF64 for BPF, written byte by byte as LLVM lays one out: the null
    /// section, `sections` (indexes 1..), then the section name table.
    fn elf(sections: &[RawSection]) -> Vec<u8> {
        let mut shstr = vec![0u8];
        let mut names = Vec::new();
        for s in sections {
            names.push(shstr.len() as u32);
            shstr.extend(s.0.as_bytes());
            shstr.push(0);
        }
        let shstr_name = shstr.len() as u32;
        shstr.extend(b".shstrtab\0");
        let mut b = vec![0u8; 64];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        b[18..20].copy_from_slice(&247u16.to_le_bytes()); // EM_BPF
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        let align = |b: &mut Vec<u8>| b.resize(b.len().next_multiple_of(8), 0);
        let mut offsets = Vec::new();
        for s in sections {
            align(&mut b);
            offsets.push(b.len());
            b.extend(&s.3);
        }
        let shstr_off = b.len();
        b.extend(&shstr);
        align(&mut b);
        let shoff = b.len();
        let n = sections.len() as u16;
        b[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60..62].copy_from_slice(&(n + 2).to_le_bytes());
        b[62..64].copy_from_slice(&(n + 1).to_le_bytes());
        let header =
            |name: u32, kind: u32, flags: u64, off: usize, size: usize, link: u32, info: u32| {
                let mut h = vec![0u8; 64];
                h[0..4].copy_from_slice(&name.to_le_bytes());
                h[4..8].copy_from_slice(&kind.to_le_bytes());
                h[8..16].copy_from_slice(&flags.to_le_bytes());
                h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
                h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
                h[40..44].copy_from_slice(&link.to_le_bytes());
                h[44..48].copy_from_slice(&info.to_le_bytes());
                let entsize: u64 = match kind {
                    SHT_SYMTAB => 24,
                    SHT_REL => 16,
                    _ => 0,
                };
                h[56..64].copy_from_slice(&entsize.to_le_bytes());
                h
            };
        b.extend(header(0, 0, 0, 0, 0, 0, 0));
        for (i, s) in sections.iter().enumerate() {
            b.extend(header(names[i], s.1, s.2, offsets[i], s.3.len(), s.4, s.5));
        }
        b.extend(header(
            shstr_name,
            SHT_STRTAB,
            0,
            shstr_off,
            shstr.len(),
            0,
            0,
        ));
        b
    }

    /// An Elf64_Sym: name offset, type (binding global), section, value, size.
    fn sym(name: u32, kind: u8, section: u16, value: u64, size: u64) -> Vec<u8> {
        let mut s = name.to_le_bytes().to_vec();
        s.extend([0x10 | kind, 0]);
        s.extend(section.to_le_bytes());
        s.extend(value.to_le_bytes());
        s.extend(size.to_le_bytes());
        s
    }

    /// The bytes of what `object` builds: a kprobe program loading map `M` (of `map_type`)
    /// through a relocation to `reloc_to`'s section (maps or .rodata); with `.rodata` as an
    /// extra section when the relocation goes there.
    fn object_elf(map_type: u32, reloc_to: &str) -> Vec<u8> {
        let code = encode(&[
            Insn::new(0x18, 1, 0, 0, 0),
            Insn::new(0, 0, 0, 0, 0),
            MOV_R0_0,
            EXIT,
        ]);
        let mut map = map_type.to_le_bytes().to_vec();
        map.resize(28, 0);
        // Indexes: 1 kprobe, 2 maps, 3 .symtab, 4 .strtab, 5 .relkprobe, 6 .rodata.
        let strtab = b"\0prog\0M\0target\0".to_vec();
        let mut symtab = sym(0, 0, 0, 0, 0);
        symtab.extend(sym(1, 2, 1, 0, 32)); // prog: STT_FUNC in kprobe
        symtab.extend(sym(6, 1, 2, 0, 28)); // M: STT_OBJECT in maps
        symtab.extend(sym(8, 1, 6, 0, 8)); // target: STT_OBJECT in .rodata
        let symbol: u64 = if reloc_to == "maps" { 2 } else { 3 };
        let mut rel = 0u64.to_le_bytes().to_vec();
        rel.extend((symbol << 32 | 1).to_le_bytes()); // R_BPF_64_64
        elf(&[
            ("kprobe", SHT_PROGBITS, SHF_EXECINSTR | 2, code, 0, 0),
            ("maps", SHT_PROGBITS, 3, map, 0, 0),
            (".symtab", SHT_SYMTAB, 0, symtab, 4, 1),
            (".strtab", SHT_STRTAB, 0, strtab, 0, 0),
            (".relkprobe", SHT_REL, 0, rel, 3, 1),
            (".rodata", SHT_PROGBITS, 2, vec![0; 8], 0, 0),
        ])
    }

    #[test]
    fn parses_a_minimal_elf() {
        // A null section, "kprobe" with one exit, and the section name table.
        let code = encode(&[EXIT]);
        let b = elf(&[("kprobe", SHT_PROGBITS, SHF_EXECINSTR, code, 0, 0)]);
        let o = parse(&b).expect("parses");
        assert_eq!(o.sections.len(), 3);
        assert_eq!(o.sections[1].name, "kprobe");
        assert!(o.sections[1].executable);
        assert!(!o.sections[2].executable);
        assert_eq!(decode(&o.sections[1].data), vec![EXIT]);
        assert!(o.symbols.is_empty() && o.relocs.is_empty());
    }

    #[test]
    fn parses_symbols_and_relocations() {
        let o = parse(&object_elf(1, "maps")).expect("parses");
        // The null symbol stays: relocations index symbols from 0.
        let names: Vec<_> = o.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["", "prog", "M", "target"]);
        let prog = &o.symbols[1];
        assert_eq!(
            (prog.section, prog.value, prog.size, prog.is_func),
            (1, 0, 32, true)
        );
        assert!(!o.symbols[2].is_func);
        assert_eq!(o.relocs.len(), 1);
        let rel = &o.relocs[0];
        assert_eq!((rel.target, rel.offset, rel.symbol), (1, 0, 2));
        assert_eq!(o.sections[2].name, "maps");
    }

    #[test]
    fn parsed_objects_give_the_verdicts_of_the_model() {
        // What `object` builds in memory, read from bytes: same verdicts.
        let r = check(&parse(&object_elf(1, "maps")).expect("parses"));
        // .rodata is there in every one of these: global data.
        assert_eq!(r.problems, ["section .rodata: global data (Linux 5.2)"]);
        assert!(r.programs[0].check.problems.is_empty(), "{r:?}");
        assert_eq!(r.maps, vec![("M".to_string(), 1)]);
        let r = check(&parse(&object_elf(MAP_TYPE_RINGBUF, "maps")).expect("parses"));
        assert!(
            r.problems.iter().any(|p| p.contains("ring buffer")),
            "{r:?}"
        );
        let r = check_for(&parse(&object_elf(5, "maps")).expect("parses"), Floor::K4_4);
        assert!(
            r.problems
                .iter()
                .any(|p| p == "map M: percpu_hash is not in 4.4 (per-CPU maps: 4.6)"),
            "{r:?}"
        );
        let r = check(&parse(&object_elf(1, ".rodata")).expect("parses"));
        assert_eq!(
            r.programs[0].check.problems,
            ["insn 0: relocation to target in .rodata, not a map"]
        );
    }

    #[test]
    fn what_is_not_a_bpfel_object_is_refused_with_a_reason() {
        let good = object_elf(1, "maps");
        let err = |b: &[u8]| format!("{:#}", parse(b).expect_err("refused"));
        assert_eq!(err(b"#!/bin/sh\n"), "not an ELF file");
        let mut x86 = good.clone();
        x86[18] = 62;
        assert_eq!(err(&x86), "not a BPF object (e_machine 62)");
        let mut elf32 = good.clone();
        elf32[4] = 1;
        assert_eq!(err(&elf32), "not a little-endian 64-bit ELF (bpfel)");
        let mut big = good.clone();
        big[5] = 2;
        assert_eq!(err(&big), "not a little-endian 64-bit ELF (bpfel)");
        // The kprobe section's size (header 1, sh_size at 32) beyond the end of the file.
        let mut outside = good.clone();
        let shoff = u64::from_le_bytes(good[40..48].try_into().expect("8 bytes")) as usize;
        outside[shoff + 64 + 32..shoff + 64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(err(&outside), "section 1 lies outside the file");
        let mut truncated = good;
        truncated.truncate(shoff + 10);
        assert!(parse(&truncated).is_err());
    }
}
