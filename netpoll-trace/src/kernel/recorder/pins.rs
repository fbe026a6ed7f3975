//! Pinned maps on kernels without BPF_OBJ_GET_INFO_BY_FD (4.13).
//!
//! aya identifies a pinned map through that syscall command, both when the loader
//! reuses a pin and when a map is opened from one; before 4.13 both fail
//! ("bpf_obj_get_info_by_fd failed"). There a pinned map is identified by its fd's
//! `/proc/self/fdinfo` (`map_type`, `key_size`, `value_size`, `max_entries`, from 4.5;
//! `map_flags` from 4.6) and compared with the map the object itself creates; aya's
//! map is then made to be the pinned one by putting the pin's file on aya's fd
//! number (`dup2`), before any program is loaded, so the programs refer to the pin.
//!
//! What is then not checked, where aya's own check would: the map's BTF and
//! `map_extra` (neither exists before 4.13), on 4.5 `map_flags` (not in fdinfo), and on
//! 4.4, whose map fds have no fdinfo of their own, the shape itself: there a pin is
//! only checked to be a BPF map (its fd's link reads `anon_inode:bpf-map`), and the
//! recorder's header (schema, ring size as written) is all that vouches for the rest.
//! The map's identity beyond its shape is checked on no kernel (a map of the same shape
//! pinned by someone else under our name passes, as with aya).

use std::{
    ffi::CString,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
    sync::OnceLock,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::Map;

/// BPF_OBJ_GET and BPF_OBJ_GET_INFO_BY_FD (include/uapi/linux/bpf.h).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// A map's shape from its fdinfo (numbers as the kernel prints them; `map_flags` is
/// None where the kernel does not print it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: Option<u32>,
}

/// Parses a map fd's fdinfo text; None unless it names a map's type and sizes.
pub fn parse_fdinfo(text: &str) -> Option<Shape> {
    let field = |name: &str| -> Option<u32> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| {
                let v = v.trim();
                match v.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => v.parse().ok(),
                }
            })
    };
    Some(Shape {
        map_type: field("map_type")?,
        key_size: field("key_size")?,
        value_size: field("value_size")?,
        max_entries: field("max_entries")?,
        map_flags: field("map_flags"),
    })
}

/// The shape of the map behind `fd`; None for a map whose kernel prints no map fdinfo
/// (4.4: then only that it is a map is known).
pub fn shape(fd: BorrowedFd<'_>) -> Result<Option<Shape>> {
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    if let Some(shape) = parse_fdinfo(&text) {
        return Ok(Some(shape));
    }
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match std::fs::read_link(&link) {
        Ok(target) if target.as_os_str() == "anon_inode:bpf-map" => Ok(None),
        Ok(target) => bail!("{link} is {}, not a BPF map", target.display()),
        Err(e) => bail!("{path} does not describe a BPF map, and {link}: {e}"),
    }
}

/// Opens a pin (BPF_OBJ_GET, 4.4).
pub fn obj_get(path: &Path) -> Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("{} contains a NUL byte", path.display()))?;
    // union bpf_attr for BPF_OBJ_GET: u64 pathname, u32 bpf_fd, u32 file_flags.
    let mut attr = [0u64; 2];
    attr[0] = c.as_ptr() as u64;
    // SAFETY: a valid attr of the size passed, pointing at a live C string.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            attr.as_mut_ptr(),
            size_of_val(&attr) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening pin {}", path.display()));
    }
    // SAFETY: the kernel returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether this kernel answers BPF_OBJ_GET_INFO_BY_FD (4.13+), asked once with an
/// invalid fd: a kernel that knows the command says EBADF, an older one EINVAL.
pub fn info_by_fd_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // union bpf_attr for BPF_OBJ_GET_INFO_BY_FD: u32 bpf_fd, u32 info_len, u64 info.
        let mut attr = [0u64; 2];
        attr[0] = u64::from(u32::MAX); // bpf_fd -1, info_len 0
        // SAFETY: a valid attr of the size passed; the kernel writes nothing for a bad fd.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET_INFO_BY_FD,
                attr.as_mut_ptr(),
                size_of_val(&attr) as libc::c_uint,
            )
        };
        !(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL))
    })
}

/// The fd of one of the map kinds the recorder pins.
pub fn map_fd(map: &Map) -> Option<BorrowedFd<'_>> {
    match map {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerfEventArray(d) => Some(d.fd().as_fd()),
        _ => None,
    }
}

/// Makes `map` (created by aya, not yet used by any program) the map pinned at `pin`:
/// checks that the pin has the shape of `map` (`max_entries` too unless
/// `any_max_entries`), then puts the pin's file on `map`'s fd number.
pub fn adopt(map: &Map, pin: &Path, any_max_entries: bool) -> Result<()> {
    let fd = map_fd(map).ok_or_else(|| anyhow!("{}: not a map kind we pin", pin.display()))?;
    let pinned = obj_get(pin)?;
    // 4.4 prints no map fdinfo: both are None, and only "a map" was checked.
    if let (Some(mut want), Some(got)) = (shape(fd)?, shape(pinned.as_fd())?) {
        if any_max_entries {
            want.max_entries = got.max_entries;
        }
        // A kernel that prints no map_flags prints none for either.
        if want != got {
            bail!(
                "{} is not the map this netpoll-trace creates: {got:?}, expected {want:?}",
                pin.display()
            );
        }
    }
    // SAFETY: both fds are open; dup2 atomically replaces the file behind aya's fd
    // number (whose old map the kernel then frees), which aya keeps owning.
    if unsafe { libc::dup2(pinned.as_raw_fd(), fd.as_raw_fd()) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("adopting pin {}", pin.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_of_old_and_new_kernels_parses() {
        // 4.5: no map_flags, no memlock (4.4 prints no map fdinfo at all).
        let old = "pos:\t0\nflags:\t02000002\nmnt_id:\t11\nmap_type:\t1\nkey_size:\t8\nvalue_size:\t512\nmax_entries:\t1024\n";
        assert_eq!(
            parse_fdinfo(old),
            Some(Shape {
                map_type: 1,
                key_size: 8,
                value_size: 512,
                max_entries: 1024,
                map_flags: None
            })
        );
        // 6.x: flags in hex, and more lines.
        let new = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t5\nkey_size:\t8\nvalue_size:\t304\nmax_entries:\t256\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t93696\nmap_id:\t7\nfrozen:\t0\n";
        let s = parse_fdinfo(new).expect("parses");
        assert_eq!((s.map_type, s.value_size, s.map_flags), (5, 304, Some(0)));
        // Not a map (a perf event's fdinfo, say).
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t11\n"), None);
        // A prefix of another field's name is not the field.
        assert_eq!(
            parse_fdinfo("map_type_x:\t1\nkey_size:\t8\nvalue_size:\t8\nmax_entries:\t1\n"),
            None
        );
    }
}
