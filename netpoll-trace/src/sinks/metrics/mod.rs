//! Prometheus metrics of the agent (`agent --metrics-addr`): counters fed from the
//! pipeline's outputs and the journal, the kernel's per-device `netpoll_poll_dev`
//! log2 histograms as Prometheus histograms, netconsole's delivery (`send`: messages,
//! transmit time, targets' state) and build information. Rendering is
//! pure (prometheus-client's text format 0.0.4); `metrics_http` serves it.
//!
//! Metric names (the contract operators alert on; extend, do not rename):
//! - `netpoll_trace_setups_total{dev,driver,result}`: set-up attempts (outermost
//!   call), `result` = `ok` | `failed`, labelled with the outermost device.
//! - `netpoll_trace_setup_failures_total{dev,driver,cause}`: diagnosed failures,
//!   labelled with the device that failed (the culprit, as in the journal).
//! - `netpoll_trace_remediations_total{action,result}`: journal entries, one per
//!   decision and action, with the journal's own codes.
//! - `netpoll_trace_lost_events_total`: events the kernel dropped (perf buffer full).
//! - `netpoll_trace_dropped_total{what}`: what netpoll-trace itself dropped to stay
//!   bounded: `events` (its event queue was full), `kernel_log_lines` (unclaimed kernel
//!   log lines, by count or age), `queued_failures` (the agent's queue of failures).
//! - `netpoll_trace_poll_duration_seconds{dev,ifindex}`: `netpoll_poll_dev` latency,
//!   one series per device (a device made again under the same name has a new
//!   ifindex, so a new series rather than a duplicate of the old one's labels).
//! - `netpoll_trace_messages_total{dev,result}`: netconsole messages per device by what
//!   became of them, `result` = `sent` | `deferred` | a drop reason (`no_skb`,
//!   `no_npinfo`, `not_running`, `not_present`); the kernel's totals since load.
//! - `netpoll_trace_send_duration_seconds{dev}`: time in netpoll's skb transmit (sent
//!   and deferred messages), from the kernel's log2 histogram as the poll latency is.
//! - `netpoll_trace_target_resumed_total{target,dev}`: the kernel's own resumes (7.3+).
//! - `netpoll_trace_target_up{target,dev}`: 1 after a netconsole target was enabled or
//!   re-enabled, 0 after it was disabled or stopped; one series per target, with the
//!   device of its last change.
//! - `netpoll_trace_build_info{version,kernel,attach_method,object}`: always 1 (`object`:
//!   the eBPF object loaded, `modern` or `legacy`).
//!
//! An unknown label value (a driver sysfs did not name) is the empty string, which
//! Prometheus treats as the label being absent: nothing is invented.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet},
    metrics::{MetricType, counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::model::{
    output::{Dropped, Output, Sink},
    poll::PollSummary,
    remediation::{Action, Outcome},
    send::SendSummary,
    target::TargetEvent,
};

mod histogram;
pub mod http;
mod send;

pub use histogram::Log2Histogram;

/// The content type of what `Metrics::render` produces.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How set-up attempts ended, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetupResult {
    Ok,
    Failed,
}

impl SetupResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SetupLabels {
    dev: String,
    driver: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    dev: String,
    driver: String,
    cause: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RemediationLabels {
    action: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DroppedLabels {
    what: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    kernel: String,
    attach_method: String,
    object: String,
}

/// What `netpoll_trace_build_info` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    pub kernel: String,
    pub attach_method: String,
    /// The eBPF object loaded: `modern` or `legacy`.
    pub object: String,
}

/// One device's poll latency as a Prometheus histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct PromHistogram {
    pub dev: String,
    /// The kernel's ifindex ("" when unknown): with `dev`, what tells devices apart.
    pub ifindex: String,
    pub hist: Log2Histogram,
}

/// One device's poll statistics as a histogram (see `Log2Histogram::from_kernel`).
pub fn poll_histogram(s: &PollSummary) -> PromHistogram {
    PromHistogram {
        dev: s.dev.clone().unwrap_or_default(),
        ifindex: s.ifindex.map(|i| i.to_string()).unwrap_or_default(),
        hist: Log2Histogram::from_kernel(&s.histogram, s.total_ns),
    }
}

/// One histogram per (dev, ifindex) label set: statistics that share both (the kernel
/// keeps them per device object, which a name and an index do not always tell apart)
/// are summed, since a label set given twice makes Prometheus refuse the whole scrape.
pub fn poll_histograms(stats: &[PollSummary]) -> Vec<PromHistogram> {
    let mut out: Vec<PromHistogram> = Vec::with_capacity(stats.len());
    for h in stats.iter().map(poll_histogram) {
        match out
            .iter_mut()
            .find(|o| o.dev == h.dev && o.ifindex == h.ifindex)
        {
            Some(o) => o.hist.add(&h.hist),
            None => out.push(h),
        }
    }
    out
}

