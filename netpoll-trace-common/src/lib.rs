//! The `#[repr(C)]` types the eBPF programs and userspace share.
//!
//! Every type here crosses the kernel/user boundary, so: fixed-width fields, explicit
//! padding, no `bool` and no Rust enums (a byte the kernel wrote must never be an
//! invalid Rust value). Each layout is pinned by a compile-time size assertion.
#![no_std]

/// Length of `net_device.name` and `netpoll.dev_name` (IFNAMSIZ).
pub const IFNAMSIZ: usize = 16;
/// Bytes kept of `netpoll.name` (the owner, e.g. "netconsole").
pub const OWNER_LEN: usize = 16;
/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Deepest nesting of set-up calls tracked per thread (bond -> vlan -> bridge -> ...).
pub const MAX_DEPTH: u32 = 8;

/// The traced kernel functions: the id an event carries (`SetupEvent::function`,
/// `CounterKey::function`) and the kernel symbol, defined once for both sides.
pub mod function {
    /// `int netpoll_setup(struct netpoll *np)`
    pub const NETPOLL_SETUP: u32 = 1;
    /// `int __netpoll_setup(struct netpoll *np, struct net_device *ndev)`
    pub const INNER_NETPOLL_SETUP: u32 = 2;
    /// `void netpoll_poll_dev(struct net_device *dev)` (aggregated, never a `SetupEvent`).
    pub const NETPOLL_POLL_DEV: u32 = 3;

    /// The kernel symbol of a function id.
    pub const fn symbol(id: u32) -> Option<&'static str> {
        match id {
            NETPOLL_SETUP => Some("netpoll_setup"),
            INNER_NETPOLL_SETUP => Some("__netpoll_setup"),
            NETPOLL_POLL_DEV => Some("netpoll_poll_dev"),
            _ => None,
        }
    }
}

/// The programs' maps by name: the `#[map]` statics of the eBPF crate carry exactly
/// these identifiers (userspace's tests check the built objects against `ALL`), and
/// userspace opens, sizes and pins them through these constants only.
pub mod maps {
    /// This kernel's struct layout (`Config`), written by userspace before attach.
    pub const CONFIG: &str = "CONFIG";
    /// Nesting depth of set-up calls per thread.
    pub const DEPTH: &str = "DEPTH";
    /// Set-up calls entered and not yet returned.
    pub const INFLIGHT: &str = "INFLIGHT";
    /// Finished set-up calls, to userspace (perf event array).
    pub const SETUP_EVENTS: &str = "SETUP_EVENTS";
    /// Per-device `netpoll_poll_dev` statistics (per-CPU hash).
    pub const POLL_STATS: &str = "POLL_STATS";
    /// The `netpoll_poll_dev` call in progress per CPU.
    pub const POLL_START: &str = "POLL_START";
    /// Scratch space for a new `PollStats` (too big for the BPF stack).
    pub const POLL_SCRATCH: &str = "POLL_SCRATCH";
    /// Single slow `netpoll_poll_dev` calls (perf event array).
    pub const POLL_EVENTS: &str = "POLL_EVENTS";
    /// The flight recorder's header (`RecorderMeta`).
    pub const META: &str = "META";
    /// The flight recorder's ring of set-up events, keyed by sequence number.
    pub const RING: &str = "RING";
    /// Per (device, function, result) call counts (per-CPU hash).
    pub const COUNTERS: &str = "COUNTERS";
    /// What the recorder could not keep (per-CPU array, indexed by `loss::*`).
    pub const LOSSES: &str = "LOSSES";

    /// Every map of the programs (aya-log's own map aside).
    pub const ALL: [&str; 12] = [
        CONFIG, DEPTH, INFLIGHT, SETUP_EVENTS, POLL_STATS, POLL_START, POLL_SCRATCH, POLL_EVENTS, META, RING,
        COUNTERS, LOSSES,
    ];
}

