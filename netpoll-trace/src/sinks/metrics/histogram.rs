//! The kernel's log2 histograms (poll latency, send time) as Prometheus histograms.

use netpoll_trace_common::POLL_BUCKETS;

use crate::model::poll::Bucket;

/// A Prometheus histogram from the kernel's log2 buckets: per-bucket (not yet
/// cumulative: the encoder sums them) counts with their upper bounds in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Log2Histogram {
    /// (le in seconds, calls in this bucket only), ascending; the last bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Log2Histogram {
    /// The kernel's log2 buckets as Prometheus buckets. Kernel bucket `i` holds calls of
    /// [2^i, 2^(i+1)) ns in whole nanoseconds, so its inclusive upper bound (`le`) is
    /// 2^(i+1) - 1 ns; the last kernel bucket takes everything longer and becomes +Inf.
    /// Every bucket is emitted, empty or not, so the series stay the same across scrapes.
    /// `count` is the sum of the buckets, so `_count` always equals the +Inf bucket even
    /// when the per-CPU values were read while a call was being counted.
    pub fn from_kernel(histogram: &[Bucket], total_ns: u64) -> Self {
        let mut counts = [0u64; POLL_BUCKETS];
        for b in histogram {
            // le_ns = 2^(i+1) in the summaries (see poll::summarize, send::summarize).
            let i = (b.le_ns.max(2).ilog2() as usize - 1).min(POLL_BUCKETS - 1);
            counts[i] += b.count;
        }
        let buckets = counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let le = if i == POLL_BUCKETS - 1 {
                    f64::INFINITY
                } else {
                    ((1u64 << (i + 1)) - 1) as f64 / 1e9
                };
                (le, *c)
            })
            .collect();
        Self {
            buckets,
            sum_seconds: total_ns as f64 / 1e9,
            count: counts.iter().sum(),
        }
    }

    /// Adds another histogram of the same buckets (two kernel objects under one label set).
    pub fn add(&mut self, other: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.1 += b.1;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }
}
