//! What every program does the same way: which CPU it runs on, reads of kernel memory
//! into the stack (`probe_read`; `read_if`, whose outcome is a number, not a branch), the
//! current task's comm, loads and stores at constant offsets into a
//! map value (`bump_at`, `store_at`, `load_at`, `at_index!`, `off!`), an array field's
//! element by index (`bump_indexed`, `bump_slot!`, `bump_bucket!`),
//! the masks old verifiers track (`masked`), and perf output (`emit`).

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_smp_processor_id, bpf_perf_event_output, bpf_probe_read_buf},
    maps::PerfEventArray,
};
use netpoll_trace_common::{COMM_LEN, loss, mask, opaque};

use crate::recorder::lose;

/// The CPU this program runs on: kprobe programs run with preemption off, so it is
/// stable for the whole run, and the index of this CPU's slot in the CPU-keyed maps
/// (one entry per CPU, or per CPU and slot, sized by userspace: `per_cpu`).
#[inline(always)]
pub(crate) fn cpu() -> u32 {
    // SAFETY: a helper call without arguments.
    unsafe { bpf_get_smp_processor_id() }
}

/// `bpf_probe_read` into a zeroed stack value: 4.4 lets a helper write only stack it
/// considers initialised (ARG_PTR_TO_STACK; ARG_PTR_TO_RAW_STACK came in 4.7).
///
/// # Safety
/// `T` must be plain data for which all-zero bytes are a value.
#[inline(always)]
pub(crate) unsafe fn probe_read<T: Copy>(src: *const T) -> Result<T, i32> {
    // SAFETY: the caller's promise about T.
    let mut v: T = unsafe { core::mem::zeroed() };
    // SAFETY: v's own bytes.
    let dst = unsafe { core::slice::from_raw_parts_mut((&raw mut v).cast::<u8>(), size_of::<T>()) };
    // SAFETY: bpf_probe_read faults safely on a bad source.
    unsafe { bpf_probe_read_buf(src.cast::<u8>(), dst) }.map(|()| v)
}

/// `bpf_probe_read` of `dst.len()` bytes from `src` into `dst` (zero-filled by the helper
/// on a fault) when `on` is 1, of nothing when it is 0 (a field the configuration may
/// switch off); returns 1 when read and 0 when not or off. All without a branch: a flag
/// set from it (`flags |= FLAG * ok`) leaves the verifier one state where a branch would
/// leave two, and the set-up programs read a dozen fields (each outcome, and each
/// switch, was a path walked to the end: on 5.10, which does not merge a stack slot one
/// side filled with one the other left zeroed, __netpoll_setup's entry walked its tail up
/// to 20 times). The modern object reads `dst.len() & mask(on)` bytes; the legacy
/// object's kernels take only constant sizes (4.14's ARG_CONST_SIZE refuses a zero), so
/// it branches on `on`.
///
/// # Safety
/// `dst` must be stack memory (4.9: ARG_PTR_TO_RAW_STACK).
#[inline(always)]
pub(crate) unsafe fn read_if(on: u64, src: u64, dst: &mut [u8]) -> u32 {
    #[cfg(not(feature = "legacy"))]
    let len = len_if(dst.len(), on);
    #[cfg(feature = "legacy")]
    let len = {
        if on == 0 {
            return 0;
        }
        dst.len() as u32
    };
    // SAFETY: at most dst's own bytes; bpf_probe_read faults safely on any source.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read(
            dst.as_mut_ptr().cast(),
            len,
            src as *const core::ffi::c_void,
        )
    };
    outcome(ret, on)
}

/// `read_if` for a string: bpf_probe_read_str (4.11; the modern object only), which
/// stops after the NUL.
///
/// # Safety
/// As `read_if`.
#[cfg(not(feature = "legacy"))]
#[inline(always)]
pub(crate) unsafe fn read_str_if(on: u64, src: u64, dst: &mut [u8]) -> u32 {
    // Not the _kernel_ variant (5.5+): older kernels stay in reach.
    // SAFETY: at most dst's own bytes; the helper faults safely on any source.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_str(
            dst.as_mut_ptr().cast(),
            len_if(dst.len(), on),
            src as *const core::ffi::c_void,
        )
    };
    outcome(ret, on)
}

/// `len` when `on` is 1, 0 when it is 0: by `mask`, not a product, which LLVM would
/// make a select (a branch) again.
#[cfg(not(feature = "legacy"))]
#[inline(always)]
fn len_if(len: usize, on: u64) -> u32 {
    (len as u64 & mask(on)) as u32
}

