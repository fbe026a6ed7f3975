//! The machine for a set-up that failed (`policy.missing_poll_controller`): `begin`
//! takes a diagnosis; the runner carries out each `PatchingStep` (patch, retry after a
//! wait, wait for a verifying set-up) and reports how it went with `patched`,
//! `retried` and `verified`.

use std::{collections::HashMap, fmt, path::Path, time::Duration};

use super::shared::{Backoff, Handled, KilledBy, Note, Verified};
use crate::model::{
    config::AgentConfig,
    correlate::Attempt,
    diagnosis::{Cause, Diagnosis},
    event::SetupRecord,
    output::Output,
    policy::{self, Decision},
    remediation::{Action, Evidence, Outcome},
};

/// What the runner does next for a failed set-up (`Patching`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchingStep {
    Done(Handled),
    /// Patch the device; report with `patched`.
    Patch,
    /// Undo the patch just made (it hit another device); report with `unpatched`.
    Unpatch,
    /// Wait `after`, then retry the netconsole target; report with `retried`.
    Retry {
        attempt: u32,
        after: Duration,
    },
    /// Wait for the next set-up involving the device, at most `within`; report with `verified`.
    Verify {
        attempt: u32,
        within: Duration,
    },
}

/// Which device a name stood for: what the failure's event saw, or what the patch
/// found under the same name later. A name alone is not a device: it can be renamed
/// and given to a new one in between.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub ifindex: Option<i32>,
    pub driver: Option<String>,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ifindex = self.ifindex.map_or("?".to_string(), |i| i.to_string());
        write!(
            f,
            "ifindex {ifindex}, driver {}",
            self.driver.as_deref().unwrap_or("?")
        )
    }
}

impl Identity {
    /// What the failure's records saw of `dev` (its ifindex from the kernel's event,
    /// its driver from the enrichment).
    pub fn of(attempt: &Attempt, dev: &str) -> Self {
        let recs = || attempt.records().filter(|r| r.dev.as_deref() == Some(dev));
        Self {
            ifindex: recs().find_map(|r| r.ifindex.filter(|i| *i > 0)),
            // The culprit's driver is what the allowlist was checked against before.
            driver: recs()
                .find_map(|r| r.driver.clone())
                .or_else(|| attempt.culprit().and_then(|c| c.driver.clone())),
        }
    }

    /// Whether `found` can be the device of the failure `self`: every fact known on
    /// both sides agrees. (The ifindex is never reused while the old device lives, and
    /// a re-created one gets a new one.)
    pub fn matches(&self, found: &Identity) -> bool {
        fn agree<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        agree(&self.ifindex, &found.ifindex) && agree(&self.driver, &found.driver)
    }
}

/// How the patch went; `found` is the device the name stands for afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOutcome {
    Patched { detail: String, found: Identity },
    AlreadyPatched { found: Identity },
    Failed(String),
}

/// One failed set-up being remedied: decided, patched, retried, verified.
#[derive(Debug)]
pub struct Patching {
    /// The device that failed (what is patched).
    pub dev: String,
    /// The netconsole target that failed (what is retried and verified), when the set-up
    /// had an owner.
    pub target: Option<TargetOf>,
    /// The diagnosis's cause (every journal entry of this failure carries it).
    pub cause: Cause,
    /// What the failure's event saw of that device.
    failed: Identity,
    backoff: Backoff,
    verify_timeout: Duration,
    notes: Vec<Note>,
}

/// The netconsole target a set-up was for: its owner, its own device (a vlan's target
/// names the vlan, while the device that failed may be its lower one) and its remote. Two
/// targets on one device are two targets: each failure is decided, retried and verified
/// as its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOf {
    pub owner: String,
    pub dev: Option<String>,
    pub remote: Option<String>,
}

impl TargetOf {
    /// The target of an attempt's outermost set-up; None when it has no owner.
    pub fn of(root: &SetupRecord) -> Option<Self> {
        Some(Self {
            owner: root.netpoll.clone()?,
            dev: root.dev.clone(),
            remote: root.remote.clone(),
        })
    }

    /// One key per target (the remote may be unknown: then owner and device alone).
    pub(super) fn key(&self) -> String {
        format!(
            "{}@{} on {}",
            self.owner,
            self.remote.as_deref().unwrap_or("?"),
            self.dev.as_deref().unwrap_or("?")
        )
    }

