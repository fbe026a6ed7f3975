//! Offsets computed by the compiler from the running kernel's headers: `netpoll_offsets.o`,
//! built by netpoll-patch's kbuild next to the patch module (netpoll-patch/netpoll_offsets.c).
//! Each value is a global `npt_<name>` (8 bytes, little-endian) in the object's ELF; the
//! object is read, never loaded, and refused when built for another kernel release.

use std::{
    collections::HashMap,
    io::Read as _,
    path::{Path, PathBuf},
};

use anyhow::{Result, anyhow, bail};

use super::layout::Layout;

/// The object's file name.
pub const FILE_NAME: &str = "netpoll_offsets.o";
/// The `npt_format` this reader understands.
pub const FORMAT: u64 = 1;
/// An offsets object is a few KiB; refuse anything much larger.
const MAX_OBJECT: u64 = 4 << 20;

/// Where the object is looked for without `--offsets`: where the patch module is (by hand in
/// extra/, by the netpoll-patch-dkms package in updates/dkms/).
pub fn default_paths(release: &str, exe_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = vec![
        PathBuf::from(format!("/lib/modules/{release}/extra/{FILE_NAME}")),
        PathBuf::from(format!("/lib/modules/{release}/updates/dkms/{FILE_NAME}")),
        PathBuf::from(format!("/usr/lib/netpoll-trace/{FILE_NAME}")),
    ];
    if let Some(dir) = exe_dir {
        paths.push(dir.join(FILE_NAME));
    }
    paths
}

/// The values of an offsets object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offsets {
    /// The kernel release the headers were for (UTS_RELEASE).
    pub release: String,
    values: HashMap<String, u64>,
}

impl Layout for Offsets {
    fn member(&self, struct_name: &str, member: &str) -> Option<(u32, u32)> {
        let off = *self.values.get(&format!("{struct_name}_{member}"))?;
        let shift = if (struct_name, member) == ("net_device", "priv_flags") {
            *self.values.get("net_device_priv_flags_shift")?
        } else {
            0
        };
        Some((
            u32::try_from(off).ok()?,
            u32::try_from(shift).ok().filter(|s| *s < 64)?,
        ))
    }
    fn constant(&self, name: &str) -> Option<u64> {
        self.values.get(&name.to_ascii_lowercase()).copied()
    }
}

/// Reads the object at `path` and checks it was built for `release` (the running kernel's).
pub fn read(path: &Path, release: Option<&str>) -> Result<Offsets> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow!("reading offsets object {}: {e}", path.display()))?;
    let mut data = Vec::new();
    file.take(MAX_OBJECT + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow!("reading offsets object {}: {e}", path.display()))?;
    if data.len() as u64 > MAX_OBJECT {
        bail!(
            "{} is larger than {} MiB: not a {FILE_NAME}",
            path.display(),
            MAX_OBJECT >> 20
        );
    }
    let offsets = parse(&data).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    if let Some(rel) = release
        && offsets.release != rel
    {
        bail!(
            "{} was built for kernel {}, this kernel is {rel}: rebuild netpoll-patch against this kernel's headers (make -C /lib/modules/{rel}/build M=$PWD/netpoll-patch)",
            path.display(),
            offsets.release
        );
    }
    Ok(offsets)
}

