//! The kernel's own netpoll log lines, in the order it logged them, so a diagnosis can
//! quote exactly what the kernel said (pure; `kernel::kmsg` reads them).

use std::collections::VecDeque;

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
    /// Keeps `text` when it is netpoll's or netconsole's.
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

#[cfg(test)]
mod tests {
    use super::*;

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
