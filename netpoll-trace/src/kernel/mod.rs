//! The kernel-facing layer: everything that touches the BPF syscall, procfs, sysfs,
//! tracefs or the module syscalls. Struct offsets (BTF and the other sources), the
//! eBPF object and its loading, one attacher per method, the flight recorder's pins,
//! the patch module, privileges. It knows nothing of diagnosis, output or the command
//! line: it imports no other layer of this crate (tests/layers.rs enforces it).

pub mod attach;
pub mod btf;
pub mod clock;
pub mod command;
pub mod console_targets;
pub mod device_stats;
pub mod elf;
pub mod embedded;
pub mod ethtool;
pub mod features;
pub mod host;
pub mod kallsyms;
pub mod kmsg;
pub mod link_events;
pub mod module_btf;
pub mod netconsole;
pub mod object;
pub mod offsets;
pub mod patch_module;
pub mod privileges;
pub mod profile;
pub mod recorder;
pub mod targets;
pub mod tracefs;
pub mod trusted_file;