/// A read helper's result as 1 (read) or 0 (failed, or `on` was 0). The helper returns 0
/// or a length on success (a read of no bytes too, so `on` decides), a negative errno
/// otherwise: the sign bit is the failure. Through `opaque`, or LLVM makes `FLAG * ok` a
/// select on the sign: a branch again. As a u64: the verifier keeps an 8-byte spill's
/// [0, 1] range; a 4-byte one it forgets, and a flag it no longer knows is 0 or FLAG
/// costs both sides of every later test of it (6.12, __netpoll_setup's entry: 3,439 as
/// a select, 3,963 as a u32, 3,316 as a u64).
#[inline(always)]
fn outcome(ret: i64, on: u64) -> u32 {
    (opaque(((ret as u64) >> 63) ^ 1) & on) as u32
}

/// The bytes of a plain value, for `read_if`.
#[inline(always)]
pub(crate) fn bytes_of<T: Copy>(v: &mut T) -> &mut [u8] {
    // SAFETY: v's own bytes; T is plain data (every caller's is an integer).
    unsafe { core::slice::from_raw_parts_mut((v as *mut T).cast::<u8>(), size_of::<T>()) }
}

/// The current task's comm, read into a zeroed buffer (4.4, as `probe_read`).
#[inline(always)]
pub(crate) fn current_comm() -> Option<[u8; COMM_LEN]> {
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
pub(crate) unsafe fn bump_at<const OFF: i16>(base: *mut u8) {
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
pub(crate) unsafe fn store_at<const OFF: i16, const W: u8>(base: *mut u8, v: u64) {
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
pub(crate) unsafe fn load_at<const OFF: i16, const W: u8>(base: *mut u8) -> u64 {
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

/// `*(u64 *)(base + OFF + 8 * (i & MASK)) += 1`: one computed address, which the modern
/// object's kernels (5.8+) bound from the mask. A branch per index (`at_index!`, which
/// 4.4 needs) costs up to 32 compares a run and one verifier path each: the send path's
/// fexit verified 37,318 instructions with them.
///
/// # Safety
/// `base + OFF + 8 * k` is a valid, exclusively owned u64 for every `k <= MASK`.
#[cfg(not(feature = "legacy"))]
#[inline(always)]
pub(crate) unsafe fn bump_indexed<const OFF: i16, const MASK: u32>(base: *mut u8, i: u32) {
    let element: *mut u8;
    #[cfg(target_arch = "bpf")]
    // SAFETY: arithmetic on registers only; the mask bounds the index in the
    // instruction the verifier sees (LLVM cannot fold it away inside the assembly).
    unsafe {
        core::arch::asm!(
            "{i} &= {m}",
            "{i} <<= 3",
            "{p} += {i}",
            p = inout(reg) base => element,
            i = inout(reg) u64::from(i) => _,
            m = const MASK,
            options(pure, nomem, nostack),
        );
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        element = base.wrapping_add(8 * (i & MASK) as usize);
    }
    // SAFETY: the caller's promise, for element k = i & MASK.
    unsafe { bump_at::<OFF>(element) };
}

/// `$ty.$field[b] += 1` in the map value at `$base` (a `[u64; N]` array field, its
/// indices `0 1 ... N-1` listed, N a power of two): computed in the modern object, a
/// branch per index in the legacy one (4.4 allows no arithmetic on a map value pointer).
macro_rules! bump_slot {
    ($base:expr, $ty:ty, $field:ident, $b:expr, $($k:literal)*) => {{
        const N: u32 = [$($k),*].len() as u32;
        const _: () = assert!(N.is_power_of_two());
        let base: *mut u8 = $base;
        #[cfg(not(feature = "legacy"))]
        // SAFETY: the field is `[u64; N]` and the index is masked to it.
        unsafe {
            $crate::access::bump_indexed::<{ off!($ty, $field) }, { N - 1 }>(base, $b as u32)
        };
        #[cfg(feature = "legacy")]
        // SAFETY: a field of this CPU's map value.
        at_index!($b, |K| unsafe { $crate::access::bump_at::<{ off!($ty, $field) + 8 * K }>(base) }, $($k)*);
    }};
}

/// `$ty.$field[b] += 1` in the map value at `$base` (a `[u64; POLL_BUCKETS]` histogram).
macro_rules! bump_bucket {
    ($base:expr, $ty:ty, $field:ident, $b:expr) => {{
        const _: () = assert!(POLL_BUCKETS == 32);
        bump_slot!($base, $ty, $field, $b,
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    }};
}

/// Hands `ev` to this CPU's buffer of `map`; a failure (no buffer open for this CPU,
/// which a CPU brought online after the reader started has until userspace notices it)
/// is counted, never silent. Index: this CPU (4.4 has no BPF_F_CURRENT_CPU).
#[inline(always)]
pub(crate) fn emit<C: EbpfContext, T>(ctx: &C, map: &PerfEventArray<T>, ev: &T) {
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

/// `v & mask` in a form the 4.14 verifier tracks (see poll_exit): `opaque` keeps LLVM
/// from folding the mask into a range it already knows.
#[inline(always)]
pub(crate) fn masked(v: u32, mask: u32) -> u32 {
    opaque(v) & mask
}
