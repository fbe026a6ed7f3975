//! Tear-downs: why a netpoll was torn down (`stop_cause`).

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