/// The latest poll statistics, encoded on every scrape.
#[derive(Debug, Default)]
struct PollCollector {
    latest: Mutex<Vec<PromHistogram>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DevLabel {
    dev: String,
    ifindex: String,
}

impl Collector for PollCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "netpoll_trace_poll_duration_seconds",
            "Latency of netpoll_poll_dev calls per device, from the kernel's log2 histogram",
            None,
            MetricType::Histogram,
        )?;
        for h in latest.iter() {
            let labels = DevLabel {
                dev: h.dev.clone(),
                ifindex: h.ifindex.clone(),
            };
            let Log2Histogram {
                buckets,
                sum_seconds,
                count,
            } = &h.hist;
            family
                .encode_family(&labels)?
                .encode_histogram::<DevLabel>(*sum_seconds, *count, buckets, None)?;
        }
        Ok(())
    }
}

/// Every metric of the agent; cheap to clone (shared state behind Arcs).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    setups: Family<SetupLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    remediations: Family<RemediationLabels, Counter>,
    lost: Counter,
    /// The programs' `LOSSES` by kind (`loss::NAMES`), following the kernel's totals.
    records_lost: Family<LossLabels, Counter>,
    dropped: Family<DroppedLabels, Counter>,
    poll: Arc<PollCollector>,
    send: Arc<send::SendCollector>,
    targets: Arc<send::TargetCollector>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LossLabels {
    kind: &'static str,
}

impl Metrics {
    pub fn new(build: &BuildInfo) -> Self {
        let mut registry = Registry::default();
        let setups = Family::<SetupLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let remediations = Family::<RemediationLabels, Counter>::default();
        let lost = Counter::default();
        let records_lost = Family::<LossLabels, Counter>::default();
        let dropped = Family::<DroppedLabels, Counter>::default();
        for what in Dropped::ALL {
            // Present from the start at 0, so an alert on an increase sees the first one.
            let _ = dropped.get_or_create(&DroppedLabels {
                what: what.as_str(),
            });
        }
        let info = Family::<BuildLabels, Gauge>::default();
        info.get_or_create(&BuildLabels {
            version: build.version.clone(),
            kernel: build.kernel.clone(),
            attach_method: build.attach_method.clone(),
            object: build.object.clone(),
        })
        .set(1);
        let poll = Arc::new(PollCollector::default());
        registry.register(
            "netpoll_trace_build_info",
            "Build and run-time information; the value is always 1",
            info,
        );
        // Registered without "_total": the encoder appends it to counters.
        registry.register(
            "netpoll_trace_setups",
            "netpoll set-up attempts by outermost device and result",
            setups.clone(),
        );
        registry.register(
            "netpoll_trace_setup_failures",
            "Diagnosed netpoll set-up failures by failing device, driver and cause",
            failures.clone(),
        );
        registry.register(
            "netpoll_trace_remediations",
            "Agent journal entries by action and result",
            remediations.clone(),
        );
        registry.register(
            "netpoll_trace_lost_events",
            "Events the kernel dropped (perf buffer full)",
            lost.clone(),
        );
        registry.register(
            "netpoll_trace_programs_lost",
            "What the eBPF programs could not keep, by kind (total since they were loaded)",
            records_lost.clone(),
        );
        registry.register(
            "netpoll_trace_dropped",
            "What netpoll-trace dropped to stay within its bounds, by kind",
            dropped.clone(),
        );
        registry.register_collector(Box::new(poll.clone()));
        let send = Arc::new(send::SendCollector::default());
        registry.register_collector(Box::new(send.clone()));
        let targets = Arc::new(send::TargetCollector::default());
        registry.register_collector(Box::new(targets.clone()));
        Self {
            registry: Arc::new(registry),
            setups,
            failures,
            remediations,
            lost,
            records_lost,
            dropped,
            poll,
            send,
            targets,
        }
    }

