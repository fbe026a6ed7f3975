//! The machine for a netconsole target its device stopped (`policy.target_stopped`):
//! `begin` takes the target's change; the runner carries out each `ReenablingStep`
//! (wait for the device, re-enable after a wait, wait for the target's set-up, see it
//! send) and reports how it went with `device_back`, `reenabled`, `setup_verified` and
//! `send_verified`.

use std::{collections::HashMap, time::Duration};

pub use super::reenabling_steps::{DeviceBack, ReenablingStep, Resume, SendCheck};
use super::{
    patching::verification,
    shared::{Backoff, Handled, KilledBy, Note, Verified},
};
use crate::model::{
    config::{AgentConfig, TargetStopped},
    output::Output,
    remediation::{Action, Evidence, Outcome},
    send::SendSummary,
    target::{Change, StopCause, TargetEvent, TargetState},
};

/// Re-enabling one target that its device stopped (`policy.target_stopped`).
#[derive(Debug)]
pub struct Reenabling {
    /// The target's label (`netconsole@10.0.2.2:6666`).
    pub target: String,
    /// The device it was bound to, by name.
    pub dev: String,
    /// Where it sends (`10.0.2.2:6666`): which of the device's targets it is.
    pub remote: Option<String>,
    /// When the target stopped (CLOCK_MONOTONIC).
    pub stopped_ns: u64,
    /// The device's ifindex once it is back: whose send counters count.
    pub ifindex: Option<i32>,
    backoff: Backoff,
    verify_timeout: Duration,
    resume: Resume,
    notes: Vec<Note>,
}

impl Reenabling {
    /// The first decision for a target's change: None for a change that needs none
    /// (enabled, re-enabled; a disable while the policy only reports). Otherwise the
    /// change is journaled and either left as it is (`why_not`), journaled only (a dry
    /// run), or its device waited on.
    pub fn begin(
        e: &TargetEvent,
        now: Option<&TargetState>,
        cfg: &AgentConfig,
        dry_run: bool,
        resume: Resume,
    ) -> Option<(Self, ReenablingStep)> {
        let reenable = cfg.target_stopped == TargetStopped::Reenable;
        match e.event {
            Change::Enabled | Change::ReEnabled | Change::Resumed => return None,
            Change::Disabled if !reenable => return None,
            Change::Disabled | Change::Stopped => {}
        }
        let mut r = Self {
            target: e.target.clone(),
            dev: e.dev.clone().unwrap_or_default(),
            remote: e.remote.clone(),
            stopped_ns: e.ts_ns,
            ifindex: None,
            backoff: Backoff::new(cfg),
            verify_timeout: cfg.verify_timeout,
            resume,
            notes: Vec::new(),
        };
        let on = if r.dev.is_empty() {
            String::new()
        } else {
            format!(" on {}", r.dev)
        };
        let what = format!("target {}{on} {} ({})", r.target, e.event.as_str(), e.cause);
        if let Some((outcome, why, handled)) = r.why_not(e, now, reenable) {
            r.note(Action::Decide, outcome, format!("{what}{why}"), None);
            return Some((r, ReenablingStep::Done(handled)));
        }
        let detail = match resume {
            Resume::ByAgent => format!("{what}: re-enable it once {} is back", r.dev),
            Resume::ByKernel => format!(
                "{what}: this kernel's netconsole resumes it itself once {} is back; the agent waits and reports (it does not write enabled)",
                r.dev
            ),
        };
        r.note(Action::Decide, Outcome::Ok, detail, None);
        if dry_run && resume == Resume::ByKernel {
            let detail = format!(
                "would wait up to {:?} for {} and the kernel's resume",
                cfg.device_wait, r.dev
            );
            r.note(Action::WaitDevice, Outcome::DryRun, detail, None);
            return Some((r, ReenablingStep::Done(Handled::Unfixed)));
        }
        if dry_run {
            let detail = format!("would wait up to {:?} for {}", cfg.device_wait, r.dev);
            r.note(Action::WaitDevice, Outcome::DryRun, detail, None);
            let detail = format!("would re-enable {}", r.target);
            r.note(Action::Reenable, Outcome::DryRun, detail, None);
            return Some((r, ReenablingStep::Done(Handled::Unfixed)));
        }
        let step = ReenablingStep::AwaitDevice {
            dev: r.dev.clone(),
            within: cfg.device_wait,
        };
        Some((r, step))
    }

