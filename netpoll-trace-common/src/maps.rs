//! The programs' maps by name: the `#[map]` statics of the eBPF crate carry exactly
//! these identifiers (userspace's tests check the built objects against `ALL`), and
//! userspace opens, sizes and pins them through these constants only.

/// This kernel's struct layout (`Config`), written by userspace before attach.
pub const CONFIG: &str = "CONFIG";
/// Nesting depth of set-up calls per thread.
pub const DEPTH: &str = "DEPTH";
/// Set-up calls entered and not yet returned.
pub const INFLIGHT: &str = "INFLIGHT";
/// Finished set-up calls, to userspace (perf event array).
pub const SETUP_EVENTS: &str = "SETUP_EVENTS";
/// Per-device `netpoll_poll_dev` statistics (a hash keyed by CPU and device, `CpuDev`).
pub const POLL_STATS: &str = "POLL_STATS";
/// The `netpoll_poll_dev` calls in progress per CPU (`PollCpu`: nested, a bond's
/// poll polls its slaves).
pub const POLL_CPU: &str = "POLL_CPU";
/// Scratch space for a new `PollStats` (too big for the BPF stack).
pub const POLL_SCRATCH: &str = "POLL_SCRATCH";
/// Single slow `netpoll_poll_dev` calls (perf event array).
pub const POLL_EVENTS: &str = "POLL_EVENTS";
/// The flight recorder's header (`RecorderMeta`).
pub const META: &str = "META";
/// The flight recorder's ring of set-up events, keyed by sequence number.
pub const RING: &str = "RING";
/// Per (device, function, result) call counts (a hash keyed by CPU and key, `CpuCounterKey`).
pub const COUNTERS: &str = "COUNTERS";
/// What the recorder could not keep (an array: CPU * `loss::SLOTS` + `loss::*`).
pub const LOSSES: &str = "LOSSES";
/// Per-device send-path statistics (a hash keyed by `CpuDev`, `SendStats`).
pub const SEND_STATS: &str = "SEND_STATS";
/// The message and the skb transmits in progress per CPU (`SendCpu`).
pub const SEND_CPU: &str = "SEND_CPU";
/// Scratch space for a new `SendStats`.
pub const SEND_SCRATCH: &str = "SEND_SCRATCH";
/// Single drops and slow sends (perf event array of `SendEvent`).
pub const SEND_EVENTS: &str = "SEND_EVENTS";
/// netpoll_cleanup in progress per thread: the netpoll it tears down.
pub const CLEANUP: &str = "CLEANUP";
/// The `struct netpoll *` of every enabled netconsole target userspace knows of
/// (array of `NC_TARGET_SLOTS`, 0 = free), for the console write's down-device count.
pub const NC_TARGETS: &str = "NC_TARGETS";

/// Every map of the programs (aya-log's own map aside).
pub const ALL: [&str; 18] = [
    CONFIG,
    DEPTH,
    INFLIGHT,
    SETUP_EVENTS,
    POLL_STATS,
    POLL_CPU,
    POLL_SCRATCH,
    POLL_EVENTS,
    META,
    RING,
    COUNTERS,
    LOSSES,
    SEND_STATS,
    SEND_CPU,
    SEND_SCRATCH,
    SEND_EVENTS,
    CLEANUP,
    NC_TARGETS,
];