/// Bits of `SetupEvent::flags`: what the program could read. A field whose bit is
/// clear is unknown and userspace reports it as null, never as zero.
pub mod event_flags {
    /// `dev_name` holds `net_device.name`.
    pub const DEV_NAME: u32 = 1 << 0;
    /// `ifindex` holds `net_device.ifindex`.
    pub const IFINDEX: u32 = 1 << 1;
    /// `ops`, `poll_controller` and `netpoll_setup_op` were read.
    pub const OPS: u32 = 1 << 2;
    /// The IFF_DISABLE_NETPOLL bit was read (its value is `NETPOLL_DISABLED`).
    pub const PRIV_FLAGS: u32 = 1 << 3;
    /// IFF_DISABLE_NETPOLL is set on the device.
    pub const NETPOLL_DISABLED: u32 = 1 << 4;
    /// `np_dev_name` holds `netpoll.dev_name` (the name the user asked for).
    pub const NP_DEV_NAME: u32 = 1 << 5;
    /// `owner` holds the string `netpoll.name` points to.
    pub const OWNER: u32 = 1 << 6;
}

/// One finished call of `netpoll_setup` or `__netpoll_setup`, emitted at return.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SetupEvent {
    /// `bpf_ktime_get_ns()` at entry (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    pub duration_ns: u64,
    pub pid_tgid: u64,
    /// `struct netpoll *`: pairs nested calls made for the same target.
    pub netpoll: u64,
    /// `struct net_device *` (0 when the function has no device argument).
    pub dev: u64,
    /// `dev->netdev_ops` and the two hooks the diagnosis needs.
    pub ops: u64,
    pub poll_controller: u64,
    pub netpoll_setup_op: u64,
    /// Return value of the function (0 or a negative errno).
    pub ret: i32,
    pub ifindex: i32,
    /// One of `function::*`.
    pub function: u32,
    /// 0 for the outermost set-up call of a thread, +1 per nested call.
    pub depth: u32,
    /// `event_flags::*`.
    pub flags: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
    pub dev_name: [u8; IFNAMSIZ],
    pub np_dev_name: [u8; IFNAMSIZ],
    pub owner: [u8; OWNER_LEN],
}

impl SetupEvent {
    pub const ZERO: Self = Self {
        ts_ns: 0,
        duration_ns: 0,
        pid_tgid: 0,
        netpoll: 0,
        dev: 0,
        ops: 0,
        poll_controller: 0,
        netpoll_setup_op: 0,
        ret: 0,
        ifindex: 0,
        function: 0,
        depth: 0,
        flags: 0,
        _pad: 0,
        comm: [0; COMM_LEN],
        dev_name: [0; IFNAMSIZ],
        np_dev_name: [0; IFNAMSIZ],
        owner: [0; OWNER_LEN],
    };
}

const _: () = assert!(core::mem::size_of::<SetupEvent>() == 152);

/// Key of the in-flight table: a thread and its nesting depth.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InflightKey {
    pub pid_tgid: u64,
    pub depth: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<InflightKey>() == 16);

/// Bits of `Config::flags`: which groups of offsets userspace found in the kernel's BTF.
pub mod config_flags {
    /// `net_device.name` offset is valid.
    pub const DEV_NAME: u32 = 1 << 0;
    pub const DEV_IFINDEX: u32 = 1 << 1;
    /// `net_device.netdev_ops` and both `net_device_ops` hooks are valid.
    pub const DEV_OPS: u32 = 1 << 2;
    /// `net_device.priv_flags` location and the IFF_DISABLE_NETPOLL mask are valid.
    pub const DEV_PRIV_FLAGS: u32 = 1 << 3;
    pub const NP_DEV_NAME: u32 = 1 << 4;
    pub const NP_NAME: u32 = 1 << 5;
}

/// Struct layout of the running kernel, resolved from BTF by userspace before the
/// programs run (Rust eBPF cannot emit CO-RE relocations). One entry in `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `config_flags::*`.
    pub flags: u32,
    /// Byte offsets inside `struct net_device`.
    pub dev_name: u32,
    pub dev_ifindex: u32,
    pub dev_netdev_ops: u32,
    /// `priv_flags` is read as a u64 at `dev_priv_flags`, shifted right by
    /// `priv_flags_shift` (a bitfield on 6.12 starts mid-byte), then tested against
    /// `iff_disable_netpoll`.
    pub dev_priv_flags: u32,
    pub priv_flags_shift: u32,
    /// Byte offsets inside `struct net_device_ops`.
    pub ops_poll_controller: u32,
    pub ops_netpoll_setup: u32,
    /// Byte offsets inside `struct netpoll`.
    pub np_dev_name: u32,
    pub np_name: u32,
    /// Value of `IFF_DISABLE_NETPOLL` in this kernel's `enum netdev_priv_flags`.
    pub iff_disable_netpoll: u64,
    /// `netpoll_poll_dev` calls at least this long are also sent as single
    /// `PollEvent`s; all calls are counted in `POLL_STATS`. 0 disables events.
    pub slow_poll_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Config>() == 56);

