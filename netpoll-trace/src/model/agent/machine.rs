//! Either machine, for the one runner loop: what it asks for next (`Effect`, the same
//! few things for both: patch, wait then retry, wait for a verifying set-up, wait for a
//! device, see a device send) and how that went (`Report`), handed back to the machine
//! that asked.

use std::time::Duration;

use super::{
    patching::{PatchOutcome, Patching, PatchingStep, TargetOf, verification},
    reenabling::{DeviceBack, Reenabling, ReenablingStep, SendCheck, target_verification},
    shared::{Handled, KilledBy, Note, Verified},
};
use crate::model::{diagnosis::Cause, output::Output};

/// One machine at its current step.
#[derive(Debug)]
pub struct Machine {
    run: Run,
    /// When the last retry (or re-enable) started: only set-ups from then on verify it.
    retried_ns: u64,
}

#[derive(Debug)]
enum Run {
    Patching(Patching, PatchingStep),
    Reenabling(Reenabling, ReenablingStep),
}

/// What the runner carries out next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Done(Handled),
    /// Patch `dev`; report `Patched`.
    Patch {
        dev: String,
    },
    /// Undo the patch of `dev` just made; report `Unpatched`.
    Unpatch {
        dev: String,
    },
    /// Wait `after`, then retry the netconsole target on `dev` sending to `remote`
    /// (configfs or the configured command); report `Retried` or `RetryTimedOut`.
    Retry {
        dev: String,
        remote: Option<String>,
        attempt: u32,
        after: Duration,
    },
    /// Wait at most `within` for the first output `verifies` answers for; report
    /// `Verified` (`TimedOut` when none came).
    AwaitSetup {
        verifies: Verifies,
        within: Duration,
    },
    /// Wait at most `within` until `dev` exists again, or `target` is up again after
    /// `since_ns`; report `DeviceBack`.
    AwaitDevice {
        target: String,
        dev: String,
        since_ns: u64,
        within: Duration,
    },
    /// Take `dev`'s send counters, write `marker` to the kernel log, wait at most
    /// `within` for them to grow; report `Sent`.
    VerifySend {
        dev: String,
        marker: String,
        within: Duration,
    },
}

/// Which output verifies a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifies {
    /// A set-up on `dev` (of `target`, when the failure had one) from `since_ns` on.
    Setup {
        dev: String,
        target: Option<TargetOf>,
        since_ns: u64,
    },
    /// `target`'s next enable, or a set-up on `dev` that failed, from `since_ns` on.
    Target {
        target: String,
        dev: String,
        since_ns: u64,
    },
}

impl Verifies {
    pub fn check(&self, out: &Output) -> Option<Verified> {
        match self {
            Self::Setup {
                dev,
                target,
                since_ns,
            } => verification(out, dev, target.as_ref(), *since_ns),
            Self::Target {
                target,
                dev,
                since_ns,
            } => target_verification(out, target, dev, *since_ns),
        }
    }
}

/// How an effect went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Patched(PatchOutcome),
    Unpatched(Result<String, String>),
    /// The retry that started at `at_ns`: how it retried, or why it could not.
    Retried {
        at_ns: u64,
        outcome: Result<String, String>,
    },
    /// The retry that started at `at_ns` ran its command past `timeout`: killed.
    RetryTimedOut {
        at_ns: u64,
        command: String,
        timeout: Duration,
        by: KilledBy,
    },
    Verified(Verified),
    DeviceBack(DeviceBack),
    Sent(SendCheck),
}

impl Machine {
    pub fn patching(m: Patching, first: PatchingStep) -> Self {
        Self {
            run: Run::Patching(m, first),
            retried_ns: 0,
        }
    }

    pub fn reenabling(m: Reenabling, first: ReenablingStep) -> Self {
        Self {
            run: Run::Reenabling(m, first),
            retried_ns: 0,
        }
    }

    /// The journal entries decided since the last call, with the device (none for a
    /// target without one) and the failure's cause they are about.
    pub fn take_notes(&mut self) -> (Option<String>, Option<Cause>, Vec<Note>) {
        match &mut self.run {
            Run::Patching(m, _) => (Some(m.dev.clone()), Some(m.cause), m.take_notes()),
            Run::Reenabling(m, _) => (
                (!m.dev.is_empty()).then(|| m.dev.clone()),
                None,
                m.take_notes(),
            ),
        }
    }