    /// Why a stop or disable is left as it is, in order: how it is journaled, the end of
    /// the entry's detail, and how handling it ends; None to re-enable it.
    fn why_not(
        &self,
        e: &TargetEvent,
        now: Option<&TargetState>,
        reenable: bool,
    ) -> Option<(Outcome, &'static str, Handled)> {
        let set_up_since =
            now.is_some_and(|s| s.target == self.target && s.up() && s.since_ns > e.ts_ns);
        Some(if e.event == Change::Disabled {
            // Its owner's decision: never undone by the agent.
            (
                Outcome::Reported,
                ": disabled by its owner, left disabled",
                Handled::Fixed,
            )
        } else if set_up_since {
            (Outcome::Superseded, ": set up again since", Handled::Fixed)
        } else if !reenable {
            (
                Outcome::Reported,
                "; policy.target_stopped is \"report\"",
                Handled::Unfixed,
            )
        } else if e.cause != StopCause::DeviceUnregistered.as_str() {
            // Seen on 6.12, whose netconsole defers a disable's clean-up to its netdev
            // notifier: a target its owner disabled is torn down there, with no
            // netpoll_cleanup, and looks like a device event. Never re-enabled on that.
            (
                Outcome::Reported,
                ": only a target whose device unregistered is re-enabled (a disable by its owner can look like a device event)",
                Handled::Unfixed,
            )
        } else if self.dev.is_empty() {
            (
                Outcome::Reported,
                ": no device name, nothing to wait for",
                Handled::Unfixed,
            )
        } else {
            return None;
        })
    }

    /// How the wait for the device ended.
    pub fn device_back(&mut self, b: DeviceBack, within: Duration) -> ReenablingStep {
        match b {
            DeviceBack::Present { ifindex, waited } => {
                self.ifindex = ifindex;
                let idx = ifindex.map_or("?".to_string(), |i| i.to_string());
                let detail = format!(
                    "{} is back (ifindex {idx}) after {:.1}s",
                    self.dev,
                    waited.as_secs_f64()
                );
                self.note(Action::WaitDevice, Outcome::Ok, detail, None);
                match self.resume {
                    Resume::ByAgent => self.next_attempt(),
                    // The kernel's resume is the set-up to wait for.
                    Resume::ByKernel => ReenablingStep::VerifySetup {
                        attempt: 0,
                        within: self.verify_timeout,
                    },
                }
            }
            DeviceBack::TimedOut => {
                let detail = format!(
                    "{} did not come back within {within:?}: {} left stopped",
                    self.dev, self.target
                );
                self.note(Action::WaitDevice, Outcome::TimedOut, detail, None);
                ReenablingStep::Done(Handled::Unfixed)
            }
            DeviceBack::TargetUp if self.resume == Resume::ByKernel => {
                let detail = format!(
                    "{} was resumed by the kernel while waiting for {}",
                    self.target, self.dev
                );
                self.proof(Action::Verify, detail, &[Evidence::Setup]);
                ReenablingStep::VerifySend {
                    within: self.verify_timeout,
                }
            }
            DeviceBack::TargetUp => {
                let detail = format!(
                    "{} was set up again while waiting for {}",
                    self.target, self.dev
                );
                self.note(Action::WaitDevice, Outcome::Superseded, detail, None);
                ReenablingStep::Done(Handled::Fixed)
            }
        }
    }

