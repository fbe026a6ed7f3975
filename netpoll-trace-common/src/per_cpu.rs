//! The key that carries the CPU (`CpuDev`, see there why), and the entries per CPU of
//! the CPU-keyed maps (userspace multiplies by the CPU count).

/// Per-CPU state without per-CPU maps (4.6; the programs load on 4.4): every value a
/// program updates belongs to the CPU it runs on, which is part of the key (hash maps)
/// or of the index (arrays of `nr_cpus` entries per slot, sized by userspace at load).
/// kprobe programs run with preemption off, so one CPU's entries have one writer, as
/// with per-CPU maps; userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuDev {
    pub cpu: u32,
    /// The device's ifindex, read when counting: a device freed and another allocated
    /// at the same address is a new key, never counted under the old name.
    pub ifindex: i32,
    /// The `struct net_device *`.
    pub dev: u64,
}

const _: () = assert!(core::mem::size_of::<CpuDev>() == 16);

/// POLL_STATS and SEND_STATS: devices.
pub const DEVICES: u32 = 256;
/// COUNTERS: (device, function, result) keys.
pub const COUNTERS: u32 = 1024;
