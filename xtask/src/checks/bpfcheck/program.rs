//! The per-program rules, on a program's instructions alone: the instruction limit,
//! opcodes and helpers by kernel, the control-flow walk 4.14's check_cfg does (no loop, no
//! unreachable instruction), and 4.9's stack-only helper arguments (`stack_args`).

use std::collections::BTreeSet;

use super::{Floor, HELPERS_4_14, LAST_HELPER_4_4, MAX_INSNS, helper_name};

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
        // Per-CPU maps, 4.4's other refusal, are an object's: elf.rs's tests.
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
}
