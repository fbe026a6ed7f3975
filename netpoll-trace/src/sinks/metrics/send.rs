//! netconsole's delivery health (#16) as metrics: each device's messages by what became
//! of them and its skb transmit time, from the kernel's send statistics (totals since the
//! programs were loaded, so the latest summaries replace the last ones, as the poll
//! histograms are), and each target's state from its lifecycle events.

use std::{collections::BTreeMap, sync::Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::MetricType,
};

use super::histogram::Log2Histogram;
use crate::model::{
    send::{DropReason, SendSummary},
    target::{MAX_TARGETS, TargetEvent},
};

/// What became of a message, as the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendResult {
    /// Handed to the driver.
    Sent,
    /// Queued for netpoll's worker.
    Deferred,
    Dropped(DropReason),
}

impl SendResult {
    /// Every result, in the order they are rendered.
    pub fn all() -> impl Iterator<Item = Self> {
        [Self::Sent, Self::Deferred]
            .into_iter()
            .chain(DropReason::ALL.map(Self::Dropped))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Deferred => "deferred",
            // The reasons' names are the JSON's, defined once beside the programs' slots.
            Self::Dropped(r) => r.as_str(),
        }
    }

    /// How many of a summary's messages ended so.
    pub fn count(self, s: &SendSummary) -> u64 {
        match self {
            Self::Sent => s.sent,
            Self::Deferred => s.deferred,
            Self::Dropped(r) => s.dropped_by.get(r),
        }
    }
}

/// One device's send path as rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSends {
    pub dev: String,
    /// Messages per result, every result (zeros too, so that an alert on an increase
    /// sees the first drop), in `SendResult::all` order.
    pub results: Vec<(SendResult, u64)>,
    /// The timed transmits (sent and deferred: drops are decided before the transmit).
    pub duration: Log2Histogram,
}