    /// Whether `root` is a set-up of this target.
    pub fn is(&self, root: &SetupRecord) -> bool {
        TargetOf::of(root).is_some_and(|t| t.key() == self.key())
    }
}

impl Patching {
    /// The first decision for a diagnosed failure: superseded, reported (policy), a dry
    /// run, or patch.
    pub fn begin(
        root: &SetupRecord,
        d: &Diagnosis,
        failed: &Identity,
        cfg: &AgentConfig,
        dry_run: bool,
        successes: &Successes,
    ) -> (Self, PatchingStep) {
        let driver = failed.driver.as_deref();
        let dev = d.failing_device().unwrap_or_default().to_string();
        let mut r = Self {
            dev: dev.clone(),
            target: TargetOf::of(root),
            cause: d.cause,
            failed: failed.clone(),
            backoff: Backoff::new(cfg),
            verify_timeout: cfg.verify_timeout,
            notes: Vec::new(),
        };
        if successes.superseded(root) {
            let what = match &r.target {
                Some(_) => "a later set-up of this target succeeded",
                None => "a later set-up on this device succeeded",
            };
            r.note(Action::Decide, Outcome::Superseded, what.into(), None);
            return (r, PatchingStep::Done(Handled::Fixed));
        }
        match policy::decide(d, driver, cfg) {
            Decision::Report { reason } => {
                r.note(Action::Decide, Outcome::Reported, reason, None);
                (r, PatchingStep::Done(Handled::Unfixed))
            }
            Decision::PatchAndRetry { dev } => {
                r.dev = dev;
                let detail = format!(
                    "driver {} is allowed: patch, then retry",
                    driver.unwrap_or("?")
                );
                r.note(Action::Decide, Outcome::Ok, detail, None);
                if dry_run {
                    let module = cfg
                        .patch_module
                        .as_deref()
                        .map_or("the default module path".into(), |p: &Path| {
                            p.display().to_string()
                        });
                    r.note(
                        Action::Patch,
                        Outcome::DryRun,
                        format!("would patch {} with {module}", r.dev),
                        None,
                    );
                    r.note(
                        Action::Retry,
                        Outcome::DryRun,
                        "would retry the netconsole target".into(),
                        None,
                    );
                    return (r, PatchingStep::Done(Handled::Unfixed));
                }
                (r, PatchingStep::Patch)
            }
        }
    }

    /// The patch's outcome: retry at once when the device that failed carries the hook
    /// now; undo a patch that hit another device under the same name.
    pub fn patched(&mut self, outcome: PatchOutcome) -> PatchingStep {
        let wrong = |r: &Self, found: &Identity| {
            format!(
                "{} is now {found} but the failure was on {}: renamed or re-created since, not the device that failed",
                r.dev, r.failed
            )
        };
        match outcome {
            PatchOutcome::Patched { found, .. } if !self.failed.matches(&found) => {
                let detail = format!("{}; unpatching it", wrong(self, &found));
                self.note(Action::Patch, Outcome::WrongDevice, detail, None);
                return PatchingStep::Unpatch;
            }
            PatchOutcome::AlreadyPatched { found } if !self.failed.matches(&found) => {
                // Not patched by this remediation: not ours to undo.
                let detail = format!(
                    "{}; it was already patched, left as it is",
                    wrong(self, &found)
                );
                self.note(Action::Patch, Outcome::WrongDevice, detail, None);
                return PatchingStep::Done(Handled::Unfixed);
            }
            PatchOutcome::Patched { detail, .. } => {
                self.note(Action::Patch, Outcome::Ok, detail, None)
            }
            PatchOutcome::AlreadyPatched { .. } => {
                self.note(Action::Patch, Outcome::Ok, "already patched".into(), None)
            }
            PatchOutcome::Failed(e) => {
                self.note(Action::Patch, Outcome::Failed, e, None);
                return PatchingStep::Done(Handled::Unfixed);
            }
        }
        self.next_attempt()
    }

    /// The undoing of a patch that hit the wrong device: the failure stays unfixed.
    pub fn unpatched(&mut self, outcome: Result<String, String>) -> PatchingStep {
        match outcome {
            Ok(how) => self.note(Action::Unpatch, Outcome::Ok, how, None),
            Err(e) => self.note(Action::Unpatch, Outcome::Failed, e, None),
        }
        PatchingStep::Done(Handled::Unfixed)
    }

