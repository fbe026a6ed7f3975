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
    /// `int netpoll_send_udp(struct netpoll *np, const char *msg, int len)` (void before
    /// 4.19): one netconsole message or fragment (aggregated in `SEND_STATS`).
    pub const NETPOLL_SEND_UDP: u32 = 4;
    /// The skb transmit under netpoll_send_udp: `netpoll_send_skb(np, skb)` (5.8+; its
    /// static `__netpoll_send_skb` does the work and is inlined there), else
    /// `netpoll_send_skb_on_dev(np, skb, dev)` (before 5.8, where netpoll_send_skb is an
    /// inline wrapper of it): `SEND_SKB_SYMBOLS`, in order. Both take the netpoll first.
    pub const NETPOLL_SEND_SKB: u32 = 5;
    /// `void netpoll_cleanup(struct netpoll *np)`: a netpoll user turning a target off
    /// (netconsole: `enabled` set to 0, module unload); marks its thread only.
    pub const NETPOLL_CLEANUP: u32 = 6;
    /// `void __netpoll_cleanup(struct netpoll *np)`: every netpoll torn down (the
    /// above, and netconsole stopping a target on its device's unregister, join or
    /// release). A `SetupEvent` whose `ret` is a `stop_cause`.
    pub const INNER_NETPOLL_CLEANUP: u32 = 7;
    /// `void do_netpoll_cleanup(struct netpoll *np)` (6.x): netconsole's own disable
    /// path on kernels that have it (`enabled` = 0 calls it, not netpoll_cleanup); marks
    /// its thread like netpoll_cleanup.
    pub const DO_NETPOLL_CLEANUP: u32 = 8;
    /// netconsole's console write, `static void write_msg(struct console *con, const
    /// char *msg, unsigned int len)` in the netconsole module: one kernel message offered
    /// to every plain target; netconsole skips a target whose device is not running
    /// before netpoll sees anything, so it is counted here (`NC_TARGETS`).
    pub const NETCONSOLE_WRITE_MSG: u32 = 9;

    /// The symbols of `NETPOLL_SEND_SKB`, in the order they are tried.
    pub const SEND_SKB_SYMBOLS: [&str; 2] = ["netpoll_send_skb", "netpoll_send_skb_on_dev"];

    /// The kernel symbol of a function id (for `NETPOLL_SEND_SKB`, its first candidate).
    pub const fn symbol(id: u32) -> Option<&'static str> {
        match id {
            NETPOLL_SETUP => Some("netpoll_setup"),
            INNER_NETPOLL_SETUP => Some("__netpoll_setup"),
            NETPOLL_POLL_DEV => Some("netpoll_poll_dev"),
            NETPOLL_SEND_UDP => Some("netpoll_send_udp"),
            NETPOLL_SEND_SKB => Some(SEND_SKB_SYMBOLS[0]),
            NETPOLL_CLEANUP => Some("netpoll_cleanup"),
            INNER_NETPOLL_CLEANUP => Some("__netpoll_cleanup"),
            DO_NETPOLL_CLEANUP => Some("do_netpoll_cleanup"),
            NETCONSOLE_WRITE_MSG => Some("netconsole:write_msg"),
            _ => None,
        }
    }

    /// Every function id.
    pub const ALL: [u32; 9] = [
        NETPOLL_SETUP,
        INNER_NETPOLL_SETUP,
        NETPOLL_POLL_DEV,
        NETPOLL_SEND_UDP,
        NETPOLL_SEND_SKB,
        NETPOLL_CLEANUP,
        INNER_NETPOLL_CLEANUP,
        DO_NETPOLL_CLEANUP,
        NETCONSOLE_WRITE_MSG,
    ];

    /// The id of a kernel symbol (`symbol`'s inverse; every one of `SEND_SKB_SYMBOLS`).
    pub fn id(name: &str) -> Option<u32> {
        if SEND_SKB_SYMBOLS.contains(&name) {
            return Some(NETPOLL_SEND_SKB);
        }
        ALL.into_iter().find(|i| symbol(*i) == Some(name))
    }
}

