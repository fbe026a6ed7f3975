//! Least privilege for the long-running agent: once its programs are attached and
//! its fds open, it keeps only the capabilities it still uses.

use anyhow::{Result, bail};

pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_SYS_MODULE: u32 = 16;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_BPF: u32 = 39;

pub fn name(cap: u32) -> &'static str {
    match cap {
        CAP_DAC_OVERRIDE => "CAP_DAC_OVERRIDE",
        CAP_SYS_MODULE => "CAP_SYS_MODULE",
        CAP_SYSLOG => "CAP_SYSLOG",
        CAP_BPF => "CAP_BPF",
        _ => "CAP_?",
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops every capability but `keep` from the bounding set (so children such as a
/// retry command cannot regain them) and from the effective and permitted sets.
pub fn keep_only(keep: &[u32]) -> Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if !keep.contains(&cap) {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                // EINVAL: a capability this kernel does not know.
                if e.raw_os_error() != Some(libc::EINVAL) {
                    bail!("dropping capability {cap} from the bounding set: {e}");
                }
            }
        }
    }
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let (i, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[i].effective |= bit;
        data[i].permitted |= bit;
    }
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    // SAFETY: header and two data words, as capset(2) version 3 requires.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        bail!("capset: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
