//! What the programs read of the kernel's structs (a device, a netpoll, the current
//! task): the lengths of the strings kept, and which reads succeeded (`event_flags`).

/// Length of `net_device.name` and `netpoll.dev_name` (IFNAMSIZ).
pub const IFNAMSIZ: usize = 16;
/// Bytes kept of `netpoll.name` (the owner, e.g. "netconsole").
pub const OWNER_LEN: usize = 16;
/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;

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
