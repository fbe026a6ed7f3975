//! The kernel's own netpoll log lines, read from /dev/kmsg, so a diagnosis can
//! quote exactly what the kernel said. Parsing and matching are pure; `KmsgReader`
//! does the I/O.

use std::{collections::VecDeque, fs::File, io::Read as _, os::unix::fs::OpenOptionsExt as _};

/// netpoll lines in the order the kernel logged them; each is quoted at most once.
#[derive(Debug, Default)]
pub struct KernelLog {
    lines: VecDeque<String>,
}

/// Words of netpoll's and netconsole's failure lines.
fn is_failure(text: &str) -> bool {
    ["aborting", "failed to open", "doesn't exist"].iter().any(|k| text.contains(k))
}

impl KernelLog {
    pub fn push(&mut self, text: String) {
        if text.starts_with("netpoll: ") || text.starts_with("netconsole: ") || text.contains("netconsole") {
            self.lines.push_back(text);
        }
    }

    /// Removes and returns the oldest netpoll failure line naming `dev`.
    pub fn take_failure_for(&mut self, dev: &str) -> Option<String> {
        let i = self.lines.iter().position(|l| {
            l.starts_with("netpoll: ") && is_failure(l) && l.split([' ', ',']).any(|w| w == dev)
        })?;
        self.lines.remove(i)
    }

    /// Whether netconsole said it left a target disabled (6.x dynamic netconsole:
    /// modprobe returns 0 yet nothing is logged remotely).
    pub fn netconsole_not_enabled(&self) -> Option<&str> {
        self.lines.iter().find(|l| l.contains("Not enabling netconsole")).map(String::as_str)
    }
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
        unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&reader.file), 0, libc::SEEK_END) };
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

    /// Appends every record logged since the last call to `log`.
    pub fn drain_into(&mut self, log: &mut KernelLog) {
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(text) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                        log.push(text.to_string());
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
            parse_record("3,1234,5678901,-;netpoll: netconsole: ens5 doesn't support polling, aborting\n SUBSYSTEM=net\n"),
            Some("netpoll: netconsole: ens5 doesn't support polling, aborting")
        );
        assert_eq!(parse_record("garbage"), None);
    }

    #[test]
    fn matches_failures_by_whole_device_name_in_order() {
        let mut log = KernelLog::default();
        log.push("usb 1-1: new device".into());
        log.push("netpoll: netconsole: local port 6665".into());
        log.push("netpoll: netconsole: eth10 doesn't exist, aborting".into());
        log.push("netpoll: netconsole: eth1 doesn't exist, aborting".into());
        log.push("netconsole: Not enabling netconsole for cmdline0. Netpoll setup failed".into());
        assert_eq!(log.take_failure_for("eth1").as_deref(), Some("netpoll: netconsole: eth1 doesn't exist, aborting"));
        assert_eq!(log.take_failure_for("eth1"), None);
        assert!(log.take_failure_for("eth10").is_some());
        assert!(log.netconsole_not_enabled().is_some());
    }
}
