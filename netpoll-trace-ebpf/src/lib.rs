//! The maps and the logic of the programs, shared by the two objects this crate
//! builds: the modern one (src/main.rs: fentry/fexit and kprobes, aya-log) and the
//! legacy one (src/legacy.rs: kprobes only, loads on 4.14).
//!
//! Entry probes capture the arguments (the struct fields are read at the offsets
//! userspace resolved and stored in `CONFIG`) and park them in `INFLIGHT`, keyed by
//! thread and nesting depth; return probes complete the record with the return value
//! and duration and send it to userspace. Nesting matters: a bond's `__netpoll_setup`
//! calls `ndo_netpoll_setup`, which calls `__netpoll_setup` again for each slave, all
//! on one thread. A return is paired by function and `struct netpoll *` as well as
//! depth (`netpoll_trace_common::pairing` decides): a missed return or entry costs only its
//! own records, each counted in `LOSSES`.
//!
//! What keeps the legacy object loadable on 4.14, and so holds for all code here:
//! - every function is `#[inline(always)]`: bpf-to-bpf calls arrived in 4.16;
//! - no loops, only straight-line code: the 4.14 verifier refuses backward jumps;
//! - map keys and values, and perf output, come from the stack: 4.14 takes nothing
//!   else for them (a map value pointer is refused); and 4.9's bpf_probe_read and
//!   bpf_get_current_comm write only to the stack (read into it, then copy into a map value);
//! - no global data (.data/.rodata/.bss need 5.2) and no aya-log (a ring buffer, 5.8);
//! - for 4.4: no per-CPU maps (4.6): per-CPU state is keyed (or indexed) by
//!   `bpf_get_smp_processor_id()`; no pointer arithmetic on a map value (4.9 added
//!   offsets into one): an element of a map value's array is reached through a branch
//!   per constant index (`at_index!`); perf output names this CPU's index (4.4 has no
//!   BPF_F_CURRENT_CPU); and every stack buffer a helper fills is zeroed first (4.4 takes
//!   only initialised stack there; `probe_read`, `current_comm`);
//!   `cargo xtask bpfcheck` (and `--kernel 4.4`) checks most of this on the built object.
#![no_std]
// Inline assembly (for accesses at constant offsets into map values, see `at_index!`).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
// Map values and perf output are passed as `&value`: by value, the struct could be
// copied to a second stack slot, and the stack is 512 bytes.
#![allow(clippy::needless_borrows_for_generic_args)]

#[cfg(all(feature = "log", feature = "legacy"))]
compile_error!("the legacy object cannot carry aya-log: it needs a ring buffer and global data");

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_perf_event_output,
        bpf_probe_read_buf,
    },
    macros::map,
    maps::{Array, HashMap, PerfEventArray},
};
#[cfg(feature = "log")]
use aya_log_ebpf::{debug, warn};
use netpoll_trace_common::{
    COMM_LEN, Config, CounterKey, CpuCounterKey, CpuDev, DEFAULT_RING_SIZE, IFNAMSIZ, InflightKey,
    MAX_DEPTH, NC_TARGET_SLOTS, OWNER_LEN, POLL_BUCKETS, POLL_DEPTH, PollCpu, PollEvent, PollFrame,
    PollStats,
    RecorderMeta, SEND_DEPTH, SendCpu, SendEvent, SendFrame, SendStats, SetupEvent,
    config_flags as cf, event_flags as ef, loss,
    pairing::{self, Enter, Exit, Frame},
    per_cpu, poll_bucket, send_drop, send_event, stop_cause,
};

pub use netpoll_trace_common::function;

/// `bpf_map_update_elem` flag: fail when the key exists (the claim in `record`).
const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

/// The CPU this program runs on: kprobe programs run with preemption off, so it is
/// stable for the whole run, and the index of this CPU's slot in the CPU-keyed maps
/// (one entry per CPU, or per CPU and slot, sized by userspace: `per_cpu`).
#[inline(always)]
fn cpu() -> u32 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_get_smp_processor_id() }
}

/// This CPU's key of a per-device value: the device's address and its ifindex, so a
/// device freed and another allocated at the same address never share statistics.
#[inline(always)]
fn cpu_dev(cfg: &Config, dev: u64) -> CpuDev {
    let mut key = CpuDev {
        cpu: cpu(),
        ifindex: 0,
        dev,
    };
    if dev != 0 && cfg.flags & cf::DEV_IFINDEX != 0 {
        let src = unsafe { (dev as *const u8).add(cfg.dev_ifindex as usize) };
        // Straight into the key (zeroed, as 4.4 wants a helper's stack buffer): a
        // separate slot would cost the send path's exit 8 more bytes of stack, past what
        // 5.10 allows it beside LLVM's memset call ("combined stack size ... Too large").
        // SAFETY: the key's own bytes; bpf_probe_read faults safely on a bad source.
        let dst = unsafe {
            core::slice::from_raw_parts_mut((&raw mut key.ifindex).cast::<u8>(), size_of::<i32>())
        };
        if unsafe { bpf_probe_read_buf(src, dst) }.is_err() {
            key.ifindex = 0;
        }
    }
    key
}

/// `bpf_probe_read` into a zeroed stack value: 4.4 lets a helper write only stack it
/// considers initialised (ARG_PTR_TO_STACK; ARG_PTR_TO_RAW_STACK came in 4.7).
///
/// # Safety
/// `T` must be plain data for which all-zero bytes are a value.
#[inline(always)]
unsafe fn probe_read<T: Copy>(src: *const T) -> Result<T, i32> {
    // SAFETY: the caller's promise about T.
    let mut v: T = unsafe { core::mem::zeroed() };
    // SAFETY: v's own bytes.
    let dst = unsafe { core::slice::from_raw_parts_mut((&raw mut v).cast::<u8>(), size_of::<T>()) };
    // SAFETY: bpf_probe_read faults safely on a bad source.
    unsafe { bpf_probe_read_buf(src.cast::<u8>(), dst) }.map(|()| v)
}

/// The current task's comm, read into a zeroed buffer (4.4, as `probe_read`).
#[inline(always)]
fn current_comm() -> Option<[u8; COMM_LEN]> {
    let mut comm = [0u8; COMM_LEN];
    // SAFETY: the buffer and its length.
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_get_current_comm(
            comm.as_mut_ptr().cast(),
            COMM_LEN as u32,
        )
    };
    (r == 0).then_some(comm)
}

// 4.4's verifier allows no arithmetic on a map value pointer (offsets into one came in
// 4.9): a field of a map value is reachable only as a load or store instruction's
// constant offset from the pointer the lookup returned. LLVM turns `a[i]` and also
// branches over constant indices (or a choice between two fields) back into a
// computed address, so these accesses are written in assembly, one instruction each,
// at an offset fixed at compile time; only the index is branched on (`at_index!`).

