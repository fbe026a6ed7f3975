//! `netpoll_poll_dev`: per-device counts and latency histograms (`POLL_STATS`), the
//! calls in progress per CPU (`POLL_CPU`, one frame per nesting depth), single slow
//! calls (`POLL_EVENTS`).

use aya_ebpf::{EbpfContext, helpers::bpf_ktime_get_ns};
use netpoll_trace_common::{
    Config, CpuDev, IFNAMSIZ, POLL_BUCKETS, POLL_DEPTH, PollCpu, PollEvent, PollFrame, PollStats,
    loss, opaque, poll_bucket,
};

use crate::{
    access::{cpu, emit, load_at, masked, store_at},
    device::{cpu_dev, dev_identity, read_dev_identity},
    maps::{BPF_NOEXIST, CONFIG, POLL_CPU, POLL_EVENTS, POLL_SCRATCH, POLL_STATS},
    recorder::lose,
};

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
    // bounds every path; `opaque` keeps LLVM from folding the mask away.
    let b = opaque(poll_bucket(ns)) & (POLL_BUCKETS - 1);
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
