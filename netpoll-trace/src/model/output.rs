//! What flows from the pipeline (and the agent, and `dump`) to the sinks: one value
//! per contract object group, and the one `Sink` trait every sink implements. The
//! trait lives here, beside the data, so the pipeline pushes to sinks without
//! depending on any of them.

use super::{
    correlate::Attempt,
    diagnosis::Diagnosis,
    poll::{PollSummary, SlowPoll},
    recorder::{CounterLine, Losses, RecorderLine},
    remediation::Remediation,
    send::{SendNotice, SendSummary},
    target::TargetEvent,
};

// Attempts are by far the most frequent output: boxing keeps the enum small.
#[derive(Debug, Clone)]
pub enum Output {
    /// A finished set-up attempt and, when it failed, its diagnosis.
    Attempt(Box<Attempt>, Option<Box<Diagnosis>>),
    SlowPoll(SlowPoll),
    /// Every device's send-path statistics: periodic while running (`last` false, for
    /// metrics), then once more at the end (`last` true, for reports).
    SendStats {
        stats: Vec<SendSummary>,
        last: bool,
    },
    /// A message dropped, or a slow send.
    Send(SendNotice),
    /// A netconsole target enabled, disabled, stopped or re-enabled.
    Target(TargetEvent),
    /// Every device's poll statistics: periodic while running (`last` false, for
    /// metrics), then once more at the end (`last` true, for reports).
    PollStats {
        stats: Vec<PollSummary>,
        last: bool,
    },
    /// The kernel dropped this many events (perf buffer full).
    Lost(u64),
    /// The programs' loss counters so far (`LOSSES`), per kind: periodic while
    /// running, for metrics.
    Losses(Losses),
    /// netpoll-trace itself dropped `count` items of `what` to stay within its bounds.
    Dropped {
        what: Dropped,
        count: u64,
    },
    /// Something the user should know (undecodable event, ...).
    Warning(String),
    /// An agent journal entry.
    Remediation(Remediation),
    /// The late programs attached (`watch`: after `ready`).
    LateReady(crate::model::ready::LateReady),
    /// The console write's probe attached or detached (`watch`: while a known target's
    /// device is down). A line on stderr, not in the JSON.
    ConsoleWrite(crate::model::console_gate::GateReport),
    /// A flight recorder's header (dumps).
    Recorder(Box<RecorderLine>),
    /// The recorder's counters: calls per device, function and result (dumps).
    Counters(Vec<CounterLine>),
    /// A line read back from a file that is passed on as it was (`dump --from`).
    Passthrough {
        kind: String,
        value: serde_json::Value,
    },
}

impl Output {
    /// The devices the output is about; empty for outputs about no device.
    pub fn devices(&self) -> Vec<Option<&str>> {
        match self {
            Self::Attempt(a, _) => a.records().map(|r| r.dev.as_deref()).collect(),
            Self::SlowPoll(p) => vec![p.dev.as_deref()],
            Self::Send(n) => vec![n.dev()],
            Self::Target(t) => vec![t.dev.as_deref()],
            Self::Remediation(r) => vec![r.dev.as_deref()],
            Self::Counters(c) => c.iter().map(|c| c.dev.as_deref()).collect(),
            Self::PollStats { .. }
            | Self::SendStats { .. }
            | Self::Lost(_)
            | Self::Losses(_)
            | Self::Dropped { .. }
            | Self::Warning(_)
            | Self::Recorder(_)
            | Self::LateReady(_)
            | Self::ConsoleWrite(_)
            | Self::Passthrough { .. } => Vec::new(),
        }
    }
}

/// What netpoll-trace drops rather than hold without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// Events the readers could not queue (the queue was full: nobody drained it, e.g.
    /// an agent waiting out a backoff).
    Events,
    /// Kernel log lines no failure claimed, evicted by count or age.
    KernelLog,
    /// Failures the agent had queued while busy with another one (the oldest go).
    Backlog,
}

impl Dropped {
    pub const ALL: [Self; 3] = [Self::Events, Self::KernelLog, Self::Backlog];

    /// The metrics label and the status wording's code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::KernelLog => "kernel_log_lines",
            Self::Backlog => "queued_failures",
        }
    }
}

/// Where outputs go: the terminal, JSON lines, a journal, metrics.
pub trait Sink {
    fn emit(&mut self, out: &Output);

    /// Called once after the last output: flush, report write errors.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Several sinks fed the same outputs, in order.
impl Sink for Vec<Box<dyn Sink>> {
    fn emit(&mut self, out: &Output) {
        for s in self.iter_mut() {
            s.emit(out);
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        let mut first = Ok(());
        for s in self.iter_mut() {
            let r = s.finish();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}