    /// Counts what the pipeline produced.
    pub fn observe(&self, outputs: &[Output]) {
        for o in outputs {
            match o {
                Output::Attempt(attempt, diagnosis) => {
                    let root = &attempt.root;
                    let result = if diagnosis.is_some() {
                        SetupResult::Failed
                    } else {
                        SetupResult::Ok
                    };
                    self.setups
                        .get_or_create(&SetupLabels {
                            dev: root.dev.clone().unwrap_or_default(),
                            driver: root.driver.clone().unwrap_or_default(),
                            result: result.as_str(),
                        })
                        .inc();
                    if let Some(d) = diagnosis {
                        let culprit = attempt.culprit();
                        // The failing device, named as the journal names it.
                        let dev = d.failing_device().unwrap_or_default().to_string();
                        let driver = culprit.and_then(|c| c.driver.clone()).unwrap_or_default();
                        self.failures
                            .get_or_create(&FailureLabels {
                                dev,
                                driver,
                                cause: d.cause.as_str(),
                            })
                            .inc();
                    }
                }
                Output::Lost(n) => {
                    self.lost.inc_by(*n);
                }
                Output::Losses(l) => {
                    // Per-CPU totals only grow while the programs are loaded: add what is new.
                    for (kind, n) in l.named() {
                        let c = self.records_lost.get_or_create(&LossLabels { kind });
                        c.inc_by(n.saturating_sub(c.get()));
                    }
                }
                Output::Dropped { what, count } => {
                    self.dropped
                        .get_or_create(&DroppedLabels {
                            what: what.as_str(),
                        })
                        .inc_by(*count);
                }
                Output::Remediation(e) => self.remediation(e.action, e.result),
                Output::PollStats { stats, .. } => self.set_poll(stats),
                Output::SendStats { stats, .. } => self.set_send(stats),
                Output::Target(e) => self.target(e),
                // Single drops and slow sends are already in the send statistics' totals.
                Output::SlowPoll(_)
                | Output::Send(_)
                | Output::Warning(_)
                | Output::Recorder(_)
                | Output::Counters(_)
                | Output::LateReady(_)
                | Output::ConsoleWrite(_)
                | Output::Passthrough { .. } => {}
            }
        }
    }

    /// Counts one journal entry.
    pub fn remediation(&self, action: Action, result: Outcome) {
        self.remediations
            .get_or_create(&RemediationLabels {
                action: action.as_str(),
                result: result.as_str(),
            })
            .inc();
    }

    /// Replaces the poll histograms with the kernel's latest statistics.
    pub fn set_poll(&self, stats: &[PollSummary]) {
        let hists = poll_histograms(stats);
        *self.poll.latest.lock().unwrap_or_else(|p| p.into_inner()) = hists;
    }

    /// Replaces the send metrics with the kernel's latest statistics.
    pub fn set_send(&self, stats: &[SendSummary]) {
        let sends = send::device_sends(stats);
        *self.send.latest.lock().unwrap_or_else(|p| p.into_inner()) = sends;
    }

    /// Records a target's change for `netpoll_trace_target_up`.
    pub fn target(&self, e: &TargetEvent) {
        self.targets.apply(e);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a
        // label value, so say so in the output rather than panic.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            out.push_str(&format!("# encoding error: {e}\n"));
        }
        out
    }
}

/// How often the agent has the pipeline re-read the kernel's poll statistics (a
/// per-CPU map walk) while serving metrics.
pub const POLL_REFRESH: Duration = Duration::from_secs(1);

/// The metrics as a sink: counts what the pipeline and the agent produce.
impl Sink for Metrics {
    fn emit(&mut self, out: &Output) {
        self.observe(std::slice::from_ref(out));
    }
}

#[cfg(test)]
mod tests {
    use netpoll_trace_common::POLL_BUCKETS;

    use super::*;
    use crate::model::{
        correlate::Attempt,
        diagnosis::{Cause, Diagnosis, Remedy},
        event::{SetupFn, SetupRecord},
        poll::Bucket,
    };

    pub(super) fn build() -> BuildInfo {
        BuildInfo {
            version: "9.9.9".into(),
            kernel: "6.12.0-test".into(),
            attach_method: "fentry".into(),
            object: "modern".into(),
        }
    }

    fn record(
        dev: &str,
        driver: Option<&str>,
        ret: i32,
        depth: u32,
        function: SetupFn,
    ) -> SetupRecord {
        let mut r = crate::model::correlate::tests::rec(
            function,
            dev,
            depth,
            1_000 + u64::from(depth),
            500,
            ret,
        );
        r.driver = driver.map(str::to_string);
        r
    }

    fn failed(dev: &str, driver: Option<&str>, cause: Cause) -> Output {
        let root = record(dev, driver, -524, 0, SetupFn::NetpollSetup);
        let inner = record(dev, driver, -524, 1, SetupFn::InnerNetpollSetup);
        let d = Diagnosis {
            kind: "diagnosis",
            ts_ns: 1,
            dev: Some(dev.into()),
            cause,
            remedies: vec![Remedy::RuntimePatch],
            chain: vec![dev.into()],
            explanation: String::new(),
            kernel_message: None,
            netpoll: None,
            errno: Some("ENOTSUPP"),
            ret: -524,
        };
        Output::Attempt(
            Box::new(Attempt {
                root,
                nested: vec![inner],
            }),
            Some(Box::new(d)),
        )
    }

