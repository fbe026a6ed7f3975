//! What the running host offers the tracer, each read from procfs or sysfs when asked
//! (for `check`, whose verdict the model gives).

use std::path::Path;

use super::{
    btf::{self, Btf},
    host, offsets,
};

/// The kernel's own BTF: None when absent, else whether it is readable and parses.
pub fn vmlinux_btf() -> Option<Result<(), String>> {
    Path::new(offsets::SYSFS_VMLINUX).exists().then(|| {
        btf::bytes::read(Path::new(offsets::SYSFS_VMLINUX))
            .map_err(|e| e.to_string())
            .and_then(|d| Btf::from_bytes(d).map(|_| ()).map_err(|e| format!("{e:#}")))
    })
}

/// Whether a bpffs is mounted anywhere.
pub fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"))
}

/// Whether kprobes can be created through the perf PMU (4.17 and later).
pub fn kprobe_pmu() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

/// Whether tracefs's kprobe_events is there (mounted at either place).
pub fn kprobe_events() -> bool {
    Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
}

/// Whether the kernel has loadable modules, and whether loading them was disabled.
pub fn modules() -> (bool, bool) {
    (
        Path::new("/proc/modules").exists(),
        host::read_trim("/proc/sys/kernel/modules_disabled").as_deref() == Some("1"),
    )
}

/// The lockdown mode line (`none [integrity] confidentiality`), when the LSM is there.
pub fn lockdown() -> Option<String> {
    host::read_trim("/sys/kernel/security/lockdown")
}
