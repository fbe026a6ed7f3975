//! Set-up calls (`netpoll_setup`, `__netpoll_setup`): an entry is parked in `INFLIGHT`
//! at its thread's nesting depth, its return pairs with it (`pairing` decides) and
//! sends the finished record to userspace, the recorder's ring and the counters.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
};
#[cfg(feature = "log")]
use aya_log_ebpf::debug;
use netpoll_trace_common::{
    InflightKey, MAX_DEPTH, SetupEvent, config_flags, function, loss,
    pairing::{self, Enter, Exit, Frame},
};

use crate::{
    access::{current_comm, emit},
    device::{read_device, read_netpoll},
    maps::{CONFIG, DEPTH, INFLIGHT, SETUP_EVENTS},
    recorder::{count, lose, record},
};

/// Entry of `netpoll_setup`/`__netpoll_setup`.
#[inline(always)]
pub fn setup_enter(function: u32, np: u64, dev: u64) {
    let _ = try_enter(function, np, dev);
}

/// Entry of netconsole's own set-up (7.3+) with its target `nt`: the netpoll inside
/// it where userspace found `np` in the module's BTF, else none (the device name is
/// then the kernel log's to tell).
#[inline(always)]
pub fn netcons_setup_enter(nt: u64) {
    let np = match CONFIG.get(0) {
        Some(cfg) if cfg.flags & config_flags::NT_NP != 0 && nt != 0 => {
            nt.wrapping_add(cfg.nt_np as u64)
        }
        _ => 0,
    };
    setup_enter(function::NETCONS_NETPOLL_SETUP, np, 0);
}

/// Return of `netpoll_setup`/`__netpoll_setup`; `np` where the probe sees the
/// argument (fexit), None where it cannot (kretprobe).
#[inline(always)]
pub fn setup_exit<C: EbpfContext>(ctx: &C, function: u32, np: Option<u64>, ret: u64) {
    try_exit(ctx, function, np, ret);
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
        // Attached while the call was already running, or its entry was dropped.
        _ => return lose(loss::UNPAIRED_RETURN),
    };
    let dropped = match pairing::on_exit(depth, frames(pid_tgid, depth), function, np) {
        Exit::Pair { dropped } => dropped,
        Exit::Unpaired => return lose(loss::UNPAIRED_RETURN),
    };
    // The newer entries missed their returns (pairing::WALK is 3: at most two).
    if dropped > 0 && unpark(pid_tgid, depth - 1) {
        lose(loss::MISSED_RETURN);
    }
    if dropped > 1 && unpark(pid_tgid, depth - 2) {
        lose(loss::MISSED_RETURN);
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
    // The programs' one log statement, the pairing at debug level (`-vv`): each one is a
    // closure LLVM keeps out of line (~400 instructions) that aya copies into every
    // program calling it and the kernel loads and checks even when the level switches it
    // off; the three that reported losses took a set-up return from ~645 to 2,266
    // instructions, and `loss::{UNPAIRED_RETURN, MISSED_RETURN}` count those at every
    // level. A statement the level lets through is also walked by the verifier on every
    // path to it.
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