/// Why a netpoll was torn down: the `ret` of an `INNER_NETPOLL_CLEANUP` record (never
/// negative, so never mistaken for an errno).
pub mod stop_cause {
    /// Its owner turned it off (`netpoll_cleanup`: netconsole's `enabled` = 0, a
    /// target removed, the module unloaded).
    pub const DISABLED: i32 = 0;
    /// Its device is being unregistered (`net_device.dismantle` set).
    pub const UNREGISTERED: i32 = 1;
    /// Its owner stopped it on another device event (netconsole: the device joins a
    /// bond or bridge, or a bond released its slaves).
    pub const DEVICE_EVENT: i32 = 2;
}

/// Why a message was not handed to the driver: indices of `SendStats::dropped`, named
/// once (`NAMES`) for every output.
pub mod send_drop {
    /// netpoll_send_udp found no skb (netpoll's pool and the allocator were empty).
    pub const NO_SKB: u32 = 0;
    /// The device has no netpoll state (npinfo): torn down under a live sender.
    pub const NO_NPINFO: u32 = 1;
    /// The device is not running (down).
    pub const NOT_RUNNING: u32 = 2;
    /// The device is not present (detached, being removed).
    pub const NOT_PRESENT: u32 = 3;
    pub const SLOTS: usize = 4;
    pub const NAMES: [&str; SLOTS] = ["no_skb", "no_npinfo", "not_running", "not_present"];
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
    /// `remote_ip` (IPv4), `remote_port` and `local_port` hold the netpoll's addresses.
    pub const REMOTE: u32 = 1 << 7;
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
    /// `netpoll.remote_ip` as the kernel stores it (network byte order), IPv4 only.
    pub remote_ip: [u8; 4],
    pub remote_port: u16,
    pub local_port: u16,
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
        remote_ip: [0; 4],
        remote_port: 0,
        local_port: 0,
    };
}

const _: () = assert!(core::mem::size_of::<SetupEvent>() == 160);

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
    /// The send path: `netpoll.dev`, `net_device.npinfo`, `net_device.state`,
    /// `netpoll_info.txq` + `sk_buff_head.qlen` and the two link-state bits.
    pub const SEND: u32 = 1 << 6;
    /// `netpoll.remote_ip`, `remote_port`, `local_port`, `ipv6`.
    pub const NP_REMOTE: u32 = 1 << 7;
    /// `net_device.dismantle` (set while the device is unregistered).
    pub const DEV_DISMANTLE: u32 = 1 << 8;
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
    /// Skb transmits at least this long are also sent as single `SendEvent`s.
    pub slow_send_ns: u64,
    /// Byte offsets for the send path (`config_flags::SEND`).
    pub np_dev: u32,
    pub dev_npinfo: u32,
    pub dev_state: u32,
    /// `netpoll_info.txq` plus `sk_buff_head.qlen`: the deferred queue's length.
    pub npinfo_txq_qlen: u32,
    /// `1 << __LINK_STATE_START` and `1 << __LINK_STATE_PRESENT` in `net_device.state`.
    pub state_start: u64,
    pub state_present: u64,
    /// Byte offsets inside `struct netpoll` (`config_flags::NP_REMOTE`).
    pub np_remote_ip: u32,
    pub np_remote_port: u32,
    pub np_local_port: u32,
    pub np_ipv6: u32,
    /// `net_device.dismantle` (`config_flags::DEV_DISMANTLE`).
    pub dev_dismantle: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Config>() == 120);

/// Buckets of the poll latency histogram: bucket `i` counts calls that took
/// [2^i, 2^(i+1)) ns (bucket 0 also takes 0 and 1 ns; the last takes the rest).
pub const POLL_BUCKETS: usize = 32;

// The programs mask bucket indices with POLL_BUCKETS - 1 (old verifiers track a mask).
const _: () = assert!(POLL_BUCKETS.is_power_of_two());

/// Per-device `netpoll_poll_dev` statistics, one per CPU (keyed by CPU: no
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

/// Nested `netpoll_poll_dev` calls tracked per CPU: since 4.19 a bond's (or team's)
/// poll controller polls each slave from inside its own poll, and a vlan over a bond
/// adds a level.
pub const POLL_DEPTH: u32 = 4;