/// One entry per device name. Unlike the poll histograms the series carry no ifindex:
/// a device made again under the same name is the same netconsole path to an operator,
/// and the kernel keeps the old object's totals beside the new one's, so their sum
/// still only grows.
pub fn device_sends(stats: &[SendSummary]) -> Vec<DeviceSends> {
    let mut out: Vec<DeviceSends> = Vec::with_capacity(stats.len());
    for s in stats {
        let dev = s.dev.clone().unwrap_or_default();
        let duration = Log2Histogram::from_kernel(&s.histogram, s.total_ns);
        match out.iter_mut().find(|o| o.dev == dev) {
            Some(o) => {
                for (r, n) in o.results.iter_mut() {
                    *n += r.count(s);
                }
                o.duration.add(&duration);
            }
            None => out.push(DeviceSends {
                dev,
                results: SendResult::all().map(|r| (r, r.count(s))).collect(),
                duration,
            }),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DevLabel {
    dev: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    dev: String,
    result: &'static str,
}

/// The latest send statistics, encoded on every scrape.
#[derive(Debug, Default)]
pub(super) struct SendCollector {
    pub(super) latest: Mutex<Vec<DeviceSends>>,
}

impl Collector for SendCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.is_empty() {
            return Ok(());
        }
        // The encoder appends "_total" to a counter's name.
        let mut family = encoder.encode_descriptor(
            "netpoll_trace_messages",
            "netconsole messages (netpoll_send_udp calls) per device: sent, deferred or dropped by reason (since load)",
            None,
            MetricType::Counter,
        )?;
        for d in latest.iter() {
            for (r, n) in &d.results {
                let labels = ResultLabels {
                    dev: d.dev.clone(),
                    result: r.as_str(),
                };
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "netpoll_trace_send_duration_seconds",
            "Time in netpoll's skb transmit per device (sent and deferred), from the kernel's log2 histogram",
            None,
            MetricType::Histogram,
        )?;
        for d in latest.iter() {
            let Log2Histogram {
                buckets,
                sum_seconds,
                count,
            } = &d.duration;
            let dev = DevLabel { dev: d.dev.clone() };
            family.encode_family(&dev)?.encode_histogram::<DevLabel>(
                *sum_seconds,
                *count,
                buckets,
                None,
            )?;
        }
        Ok(())
    }
}

/// A target's last known state.
#[derive(Debug, Clone, PartialEq)]
struct TargetUp {
    dev: String,
    up: bool,
    since_ns: u64,
    /// Times the kernel set it up again itself (7.3+ netconsole's target recovery).
    resumed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetLabels {
    target: String,
    dev: String,
}

/// Every target seen, by label: one series each, so a target set up again on another
/// device moves its series rather than leave the old one reading down for ever.
#[derive(Debug, Default)]
pub(super) struct TargetCollector {
    targets: Mutex<BTreeMap<String, TargetUp>>,
}

impl TargetCollector {
    pub(super) fn apply(&self, e: &TargetEvent) {
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded as the pipeline's own lifecycle is: the target that changed longest ago goes.
        if !targets.contains_key(&e.target)
            && targets.len() >= MAX_TARGETS
            && let Some(oldest) = targets
                .iter()
                .min_by_key(|(_, t)| t.since_ns)
                .map(|(k, _)| k.clone())
        {
            targets.remove(&oldest);
        }
        let resumed = targets.get(&e.target).map_or(0, |t| t.resumed)
            + u64::from(e.event == crate::model::target::Change::Resumed);
        let state = TargetUp {
            dev: e.dev.clone().unwrap_or_default(),
            up: e.event.up(),
            since_ns: e.ts_ns,
            resumed,
        };
        targets.insert(e.target.clone(), state);
    }
}

impl Collector for TargetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        if targets.is_empty() {
            return Ok(());
        }
        let labels = |target: &String, t: &TargetUp| TargetLabels {
            target: target.clone(),
            dev: t.dev.clone(),
        };
        let mut family = encoder.encode_descriptor(
            "netpoll_trace_target_up",
            "1 while a netconsole target sends (enabled, re-enabled or resumed), 0 once disabled or stopped",
            None,
            MetricType::Gauge,
        )?;
        for (target, t) in targets.iter() {
            family
                .encode_family(&labels(target, t))?
                .encode_gauge(&i64::from(t.up))?;
        }
        let mut family = encoder.encode_descriptor(
            "netpoll_trace_target_resumed",
            "Times the kernel itself set a stopped netconsole target up again (Linux 7.3+ target recovery)",
            None,
            MetricType::Counter,
        )?;
        for (target, t) in targets.iter() {
            family
                .encode_family(&labels(target, t))?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                    &t.resumed, None,
                )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use netpoll_trace_common::POLL_BUCKETS;

    use super::super::{
        Metrics,
        tests::{build, sample},
    };
    use crate::model::{
        output::Output,
        poll::Bucket,
        send::{DropReason, DroppedBy, SendSummary},
        target::{Change, TargetEvent},
    };

    /// eth0's totals: 7 sent, 2 deferred, 1 dropped for want of an skb, 4 while down.
    fn summary(dev: &str, sent: u64) -> SendSummary {
        let mut dropped_by = DroppedBy::default();
        dropped_by.0[DropReason::NoSkb.slot() as usize] = 1;
        dropped_by.0[DropReason::NotRunning.slot() as usize] = 4;
        // Kernel buckets 9 ([512, 1024) ns) and 10 hold every timed transmit.
        let histogram = vec![
            Bucket {
                le_ns: 1024,
                count: sent,
            },
            Bucket {
                le_ns: 2048,
                count: 2,
            },
        ];
        SendSummary {
            kind: "send",
            ts_ns: 0,
            dev: Some(dev.into()),
            ifindex: Some(2),
            messages: sent + 2 + 5,
            bytes: 0,
            sent,
            deferred: 2,
            dropped: dropped_by.total(),
            dropped_by,
            total_ns: 4_500,
            max_ns: 2_000,
            histogram,
            last_drop_ns: None,
            last_drop_reason: None,
        }
    }

    fn stats(stats: Vec<SendSummary>) -> Output {
        Output::SendStats { stats, last: false }
    }

    fn target(event: Change, dev: &str) -> Output {
        Output::Target(TargetEvent {
            kind: "target",
            ts_ns: 1,
            target: "netconsole@10.0.2.2:6666".into(),
            event,
            cause: "netpoll_setup",
            owner: Some("netconsole".into()),
            dev: Some(dev.into()),
            remote: Some("10.0.2.2:6666".into()),
            pid: 1,
            comm: None,
            netpoll_addr: 0,
        })
    }

    #[test]
    fn messages_follow_the_kernels_totals_by_result() {
        let m = Metrics::new(&build());
        m.observe(&[stats(vec![summary("eth0", 5)])]);
        // The kernel's totals since load: the latest replaces, never adds.
        m.observe(&[stats(vec![summary("eth0", 7), summary("eth1", 1)])]);
        let t = m.render();
        let f = "netpoll_trace_messages_total";
        assert!(t.contains(&format!("# TYPE {f} counter")), "{t}");
        assert_eq!(
            sample(&t, &format!(r#"{f}{{dev="eth0",result="sent"}}"#)).as_deref(),
            Some("7"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{f}{{dev="eth0",result="deferred"}}"#)).as_deref(),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{f}{{dev="eth0",result="no_skb"}}"#)).as_deref(),
            Some("1"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{f}{{dev="eth0",result="not_running"}}"#)).as_deref(),
            Some("4"),
            "{t}"
        );
        // Every reason from the first summary on, zeros too: an alert on an increase
        // sees the first drop.
        assert_eq!(
            sample(&t, &format!(r#"{f}{{dev="eth0",result="no_npinfo"}}"#)).as_deref(),
            Some("0"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{f}{{dev="eth0",result="not_present"}}"#)).as_deref(),
            Some("0"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{f}{{dev="eth1",result="sent"}}"#)).as_deref(),
            Some("1"),
            "{t}"
        );
        assert_eq!(
            t.lines()
                .filter(|l| l.starts_with(&format!("{f}{{")))
                .count(),
            2 * 6,
            "{t}"
        );
    }

    #[test]
    fn devices_sharing_a_name_are_one_series() {
        // eth0 deleted and made again: the kernel keeps both device objects' totals.
        let m = Metrics::new(&build());
        m.observe(&[stats(vec![summary("eth0", 7), summary("eth0", 3)])]);
        let t = m.render();
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_messages_total{dev="eth0",result="sent"}"#
            )
            .as_deref(),
            Some("10"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_messages_total{dev="eth0",result="no_skb"}"#
            )
            .as_deref(),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpoll_trace_send_duration_seconds_count{dev="eth0"}"#
            )
            .as_deref(),
            Some("14"),
            "{t}"
        );
        assert_eq!(
            t.lines()
                .filter(|l| l.starts_with("netpoll_trace_send_duration_seconds_count"))
                .count(),
            1,
            "{t}"
        );
    }

    #[test]
    fn send_duration_is_the_log2_histogram_of_transmits() {
        let m = Metrics::new(&build());
        m.observe(&[stats(vec![summary("eth0", 7)])]);
        let t = m.render();
        let h = "netpoll_trace_send_duration_seconds";
        assert!(t.contains(&format!("# TYPE {h} histogram")), "{t}");
        let b = format!("{h}_bucket");
        assert_eq!(
            sample(&t, &format!(r#"{b}{{dev="eth0",le="5.11e-07"}}"#)).as_deref(),
            Some("0"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{b}{{dev="eth0",le="1.023e-06"}}"#)).as_deref(),
            Some("7"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{b}{{dev="eth0",le="2.047e-06"}}"#)).as_deref(),
            Some("9"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{b}{{dev="eth0",le="+Inf"}}"#)).as_deref(),
            Some("9"),
            "{t}"
        );
        assert_eq!(
            t.lines().filter(|l| l.starts_with(&b)).count(),
            POLL_BUCKETS,
            "{t}"
        );
        // Sent and deferred were timed; drops were decided before the transmit.
        assert_eq!(
            sample(&t, &format!(r#"{h}_count{{dev="eth0"}}"#)).as_deref(),
            Some("9"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!(r#"{h}_sum{{dev="eth0"}}"#)).as_deref(),
            Some("0.0000045"),
            "{t}"
        );
    }

    #[test]
    fn target_up_follows_the_last_change_one_series_per_target() {
        let m = Metrics::new(&build());
        let up = |t: &str, dev: &str| {
            sample(
                t,
                &format!(
                    r#"netpoll_trace_target_up{{target="netconsole@10.0.2.2:6666",dev="{dev}"}}"#
                ),
            )
        };
        m.observe(&[target(Change::Enabled, "eth1")]);
        let t = m.render();
        assert!(t.contains("# TYPE netpoll_trace_target_up gauge"), "{t}");
        assert_eq!(up(&t, "eth1").as_deref(), Some("1"), "{t}");
        m.observe(&[target(Change::Stopped, "eth1")]);
        assert_eq!(up(&m.render(), "eth1").as_deref(), Some("0"));
        m.observe(&[
            target(Change::ReEnabled, "eth1"),
            target(Change::Disabled, "eth1"),
        ]);
        assert_eq!(up(&m.render(), "eth1").as_deref(), Some("0"));
        // Set up again on another device: the old device's series goes, or it would
        // read down for ever.
        m.observe(&[target(Change::ReEnabled, "eth2")]);
        let t = m.render();
        assert_eq!(up(&t, "eth2").as_deref(), Some("1"), "{t}");
        assert_eq!(
            t.lines()
                .filter(|l| l.starts_with("netpoll_trace_target_up{"))
                .count(),
            1,
            "{t}"
        );
    }

    /// 7.3+: a kernel resume leaves the target up and counts in its own counter.
    #[test]
    fn a_kernel_resume_is_counted_and_the_target_is_up() {
        let m = Metrics::new(&build());
        m.observe(&[
            target(Change::Enabled, "eth1"),
            target(Change::Stopped, "eth1"),
            target(Change::Resumed, "eth1"),
        ]);
        let t = m.render();
        let series = r#"{target="netconsole@10.0.2.2:6666",dev="eth1"}"#;
        assert_eq!(
            sample(&t, &format!("netpoll_trace_target_up{series}")).as_deref(),
            Some("1"),
            "{t}"
        );
        assert_eq!(
            sample(&t, &format!("netpoll_trace_target_resumed_total{series}")).as_deref(),
            Some("1"),
            "{t}"
        );
    }

    #[test]
    fn nothing_sent_and_no_target_seen_is_no_family() {
        let t = Metrics::new(&build()).render();
        for f in [
            "netpoll_trace_messages",
            "netpoll_trace_send_duration",
            "netpoll_trace_target_up",
        ] {
            assert!(!t.contains(f), "{f}:\n{t}");
        }
    }
}
