//! What every offset source answers (a member's place, a constant's value), and the one
//! place that turns those answers into the programs' `Config`, group by group.

use netpoll_trace_common::{Config, config_flags as cf};

/// One source of struct layouts: the kernel's BTF, a BTF file, or the object built from
/// the kernel's headers.
pub trait Layout {
    /// `member` of `struct_name`: its byte offset, and the bit shift at which it starts
    /// in the u64 read there (non-zero only for a bitfield starting mid-byte).
    fn member(&self, struct_name: &str, member: &str) -> Option<(u32, u32)>;
    /// The value of a constant (an enum value) of the kernel's.
    fn constant(&self, name: &str) -> Option<u64>;
}

/// Fills a `Config` from `layout`; each group of offsets is enabled only when all of its
/// members were found. Returns the config and every item not found ("struct.member" or a
/// constant's name).
pub fn resolve(layout: &dyn Layout) -> (Config, Vec<&'static str>) {
    let mut missing = Vec::new();
    let mut get = |s: &'static str, m: &'static str, label: &'static str| {
        let loc = layout.member(s, m);
        if loc.is_none() {
            missing.push(label);
        }
        loc
    };
    let mut c = Config::default();
    if let Some((off, _)) = get("net_device", "name", "net_device.name") {
        c.dev_name = off;
        c.flags |= cf::DEV_NAME;
    }
    if let Some((off, _)) = get("net_device", "ifindex", "net_device.ifindex") {
        c.dev_ifindex = off;
        c.flags |= cf::DEV_IFINDEX;
    }
    let ops = get("net_device", "netdev_ops", "net_device.netdev_ops");
    let pc = get(
        "net_device_ops",
        "ndo_poll_controller",
        "net_device_ops.ndo_poll_controller",
    );
    let ns = get(
        "net_device_ops",
        "ndo_netpoll_setup",
        "net_device_ops.ndo_netpoll_setup",
    );
    if let (Some(ops), Some(pc), Some(ns)) = (ops, pc, ns) {
        c.dev_netdev_ops = ops.0;
        c.ops_poll_controller = pc.0;
        c.ops_netpoll_setup = ns.0;
        c.flags |= cf::DEV_OPS;
    }
    let pf = get("net_device", "priv_flags", "net_device.priv_flags");
    let np_dev_name = get("netpoll", "dev_name", "netpoll.dev_name");
    let np_name = get("netpoll", "name", "netpoll.name");
    let bit = layout.constant("IFF_DISABLE_NETPOLL");
    if bit.is_none() {
        missing.push("IFF_DISABLE_NETPOLL");
    }
    if let (Some((off, shift)), Some(bit)) = (pf, bit) {
        c.dev_priv_flags = off;
        c.priv_flags_shift = shift;
        c.iff_disable_netpoll = bit;
        c.flags |= cf::DEV_PRIV_FLAGS;
    }
    if let Some((off, _)) = np_dev_name {
        c.np_dev_name = off;
        c.flags |= cf::NP_DEV_NAME;
    }
    if let Some((off, _)) = np_name {
        c.np_name = off;
        c.flags |= cf::NP_NAME;
    }
    let mut get = |s: &'static str, m: &'static str, label: &'static str| {
        let loc = layout.member(s, m);
        if loc.is_none() {
            missing.push(label);
        }
        loc
    };
    let np_dev = get("netpoll", "dev", "netpoll.dev");
    let npinfo = get("net_device", "npinfo", "net_device.npinfo");
    let state = get("net_device", "state", "net_device.state");
    let txq = get("netpoll_info", "txq", "netpoll_info.txq");
    let qlen = get("sk_buff_head", "qlen", "sk_buff_head.qlen");
    let mut constant = |name: &'static str| {
        let v = layout.constant(name).filter(|v| *v < 64);
        if v.is_none() {
            missing.push(name);
        }
        v
    };
    let start = constant("__LINK_STATE_START");
    let present = constant("__LINK_STATE_PRESENT");
    if let (
        Some(np_dev),
        Some(npinfo),
        Some(state),
        Some(txq),
        Some(qlen),
        Some(start),
        Some(present),
    ) = (np_dev, npinfo, state, txq, qlen, start, present)
    {
        c.np_dev = np_dev.0;
        c.dev_npinfo = npinfo.0;
        c.dev_state = state.0;
        c.npinfo_txq_qlen = txq.0 + qlen.0;
        c.state_start = 1 << start;
        c.state_present = 1 << present;
        c.flags |= cf::SEND;
    }
    let mut get = |s: &'static str, m: &'static str, label: &'static str| {
        let loc = layout.member(s, m);
        if loc.is_none() {
            missing.push(label);
        }
        loc
    };
    let rip = get("netpoll", "remote_ip", "netpoll.remote_ip");
    let rport = get("netpoll", "remote_port", "netpoll.remote_port");
    let lport = get("netpoll", "local_port", "netpoll.local_port");
    let ipv6 = get("netpoll", "ipv6", "netpoll.ipv6");
    if let (Some(rip), Some(rport), Some(lport), Some(ipv6)) = (rip, rport, lport, ipv6) {
        c.np_remote_ip = rip.0;
        c.np_remote_port = rport.0;
        c.np_local_port = lport.0;
        c.np_ipv6 = ipv6.0;
        c.flags |= cf::NP_REMOTE;
    }
    if let Some((off, _)) = get("net_device", "dismantle", "net_device.dismantle") {
        c.dev_dismantle = off;
        c.flags |= cf::DEV_DISMANTLE;
    }
    // 7.3+ only (an nbcon netconsole): not missing elsewhere.
    if let Some((off, _)) = layout.member("nbcon_write_context", "len") {
        c.wctxt_len = off;
        c.flags |= cf::WCTXT_LEN;
    }
    (c, missing)
}

