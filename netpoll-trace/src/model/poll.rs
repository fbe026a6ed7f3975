//! `netpoll_poll_dev` statistics: per-CPU values from the kernel summed into one
//! summary per device, and slow single calls (pure).

use netpoll_trace_common::{POLL_BUCKETS, PollEvent, PollStats, event_flags as ef};
use serde::Serialize;

use super::event::cstr;

/// One histogram bucket: calls that took less than `le_ns` (and at least half that).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub le_ns: u64,
    pub count: u64,
}

/// The JSON `poll` object: a device's aggregate since attach...
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PollSummary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    pub ifindex: Option<i32>,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Non-empty buckets only, ascending.
    pub histogram: Vec<Bucket>,
}

/// ...or one call slower than the threshold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlowPoll {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    pub ifindex: Option<i32>,
    /// Always 1: the contract gives every poll object a count.
    pub count: u64,
    pub duration_ns: u64,
}

/// Sums one device's per-CPU values. Identity comes from whichever CPU created
/// the entry (the others hold zeros).
pub fn summarize(per_cpu: &[PollStats], now_ns: u64) -> PollSummary {
    let mut hist = [0u64; POLL_BUCKETS];
    let (mut count, mut total, mut max) = (0u64, 0u64, 0u64);
    let mut dev = None;
    let mut ifindex = None;
    for s in per_cpu {
        count += s.count;
        total += s.total_ns;
        max = max.max(s.max_ns);
        for (h, v) in hist.iter_mut().zip(s.hist.iter()) {
            *h += v;
        }
        if dev.is_none() && s.flags & ef::DEV_NAME != 0 {
            dev = cstr(&s.name);
        }
        if ifindex.is_none() && s.flags & ef::IFINDEX != 0 {
            ifindex = Some(s.ifindex);
        }
    }
    let histogram = buckets(&hist);
    PollSummary {
        kind: "poll",
        ts_ns: now_ns,
        dev,
        ifindex,
        count,
        total_ns: total,
        max_ns: max,
        histogram,
    }
}

/// The non-empty buckets of a log2 histogram (`poll_bucket`'s), ascending.
pub fn buckets(hist: &[u64; POLL_BUCKETS]) -> Vec<Bucket> {
    hist.iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| Bucket {
            le_ns: 1u64 << (i + 1),
            count: *c,
        })
        .collect()
}

/// One summary per device, sorted by device name.
pub fn summarize_all(per_device: &[Vec<PollStats>], now_ns: u64) -> Vec<PollSummary> {
    let mut out: Vec<PollSummary> = per_device
        .iter()
        .map(|cpus| summarize(cpus, now_ns))
        .collect();
    out.sort_by(|a, b| a.dev.cmp(&b.dev));
    out
}

pub fn slow(ev: &PollEvent) -> SlowPoll {
    SlowPoll {
        kind: "poll",
        ts_ns: ev.ts_ns,
        dev: if ev.flags & ef::DEV_NAME != 0 {
            cstr(&ev.name)
        } else {
            None
        },
        ifindex: (ev.flags & ef::IFINDEX != 0).then_some(ev.ifindex),
        count: 1,
        duration_ns: ev.duration_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(count: u64, bucket: usize, named: bool) -> PollStats {
        let mut s = PollStats {
            count,
            total_ns: count * 1000,
            max_ns: 1500,
            hist: [0; POLL_BUCKETS],
            ifindex: 3,
            flags: 0,
            name: [0; 16],
        };
        s.hist[bucket] = count;
        if named {
            s.flags = ef::DEV_NAME | ef::IFINDEX;
            s.name[..4].copy_from_slice(b"eth0");
        }
        s
    }

    #[test]
    fn sums_cpus_and_takes_identity_from_the_creating_cpu() {
        let s = summarize(
            &[stats(3, 9, false), stats(4, 9, true), stats(1, 10, false)],
            42,
        );
        assert_eq!(s.count, 8);
        assert_eq!(s.dev.as_deref(), Some("eth0"));
        assert_eq!(s.ifindex, Some(3));
        assert_eq!(
            s.histogram,
            [
                Bucket {
                    le_ns: 1024,
                    count: 7
                },
                Bucket {
                    le_ns: 2048,
                    count: 1
                }
            ]
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["type"], "poll");
        assert!(v["histogram"].is_array());
    }

    #[test]
    fn a_slow_poll_event_meets_the_contract() {
        let ev = PollEvent {
            ts_ns: 9,
            duration_ns: 2_000_000,
            dev: 1,
            ifindex: 2,
            flags: ef::DEV_NAME | ef::IFINDEX,
            name: *b"eth0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        let line = serde_json::to_string(&slow(&ev)).unwrap();
        assert_eq!(
            crate::model::schema::check_line(&line).unwrap(),
            "poll",
            "{line}"
        );
        assert!(line.contains(r#""dev":"eth0""#) && line.contains(r#""duration_ns":2000000"#));
    }
}
