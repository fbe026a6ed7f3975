//! The kernel functions the programs trace, each with its programs per attach method:
//! the one table every attach path, the pin checks and `check` read.

use std::fmt;

use anyhow::{Context as _, Result, bail};
use netpoll_trace_common::function;

use super::{kallsyms, offsets, profile::stage};

/// One traced kernel function and its programs.
pub struct Target {
    /// `netpoll_trace_common::function` id.
    pub id: u32,
    /// kprobe and kretprobe programs (kprobe PMU, or tracefs kprobe_events).
    pub kprobe: (&'static str, &'static str),
    /// fentry and fexit programs (BPF trampolines).
    pub fentry: (&'static str, &'static str),
    /// Set-up tracing is impossible without it; the poll statistics are optional.
    pub required: bool,
}

impl Target {
    /// The kernel symbol.
    pub fn function(&self) -> &'static str {
        // Every id in TARGETS has a symbol (unit-tested).
        function::symbol(self.id).unwrap_or("?")
    }
}

pub const TARGETS: [Target; 3] = [
    Target {
        id: function::NETPOLL_SETUP,
        kprobe: ("netpoll_setup_entry", "netpoll_setup_exit"),
        fentry: ("netpoll_setup_fentry", "netpoll_setup_fexit"),
        required: true,
    },
    Target {
        id: function::INNER_NETPOLL_SETUP,
        kprobe: ("inner_netpoll_setup_entry", "inner_netpoll_setup_exit"),
        fentry: ("inner_netpoll_setup_fentry", "inner_netpoll_setup_fexit"),
        required: true,
    },
    Target {
        id: function::NETPOLL_POLL_DEV,
        kprobe: ("poll_dev_entry", "poll_dev_exit"),
        fentry: ("poll_dev_fentry", "poll_dev_fexit"),
        required: false,
    },
];

/// The traced functions' symbols, in TARGETS order.
pub fn functions() -> Vec<&'static str> {
    TARGETS.iter().map(Target::function).collect()
}

/// The kernel cannot be traced; maps to exit code 4.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Which TARGETS the kernel has: from its BTF when that lists every one (the parse is
/// kept for the struct offsets), else from /proc/kallsyms, which has the final word on
/// anything BTF does not show. Reading kallsyms is the slow path: the kernel formats
/// 120,000+ lines (measured natively ~100 ms against ~8 ms for our BTF parse; seconds
/// under TCG).
fn targets_present() -> Result<Vec<bool>> {
    let names = functions();
    if let Some(present) = offsets::functions_present(&names)
        && present.iter().all(|p| *p)
    {
        stage("functions present (BTF)");
        return Ok(present);
    }
    let present = kallsyms::functions_present(&names).context("reading /proc/kallsyms (are you root?)");
    stage("functions present (kallsyms)");
    present
}

/// Which TARGETS the kernel has (none required).
pub fn present() -> Result<Vec<bool>> {
    targets_present()
}

/// Fails with `Unsupported` (exit 4) when the kernel lacks a function we must probe;
/// else which TARGETS it has.
pub fn require_functions() -> Result<Vec<bool>> {
    let present = targets_present()?;
    let missing: Vec<&str> =
        TARGETS.iter().zip(&present).filter(|(t, p)| t.required && !**p).map(|(t, _)| t.function()).collect();
    if !missing.is_empty() {
        bail!(Unsupported(format!(
            "this kernel has no {} (built without CONFIG_NETPOLL?); run `netpoll-trace check`",
            missing.join(", ")
        )));
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_names_a_kernel_function_once() {
        assert_eq!(functions(), ["netpoll_setup", "__netpoll_setup", "netpoll_poll_dev"]);
        let mut programs: Vec<&str> = TARGETS.iter().flat_map(|t| [t.kprobe.0, t.kprobe.1, t.fentry.0, t.fentry.1]).collect();
        programs.sort();
        programs.dedup();
        assert_eq!(programs.len(), 4 * TARGETS.len());
    }
}
