//! Least privilege for the long-running agent: once its programs are attached and
//! its fds open, it keeps only the capabilities it still uses, and a command it runs
//! gets only what that command needs.

use anyhow::{Result, anyhow, bail};

pub const CAP_SETPCAP: u32 = 8;
pub const CAP_SYS_MODULE: u32 = 16;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_BPF: u32 = 39;

pub fn name(cap: u32) -> &'static str {
    match cap {
        CAP_SETPCAP => "CAP_SETPCAP",
        CAP_SYS_MODULE => "CAP_SYS_MODULE",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_SYSLOG => "CAP_SYSLOG",
        CAP_BPF => "CAP_BPF",
        _ => "CAP_?",
    }
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Whether this kernel has CAP_BPF (5.8+); before it, bpf() on a map needs CAP_SYS_ADMIN.
pub fn has_cap_bpf() -> bool {
    last_cap() >= CAP_BPF
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

/// Effective and permitted sets holding exactly the given capabilities (inheritable
/// empty), ready for capset(2); built before a fork so the child only makes system calls.
#[derive(Clone, Copy)]
pub struct CapSets([CapData; 2]);

impl CapSets {
    pub fn only(keep: &[u32]) -> Self {
        let mut data = [CapData::default(); 2];
        for &cap in keep {
            let (i, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
            data[i].effective |= bit;
            data[i].permitted |= bit;
        }
        Self(data)
    }

    /// This thread's sets.
    #[cfg(test)]
    fn current() -> std::io::Result<Self> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: header and room for two data words, as capget(2) version 3 requires.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                data.as_mut_ptr(),
            )
        };
        if rc == 0 {
            Ok(Self(data))
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// These sets without `cap` in effective, permitted or inheritable.
    #[cfg(test)]
    fn without(mut self, cap: u32) -> Self {
        let (i, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        self.0[i].effective &= !bit;
        self.0[i].permitted &= !bit;
        self.0[i].inheritable &= !bit;
        self
    }

    /// Sets this thread's sets (async-signal-safe: one system call).
    fn apply(&self) -> std::io::Result<()> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: header and two data words, as capset(2) version 3 requires.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                self.0.as_ptr(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Empties the calling thread's effective and permitted sets (capabilities are per
/// thread): for a thread that talks to the network and needs none.
pub fn drop_all_in_this_thread() -> std::io::Result<()> {
    CapSets::only(&[]).apply()
}

/// Drops every capability but `keep` from the bounding set (so nothing this process
/// executes can regain them) and from the effective and permitted sets. Any failure is
/// an error: an agent that meant to drop privileges must not carry on with all of them.
pub fn keep_only(keep: &[u32]) -> Result<()> {
    for cap in 0..=last_cap() {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } == 0 {
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // A capability this kernel does not know.
            Some(libc::EINVAL) => {}
            Some(libc::EPERM) => bail!(
                "cannot drop capabilities from the bounding set: that needs CAP_SETPCAP (add it to the unit's CapabilityBoundingSet); refusing to run with more than the agent needs"
            ),
            _ => bail!("dropping capability {cap} from the bounding set: {e}"),
        }
    }
    CapSets::only(keep)
        .apply()
        .map_err(|e| anyhow!("capset (keeping only the needed capabilities): {e}"))
}

/// Capabilities are per thread: a thread that existed before the drop keeps what it
/// had. Checks that every thread of this process holds at most `keep` (effective,
/// permitted and bounding), naming the first one that does not.
pub fn all_threads_within(keep: &[u32]) -> Result<()> {
    let allowed = keep.iter().fold(0u64, |m, &c| m | 1u64 << c);
    for task in
        std::fs::read_dir("/proc/self/task").map_err(|e| anyhow!("reading /proc/self/task: {e}"))?
    {
        let task = task.map_err(|e| anyhow!("reading /proc/self/task: {e}"))?;
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        }; // thread ended
        for (field, held) in cap_fields(&status) {
            if held & !allowed != 0 {
                bail!(
                    "thread {} still holds capabilities {:#x} ({field}) after the drop: it was started before it",
                    task.file_name().to_string_lossy(),
                    held & !allowed
                );
            }
        }
    }
    Ok(())
}

/// The CapEff, CapPrm and CapBnd masks of a /proc status file.
fn cap_fields(status: &str) -> Vec<(&str, u64)> {
    status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "CapEff" | "CapPrm" | "CapBnd")
                .then(|| u64::from_str_radix(v.trim(), 16).ok().map(|m| (k, m)))?
        })
        .collect()
}

/// For a child between fork and exec (`Command::pre_exec`): sets no_new_privs, so the
/// exec cannot raise its permitted set above what it has (a root exec would otherwise
/// regain the whole bounding set), then leaves it exactly `sets`.
pub fn restrict_child(sets: &CapSets) -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    sets.apply()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_exactly_the_kept_capabilities() {
        let s = CapSets::only(&[CAP_SYS_MODULE, CAP_SYSLOG]);
        assert_eq!(s.0[0].effective, 1 << 16);
        assert_eq!(s.0[1].effective, 1 << (34 - 32));
        assert_eq!(
            (s.0[0].permitted, s.0[1].permitted),
            (s.0[0].effective, s.0[1].effective)
        );
        assert_eq!(s.0[0].inheritable | s.0[1].inheritable, 0);
    }

    #[test]
    fn cap_masks_are_read_from_a_status_file() {
        let f = cap_fields(
            "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000400010000\nCapEff:\t0000000000010000\nCapBnd:\t000001ffffffffff\n",
        );
        assert_eq!(
            f,
            [
                ("CapPrm", 0x400010000),
                ("CapEff", 0x10000),
                ("CapBnd", 0x1ffffffffff)
            ]
        );
    }

    /// Without CAP_SETPCAP the bounding set cannot shrink: keep_only must fail, naming
    /// it, rather than leave every capability in place (run in a child, which may
    /// then lose capabilities for good).
    #[test]
    fn keep_only_fails_without_setpcap() {
        let all_but_setpcap = CapSets::current().unwrap().without(CAP_SETPCAP);
        // SAFETY: the child makes system calls and exits (glibc's malloc is fork-safe).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // Lose CAP_SETPCAP, as under a unit that lacks it (a non-root run has no
            // capabilities to lose, and so lacks it already).
            if all_but_setpcap.apply().is_err() {
                // SAFETY: leave the forked test process without running destructors.
                unsafe { libc::_exit(3) };
            }
            let code = match keep_only(&[CAP_SYS_MODULE]) {
                Err(e) if e.to_string().contains("CAP_SETPCAP") => 0,
                Err(_) => 1,
                Ok(()) => 2,
            };
            // SAFETY: leave the forked test process without running destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1 = another error, 2 = claimed success, 3 = capset failed"
        );
    }
}
