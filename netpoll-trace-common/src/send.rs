//! The send path (netconsole's console write, `netpoll_send_udp`, the skb transmit):
//! why a message was dropped, per-device statistics, single events, the state per CPU.

use crate::{IFNAMSIZ, POLL_BUCKETS};

/// Why a message was not handed to the driver: indices of `SendStats::dropped`, named
/// once (`NAMES`) for every output.
pub mod send_drop {
    /// netpoll_send_udp found no skb (netpoll's pool and the allocator were empty);
    /// counted when that CPU sends its next message (the send has no return probe).
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

/// Per-device send-path statistics, one per CPU, keyed by `struct net_device *`.
/// Every message (`netpoll_send_udp`) ends in exactly one of sent, deferred or a
/// `dropped` slot; skb transmits by stacked devices (a bond's slave) count there too.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SendStats {
    /// netpoll_send_udp calls and their payload bytes (counted with their outcome).
    pub messages: u64,
    pub bytes: u64,
    /// Handed to the driver.
    pub sent: u64,
    /// Queued to netpoll's own queue (`npinfo->txq`) for its worker: the TX queue was
    /// busy, or earlier messages were still queued.
    pub deferred: u64,
    /// By `send_drop::*`.
    pub dropped: [u64; send_drop::SLOTS],
    /// Send time: from netpoll_send_udp's entry to the skb transmit's return (the
    /// transmit's retry loop spins with interrupts off); a transmit outside a message
    /// (none in mainline) from its own entry under kprobes, 0 under fentry.
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
    /// A send (`SendStats::total_ns`) at least `Config::slow_send_ns` long.
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
    /// The last netpoll_send_udp's entry time (0: none yet) and payload bytes.
    pub udp_ts_ns: u64,
    pub udp_len: u64,
    /// Its netpoll while it is in progress: 0 once its own skb transmit returned.
    pub udp_np: u64,
    /// Whether that message reached the skb transmit (else it found no skb: told at the
    /// CPU's next message, as there is no return probe).
    pub udp_reached: u32,
    /// Skb transmits in progress (`frames[0..depth]`).
    pub depth: u32,
    pub frames: [SendFrame; SEND_DEPTH as usize],
}

const _: () = assert!(core::mem::size_of::<SendCpu>() == 32 + 24 * SEND_DEPTH as usize);
