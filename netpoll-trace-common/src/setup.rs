//! Set-up calls (`netpoll_setup`, `__netpoll_setup`): the event each finished call
//! becomes, the key its entry is parked under, and how a return pairs with its entry.

use crate::{COMM_LEN, IFNAMSIZ, OWNER_LEN};

pub mod pairing;

/// Deepest nesting of set-up calls tracked per thread (bond -> vlan -> bridge -> ...).
pub const MAX_DEPTH: u32 = 8;

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
