//! What both machines use: the journal entry (`Note`), how handling ends, the signal
//! that ended a killed command, what a verification saw, and the retries' backoff.

use std::time::Duration;

use crate::model::{
    config::AgentConfig,
    remediation::{Action, Evidence, Outcome},
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
pub(super) struct Backoff {
    /// Attempts made so far (the current one's number).
    pub(super) attempt: u32,
    /// Wait before the next attempt after this one.
    wait: Duration,
    max_attempts: u32,
}

impl Backoff {
    pub(super) fn new(cfg: &AgentConfig) -> Self {
        Self {
            attempt: 0,
            wait: cfg.backoff,
            max_attempts: cfg.max_attempts,
        }
    }

    /// The next attempt's number and how long to wait before it; None once all were made.
    pub(super) fn next(&mut self) -> Option<(u32, Duration)> {
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