/// One `netpoll_poll_dev` call in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollFrame {
    pub ts_ns: u64,
    pub dev: u64,
}

/// The `netpoll_poll_dev` calls in progress on a CPU: they run with interrupts off, so
/// a CPU's calls nest strictly and a frame per depth pairs each exit with its entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollCpu {
    /// Calls in progress (`frames[0..depth]`; deeper ones are counted, not timed).
    pub depth: u32,
    pub _pad: u32,
    pub frames: [PollFrame; POLL_DEPTH as usize],
}

const _: () = assert!(core::mem::size_of::<PollCpu>() == 8 + 16 * POLL_DEPTH as usize);

/// Per-device send-path statistics, one per CPU, keyed by `struct net_device *`.
/// Every message (`netpoll_send_udp`) ends in exactly one of sent, deferred or a
/// `dropped` slot; skb transmits by stacked devices (a bond's slave) count there too.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SendStats {
    /// netpoll_send_udp calls and their payload bytes.
    pub messages: u64,
    pub bytes: u64,
    /// Handed to the driver.
    pub sent: u64,
    /// Queued to netpoll's own queue (`npinfo->txq`) for its worker: the TX queue was
    /// busy, or earlier messages were still queued.
    pub deferred: u64,
    /// By `send_drop::*`.
    pub dropped: [u64; send_drop::SLOTS],
    /// Time in the skb transmit (its retry loop spins with interrupts off).
    pub total_ns: u64,
    pub max_ns: u64,
    pub hist: [u64; POLL_BUCKETS],
    /// When this CPU last dropped a message for the device (0: never), and why.
    pub last_drop_ns: u64,
    pub last_drop_reason: u32,
    pub ifindex: i32,
    pub flags: u32,
    pub _pad: u32,
    pub name: [u8; IFNAMSIZ],
}

const _: () = assert!(core::mem::size_of::<SendStats>() == 376);

/// `SendEvent::kind`.
pub mod send_event {
    /// A message dropped (`reason`: a `send_drop` slot).
    pub const DROP: u32 = 1;
    /// An skb transmit at least `Config::slow_send_ns` long.
    pub const SLOW: u32 = 2;
}

/// A single drop or slow send.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SendEvent {
    pub ts_ns: u64,
    pub duration_ns: u64,
    pub dev: u64,
    pub ifindex: i32,
    pub flags: u32,
    pub name: [u8; IFNAMSIZ],
    /// `send_event::*`.
    pub kind: u32,
    /// For drops, a `send_drop` slot.
    pub reason: u32,
}

const _: () = assert!(core::mem::size_of::<SendEvent>() == 56);

/// Netconsole targets whose devices the console write checks (`maps::NC_TARGETS`).
pub const NC_TARGET_SLOTS: u32 = 4;

/// Stacked skb transmits tracked per CPU (netconsole on a vlan on a bond: three).
pub const SEND_DEPTH: u32 = 4;

/// One skb transmit in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SendFrame {
    pub ts_ns: u64,
    pub dev: u64,
    /// The deferred queue's length at entry.
    pub qlen: u32,
    /// 1 + a `send_drop` slot when the kernel will drop it; 0 otherwise.
    pub drop: u32,
}

/// The send path in progress on a CPU: netconsole sends with interrupts off (its
/// target lock) and the skb transmit keeps them off, so a CPU runs one message at a time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SendCpu {
    /// netpoll_send_udp's entry time (0: none in progress) and device.
    pub udp_ts_ns: u64,
    pub udp_dev: u64,
    /// Whether that message reached the skb transmit (else it found no skb).
    pub udp_reached: u32,
    /// Skb transmits in progress (`frames[0..depth]`).
    pub depth: u32,
    pub frames: [SendFrame; SEND_DEPTH as usize],
}

const _: () = assert!(core::mem::size_of::<SendCpu>() == 24 + 24 * SEND_DEPTH as usize);

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

