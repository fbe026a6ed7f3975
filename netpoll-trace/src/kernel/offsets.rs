//! Resolves the struct offsets the eBPF programs need from the kernel's BTF into the
//! shared `Config`. Rust eBPF cannot emit CO-RE relocations, so this is where one
//! object learns every kernel's layout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use netpoll_trace_common::{Config, config_flags as cf};

use super::{
    btf::{Btf, FunctionIndex},
    profile::stage,
};

/// Where the running kernel publishes its BTF.
pub const SYSFS_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Offsets found, and the fields that could not be resolved (reported to the user).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub config: Config,
    /// Each unresolved item, as "struct.member" or a constant name.
    pub missing: Vec<&'static str>,
    /// Where the BTF came from, or None in reduced mode.
    pub source: Option<PathBuf>,
}

impl Resolved {
    /// No BTF at all: return codes only.
    pub fn reduced() -> Self {
        Self {
            config: Config::default(),
            missing: vec!["BTF (all struct fields)"],
            source: None,
        }
    }

    /// A line for the user naming what will be unknown.
    pub fn describe_missing(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        Some(format!(
            "could not resolve {}; those fields will be reported as null",
            self.missing.join(", ")
        ))
    }
}

/// The kernel's BTF, parsed by `functions_present` and kept for the `load` that follows it
/// at start-up, so that start-up parses it once.
static SYSFS_PARSED: std::sync::Mutex<Option<Btf>> = std::sync::Mutex::new(None);

/// The running kernel's type ids of the functions last asked about (`functions_present`),
/// for fentry (see `btf::function_index_blob`).
static FUNCTION_INDEX: std::sync::Mutex<Option<FunctionIndex>> = std::sync::Mutex::new(None);

/// Which of `names` the kernel's BTF describes as functions; None without a readable BTF.
/// Keeps the parse for the next `load(None)`, and the functions' type ids for
/// `take_function_index`.
pub fn functions_present(names: &[&str]) -> Option<Vec<bool>> {
    let data = std::fs::read(SYSFS_VMLINUX).ok()?;
    let btf = Btf::parse(&data).ok()?;
    let present = names.iter().map(|n| btf.has_function(n)).collect();
    if let Ok(mut slot) = FUNCTION_INDEX.lock() {
        *slot = Some(btf.function_index(names));
    }
    if let Ok(mut slot) = SYSFS_PARSED.lock() {
        *slot = Some(btf);
    }
    Some(present)
}

/// The type ids `functions_present` found in the running kernel's BTF, once.
pub fn take_function_index() -> Option<FunctionIndex> {
    FUNCTION_INDEX.lock().ok().and_then(|mut slot| slot.take())
}

/// Loads BTF from `explicit` (`--btf FILE`) or the kernel's sysfs file.
/// Returns Ok(None) when neither exists: the caller runs in reduced mode.
pub fn load(explicit: Option<&Path>) -> Result<Option<(Btf, PathBuf)>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(SYSFS_VMLINUX).exists() => PathBuf::from(SYSFS_VMLINUX),
        None => return Ok(None),
    };
    // Taken, not copied (and taken even when --btf wins, so it is never kept): the
    // caller drops it once the offsets are resolved.
    let parsed = SYSFS_PARSED.lock().ok().and_then(|mut slot| slot.take());
    if explicit.is_none()
        && let Some(btf) = parsed
    {
        stage("struct offsets' BTF (parsed once, for function presence)");
        return Ok(Some((btf, path)));
    }
    let data = std::fs::read(&path).with_context(|| format!("reading BTF from {}", path.display()))?;
    let btf = Btf::parse(&data).with_context(|| format!("parsing BTF in {}", path.display()))?;
    stage("struct offsets' BTF read and parsed");
    Ok(Some((btf, path)))
}

