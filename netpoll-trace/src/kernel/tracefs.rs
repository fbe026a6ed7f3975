//! kprobes through tracefs `kprobe_events`, the path before the kprobe PMU (4.17).
//!
//! aya 0.14 (`programs/probe.rs`) chooses it by the kernel version it reads (Ubuntu's
//! /proc/version_signature, Debian's `uname -v`, else `uname -r`), not by the PMU's
//! presence: below 4.17 it appends `p:kprobes/EVENT FUNCTION` (`r:` for a return probe)
//! to `kprobe_events` under the first non-empty one of /sys/kernel/tracing and
//! /sys/kernel/debug/tracing, opens the event's tracepoint with perf_event_open and
//! attaches the program to it. EVENT is `aya_<pid>_<p|r>_<function>_<offset:#x>_<n>`
//! (`.`, `/`, `-` in the function replaced by `_`; n counts per process). aya tries to
//! remove the event (`-:EVENT`) when the link is detached or dropped, but does it while
//! its perf event is still open, which the kernel refuses (EBUSY, ignored): every event
//! would outlive us (seen in the lab). So this module mounts tracefs when aya would
//! find none, removes our own events once the programs are gone (`OwnEvents`), and the
//! events that earlier runs of ours left when they were killed.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow};
use aya::util::KernelVersion;

