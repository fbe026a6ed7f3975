//! Devices that unregistered: their statistics leave the kernel's maps (a map that
//! kept every device that ever sent would fill, and then count nothing), and their
//! last values stay here, so summaries still show what they did under their own name.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use aya::Ebpf;
use netpoll_trace_common::{PollStats, SendStats, maps};

use crate::{
    kernel::device_stats::{self, DeviceKey},
    model::target::Teardown,
};

/// Devices whose last values are kept at most; the oldest go first (their counts were
/// in the periodic summaries already).
const KEPT: usize = 256;

/// How long after its tear-down a device's entries are deleted: a message already on its
/// way through the send path when the device unregistered is still counted.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Retired {
    pending: VecDeque<(Instant, DeviceKey)>,
    polls: VecDeque<Vec<PollStats>>,
    sends: VecDeque<Vec<SendStats>>,
}

impl Retired {
    /// Notes a tear-down; an unregistering device's entries go at the next `collect`.
    pub fn note(&mut self, t: &Teardown) {
        if let Some((dev, ifindex)) = t.unregisters() {
            if self.pending.len() == KEPT {
                self.pending.pop_front();
            }
            self.pending
                .push_back((Instant::now(), DeviceKey { dev, ifindex }));
        }
    }

    /// Deletes the entries of devices noted at least `SETTLE` ago (all of them with
    /// `all`), keeping their last values.
    pub fn collect(&mut self, ebpf: &mut Ebpf, all: bool) {
        while let Some(&(at, device)) = self.pending.front() {
            if !all && at.elapsed() < SETTLE {
                break;
            }
            self.pending.pop_front();
            match device_stats::retire::<PollStats>(ebpf, maps::POLL_STATS, device) {
                Ok(v) if !v.is_empty() => keep(&mut self.polls, v),
                Ok(_) => {}
                Err(e) => log::debug!("retiring poll statistics: {e:#}"),
            }
            match device_stats::retire::<SendStats>(ebpf, maps::SEND_STATS, device) {
                Ok(v) if !v.is_empty() => keep(&mut self.sends, v),
                Ok(_) => {}
                Err(e) => log::debug!("retiring send statistics: {e:#}"),
            }
        }
    }

    pub fn polls(&self) -> impl Iterator<Item = &Vec<PollStats>> {
        self.polls.iter()
    }

    pub fn sends(&self) -> impl Iterator<Item = &Vec<SendStats>> {
        self.sends.iter()
    }
}

fn keep<V>(kept: &mut VecDeque<V>, v: V) {
    if kept.len() == KEPT {
        kept.pop_front();
    }
    kept.push_back(v);
}
