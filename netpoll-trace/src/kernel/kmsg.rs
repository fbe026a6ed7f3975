//! /dev/kmsg: the kernel's log records, read as they come (or from the oldest one kept),
//! so a diagnosis can quote what the kernel said; and a line written to it (the agent's
//! marker, to see a re-enabled target send). Which lines matter is the model's
//! business (`model::kernel_log`); this only reads and splits records.

use std::{fs::File, io::Read as _, os::unix::fs::OpenOptionsExt as _};

/// The console log levels (/proc/sys/kernel/printk: console, default, minimum, boot
/// default), as the kernel writes them; empty when unreadable.
pub fn printk_levels() -> String {
    std::fs::read_to_string("/proc/sys/kernel/printk").unwrap_or_default()
}

/// Writes one line to the kernel log at `level` (root's file, no capability needed).
pub fn write(level: u8, line: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .context("opening /dev/kmsg")?;
    f.write_all(format!("<{level}>{line}\n").as_bytes())
        .context("writing to /dev/kmsg")
}

/// One /dev/kmsg record ("prio,seq,ts_us,flags;text"): its text, or None for a
/// continuation line or garbage.
pub fn parse_record(record: &str) -> Option<&str> {
    let (head, text) = record.split_once(';')?;
    if head.split(',').count() < 3 {
        return None;
    }
    Some(text.lines().next().unwrap_or("").trim_end())
}

/// Reads records logged after `open`.
pub struct KmsgReader {
    file: File,
}

impl KmsgReader {
    /// Opens /dev/kmsg positioned at its end; None (with the reason) when unreadable.
    pub fn open() -> Result<Self, String> {
        let reader = Self::open_from_start()?;
        // SAFETY: lseek on an fd we own; SEEK_END on /dev/kmsg skips old records.
        unsafe {
            libc::lseek(
                std::os::fd::AsRawFd::as_raw_fd(&reader.file),
                0,
                libc::SEEK_END,
            )
        };
        Ok(reader)
    }

    /// Opens /dev/kmsg at its oldest retained record (for post-mortem dumps).
    pub fn open_from_start() -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|e| format!("/dev/kmsg: {e}"))?;
        Ok(Self { file })
    }

    /// Hands every record's text logged since the last call to `each`, oldest first.
    pub fn drain(&mut self, mut each: impl FnMut(String)) {
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(text) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                        each(text.to_string());
                    }
                }
                // EPIPE: records were overwritten before we read them; go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kmsg_records() {
        assert_eq!(
            parse_record(
                "3,1234,5678901,-;netpoll: netconsole: ens5 doesn't support polling, aborting\n SUBSYSTEM=net\n"
            ),
            Some("netpoll: netconsole: ens5 doesn't support polling, aborting")
        );
        assert_eq!(parse_record("garbage"), None);
    }
}