/// Pairs a set-up's return with its entry. Entries are parked per thread at their
/// nesting depth; the parked entry keeps the function, the `struct netpoll *` and the
/// entry time, and both decisions here check them, so a missed return (kretprobe
/// instances exhausted under nesting, a skipped fexit) costs the records of the calls
/// it concerns, counted in `LOSSES`, and never shifts later returns onto the wrong
/// entry nor leaves a thread's later set-ups nested under a call that has ended.
/// Pure and loop-free: the programs call it (4.14 refuses backward jumps), and the
/// tests below drive it through the sequences that go wrong.
pub mod pairing {
    use super::{MAX_DEPTH, function};

    /// An entry parked longer than this when its thread enters again is left over (its
    /// return was missed). Set-ups take milliseconds; a parent's age when its nested
    /// call enters is its rtnl wait plus at most netpoll_setup's 4 s carrier wait. The
    /// structural rules in `on_enter` catch most leftovers without any wait.
    pub const STALE_NS: u64 = 30_000_000_000;

    /// How many parked entries a return looks at, newest first: a return whose
    /// callee's return was missed finds its own entry one below, and so on.
    pub const WALK: u32 = 3;

    /// What the pairing needs of a parked entry. A level whose entry could not be
    /// parked is `Frame::NONE` (function 0), not an `Option`: a `None`'s payload is
    /// undefined bytes, and the verifier refuses a program that copies them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Frame {
        /// One of `function::*`.
        pub function: u32,
        /// The `struct netpoll *` argument.
        pub netpoll: u64,
        /// Entry time (`bpf_ktime_get_ns`).
        pub ts_ns: u64,
    }

    impl Frame {
        /// No entry parked at that level (no function has id 0).
        pub const NONE: Self = Self {
            function: 0,
            netpoll: 0,
            ts_ns: 0,
        };

        pub const fn is_none(&self) -> bool {
            self.function == 0
        }
    }

    /// What to do with a thread's parked entries before a new entry is parked.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Enter {
        /// Park it on top: it is nested in the call below.
        Push,
        /// The parked entries are left over from calls whose returns were missed:
        /// drop them all (`loss::ORPHANED_ENTRY`) and park the new one at depth 0.
        Flush,
    }

    /// A new entry of `function(netpoll)` at `now_ns` on a thread with `depth` parked
    /// levels, the newest `top` (`Frame::NONE`: a level whose entry could not be parked).
    #[inline(always)]
    pub fn on_enter(depth: u32, top: Frame, function: u32, netpoll: u64, now_ns: u64) -> Enter {
        if depth == 0 {
            return Enter::Push;
        }
        // netpoll_setup is called only from outside any set-up (netconsole, configfs).
        if function == function::NETPOLL_SETUP || depth >= MAX_DEPTH {
            return Enter::Flush;
        }
        if top.is_none() {
            return Enter::Push;
        }
        if now_ns.saturating_sub(top.ts_ns) > STALE_NS {
            return Enter::Flush;
        }
        // netpoll_setup calls __netpoll_setup with its own netpoll; a device's
        // ndo_netpoll_setup (bond, bridge, vlan, team, macvlan, dsa) gives each lower
        // device's __netpoll_setup a netpoll of its own.
        let nested = match top.function {
            function::NETPOLL_SETUP => top.netpoll == netpoll,
            _ => top.netpoll != netpoll,
        };
        if nested { Enter::Push } else { Enter::Flush }
    }

    /// Where a return pairs.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Exit {
        /// With the entry `dropped` levels below the newest; the `dropped` newer
        /// entries missed their returns (`loss::MISSED_RETURN`). The entry may be a
        /// level whose entry could not be parked: then there is nothing to send.
        Pair { dropped: u32 },
        /// With none of the newest `WALK` entries (`loss::UNPAIRED_RETURN`): the
        /// parked entries stay for their own returns.
        Unpaired,
    }

    /// A return of `function` on a thread with `depth` parked levels; `frames` are the
    /// newest `WALK` of them, newest first (`Frame::NONE`: not parked). `netpoll` is
    /// the argument where the probe sees it (fexit), None where it cannot (kretprobe).
    #[inline(always)]
    pub fn on_exit(
        depth: u32,
        frames: [Frame; WALK as usize],
        function: u32,
        netpoll: Option<u64>,
    ) -> Exit {
        // Written out, not a loop (4.14 refuses backward jumps).
        if let Some(e) = pairs(0, depth, frames[0], function, netpoll) {
            return e;
        }
        if let Some(e) = pairs(1, depth, frames[1], function, netpoll) {
            return e;
        }
        if let Some(e) = pairs(2, depth, frames[2], function, netpoll) {
            return e;
        }
        Exit::Unpaired
    }

    #[inline(always)]
    fn pairs(i: u32, depth: u32, f: Frame, function: u32, netpoll: Option<u64>) -> Option<Exit> {
        if i >= depth {
            return None;
        }
        // A level without an entry: the call that returns is most likely the one
        // whose entry could not be parked.
        if f.is_none() || (f.function == function && netpoll.is_none_or(|np| np == f.netpoll)) {
            return Some(Exit::Pair { dropped: i });
        }
        None
    }
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

