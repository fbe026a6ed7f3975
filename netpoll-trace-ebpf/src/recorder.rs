//! The flight recorder and the loss counts: the ring of set-up events (`META`, `RING`),
//! the per-device call counters (`COUNTERS`), and `lose`, which every program calls
//! for what it could not keep (`LOSSES`). The maps are pinned under bpffs by userspace,
//! so they outlive the process that loaded them.

use netpoll_trace_common::{
    CounterKey, CpuCounterKey, IFNAMSIZ, RecorderMeta, SetupEvent, clear_after_nul,
    event_flags as ef, loss, nonzero, select_name,
};

use crate::{
    access::cpu,
    maps::{BPF_NOEXIST, COUNTERS, EEXIST, LOSSES, META, RING},
};

#[inline(always)]
pub(crate) fn lose(slot: u32) {
    if let Some(p) = LOSSES.get_ptr_mut(cpu() * loss::SLOTS + slot) {
        // SAFETY: this CPU's slot.
        unsafe { *p += 1 };
    }
}

/// Puts a finished event into the ring under the next free sequence number.
#[inline(always)]
pub(crate) fn record(ev: &SetupEvent) {
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
pub(crate) fn count(ev: &SetupEvent) {
    let mut key = CounterKey {
        dev_name: [0; IFNAMSIZ],
        function: ev.function,
        ret: ev.ret,
    };
    // The device's own name, else its netpoll's, else none, chosen by masks, not
    // branches: three paths through the rest of every set-up return before (5.10).
    let dev = nonzero(u64::from(ev.flags & ef::DEV_NAME));
    let np = (dev ^ 1) & nonzero(u64::from(ev.flags & ef::NP_DEV_NAME));
    key.dev_name = select_name(&ev.dev_name, dev, &ev.np_dev_name, np);
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