/// `*(u64 *)(base + OFF) += 1`.
///
/// # Safety
/// `base + OFF` is a valid, exclusively owned u64.
#[inline(always)]
unsafe fn bump_at<const OFF: i16>(base: *mut u8) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: the caller's promise; one load and one store at base + OFF.
    unsafe {
        core::arch::asm!(
            "{t} = *(u64 *)({b} + {o})",
            "{t} += 1",
            "*(u64 *)({b} + {o}) = {t}",
            b = in(reg) base,
            t = out(reg) _,
            o = const OFF,
            options(nostack),
        );
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: the caller's promise.
    unsafe {
        *base.add(OFF as usize).cast::<u64>() += 1
    };
}

/// `*(u64 *)(base + OFF) = v` (`W`: 4 for a u32 field, 8 for a u64).
///
/// # Safety
/// As `bump_at`.
#[inline(always)]
unsafe fn store_at<const OFF: i16, const W: u8>(base: *mut u8, v: u64) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: the caller's promise.
    unsafe {
        if W == 8 {
            core::arch::asm!("*(u64 *)({b} + {o}) = {v}", b = in(reg) base, v = in(reg) v, o = const OFF, options(nostack));
        } else {
            core::arch::asm!("*(u32 *)({b} + {o}) = {v}", b = in(reg) base, v = in(reg) v, o = const OFF, options(nostack));
        }
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: the caller's promise.
    unsafe {
        if W == 8 {
            *base.add(OFF as usize).cast::<u64>() = v;
        } else {
            *base.add(OFF as usize).cast::<u32>() = v as u32;
        }
    }
}

/// `*(u64 *)(base + OFF)` (`W` as in `store_at`; a u32 is zero-extended).
///
/// # Safety
/// As `bump_at`.
#[inline(always)]
unsafe fn load_at<const OFF: i16, const W: u8>(base: *mut u8) -> u64 {
    let v: u64;
    #[cfg(target_arch = "bpf")]
    // SAFETY: the caller's promise.
    unsafe {
        if W == 8 {
            core::arch::asm!("{v} = *(u64 *)({b} + {o})", b = in(reg) base, v = out(reg) v, o = const OFF, options(nostack, readonly));
        } else {
            core::arch::asm!("{v} = *(u32 *)({b} + {o})", b = in(reg) base, v = out(reg) v, o = const OFF, options(nostack, readonly));
        }
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: the caller's promise.
    unsafe {
        v = if W == 8 {
            *base.add(OFF as usize).cast::<u64>()
        } else {
            u64::from(*base.add(OFF as usize).cast::<u32>())
        };
    }
    v
}

/// Runs `$body` with `$k` the constant equal to `$index` (nothing when none is).
macro_rules! at_index {
    ($index:expr, |$k:ident| $body:expr, $($n:literal)*) => {{
        let i = $index;
        $(
            if i == $n {
                const $k: i16 = $n;
                $body;
            } else
        )* {}
    }};
}

/// The offset of `$ty.$field` plus `$extra`, as an instruction offset.
macro_rules! off {
    ($ty:ty, $field:ident) => {
        core::mem::offset_of!($ty, $field) as i16
    };
}

/// A `SendFrame`'s size, as an offset step.
const FRAME: i16 = size_of::<SendFrame>() as i16;

/// Writes frame `$k` of the `SendCpu` map value `$base` (see `bump_at`).
macro_rules! set_frame {
    ($base:expr, $k:expr, $ts:expr, $dev:expr, $qlen:expr, $drop:expr) => {{
        const F: i16 = off!(SendCpu, frames) + FRAME * $k;
        let base: *mut u8 = $base;
        // SAFETY: a frame of this CPU's slot.
        unsafe {
            store_at::<{ F + off!(SendFrame, ts_ns) }, 8>(base, $ts);
            store_at::<{ F + off!(SendFrame, dev) }, 8>(base, $dev);
            store_at::<{ F + off!(SendFrame, qlen) }, 4>(base, u64::from($qlen));
            store_at::<{ F + off!(SendFrame, drop) }, 4>(base, u64::from($drop));
        }
    }};
}

/// Reads frame `$k` of the `SendCpu` map value `$base` and marks it done (ts 0).
macro_rules! take_frame {
    ($base:expr, $k:expr) => {{
        const F: i16 = off!(SendCpu, frames) + FRAME * $k;
        let base: *mut u8 = $base;
        // SAFETY: a frame of this CPU's slot.
        unsafe {
            let v = (
                load_at::<{ F + off!(SendFrame, ts_ns) }, 8>(base),
                load_at::<{ F + off!(SendFrame, dev) }, 8>(base),
                load_at::<{ F + off!(SendFrame, qlen) }, 4>(base) as u32,
                load_at::<{ F + off!(SendFrame, drop) }, 4>(base) as u32,
            );
            store_at::<{ F + off!(SendFrame, ts_ns) }, 8>(base, 0);
            v
        }
    }};
}

/// A `PollFrame`'s size, as an offset step.
const POLL_FRAME: i16 = size_of::<PollFrame>() as i16;

/// Writes frame `$k` of the `PollCpu` map value `$base` (see `bump_at`).
macro_rules! set_poll_frame {
    ($base:expr, $k:expr, $ts:expr, $dev:expr) => {{
        const F: i16 = off!(PollCpu, frames) + POLL_FRAME * $k;
        let base: *mut u8 = $base;
        // SAFETY: a frame of this CPU's slot.
        unsafe {
            store_at::<{ F + off!(PollFrame, ts_ns) }, 8>(base, $ts);
            store_at::<{ F + off!(PollFrame, dev) }, 8>(base, $dev);
        }
    }};
}

/// Reads frame `$k` of the `PollCpu` map value `$base` and marks it done (ts 0).
macro_rules! take_poll_frame {
    ($base:expr, $k:expr) => {{
        const F: i16 = off!(PollCpu, frames) + POLL_FRAME * $k;
        let base: *mut u8 = $base;
        // SAFETY: a frame of this CPU's slot.
        unsafe {
            let v = (
                load_at::<{ F + off!(PollFrame, ts_ns) }, 8>(base),
                load_at::<{ F + off!(PollFrame, dev) }, 8>(base),
            );
            store_at::<{ F + off!(PollFrame, ts_ns) }, 8>(base, 0);
            v
        }
    }};
}

/// `$ty.$field[b] += 1` in the map value at `$base` (a `[u64; POLL_BUCKETS]` histogram).
macro_rules! bump_bucket {
    ($base:expr, $ty:ty, $field:ident, $b:expr) => {{
        const _: () = assert!(POLL_BUCKETS == 32);
        let base: *mut u8 = $base;
        // SAFETY: a field of this CPU's map value.
        at_index!($b, |K| unsafe { bump_at::<{ off!($ty, $field) + 8 * K }>(base) },
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    }};
}

/// One entry: this kernel's struct layout, written by userspace before attach.
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Current nesting depth of set-up calls per thread.
#[map]
static DEPTH: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);

/// Calls that have entered and not yet returned.
#[map]
static INFLIGHT: HashMap<InflightKey, SetupEvent> = HashMap::with_max_entries(1024, 0);

/// Finished calls, to userspace. A perf event array (not a ring buffer) keeps the
/// programs loadable on kernels before 5.8.
#[map]
static SETUP_EVENTS: PerfEventArray<SetupEvent> = PerfEventArray::new(0);

/// Per-device `netpoll_poll_dev` counts and latency histograms, keyed by the
/// `struct net_device *`.
#[map]
static POLL_STATS: HashMap<CpuDev, PollStats> = HashMap::with_max_entries(per_cpu::DEVICES, 0);

/// The `netpoll_poll_dev` calls in progress on each CPU, one frame per nesting depth.
#[map]
static POLL_CPU: Array<PollCpu> = Array::with_max_entries(1, 0);

/// Where a new device's `PollStats` is zeroed and its identity read before it is
/// copied to the stack for the insert (4.14 takes map values only from the stack).
#[map]
static POLL_SCRATCH: Array<PollStats> = Array::with_max_entries(1, 0);

/// Single slow `netpoll_poll_dev` calls.
#[map]
static POLL_EVENTS: PerfEventArray<PollEvent> = PerfEventArray::new(0);

// The flight recorder: kept by the kernel, pinned under bpffs by userspace, so it
// outlives the process that loaded it (and, with pinned links, keeps recording).

/// The recorder's header (one entry).
#[map]
static META: Array<RecorderMeta> = Array::with_max_entries(1, 0);

/// The last `ring_size` set-up events, keyed by sequence number. A hash, not an
/// array: inserting with BPF_NOEXIST is the one atomic claim every kernel offers
/// (fetching atomics need 5.12), so two CPUs can never write one slot and a lost
/// event shows as a gap. Userspace sets max_entries to the ring size at load.
#[map]
static RING: HashMap<u64, SetupEvent> = HashMap::with_max_entries(DEFAULT_RING_SIZE, 0);

/// Calls per (device, function, return value). Per CPU, like every counter here:
/// fetching atomics need kernel 5.12 and Rust's need nightly intrinsics.
#[map]
static COUNTERS: HashMap<CpuCounterKey, u64> = HashMap::with_max_entries(per_cpu::COUNTERS, 0);

/// What the recorder could not keep (`loss::*`), so loss is never silent.
#[map]
static LOSSES: Array<u64> = Array::with_max_entries(loss::SLOTS, 0);

/// Per-device send-path statistics, keyed by the `struct net_device *`.
#[map]
static SEND_STATS: HashMap<CpuDev, SendStats> = HashMap::with_max_entries(per_cpu::DEVICES, 0);

/// The message and skb transmits in progress on each CPU.
#[map]
static SEND_CPU: Array<SendCpu> = Array::with_max_entries(1, 0);

/// Where a new device's `SendStats` is zeroed and named before the insert.
#[map]
static SEND_SCRATCH: Array<SendStats> = Array::with_max_entries(1, 0);

/// Single drops and slow sends.
#[map]
static SEND_EVENTS: PerfEventArray<SendEvent> = PerfEventArray::new(0);

/// netpoll_cleanup in progress per thread: the netpoll it tears down (so the
/// __netpoll_cleanup under it is an owner's disable, not a device event).
#[map]
static CLEANUP: HashMap<u64, u64> = HashMap::with_max_entries(1024, 0);

/// The enabled netconsole targets' netpolls, written by userspace as it sees them set
/// up and torn down.
#[map]
static NC_TARGETS: Array<u64> = Array::with_max_entries(NC_TARGET_SLOTS, 0);

/// The kprobe programs, one definition for both objects so their names (the
/// loader's attach table) cannot drift apart. Expanded by each binary.
#[macro_export]
macro_rules! kprobe_programs {
    () => {
        #[::aya_ebpf::macros::kprobe]
        pub fn netpoll_setup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let np: u64 = ctx.arg(0).unwrap_or(0);
            $crate::setup_enter($crate::function::NETPOLL_SETUP, np, 0);
            0
        }

        // A kretprobe cannot see the arguments: the return pairs by function only.
        #[::aya_ebpf::macros::kretprobe]
        pub fn netpoll_setup_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::setup_exit(
                &ctx,
                $crate::function::NETPOLL_SETUP,
                None,
                ctx.ret::<u64>(),
            );
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn inner_netpoll_setup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let np: u64 = ctx.arg(0).unwrap_or(0);
            let dev: u64 = ctx.arg(1).unwrap_or(0);
            $crate::setup_enter($crate::function::INNER_NETPOLL_SETUP, np, dev);
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn inner_netpoll_setup_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::setup_exit(
                &ctx,
                $crate::function::INNER_NETPOLL_SETUP,
                None,
                ctx.ret::<u64>(),
            );
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn poll_dev_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::poll_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn poll_dev_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::poll_exit(&ctx);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn send_udp_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let len: u64 = ctx.arg(2).unwrap_or(0);
            $crate::send_udp_enter(ctx.arg(0).unwrap_or(0), len);
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn send_udp_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::send_udp_return(&ctx);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn send_skb_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::send_skb_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn send_skb_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::send_skb_return(&ctx);
            0
        }

        // Kernels before 5.8: netpoll_send_skb is an inline wrapper of this one.
        #[::aya_ebpf::macros::kprobe]
        pub fn send_skb_on_dev_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::send_skb_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn send_skb_on_dev_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::send_skb_return(&ctx);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn cleanup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::cleanup_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        // A module function: kprobes only (fentry would need the module's BTF).
        #[::aya_ebpf::macros::kprobe]
        pub fn nc_write_msg_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let len: u64 = ctx.arg(2).unwrap_or(0);
            $crate::console_write(&ctx, len);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn do_cleanup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::cleanup_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn inner_cleanup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::inner_cleanup_enter(&ctx, ctx.arg(0).unwrap_or(0));
            0
        }
    };
}