    /// The re-enable's outcome (how, or why it could not).
    pub fn reenabled(&mut self, outcome: Result<String, String>) -> ReenablingStep {
        match outcome {
            Ok(how) => {
                self.note(
                    Action::Reenable,
                    Outcome::Ok,
                    how,
                    Some(self.backoff.attempt),
                );
                ReenablingStep::VerifySetup {
                    attempt: self.backoff.attempt,
                    within: self.verify_timeout,
                }
            }
            Err(e) => {
                self.note(
                    Action::Reenable,
                    Outcome::Failed,
                    e,
                    Some(self.backoff.attempt),
                );
                self.next_attempt()
            }
        }
    }

    /// The re-enable's command ran past `retry.timeout` and was killed: a failed attempt.
    pub fn reenable_timed_out(
        &mut self,
        command: &str,
        timeout: Duration,
        by: KilledBy,
    ) -> ReenablingStep {
        let detail = format!(
            "{command} ran past retry.timeout ({timeout:?}): killed its process group ({})",
            by.as_str()
        );
        self.note(
            Action::Reenable,
            Outcome::TimedOut,
            detail,
            Some(self.backoff.attempt),
        );
        self.next_attempt()
    }

    /// What the target's next set-up showed.
    pub fn setup_verified(&mut self, v: Verified) -> ReenablingStep {
        match v {
            Verified::Succeeded(_) => {
                let by = match self.resume {
                    Resume::ByAgent => "set up again",
                    Resume::ByKernel => "resumed by the kernel",
                };
                let detail = format!("{} {by} on {}", self.target, self.dev);
                self.proof(Action::Verify, detail, &[Evidence::Setup]);
                ReenablingStep::VerifySend {
                    within: self.verify_timeout,
                }
            }
            Verified::Failed(cause) => {
                let detail = format!("set-up of {} on {} failed: {cause}", self.target, self.dev);
                self.note(
                    Action::Verify,
                    Outcome::Failed,
                    detail,
                    Some(self.backoff.attempt),
                );
                self.next_attempt()
            }
            Verified::TimedOut => {
                let detail = format!(
                    "no set-up of {} seen within {:?}",
                    self.target, self.verify_timeout
                );
                self.note(
                    Action::Verify,
                    Outcome::Failed,
                    detail,
                    Some(self.backoff.attempt),
                );
                self.next_attempt()
            }
        }
    }

    /// What the send counters showed: only counters that stay flat say the target does
    /// not send; a check that could not be made leaves the verified set-up standing.
    pub fn send_verified(&mut self, c: SendCheck) -> ReenablingStep {
        let within = self.verify_timeout;
        let (outcome, detail, handled) = match c {
            SendCheck::Grew { from, to } => (
                Outcome::Ok,
                format!(
                    "{} sent {} skb(s) after the marker ({from} -> {to})",
                    self.dev,
                    to - from
                ),
                Handled::Fixed,
            ),
            SendCheck::Flat { sent } => (
                Outcome::Failed,
                format!(
                    "{} sent nothing within {within:?} of the marker (sent stayed at {sent})",
                    self.dev
                ),
                Handled::Unfixed,
            ),
            SendCheck::NoStats => (
                Outcome::TimedOut,
                format!(
                    "no send statistics within {within:?}: sending on {} not checked",
                    self.dev
                ),
                Handled::Fixed,
            ),
            SendCheck::Marker(e) => (
                Outcome::Failed,
                format!("writing the marker line: {e}"),
                Handled::Fixed,
            ),
        };
        match outcome {
            Outcome::Ok => self.proof(
                Action::VerifySend,
                detail,
                &[Evidence::Setup, Evidence::Send],
            ),
            _ => self.note(
                Action::VerifySend,
                outcome,
                detail,
                Some(self.backoff.attempt),
            ),
        }
        ReenablingStep::Done(handled)
    }

