//! The kernel's own netpoll log lines, in the order it logged them, so a diagnosis can
//! quote exactly what the kernel said (pure; `kernel::kmsg` reads them).

use std::{collections::VecDeque, time::Duration};

/// Lines kept at most: a failure's line arrives within a grace period of its set-up, so
/// a line no failure claimed by then is noise (a flood of netconsole chatter must not
/// grow without bound in an agent that runs for months).
pub const MAX_LINES: usize = 256;
/// Lines older than this (by when they were read) are dropped.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// netpoll lines in the order the kernel logged them; each is quoted at most once.
/// Bounded by `MAX_LINES` and `MAX_AGE`; what is dropped is counted (`take_evicted`).
#[derive(Debug)]
pub struct KernelLog {
    max_lines: usize,
    max_age_ns: u64,
    /// (when read, CLOCK_MONOTONIC ns; the line)
    lines: VecDeque<(u64, String)>,
    /// netconsole's first "Not enabling" line, kept apart from the bounded lines so a
    /// long run still reports the silent failure at its end.
    not_enabled: Option<String>,
    evicted: u64,
}

/// Words of netpoll's and netconsole's failure lines.
fn is_failure(text: &str) -> bool {
    ["aborting", "failed to open", "doesn't exist"]
        .iter()
        .any(|k| text.contains(k))
}

impl Default for KernelLog {
    /// Bounded: for a live stream (watch, the agent).
    fn default() -> Self {
        Self {
            max_lines: MAX_LINES,
            max_age_ns: MAX_AGE.as_nanos() as u64,
            lines: VecDeque::new(),
            not_enabled: None,
            evicted: 0,
        }
    }
}

impl KernelLog {
    /// Unbounded: for a finite input read once (`dump`: the whole kernel log, a file).
    pub fn unbounded() -> Self {
        Self {
            max_lines: usize::MAX,
            max_age_ns: u64::MAX,
            ..Self::default()
        }
    }

    /// Keeps `text`, read at `now_ns`, when it is netpoll's or netconsole's.
    pub fn push(&mut self, text: String, now_ns: u64) {
        if text.starts_with("netpoll: ")
            || text.starts_with("netconsole: ")
            || text.contains("netconsole")
        {
            if self.not_enabled.is_none() && text.contains("Not enabling netconsole") {
                self.not_enabled = Some(text.clone());
            }
            self.lines.push_back((now_ns, text));
        }
        self.expire(now_ns);
    }

    /// Drops lines beyond `MAX_LINES` (the oldest first) and those older than `MAX_AGE`.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some((at, _)) = self.lines.front() {
            if self.lines.len() <= self.max_lines && now_ns.saturating_sub(*at) <= self.max_age_ns {
                break;
            }
            self.lines.pop_front();
            self.evicted += 1;
        }
    }

    /// Lines dropped by `expire` since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lines.len()
    }

    /// Removes and returns the oldest netpoll failure line naming `dev`.
    pub fn take_failure_for(&mut self, dev: &str) -> Option<String> {
        let i = self.lines.iter().position(|(_, l)| {
            // 7.3+: netconsole checks the device itself and logs as "netconsole: ".
            (l.starts_with("netpoll: ") || l.starts_with("netconsole: "))
                && is_failure(l)
                && l.split([' ', ',']).any(|w| w == dev)
        })?;
        self.lines.remove(i).map(|(_, l)| l)
    }

    /// Whether netconsole said it left a target disabled (6.x dynamic netconsole:
    /// modprobe returns 0 yet nothing is logged remotely).
    pub fn netconsole_not_enabled(&self) -> Option<&str> {
        self.not_enabled.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 7.3: netconsole's own set-up logs its refusals with its own prefix.
    #[test]
    fn netconsoles_own_refusals_are_quoted_too() {
        let mut log = KernelLog::default();
        log.push("netconsole: netconsole: local port 6665".into(), 0);
        log.push(
            "netconsole: netconsole: eth7 doesn't exist, aborting".into(),
            0,
        );
        log.push(
            "netconsole: netconsole: eth1 is a slave device, aborting".into(),
            0,
        );
        log.push(
            "netconsole: Not enabling netconsole for cmdline0. Netpoll setup failed".into(),
            0,
        );
        assert_eq!(
            log.take_failure_for("eth1").as_deref(),
            Some("netconsole: netconsole: eth1 is a slave device, aborting")
        );
        assert_eq!(
            log.take_failure_for("eth7").as_deref(),
            Some("netconsole: netconsole: eth7 doesn't exist, aborting")
        );
        assert_eq!(log.take_failure_for("cmdline0"), None);
    }

    #[test]
    fn matches_failures_by_whole_device_name_in_order() {
        let mut log = KernelLog::default();
        log.push("usb 1-1: new device".into(), 0);
        log.push("netpoll: netconsole: local port 6665".into(), 0);
        log.push(
            "netpoll: netconsole: eth10 doesn't exist, aborting".into(),
            0,
        );
        log.push(
            "netpoll: netconsole: eth1 doesn't exist, aborting".into(),
            0,
        );
        log.push(
            "netconsole: Not enabling netconsole for cmdline0. Netpoll setup failed".into(),
            0,
        );
        assert_eq!(
            log.take_failure_for("eth1").as_deref(),
            Some("netpoll: netconsole: eth1 doesn't exist, aborting")
        );
        assert_eq!(log.take_failure_for("eth1"), None);
        assert!(log.take_failure_for("eth10").is_some());
        assert!(log.netconsole_not_enabled().is_some());
    }

    #[test]
    fn a_flood_of_unclaimed_lines_is_bounded_and_counted() {
        let mut log = KernelLog::default();
        log.push(
            "netconsole: Not enabling netconsole for cmdline0. Netpoll setup failed".into(),
            0,
        );
        for i in 0..10_000 {
            log.push(format!("netconsole: network logging started {i}"), 1);
        }
        assert_eq!(log.len(), MAX_LINES);
        assert_eq!(log.take_evicted(), 10_001 - MAX_LINES as u64);
        assert_eq!(log.take_evicted(), 0);
        // The newest stay; the silent-failure line is still known.
        log.push(
            "netpoll: netconsole: eth3 doesn't exist, aborting".into(),
            2,
        );
        assert!(log.take_failure_for("eth3").is_some());
        assert!(log.netconsole_not_enabled().is_some());
        // dump reads a finite log once: it keeps everything.
        let mut whole = KernelLog::unbounded();
        for i in 0..1_000 {
            whole.push(format!("netconsole: line {i}"), i);
        }
        whole.expire(u64::MAX);
        assert_eq!((whole.len(), whole.take_evicted()), (1_000, 0));
    }

    #[test]
    fn lines_older_than_the_age_limit_are_dropped() {
        let mut log = KernelLog::default();
        let age = MAX_AGE.as_nanos() as u64;
        log.push(
            "netpoll: netconsole: eth4 doesn't exist, aborting".into(),
            1_000,
        );
        log.push(
            "netpoll: netconsole: eth5 doesn't exist, aborting".into(),
            1_000 + age,
        );
        log.expire(1_000 + age);
        assert_eq!((log.len(), log.take_evicted()), (2, 0));
        log.expire(1_001 + age);
        assert_eq!((log.len(), log.take_evicted()), (1, 1));
        assert_eq!(log.take_failure_for("eth4"), None);
        assert!(log.take_failure_for("eth5").is_some());
    }
}