/// The license section both objects carry: GPL-compatible, as bpf_probe_read and
/// perf output are GPL-only helpers.
#[macro_export]
macro_rules! license {
    () => {
        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}

/// Entry of `netpoll_setup`/`__netpoll_setup`.
#[inline(always)]
pub fn setup_enter(function: u32, np: u64, dev: u64) {
    let _ = try_enter(function, np, dev);
}

/// Return of `netpoll_setup`/`__netpoll_setup`; `np` where the probe sees the
/// argument (fexit), None where it cannot (kretprobe).
#[inline(always)]
pub fn setup_exit<C: EbpfContext>(ctx: &C, function: u32, np: Option<u64>, ret: u64) {
    try_exit(ctx, function, np, ret);
}

/// Entry of netpoll_poll_dev: a frame at this CPU's depth (a bond's poll polls its
/// slaves from inside its own, so one slot per CPU would lose the outer call).
#[inline(always)]
pub fn poll_enter(dev: u64) {
    let Some(pc) = POLL_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    // SAFETY: this CPU's slot; netpoll_poll_dev runs with interrupts off.
    let pc = unsafe { &mut *pc };
    let depth = pc.depth;
    pc.depth = depth + 1;
    if depth >= POLL_DEPTH {
        return; // counted in depth only, so the exits still pair
    }
    let i = masked(depth, POLL_DEPTH - 1) as usize;
    let now = unsafe { bpf_ktime_get_ns() };
    const _: () = assert!(POLL_DEPTH == 4);
    let base = (&raw mut *pc).cast::<u8>();
    at_index!(i, |K| set_poll_frame!(base, K, now, dev), 0 1 2 3);
}

/// Return of netpoll_poll_dev: the frame of its own depth.
#[inline(always)]
pub fn poll_exit<C: EbpfContext>(ctx: &C) {
    let Some(pc) = POLL_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    // SAFETY: this CPU's slot, written by poll_enter on the same CPU.
    let pc = unsafe { &mut *pc };
    if pc.depth == 0 {
        return; // attached mid-call
    }
    let depth = pc.depth - 1;
    pc.depth = depth;
    if depth >= POLL_DEPTH {
        return;
    }
    let i = masked(depth, POLL_DEPTH - 1) as usize;
    let mut frame = (0u64, 0u64);
    let base = (&raw mut *pc).cast::<u8>();
    at_index!(i, |K| frame = take_poll_frame!(base, K), 0 1 2 3);
    let (ts, dev) = frame;
    if ts == 0 {
        return;
    }
    let ns = unsafe { bpf_ktime_get_ns() }.wrapping_sub(ts);
    let Some(cfg) = CONFIG.get(0) else { return };
    let key = cpu_dev(cfg, dev);
    let stats = match POLL_STATS.get_ptr_mut(key) {
        Some(p) => p,
        None => {
            insert_poll_stats(cfg, key);
            match POLL_STATS.get_ptr_mut(key) {
                Some(p) => p,
                None => return lose(loss::STATS_FULL),
            }
        }
    };
    // SAFETY: this CPU's copy of the value (keyed by CPU), no concurrent writer.
    let s = unsafe { &mut *stats };
    s.count += 1;
    s.total_ns += ns;
    if ns > s.max_ns {
        s.max_ns = ns;
    }
    // poll_bucket is below POLL_BUCKETS already, but 4.14's verifier also walks branch
    // combinations that cannot happen (it does not evaluate register-to-register
    // compares), reaching the index with values up to 63 and refusing the legacy
    // poll_dev_exit ("R0 min value is outside of the array range"). A mask it can track
    // bounds every path; the volatile read keeps LLVM from folding the mask away.
    let raw = poll_bucket(ns);
    // SAFETY: a read of a local.
    let b = unsafe { core::ptr::read_volatile(&raw) } & (POLL_BUCKETS - 1);
    bump_bucket!(stats.cast::<u8>(), PollStats, hist, b);
    if cfg.slow_poll_ns != 0 && ns >= cfg.slow_poll_ns {
        let mut ev = PollEvent {
            ts_ns: ts,
            duration_ns: ns,
            dev,
            ifindex: 0,
            flags: 0,
            name: [0; IFNAMSIZ],
        };
        read_dev_identity(cfg, dev, &mut ev.name, &mut ev.ifindex, &mut ev.flags);
        emit(ctx, &POLL_EVENTS, &ev);
    }
}

/// Creates a device's zeroed `PollStats` with its name and ifindex.
#[inline(always)]
fn insert_poll_stats(cfg: &Config, key: CpuDev) {
    let dev = key.dev;
    let Some(fresh) = POLL_SCRATCH.get_ptr_mut(key.cpu) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; no other user on this CPU while we run.
    let fresh = unsafe { &mut *fresh };
    fresh.count = 0;
    fresh.total_ns = 0;
    fresh.max_ns = 0;
    fresh.hist = [0; POLL_BUCKETS];
    (fresh.name, fresh.ifindex, fresh.flags) = dev_identity(cfg, dev);
    // 4.14 takes an update's value only from the stack (304 bytes fit in its 512).
    let value: PollStats = *fresh;
    let _ = POLL_STATS.insert(key, &value, BPF_NOEXIST);
}

/// The device's name, ifindex and identity flags, read into the stack and returned for
/// a map value (the scratch slots): 4.9's bpf_probe_read writes only to the stack
/// (ARG_PTR_TO_RAW_STACK; a map value is refused, "R1 type=map_value_adj expected=fp").
#[inline(always)]
fn dev_identity(cfg: &Config, dev: u64) -> ([u8; IFNAMSIZ], i32, u32) {
    let mut name = [0u8; IFNAMSIZ];
    let mut ifindex = 0i32;
    let mut flags = 0u32;
    read_dev_identity(cfg, dev, &mut name, &mut ifindex, &mut flags);
    (name, ifindex, flags)
}

/// Reads into `name`, `ifindex` and `flags`, which must live on the stack (4.9, above).
#[inline(always)]
fn read_dev_identity(
    cfg: &Config,
    dev: u64,
    name: &mut [u8; IFNAMSIZ],
    ifindex: &mut i32,
    flags: &mut u32,
) {
    if dev == 0 {
        return;
    }
    let base = dev as *const u8;
    if cfg.flags & cf::DEV_NAME != 0
        && unsafe { bpf_probe_read_buf(base.add(cfg.dev_name as usize), name) }.is_ok()
    {
        *flags |= ef::DEV_NAME;
    }
    if cfg.flags & cf::DEV_IFINDEX != 0
        && let Ok(i) = unsafe { probe_read(base.add(cfg.dev_ifindex as usize) as *const i32) }
    {
        *ifindex = i;
        *flags |= ef::IFINDEX;
    }
}

// --- The send path. netconsole sends each message with interrupts off (its target
// --- lock), and the skb transmit keeps them off: per-CPU state pairs entries and exits.
//
// What protects what we read, on every kernel we load on (4.14 to 6.12):
// - `np->dev`, `dev->state`: the netconsole target lock the caller holds keeps the
//   target bound while it sends (teardown takes that lock to unbind it).
// - `dev->npinfo` and `npinfo->txq.qlen`: npinfo is freed after an RCU grace period
//   (4.14: call_rcu_bh, rcu_dereference_bh by netpoll; 4.20+: consolidated call_rcu).
//   Our probes read it inside the skb transmit, where the kernel itself dereferences it,
//   with interrupts off: a read-side critical section for RCU-bh and RCU-sched on 4.14
//   and for the consolidated RCU from 4.20; so it cannot be freed under the read.
// - The console write's probe (`console_write`) runs before netconsole takes its lock:
//   a target torn down meanwhile (its netpoll in NC_TARGETS until userspace sees the
//   teardown) is read without protection. Every read is bpf_probe_read, which faults
//   safely, so the race costs at most a miscounted message, never the kernel anything.
// - `dev->ifindex` and `dev->name` (a statistics entry's key and identity): read where
//   the device is, under the same protection; netpoll_poll_dev's device is held by its
//   netpoll (a reference taken at set-up, dropped after __netpoll_cleanup), and its
//   callers run with interrupts off (RCU-bh/sched on 4.14, consolidated RCU from 4.20).
// Nothing here writes kernel memory.

/// Entry of netpoll_send_udp: one message of `len` bytes.
#[inline(always)]
pub fn send_udp_enter(np: u64, len: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    if cfg.flags & cf::SEND == 0 {
        return;
    }
    let Some(cpu) = SEND_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    let dev = netpoll_dev(cfg, np);
    // SAFETY: this CPU's slot; interrupts are off for the whole message.
    unsafe {
        (*cpu).udp_ts_ns = bpf_ktime_get_ns();
        (*cpu).udp_dev = dev;
        (*cpu).udp_reached = 0;
    }
    if let Some(s) = send_stats(cfg, dev) {
        // SAFETY: this CPU's copy of the value (keyed by CPU).
        unsafe {
            (*s).messages += 1;
            // `int len`: the low 32 bits.
            (*s).bytes += len & 0xffff_ffff;
        }
    }
}

/// Return of netpoll_send_udp: a message that never reached the skb transmit found
/// no skb (the only early return on every kernel).
#[inline(always)]
pub fn send_udp_return<C: EbpfContext>(ctx: &C) {
    let Some(cfg) = CONFIG.get(0) else { return };
    let Some(cpu) = SEND_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let (ts, dev, reached) = unsafe { ((*cpu).udp_ts_ns, (*cpu).udp_dev, (*cpu).udp_reached) };
    unsafe { (*cpu).udp_ts_ns = 0 };
    if ts == 0 || reached != 0 {
        return; // attached mid-call, or accounted by the skb transmit
    }
    let ns = unsafe { bpf_ktime_get_ns() }.wrapping_sub(ts);
    send_dropped(ctx, cfg, dev, send_drop::NO_SKB, ts, ns);
}

/// Entry of the skb transmit: what the kernel is about to decide, read from the
/// same fields it tests (npinfo, running, present) and the deferred queue's length.
#[inline(always)]
pub fn send_skb_enter(np: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    if cfg.flags & cf::SEND == 0 {
        return;
    }
    let Some(cpu) = SEND_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let cpu = unsafe { &mut *cpu };
    let depth = cpu.depth;
    cpu.depth = depth + 1;
    if depth == 0 && cpu.udp_ts_ns != 0 {
        cpu.udp_reached = 1;
    }
    if depth >= SEND_DEPTH {
        return; // counted in depth only, so the exits still pair
    }
    let dev = netpoll_dev(cfg, np);
    let mut drop = 0u32;
    let mut qlen = 0u32;
    if dev == 0 {
        drop = 1 + send_drop::NO_NPINFO;
    } else {
        let base = dev as *const u8;
        let npinfo =
            unsafe { probe_read(base.add(cfg.dev_npinfo as usize) as *const u64) }.unwrap_or(0);
        let state =
            unsafe { probe_read(base.add(cfg.dev_state as usize) as *const u64) }.unwrap_or(0);
        if npinfo == 0 {
            drop = 1 + send_drop::NO_NPINFO;
        } else if state & cfg.state_start == 0 {
            drop = 1 + send_drop::NOT_RUNNING;
        } else if state & cfg.state_present == 0 {
            drop = 1 + send_drop::NOT_PRESENT;
        } else {
            qlen = txq_len(cfg, npinfo);
        }
    }
    let i = masked(depth, SEND_DEPTH - 1) as usize;
    let now = unsafe { bpf_ktime_get_ns() };
    const _: () = assert!(SEND_DEPTH == 4);
    let base = (&raw mut *cpu).cast::<u8>();
    at_index!(i, |K| set_frame!(base, K, now, dev, qlen, drop), 0 1 2 3);
}

/// Return of the skb transmit: dropped as decided at entry, else deferred when the
/// message went to (or waited behind) netpoll's queue, else sent.
#[inline(always)]
pub fn send_skb_return<C: EbpfContext>(ctx: &C) {
    let Some(cfg) = CONFIG.get(0) else { return };
    let Some(cpu) = SEND_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let cpu = unsafe { &mut *cpu };
    if cpu.depth == 0 {
        return; // attached mid-call
    }
    let depth = cpu.depth - 1;
    cpu.depth = depth;
    if depth >= SEND_DEPTH {
        return;
    }
    let i = masked(depth, SEND_DEPTH - 1) as usize;
    let mut frame = (0u64, 0u64, 0u32, 0u32);
    let base = (&raw mut *cpu).cast::<u8>();
    at_index!(i, |K| frame = take_frame!(base, K), 0 1 2 3);
    let (ts, dev, qlen, drop) = frame;
    if ts == 0 {
        return;
    }
    let ns = unsafe { bpf_ktime_get_ns() }.wrapping_sub(ts);
    if drop != 0 {
        return send_dropped(ctx, cfg, dev, drop - 1, ts, ns);
    }
    let Some(s) = send_stats(cfg, dev) else {
        return;
    };
    // SAFETY: this CPU's copy of the value.
    let s = unsafe { &mut *s };
    // The caller keeps npinfo alive for the whole transmit.
    let npinfo =
        unsafe { probe_read((dev as *const u8).add(cfg.dev_npinfo as usize) as *const u64) }
            .unwrap_or(0);
    let after = if npinfo == 0 { 0 } else { txq_len(cfg, npinfo) };
    if qlen > 0 || after > qlen {
        // SAFETY: a field of this CPU's entry (see `bump_at`: no computed field address).
        unsafe { bump_at::<{ off!(SendStats, deferred) }>((&raw mut *s).cast()) };
    } else {
        // SAFETY: as above.
        unsafe { bump_at::<{ off!(SendStats, sent) }>((&raw mut *s).cast()) };
    }
    s.total_ns += ns;
    if ns > s.max_ns {
        s.max_ns = ns;
    }
    let b = masked(poll_bucket(ns) as u32, POLL_BUCKETS as u32 - 1) as usize;
    bump_bucket!((&raw mut *s).cast::<u8>(), SendStats, hist, b);
    if cfg.slow_send_ns != 0 && ns >= cfg.slow_send_ns {
        send_event_out(ctx, cfg, dev, send_event::SLOW, 0, ts, ns);
    }
}

/// netconsole's console write: one message offered to its targets. A target whose
/// device is not running is skipped by netconsole itself (`netif_running`), so netpoll
/// never sees the message: counted here as a message dropped `not_running` (or
/// `not_present`). Written out per slot, not a loop: 4.14 refuses backward jumps.
#[inline(always)]
pub fn console_write<C: EbpfContext>(ctx: &C, len: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    if cfg.flags & cf::SEND == 0 {
        return;
    }
    // Four: each slot inlines a device's statistics update (~500 insns), and 4.14
    // takes at most 4,096 per program.
    const _: () = assert!(NC_TARGET_SLOTS == 4);
    macro_rules! slot {
        ($($i:literal)*) => {$(
            if let Some(np) = NC_TARGETS.get($i) {
                let np = *np;
                if np != 0 {
                    skipped_if_down(ctx, cfg, np, len);
                }
            }
        )*};
    }
    slot!(0 1 2 3);
}

#[inline(always)]
fn skipped_if_down<C: EbpfContext>(ctx: &C, cfg: &Config, np: u64, len: u64) {
    let dev = netpoll_dev(cfg, np);
    if dev == 0 {
        return;
    }
    let state = unsafe { probe_read((dev as *const u8).add(cfg.dev_state as usize) as *const u64) }
        .unwrap_or(0);
    let reason = if state & cfg.state_start == 0 {
        send_drop::NOT_RUNNING
    } else if state & cfg.state_present == 0 {
        send_drop::NOT_PRESENT
    } else {
        return;
    };
    if let Some(s) = send_stats(cfg, dev) {
        // SAFETY: this CPU's copy of the value.
        unsafe {
            (*s).messages += 1;
            (*s).bytes += len & 0xffff_ffff;
        }
    }
    let now = unsafe { bpf_ktime_get_ns() };
    send_dropped(ctx, cfg, dev, reason, now, 0);
}

/// Counts a drop on `dev` and reports it.
#[inline(always)]
fn send_dropped<C: EbpfContext>(ctx: &C, cfg: &Config, dev: u64, reason: u32, ts: u64, ns: u64) {
    if let Some(s) = send_stats(cfg, dev) {
        let r = masked(reason, send_drop::SLOTS as u32 - 1) as usize;
        const _: () = assert!(send_drop::SLOTS == 4);
        let base = s.cast::<u8>();
        // SAFETY: slot K of this CPU's entry's `dropped`.
        at_index!(r, |K| unsafe { bump_at::<{ off!(SendStats, dropped) + 8 * K }>(base) }, 0 1 2 3);
        unsafe {
            (*s).last_drop_ns = ts;
            (*s).last_drop_reason = reason;
        }
    }
    send_event_out(ctx, cfg, dev, send_event::DROP, reason, ts, ns);
}

#[inline(always)]
fn send_event_out<C: EbpfContext>(
    ctx: &C,
    cfg: &Config,
    dev: u64,
    kind: u32,
    reason: u32,
    ts: u64,
    ns: u64,
) {
    let mut ev = SendEvent {
        ts_ns: ts,
        duration_ns: ns,
        dev,
        ifindex: 0,
        flags: 0,
        name: [0; IFNAMSIZ],
        kind,
        reason,
    };
    read_dev_identity(cfg, dev, &mut ev.name, &mut ev.ifindex, &mut ev.flags);
    emit(ctx, &SEND_EVENTS, &ev);
}

/// Hands `ev` to this CPU's buffer of `map`; a failure (no buffer open for this CPU,
/// which a CPU brought online after the reader started has until userspace notices it)
/// is counted, never silent. Index: this CPU (4.4 has no BPF_F_CURRENT_CPU).
#[inline(always)]
fn emit<C: EbpfContext, T>(ctx: &C, map: &PerfEventArray<T>, ev: &T) {
    // SAFETY: the map is a perf event array (repr(transparent) over its definition, as
    // aya-ebpf's own output passes it) and `ev` a stack value of its size.
    let ret = unsafe {
        bpf_perf_event_output(
            ctx.as_ptr(),
            core::ptr::from_ref(map).cast_mut().cast(),
            u64::from(cpu()),
            core::ptr::from_ref(ev).cast_mut().cast(),
            size_of::<T>() as u64,
        )
    };
    if ret != 0 {
        lose(loss::OUTPUT_FAILED);
    }
}

/// `v & mask` in a form the 4.14 verifier tracks (see poll_exit): the volatile read
/// keeps LLVM from folding the mask into a range it already knows.
#[inline(always)]
fn masked(v: u32, mask: u32) -> u32 {
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&v) & mask }
}

