//! Turns the event stream into finished attempts, live: records are enriched as they
//! arrive, and an attempt is complete once its outermost call returned and the grace
//! period for nested records from other CPUs passed; then it is correlated and
//! diagnosed (the model's work). A nested record whose outermost call never shows
//! (its return was missed, or it began before we attached) is reported on its own
//! after `ORPHAN_AFTER`, not held until exit. A tear-down waits while a set-up that began
//! before it is still in its grace period, so a netpoll's events come out in kernel order
//! (set-up, enabled, then disabled; never the disable before the set-up it ended).

use std::time::{Duration, Instant};

use super::{
    enrich::{Enricher, host_context},
    readers::Msg,
};
use crate::{
    kernel::{clock, kmsg::KmsgReader},
    model::{
        correlate,
        diagnosis::{self, Context},
        event::SetupRecord,
        kernel_log::KernelLog,
        output::{Dropped, Output},
        target::{Lifecycle, Teardown},
    },
};

/// How long a returned outermost call waits for nested records from other CPUs.
pub const GRACE: Duration = Duration::from_millis(100);

/// How long a nested record waits for its outermost call's record. A nested call
/// returns just before its parent (netpoll_setup's carrier wait comes before its
/// __netpoll_setup), so a parent this late is not coming.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(10);

pub struct Assembler {
    enricher: Enricher,
    ctx: Context,
    pub kernel_log: KernelLog,
    kmsg: Option<KmsgReader>,
    /// Records not yet reported, with when each arrived.
    buffer: Vec<(SetupRecord, Instant)>,
    /// Outermost calls that have returned: (pid, entry ts, return ts, when it arrived).
    roots: Vec<(u32, u64, u64, Instant)>,
    /// Netconsole targets' states, from finished set-ups and tear-downs.
    pub targets: Lifecycle,
    /// Tear-downs waiting for set-ups that began before them.
    held: Vec<Teardown>,
}

impl Assembler {
    pub fn new(kmsg: Option<KmsgReader>) -> Self {
        Self {
            enricher: Enricher::lazy(),
            ctx: host_context(),
            kernel_log: KernelLog::default(),
            kmsg,
            buffer: Vec::new(),
            roots: Vec::new(),
            targets: Lifecycle::default(),
            held: Vec::new(),
        }
    }

    /// Waits until records can be enriched (the symbol table is read); cancel-safe.
    pub async fn ready(&mut self) {
        self.enricher.ready().await;
    }

    /// True while `ready` would wait.
    pub fn is_pending(&self) -> bool {
        self.enricher.is_pending()
    }

    pub fn take(&mut self, msg: Msg) -> Vec<Output> {
        match msg {
            Msg::Setup(mut r) => {
                self.enricher.enrich(&mut r);
                if r.depth == 0 {
                    let end = r.ts_ns.saturating_add(r.duration_ns);
                    self.roots.push((r.pid, r.ts_ns, end, Instant::now()));
                }
                self.buffer.push((r, Instant::now()));
                Vec::new()
            }
            Msg::SlowPoll(p) => vec![Output::SlowPoll(p)],
            Msg::Send(n) => vec![Output::Send(n)],
            Msg::Teardown(t) => {
                self.held.push(t);
                self.release_teardowns(false)
            }
            Msg::Lost(n) => vec![Output::Lost(n)],
            Msg::BadSample(e) => vec![Output::Warning(format!("undecodable event: {e}"))],
        }
    }

    /// Finishes attempts whose outermost call returned over GRACE ago, and nested
    /// records that waited ORPHAN_AFTER for theirs (all when `all`).
    pub fn flush(&mut self, all: bool) -> Vec<Output> {
        self.flush_at(Instant::now(), all)
    }

    fn flush_at(&mut self, now: Instant, all: bool) -> Vec<Output> {
        let age = |at: &Instant| now.saturating_duration_since(*at);
        let due: Vec<(u32, u64, u64)> = self
            .roots
            .iter()
            .filter(|(_, _, _, at)| all || age(at) >= GRACE)
            .map(|(pid, ts, end, _)| (*pid, *ts, *end))
            .collect();
        let orphans = self.buffer.iter().any(|(_, at)| age(at) >= ORPHAN_AFTER);
        if due.is_empty() && !orphans && (!all || self.buffer.is_empty()) {
            return self.release_teardowns(all);
        }
        self.roots
            .retain(|(pid, ts, end, _)| !due.contains(&(*pid, *ts, *end)));
        let now = clock::monotonic_ns();
        if let Some(k) = self.kmsg.as_mut() {
            let log = &mut self.kernel_log;
            k.drain(|line| log.push(line, now));
        }
        self.kernel_log.expire(now);
        let mut ready = Vec::new();
        let mut keep = Vec::new();
        for (r, at) in std::mem::take(&mut self.buffer) {
            let belongs = all
                || age(&at) >= ORPHAN_AFTER
                || due.iter().any(|&(pid, ts, end)| {
                    r.pid == pid
                        && r.ts_ns >= ts
                        && r.ts_ns <= end
                        && (r.depth > 0 || r.ts_ns == ts)
                });
            if belongs {
                ready.push(r)
            } else {
                keep.push((r, at))
            }
        }
        self.buffer = keep;
        for r in &mut ready {
            self.enricher.symbolize(r);
        }
        // Interfaces come and go while an agent runs: look again when diagnosing.
        self.ctx = host_context();
        let mut out: Vec<Output> = Vec::new();
        for attempt in correlate::group(ready) {
            let d = diagnosis::diagnose(&attempt, &self.ctx, &mut self.kernel_log);
            let target = self.targets.on_setup(&attempt.root);
            out.push(Output::Attempt(Box::new(attempt), d.map(Box::new)));
            out.extend(target.map(Output::Target));
        }
        out.extend(self.release_teardowns(all));
        let evicted = self.kernel_log.take_evicted();
        if evicted > 0 {
            out.push(Output::Dropped {
                what: Dropped::KernelLog,
                count: evicted,
            });
        }
        out
    }
}

