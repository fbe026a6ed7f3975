//! The send path. netconsole sends each message with interrupts off (its target
//! lock), and the skb transmit keeps them off: per-CPU state pairs entries and exits.
//!
//! What protects what we read, on every kernel we load on (4.4 to 7.3):
//! - `np->dev`, `dev->state`: the netconsole target lock the caller holds keeps the
//!   target bound while it sends (teardown takes that lock to unbind it).
//! - `dev->npinfo` and `npinfo->txq.qlen`: npinfo is freed after an RCU grace period
//!   (4.14: call_rcu_bh, rcu_dereference_bh by netpoll; 4.20+: consolidated call_rcu).
//!   The kprobes read it at the skb transmit's entry and return, the fexit just after
//!   the transmit returns (fentry needs 5.5+): each still inside the caller's
//!   interrupts-off section (netconsole's target lock, irqsave; a bond's transmit for
//!   its slave's), a read-side critical section for RCU-bh and RCU-sched on 4.14 and for
//!   the consolidated RCU from 4.20; so it cannot be freed under the read.
//! - The console write's probe (`console_write`) runs before netconsole takes its lock:
//!   a target torn down meanwhile (its netpoll in NC_TARGETS until userspace sees the
//!   teardown) is read without protection. Every read is bpf_probe_read, which faults
//!   safely, so the race costs at most a miscounted message, never the kernel anything.
//! - `dev->ifindex` and `dev->name` (a statistics entry's key and identity): read where
//!   the device is, under the same protection; netpoll_poll_dev's device is held by its
//!   netpoll (a reference taken at set-up, dropped after __netpoll_cleanup), and its
//!   callers run with interrupts off (RCU-bh/sched on 4.14, consolidated RCU from 4.20).
//!
//! Nothing here writes kernel memory.

use aya_ebpf::{EbpfContext, helpers::bpf_ktime_get_ns};
use netpoll_trace_common::{
    Config, IFNAMSIZ, NC_TARGET_SLOTS, POLL_BUCKETS, SEND_DEPTH, SendCpu, SendEvent, SendFrame,
    SendStats, config_flags as cf, loss, poll_bucket, send_drop, send_event,
};

use crate::{
    access::{bump_at, cpu, emit, load_at, masked, probe_read, store_at},
    device::{cpu_dev, dev_identity, netpoll_dev, read_dev_identity, txq_len},
    maps::{BPF_NOEXIST, CONFIG, NC_TARGETS, SEND_CPU, SEND_EVENTS, SEND_SCRATCH, SEND_STATS},
    recorder::lose,
};

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

/// Entry of netpoll_send_udp: a message of `len` bytes begins. Kept for the skb
/// transmit's return, which counts it with its outcome: the send has no return probe (a
/// message costs two program runs, this and the transmit's return; three with kprobes),
/// and this one only notes (no statistics lookup). The previous message on this CPU, if
/// it never reached the skb transmit, found no skb: counted and reported now.
#[inline(always)]
pub fn send_udp_enter<C: EbpfContext>(ctx: &C, np: u64, len: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    if cfg.flags & cf::SEND == 0 {
        return;
    }
    let Some(cpu) = SEND_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: this CPU's slot; interrupts are off for the whole message.
    let (prev_ts, prev_np, prev_len, prev_reached) = unsafe {
        let prev = (
            (*cpu).udp_ts_ns,
            (*cpu).udp_np,
            (*cpu).udp_len,
            (*cpu).udp_reached,
        );
        (*cpu).udp_ts_ns = now;
        (*cpu).udp_np = np;
        // `int len`: the low 32 bits.
        (*cpu).udp_len = len & 0xffff_ffff;
        (*cpu).udp_reached = 0;
        prev
    };
    if cfg.flags & cf::SEND_RETURN == 0 {
        // Nobody counts it at the transmit's return.
        count_message(cfg, netpoll_dev(cfg, np), len & 0xffff_ffff);
        return;
    }
    if prev_ts != 0 && prev_reached == 0 && prev_np != 0 {
        // Its netpoll is read now: a target torn down since costs a miscount, no more.
        let dev = netpoll_dev(cfg, prev_np);
        let stats = send_stats(cfg, dev);
        count_on(stats, prev_len);
        dropped_on(ctx, cfg, stats, dev, send_drop::NO_SKB, prev_ts, 0);
    }
}

/// Counts one message of `len` bytes on `dev`.
#[inline(always)]
fn count_message(cfg: &Config, dev: u64, len: u64) {
    count_on(send_stats(cfg, dev), len);
}

