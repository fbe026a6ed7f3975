//! Facts about the running kernel and host read from procfs and sysfs, each read once
//! where it cannot change while we run.

use std::{path::PathBuf, sync::OnceLock};

/// The running kernel's release (`uname -r`), read once; None when procfs is unreadable.
pub fn release() -> Option<&'static str> {
    static RELEASE: OnceLock<Option<String>> = OnceLock::new();
    RELEASE
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .as_deref()
}

/// A file's content without surrounding whitespace.
pub fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Network interfaces that exist now, sorted, and each enslaved one's master (bond,
/// bridge, team), from /sys/class/net.
pub fn interfaces() -> (Vec<String>, Vec<(String, String)>) {
    let mut names = Vec::new();
    let mut masters = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return (names, masters);
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(master) = std::fs::read_link(entry.path().join("master"))
            && let Some(m) = master.file_name()
        {
            masters.push((name.clone(), m.to_string_lossy().into_owned()));
        }
        names.push(name);
    }
    names.sort();
    (names, masters)
}

/// The driver of a device when ethtool could not say: the bound driver in
/// /sys/class/net/DEV/device/driver, else uevent's DEVTYPE.
pub fn sysfs_driver(dev: &str) -> Option<String> {
    if dev.contains('/') || dev.contains("..") {
        return None;
    }
    let base = PathBuf::from("/sys/class/net").join(dev);
    if let Ok(target) = std::fs::read_link(base.join("device/driver")) {
        return target.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    let uevent = std::fs::read_to_string(base.join("uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVTYPE=").map(str::to_string))
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}