/// The values of an offsets object's bytes.
pub fn parse(data: &[u8]) -> Result<Offsets> {
    let symbols = elf_symbols(data, "npt_")?;
    let mut values = HashMap::new();
    let mut release = None;
    for (name, bytes) in symbols {
        let name = name.trim_start_matches("npt_").to_string();
        if name == "uts_release" {
            let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
            release = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
        } else if let Ok(b) = <[u8; 8]>::try_from(bytes.as_slice()) {
            values.insert(name, u64::from_le_bytes(b));
        }
    }
    match values.get("format") {
        Some(&FORMAT) => {}
        Some(other) => bail!(
            "offsets format {other}, this netpoll-trace reads {FORMAT}: build netpoll-patch from this netpoll-trace's sources"
        ),
        None => bail!("not a {FILE_NAME} (no npt_format symbol)"),
    }
    let release =
        release.ok_or_else(|| anyhow!("not a {FILE_NAME} (no npt_uts_release symbol)"))?;
    Ok(Offsets { release, values })
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N]> {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| anyhow!("ELF truncated"))
}
fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    rd(b, off).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    rd(b, off).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize) -> Result<usize> {
    rd(b, off)
        .map(u64::from_le_bytes)
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;

/// The defined data symbols of a 64-bit little-endian ELF relocatable object whose names
/// start with `prefix`, each with its bytes (zeros for a symbol in .bss).
pub fn elf_symbols(data: &[u8], prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    if data.get(..4) != Some(b"\x7fELF") {
        bail!("not an ELF object");
    }
    if data[4] != 2 || data[5] != 1 {
        bail!("not a 64-bit little-endian ELF object");
    }
    let shoff = u64_at(data, 0x28)?;
    let shentsize = u16_at(data, 0x3a)? as usize;
    let shnum = u16_at(data, 0x3c)? as usize;
    if shentsize < 64 {
        bail!("ELF section headers of {shentsize} bytes");
    }
    // (type, offset, size, link, entsize)
    let section = |i: usize| -> Result<(u32, usize, usize, usize, usize)> {
        let h = i
            .checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or_else(|| anyhow!("ELF truncated"))?;
        Ok((
            u32_at(data, h + 4)?,
            u64_at(data, h + 0x18)?,
            u64_at(data, h + 0x20)?,
            u32_at(data, h + 0x28)? as usize,
            u64_at(data, h + 0x38)?,
        ))
    };
    let bytes = |off: usize, len: usize| {
        off.checked_add(len)
            .and_then(|end| data.get(off..end))
            .ok_or_else(|| anyhow!("ELF truncated"))
    };
    let symtab = (0..shnum)
        .map(section)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .find(|s| s.0 == SHT_SYMTAB)
        .ok_or_else(|| anyhow!("ELF object without a symbol table"))?;
    let (_, sym_off, sym_size, strtab_idx, entsize) = symtab;
    if entsize < 24 || strtab_idx >= shnum {
        bail!("malformed ELF symbol table");
    }
    let (_, str_off, str_size, _, _) = section(strtab_idx)?;
    let strtab = bytes(str_off, str_size)?;
    let syms = bytes(sym_off, sym_size)?;
    let mut out = Vec::new();
    for s in syms.chunks_exact(entsize) {
        let name_off = u32_at(s, 0)? as usize;
        let shndx = u16_at(s, 6)? as usize;
        let value = u64_at(s, 8)?;
        let size = u64_at(s, 16)?;
        let name_bytes = strtab.get(name_off..).unwrap_or(&[]);
        let end = name_bytes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(name_bytes.len());
        let name = String::from_utf8_lossy(&name_bytes[..end]);
        // Undefined (0) and special (ABS, COMMON: 0xff00 and up) sections hold no bytes here.
        if !name.starts_with(prefix)
            || shndx == 0
            || shndx >= 0xff00
            || shndx >= shnum
            || size > 4096
        {
            continue;
        }
        let (kind, sec_off, sec_size, _, _) = section(shndx)?;
        if value.checked_add(size).is_none_or(|end| end > sec_size) {
            bail!("ELF symbol {name} lies outside its section");
        }
        let content = if kind == SHT_NOBITS {
            vec![0; size]
        } else {
            bytes(sec_off + value, size)?.to_vec()
        };
        out.push((name.into_owned(), content));
    }
    Ok(out)
}

/// Builds small ELF objects for tests: one .rodata and one .bss section.
#[cfg(test)]
pub mod testing {
    /// `rodata` symbols (name, bytes) and `bss` symbols (name, size).
    pub fn object(rodata: &[(&str, Vec<u8>)], bss: &[(&str, usize)]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut ro = Vec::new();
        let mut syms = vec![0u8; 24];
        let mut sym = |name: &str, shndx: u16, value: usize, size: usize, strtab: &mut Vec<u8>| {
            let n = strtab.len() as u32;
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            syms.extend_from_slice(&n.to_le_bytes());
            syms.extend_from_slice(&[0x11, 0]);
            syms.extend_from_slice(&shndx.to_le_bytes());
            syms.extend_from_slice(&(value as u64).to_le_bytes());
            syms.extend_from_slice(&(size as u64).to_le_bytes());
        };
        for (name, b) in rodata {
            sym(name, 1, ro.len(), b.len(), &mut strtab);
            ro.extend_from_slice(b);
        }
        let mut bss_size = 0;
        for (name, size) in bss {
            sym(name, 2, bss_size, *size, &mut strtab);
            bss_size += size;
        }
        // Layout: header, .rodata, .symtab, .strtab, section headers (null, rodata, bss, symtab, strtab).
        let ro_off = 64;
        let sym_off = ro_off + ro.len();
        let str_off = sym_off + syms.len();
        let sh_off = str_off + strtab.len();
        let mut e = vec![0u8; 64];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x10] = 1;
        e[0x28..0x30].copy_from_slice(&(sh_off as u64).to_le_bytes());
        e[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        e[0x3c..0x3e].copy_from_slice(&5u16.to_le_bytes());
        e.extend_from_slice(&ro);
        e.extend_from_slice(&syms);
        e.extend_from_slice(&strtab);
        let sh = |kind: u32, off: usize, size: usize, link: u32, entsize: u64| {
            let mut h = vec![0u8; 64];
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            h[0x38..0x40].copy_from_slice(&entsize.to_le_bytes());
            h
        };
        e.extend(sh(0, 0, 0, 0, 0));
        e.extend(sh(1, ro_off, ro.len(), 0, 0));
        e.extend(sh(8, 0, bss_size, 0, 0));
        e.extend(sh(2, sym_off, syms.len(), 4, 24));
        e.extend(sh(3, str_off, strtab.len(), 0, 0));
        e
    }

    pub fn u64s(pairs: &[(&'static str, u64)]) -> Vec<(&'static str, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (*n, v.to_le_bytes().to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{object, u64s};
    use super::*;
    use crate::kernel::offsets::layout::resolve;

    /// An object as kbuild makes it for 6.12 (values from its BTF), shift 0 in .bss.
    fn obj_612(release: &str, format: u64) -> Vec<u8> {
        let mut ro = u64s(&[
            ("npt_format", format),
            ("npt_net_device_name", 264),
            ("npt_net_device_ifindex", 224),
            ("npt_net_device_netdev_ops", 8),
            ("npt_net_device_priv_flags", 0),
            ("npt_net_device_ops_ndo_poll_controller", 264),
            ("npt_net_device_ops_ndo_netpoll_setup", 272),
            ("npt_netpoll_dev_name", 8),
            ("npt_netpoll_name", 24),
            ("npt_iff_disable_netpoll", 128),
            ("npt_netpoll_dev", 0),
            ("npt_net_device_npinfo", 1000),
            ("npt_net_device_state", 176),
            ("npt_netpoll_info_txq", 16),
            ("npt_sk_buff_head_qlen", 16),
            ("npt___link_state_start", 0),
            ("npt___link_state_present", 1),
            ("npt_netpoll_remote_ip", 48),
            ("npt_netpoll_remote_port", 68),
            ("npt_netpoll_local_port", 66),
            ("npt_netpoll_ipv6", 64),
            ("npt_net_device_dismantle", 1100),
            ("other_symbol", 7),
        ]);
        let mut rel = release.as_bytes().to_vec();
        rel.push(0);
        ro.push(("npt_uts_release", rel));
        object(&ro, &[("npt_net_device_priv_flags_shift", 8)])
    }

    #[test]
    fn reads_every_value_including_bss_zeros() {
        let o = parse(&obj_612("6.12.117+deb12-amd64", 1)).unwrap();
        assert_eq!(o.release, "6.12.117+deb12-amd64");
        assert_eq!(o.member("net_device", "name"), Some((264, 0)));
        assert_eq!(o.member("net_device", "priv_flags"), Some((0, 0)));
        assert_eq!(o.member("netpoll", "dev_name"), Some((8, 0)));
        assert_eq!(o.member("netpoll", "nope"), None);
        assert_eq!(o.constant("IFF_DISABLE_NETPOLL"), Some(128));
        let (c, missing) = resolve(&o);
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(
            (
                c.dev_name,
                c.ops_netpoll_setup,
                c.np_name,
                c.iff_disable_netpoll
            ),
            (264, 272, 24, 128)
        );
        assert_eq!(
            (
                c.dev_npinfo,
                c.npinfo_txq_qlen,
                c.state_present,
                c.np_remote_port
            ),
            (1000, 32, 2, 68)
        );
    }

    #[test]
    fn a_kernel_without_poll_controller_leaves_the_ops_group_missing() {
        let ro = u64s(&[("npt_format", 1), ("npt_net_device_name", 16)]);
        let mut ro = ro;
        ro.push(("npt_uts_release", b"4.14.325\0".to_vec()));
        let (c, missing) = resolve(&parse(&object(&ro, &[])).unwrap());
        assert_eq!(c.dev_name, 16);
        assert!(
            missing.contains(&"net_device_ops.ndo_poll_controller"),
            "{missing:?}"
        );
    }

    #[test]
    fn another_release_or_format_is_refused_naming_both() {
        let dir = std::env::temp_dir().join(format!("npt-offsets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(FILE_NAME);
        std::fs::write(&p, obj_612("6.1.0-48-amd64", 1)).unwrap();
        let e = read(&p, Some("6.12.117+deb12-amd64"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("built for kernel 6.1.0-48-amd64, this kernel is 6.12.117+deb12-amd64"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(read(&p, Some("6.1.0-48-amd64")).is_ok());
        std::fs::write(&p, obj_612("6.1.0-48-amd64", 2)).unwrap();
        let e = read(&p, Some("6.1.0-48-amd64")).err().unwrap().to_string();
        assert!(e.contains("offsets format 2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(parse(b"not an elf").is_err());
        let o = obj_612("6.1", 1);
        for cut in [20, 70, o.len() - 10] {
            assert!(parse(&o[..cut]).is_err(), "cut at {cut}");
        }
        // An ELF with no npt_ symbols.
        let e = parse(&object(&u64s(&[("x", 1)]), &[]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no npt_format"), "{e}");
    }

    #[test]
    fn default_paths_sit_where_the_patch_module_does() {
        let p = default_paths("6.1.0-48-amd64", Some(Path::new("/opt/npt")));
        assert_eq!(
            p[0],
            Path::new("/lib/modules/6.1.0-48-amd64/extra/netpoll_offsets.o")
        );
        assert_eq!(
            p[1],
            Path::new("/lib/modules/6.1.0-48-amd64/updates/dkms/netpoll_offsets.o")
        );
        assert_eq!(p[3], Path::new("/opt/npt/netpoll_offsets.o"));
    }
}