/// `np->dev`, 0 when unknown.
#[inline(always)]
fn netpoll_dev(cfg: &Config, np: u64) -> u64 {
    if np == 0 {
        return 0;
    }
    unsafe { probe_read((np as *const u8).add(cfg.np_dev as usize) as *const u64) }.unwrap_or(0)
}

/// `npinfo->txq.qlen`.
#[inline(always)]
fn txq_len(cfg: &Config, npinfo: u64) -> u32 {
    unsafe { probe_read((npinfo as *const u8).add(cfg.npinfo_txq_qlen as usize) as *const u32) }
        .unwrap_or(0)
}

/// This CPU's `SendStats` of `dev`, created (named) on first use.
#[inline(always)]
fn send_stats(cfg: &Config, dev: u64) -> Option<*mut SendStats> {
    let key = cpu_dev(cfg, dev);
    if let Some(p) = SEND_STATS.get_ptr_mut(key) {
        return Some(p);
    }
    let fresh = SEND_SCRATCH.get_ptr_mut(key.cpu)?;
    // SAFETY: this CPU's scratch slot; no other user on this CPU while we run.
    let fresh = unsafe { &mut *fresh };
    fresh.messages = 0;
    fresh.bytes = 0;
    fresh.sent = 0;
    fresh.deferred = 0;
    fresh.dropped = [0; send_drop::SLOTS];
    fresh.total_ns = 0;
    fresh.max_ns = 0;
    fresh.hist = [0; POLL_BUCKETS];
    fresh.last_drop_ns = 0;
    fresh.last_drop_reason = 0;
    fresh._pad = 0;
    (fresh.name, fresh.ifindex, fresh.flags) = dev_identity(cfg, dev);
    // 4.14 takes an update's value only from the stack (376 bytes of its 512).
    let value: SendStats = *fresh;
    let _ = SEND_STATS.insert(key, &value, BPF_NOEXIST);
    let p = SEND_STATS.get_ptr_mut(key);
    if p.is_none() {
        lose(loss::STATS_FULL);
    }
    p
}