/// Per-CPU state without per-CPU maps (4.6; the programs load on 4.4): every value a
/// program updates belongs to the CPU it runs on, which is part of the key (hash maps)
/// or of the index (arrays of `nr_cpus` entries per slot, sized by userspace at load).
/// kprobe programs run with preemption off, so one CPU's entries have one writer, as
/// with per-CPU maps; userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuDev {
    pub cpu: u32,
    /// The device's ifindex, read when counting: a device freed and another allocated
    /// at the same address is a new key, never counted under the old name.
    pub ifindex: i32,
    /// The `struct net_device *`.
    pub dev: u64,
}

const _: () = assert!(core::mem::size_of::<CpuDev>() == 16);

/// `COUNTERS`' key: a `CounterKey` of one CPU (see `CpuDev`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuCounterKey {
    pub cpu: u32,
    pub key: CounterKey,
}

const _: () = assert!(core::mem::size_of::<CpuCounterKey>() == 28);

/// Entries per CPU of the CPU-keyed maps (userspace multiplies by the CPU count).
pub mod per_cpu {
    /// POLL_STATS and SEND_STATS: devices.
    pub const DEVICES: u32 = 256;
    /// COUNTERS: (device, function, result) keys.
    pub const COUNTERS: u32 = 1024;
}

/// log2 bucket of a duration, shared so both sides agree on the bucket edges.
#[inline(always)]
pub fn poll_bucket(ns: u64) -> usize {
    // Branchy binary search: no loop and no ctlz, which older verifiers and the
    // BPF backend handle poorly.
    let mut v = ns;
    let mut b = 0usize;
    if v >= 1 << 32 {
        v >>= 32;
        b += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        b += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        b += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        b += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        b += 2;
    }
    if v >= 1 << 1 {
        b += 1;
    }
    if b >= POLL_BUCKETS {
        POLL_BUCKETS - 1
    } else {
        b
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, repr(C), no padding the compiler adds (sizes asserted above).
    unsafe impl aya::Pod for super::SetupEvent {}
    unsafe impl aya::Pod for super::InflightKey {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::PollStats {}
    unsafe impl aya::Pod for super::PollEvent {}
    unsafe impl aya::Pod for super::PollCpu {}
    unsafe impl aya::Pod for super::RecorderMeta {}
    unsafe impl aya::Pod for super::CounterKey {}
    unsafe impl aya::Pod for super::CpuDev {}
    unsafe impl aya::Pod for super::CpuCounterKey {}
    unsafe impl aya::Pod for super::SendStats {}
    unsafe impl aya::Pod for super::SendEvent {}
    unsafe impl aya::Pod for super::SendCpu {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_id_has_a_symbol_that_names_it_back() {
        for id in function::ALL {
            assert_eq!(function::id(function::symbol(id).unwrap()), Some(id));
        }
        assert_eq!(
            function::id("netpoll_send_skb_on_dev"),
            Some(function::NETPOLL_SEND_SKB)
        );
        assert_eq!(function::id("printk"), None);
    }

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

    mod pairing_sim {
        //! A thread's parked entries driven through `pairing` as the programs drive it
        //! (netpoll-trace-ebpf's try_enter/try_exit), in the sequences that go wrong.
        extern crate std;
        use std::vec::Vec;

        use super::super::{
            function::{INNER_NETPOLL_SETUP as INNER, NETPOLL_SETUP as OUTER},
            loss,
            pairing::{self, Enter, Exit, Frame, WALK},
        };

        const MS: u64 = 1_000_000;

        /// A sent record: function, netpoll, depth.
        type Rec = (u32, u64, u32);

        #[derive(Default)]
        struct Thread {
            /// Parked levels, oldest first; NONE where the entry could not be parked.
            levels: Vec<Frame>,
            sent: Vec<Rec>,
            losses: [u64; loss::SLOTS as usize],
        }

        impl Thread {
            fn enter(&mut self, f: u32, np: u64, now: u64) {
                self.enter_parked(f, np, now, true)
            }

            /// `parked`: false when INFLIGHT refuses the entry (map full).
            fn enter_parked(&mut self, f: u32, np: u64, now: u64, parked: bool) {
                let depth = self.levels.len() as u32;
                let top = self.levels.last().copied().unwrap_or(Frame::NONE);
                if pairing::on_enter(depth, top, f, np, now) == Enter::Flush {
                    self.losses[loss::ORPHANED_ENTRY as usize] +=
                        self.levels.iter().filter(|f| !f.is_none()).count() as u64;
                    self.levels.clear();
                }
                if !parked {
                    self.losses[loss::ENTRY_DROPPED as usize] += 1;
                }
                self.levels.push(if parked {
                    Frame {
                        function: f,
                        netpoll: np,
                        ts_ns: now,
                    }
                } else {
                    Frame::NONE
                });
            }

            /// A return; `np` where the probe sees it (fexit).
            fn exit(&mut self, f: u32, np: Option<u64>) {
                let depth = self.levels.len() as u32;
                let frame = |i: u32| {
                    if i < depth {
                        self.levels[(depth - 1 - i) as usize]
                    } else {
                        Frame::NONE
                    }
                };
                let frames: [Frame; WALK as usize] = [frame(0), frame(1), frame(2)];
                match pairing::on_exit(depth, frames, f, np) {
                    Exit::Unpaired => self.losses[loss::UNPAIRED_RETURN as usize] += 1,
                    Exit::Pair { dropped } => {
                        for _ in 0..dropped {
                            if self.levels.pop().is_some_and(|f| !f.is_none()) {
                                self.losses[loss::MISSED_RETURN as usize] += 1;
                            }
                        }
                        let level = self.levels.len() as u32 - 1;
                        if let Some(e) = self.levels.pop().filter(|f| !f.is_none()) {
                            self.sent.push((e.function, e.netpoll, level));
                        }
                    }
                }
            }

            fn lost(&self, slot: u32) -> u64 {
                self.losses[slot as usize]
            }
        }

        #[test]
        fn a_skipped_return_costs_its_own_record_and_the_caller_still_pairs() {
            for np in [Some(1), None] {
                let mut t = Thread::default();
                t.enter(OUTER, 1, 0);
                t.enter(INNER, 1, MS);
                // __netpoll_setup's return is never seen.
                t.exit(OUTER, np);
                assert_eq!(t.sent, [(OUTER, 1, 0)], "fexit netpoll {np:?}");
                assert_eq!(t.lost(loss::MISSED_RETURN), 1);
                assert!(t.levels.is_empty(), "nothing stays parked");
            }
        }

        #[test]
        fn after_a_missed_return_the_threads_next_setup_is_outermost_again() {
            let mut t = Thread::default();
            t.enter(OUTER, 1, 0);
            t.enter(INNER, 1, MS);
            t.exit(INNER, None);
            // netpoll_setup's own return is never seen; the same thread sets up again.
            t.enter(OUTER, 2, 2 * MS);
            t.enter(INNER, 2, 3 * MS);
            t.exit(INNER, Some(2));
            t.exit(OUTER, Some(2));
            assert_eq!(t.sent, [(INNER, 1, 1), (INNER, 2, 1), (OUTER, 2, 0)]);
            assert_eq!(t.lost(loss::ORPHANED_ENTRY), 1);
            assert!(t.levels.is_empty());
        }

        #[test]
        fn a_reused_thread_id_drops_a_stale_leftover() {
            let mut t = Thread::default();
            // A bond slave's __netpoll_setup whose return was missed, long ago.
            t.enter(INNER, 7, 0);
            // A new thread with the same id sets a device up directly (bond_enslave).
            t.enter(INNER, 9, pairing::STALE_NS + 1);
            t.exit(INNER, None);
            assert_eq!(t.sent, [(INNER, 9, 0)]);
            assert_eq!(t.lost(loss::ORPHANED_ENTRY), 1);
        }

        #[test]
        fn a_nested_call_reusing_its_parents_netpoll_is_a_leftover() {
            let mut t = Thread::default();
            t.enter(INNER, 7, 0);
            t.enter(INNER, 7, MS);
            t.exit(INNER, Some(7));
            assert_eq!(t.sent, [(INNER, 7, 0)]);
            // And netpoll_setup's __netpoll_setup must carry netpoll_setup's netpoll.
            let mut t = Thread::default();
            t.enter(OUTER, 1, 0);
            t.enter(INNER, 2, MS);
            assert_eq!(t.lost(loss::ORPHANED_ENTRY), 1);
            assert_eq!(t.levels.len(), 1);
        }

        #[test]
        fn a_bonds_nesting_pairs_every_call() {
            let mut t = Thread::default();
            t.enter(OUTER, 1, 0);
            t.enter(INNER, 1, MS);
            t.enter(INNER, 2, 2 * MS);
            t.exit(INNER, None);
            t.enter(INNER, 3, 3 * MS);
            t.exit(INNER, None);
            t.exit(INNER, None);
            t.exit(OUTER, None);
            assert_eq!(
                t.sent,
                [(INNER, 2, 2), (INNER, 3, 2), (INNER, 1, 1), (OUTER, 1, 0)]
            );
            assert_eq!(t.losses, [0; loss::SLOTS as usize]);
        }

        #[test]
        fn a_slaves_missed_return_under_fexit_drops_only_the_slave() {
            let mut t = Thread::default();
            t.enter(OUTER, 1, 0);
            t.enter(INNER, 1, MS);
            t.enter(INNER, 2, 2 * MS);
            // The slave's fexit is skipped; the bond's and netpoll_setup's are seen.
            t.exit(INNER, Some(1));
            t.exit(OUTER, Some(1));
            assert_eq!(t.sent, [(INNER, 1, 1), (OUTER, 1, 0)]);
            assert_eq!(t.lost(loss::MISSED_RETURN), 1);
        }

        #[test]
        fn an_entry_that_could_not_be_parked_keeps_its_level() {
            let mut t = Thread::default();
            t.enter(OUTER, 1, 0);
            t.enter(INNER, 1, MS);
            t.enter_parked(INNER, 2, 2 * MS, false);
            t.exit(INNER, None);
            t.exit(INNER, None);
            t.exit(OUTER, None);
            assert_eq!(t.sent, [(INNER, 1, 1), (OUTER, 1, 0)]);
            assert_eq!(t.lost(loss::ENTRY_DROPPED), 1);
            assert!(t.levels.is_empty());
        }

        #[test]
        fn a_return_without_an_entry_leaves_the_parked_ones_alone() {
            let mut t = Thread::default();
            // Attached while netpoll_setup ran: its __netpoll_setup is seen whole.
            t.enter(INNER, 1, 0);
            t.exit(INNER, Some(1));
            t.exit(OUTER, Some(1));
            assert_eq!(t.sent, [(INNER, 1, 0)]);
            assert_eq!(t.lost(loss::UNPAIRED_RETURN), 1);
            // A return matching none of the parked entries takes none of them.
            let mut t = Thread::default();
            t.enter(OUTER, 1, 0);
            t.exit(INNER, Some(5));
            t.exit(OUTER, Some(1));
            assert_eq!(t.sent, [(OUTER, 1, 0)]);
            assert_eq!(t.lost(loss::UNPAIRED_RETURN), 1);
        }

        #[test]
        fn loss_names_are_unique_and_one_per_slot() {
            for (i, a) in loss::NAMES.iter().enumerate() {
                assert!(loss::NAMES[i + 1..].iter().all(|b| a != b), "{a} twice");
            }
        }
    }
}
