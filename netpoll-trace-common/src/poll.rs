//! `netpoll_poll_dev`: per-device statistics, slow calls, and the calls in progress
//! per CPU; the latency histogram's buckets, which the send path shares.

use crate::{IFNAMSIZ, nonzero, opaque};

/// Buckets of the poll latency histogram: bucket `i` counts calls that took
/// [2^i, 2^(i+1)) ns (bucket 0 also takes 0 and 1 ns; the last takes the rest).
pub const POLL_BUCKETS: usize = 32;

// The programs mask bucket indices with POLL_BUCKETS - 1 (old verifiers track a mask).
const _: () = assert!(POLL_BUCKETS.is_power_of_two());

/// Per-device `netpoll_poll_dev` statistics, one per CPU (keyed by CPU: no
/// atomics on the hot path); userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollStats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub hist: [u64; POLL_BUCKETS],
    pub ifindex: i32,
    /// `event_flags` bits for `name` and `ifindex`.
    pub flags: u32,
    pub name: [u8; IFNAMSIZ],
}

const _: () = assert!(core::mem::size_of::<PollStats>() == 304);

/// A `netpoll_poll_dev` call slower than `Config::slow_poll_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollEvent {
    pub ts_ns: u64,
    pub duration_ns: u64,
    pub dev: u64,
    pub ifindex: i32,
    pub flags: u32,
    pub name: [u8; IFNAMSIZ],
}

const _: () = assert!(core::mem::size_of::<PollEvent>() == 48);

/// Nested `netpoll_poll_dev` calls tracked per CPU: since 4.19 a bond's (or team's)
/// poll controller polls each slave from inside its own poll, and a vlan over a bond
/// adds a level.
pub const POLL_DEPTH: u32 = 4;

/// One `netpoll_poll_dev` call in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollFrame {
    pub ts_ns: u64,
    pub dev: u64,
}

/// The `netpoll_poll_dev` calls in progress on a CPU: they run with interrupts off, so
/// a CPU's calls nest strictly and a frame per depth pairs each exit with its entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PollCpu {
    /// Calls in progress (`frames[0..depth]`; deeper ones are counted, not timed).
    pub depth: u32,
    pub _pad: u32,
    pub frames: [PollFrame; POLL_DEPTH as usize],
}

const _: () = assert!(core::mem::size_of::<PollCpu>() == 8 + 16 * POLL_DEPTH as usize);

/// log2 bucket of a duration, shared so both sides agree on the bucket edges.
///
/// A binary search without a branch: no loop and no ctlz (older verifiers and the BPF
/// backend handle both poorly), and no compare either. A compare is a branch in BPF whose
/// both sides the verifier walks, and since the bucket becomes an index it keeps every
/// side apart: six compares made 64 paths through the rest of the program (6.12:
/// ~2,600 of netpoll_poll_dev's return's 4,655 verified instructions).
#[inline(always)]
pub fn poll_bucket(ns: u64) -> usize {
    let mut v = ns;
    let mut b = 0u64;
    macro_rules! step {
        ($($k:literal)*) => {$(
            // $k if anything is left above the low $k bits, else 0.
            let s = nonzero(v >> $k) * $k;
            v >>= s;
            b += s;
        )*};
    }
    step!(32 16 8 4 2);
    // v < 4 now: its upper bit is the last step.
    b += v >> 1;
    // Clamped to the last bucket: `over` is 1 exactly when b is past it.
    let last = POLL_BUCKETS as u64 - 1;
    let over = opaque(last.wrapping_sub(b)) >> 63;
    b.wrapping_sub(over * b.wrapping_sub(last)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_buckets_are_log2() {
        assert_eq!(poll_bucket(0), 0);
        assert_eq!(poll_bucket(1), 0);
        assert_eq!(poll_bucket(2), 1);
        assert_eq!(poll_bucket(3), 1);
        assert_eq!(poll_bucket(1023), 9);
        assert_eq!(poll_bucket(1024), 10);
        assert_eq!(poll_bucket(u64::MAX), POLL_BUCKETS - 1);
        for i in 0..31 {
            assert_eq!(poll_bucket(1 << i), i);
            assert_eq!(poll_bucket((1 << (i + 1)) - 1), i);
        }
        for i in 31..64 {
            assert_eq!(poll_bucket(1 << i), POLL_BUCKETS - 1);
        }
        // Against the plain definition, over a spread of values (xorshift).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = x >> (x % 64);
            let want = (63 - v.max(1).leading_zeros() as usize).min(POLL_BUCKETS - 1);
            assert_eq!(poll_bucket(v), want, "{v}");
        }
    }
}