/// Counts one message of `len` bytes in this CPU's statistics entry `stats`.
#[inline(always)]
fn count_on(stats: Option<*mut SendStats>, len: u64) {
    if let Some(s) = stats {
        // SAFETY: this CPU's copy of the value (keyed by CPU).
        unsafe {
            (*s).messages += 1;
            (*s).bytes += len;
        }
    }
}

/// Entry of netconsole's own netpoll_send_udp (7.3+) with its target `nt`: the
/// netpoll inside it, where userspace found where (`Config::nt_np`).
#[inline(always)]
pub fn netcons_send_udp_enter<C: EbpfContext>(ctx: &C, nt: u64, len: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    if cfg.flags & cf::NT_NP == 0 || nt == 0 {
        return;
    }
    send_udp_enter(ctx, nt.wrapping_add(cfg.nt_np as u64), len);
}

/// What the skb transmit decides for `dev`, read from the fields it tests (npinfo,
/// running, present): 1 + a `send_drop` slot when it drops the message, else 0; and the
/// deferred queue's length.
#[inline(always)]
fn transmit_verdict(cfg: &Config, dev: u64) -> (u32, u32) {
    if dev == 0 {
        return (1 + send_drop::NO_NPINFO, 0);
    }
    let base = dev as *const u8;
    let npinfo =
        unsafe { probe_read(base.add(cfg.dev_npinfo as usize) as *const u64) }.unwrap_or(0);
    let state = unsafe { probe_read(base.add(cfg.dev_state as usize) as *const u64) }.unwrap_or(0);
    if npinfo == 0 {
        (1 + send_drop::NO_NPINFO, 0)
    } else if state & cfg.state_start == 0 {
        (1 + send_drop::NOT_RUNNING, 0)
    } else if state & cfg.state_present == 0 {
        (1 + send_drop::NOT_PRESENT, 0)
    } else {
        (0, txq_len(cfg, npinfo))
    }
}

/// The bytes of the message whose transmit returns, when the return counts messages
/// (`config_flags::SEND_RETURN`; else the send's entry did).
#[inline(always)]
fn counts(cfg: &Config, cpu: &SendCpu) -> Option<u64> {
    (cfg.flags & cf::SEND_RETURN != 0).then_some(cpu.udp_len)
}

/// When the send of the transmit about to start (kprobes) or just ended (fentry) began:
/// its message's netpoll_send_udp entry while that message is in progress on this CPU
/// (a stacked device's transmit, a bond's slave's, is inside its message), else `now`.
#[inline(always)]
fn send_began(cpu: &SendCpu, now: u64) -> u64 {
    if cpu.udp_np != 0 && cpu.udp_ts_ns != 0 {
        cpu.udp_ts_ns
    } else {
        now
    }
}

/// Return of the skb transmit under fentry (fexit sees the netpoll `np`): the message's
/// whole outcome in one program, decided from what the transmit left: dropped when the
/// fields it tests say so, deferred when netpoll's queue holds messages (ours, or ours
/// behind earlier ones), else sent. The message's own transmit (its netpoll's) counts the
/// message too; a stacked device's, inside it, only its outcome. The duration runs from
/// netpoll_send_udp's entry. A field that changed during the transmit (the device set
/// down mid-send) can miscount that one message; the kprobe programs decide at entry.
#[inline(always)]
pub fn send_skb_fexit<C: EbpfContext>(ctx: &C, np: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    if cfg.flags & cf::SEND == 0 {
        return;
    }
    let Some(cpu) = SEND_CPU.get_ptr_mut(cpu()) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let cpu = unsafe { &mut *cpu };
    let now = unsafe { bpf_ktime_get_ns() };
    let ts = send_began(cpu, now);
    let mut len = None;
    if cpu.udp_np != 0 {
        cpu.udp_reached = 1;
        if cpu.udp_np == np {
            cpu.udp_np = 0; // the message's own transmit: it is over
            len = counts(cfg, cpu);
        }
    }
    let dev = netpoll_dev(cfg, np);
    // At the return, the queue's length is what the transmit left.
    let (drop, qlen) = transmit_verdict(cfg, dev);
    let ns = now.wrapping_sub(ts);
    transmit_done(ctx, cfg, dev, len, drop, qlen > 0, ts, ns);
}