// --- Tear-downs: which netpoll, and why.

/// Entry of netpoll_cleanup: an owner turns its netpoll off. Marked only when the
/// netpoll has a device: without one (netconsole's rmmod after the device went away)
/// netpoll_cleanup returns without __netpoll_cleanup, which would have taken the mark,
/// and the mark would stay until CLEANUP filled.
#[inline(always)]
pub fn cleanup_enter(np: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    if cfg.flags & cf::SEND != 0 && netpoll_dev(cfg, np) == 0 {
        return;
    }
    if CLEANUP.insert(bpf_get_current_pid_tgid(), np, 0).is_err() {
        lose(loss::CLEANUP_UNMARKED);
    }
}

/// Entry of __netpoll_cleanup: a record (function `INNER_NETPOLL_CLEANUP`, `ret` its
/// `stop_cause`) to userspace and the ring (not the counters: they count set-ups).
#[inline(always)]
pub fn inner_cleanup_enter<C: EbpfContext>(ctx: &C, np: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut ev = SetupEvent::ZERO;
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.pid_tgid = pid_tgid;
    ev.function = function::INNER_NETPOLL_CLEANUP;
    ev.netpoll = np;
    let dev = if cfg.flags & cf::SEND != 0 {
        netpoll_dev(cfg, np)
    } else {
        0
    };
    ev.dev = dev;
    // A plain u64 (0: no mark), not an Option kept across the calls below: a None's
    // payload is undefined bytes, and the verifier refuses a program that spills them.
    // SAFETY: copied out at once.
    let disabling: u64 = unsafe { CLEANUP.get(pid_tgid) }.copied().unwrap_or(0);
    if disabling != 0 {
        let _ = CLEANUP.remove(pid_tgid);
    }
    // An unregistering device first: on 6.x netconsole tears a target down from its
    // netdev notifier through do_netpoll_cleanup too, which also marks the thread.
    ev.ret = if dev != 0 && cfg.flags & cf::DEV_DISMANTLE != 0 && dismantling(cfg, dev) {
        stop_cause::UNREGISTERED
    } else if disabling != 0 && disabling == np {
        stop_cause::DISABLED
    } else {
        stop_cause::DEVICE_EVENT
    };
    if let Some(comm) = current_comm() {
        ev.comm = comm;
    }
    read_netpoll(&mut ev, cfg, np);
    read_device(&mut ev, cfg, dev);
    emit(ctx, &SETUP_EVENTS, &ev);
    record(&ev);
}