    /// The journal entries decided since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// The marker line written to the kernel log to see the target send.
    pub fn marker(&self) -> String {
        let what = match self.resume {
            Resume::ByAgent => "re-enabled",
            Resume::ByKernel => "resumed by the kernel",
        };
        format!(
            "netpoll-trace agent: {} {what} on {}",
            self.target, self.dev
        )
    }

    /// The next re-enable (the first at once, then after a doubling wait), or give up;
    /// where the kernel resumes targets, give up at once: its attempt was the one.
    fn next_attempt(&mut self) -> ReenablingStep {
        if self.resume == Resume::ByKernel {
            let detail = format!(
                "the kernel did not resume {} on {}: left as the kernel left it",
                self.target, self.dev
            );
            self.note(Action::Verify, Outcome::Failed, detail, None);
            return ReenablingStep::Done(Handled::Unfixed);
        }
        match self.backoff.next() {
            Some((attempt, after)) => ReenablingStep::Reenable { attempt, after },
            None => ReenablingStep::Done(Handled::Unfixed),
        }
    }

    fn note(&mut self, action: Action, result: Outcome, detail: String, attempt: Option<u32>) {
        self.notes.push(Note::new(action, result, detail, attempt));
    }

    /// A successful verification, with what it proved.
    fn proof(&mut self, action: Action, detail: String, proved: &[Evidence]) {
        let mut n = Note::new(action, Outcome::Ok, detail, Some(self.backoff.attempt));
        n.proved = proved.to_vec();
        self.notes.push(n);
    }
}

/// Whether `out` verifies a re-enable of `target` on `dev` made at `since_ns`: the
/// target's next enable, or a set-up on `dev` that failed, from then on.
pub fn target_verification(
    out: &Output,
    target: &str,
    dev: &str,
    since_ns: u64,
) -> Option<Verified> {
    match out {
        Output::Target(t) if t.target == target && t.event.up() && t.ts_ns >= since_ns => {
            Some(Verified::Succeeded(t.ts_ns))
        }
        Output::Attempt(_, Some(_)) => verification(out, dev, None, since_ns),
        _ => None,
    }
}

/// Whether `out` says `target` is up again after `since_ns` (someone else re-enabled it).
pub fn target_up(out: &Output, target: &str, since_ns: u64) -> bool {
    matches!(out, Output::Target(t) if t.target == target && t.event.up() && t.ts_ns >= since_ns)
}

/// The send counters of one device (by name; per ifindex, since a re-created device
/// has a new one), taken before the marker, compared with later ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWatch {
    dev: String,
    before: Option<HashMap<Option<i32>, u64>>,
}

impl SendWatch {
    pub fn new(dev: &str) -> Self {
        Self {
            dev: dev.to_string(),
            before: None,
        }
    }

    fn sent(&self, stats: &[SendSummary]) -> HashMap<Option<i32>, u64> {
        stats
            .iter()
            .filter(|s| s.dev.as_deref() == Some(self.dev.as_str()))
            .map(|s| (s.ifindex, s.sent))
            .collect()
    }

    /// Whether the counters were taken (the marker may be written now).
    pub fn ready(&self) -> bool {
        self.before.is_some()
    }

    /// The first statistics are the baseline; a later ones' growth on any of the
    /// device's entries (a new one counts from 0) is `Grew`.
    pub fn observe(&mut self, stats: &[SendSummary]) -> Option<SendCheck> {
        let now = self.sent(stats);
        let Some(before) = &self.before else {
            self.before = Some(now);
            return None;
        };
        now.iter().find_map(|(k, to)| {
            let from = before.get(k).copied().unwrap_or(0);
            (*to > from).then_some(SendCheck::Grew { from, to: *to })
        })
    }

    /// Where the counters stood at the end of a wait without growth.
    pub fn flat(&self) -> SendCheck {
        match &self.before {
            Some(b) => SendCheck::Flat {
                sent: b.values().sum(),
            },
            None => SendCheck::NoStats,
        }
    }
}
