//! Turns the event stream into finished attempts, live: records are enriched as they
//! arrive, and an attempt is complete once its outermost call returned and the grace
//! period for nested records from other CPUs passed; then it is correlated and
//! diagnosed (the model's work).

use std::time::Duration;

use super::{enrich::{Enricher, host_context}, readers::Msg};
use crate::{
    kernel::{clock, kmsg::KmsgReader},
    model::{
        correlate,
        diagnosis::{self, Context},
        event::SetupRecord,
        kernel_log::KernelLog,
        output::{Dropped, Output},
    },
};

/// How long a returned outermost call waits for nested records from other CPUs.
pub const GRACE: Duration = Duration::from_millis(100);

pub struct Assembler {
    enricher: Enricher,
    ctx: Context,
    pub kernel_log: KernelLog,
    kmsg: Option<KmsgReader>,
    /// Records not yet reported.
    buffer: Vec<SetupRecord>,
    /// Outermost calls that have returned: (pid, entry ts, return ts, when it arrived).
    roots: Vec<(u32, u64, u64, std::time::Instant)>,
}

impl Assembler {
    pub fn new(kmsg: Option<KmsgReader>) -> Self {
        Self {
            enricher: Enricher::new(),
            ctx: host_context(),
            kernel_log: KernelLog::default(),
            kmsg,
            buffer: Vec::new(),
            roots: Vec::new(),
        }
    }

    pub fn take(&mut self, msg: Msg) -> Vec<Output> {
        match msg {
            Msg::Setup(mut r) => {
                self.enricher.enrich(&mut r);
                if r.depth == 0 {
                    let end = r.ts_ns.saturating_add(r.duration_ns);
                    self.roots.push((r.pid, r.ts_ns, end, std::time::Instant::now()));
                }
                self.buffer.push(r);
                Vec::new()
            }
            Msg::SlowPoll(p) => vec![Output::SlowPoll(p)],
            Msg::Lost(n) => vec![Output::Lost(n)],
            Msg::BadSample(e) => vec![Output::Warning(format!("undecodable event: {e}"))],
        }
    }

    /// Finishes attempts whose outermost call returned over GRACE ago (all when `all`).
    pub fn flush(&mut self, all: bool) -> Vec<Output> {
        let due: Vec<(u32, u64, u64)> = self
            .roots
            .iter()
            .filter(|(_, _, _, at)| all || at.elapsed() >= GRACE)
            .map(|(pid, ts, end, _)| (*pid, *ts, *end))
            .collect();
        if due.is_empty() && (!all || self.buffer.is_empty()) {
            return Vec::new();
        }
        self.roots.retain(|(pid, ts, end, _)| !due.contains(&(*pid, *ts, *end)));
        let now = clock::monotonic_ns();
        if let Some(k) = self.kmsg.as_mut() {
            let log = &mut self.kernel_log;
            k.drain(|line| log.push(line, now));
        }
        self.kernel_log.expire(now);
        let mut ready = Vec::new();
        let mut keep = Vec::new();
        for r in std::mem::take(&mut self.buffer) {
            let belongs = all
                || due.iter().any(|&(pid, ts, end)| {
                    r.pid == pid && r.ts_ns >= ts && r.ts_ns <= end && (r.depth > 0 || r.ts_ns == ts)
                });
            if belongs { ready.push(r) } else { keep.push(r) }
        }
        self.buffer = keep;
        // Interfaces come and go while an agent runs: look again when diagnosing.
        self.ctx = host_context();
        let mut out: Vec<Output> = correlate::group(ready)
            .into_iter()
            .map(|attempt| {
                let d = diagnosis::diagnose(&attempt, &self.ctx, &mut self.kernel_log);
                Output::Attempt(Box::new(attempt), d.map(Box::new))
            })
            .collect();
        let evicted = self.kernel_log.take_evicted();
        if evicted > 0 {
            out.push(Output::Dropped { what: Dropped::KernelLog, count: evicted });
        }
        out
    }
}

