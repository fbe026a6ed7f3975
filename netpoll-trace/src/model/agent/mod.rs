//! The agent's decisions, as two state machines fed with facts (pure): `Patching` for a
//! set-up that failed (`policy.missing_poll_controller`: patch, retry, verify) and
//! `Reenabling` for a target its device stopped (`policy.target_stopped`: wait for the
//! device, re-enable, verify the set-up and that it sends). Each says what to do next
//! with its own step (`PatchingStep`, `ReenablingStep`); `Machine` gives the runner
//! either one as an `Effect` to carry out and takes back a `Report` of how it went.
//! Every decision is journaled as a `Note`; the runner adds the clock and writes them
//! (as a `remediation` record). Nothing here touches the system.

mod machine;
mod patching;
mod reenabling;
mod reenabling_steps;
mod shared;

pub use machine::{Effect, Machine, Report};
pub use patching::{Identity, PatchOutcome, Patching, Successes};
pub use reenabling::{DeviceBack, Reenabling, Resume, SendCheck, SendWatch, target_up};
pub use shared::{Handled, KilledBy, Note, Verified, killed_on_stop};

use std::collections::VecDeque;

use super::{
    config::{AgentConfig, PolicyAction, RetryMethod, TargetStopped},
    output::Output,
};

/// Failures waiting while the agent handles another, at most; past it the oldest go
/// (a device that keeps failing has a newer failure queued behind it).
pub const MAX_BACKLOG: usize = 256;

/// The failures (and successes, which supersede them) that arrived while the agent was
/// busy, in order, bounded by `MAX_BACKLOG`; drops are counted.
#[derive(Debug, Default)]
pub struct Backlog {
    items: VecDeque<Output>,
    dropped: u64,
}

impl Backlog {
    /// Queues a set-up attempt or a target's stop or disable; anything else was already
    /// reported and is not needed.
    pub fn push(&mut self, o: Output) {
        let keep = match &o {
            Output::Attempt(..) => true,
            Output::Target(t) => !t.event.up(),
            _ => false,
        };
        if !keep {
            return;
        }
        if self.items.len() >= MAX_BACKLOG {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(o);
    }

    pub fn pop(&mut self) -> Option<Output> {
        self.items.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Attempts dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// The level of the marker line, from the kernel's console_loglevel (the first field of
/// /proc/sys/kernel/printk): consoles, netconsole among them, print only what is more
/// urgent than it, and `quiet` lowers it to 4. A notice where that passes, else just
/// urgent enough; None when only emergencies pass (no marker is worth one).
pub fn marker_level(printk: &str) -> Option<u8> {
    let console: u8 = printk
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(7);
    (console > 1).then(|| (console - 1).min(5))
}

/// What the agent needs to keep after attaching, in its own terms (the runner maps
/// each to a capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Load and unload the patch module.
    LoadModules,
    /// Read /dev/kmsg, to quote the kernel.
    ReadKernelLog,
    /// Read BPF maps again after start-up: every bpf() call needs CAP_BPF before 6.5
    /// while unprivileged BPF is off (found on 5.10 in the lab: the poll histograms of
    /// the metrics stayed empty without it).
    ReadBpfMaps,
}

/// What to keep: the kernel log always (to quote the kernel); loading modules only when
/// the configured policy can load one (the patch, or a retry command that reloads
/// netconsole: after a patch, or when a re-enable may fall back to `retry.command`, which
/// it never does where the kernel resumes targets, `resume`), and never in a dry run;
/// serving metrics, or checking that a re-enabled target sends, re-reads maps.
pub fn needs(cfg: &AgentConfig, dry_run: bool, reading_maps: bool, resume: Resume) -> Vec<Need> {
    // No CAP_DAC_OVERRIDE: every file it writes after start-up (the module's parameters,
    // configfs targets, its journal) is root's with the owner's write bit.
    let mut needs = Vec::new();
    if !dry_run && may_load_modules(cfg, resume) {
        needs.push(Need::LoadModules);
    }
    needs.push(Need::ReadKernelLog);
    if reading_maps {
        needs.push(Need::ReadBpfMaps);
    }
    needs
}

/// Whether anything the policy allows loads a module: the patch, or a re-enable that
/// may fall back to a configured retry.command (never where the kernel resumes the
/// target itself: the agent then never retries).
fn may_load_modules(cfg: &AgentConfig, resume: Resume) -> bool {
    cfg.missing_poll_controller == PolicyAction::Patch
        || (cfg.target_stopped == TargetStopped::Reenable
            && resume == Resume::ByAgent
            && cfg.retry_method != RetryMethod::Configfs
            && !cfg.retry_command.is_empty())
}

/// What a retry command gets: loading netconsole (the usual `modprobe netconsole ...`)
/// and nothing else, whatever the agent itself keeps.
pub fn retry_command_needs() -> Vec<Need> {
    vec![Need::LoadModules]
}

#[cfg(test)]
mod tests;