/// Buckets of the poll latency histogram: bucket `i` counts calls that took
/// [2^i, 2^(i+1)) ns (bucket 0 also takes 0 and 1 ns; the last takes the rest).
pub const POLL_BUCKETS: usize = 32;

// The programs mask bucket indices with POLL_BUCKETS - 1 (old verifiers track a mask).
const _: () = assert!(POLL_BUCKETS.is_power_of_two());

/// Per-device `netpoll_poll_dev` statistics, one per CPU (a per-CPU map: no
/// atomics on the hot path); userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollStats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub hist: [u64; POLL_BUCKETS],
    pub ifindex: i32,
    /// `event_flags` bits for `name` and `ifindex`.
    pub flags: u32,
    pub name: [u8; IFNAMSIZ],
}

const _: () = assert!(core::mem::size_of::<PollStats>() == 304);

/// A `netpoll_poll_dev` call slower than `Config::slow_poll_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollEvent {
    pub ts_ns: u64,
    pub duration_ns: u64,
    pub dev: u64,
    pub ifindex: i32,
    pub flags: u32,
    pub name: [u8; IFNAMSIZ],
}

const _: () = assert!(core::mem::size_of::<PollEvent>() == 48);

/// Entry state of the `netpoll_poll_dev` call running on a CPU (it runs with
/// interrupts off, so one per CPU is enough).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollStart {
    pub ts_ns: u64,
    pub dev: u64,
}

/// Version of the flight recorder's pinned layout (maps, their key and value
/// types). It is part of the pin directory's path, so an upgrade that changes the
/// layout never reads or writes another version's pins.
pub const RECORDER_SCHEMA: u32 = 1;

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

/// Indices of the pinned per-CPU `LOSSES` array: what the recorder could not keep.
pub mod loss {
    /// Set-up events that found no free sequence number (heavy contention).
    pub const UNRECORDED: u32 = 0;
    /// Counter updates dropped because `COUNTERS` was full.
    pub const COUNTERS_FULL: u32 = 1;
    /// Entries of `LOSSES`.
    pub const SLOTS: u32 = 2;
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

/// log2 bucket of a duration, shared so both sides agree on the bucket edges.
#[inline(always)]
pub fn poll_bucket(ns: u64) -> usize {
    // Branchy binary search: no loop and no ctlz, which older verifiers and the
    // BPF backend handle poorly.
    let mut v = ns;
    let mut b = 0usize;
    if v >= 1 << 32 { v >>= 32; b += 32; }
    if v >= 1 << 16 { v >>= 16; b += 16; }
    if v >= 1 << 8 { v >>= 8; b += 8; }
    if v >= 1 << 4 { v >>= 4; b += 4; }
    if v >= 1 << 2 { v >>= 2; b += 2; }
    if v >= 1 << 1 { b += 1; }
    if b >= POLL_BUCKETS { POLL_BUCKETS - 1 } else { b }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, repr(C), no padding the compiler adds (sizes asserted above).
    unsafe impl aya::Pod for super::SetupEvent {}
    unsafe impl aya::Pod for super::InflightKey {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::PollStats {}
    unsafe impl aya::Pod for super::PollEvent {}
    unsafe impl aya::Pod for super::PollStart {}
    unsafe impl aya::Pod for super::RecorderMeta {}
    unsafe impl aya::Pod for super::CounterKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_buckets_are_log2() {
        assert_eq!(poll_bucket(0), 0);
        assert_eq!(poll_bucket(1), 0);
        assert_eq!(poll_bucket(2), 1);
        assert_eq!(poll_bucket(3), 1);
        assert_eq!(poll_bucket(1023), 9);
        assert_eq!(poll_bucket(1024), 10);
        assert_eq!(poll_bucket(u64::MAX), POLL_BUCKETS - 1);
        for i in 0..31 {
            assert_eq!(poll_bucket(1 << i), i);
        }
    }
}
