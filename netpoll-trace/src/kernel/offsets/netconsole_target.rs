//! netconsole's own target (7.3+): its set-up and UDP send take a `struct
//! netconsole_target *`, and where `struct netpoll` lost the target's addresses the
//! target carries them beside its `np`. The layout comes from netconsole's module BTF
//! (`module_btf`: sysfs when loaded, else the module file, before `modprobe` runs).

use netpoll_trace_common::{Config, config_flags as cf};

use crate::kernel::module_btf::{self, NetconsoleTarget};

/// Fills `config`'s target offsets from `t`: where `np` is, always; the addresses
/// (relative to `np`) only where the netpoll has none of its own and the target has
/// all four after its `np` (never a guessed value).
pub fn apply(config: &mut Config, t: &NetconsoleTarget) {
    config.nt_np = t.np;
    config.flags |= cf::NT_NP;
    if config.flags & cf::NP_REMOTE != 0 {
        return;
    }
    let rel = |off: Option<u32>| off.and_then(|o| o.checked_sub(t.np));
    if let (Some(ip), Some(rport), Some(lport), Some(v6)) = (
        rel(t.remote_ip),
        rel(t.remote_port),
        rel(t.local_port),
        rel(t.ipv6),
    ) {
        config.nt_remote_ip = ip;
        config.nt_remote_port = rport;
        config.nt_local_port = lport;
        config.nt_ipv6 = v6;
        config.flags |= cf::NT_REMOTE;
    }
}

/// The netpoll fields a netconsole target carries instead (7.3+).
const MOVED: [&str; 4] = [
    "netpoll.remote_ip",
    "netpoll.remote_port",
    "netpoll.local_port",
    "netpoll.ipv6",
];

/// Reads netconsole's layout into `resolved`'s config (the addresses found in the target
/// are no longer missing); a note for the user when it cannot. `btf`: the `--btf FILE`
/// given, the base of the module's split BTF when it is raw BTF (an archive is not).
pub fn resolve(resolved: &mut super::Resolved, btf: Option<&std::path::Path>) -> Option<String> {
    const LOST: &str =
        "set-ups and sends in netconsole are traced without their device, owner and target address";
    let raw = btf.filter(|p| super::archive::is_raw_btf(p));
    let loaded = match raw {
        Some(base) => module_btf::load_over("netconsole", base).map(std::sync::Arc::new),
        None => module_btf::load("netconsole"),
    };
    match loaded {
        Ok(btf) => match module_btf::netconsole_target(&btf) {
            Some(t) => {
                apply(&mut resolved.config, &t);
                if resolved.config.flags & cf::NT_REMOTE != 0 {
                    resolved.missing.retain(|m| !MOVED.contains(m));
                }
                log::debug!("netconsole_target from {}: {t:?}", btf.source());
                None
            }
            None => Some(format!(
                "{} has no struct netconsole_target with an np member: {LOST}",
                btf.source()
            )),
        },
        Err(e) => Some(format!("netconsole's module BTF: {e:#}: {LOST}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::module_btf::testing::debian_7_3;

    #[test]
    fn the_targets_addresses_are_read_relative_to_its_netpoll() {
        let mut c = Config::default();
        apply(&mut c, &debian_7_3());
        assert_eq!(c.flags & cf::NT_NP, cf::NT_NP);
        assert_eq!(c.nt_np, 1352);
        assert_eq!(c.flags & cf::NT_REMOTE, cf::NT_REMOTE);
        assert_eq!(
            (c.nt_remote_ip, c.nt_ipv6, c.nt_local_port, c.nt_remote_port),
            (56, 72, 74, 76)
        );
    }

    #[test]
    fn a_netpoll_with_its_own_addresses_or_a_partial_target_gives_none() {
        // 6.18: struct netpoll has them; the target's copy is not used.
        let mut c = Config {
            flags: cf::NP_REMOTE,
            ..Config::default()
        };
        apply(&mut c, &debian_7_3());
        assert_eq!(c.flags & cf::NT_REMOTE, 0);
        assert_eq!(c.nt_np, 1352);
        // A target without one of the four, or one before its np: nothing guessed.
        for broken in [
            NetconsoleTarget {
                ipv6: None,
                ..debian_7_3()
            },
            NetconsoleTarget {
                remote_ip: Some(8),
                ..debian_7_3()
            },
        ] {
            let mut c = Config::default();
            apply(&mut c, &broken);
            assert_eq!(c.flags & cf::NT_REMOTE, 0, "{broken:?}");
        }
    }
}
