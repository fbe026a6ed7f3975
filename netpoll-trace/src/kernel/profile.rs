//! Start-up profile and memory hygiene: where the time to "ready" goes, and giving
//! back what start-up's parses freed.

use std::{sync::OnceLock, time::Instant};

/// When start-up began (the first `stage` call).
static START: OnceLock<Instant> = OnceLock::new();

/// Start-up profile, at debug level (`RUST_LOG=netpoll_trace=debug`): milliseconds since
/// start-up began at each step. The lab benchmark reads these to say where the time to
/// "ready" goes under emulation, where no profiler runs.
pub fn stage(what: &str) {
    let start = *START.get_or_init(Instant::now);
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    log::debug!(
        "start-up: {what} at {:.1} ms{}",
        start.elapsed().as_secs_f64() * 1e3,
        resident().map_or_else(String::new, |(rss, hwm)| format!(
            " (RSS {rss} KiB, peak {hwm} KiB)"
        ))
    );
}

/// VmRSS and VmHWM (KiB) from /proc/self/status: where in start-up the peak is reached.
fn resident() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// Keeps large allocations out of the heap for good: glibc serves blocks over the mmap
/// threshold (128 KiB) with their own mappings, returned to the kernel the moment they are
/// freed, but by default raises that threshold to the size of each such block freed. After
/// start-up frees the kernel's BTF (5-6 MiB) the fentry stand-in, the kallsyms table and
/// their growth by doubling would then come from the heap, with the copies of every
/// reallocation resident at once: measured, a first run's peak (VmHWM) rose from 14 to
/// 17.7 MiB on 6.12. A fixed threshold turns that adjustment off (mallopt(3)).
pub fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Hands memory freed after start-up back to the kernel. Loading parses the kernel's BTF
/// (aya twice for fentry, we once for offsets: tens of MiB in small blocks); glibc keeps
/// freed blocks in its arenas, so without this they would stay in a long-running agent's
/// RSS for good.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes the allocator has handed out and not had back: small blocks in its arenas plus
/// large mmapped ones (mallinfo2's uordblks + hblkhd). Beside VmRSS it tells heap from
/// the binary's and the kernel's (perf buffer) pages. None off glibc.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's own counters.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// At debug level: the allocator's in-use bytes now (the lab benchmark reads this line).
pub fn report_memory(when: &str) {
    if let Some(bytes) = heap_in_use() {
        log::debug!(
            "memory: heap in use {} KiB (mallinfo2) {when}",
            bytes / 1024
        );
    }
}
