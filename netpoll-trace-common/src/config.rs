//! This kernel's struct layout, resolved by userspace and read by every program.

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
    /// `netconsole_target.np` (`Config::nt_np`), from netconsole's module BTF.
    pub const NT_NP: u32 = 1 << 9;
    /// The target's addresses around its `np` (`Config::nt_*`): where `struct netpoll`
    /// no longer carries them (7.3+), netconsole's own target does.
    pub const NT_REMOTE: u32 = 1 << 10;
    /// `nbcon_write_context.len` (`Config::wctxt_len`): 7.3+ netconsole's console write.
    pub const WCTXT_LEN: u32 = 1 << 11;
    /// The skb transmit's return is traced (set once it is attached): it counts each
    /// message with its outcome, and the send's entry infers one that found no skb.
    /// Unset (the transmit untraced, or not yet), the send's entry counts messages itself.
    pub const SEND_RETURN: u32 = 1 << 12;
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
    /// Byte offset of `np` inside netconsole's `struct netconsole_target`
    /// (`config_flags::NT_NP`): netconsole's own functions take the target (7.3+).
    pub nt_np: u32,
    /// `netconsole_target.{remote_ip, remote_port, local_port, ipv6}` minus
    /// `netconsole_target.np` (`config_flags::NT_REMOTE`): read only from a netpoll
    /// owned by netconsole, which is always inside a target.
    pub nt_remote_ip: u32,
    pub nt_remote_port: u32,
    pub nt_local_port: u32,
    pub nt_ipv6: u32,
    /// `nbcon_write_context.len` (`config_flags::WCTXT_LEN`): the message's length in
    /// 7.3+ netconsole's console write, which takes the nbcon context.
    pub wctxt_len: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Config>() == 144);