#[inline(always)]
fn dismantling(cfg: &Config, dev: u64) -> bool {
    let p = unsafe { (dev as *const u8).add(cfg.dev_dismantle as usize) };
    unsafe { probe_read(p) }.is_ok_and(|b: u8| b != 0)
}

#[inline(always)]
fn try_enter(function: u32, np: u64, dev: u64) -> Result<(), i64> {
    let cfg = CONFIG.get(0).ok_or(1i64)?;
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the value is copied out at once; a concurrent update can only race
    // with this same thread, which is here.
    let mut depth = unsafe { DEPTH.get(pid_tgid) }.copied().unwrap_or(0);
    let top = if depth > 0 {
        frame(pid_tgid, depth - 1)
    } else {
        Frame::NONE
    };
    if depth > MAX_DEPTH || pairing::on_enter(depth, top, function, np, now) == Enter::Flush {
        flush(pid_tgid, depth);
        depth = 0;
    }
    let mut ev = SetupEvent::ZERO;
    ev.ts_ns = now;
    ev.pid_tgid = pid_tgid;
    ev.function = function;
    ev.depth = depth;
    ev.netpoll = np;
    ev.dev = dev;
    if let Some(comm) = current_comm() {
        ev.comm = comm;
    }
    read_netpoll(&mut ev, cfg, np);
    read_device(&mut ev, cfg, dev);
    let key = InflightKey {
        pid_tgid,
        depth,
        _pad: 0,
    };
    // Not parked (INFLIGHT full), the level is still counted: its return then pairs
    // with the empty level instead of taking its caller's entry.
    let parked = INFLIGHT.insert(key, ev, 0).is_ok();
    if DEPTH.insert(pid_tgid, depth + 1, 0).is_err() {
        // No level for this thread (DEPTH full): its return will find nothing.
        let _ = INFLIGHT.remove(key);
        lose(loss::ENTRY_DROPPED);
        return Err(1);
    }
    if !parked {
        lose(loss::ENTRY_DROPPED);
    }
    Ok(())
}