    /// What the current step asks the runner to do.
    pub fn effect(&self) -> Effect {
        let since_ns = self.retried_ns;
        match &self.run {
            Run::Patching(m, step) => match step {
                PatchingStep::Done(h) => Effect::Done(*h),
                PatchingStep::Patch => Effect::Patch { dev: m.dev.clone() },
                PatchingStep::Unpatch => Effect::Unpatch { dev: m.dev.clone() },
                PatchingStep::Retry { attempt, after } => {
                    // The target that failed: its own device (a vlan's target names the
                    // vlan, the patch went to the lower device) and its remote.
                    let (dev, remote) = match &m.target {
                        Some(t) => (
                            t.dev.clone().unwrap_or_else(|| m.dev.clone()),
                            t.remote.clone(),
                        ),
                        None => (m.dev.clone(), None),
                    };
                    Effect::Retry {
                        dev,
                        remote,
                        attempt: *attempt,
                        after: *after,
                    }
                }
                PatchingStep::Verify { within, .. } => Effect::AwaitSetup {
                    verifies: Verifies::Setup {
                        dev: m.dev.clone(),
                        target: m.target.clone(),
                        since_ns,
                    },
                    within: *within,
                },
            },
            Run::Reenabling(m, step) => match step {
                ReenablingStep::Done(h) => Effect::Done(*h),
                ReenablingStep::AwaitDevice { dev, within } => Effect::AwaitDevice {
                    target: m.target.clone(),
                    dev: dev.clone(),
                    since_ns: m.stopped_ns,
                    within: *within,
                },
                ReenablingStep::Reenable { attempt, after } => Effect::Retry {
                    dev: m.dev.clone(),
                    remote: m.remote.clone(),
                    attempt: *attempt,
                    after: *after,
                },
                ReenablingStep::VerifySetup { within, .. } => Effect::AwaitSetup {
                    verifies: Verifies::Target {
                        target: m.target.clone(),
                        dev: m.dev.clone(),
                        since_ns,
                    },
                    within: *within,
                },
                ReenablingStep::VerifySend { within } => Effect::VerifySend {
                    dev: m.dev.clone(),
                    marker: m.marker(),
                    within: *within,
                },
            },
        }
    }

    /// Hands how the effect went to the machine, which decides its next step.
    ///
    /// # Panics
    /// On a report its current step did not ask for (a runner's mistake).
    pub fn report(&mut self, r: Report) {
        if let Report::Retried { at_ns, .. } | Report::RetryTimedOut { at_ns, .. } = &r {
            self.retried_ns = *at_ns;
        }
        match &mut self.run {
            Run::Patching(m, step) => {
                *step = match r {
                    Report::Patched(o) => m.patched(o),
                    Report::Unpatched(o) => m.unpatched(o),
                    Report::Retried { outcome, .. } => m.retried(outcome),
                    Report::RetryTimedOut {
                        command,
                        timeout,
                        by,
                        ..
                    } => m.retry_timed_out(&command, timeout, by),
                    Report::Verified(v) => m.verified(v),
                    other => unreachable!("{other:?} reported to a patching step"),
                }
            }
            Run::Reenabling(m, step) => {
                *step = match (r, &*step) {
                    (Report::DeviceBack(b), ReenablingStep::AwaitDevice { within, .. }) => {
                        let within = *within;
                        m.device_back(b, within)
                    }
                    (Report::Retried { outcome, .. }, _) => m.reenabled(outcome),
                    (
                        Report::RetryTimedOut {
                            command,
                            timeout,
                            by,
                            ..
                        },
                        _,
                    ) => m.reenable_timed_out(&command, timeout, by),
                    (Report::Verified(v), _) => m.setup_verified(v),
                    (Report::Sent(c), _) => m.send_verified(c),
                    (other, _) => unreachable!("{other:?} reported to a re-enabling step"),
                }
            }
        }
    }
}
