//! The traced kernel functions: the id an event carries (`SetupEvent::function`,
//! `CounterKey::function`) and the kernel symbol, defined once for both sides.

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
/// netconsole's own set-up, `static int netcons_netpoll_setup(struct
/// netconsole_target *nt)` in the netconsole module (Linux 7.3+, where vmlinux has no
/// netpoll_setup): the outer set-up there (device lookup, slave check, open, local
/// address, then `__netpoll_setup`). The probe passes `&nt->np` (`Config::nt_np`).
pub const NETCONS_NETPOLL_SETUP: u32 = 10;

/// netconsole's own `static int netpoll_send_udp(struct netconsole_target *nt, const
/// char *msg, int len)` (7.3+, where vmlinux has none): `NETPOLL_SEND_UDP` there.
pub const NETCONS_SEND_UDP_SYMBOL: &str = "netconsole:netpoll_send_udp";

/// 7.3+ netconsole's console write for plain targets, `static void
/// netconsole_write_basic(struct console *con, struct nbcon_write_context *wctxt)` (an
/// nbcon console; it tail-calls netconsole_write): `NETCONSOLE_WRITE_MSG` there.
pub const NETCONSOLE_WRITE_BASIC_SYMBOL: &str = "netconsole:netconsole_write_basic";

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
        NETCONS_NETPOLL_SETUP => Some("netconsole:netcons_netpoll_setup"),
        _ => None,
    }
}

/// A symbol's function name without its module (`netconsole:write_msg` -> `write_msg`):
/// the name in BTF, in kallsyms' third field and in JSON.
pub fn without_module(symbol: &str) -> &str {
    symbol.rsplit(':').next().unwrap_or(symbol)
}

/// Every function id.
pub const ALL: [u32; 10] = [
    NETPOLL_SETUP,
    INNER_NETPOLL_SETUP,
    NETPOLL_POLL_DEV,
    NETPOLL_SEND_UDP,
    NETPOLL_SEND_SKB,
    NETPOLL_CLEANUP,
    INNER_NETPOLL_CLEANUP,
    DO_NETPOLL_CLEANUP,
    NETCONSOLE_WRITE_MSG,
    NETCONS_NETPOLL_SETUP,
];

/// The outer set-up functions: called from outside any set-up with the caller's own
/// netpoll (netpoll_setup; netconsole's own on 7.3+), which `__netpoll_setup` gets next.
#[inline(always)]
pub const fn is_outer_setup(id: u32) -> bool {
    id == NETPOLL_SETUP || id == NETCONS_NETPOLL_SETUP
}

/// The id of a kernel symbol (`symbol`'s inverse; every one of `SEND_SKB_SYMBOLS`).
pub fn id(name: &str) -> Option<u32> {
    if SEND_SKB_SYMBOLS.contains(&name) {
        return Some(NETPOLL_SEND_SKB);
    }
    if name == NETCONS_SEND_UDP_SYMBOL {
        return Some(NETPOLL_SEND_UDP);
    }
    if name == NETCONSOLE_WRITE_BASIC_SYMBOL {
        return Some(NETCONSOLE_WRITE_MSG);
    }
    ALL.into_iter().find(|i| symbol(*i) == Some(name))
}

#[cfg(test)]
mod tests {
    use crate::function;

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
}