/// The pairing's view of the entry parked at `depth` (`Frame::NONE`: none parked).
#[inline(always)]
fn frame(pid_tgid: u64, depth: u32) -> Frame {
    let key = InflightKey {
        pid_tgid,
        depth,
        _pad: 0,
    };
    // SAFETY: fields copied out of a map value pointer from a successful lookup.
    match unsafe { INFLIGHT.get(key) } {
        Some(e) => Frame {
            function: e.function,
            netpoll: e.netpoll,
            ts_ns: e.ts_ns,
        },
        None => Frame::NONE,
    }
}

/// The newest `pairing::WALK` levels below `depth`, newest first.
#[inline(always)]
fn frames(pid_tgid: u64, depth: u32) -> [Frame; pairing::WALK as usize] {
    let at = |i: u32| {
        if depth > i {
            frame(pid_tgid, depth - 1 - i)
        } else {
            Frame::NONE
        }
    };
    [at(0), at(1), at(2)]
}

/// Drops the entry parked at `depth`; true if there was one.
#[inline(always)]
fn unpark(pid_tgid: u64, depth: u32) -> bool {
    INFLIGHT
        .remove(InflightKey {
            pid_tgid,
            depth,
            _pad: 0,
        })
        .is_ok()
}

/// Drops every entry parked for the thread (its returns were missed) and counts them.
/// Written out, not a loop: 4.14 refuses backward jumps.
#[inline(always)]
fn flush(pid_tgid: u64, depth: u32) {
    const _: () = assert!(MAX_DEPTH == 8);
    macro_rules! level {
        ($($i:literal)*) => {$(
            if depth > $i && unpark(pid_tgid, $i) {
                lose(loss::ORPHANED_ENTRY);
            }
        )*};
    }
    level!(0 1 2 3 4 5 6 7);
    let _ = DEPTH.remove(pid_tgid);
}

#[inline(always)]
fn try_exit<C: EbpfContext>(ctx: &C, function: u32, np: Option<u64>, ret: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let depth = match unsafe { DEPTH.get(pid_tgid) }.copied() {
        Some(d) if d > 0 && d <= MAX_DEPTH => d,
        _ => {
            // Attached while the call was already running, or its entry was dropped.
            #[cfg(feature = "log")]
            debug!(
                ctx,
                "set-up fn={} returned without a recorded entry", function
            );
            return lose(loss::UNPAIRED_RETURN);
        }
    };
    let dropped = match pairing::on_exit(depth, frames(pid_tgid, depth), function, np) {
        Exit::Pair { dropped } => dropped,
        Exit::Unpaired => {
            #[cfg(feature = "log")]
            debug!(
                ctx,
                "set-up fn={} returned matching no parked entry", function
            );
            return lose(loss::UNPAIRED_RETURN);
        }
    };
    // The newer entries missed their returns (pairing::WALK is 3: at most two).
    if dropped > 0 && unpark(pid_tgid, depth - 1) {
        lose(loss::MISSED_RETURN);
    }
    if dropped > 1 && unpark(pid_tgid, depth - 2) {
        lose(loss::MISSED_RETURN);
    }
    #[cfg(feature = "log")]
    if dropped > 0 {
        warn!(
            ctx,
            "set-up fn={}: {} nested entries missed their returns", function, dropped
        );
    }
    // on_exit pairs only below depth: dropped < depth.
    let level = depth - 1 - dropped;
    if level == 0 {
        let _ = DEPTH.remove(pid_tgid);
    } else {
        let _ = DEPTH.insert(pid_tgid, level, 0);
    }
    let key = InflightKey {
        pid_tgid,
        depth: level,
        _pad: 0,
    };
    // None: the level whose entry could not be parked (counted then).
    let Some(parked) = INFLIGHT.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: map value pointer from a successful lookup; only this thread uses the
    // key. Copied to the stack: 4.14 takes perf output and map values only from there.
    let mut ev: SetupEvent = unsafe { *parked };
    // `int` return: the low 32 bits of the return register.
    ev.ret = ret as u32 as i32;
    ev.duration_ns = unsafe { bpf_ktime_get_ns() }.wrapping_sub(ev.ts_ns);
    #[cfg(feature = "log")]
    debug!(
        ctx,
        "set-up fn={} depth={} ret={}", ev.function, ev.depth, ev.ret
    );
    emit(ctx, &SETUP_EVENTS, &ev);
    record(&ev);
    count(&ev);
    let _ = INFLIGHT.remove(key);
}

#[inline(always)]
fn lose(slot: u32) {
    if let Some(p) = LOSSES.get_ptr_mut(cpu() * loss::SLOTS + slot) {
        // SAFETY: this CPU's slot.
        unsafe { *p += 1 };
    }
}

