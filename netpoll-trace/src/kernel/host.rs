//! Facts about the running kernel and host read from procfs and sysfs, each read once
//! where it cannot change while we run.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// `kernel.panic`: seconds before a panic reboots (0: never, negative: at once); None
/// when unreadable.
pub fn panic_timeout() -> Option<i64> {
    std::fs::read_to_string("/proc/sys/kernel/panic")
        .ok()?
        .trim()
        .parse()
        .ok()
}

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

/// The cap on a socket receive buffer set without privilege (net.core.rmem_max).
pub fn rmem_max() -> Option<usize> {
    read_trim("/proc/sys/net/core/rmem_max").and_then(|s| s.parse().ok())
}

/// Network interfaces that exist now, sorted, and each enslaved one's master (bond,
/// bridge, team), from /sys/class/net.
pub fn interfaces() -> (Vec<String>, Vec<(String, String)>) {
    let mut names = Vec::new();
    let mut masters = Vec::new();
    let Ok(dir) = std::fs::read_dir(SYSFS_NET) else {
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

/// Where the network interfaces are, one directory each.
const SYSFS_NET: &str = "/sys/class/net";

/// Whether `dev` can be an interface's name, by the kernel's own rule
/// (`dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white space. Only
/// such a name is looked up under /sys/class/net (nothing else can name a path there).
pub fn is_interface_name(dev: &str) -> bool {
    !dev.is_empty()
        && dev.len() < 16
        && dev != "."
        && dev != ".."
        && !dev.contains(|c: char| c == '/' || c == ':' || c.is_ascii_whitespace())
}

/// Whether the interface `dev` exists, and its ifindex when readable.
pub fn device_present(dev: &str) -> Option<Option<i32>> {
    if !is_interface_name(dev) {
        return None;
    }
    let dir = Path::new(SYSFS_NET).join(dev);
    if !dir.exists() {
        return None;
    }
    Some(
        std::fs::read_to_string(dir.join("ifindex"))
            .ok()
            .and_then(|i| i.trim().parse().ok()),
    )
}

/// The driver of a device when ethtool could not say: the bound driver in
/// /sys/class/net/DEV/device/driver, else uevent's DEVTYPE.
pub fn sysfs_driver(dev: &str) -> Option<String> {
    if !is_interface_name(dev) {
        return None;
    }
    let base = PathBuf::from(SYSFS_NET).join(dev);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_interface_names_are_looked_up_in_sysfs() {
        assert_eq!(device_present("lo").map(|i| i.is_some()), Some(true));
        for bad in ["", ".", "..", "../lo", "lo:0", "a b", "npt-no-such-dev0"] {
            assert_eq!(device_present(bad), None, "{bad}");
        }
        assert!(is_interface_name("eth1.100") && is_interface_name("a..b"));
        assert!(!is_interface_name("sixteen-bytes-xx"));
        // The same rule for the driver: a path is never a name.
        assert_eq!(sysfs_driver("../lo"), None);
    }
}