/// Entry of the skb transmit (kprobes: the return cannot see the netpoll): what the
/// kernel is about to decide and the deferred queue's length, kept for the return.
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
    if depth == 0 && cpu.udp_np != 0 {
        cpu.udp_reached = 1;
    }
    if depth >= SEND_DEPTH {
        return; // counted in depth only, so the exits still pair
    }
    let dev = netpoll_dev(cfg, np);
    let (drop, qlen) = transmit_verdict(cfg, dev);
    let i = masked(depth, SEND_DEPTH - 1) as usize;
    let ts = send_began(cpu, unsafe { bpf_ktime_get_ns() });
    const _: () = assert!(SEND_DEPTH == 4);
    let base = (&raw mut *cpu).cast::<u8>();
    at_index!(i, |K| set_frame!(base, K, ts, dev, qlen, drop), 0 1 2 3);
}

/// Return of the skb transmit (kprobes): dropped as decided at entry, else deferred
/// when the message went to (or waited behind) netpoll's queue, else sent.
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
    let mut len = None;
    if depth == 0 && cpu.udp_np != 0 {
        cpu.udp_np = 0; // the message's own transmit: it is over
        len = counts(cfg, cpu);
    }
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
    let mut queued = false;
    if drop == 0 {
        // The caller keeps npinfo alive for the whole transmit.
        let npinfo =
            unsafe { probe_read((dev as *const u8).add(cfg.dev_npinfo as usize) as *const u64) }
                .unwrap_or(0);
        let after = if npinfo == 0 { 0 } else { txq_len(cfg, npinfo) };
        queued = qlen > 0 || after > qlen;
    }
    transmit_done(ctx, cfg, dev, len, drop, queued, ts, ns);
}

/// A transmit's outcome on `dev` (`drop`: 1 + a `send_drop` slot, else handed to the
/// driver or, `queued`, to netpoll's queue), with its message's bytes when it is the
/// message's own transmit: one statistics lookup for all of it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transmit_done<C: EbpfContext>(
    ctx: &C,
    cfg: &Config,
    dev: u64,
    len: Option<u64>,
    drop: u32,
    queued: bool,
    ts: u64,
    ns: u64,
) {
    let stats = send_stats(cfg, dev);
    if let Some(len) = len {
        count_on(stats, len);
    }
    if drop != 0 {
        return dropped_on(ctx, cfg, stats, dev, drop - 1, ts, ns);
    }
    let Some(s) = stats else {
        return;
    };
    // SAFETY: this CPU's copy of the value.
    let s = unsafe { &mut *s };
    if queued {
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

/// 7.3+ netconsole's console write (`netconsole_write_basic`): the message's length is
/// the nbcon context's (`Config::wctxt_len`; 0 where unknown: messages still counted).
#[inline(always)]
pub fn console_write_nbcon<C: EbpfContext>(ctx: &C, wctxt: u64) {
    let Some(cfg) = CONFIG.get(0) else { return };
    let len = if cfg.flags & cf::WCTXT_LEN != 0 && wctxt != 0 {
        unsafe { probe_read((wctxt as *const u8).add(cfg.wctxt_len as usize) as *const u32) }
            .map_or(0, u64::from)
    } else {
        0
    };
    console_write(ctx, len);
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
    let stats = send_stats(cfg, dev);
    count_on(stats, len & 0xffff_ffff);
    let now = unsafe { bpf_ktime_get_ns() };
    dropped_on(ctx, cfg, stats, dev, reason, now, 0);
}

/// Counts a drop on `dev` in its statistics entry `stats` (looked up once by the caller,
/// which counts the message there too) and reports it.
#[inline(always)]
fn dropped_on<C: EbpfContext>(
    ctx: &C,
    cfg: &Config,
    stats: Option<*mut SendStats>,
    dev: u64,
    reason: u32,
    ts: u64,
    ns: u64,
) {
    if let Some(s) = stats {
        let r = masked(reason, send_drop::SLOTS as u32 - 1) as usize;
        const _: () = assert!(send_drop::SLOTS == 4);
        bump_slot!(s.cast::<u8>(), SendStats, dropped, r, 0 1 2 3);
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
    // 4.14 takes an update's value only from the stack (376 bytes of its 512); the modern
    // object (5.8+) passes the scratch slot itself, which keeps the transmit's return
    // within 5.10's stack (it refused 504 bytes with the copy).
    #[cfg(feature = "legacy")]
    let _ = {
        let value: SendStats = *fresh;
        SEND_STATS.insert(key, &value, BPF_NOEXIST)
    };
    #[cfg(not(feature = "legacy"))]
    let _ = SEND_STATS.insert(key, &*fresh, BPF_NOEXIST);
    let p = SEND_STATS.get_ptr_mut(key);
    if p.is_none() {
        lose(loss::STATS_FULL);
    }
    p
}