    /// The retry command ran past `retry.timeout` and was killed: a failed attempt.
    pub fn retry_timed_out(
        &mut self,
        command: &str,
        timeout: Duration,
        by: KilledBy,
    ) -> PatchingStep {
        let detail = format!(
            "{command} ran past retry.timeout ({timeout:?}): killed its process group ({})",
            by.as_str()
        );
        self.note(
            Action::Retry,
            Outcome::TimedOut,
            detail,
            Some(self.backoff.attempt),
        );
        self.next_attempt()
    }

    /// The retry's outcome (how it retried, or why it could not).
    pub fn retried(&mut self, outcome: Result<String, String>) -> PatchingStep {
        match outcome {
            Ok(how) => {
                self.note(Action::Retry, Outcome::Ok, how, Some(self.backoff.attempt));
                PatchingStep::Verify {
                    attempt: self.backoff.attempt,
                    within: self.verify_timeout,
                }
            }
            Err(e) => {
                self.note(
                    Action::Retry,
                    Outcome::Failed,
                    e,
                    Some(self.backoff.attempt),
                );
                self.next_attempt()
            }
        }
    }

    /// What the set-up after the retry showed.
    pub fn verified(&mut self, v: Verified) -> PatchingStep {
        let (outcome, detail) = match v {
            Verified::Succeeded(_) => (
                Outcome::Ok,
                format!("netpoll set-up on {} succeeded", self.dev),
            ),
            Verified::Failed(cause) => (
                Outcome::Failed,
                format!("set-up on {} failed again: {cause}", self.dev),
            ),
            Verified::TimedOut => (
                Outcome::Failed,
                format!(
                    "no set-up on {} seen within {:?}",
                    self.dev, self.verify_timeout
                ),
            ),
        };
        match outcome {
            Outcome::Ok => {
                self.proof(Action::Verify, detail, &[Evidence::Setup]);
                PatchingStep::Done(Handled::Fixed)
            }
            _ => {
                self.note(Action::Verify, outcome, detail, Some(self.backoff.attempt));
                self.next_attempt()
            }
        }
    }

    /// The journal entries decided since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// The next retry (the first at once, then after a doubling wait), or give up.
    fn next_attempt(&mut self) -> PatchingStep {
        match self.backoff.next() {
            Some((attempt, after)) => PatchingStep::Retry { attempt, after },
            None => PatchingStep::Done(Handled::Unfixed),
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

/// Whether `out` verifies a retry on `dev` made at `since_ns` (CLOCK_MONOTONIC): the first
/// set-up attempt involving it that started then or later. An older one (a failure that
/// was still on its way, e.g. modprobe's own second try) says nothing about the retry.
pub fn verification(
    out: &Output,
    dev: &str,
    target: Option<&TargetOf>,
    since_ns: u64,
) -> Option<Verified> {
    let Output::Attempt(a, diag) = out else {
        return None;
    };
    let ours = match target {
        // Another target on the same device says nothing about this one.
        Some(t) => t.is(&a.root),
        None => a.records().any(|r| r.dev.as_deref() == Some(dev)),
    };
    if a.root.ts_ns < since_ns || !ours {
        return None;
    }
    Some(match diag {
        None => Verified::Succeeded(a.root.ts_ns),
        Some(d) => Verified::Failed(d.cause.as_str().to_string()),
    })
}

/// Per target (per device for a set-up with no owner): entry time of its latest
/// successful set-up. A failure older than that is superseded: the target works now.
#[derive(Debug, Default)]
pub struct Successes {
    latest: HashMap<String, u64>,
}

impl Successes {
    fn key_of(root: &SetupRecord) -> Option<String> {
        match TargetOf::of(root) {
            Some(t) => Some(t.key()),
            None => root.dev.as_ref().map(|d| format!("device {d}")),
        }
    }

    /// Remembers a successful attempt.
    pub fn note(&mut self, a: &Attempt) {
        if let Some(k) = Self::key_of(&a.root) {
            self.latest.insert(k, a.root.ts_ns);
        }
    }

    /// A set-up of the same target as `root` (the same device, without an owner)
    /// succeeded after `root` began.
    pub fn superseded(&self, root: &SetupRecord) -> bool {
        Self::key_of(root)
            .and_then(|k| self.latest.get(&k))
            .is_some_and(|ok| *ok > root.ts_ns)
    }
}
