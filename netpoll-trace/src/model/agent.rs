//! The agent's decisions for one failure, as a state machine fed with facts (pure).
//! `begin` takes a diagnosis; the runner carries out each `Next` (patch, retry after a
//! wait, wait for a verifying set-up) and reports how it went with `patched`,
//! `retried` and `verified`. Every decision is journaled as a `Note`; the runner adds
//! the clock and writes them. Nothing here touches the system.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    path::Path,
    time::Duration,
};

use super::{
    config::{AgentConfig, TargetStopped},
    correlate::Attempt,
    diagnosis::Diagnosis,
    output::Output,
    policy::{self, Decision},
    remediation::{Action, Evidence, Outcome},
    send::SendSummary,
    target::{Change, StopCause, TargetEvent, TargetState},
};

/// A journal entry the runner stamps and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub action: Action,
    pub result: Outcome,
    pub detail: String,
    pub attempt: Option<u32>,
    /// What a successful verification showed (empty for every other entry).
    pub proved: Vec<Evidence>,
}

impl Note {
    pub fn new(action: Action, result: Outcome, detail: String, attempt: Option<u32>) -> Note {
        Note {
            action,
            result,
            detail,
            attempt,
            proved: Vec::new(),
        }
    }
}

/// How handling one failure ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Fixed,
    Unfixed,
}

/// What the runner does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
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

/// How long a retry command has after SIGTERM before its process group gets SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// The signal that ended a retry command that had to be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KilledBy {
    Term,
    Kill,
}

impl KilledBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Kill => "SIGKILL",
        }
    }
}

/// The journal entry for a retry command killed because the agent is stopping (the
/// remediation it belonged to ends with the agent).
pub fn killed_on_stop(command: &str, by: KilledBy, attempt: u32) -> Note {
    Note::new(
        Action::Retry,
        Outcome::Killed,
        format!(
            "{command} was still running when the agent was asked to stop: killed its process group ({})",
            by.as_str()
        ),
        Some(attempt),
    )
}

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

/// The set-up that followed a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// It succeeded; entry time of the set-up.
    Succeeded(u64),
    /// It failed again, with this cause.
    Failed(String),
    /// None came within the verify timeout.
    TimedOut,
}

/// The longest wait between retries: doubling stops here (a configured `backoff`
/// longer than this is kept as it is, never doubled).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Attempts at one remedy: the first at once, then after a doubling wait (capped by
/// MAX_BACKOFF, or the configured wait when that is longer), at most `max_attempts`.
#[derive(Debug)]
struct Backoff {
    /// Attempts made so far (the current one's number).
    attempt: u32,
    /// Wait before the next attempt after this one.
    wait: Duration,
    max_attempts: u32,
}

impl Backoff {
    fn new(cfg: &AgentConfig) -> Self {
        Self {
            attempt: 0,
            wait: cfg.backoff,
            max_attempts: cfg.max_attempts,
        }
    }

    /// The next attempt's number and how long to wait before it; None once all were made.
    fn next(&mut self) -> Option<(u32, Duration)> {
        if self.attempt >= self.max_attempts {
            return None;
        }
        self.attempt += 1;
        let after = if self.attempt == 1 {
            Duration::ZERO
        } else {
            let w = self.wait;
            self.wait = self.wait.saturating_mul(2).min(MAX_BACKOFF.max(w));
            w
        };
        Some((self.attempt, after))
    }
}

/// One failure being remedied.
#[derive(Debug)]
pub struct Remediation {
    /// The device that failed (what is patched and verified).
    pub dev: String,
    /// What the failure's event saw of that device.
    failed: Identity,
    backoff: Backoff,
    verify_timeout: Duration,
    notes: Vec<Note>,
}

/// Per device: entry time of its latest successful set-up. A failure older than that
/// is superseded: the device works now.
#[derive(Debug, Default)]
pub struct Successes {
    latest: HashMap<String, u64>,
}

impl Successes {
    /// Remembers every device of a successful attempt.
    pub fn note(&mut self, a: &Attempt) {
        for r in a.records() {
            if let Some(dev) = &r.dev {
                self.latest.insert(dev.clone(), r.ts_ns);
            }
        }
    }

    pub fn note_device(&mut self, dev: &str, ts_ns: u64) {
        self.latest.insert(dev.to_string(), ts_ns);
    }

    /// A set-up on `dev` succeeded after `ts_ns`.
    pub fn superseded(&self, dev: &str, ts_ns: u64) -> bool {
        self.latest.get(dev).is_some_and(|ok| *ok > ts_ns)
    }
}