/// Puts a finished event into the ring under the next free sequence number.
#[inline(always)]
fn record(ev: &SetupEvent) {
    let Some(meta) = META.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map value lives as long as the map; fields are read and stored
    // whole, and a racing store of next_seq only makes the next claim retry.
    let meta = unsafe { &mut *meta };
    if meta.schema == 0 || meta.ring_size == 0 {
        return; // userspace has not initialised the recorder
    }
    let n = meta.ring_size as u64;
    let seq = meta.next_seq;
    // Another CPU may have taken a number (or the map is briefly full): try the next
    // ones. Four tries written out, not a loop: 4.14 refuses backward jumps.
    if claim(meta, n, seq, ev)
        || claim(meta, n, seq + 1, ev)
        || claim(meta, n, seq + 2, ev)
        || claim(meta, n, seq + 3, ev)
    {
        return;
    }
    lose(loss::UNRECORDED);
}

/// Stores `ev` under `seq` unless another CPU has; evicts the event `n` before it.
#[inline(always)]
fn claim(meta: &mut RecorderMeta, n: u64, seq: u64, ev: &SetupEvent) -> bool {
    if seq >= n {
        let _ = RING.remove(seq - n);
    }
    if RING.insert(seq, ev, BPF_NOEXIST).is_ok() {
        meta.next_seq = seq + 1;
        return true;
    }
    false
}

/// Counts the call per device, function and return value.
#[inline(always)]
fn count(ev: &SetupEvent) {
    let mut key = CounterKey {
        dev_name: [0; IFNAMSIZ],
        function: ev.function,
        ret: ev.ret,
    };
    if ev.flags & ef::DEV_NAME != 0 {
        key.dev_name = ev.dev_name;
    } else if ev.flags & ef::NP_DEV_NAME != 0 {
        key.dev_name = ev.np_dev_name;
    }
    // A renamed device keeps old bytes after its name's NUL (strscpy does not pad):
    // clear them, or one device would count under several keys.
    clear_after_nul(&mut key.dev_name);
    let key = CpuCounterKey { cpu: cpu(), key };
    // This CPU's entry (the CPU is in the key): no other writer, so EEXIST cannot
    // happen; it is still taken as "exists".
    if COUNTERS.get_ptr_mut(key).is_none() {
        match COUNTERS.insert(key, 0u64, BPF_NOEXIST) {
            Ok(()) => {}
            Err(e) if e == -EEXIST => {}
            Err(_) => return lose(loss::COUNTERS_FULL),
        }
    }
    if let Some(p) = COUNTERS.get_ptr_mut(key) {
        // SAFETY: this CPU's copy of the value.
        unsafe { *p += 1 };
    }
}

/// Zeroes every byte after the first NUL. Written out byte by byte, not as a loop:
/// 4.14 refuses backward jumps (16 is both IFNAMSIZ and OWNER_LEN).
#[inline(always)]
fn clear_after_nul(s: &mut [u8; 16]) {
    let mut end = false;
    macro_rules! step {
        ($($i:literal)*) => {$(
            end |= s[$i] == 0;
            if end {
                s[$i] = 0;
            }
        )*};
    }
    step!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
}

const _: () = assert!(IFNAMSIZ == 16 && OWNER_LEN == 16 && COMM_LEN == 16);

#[inline(always)]
fn read_netpoll(ev: &mut SetupEvent, cfg: &Config, np: u64) {
    if np == 0 {
        return;
    }
    let base = np as *const u8;
    if cfg.flags & cf::NP_DEV_NAME != 0 {
        // SAFETY: bpf_probe_read faults safely on a bad address.
        let src = unsafe { base.add(cfg.np_dev_name as usize) };
        if unsafe { bpf_probe_read_buf(src, &mut ev.np_dev_name) }.is_ok() {
            ev.flags |= ef::NP_DEV_NAME;
        }
    }
    if cfg.flags & cf::NP_NAME != 0 {
        let ptr = unsafe { base.add(cfg.np_name as usize) } as *const u64;
        if let Ok(name) = unsafe { probe_read(ptr) }
            && name != 0
            && read_owner(name as *const u8, &mut ev.owner)
        {
            ev.flags |= ef::OWNER;
        }
    }
    if cfg.flags & cf::NP_REMOTE != 0 {
        let ipv6 = unsafe { probe_read(base.add(cfg.np_ipv6 as usize)) }.unwrap_or(1u8);
        let ip = unsafe { probe_read(base.add(cfg.np_remote_ip as usize) as *const [u8; 4]) };
        let rport = unsafe { probe_read(base.add(cfg.np_remote_port as usize) as *const u16) };
        let lport = unsafe { probe_read(base.add(cfg.np_local_port as usize) as *const u16) };
        if let (0, Ok(ip), Ok(r), Ok(l)) = (ipv6, ip, rport, lport) {
            ev.remote_ip = ip;
            ev.remote_port = r;
            ev.local_port = l;
            ev.flags |= ef::REMOTE;
        }
    }
}

/// The string `netpoll.name` points to. bpf_probe_read_str (4.11) is the exact
/// read; the legacy object keeps to 4.9's helpers with a fixed-size read whose bytes
/// after the NUL are cleared (the owner is a string literal such as "netconsole", so
/// its 16 bytes are readable).
#[inline(always)]
fn read_owner(src: *const u8, dst: &mut [u8; OWNER_LEN]) -> bool {
    #[cfg(not(feature = "legacy"))]
    {
        // Not the _kernel_ variant (5.5+): older kernels stay in reach.
        #[allow(deprecated)]
        let read = unsafe { aya_ebpf::helpers::bpf_probe_read_str(src, dst) };
        read.is_ok()
    }
    #[cfg(feature = "legacy")]
    {
        let ok = unsafe { bpf_probe_read_buf(src, dst) }.is_ok();
        clear_after_nul(dst);
        ok
    }
}

#[inline(always)]
fn read_device(ev: &mut SetupEvent, cfg: &Config, dev: u64) {
    if dev == 0 {
        return;
    }
    let base = dev as *const u8;
    read_dev_identity(cfg, dev, &mut ev.dev_name, &mut ev.ifindex, &mut ev.flags);
    if cfg.flags & cf::DEV_OPS != 0 {
        let src = unsafe { base.add(cfg.dev_netdev_ops as usize) } as *const u64;
        if let Ok(ops) = unsafe { probe_read(src) } {
            ev.ops = ops;
            if ops != 0 {
                let ops_base = ops as *const u8;
                let pc = unsafe { ops_base.add(cfg.ops_poll_controller as usize) } as *const u64;
                let ns = unsafe { ops_base.add(cfg.ops_netpoll_setup as usize) } as *const u64;
                if let (Ok(pc), Ok(ns)) = unsafe { (probe_read(pc), probe_read(ns)) } {
                    ev.poll_controller = pc;
                    ev.netpoll_setup_op = ns;
                    ev.flags |= ef::OPS;
                }
            }
        }
    }
    if cfg.flags & cf::DEV_PRIV_FLAGS != 0 {
        let src = unsafe { base.add(cfg.dev_priv_flags as usize) } as *const u64;
        if let Ok(raw) = unsafe { probe_read(src) } {
            let bits = raw >> (cfg.priv_flags_shift & 63);
            ev.flags |= ef::PRIV_FLAGS;
            if bits & cfg.iff_disable_netpoll != 0 {
                ev.flags |= ef::NETPOLL_DISABLED;
            }
        }
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
