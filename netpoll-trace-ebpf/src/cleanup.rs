//! Tear-downs: which netpoll, and why.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
};
use netpoll_trace_common::{SetupEvent, config_flags as cf, function, loss, stop_cause};

use crate::{
    access::{current_comm, emit},
    device::{dismantling, netpoll_dev, read_device, read_netpoll},
    maps::{CLEANUP, CONFIG, SETUP_EVENTS},
    recorder::{lose, record},
};

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