/// Where aya looks for tracefs, in its order.
pub const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The attach path kprobes take on this kernel, as reported (ready line, `check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KprobeVia {
    /// perf_event_open on the kprobe PMU (4.17 and later).
    Pmu,
    /// tracefs kprobe_events (before 4.17).
    Tracefs,
}

impl KprobeVia {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pmu => "kprobe PMU",
            Self::Tracefs => "tracefs kprobe_events",
        }
    }
}

/// What aya will do on this kernel: the same version test it makes (an unreadable
/// version counts as old, as in aya).
pub fn kprobe_via() -> KprobeVia {
    match KernelVersion::current() {
        Ok(v) if v >= KernelVersion::new(4, 17, 0) => KprobeVia::Pmu,
        _ => KprobeVia::Tracefs,
    }
}

/// The tracefs directory aya would use: the first that exists and is not empty.
pub fn find() -> Option<PathBuf> {
    TRACEFS_DIRS
        .iter()
        .map(Path::new)
        .find(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()))
        .map(Path::to_path_buf)
}

/// Makes tracefs reachable for aya: mounts tracefs on /sys/kernel/tracing (or, where
/// that directory does not exist, before 4.1, debugfs on /sys/kernel/debug, which has
/// tracing inside). Returns what it mounted, to be said; None when it was there.
pub fn ensure_mounted() -> Result<Option<String>> {
    if find().is_some() {
        return Ok(None);
    }
    let (fstype, target) = if Path::new(TRACEFS_DIRS[0]).is_dir() {
        ("tracefs", TRACEFS_DIRS[0])
    } else {
        ("debugfs", "/sys/kernel/debug")
    };
    mount(fstype, target)?;
    if find().is_none() {
        return Err(anyhow!(
            "mounted {fstype} on {target} but found no tracing directory in it: is the kernel built with CONFIG_FTRACE and CONFIG_KPROBE_EVENTS?"
        ));
    }
    Ok(Some(format!(
        "mounted {fstype} on {target} for kprobe_events (it was not mounted)"
    )))
}

fn mount(fstype: &str, target: &str) -> Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in a constant");
    let (src, tgt, ty) = (c(fstype), c(target), c(fstype));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(anyhow!(
            "kprobes go through tracefs on this kernel and none is mounted; mounting {fstype} on {target} failed: {e}; mount it yourself (mount -t {fstype} {fstype} {target})"
        ));
    }
    Ok(())
}

/// One event in `kprobe_events` as aya names it: `aya_<pid>_<p|r>_<function>_0x<off>_<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AyaEvent {
    /// `group/event`, as `-:` wants it.
    pub name: String,
    pub pid: u32,
    pub function: String,
}

/// The events in `kprobe_events` text that aya made for one of `functions` (by name
/// and by probed symbol: both must agree). Everything else is someone else's.
pub fn aya_events(text: &str, functions: &[&str]) -> Vec<AyaEvent> {
    text.lines()
        .filter_map(|l| parse_line(l, functions))
        .collect()
}

fn parse_line(line: &str, functions: &[&str]) -> Option<AyaEvent> {
    // "p:kprobes/aya_42_p_netpoll_setup_0x0_0 netpoll_setup" ("r16:" for some returns).
    let (head, rest) = line.trim().split_once(':')?;
    if !matches!(head.chars().next(), Some('p' | 'r'))
        || !head[1..].chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    let symbol = words.next()?;
    let (group, event) = name.split_once('/')?;
    if group != "kprobes" {
        return None;
    }
    let tail = event.strip_prefix("aya_")?;
    let (pid, tail) = tail.split_once('_')?;
    let pid: u32 = pid.parse().ok()?;
    let tail = tail
        .strip_prefix("p_")
        .or_else(|| tail.strip_prefix("r_"))?;
    let function = functions.iter().find(|f| {
        **f == symbol
            && tail
                .strip_prefix(&event_part(f))
                .and_then(|t| t.strip_prefix("_0x"))
                .is_some_and(|t| {
                    t.split_once('_').is_some_and(|(off, n)| {
                        !off.is_empty()
                            && off.chars().all(|c| c.is_ascii_hexdigit())
                            && !n.is_empty()
                            && n.chars().all(|c| c.is_ascii_digit())
                    })
                })
    })?;
    Some(AyaEvent {
        name: name.to_string(),
        pid,
        function: function.to_string(),
    })
}

/// A function as it appears in an event's name (`module:function` too).
fn event_part(function: &str) -> String {
    function.replace(['.', '/', '-', ':'], "_")
}

/// Adds this process's kprobe (`ret`: kretprobe) event on `function`, named as aya
/// names its own (so `OwnEvents` and `remove_stale_events` find it), and returns the
/// event's tracepoint id. `module:function` is accepted while the module is not loaded:
/// the kernel registers the probe when it loads.
pub fn create_armed_event(ret: bool, function: &str) -> Result<u64> {
    let dir = find().ok_or_else(|| anyhow!("no tracefs mounted"))?;
    let kind = if ret { 'r' } else { 'p' };
    let event = format!(
        "aya_{}_{kind}_{}_0x0_0",
        std::process::id(),
        event_part(function)
    );
    let file = dir.join("kprobe_events");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(format!("{kind}:kprobes/{event} {function}\n").as_bytes()))
        .with_context(|| {
            format!(
                "writing {kind}:kprobes/{event} {function} to {}",
                file.display()
            )
        })?;
    let id_file = dir.join("events/kprobes").join(&event).join("id");
    let id = std::fs::read_to_string(&id_file)
        .with_context(|| format!("reading {}", id_file.display()))?;
    id.trim()
        .parse()
        .with_context(|| format!("{}: not an id: {id:?}", id_file.display()))
}