/// Every value a `Config` holds for the programs, by the name `offsets` prints, None where
/// its group is unresolved.
pub fn fields(c: &Config) -> Vec<(&'static str, Option<u64>)> {
    let on = |flag: u32, v: u64| (c.flags & flag != 0).then_some(v);
    let mut fields = vec![
        ("net_device.name", on(cf::DEV_NAME, c.dev_name.into())),
        (
            "net_device.ifindex",
            on(cf::DEV_IFINDEX, c.dev_ifindex.into()),
        ),
        (
            "net_device.netdev_ops",
            on(cf::DEV_OPS, c.dev_netdev_ops.into()),
        ),
        (
            "net_device.priv_flags",
            on(cf::DEV_PRIV_FLAGS, c.dev_priv_flags.into()),
        ),
        (
            "net_device.priv_flags_shift",
            on(cf::DEV_PRIV_FLAGS, c.priv_flags_shift.into()),
        ),
        (
            "net_device_ops.ndo_poll_controller",
            on(cf::DEV_OPS, c.ops_poll_controller.into()),
        ),
        (
            "net_device_ops.ndo_netpoll_setup",
            on(cf::DEV_OPS, c.ops_netpoll_setup.into()),
        ),
        (
            "netpoll.dev_name",
            on(cf::NP_DEV_NAME, c.np_dev_name.into()),
        ),
        ("netpoll.name", on(cf::NP_NAME, c.np_name.into())),
        (
            "IFF_DISABLE_NETPOLL",
            on(cf::DEV_PRIV_FLAGS, c.iff_disable_netpoll),
        ),
        ("netpoll.dev", on(cf::SEND, c.np_dev.into())),
        ("net_device.npinfo", on(cf::SEND, c.dev_npinfo.into())),
        ("net_device.state", on(cf::SEND, c.dev_state.into())),
        (
            "netpoll_info.txq.qlen",
            on(cf::SEND, c.npinfo_txq_qlen.into()),
        ),
        (
            "__LINK_STATE_START",
            on(cf::SEND, u64::from(c.state_start.trailing_zeros())),
        ),
        (
            "__LINK_STATE_PRESENT",
            on(cf::SEND, u64::from(c.state_present.trailing_zeros())),
        ),
        (
            "net_device.dismantle",
            on(cf::DEV_DISMANTLE, c.dev_dismantle.into()),
        ),
    ];
    // The target's addresses: in struct netpoll, or (7.3+) in netconsole's target, where
    // the netpoll has none (those names do not exist there: not listed).
    if c.flags & cf::NT_REMOTE == 0 {
        fields.extend([
            (
                "netpoll.remote_ip",
                on(cf::NP_REMOTE, c.np_remote_ip.into()),
            ),
            (
                "netpoll.remote_port",
                on(cf::NP_REMOTE, c.np_remote_port.into()),
            ),
            (
                "netpoll.local_port",
                on(cf::NP_REMOTE, c.np_local_port.into()),
            ),
            ("netpoll.ipv6", on(cf::NP_REMOTE, c.np_ipv6.into())),
        ]);
    }
    if c.flags & cf::NT_NP != 0 {
        let np = u64::from(c.nt_np);
        fields.push(("netconsole_target.np", Some(np)));
        fields.extend(
            [
                ("netconsole_target.remote_ip", c.nt_remote_ip),
                ("netconsole_target.remote_port", c.nt_remote_port),
                ("netconsole_target.local_port", c.nt_local_port),
                ("netconsole_target.ipv6", c.nt_ipv6),
            ]
            .map(|(n, rel)| (n, on(cf::NT_REMOTE, np + u64::from(rel)))),
        );
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 7.3: the netpoll has no addresses; the target's are listed instead, as offsets
    /// inside netconsole_target, and the netpoll's names are not listed at all.
    #[test]
    fn the_targets_addresses_replace_the_netpolls_where_it_has_none() {
        let plain = fields(&Config::default());
        assert!(
            plain
                .iter()
                .any(|(n, v)| *n == "netpoll.remote_ip" && v.is_none())
        );
        assert!(
            !plain
                .iter()
                .any(|(n, _)| n.starts_with("netconsole_target"))
        );
        let c = Config {
            flags: cf::NT_NP | cf::NT_REMOTE,
            nt_np: 1352,
            nt_remote_ip: 56,
            nt_remote_port: 76,
            nt_local_port: 74,
            nt_ipv6: 72,
            ..Config::default()
        };
        let f = fields(&c);
        assert!(!f.iter().any(|(n, _)| n.starts_with("netpoll.remote")));
        let get = |name: &str| f.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(get("netconsole_target.np"), Some(1352));
        assert_eq!(get("netconsole_target.remote_ip"), Some(1408));
        assert_eq!(get("netconsole_target.remote_port"), Some(1428));
        assert_eq!(get("netconsole_target.ipv6"), Some(1424));
    }

    struct Table(&'static [(&'static str, u32, u32)], Option<u64>);
    impl Layout for Table {
        fn member(&self, s: &str, m: &str) -> Option<(u32, u32)> {
            self.0
                .iter()
                .find(|(n, _, _)| *n == format!("{s}.{m}"))
                .map(|&(_, o, sh)| (o, sh))
        }
        fn constant(&self, _: &str) -> Option<u64> {
            self.1
        }
    }

    #[test]
    fn a_missing_member_disables_only_its_group() {
        let t = Table(
            &[
                ("net_device.name", 24, 0),
                ("net_device.priv_flags", 0, 3),
                ("netpoll.name", 8, 0),
            ],
            Some(128),
        );
        let (c, missing) = resolve(&t);
        assert_eq!(c.flags, cf::DEV_NAME | cf::DEV_PRIV_FLAGS | cf::NP_NAME);
        assert_eq!(
            (c.dev_priv_flags, c.priv_flags_shift, c.iff_disable_netpoll),
            (0, 3, 128)
        );
        assert!(
            missing.contains(&"net_device_ops.ndo_poll_controller")
                && missing.contains(&"netpoll.dev_name")
        );
        let f = fields(&c);
        assert_eq!(f.len(), 21);
        assert!(f.contains(&("net_device.name", Some(24))));
        assert!(f.contains(&("net_device.priv_flags_shift", Some(3))));
        assert!(f.contains(&("net_device.netdev_ops", None)));
        assert!(f.contains(&("IFF_DISABLE_NETPOLL", Some(128))));
    }

    #[test]
    fn the_send_path_needs_every_member_and_both_state_bits() {
        let members: &[(&str, u32, u32)] = &[
            ("netpoll.dev", 0, 0),
            ("net_device.npinfo", 1000, 0),
            ("net_device.state", 160, 0),
            ("netpoll_info.txq", 16, 0),
            ("sk_buff_head.qlen", 16, 0),
        ];
        let (c, _) = resolve(&Table(members, Some(1)));
        assert_eq!(c.flags & cf::SEND, cf::SEND);
        assert_eq!(
            (c.npinfo_txq_qlen, c.state_start, c.dev_state),
            (32, 2, 160)
        );
        assert!(fields(&c).contains(&("netpoll_info.txq.qlen", Some(32))));
        let (c, missing) = resolve(&Table(&members[1..], Some(1)));
        assert_eq!(c.flags & cf::SEND, 0);
        assert!(missing.contains(&"netpoll.dev"));
        let (c, missing) = resolve(&Table(members, None));
        assert_eq!(c.flags & cf::SEND, 0);
        assert!(missing.contains(&"__LINK_STATE_START"));
    }

    #[test]
    fn without_the_constant_priv_flags_is_off() {
        let t = Table(&[("net_device.priv_flags", 200, 0)], None);
        let (c, missing) = resolve(&t);
        assert_eq!(c.flags & cf::DEV_PRIV_FLAGS, 0);
        assert!(missing.contains(&"IFF_DISABLE_NETPOLL"));
        assert!(fields(&c).contains(&("IFF_DISABLE_NETPOLL", None)));
    }
}
