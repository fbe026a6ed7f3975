//! Every map of the programs (`#[map]` statics): their names are
//! `netpoll_trace_common::maps`, which userspace's tests check against the built objects.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerfEventArray},
};
use netpoll_trace_common::{
    Config, CpuCounterKey, CpuDev, DEFAULT_RING_SIZE, InflightKey, NC_TARGET_SLOTS, PollCpu,
    PollEvent, PollStats, RecorderMeta, SendCpu, SendEvent, SendStats, SetupEvent, loss, per_cpu,
};

/// `bpf_map_update_elem` flag: fail when the key exists (the claim in `record`).
pub(crate) const BPF_NOEXIST: u64 = 1;
pub(crate) const EEXIST: i32 = 17;

/// One entry: this kernel's struct layout, written by userspace before attach.
#[map]
pub(crate) static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Current nesting depth of set-up calls per thread.
#[map]
pub(crate) static DEPTH: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);

/// Calls that have entered and not yet returned.
#[map]
pub(crate) static INFLIGHT: HashMap<InflightKey, SetupEvent> = HashMap::with_max_entries(1024, 0);

/// Finished calls, to userspace. A perf event array (not a ring buffer) keeps the
/// programs loadable on kernels before 5.8.
#[map]
pub(crate) static SETUP_EVENTS: PerfEventArray<SetupEvent> = PerfEventArray::new(0);

/// Per-device `netpoll_poll_dev` counts and latency histograms, keyed by the
/// `struct net_device *`.
#[map]
pub(crate) static POLL_STATS: HashMap<CpuDev, PollStats> =
    HashMap::with_max_entries(per_cpu::DEVICES, 0);

/// The `netpoll_poll_dev` calls in progress on each CPU, one frame per nesting depth.
#[map]
pub(crate) static POLL_CPU: Array<PollCpu> = Array::with_max_entries(1, 0);

/// Where a new device's `PollStats` is zeroed and its identity read before it is
/// copied to the stack for the insert (4.14 takes map values only from the stack).
#[map]
pub(crate) static POLL_SCRATCH: Array<PollStats> = Array::with_max_entries(1, 0);

/// Single slow `netpoll_poll_dev` calls.
#[map]
pub(crate) static POLL_EVENTS: PerfEventArray<PollEvent> = PerfEventArray::new(0);

// The flight recorder: kept by the kernel, pinned under bpffs by userspace, so it
// outlives the process that loaded it (and, with pinned links, keeps recording).

/// The recorder's header (one entry).
#[map]
pub(crate) static META: Array<RecorderMeta> = Array::with_max_entries(1, 0);

/// The last `ring_size` set-up events, keyed by sequence number. A hash, not an
/// array: inserting with BPF_NOEXIST is the one atomic claim every kernel offers
/// (fetching atomics need 5.12), so two CPUs can never write one slot and a lost
/// event shows as a gap. Userspace sets max_entries to the ring size at load.
#[map]
pub(crate) static RING: HashMap<u64, SetupEvent> = HashMap::with_max_entries(DEFAULT_RING_SIZE, 0);

/// Calls per (device, function, return value). Per CPU, like every counter here:
/// fetching atomics need kernel 5.12 and Rust's need nightly intrinsics.
#[map]
pub(crate) static COUNTERS: HashMap<CpuCounterKey, u64> =
    HashMap::with_max_entries(per_cpu::COUNTERS, 0);

/// What the recorder could not keep (`loss::*`), so loss is never silent.
#[map]
pub(crate) static LOSSES: Array<u64> = Array::with_max_entries(loss::SLOTS, 0);

/// Per-device send-path statistics, keyed by the `struct net_device *`.
#[map]
pub(crate) static SEND_STATS: HashMap<CpuDev, SendStats> =
    HashMap::with_max_entries(per_cpu::DEVICES, 0);

/// The message and skb transmits in progress on each CPU.
#[map]
pub(crate) static SEND_CPU: Array<SendCpu> = Array::with_max_entries(1, 0);

/// Where a new device's `SendStats` is zeroed and named before the insert.
#[map]
pub(crate) static SEND_SCRATCH: Array<SendStats> = Array::with_max_entries(1, 0);

/// Single drops and slow sends.
#[map]
pub(crate) static SEND_EVENTS: PerfEventArray<SendEvent> = PerfEventArray::new(0);

/// netpoll_cleanup in progress per thread: the netpoll it tears down (so the
/// __netpoll_cleanup under it is an owner's disable, not a device event).
#[map]
pub(crate) static CLEANUP: HashMap<u64, u64> = HashMap::with_max_entries(1024, 0);

/// The enabled netconsole targets' netpolls, written by userspace as it sees them set
/// up and torn down.
#[map]
pub(crate) static NC_TARGETS: Array<u64> = Array::with_max_entries(NC_TARGET_SLOTS, 0);