/// The events of processes that are gone: left by a run of ours that was killed
/// (a live process's events are its own, whoever it is).
pub fn stale(events: Vec<AyaEvent>, alive: impl Fn(u32) -> bool) -> Vec<AyaEvent> {
    events.into_iter().filter(|e| !alive(e.pid)).collect()
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes the kprobe events for `functions` that killed runs left behind; returns
/// the names removed, and the ones that could not be (with why).
pub fn remove_stale_events(functions: &[&str]) -> Result<(Vec<String>, Vec<String>)> {
    remove_events(functions, |events| stale(events, process_alive))
}

/// This process's kprobe events on the traced functions, removed when dropped: keep it
/// after (declared after, dropped after) what holds the programs' links, whose perf
/// events must be closed first.
pub struct OwnEvents {
    functions: Vec<&'static str>,
}

impl OwnEvents {
    pub fn new(functions: Vec<&'static str>) -> Self {
        Self { functions }
    }

    /// Leaves `function`'s events in place: a pinned link holds them past this process
    /// (a later run removes them once `reset` has unpinned it).
    pub fn keep(&mut self, function: &str) {
        self.functions.retain(|f| *f != function);
    }
}

impl Drop for OwnEvents {
    fn drop(&mut self) {
        let me = std::process::id();
        match remove_events(&self.functions, |events| {
            events.into_iter().filter(|e| e.pid == me).collect()
        }) {
            Ok((removed, failed)) => {
                log::debug!("removed our kprobe events: {}", removed.join(", "));
                if !failed.is_empty() {
                    log::warn!("could not remove our kprobe events: {}", failed.join(", "));
                }
            }
            Err(e) => log::warn!("could not remove our kprobe events: {e:#}"),
        }
    }
}

fn remove_events(
    functions: &[&str],
    pick: impl FnOnce(Vec<AyaEvent>) -> Vec<AyaEvent>,
) -> Result<(Vec<String>, Vec<String>)> {
    let Some(dir) = find() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let file = dir.join("kprobe_events");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for e in pick(aya_events(&text, functions)) {
        let r = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(format!("-:{}\n", e.name).as_bytes()));
        match r {
            Ok(()) => removed.push(e.name),
            Err(err) => failed.push(format!("{} ({err})", e.name)),
        }
    }
    Ok((removed, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [&str; 3] = ["netpoll_setup", "__netpoll_setup", "netpoll_poll_dev"];

    const LISTING: &str = "\
p:kprobes/aya_412_p_netpoll_setup_0x0_0 netpoll_setup
r16:kprobes/aya_412_r_netpoll_setup_0x0_1 netpoll_setup
p:kprobes/aya_412_p___netpoll_setup_0x0_2 __netpoll_setup
p:kprobes/aya_77_p_tcp_connect_0x0_0 tcp_connect
p:kprobes/mine netpoll_setup
p:custom/aya_412_p_netpoll_setup_0x0_3 netpoll_setup
p:kprobes/aya_412_p_netpoll_setup_0x0_4 tcp_connect
p:kprobes/aya_x_p_netpoll_setup_0x0_5 netpoll_setup
";

    #[test]
    fn only_ayas_events_on_our_functions_are_ours() {
        let found = aya_events(LISTING, &OURS);
        let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kprobes/aya_412_p_netpoll_setup_0x0_0",
                "kprobes/aya_412_r_netpoll_setup_0x0_1",
                "kprobes/aya_412_p___netpoll_setup_0x0_2"
            ]
        );
        assert_eq!(found[2].function, "__netpoll_setup");
        assert!(found.iter().all(|e| e.pid == 412));
    }

    #[test]
    fn a_live_process_keeps_its_events() {
        let found = aya_events(LISTING, &OURS);
        assert!(stale(found.clone(), |pid| pid == 412).is_empty());
        assert_eq!(stale(found, |_| false).len(), 3);
    }

    #[test]
    fn an_armed_module_event_is_ours_too() {
        let listing = "p:kprobes/aya_9_p_netconsole_netcons_netpoll_setup_0x0_0 netconsole:netcons_netpoll_setup\nr:kprobes/aya_9_r_netconsole_netcons_netpoll_setup_0x0_0 netconsole:netcons_netpoll_setup\n";
        let found = aya_events(listing, &["netconsole:netcons_netpoll_setup"]);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].function, "netconsole:netcons_netpoll_setup");
    }

    #[test]
    fn garbage_lines_are_ignored() {
        assert!(aya_events("\n:\nx:kprobes/aya_1_p_netpoll_setup_0x0_0 netpoll_setup\np:kprobes/aya_1_p_netpoll_setup_0x_0 netpoll_setup\n", &OURS).is_empty());
    }

    #[test]
    fn process_alive_tells_ours_from_a_free_pid() {
        assert!(process_alive(std::process::id()));
        // Above the kernel's pid_max ceiling (2^22): never a process.
        assert!(!process_alive(5_000_000));
    }
}