/// Fills a `Config` from `btf`; each group of offsets is enabled only when all of
/// its members were found.
pub fn resolve(btf: &Btf) -> Resolved {
    let mut r = Resolved::default();
    let byte = |s: &'static str, m: &'static str, label: &'static str, missing: &mut Vec<_>| {
        let loc = btf.member(s, m);
        if loc.is_none() {
            missing.push(label);
        }
        loc
    };
    let mut missing = Vec::new();
    let c = &mut r.config;

    if let Some(l) = byte("net_device", "name", "net_device.name", &mut missing) {
        c.dev_name = l.byte_offset();
        c.flags |= cf::DEV_NAME;
    }
    if let Some(l) = byte("net_device", "ifindex", "net_device.ifindex", &mut missing) {
        c.dev_ifindex = l.byte_offset();
        c.flags |= cf::DEV_IFINDEX;
    }
    let ops = byte("net_device", "netdev_ops", "net_device.netdev_ops", &mut missing);
    let pc = byte("net_device_ops", "ndo_poll_controller", "net_device_ops.ndo_poll_controller", &mut missing);
    let ns = byte("net_device_ops", "ndo_netpoll_setup", "net_device_ops.ndo_netpoll_setup", &mut missing);
    if let (Some(ops), Some(pc), Some(ns)) = (ops, pc, ns) {
        c.dev_netdev_ops = ops.byte_offset();
        c.ops_poll_controller = pc.byte_offset();
        c.ops_netpoll_setup = ns.byte_offset();
        c.flags |= cf::DEV_OPS;
    }
    let pf = byte("net_device", "priv_flags", "net_device.priv_flags", &mut missing);
    let bit = btf.enum_value("IFF_DISABLE_NETPOLL");
    if bit.is_none() {
        missing.push("IFF_DISABLE_NETPOLL");
    }
    if let (Some(pf), Some(bit)) = (pf, bit) {
        // A bitfield (6.12) may start mid-byte: read from its byte, shift the rest.
        c.dev_priv_flags = pf.byte_offset();
        c.priv_flags_shift = pf.bit_offset % 8;
        c.iff_disable_netpoll = bit as u64;
        c.flags |= cf::DEV_PRIV_FLAGS;
    }
    if let Some(l) = byte("netpoll", "dev_name", "netpoll.dev_name", &mut missing) {
        c.np_dev_name = l.byte_offset();
        c.flags |= cf::NP_DEV_NAME;
    }
    if let Some(l) = byte("netpoll", "name", "netpoll.name", &mut missing) {
        c.np_name = l.byte_offset();
        c.flags |= cf::NP_NAME;
    }
    r.missing = missing;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::testing::{Builder, M};

    fn m(name: &str, type_id: u32, bit_offset: u32, bitfield_size: u32) -> M<'_> {
        M { name, type_id, bit_offset, bitfield_size }
    }

    /// The shapes that differ between our lab kernels: 5.10/6.1 have a plain
    /// `priv_flags`; 6.12 has a 32-bit bitfield inside an anonymous struct group
    /// at the start of `net_device`, so `name` is not at offset 0.
    fn kernel(bitfield: bool) -> Btf {
        let mut b = Builder::new();
        let int = b.int("unsigned int", 4);
        let ptr = b.ptr(int);
        let pf = if bitfield {
            let inner = b.composite("", false, 8, &[m("priv_flags", int, 0, 32), m("lltx", int, 32, 1)]);
            let grp = b.composite("", true, 8, &[m("", inner, 0, 0)]);
            m("", grp, 0, 0)
        } else {
            m("priv_flags", int, 8 * 200, 0)
        };
        b.composite(
            "net_device",
            false,
            2048,
            &[pf, m("netdev_ops", ptr, 64, 0), m("name", int, 8 * 264, 0), m("ifindex", int, 8 * 224, 0)],
        );
        b.composite(
            "net_device_ops",
            false,
            512,
            &[m("ndo_poll_controller", ptr, 8 * 264, 0), m("ndo_netpoll_setup", ptr, 8 * 272, 0)],
        );
        b.composite("netpoll", false, 64, &[m("dev", ptr, 0, 0), m("dev_name", int, 64, 0), m("name", ptr, 192, 0)]);
        b.enum32("netdev_priv_flags", &[("IFF_DISABLE_NETPOLL", 1 << 12)]);
        Btf::parse(&b.finish()).unwrap()
    }

    #[test]
    fn resolves_every_group_on_a_complete_kernel() {
        for bitfield in [false, true] {
            let r = resolve(&kernel(bitfield));
            assert!(r.missing.is_empty(), "{:?}", r.missing);
            let c = r.config;
            assert_eq!(c.dev_name, 264);
            assert_eq!(c.dev_ifindex, 224);
            assert_eq!(c.dev_netdev_ops, 8);
            assert_eq!(c.ops_poll_controller, 264);
            assert_eq!(c.ops_netpoll_setup, 272);
            assert_eq!(c.np_dev_name, 8);
            assert_eq!(c.np_name, 24);
            assert_eq!(c.iff_disable_netpoll, 4096);
            assert_eq!(c.dev_priv_flags, if bitfield { 0 } else { 200 });
            assert_eq!(c.priv_flags_shift, 0);
            let all = cf::DEV_NAME | cf::DEV_IFINDEX | cf::DEV_OPS | cf::DEV_PRIV_FLAGS | cf::NP_DEV_NAME | cf::NP_NAME;
            assert_eq!(c.flags, all);
        }
    }

    #[test]
    fn a_missing_member_disables_only_its_group_and_is_named() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.composite("net_device", false, 64, &[m("name", int, 0, 0)]);
        let r = resolve(&Btf::parse(&b.finish()).unwrap());
        assert_eq!(r.config.flags, cf::DEV_NAME);
        assert!(r.missing.contains(&"net_device_ops.ndo_poll_controller"));
        assert!(r.missing.contains(&"IFF_DISABLE_NETPOLL"));
        assert!(r.describe_missing().unwrap().contains("netpoll.dev_name"));
    }

    #[test]
    fn explicit_btf_file_errors_name_the_file() {
        let err = load(Some(Path::new("/nonexistent/vmlinux.btf"))).err().unwrap();
        assert!(format!("{err:#}").contains("/nonexistent/vmlinux.btf"));
    }
}
