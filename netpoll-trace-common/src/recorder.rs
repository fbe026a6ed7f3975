//! The flight recorder: its pinned layout's version, header, losses and counters.

use crate::IFNAMSIZ;

/// Version of the flight recorder's pinned layout (maps, their key and value
/// types). It is part of the pin directory's path, so an upgrade that changes the
/// layout never reads or writes another version's pins.
/// v2: `LOSSES` has a slot per kind of pairing loss.
/// v3: `SetupEvent` carries the netpoll's addresses; `SEND_STATS` and `SEND_EVENTS`
/// are pinned; the ring also keeps netpoll tear-downs (`INNER_NETPOLL_CLEANUP`).
/// v4: no per-CPU maps (the legacy object loads on 4.4): `COUNTERS`, `POLL_STATS` and
/// `SEND_STATS` are hashes keyed by CPU too (`CpuCounterKey`, `CpuDev`), `LOSSES` an
/// array of `loss::SLOTS` entries per CPU.
/// v5: `CpuDev` carries the device's ifindex (a device re-created at a freed address is
/// a new key); `LOSSES` counts full statistics maps, failed event outputs and untracked
/// tear-downs.
pub const RECORDER_SCHEMA: u32 = 5;

/// Set-up events the recorder's ring keeps unless told otherwise at load.
pub const DEFAULT_RING_SIZE: u32 = 1024;

/// The recorder's header, the one entry of the pinned `META` array. Userspace
/// writes it once, when it creates the pins; the programs record only while
/// `schema` is set, and advance `next_seq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderMeta {
    /// `RECORDER_SCHEMA` of the code that created the pins; 0 while uninitialised.
    pub schema: u32,
    /// Capacity of the `RING` map (its max_entries).
    pub ring_size: u32,
    /// Sequence number the next set-up event takes; all events so far took
    /// 0..next_seq, so next_seq - ring_size of them have been overwritten.
    pub next_seq: u64,
    /// CLOCK_MONOTONIC when the pins were created.
    pub created_ns: u64,
}

const _: () = assert!(core::mem::size_of::<RecorderMeta>() == 24);

/// Indices of the pinned per-CPU `LOSSES` array: what the programs could not keep.
/// Every slot is one kind of loss, named once here (`NAMES`) for every output.
pub mod loss {
    /// Set-up events that found no free sequence number (heavy contention).
    pub const UNRECORDED: u32 = 0;
    /// Counter updates dropped because `COUNTERS` was full.
    pub const COUNTERS_FULL: u32 = 1;
    /// Set-up entries that could not be parked (`INFLIGHT` or `DEPTH` full, or a
    /// nesting deeper than `MAX_DEPTH`): that call's record is lost.
    pub const ENTRY_DROPPED: u32 = 2;
    /// Returns with no parked entry to pair with (the call began before the programs
    /// were attached, or its entry was dropped): that call's record is lost.
    pub const UNPAIRED_RETURN: u32 = 3;
    /// Entries whose return never came (kretprobe instances exhausted, a skipped
    /// fexit), found when their caller returned: their records are lost.
    pub const MISSED_RETURN: u32 = 4;
    /// Entries left over on a thread (their returns were missed), flushed when the
    /// thread set up again (`pairing::on_enter`): their records are lost.
    pub const ORPHANED_ENTRY: u32 = 5;
    /// Statistics updates dropped because `POLL_STATS` or `SEND_STATS` was full (a
    /// device's polls or messages went uncounted).
    pub const STATS_FULL: u32 = 6;
    /// Events the programs could not hand to userspace (`bpf_perf_event_output`
    /// failed: no buffer open for that CPU, e.g. one brought online after the reader
    /// started and before it noticed, or a full buffer on kernels that do not count
    /// it as lost).
    pub const OUTPUT_FAILED: u32 = 7;
    /// `netpoll_cleanup` calls that could not be marked (`CLEANUP` full): an owner's
    /// disable under them is reported as a device event.
    pub const CLEANUP_UNMARKED: u32 = 8;
    /// Entries of `LOSSES`.
    pub const SLOTS: u32 = 9;

    /// Each slot's name in every output (dump's `lost`, JSON, metrics' `kind` label).
    pub const NAMES: [&str; SLOTS as usize] = [
        "unrecorded",
        "counters_full",
        "entry_dropped",
        "unpaired_return",
        "missed_return",
        "orphaned_entry",
        "stats_full",
        "output_failed",
        "cleanup_unmarked",
    ];
}

/// Key of the pinned per-device `COUNTERS` map: calls of one function on one
/// device that returned one value (0 or a negative errno).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// The device's name, or for `netpoll_setup` the name asked for; zeros when unknown.
    pub dev_name: [u8; IFNAMSIZ],
    /// One of `function::*`.
    pub function: u32,
    pub ret: i32,
}

const _: () = assert!(core::mem::size_of::<CounterKey>() == 24);

/// `COUNTERS`' key: a `CounterKey` of one CPU (see `CpuDev`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuCounterKey {
    pub cpu: u32,
    pub key: CounterKey,
}

const _: () = assert!(core::mem::size_of::<CpuCounterKey>() == 28);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_names_are_unique_and_one_per_slot() {
        for (i, a) in loss::NAMES.iter().enumerate() {
            assert!(loss::NAMES[i + 1..].iter().all(|b| a != b), "{a} twice");
        }
    }
}