    fn ok(dev: &str, driver: &str) -> Output {
        Output::Attempt(
            Box::new(Attempt {
                root: record(dev, Some(driver), 0, 0, SetupFn::NetpollSetup),
                nested: vec![],
            }),
            None,
        )
    }

    /// The value of the sample line that starts with `series ` exactly.
    pub(super) fn sample(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn program_losses_follow_the_kernels_totals_by_kind() {
        use netpoll_trace_common::loss;
        let m = Metrics::new(&build());
        let at = |missed: u64, orphaned: u64| {
            let mut l = [0; loss::SLOTS as usize];
            l[loss::MISSED_RETURN as usize] = missed;
            l[loss::ORPHANED_ENTRY as usize] = orphaned;
            Output::Losses(crate::model::recorder::Losses(l))
        };
        m.observe(&[at(2, 0)]);
        m.observe(&[at(3, 1), at(3, 1)]);
        let t = m.render();
        let f = "netpoll_trace_programs_lost_total";
        assert_eq!(
            sample(&t, &format!(r#"{f}{{kind="missed_return"}}"#)).as_deref(),
            Some("3"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{f}{{kind="orphaned_entry"}}"#)).as_deref(),
            Some("1"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{f}{{kind="unpaired_return"}}"#)).as_deref(),
            Some("0"),
            "{t}"
        );
    }

    #[test]
    fn counters_carry_device_driver_and_cause() {
        let m = Metrics::new(&build());
        m.observe(&[failed(
            "eth0",
            Some("virtio_net"),
            Cause::MissingPollController,
        )]);
        m.observe(&[
            failed("eth0", Some("virtio_net"), Cause::MissingPollController),
            ok("eth0", "virtio_net"),
        ]);
        m.observe(&[
            failed("eth9", None, Cause::NoSuchDevice),
            Output::Lost(7),
            Output::Lost(2),
        ]);
        m.observe(&[Output::Dropped {
            what: Dropped::Events,
            count: 5,
        }]);
        let t = m.render();
        let f = "netpoll_trace_setup_failures_total";
        assert_eq!(
            sample(
                &t,
                &format!(
                    r#"{f}{{dev="eth0",driver="virtio_net",cause="missing_poll_controller"}}"#
                )
            )
            .as_deref(),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                &format!(r#"{f}{{dev="eth9",driver="",cause="no_such_device"}}"#)
            )
            .as_deref(),
            Some("1"),
            "{t}"
        );
        let s = "netpoll_trace_setups_total";
        assert_eq!(
            sample(
                &t,
                &format!(r#"{s}{{dev="eth0",driver="virtio_net",result="failed"}}"#)
            )
            .as_deref(),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                &format!(r#"{s}{{dev="eth0",driver="virtio_net",result="ok"}}"#)
            )
            .as_deref(),
            Some("1"),
            "{t}"
        );
        assert_eq!(
            sample(&t, "netpoll_trace_lost_events_total").as_deref(),
            Some("9"),
            "{t}"
        );
        assert_eq!(
            sample(&t, r#"netpoll_trace_dropped_total{what="events"}"#).as_deref(),
            Some("5"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_dropped_total{what="kernel_log_lines"}"#
            )
            .as_deref(),
            Some("0"),
            "{t}"
        );
        assert!(
            t.contains("# TYPE netpoll_trace_setup_failures_total counter"),
            "{t}"
        );
    }

    #[test]
    fn remediations_use_the_journal_codes() {
        let m = Metrics::new(&build());
        m.remediation(Action::Patch, Outcome::Ok);
        m.remediation(Action::Patch, Outcome::Ok);
        m.remediation(Action::Decide, Outcome::DryRun);
        let t = m.render();
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_remediations_total{action="patch",result="ok"}"#
            )
            .as_deref(),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_remediations_total{action="decide",result="dry_run"}"#
            )
            .as_deref(),
            Some("1"),
            "{t}"
        );
    }

    #[test]
    fn build_info_is_one_series_of_value_one() {
        let t = Metrics::new(&build()).render();
        assert_eq!(
            sample(&t, r#"netpoll_trace_build_info{version="9.9.9",kernel="6.12.0-test",attach_method="fentry",object="modern"}"#).as_deref(),
            Some("1"),
            "{t}"
        );
        // No poll statistics yet: no histogram family at all.
        assert!(!t.contains("poll_duration"), "{t}");
    }

    fn summary(buckets: &[(u64, u64)], total_ns: u64) -> PollSummary {
        let histogram: Vec<Bucket> = buckets
            .iter()
            .map(|&(le_ns, count)| Bucket { le_ns, count })
            .collect();
        PollSummary {
            kind: "poll",
            ts_ns: 0,
            dev: Some("eth0".into()),
            ifindex: Some(2),
            count: histogram.iter().map(|b| b.count).sum(),
            total_ns,
            max_ns: 0,
            histogram,
        }
    }

    #[test]
    fn log2_buckets_become_inclusive_bounds_and_the_last_is_inf() {
        // Kernel buckets 9 ([512, 1024) ns), 10 and the catch-all 31.
        let h = poll_histogram(&summary(
            &[(1024, 3), (2048, 1), (1u64 << 32, 2)],
            4_000_000_000,
        ));
        let h = h.hist;
        assert_eq!(h.buckets.len(), POLL_BUCKETS);
        assert_eq!(h.buckets[0], (1e-9, 0));
        assert_eq!(h.buckets[9], (1023e-9, 3));
        assert_eq!(h.buckets[10], (2047e-9, 1));
        assert_eq!(h.buckets[POLL_BUCKETS - 1], (f64::INFINITY, 2));
        assert!(h.buckets.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(h.count, 6);
        assert_eq!(h.sum_seconds, 4.0);
    }

    #[test]
    fn rendered_histogram_is_cumulative_and_ends_at_count() {
        let m = Metrics::new(&build());
        m.set_poll(&[summary(&[(1024, 3), (2048, 1), (1u64 << 32, 2)], 1_500)]);
        let t = m.render();
        let b = "netpoll_trace_poll_duration_seconds_bucket";
        assert_eq!(
            sample(
                &t,
                &format!(r#"{b}{{dev="eth0",ifindex="2",le="5.11e-07"}}"#)
            )
            .as_deref(),
            Some("0"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                &format!(r#"{b}{{dev="eth0",ifindex="2",le="1.023e-06"}}"#)
            )
            .as_deref(),
            Some("3"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                &format!(r#"{b}{{dev="eth0",ifindex="2",le="2.047e-06"}}"#)
            )
            .as_deref(),
            Some("4"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{b}{{dev="eth0",ifindex="2",le="+Inf"}}"#)).as_deref(),
            Some("6"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_poll_duration_seconds_count{dev="eth0",ifindex="2"}"#
            )
            .as_deref(),
            Some("6"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_poll_duration_seconds_sum{dev="eth0",ifindex="2"}"#
            )
            .as_deref(),
            Some("0.0000015"),
            "{t}"
        );
        assert_eq!(
            t.lines().filter(|l| l.starts_with(b)).count(),
            POLL_BUCKETS,
            "{t}"
        );
        // Cumulative counts never decrease.
        let values: Vec<u64> = t
            .lines()
            .filter(|l| l.starts_with(b))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    }

    #[test]
    fn a_recreated_device_is_a_new_series_not_a_duplicate() {
        // eth0 deleted and made again: the kernel keeps both devices' statistics
        // (ifindex 2, then 7) under one name.
        let mut old = summary(&[(1024, 3)], 3_000);
        old.ifindex = Some(2);
        let mut new = summary(&[(2048, 1)], 2_000);
        new.ifindex = Some(7);
        let m = Metrics::new(&build());
        m.set_poll(&[old, new]);
        let t = m.render();
        let samples: Vec<&str> = t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s))
            .collect();
        let mut unique = samples.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), samples.len(), "duplicate series:\n{t}");
        let c = "netpoll_trace_poll_duration_seconds_count";
        assert_eq!(
            sample(&t, &format!(r#"{c}{{dev="eth0",ifindex="2"}}"#)).as_deref(),
            Some("3"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{c}{{dev="eth0",ifindex="7"}}"#)).as_deref(),
            Some("1"),
            "{t}"
        );

        // The same device object seen twice (same name and index) is one series.
        let m = Metrics::new(&build());
        m.set_poll(&[summary(&[(1024, 3)], 3_000), summary(&[(1024, 1)], 1_000)]);
        let t = m.render();
        assert_eq!(
            sample(&t, &format!(r#"{c}{{dev="eth0",ifindex="2"}}"#)).as_deref(),
            Some("4"),
            "{t}"
        );
        assert_eq!(t.lines().filter(|l| l.starts_with(c)).count(), 1, "{t}");
    }
}