impl Assembler {
    /// The held tear-downs that no buffered set-up of their netpoll began before (all
    /// when `all`), in kernel order, as target events.
    fn release_teardowns(&mut self, all: bool) -> Vec<Output> {
        let buffer = &self.buffer;
        let waits = |t: &Teardown| {
            buffer
                .iter()
                .any(|(r, _)| r.netpoll_addr == t.netpoll_addr && r.ts_ns < t.ts_ns)
        };
        let (mut go, stay): (Vec<Teardown>, Vec<Teardown>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|t| all || !waits(t));
        self.held = stay;
        go.sort_by_key(|t| t.ts_ns);
        go.iter()
            .filter_map(|t| self.targets.on_teardown(t))
            .map(Output::Target)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{correlate::tests::rec, event::SetupFn};

    fn attempts(outs: &[Output]) -> Vec<(Option<String>, u32, usize)> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Attempt(a, _) => Some((a.root.dev.clone(), a.root.depth, a.nested.len())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_nested_record_whose_parent_never_comes_is_reported_after_the_timeout() {
        let mut a = Assembler::new(None);
        // __netpoll_setup returned; netpoll_setup's return was missed.
        a.take(Msg::Setup(rec(
            SetupFn::InnerNetpollSetup,
            "eth0",
            1,
            1_000,
            50,
            -524,
        )));
        let start = Instant::now();
        assert!(
            attempts(&a.flush_at(start + GRACE, false)).is_empty(),
            "its parent may still come"
        );
        let out = a.flush_at(start + ORPHAN_AFTER + GRACE, false);
        assert_eq!(attempts(&out), [(Some("eth0".to_string()), 1, 0)]);
        assert!(
            a.flush_at(start + ORPHAN_AFTER * 2, true).is_empty(),
            "reported once"
        );
    }

    #[test]
    fn a_nested_record_waits_for_its_parent_and_joins_it() {
        let mut a = Assembler::new(None);
        a.take(Msg::Setup(rec(
            SetupFn::InnerNetpollSetup,
            "eth0",
            1,
            1_100,
            50,
            -524,
        )));
        a.take(Msg::Setup(rec(
            SetupFn::NetpollSetup,
            "eth0",
            0,
            1_000,
            500,
            -524,
        )));
        let out = a.flush_at(Instant::now() + GRACE, false);
        assert_eq!(attempts(&out), [(Some("eth0".to_string()), 0, 1)]);
    }

    /// `modprobe netconsole ...; rmmod netconsole` under one watch: the tear-down arrives
    /// while the set-up waits out its grace period. Kernel order: the set-up, enabled,
    /// then disabled (the disable used to come first, and a late "enabled" last).
    #[test]
    fn a_teardown_waits_for_the_setup_it_ended() {
        use crate::model::target::{Change, StopCause};
        let mut a = Assembler::new(None);
        let setup = rec(SetupFn::NetpollSetup, "eth0", 0, 1_000, 500, 0);
        let teardown = Teardown {
            ts_ns: 2_000,
            owner: setup.netpoll.clone(),
            dev: Some("eth0".into()),
            ifindex: Some(2),
            remote: setup.remote.clone(),
            cause: StopCause::Disabled,
            pid: 101,
            comm: Some("rmmod".into()),
            netpoll_addr: setup.netpoll_addr,
            dev_addr: 0,
        };
        assert!(a.take(Msg::Setup(setup)).is_empty());
        assert!(
            a.take(Msg::Teardown(teardown)).is_empty(),
            "held behind the set-up"
        );
        let out = a.flush_at(Instant::now() + GRACE, false);
        let order: Vec<String> = out
            .iter()
            .map(|o| match o {
                Output::Attempt(..) => "setup".to_string(),
                Output::Target(t) => format!("{:?}", t.event),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            order,
            [
                "setup".to_string(),
                format!("{:?}", Change::Enabled),
                format!("{:?}", Change::Disabled)
            ]
        );
    }

    /// A tear-down with no set-up before it buffered comes out at once.
    #[test]
    fn a_lone_teardown_is_reported_at_once() {
        use crate::model::target::StopCause;
        let mut a = Assembler::new(None);
        let t = Teardown {
            ts_ns: 2_000,
            owner: Some("netconsole".into()),
            dev: Some("eth0".into()),
            ifindex: Some(2),
            remote: None,
            cause: StopCause::DeviceUnregistered,
            pid: 1,
            comm: None,
            netpoll_addr: 1,
            dev_addr: 0,
        };
        assert_eq!(a.take(Msg::Teardown(t)).len(), 1);
    }
}
