//! Offsets from BTF: the kernel's own (/sys/kernel/btf/vmlinux) or a `--btf FILE` (raw,
//! or BTFHub's archive: see `archive`).

use std::path::Path;

use anyhow::{Context as _, Result};

use super::{archive, layout::Layout};
use crate::kernel::btf::Btf;

impl Layout for Btf {
    fn member(&self, struct_name: &str, member: &str) -> Option<(u32, u32)> {
        // A bitfield (6.12's priv_flags) may start mid-byte: read from its byte, shift the rest.
        Btf::member(self, struct_name, member).map(|l| (l.byte_offset(), l.bit_offset % 8))
    }
    fn constant(&self, name: &str) -> Option<u64> {
        self.enum_value(name).map(|v| v as u64)
    }
}

/// Parses the BTF in `path` (raw or an archive); also returns the archive member used.
pub fn read_file(path: &Path, release: Option<&str>) -> Result<(Btf, Option<String>)> {
    let bytes = archive::read(path, release)?;
    let what = match &bytes.member {
        Some(m) => format!("parsing BTF in {} ({m})", path.display()),
        None => format!("parsing BTF in {}", path.display()),
    };
    let btf = Btf::from_vec(bytes.data).context(what)?;
    Ok((btf, bytes.member))
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::kernel::{
        btf::testing::{Builder, M},
        offsets::{archive::testing, layout::resolve},
    };
    use netpoll_trace_common::config_flags as cf;

    fn m(name: &str, type_id: u32, bit_offset: u32, bitfield_size: u32) -> M<'_> {
        M {
            name,
            type_id,
            bit_offset,
            bitfield_size,
        }
    }

    /// The shapes that differ between our lab kernels: 5.10/6.1 have a plain
    /// `priv_flags`; 6.12 has a 32-bit bitfield inside an anonymous struct group
    /// at the start of `net_device`, so `name` is not at offset 0.
    pub fn kernel(bitfield: bool) -> Vec<u8> {
        let mut b = Builder::new();
        kernel_into(&mut b, bitfield);
        b.finish()
    }

    /// `kernel`'s types, added to `b` (for a test that adds more).
    pub fn kernel_into(b: &mut Builder, bitfield: bool) {
        let int = b.int("unsigned int", 4);
        let ptr = b.ptr(int);
        let pf = if bitfield {
            let inner = b.composite(
                "",
                false,
                8,
                &[m("priv_flags", int, 0, 32), m("lltx", int, 32, 1)],
            );
            let grp = b.composite("", true, 8, &[m("", inner, 0, 0)]);
            m("", grp, 0, 0)
        } else {
            m("priv_flags", int, 8 * 200, 0)
        };
        b.composite(
            "net_device",
            false,
            2048,
            &[
                pf,
                m("netdev_ops", ptr, 64, 0),
                m("name", int, 8 * 264, 0),
                m("ifindex", int, 8 * 224, 0),
                m("state", ptr, 8 * 176, 0),
                m("npinfo", ptr, 8 * 1000, 0),
                m("dismantle", int, 8 * 1100, 0),
            ],
        );
        b.composite(
            "net_device_ops",
            false,
            512,
            &[
                m("ndo_poll_controller", ptr, 8 * 264, 0),
                m("ndo_netpoll_setup", ptr, 8 * 272, 0),
            ],
        );
        b.composite(
            "netpoll",
            false,
            96,
            &[
                m("dev", ptr, 0, 0),
                m("dev_name", int, 64, 0),
                m("name", ptr, 192, 0),
                m("local_ip", int, 8 * 32, 0),
                m("remote_ip", int, 8 * 48, 0),
                m("ipv6", int, 8 * 64, 0),
                m("local_port", int, 8 * 66, 0),
                m("remote_port", int, 8 * 68, 0),
            ],
        );
        b.composite("netpoll_info", false, 64, &[m("txq", int, 8 * 16, 0)]);
        b.composite("sk_buff_head", false, 24, &[m("qlen", int, 8 * 16, 0)]);
        b.enum32("netdev_priv_flags", &[("IFF_DISABLE_NETPOLL", 1 << 12)]);
        b.enum32(
            "netdev_state_t",
            &[("__LINK_STATE_START", 0), ("__LINK_STATE_PRESENT", 1)],
        );
    }

    #[test]
    fn resolves_every_group_on_a_complete_kernel() {
        for bitfield in [false, true] {
            let (c, missing) = resolve(&Btf::parse(&kernel(bitfield)).unwrap());
            assert!(missing.is_empty(), "{missing:?}");
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
            assert_eq!(
                (c.np_dev, c.dev_npinfo, c.dev_state, c.npinfo_txq_qlen),
                (0, 1000, 176, 32)
            );
            assert_eq!((c.state_start, c.state_present), (1, 2));
            assert_eq!(
                (c.np_remote_ip, c.np_remote_port, c.np_local_port, c.np_ipv6),
                (48, 68, 66, 64)
            );
            assert_eq!(c.dev_dismantle, 1100);
            let all = cf::DEV_NAME
                | cf::DEV_IFINDEX
                | cf::DEV_OPS
                | cf::DEV_PRIV_FLAGS
                | cf::NP_DEV_NAME
                | cf::NP_NAME
                | cf::SEND
                | cf::NP_REMOTE
                | cf::DEV_DISMANTLE;
            assert_eq!(c.flags, all);
        }
    }

    #[test]
    fn a_bitfield_starting_mid_byte_gets_a_shift() {
        let mut b = Builder::new();
        let int = b.int("unsigned int", 4);
        b.composite(
            "net_device",
            false,
            64,
            &[m("x", int, 0, 3), m("priv_flags", int, 8 * 16 + 3, 29)],
        );
        assert_eq!(
            Layout::member(
                &Btf::parse(&b.finish()).unwrap(),
                "net_device",
                "priv_flags"
            ),
            Some((16, 3))
        );
    }

    #[test]
    fn a_btfhub_archive_resolves_like_the_raw_file() {
        let dir = std::env::temp_dir().join(format!("npt-btf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("vmlinux.btf");
        let archive = dir.join("6.12.9-amd64.btf.tar.xz");
        std::fs::write(&raw, kernel(true)).unwrap();
        std::fs::write(
            &archive,
            testing::xz(&testing::tar(&[("6.12.9-amd64.btf", &kernel(true))])),
        )
        .unwrap();
        let (a, none) = read_file(&raw, Some("6.12.9-amd64")).unwrap();
        let (b, member) = read_file(&archive, Some("6.12.9-amd64")).unwrap();
        assert_eq!((none, member.as_deref()), (None, Some("6.12.9-amd64.btf")));
        assert_eq!(resolve(&a), resolve(&b));
        let e = format!(
            "{:#}",
            read_file(&archive, Some("6.12.10-amd64")).err().unwrap()
        );
        assert!(
            e.contains(&archive.display().to_string())
                && e.contains("this kernel is 6.12.10-amd64"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn explicit_btf_file_errors_name_the_file() {
        let err = read_file(Path::new("/nonexistent/vmlinux.btf"), None)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("/nonexistent/vmlinux.btf"));
    }
}