impl Remediation {
    /// The first decision for a diagnosed failure: superseded, reported (policy), a dry
    /// run, or patch.
    pub fn begin(
        d: &Diagnosis,
        failed: &Identity,
        cfg: &AgentConfig,
        dry_run: bool,
        successes: &Successes,
    ) -> (Self, Next) {
        let driver = failed.driver.as_deref();
        let dev = d.failing_device().unwrap_or_default().to_string();
        let mut r = Self {
            dev: dev.clone(),
            failed: failed.clone(),
            backoff: Backoff::new(cfg),
            verify_timeout: cfg.verify_timeout,
            notes: Vec::new(),
        };
        if successes.superseded(&dev, d.ts_ns) {
            r.note(
                Action::Decide,
                Outcome::Superseded,
                "a later set-up on this device succeeded".into(),
                None,
            );
            return (r, Next::Done(Handled::Fixed));
        }
        match policy::decide(d, driver, cfg) {
            Decision::Report { reason } => {
                r.note(Action::Decide, Outcome::Reported, reason, None);
                (r, Next::Done(Handled::Unfixed))
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
                    return (r, Next::Done(Handled::Unfixed));
                }
                (r, Next::Patch)
            }
        }
    }

    /// The patch's outcome: retry at once when the device that failed carries the hook
    /// now; undo a patch that hit another device under the same name.
    pub fn patched(&mut self, outcome: PatchOutcome) -> Next {
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
                return Next::Unpatch;
            }
            PatchOutcome::AlreadyPatched { found } if !self.failed.matches(&found) => {
                // Not patched by this remediation: not ours to undo.
                let detail = format!(
                    "{}; it was already patched, left as it is",
                    wrong(self, &found)
                );
                self.note(Action::Patch, Outcome::WrongDevice, detail, None);
                return Next::Done(Handled::Unfixed);
            }
            PatchOutcome::Patched { detail, .. } => {
                self.note(Action::Patch, Outcome::Ok, detail, None)
            }
            PatchOutcome::AlreadyPatched { .. } => {
                self.note(Action::Patch, Outcome::Ok, "already patched".into(), None)
            }
            PatchOutcome::Failed(e) => {
                self.note(Action::Patch, Outcome::Failed, e, None);
                return Next::Done(Handled::Unfixed);
            }
        }
        self.next_attempt()
    }

    /// The undoing of a patch that hit the wrong device: the failure stays unfixed.
    pub fn unpatched(&mut self, outcome: Result<String, String>) -> Next {
        match outcome {
            Ok(how) => self.note(Action::Unpatch, Outcome::Ok, how, None),
            Err(e) => self.note(Action::Unpatch, Outcome::Failed, e, None),
        }
        Next::Done(Handled::Unfixed)
    }

    /// The retry command ran past `retry.timeout` and was killed: a failed attempt.
    pub fn retry_timed_out(&mut self, command: &str, timeout: Duration, by: KilledBy) -> Next {
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
    pub fn retried(&mut self, outcome: Result<String, String>) -> Next {
        match outcome {
            Ok(how) => {
                self.note(Action::Retry, Outcome::Ok, how, Some(self.backoff.attempt));
                Next::Verify {
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
    pub fn verified(&mut self, v: Verified) -> Next {
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
                Next::Done(Handled::Fixed)
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
    fn next_attempt(&mut self) -> Next {
        match self.backoff.next() {
            Some((attempt, after)) => Next::Retry { attempt, after },
            None => Next::Done(Handled::Unfixed),
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
pub fn verification(out: &Output, dev: &str, since_ns: u64) -> Option<Verified> {
    let Output::Attempt(a, diag) = out else {
        return None;
    };
    if a.root.ts_ns < since_ns || !a.records().any(|r| r.dev.as_deref() == Some(dev)) {
        return None;
    }
    Some(match diag {
        None => Verified::Succeeded(a.root.ts_ns),
        Some(d) => Verified::Failed(d.cause.as_str().to_string()),
    })
}

/// What the runner does next for a stopped target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done(Handled),
    /// Wait until the device named `dev` exists again, at most `within`; report with
    /// `device_back`.
    AwaitDevice {
        dev: String,
        within: Duration,
    },
    /// Wait `after`, then re-enable the target; report with `reenabled` (or
    /// `reenable_timed_out`).
    Reenable {
        attempt: u32,
        after: Duration,
    },
    /// Wait for the target's next set-up, at most `within`; report with `setup_verified`.
    VerifySetup {
        attempt: u32,
        within: Duration,
    },
    /// Take the device's send counters, write a marker line to the kernel log, and wait
    /// at most `within` for its `sent` to grow; report with `send_verified`.
    VerifySend {
        within: Duration,
    },
}

/// How the wait for a stopped target's device ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceBack {
    /// The name exists again (a re-created device has a new ifindex); after `waited`.
    Present {
        ifindex: Option<i32>,
        waited: Duration,
    },
    /// It did not within `device_wait`.
    TimedOut,
    /// The target was set up again meanwhile (its owner, or the kernel): nothing to do.
    TargetUp,
}

/// What the send counters showed after the marker line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendCheck {
    /// `sent` on the device grew from `from` to `to`.
    Grew { from: u64, to: u64 },
    /// It stayed at `sent` through the wait.
    Flat { sent: u64 },
    /// No send statistics arrived within the wait (reading the programs' map failed).
    NoStats,
    /// The marker line could not be written (the counters may still grow by others).
    Marker(String),
}

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
    notes: Vec<Note>,
}

impl Reenabling {
    /// The first decision for a target's change: None for a change that needs none
    /// (enabled, re-enabled; a disable while the policy only reports). A stop is
    /// superseded when `now` (the target's state) shows it up again since, reported
    /// (policy, no device name), journaled only (dry run), or waited on.
    pub fn begin(
        e: &TargetEvent,
        now: Option<&TargetState>,
        cfg: &AgentConfig,
        dry_run: bool,
    ) -> Option<(Self, Step)> {
        let reenable = cfg.target_stopped == TargetStopped::Reenable;
        match e.event {
            Change::Enabled | Change::ReEnabled => return None,
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
            notes: Vec::new(),
        };
        let on = if r.dev.is_empty() {
            String::new()
        } else {
            format!(" on {}", r.dev)
        };
        let what = format!("target {}{on} {} ({})", r.target, e.event.as_str(), e.cause);
        if e.event == Change::Disabled {
            // Its owner's decision: never undone by the agent.
            r.note(
                Action::Decide,
                Outcome::Reported,
                format!("{what}: disabled by its owner, left disabled"),
                None,
            );
            return Some((r, Step::Done(Handled::Fixed)));
        }
        if now.is_some_and(|s| s.target == r.target && s.up() && s.since_ns > e.ts_ns) {
            r.note(
                Action::Decide,
                Outcome::Superseded,
                format!("{what}: set up again since"),
                None,
            );
            return Some((r, Step::Done(Handled::Fixed)));
        }
        if !reenable {
            r.note(
                Action::Decide,
                Outcome::Reported,
                format!("{what}; policy.target_stopped is \"report\""),
                None,
            );
            return Some((r, Step::Done(Handled::Unfixed)));
        }
        if e.cause != StopCause::DeviceUnregistered.as_str() {
            // Seen on 6.12, whose netconsole defers a disable's clean-up to its netdev
            // notifier: a target its owner disabled is torn down there, with no
            // netpoll_cleanup, and looks like a device event. Never re-enabled on that.
            let detail = format!(
                "{what}: only a target whose device unregistered is re-enabled (a disable by its owner can look like a device event)"
            );
            r.note(Action::Decide, Outcome::Reported, detail, None);
            return Some((r, Step::Done(Handled::Unfixed)));
        }
        if r.dev.is_empty() {
            r.note(
                Action::Decide,
                Outcome::Reported,
                format!("{what}: no device name, nothing to wait for"),
                None,
            );
            return Some((r, Step::Done(Handled::Unfixed)));
        }
        r.note(
            Action::Decide,
            Outcome::Ok,
            format!("{what}: re-enable it once {} is back", r.dev),
            None,
        );
        if dry_run {
            r.note(
                Action::WaitDevice,
                Outcome::DryRun,
                format!("would wait up to {:?} for {}", cfg.device_wait, r.dev),
                None,
            );
            r.note(
                Action::Reenable,
                Outcome::DryRun,
                format!("would re-enable {}", r.target),
                None,
            );
            return Some((r, Step::Done(Handled::Unfixed)));
        }
        let dev = r.dev.clone();
        Some((
            r,
            Step::AwaitDevice {
                dev,
                within: cfg.device_wait,
            },
        ))
    }

    /// How the wait for the device ended.
    pub fn device_back(&mut self, b: DeviceBack, within: Duration) -> Step {
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
                self.next_attempt()
            }
            DeviceBack::TimedOut => {
                let detail = format!(
                    "{} did not come back within {within:?}: {} left stopped",
                    self.dev, self.target
                );
                self.note(Action::WaitDevice, Outcome::TimedOut, detail, None);
                Step::Done(Handled::Unfixed)
            }
            DeviceBack::TargetUp => {
                let detail = format!(
                    "{} was set up again while waiting for {}",
                    self.target, self.dev
                );
                self.note(Action::WaitDevice, Outcome::Superseded, detail, None);
                Step::Done(Handled::Fixed)
            }
        }
    }

    /// The re-enable's outcome (how, or why it could not).
    pub fn reenabled(&mut self, outcome: Result<String, String>) -> Step {
        match outcome {
            Ok(how) => {
                self.note(
                    Action::Reenable,
                    Outcome::Ok,
                    how,
                    Some(self.backoff.attempt),
                );
                Step::VerifySetup {
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
    pub fn reenable_timed_out(&mut self, command: &str, timeout: Duration, by: KilledBy) -> Step {
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
    pub fn setup_verified(&mut self, v: Verified) -> Step {
        match v {
            Verified::Succeeded(_) => {
                let detail = format!("{} set up again on {}", self.target, self.dev);
                self.proof(Action::Verify, detail, &[Evidence::Setup]);
                Step::VerifySend {
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
    pub fn send_verified(&mut self, c: SendCheck) -> Step {
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
            Outcome::Ok => self.proof(Action::VerifySend, detail, &[Evidence::Setup, Evidence::Send]),
            _ => self.note(Action::VerifySend, outcome, detail, Some(self.backoff.attempt)),
        }
        Step::Done(handled)
    }

    /// The journal entries decided since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// The marker line written to the kernel log to see the target send.
    pub fn marker(&self) -> String {
        format!(
            "netpoll-trace agent: {} re-enabled on {}",
            self.target, self.dev
        )
    }

    /// The next re-enable (the first at once, then after a doubling wait), or give up.
    fn next_attempt(&mut self) -> Step {
        match self.backoff.next() {
            Some((attempt, after)) => Step::Reenable { attempt, after },
            None => Step::Done(Handled::Unfixed),
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
        Output::Attempt(_, Some(_)) => verification(out, dev, since_ns),
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

/// What to keep: a dry run only reads the kernel log; serving metrics, or checking that
/// a re-enabled target sends, re-reads maps.
pub fn needs(dry_run: bool, reading_maps: bool) -> Vec<Need> {
    let mut needs = if dry_run {
        vec![Need::ReadKernelLog]
    } else {
        // No CAP_DAC_OVERRIDE: every file it writes after start-up (the module's
        // parameters, configfs targets, its journal) is root's with the owner's write bit.
        vec![Need::LoadModules, Need::ReadKernelLog]
    };
    if reading_maps {
        needs.push(Need::ReadBpfMaps);
    }
    needs
}

/// What a retry command gets: loading netconsole (the usual `modprobe netconsole ...`)
/// and nothing else, whatever the agent itself keeps.
pub fn retry_command_needs() -> Vec<Need> {
    vec![Need::LoadModules]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        config::{PolicyAction, TargetStopped},
        correlate::tests::rec,
        diagnosis::Cause,
        event::SetupFn,
        policy::tests::diag_at as diag,
    };

    fn cfg() -> AgentConfig {
        AgentConfig {
            allowed_drivers: vec!["virtio_net".into()],
            missing_poll_controller: PolicyAction::Patch,
            max_attempts: 3,
            backoff: Duration::from_secs(2),
            verify_timeout: Duration::from_secs(10),
            ..AgentConfig::default()
        }
    }

    /// The failing eth0 as its event saw it.
    fn virtio() -> Identity {
        Identity {
            ifindex: Some(2),
            driver: Some("virtio_net".into()),
        }
    }

    fn actions(notes: &[Note]) -> Vec<(Action, Outcome)> {
        notes.iter().map(|n| (n.action, n.result)).collect()
    }

    #[test]
    fn patch_retry_verify_fixes_an_allowed_driver() {
        let d = diag(Cause::MissingPollController, 100);
        let (mut r, next) = Remediation::begin(&d, &virtio(), &cfg(), false, &Successes::default());
        assert_eq!(next, Next::Patch);
        assert_eq!(
            r.patched(PatchOutcome::Patched {
                detail: "ops a -> b".into(),
                found: virtio()
            }),
            Next::Retry {
                attempt: 1,
                after: Duration::ZERO
            }
        );
        assert_eq!(
            r.retried(Ok("wrote 1 to enabled".into())),
            Next::Verify {
                attempt: 1,
                within: Duration::from_secs(10)
            }
        );
        assert_eq!(
            r.verified(Verified::Succeeded(200)),
            Next::Done(Handled::Fixed)
        );
        let notes = r.take_notes();
        assert_eq!(
            actions(&notes),
            [
                (Action::Decide, Outcome::Ok),
                (Action::Patch, Outcome::Ok),
                (Action::Retry, Outcome::Ok),
                (Action::Verify, Outcome::Ok)
            ]
        );
        assert_eq!(
            notes[0].detail,
            "driver virtio_net is allowed: patch, then retry"
        );
        assert_eq!(notes[2].attempt, Some(1));
        assert_eq!(notes[3].detail, "netpoll set-up on eth0 succeeded");
        // A set-up proves the set-up, nothing more; the other steps prove nothing.
        assert_eq!(notes[3].proved, [Evidence::Setup]);
        assert!(notes[..3].iter().all(|n| n.proved.is_empty()));
    }

    #[test]
    fn other_causes_and_drivers_outside_the_allowlist_are_reported() {
        let (mut r, next) = Remediation::begin(
            &diag(Cause::NetpollDisabled, 1),
            &virtio(),
            &cfg(),
            false,
            &Successes::default(),
        );
        assert_eq!(next, Next::Done(Handled::Unfixed));
        assert_eq!(
            actions(&r.take_notes()),
            [(Action::Decide, Outcome::Reported)]
        );
        let (mut r, next) = Remediation::begin(
            &diag(Cause::MissingPollController, 1),
            &Identity {
                driver: Some("ena".into()),
                ..virtio()
            },
            &cfg(),
            false,
            &Successes::default(),
        );
        assert_eq!(next, Next::Done(Handled::Unfixed));
        assert!(r.take_notes()[0].detail.contains("not in allowed_drivers"));
    }

    #[test]
    fn a_dry_run_journals_what_it_would_do_and_changes_nothing() {
        let (mut r, next) = Remediation::begin(
            &diag(Cause::MissingPollController, 1),
            &virtio(),
            &cfg(),
            true,
            &Successes::default(),
        );
        assert_eq!(next, Next::Done(Handled::Unfixed));
        let notes = r.take_notes();
        assert_eq!(
            actions(&notes),
            [
                (Action::Decide, Outcome::Ok),
                (Action::Patch, Outcome::DryRun),
                (Action::Retry, Outcome::DryRun)
            ]
        );
        assert_eq!(
            notes[1].detail,
            "would patch eth0 with the default module path"
        );
    }

    #[test]
    fn a_later_success_supersedes_an_older_failure() {
        let mut ok = Successes::default();
        ok.note(&Attempt {
            root: rec(SetupFn::NetpollSetup, "eth0", 0, 500, 10, 0),
            nested: vec![],
        });
        let (mut r, next) = Remediation::begin(
            &diag(Cause::MissingPollController, 100),
            &virtio(),
            &cfg(),
            false,
            &ok,
        );
        assert_eq!(next, Next::Done(Handled::Fixed));
        assert_eq!(
            actions(&r.take_notes()),
            [(Action::Decide, Outcome::Superseded)]
        );
        // A success before the failure does not.
        let (_, next) = Remediation::begin(
            &diag(Cause::MissingPollController, 900),
            &virtio(),
            &cfg(),
            false,
            &ok,
        );
        assert_eq!(next, Next::Patch);
    }

    #[test]
    fn retries_back_off_doubling_until_the_attempts_run_out() {
        let (mut r, _) = Remediation::begin(
            &diag(Cause::MissingPollController, 1),
            &virtio(),
            &cfg(),
            false,
            &Successes::default(),
        );
        assert_eq!(
            r.patched(PatchOutcome::AlreadyPatched { found: virtio() }),
            Next::Retry {
                attempt: 1,
                after: Duration::ZERO
            }
        );
        assert_eq!(
            r.retried(Err("no target".into())),
            Next::Retry {
                attempt: 2,
                after: Duration::from_secs(2)
            }
        );
        assert!(matches!(
            r.retried(Ok("ran".into())),
            Next::Verify { attempt: 2, .. }
        ));
        assert_eq!(
            r.verified(Verified::Failed("missing_poll_controller".into())),
            Next::Retry {
                attempt: 3,
                after: Duration::from_secs(4)
            }
        );
        assert!(matches!(
            r.retried(Ok("ran".into())),
            Next::Verify { attempt: 3, .. }
        ));
        assert_eq!(r.verified(Verified::TimedOut), Next::Done(Handled::Unfixed));
        let notes = r.take_notes();
        assert_eq!(notes[1].detail, "already patched");
        assert_eq!(
            notes.last().unwrap().detail,
            "no set-up on eth0 seen within 10s"
        );
        assert_eq!(
            notes.iter().filter(|n| n.action == Action::Retry).count(),
            3
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let cfg = AgentConfig {
            max_attempts: 20,
            ..cfg()
        };
        let (mut r, _) = Remediation::begin(
            &diag(Cause::MissingPollController, 1),
            &virtio(),
            &cfg,
            false,
            &Successes::default(),
        );
        let mut next = r.patched(PatchOutcome::AlreadyPatched { found: virtio() });
        let mut waits = Vec::new();
        while let Next::Retry { after, .. } = next {
            waits.push(after.as_secs());
            next = r.retried(Err("no target".into()));
        }
        assert_eq!(waits.len(), 20);
        assert_eq!(waits[..10], [0, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert!(waits[10..].iter().all(|w| *w == 600), "{waits:?}");
        // A configured backoff above the cap stays as configured.
        let cfg = AgentConfig {
            backoff: Duration::from_secs(900),
            ..cfg
        };
        let (mut r, _) = Remediation::begin(
            &diag(Cause::MissingPollController, 1),
            &virtio(),
            &cfg,
            false,
            &Successes::default(),
        );
        r.patched(PatchOutcome::AlreadyPatched { found: virtio() });
        assert_eq!(
            r.retried(Err("x".into())),
            Next::Retry {
                attempt: 2,
                after: Duration::from_secs(900)
            }
        );
        assert_eq!(
            r.retried(Err("x".into())),
            Next::Retry {
                attempt: 3,
                after: Duration::from_secs(900)
            }
        );
    }

    #[test]
    fn a_failed_patch_ends_without_retrying() {
        let (mut r, _) = Remediation::begin(
            &diag(Cause::MissingPollController, 1),
            &virtio(),
            &cfg(),
            false,
            &Successes::default(),
        );
        assert_eq!(
            r.patched(PatchOutcome::Failed("eth0: refused".into())),
            Next::Done(Handled::Unfixed)
        );
        assert_eq!(
            actions(&r.take_notes())[1],
            (Action::Patch, Outcome::Failed)
        );
    }

    #[test]
    fn the_first_set_up_on_the_device_verifies() {
        let ok = Output::Attempt(
            Box::new(Attempt {
                root: rec(SetupFn::NetpollSetup, "eth0", 0, 7, 1, 0),
                nested: vec![],
            }),
            None,
        );
        let other = Output::Attempt(
            Box::new(Attempt {
                root: rec(SetupFn::NetpollSetup, "eth1", 0, 8, 1, 0),
                nested: vec![],
            }),
            None,
        );
        assert_eq!(verification(&ok, "eth0", 0), Some(Verified::Succeeded(7)));
        assert_eq!(verification(&ok, "eth0", 7), Some(Verified::Succeeded(7)));
        assert_eq!(verification(&other, "eth0", 0), None);
        assert_eq!(verification(&Output::Lost(1), "eth0", 0), None);
        let failed = Output::Attempt(
            Box::new(Attempt {
                root: rec(SetupFn::NetpollSetup, "eth0", 0, 9, 1, -524),
                nested: vec![],
            }),
            Some(Box::new(diag(Cause::MissingPollController, 9))),
        );
        assert_eq!(
            verification(&failed, "eth0", 0),
            Some(Verified::Failed("missing_poll_controller".into()))
        );
        // A failure from before the retry (seen on 4.14: busybox modprobe's second try of
        // the trigger arrived while the agent verified) is not the retry's result.
        assert_eq!(verification(&failed, "eth0", 10), None);
    }

    fn stop(event: Change, cause: &'static str) -> TargetEvent {
        TargetEvent {
            kind: "target",
            ts_ns: 1_000,
            target: "netconsole@10.0.2.2:6666".into(),
            event,
            cause,
            owner: Some("netconsole".into()),
            dev: Some("eth1.100".into()),
            remote: Some("10.0.2.2:6666".into()),
            pid: 7,
            comm: Some("ip".into()),
            netpoll_addr: 0x1000,
        }
    }

    fn reenabling() -> AgentConfig {
        AgentConfig {
            target_stopped: TargetStopped::Reenable,
            device_wait: Duration::from_secs(30),
            ..cfg()
        }
    }

    fn sent(dev: &str, ifindex: i32, sent: u64) -> SendSummary {
        let mut s = crate::model::send::summarize(&[], 0);
        s.dev = Some(dev.into());
        s.ifindex = Some(ifindex);
        s.sent = sent;
        s
    }

    #[test]
    fn a_stopped_target_is_waited_for_reenabled_and_verified() {
        let e = stop(Change::Stopped, "device_unregistered");
        let (mut r, next) = Reenabling::begin(&e, None, &reenabling(), false).unwrap();
        assert_eq!(
            next,
            Step::AwaitDevice {
                dev: "eth1.100".into(),
                within: Duration::from_secs(30)
            }
        );
        let back = DeviceBack::Present {
            ifindex: Some(9),
            waited: Duration::from_millis(3200),
        };
        assert_eq!(
            r.device_back(back, Duration::from_secs(30)),
            Step::Reenable {
                attempt: 1,
                after: Duration::ZERO
            }
        );
        assert_eq!(r.ifindex, Some(9));
        assert_eq!(
            r.reenabled(Ok("wrote 1 to t1/enabled".into())),
            Step::VerifySetup {
                attempt: 1,
                within: Duration::from_secs(10)
            }
        );
        assert_eq!(
            r.setup_verified(Verified::Succeeded(2_000)),
            Step::VerifySend {
                within: Duration::from_secs(10)
            }
        );
        assert_eq!(
            r.send_verified(SendCheck::Grew { from: 4, to: 6 }),
            Step::Done(Handled::Fixed)
        );
        let notes = r.take_notes();
        assert_eq!(
            actions(&notes),
            [
                (Action::Decide, Outcome::Ok),
                (Action::WaitDevice, Outcome::Ok),
                (Action::Reenable, Outcome::Ok),
                (Action::Verify, Outcome::Ok),
                (Action::VerifySend, Outcome::Ok)
            ]
        );
        assert_eq!(notes[3].proved, [Evidence::Setup]);
        assert_eq!(notes[4].proved, [Evidence::Setup, Evidence::Send]);
        assert_eq!(
            notes[0].detail,
            "target netconsole@10.0.2.2:6666 on eth1.100 stopped (device_unregistered): re-enable it once eth1.100 is back"
        );
        assert_eq!(notes[1].detail, "eth1.100 is back (ifindex 9) after 3.2s");
        assert_eq!(
            notes[3].detail,
            "netconsole@10.0.2.2:6666 set up again on eth1.100"
        );
        assert_eq!(
            notes[4].detail,
            "eth1.100 sent 2 skb(s) after the marker (4 -> 6)"
        );
        assert_eq!((notes[2].attempt, notes[4].attempt), (Some(1), Some(1)));
        // A device event (joined a master) is reported only: on 6.12 a target disabled by
        // its owner is torn down from netconsole's notifier and looks the same.
        let (mut r, next) = Reenabling::begin(
            &stop(Change::Stopped, "device_event"),
            None,
            &reenabling(),
            false,
        )
        .unwrap();
        assert_eq!(next, Step::Done(Handled::Unfixed));
        let n = r.take_notes().pop().unwrap();
        assert_eq!((n.action, n.result), (Action::Decide, Outcome::Reported));
        assert!(
            n.detail
                .contains("only a target whose device unregistered is re-enabled"),
            "{}",
            n.detail
        );
    }

    #[test]
    fn a_stop_is_only_reported_by_default() {
        let (mut r, next) = Reenabling::begin(
            &stop(Change::Stopped, "device_unregistered"),
            None,
            &cfg(),
            false,
        )
        .unwrap();
        assert_eq!(next, Step::Done(Handled::Unfixed));
        let notes = r.take_notes();
        assert_eq!(actions(&notes), [(Action::Decide, Outcome::Reported)]);
        assert!(
            notes[0]
                .detail
                .ends_with("policy.target_stopped is \"report\""),
            "{}",
            notes[0].detail
        );
        // Disables and enables are none of the reporting agent's business.
        assert!(
            Reenabling::begin(&stop(Change::Disabled, "disabled"), None, &cfg(), false).is_none()
        );
        assert!(
            Reenabling::begin(
                &stop(Change::ReEnabled, "netpoll_setup"),
                None,
                &reenabling(),
                false
            )
            .is_none()
        );
        // A dry run says what it would do.
        let (mut r, next) = Reenabling::begin(
            &stop(Change::Stopped, "device_unregistered"),
            None,
            &reenabling(),
            true,
        )
        .unwrap();
        assert_eq!(next, Step::Done(Handled::Unfixed));
        assert_eq!(
            actions(&r.take_notes()),
            [
                (Action::Decide, Outcome::Ok),
                (Action::WaitDevice, Outcome::DryRun),
                (Action::Reenable, Outcome::DryRun)
            ]
        );
    }

    #[test]
    fn a_device_that_never_returns_times_out() {
        let (mut r, _) = Reenabling::begin(
            &stop(Change::Stopped, "device_unregistered"),
            None,
            &reenabling(),
            false,
        )
        .unwrap();
        assert_eq!(
            r.device_back(DeviceBack::TimedOut, Duration::from_secs(30)),
            Step::Done(Handled::Unfixed)
        );
        let n = r.take_notes().pop().unwrap();
        assert_eq!(
            (n.action, n.result),
            (Action::WaitDevice, Outcome::TimedOut)
        );
        assert_eq!(
            n.detail,
            "eth1.100 did not come back within 30s: netconsole@10.0.2.2:6666 left stopped"
        );
        // Set up again by someone else while the agent waited: nothing left to do.
        let (mut r, _) = Reenabling::begin(
            &stop(Change::Stopped, "device_unregistered"),
            None,
            &reenabling(),
            false,
        )
        .unwrap();
        assert_eq!(
            r.device_back(DeviceBack::TargetUp, Duration::from_secs(30)),
            Step::Done(Handled::Fixed)
        );
        assert_eq!(
            actions(&r.take_notes())[1],
            (Action::WaitDevice, Outcome::Superseded)
        );
    }

    #[test]
    fn a_target_disabled_by_its_owner_is_never_reenabled() {
        let (mut r, next) = Reenabling::begin(
            &stop(Change::Disabled, "disabled"),
            None,
            &reenabling(),
            false,
        )
        .unwrap();
        assert_eq!(next, Step::Done(Handled::Fixed));
        let notes = r.take_notes();
        assert_eq!(actions(&notes), [(Action::Decide, Outcome::Reported)]);
        assert_eq!(
            notes[0].detail,
            "target netconsole@10.0.2.2:6666 on eth1.100 disabled (disabled): disabled by its owner, left disabled"
        );
    }

    #[test]
    fn a_stop_already_followed_by_a_set_up_is_superseded() {
        let e = stop(Change::Stopped, "device_unregistered");
        let up = |since_ns, last| TargetState {
            target: e.target.clone(),
            dev: e.dev.clone(),
            remote: e.remote.clone(),
            last,
            cause: "netpoll_setup",
            since_ns,
            netpoll_addr: 0x1000,
        };
        let (mut r, next) = Reenabling::begin(
            &e,
            Some(&up(2_000, Change::ReEnabled)),
            &reenabling(),
            false,
        )
        .unwrap();
        assert_eq!(next, Step::Done(Handled::Fixed));
        assert_eq!(
            actions(&r.take_notes()),
            [(Action::Decide, Outcome::Superseded)]
        );
        // Still down, or up only before the stop: waited for.
        for s in [up(2_000, Change::Stopped), up(500, Change::Enabled)] {
            let (_, next) = Reenabling::begin(&e, Some(&s), &reenabling(), false).unwrap();
            assert!(matches!(next, Step::AwaitDevice { .. }), "{s:?}");
        }
    }

    #[test]
    fn failed_reenables_back_off_until_the_attempts_run_out() {
        let (mut r, _) = Reenabling::begin(
            &stop(Change::Stopped, "device_unregistered"),
            None,
            &reenabling(),
            false,
        )
        .unwrap();
        r.device_back(
            DeviceBack::Present {
                ifindex: None,
                waited: Duration::ZERO,
            },
            Duration::from_secs(30),
        );
        assert_eq!(
            r.reenabled(Err("no target".into())),
            Step::Reenable {
                attempt: 2,
                after: Duration::from_secs(2)
            }
        );
        assert!(matches!(
            r.reenabled(Ok("x".into())),
            Step::VerifySetup { attempt: 2, .. }
        ));
        assert_eq!(
            r.setup_verified(Verified::Failed("no_ip_address".into())),
            Step::Reenable {
                attempt: 3,
                after: Duration::from_secs(4)
            }
        );
        assert_eq!(
            r.reenable_timed_out(
                "modprobe netconsole",
                Duration::from_secs(5),
                KilledBy::Term
            ),
            Step::Done(Handled::Unfixed)
        );
        let notes = r.take_notes();
        let last = notes.last().unwrap();
        assert_eq!(
            (last.action, last.result, last.attempt),
            (Action::Reenable, Outcome::TimedOut, Some(3))
        );
        assert_eq!(
            notes[notes.len() - 2].detail,
            "set-up of netconsole@10.0.2.2:6666 on eth1.100 failed: no_ip_address"
        );
        // A target that sends nothing after its set-up is not fixed; an unmade check
        // leaves the set-up's verdict.
        for (check, handled, outcome) in [
            (
                SendCheck::Flat { sent: 4 },
                Handled::Unfixed,
                Outcome::Failed,
            ),
            (SendCheck::NoStats, Handled::Fixed, Outcome::TimedOut),
            (
                SendCheck::Marker("EPERM".into()),
                Handled::Fixed,
                Outcome::Failed,
            ),
        ] {
            let (mut r, _) = Reenabling::begin(
                &stop(Change::Stopped, "device_unregistered"),
                None,
                &reenabling(),
                false,
            )
            .unwrap();
            assert_eq!(
                r.send_verified(check.clone()),
                Step::Done(handled),
                "{check:?}"
            );
            assert_eq!(actions(&r.take_notes())[1], (Action::VerifySend, outcome));
        }
    }

    #[test]
    fn the_target_s_next_enable_verifies_a_reenable() {
        let label = "netconsole@10.0.2.2:6666";
        let up = Output::Target(TargetEvent {
            ts_ns: 3_000,
            event: Change::ReEnabled,
            cause: "netpoll_setup",
            ..stop(Change::Stopped, "")
        });
        assert_eq!(
            target_verification(&up, label, "eth1.100", 2_000),
            Some(Verified::Succeeded(3_000))
        );
        assert_eq!(
            target_verification(&up, label, "eth1.100", 4_000),
            None,
            "before the re-enable"
        );
        assert_eq!(
            target_verification(&up, "netconsole@10.0.2.3:6666", "eth1.100", 0),
            None,
            "another target"
        );
        assert!(target_up(&up, label, 1_000) && !target_up(&up, label, 5_000));
        let down = Output::Target(stop(Change::Stopped, "device_unregistered"));
        assert_eq!(target_verification(&down, label, "eth1.100", 0), None);
        let failed = Output::Attempt(
            Box::new(Attempt {
                root: rec(SetupFn::NetpollSetup, "eth1.100", 0, 9, 1, -99),
                nested: vec![],
            }),
            Some(Box::new(diag(Cause::NoIpAddress, 9))),
        );
        assert_eq!(
            target_verification(&failed, label, "eth1.100", 0),
            Some(Verified::Failed("no_ip_address".into()))
        );
        // A success is verified by the target's event, which follows the attempt.
        let ok = Output::Attempt(
            Box::new(Attempt {
                root: rec(SetupFn::NetpollSetup, "eth1.100", 0, 9, 1, 0),
                nested: vec![],
            }),
            None,
        );
        assert_eq!(target_verification(&ok, label, "eth1.100", 0), None);
    }

    #[test]
    fn sends_are_seen_by_the_growth_of_the_device_s_counters() {
        let mut w = SendWatch::new("eth1.100");
        assert!(!w.ready());
        assert_eq!(w.flat(), SendCheck::NoStats);
        // Before the marker: the old device's counters (ifindex 5) and another device.
        assert_eq!(
            w.observe(&[sent("eth1.100", 5, 40), sent("eth0", 2, 7)]),
            None
        );
        assert!(w.ready());
        assert_eq!(
            w.observe(&[sent("eth1.100", 5, 40), sent("eth0", 2, 9)]),
            None,
            "another device sent"
        );
        assert_eq!(w.flat(), SendCheck::Flat { sent: 40 });
        // The re-created device's entry is new: counted from 0.
        assert_eq!(
            w.observe(&[sent("eth1.100", 5, 40), sent("eth1.100", 9, 2)]),
            Some(SendCheck::Grew { from: 0, to: 2 })
        );
        let mut w = SendWatch::new("eth1.100");
        w.observe(&[sent("eth1.100", 9, 3)]);
        assert_eq!(
            w.observe(&[sent("eth1.100", 9, 5)]),
            Some(SendCheck::Grew { from: 3, to: 5 })
        );
    }

    #[test]
    fn the_marker_is_urgent_enough_for_the_consoles() {
        assert_eq!(marker_level("7\t4\t1\t7\n"), Some(5));
        // `quiet`: only levels 0 to 3 reach a console.
        assert_eq!(marker_level("4\t4\t1\t7\n"), Some(3));
        assert_eq!(marker_level("2 4 1 7"), Some(1));
        assert_eq!(marker_level("1\t4\t1\t7"), None);
        assert_eq!(
            marker_level(""),
            Some(5),
            "unreadable: the kernel's default console level lets a notice through"
        );
    }

    #[test]
    fn the_backlog_keeps_target_stops_for_the_agent() {
        let mut b = Backlog::default();
        b.push(Output::Target(stop(Change::Enabled, "netpoll_setup")));
        assert!(b.is_empty());
        b.push(Output::Target(stop(Change::Stopped, "device_unregistered")));
        b.push(Output::Target(stop(Change::Disabled, "disabled")));
        assert!(matches!(b.pop(), Some(Output::Target(t)) if t.event == Change::Stopped));
        assert!(matches!(b.pop(), Some(Output::Target(t)) if t.event == Change::Disabled));
    }

    #[test]
    fn needs_follow_the_mode() {
        assert_eq!(needs(true, false), [Need::ReadKernelLog]);
        assert_eq!(
            needs(false, false),
            [Need::LoadModules, Need::ReadKernelLog]
        );
        assert_eq!(needs(true, true), [Need::ReadKernelLog, Need::ReadBpfMaps]);
    }

    #[test]
    fn a_device_renamed_and_recreated_before_the_patch_is_unpatched() {
        let d = diag(Cause::MissingPollController, 100);
        // The name now stands for a new device (a new ifindex; here a dummy).
        let new = Identity {
            ifindex: Some(9),
            driver: Some("dummy".into()),
        };
        let (mut r, _) = Remediation::begin(&d, &virtio(), &cfg(), false, &Successes::default());
        assert_eq!(
            r.patched(PatchOutcome::Patched {
                detail: "ops a -> b".into(),
                found: new.clone()
            }),
            Next::Unpatch
        );
        assert_eq!(
            r.unpatched(Ok("restored ops a".into())),
            Next::Done(Handled::Unfixed)
        );
        let notes = r.take_notes();
        assert_eq!(
            actions(&notes),
            [
                (Action::Decide, Outcome::Ok),
                (Action::Patch, Outcome::WrongDevice),
                (Action::Unpatch, Outcome::Ok)
            ]
        );
        assert_eq!(
            notes[1].detail,
            "eth0 is now ifindex 9, driver dummy but the failure was on ifindex 2, driver virtio_net: renamed or \
             re-created since, not the device that failed; unpatching it"
        );
        // Same driver, new ifindex: still another device.
        let (mut r, _) = Remediation::begin(&d, &virtio(), &cfg(), false, &Successes::default());
        let found = Identity {
            ifindex: Some(3),
            ..virtio()
        };
        assert_eq!(
            r.patched(PatchOutcome::Patched {
                detail: String::new(),
                found: found.clone()
            }),
            Next::Unpatch
        );
        // Patched by someone else before: reported, never undone by the agent.
        let (mut r, _) = Remediation::begin(&d, &virtio(), &cfg(), false, &Successes::default());
        assert_eq!(
            r.patched(PatchOutcome::AlreadyPatched { found }),
            Next::Done(Handled::Unfixed)
        );
        assert!(
            r.take_notes()[1]
                .detail
                .ends_with("it was already patched, left as it is")
        );
    }

    #[test]
    fn identities_match_on_every_fact_both_sides_know() {
        let unknown = Identity::default();
        assert!(virtio().matches(&virtio()));
        assert!(unknown.matches(&virtio()) && virtio().matches(&unknown));
        assert!(!virtio().matches(&Identity {
            ifindex: Some(3),
            ..virtio()
        }));
        assert!(!virtio().matches(&Identity {
            driver: Some("dummy".into()),
            ..virtio()
        }));
        assert!(
            Identity {
                ifindex: None,
                ..virtio()
            }
            .matches(&Identity {
                ifindex: Some(7),
                ..virtio()
            })
        );
        assert_eq!(unknown.to_string(), "ifindex ?, driver ?");
    }

    #[test]
    fn a_retry_command_past_its_timeout_is_a_failed_attempt_and_journaled() {
        let (mut r, _) = Remediation::begin(
            &diag(Cause::MissingPollController, 1),
            &virtio(),
            &cfg(),
            false,
            &Successes::default(),
        );
        r.patched(PatchOutcome::AlreadyPatched { found: virtio() });
        let next = r.retry_timed_out("sleep 100", Duration::from_secs(3), KilledBy::Kill);
        assert_eq!(
            next,
            Next::Retry {
                attempt: 2,
                after: Duration::from_secs(2)
            }
        );
        let n = r.take_notes().pop().unwrap();
        assert_eq!(
            (n.action, n.result, n.attempt),
            (Action::Retry, Outcome::TimedOut, Some(1))
        );
        assert_eq!(
            n.detail,
            "sleep 100 ran past retry.timeout (3s): killed its process group (SIGKILL)"
        );
        let n = killed_on_stop("sleep 100", KilledBy::Term, 2);
        assert_eq!(
            (n.action, n.result, n.attempt),
            (Action::Retry, Outcome::Killed, Some(2))
        );
        assert!(n.detail.contains("(SIGTERM)"), "{}", n.detail);
    }

    #[test]
    fn the_backlog_keeps_the_newest_attempts_and_counts_the_rest() {
        let attempt = |ts| {
            Output::Attempt(
                Box::new(Attempt {
                    root: rec(SetupFn::NetpollSetup, "eth0", 0, ts, 1, 0),
                    nested: vec![],
                }),
                None,
            )
        };
        let mut b = Backlog::default();
        b.push(Output::Lost(3));
        b.push(Output::Warning("x".into()));
        assert!(b.is_empty());
        for ts in 0..(MAX_BACKLOG as u64 + 10) {
            b.push(attempt(ts));
        }
        assert_eq!(b.take_dropped(), 10);
        assert_eq!(b.take_dropped(), 0);
        let Some(Output::Attempt(first, _)) = b.pop() else {
            panic!("an attempt")
        };
        assert_eq!(first.root.ts_ns, 10);
        let mut n = 1;
        while b.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_BACKLOG);
    }
}
