//! The perf buffers' readers: one task per CPU buffer, decoding each sample into a
//! message for the assembler.

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{
    MapData,
    perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer},
};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinSet};

use crate::model::{
    event::{self, SetupRecord},
    poll,
    send::{self, SendNotice},
    target::Teardown,
};

/// What a reader hands the assembler.
// Setup is by far the most frequent message: boxing it would allocate per event.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    Setup(SetupRecord),
    SlowPoll(poll::SlowPoll),
    Teardown(Teardown),
    Send(SendNotice),
    Lost(u64),
    BadSample(String),
}

pub fn decode_setup(head: &[u8], tail: &[u8]) -> Msg {
    match event::decode(head, tail) {
        Ok(ev) => match (SetupRecord::from_event(&ev), Teardown::from_event(&ev)) {
            (Some(r), _) => Msg::Setup(r),
            (None, Some(t)) => Msg::Teardown(t),
            (None, None) => Msg::BadSample(format!(
                "unknown function id {} (ret {})",
                ev.function, ev.ret
            )),
        },
        Err(e) => Msg::BadSample(e.to_string()),
    }
}

pub fn decode_poll(head: &[u8], tail: &[u8]) -> Msg {
    match event::decode_as::<netpoll_trace_common::PollEvent>(head, tail) {
        Ok(ev) => Msg::SlowPoll(poll::slow(&ev)),
        Err(e) => Msg::BadSample(e.to_string()),
    }
}

pub fn decode_send(head: &[u8], tail: &[u8]) -> Msg {
    match event::decode_as::<netpoll_trace_common::SendEvent>(head, tail) {
        Ok(ev) => match send::notice(&ev) {
            Some(n) => Msg::Send(n),
            None => Msg::BadSample(format!(
                "unknown send event kind {} reason {}",
                ev.kind, ev.reason
            )),
        },
        Err(e) => Msg::BadSample(e.to_string()),
    }
}

/// Messages queued between the readers and the assembler at most. Nothing drains the
/// queue while an agent waits out a backoff or runs a retry; past this the newest are
/// dropped and counted rather than held without bound.
pub const QUEUE: usize = 4096;

/// What the readers could not queue.
#[derive(Debug, Default)]
pub struct Unqueued {
    /// Messages dropped because the queue was full.
    pub dropped: AtomicU64,
    /// The kernel's lost-event counts inside those (kept: they are counts, not events).
    pub lost: AtomicU64,
}

/// Queues `msg`, or counts it when the queue is full. Never waits: a reader that
/// blocked would only move the loss into the kernel's perf buffer.
pub fn offer(tx: &mpsc::Sender<Msg>, msg: Msg, unqueued: &Unqueued) {
    if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(msg) {
        match msg {
            Msg::Lost(n) => unqueued.lost.fetch_add(n, Ordering::Relaxed),
            _ => unqueued.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The perf event arrays the readers drain, each with its decoder.
pub struct Arrays<'a> {
    pub setup: &'a mut PerfEventArray<MapData>,
    pub poll: &'a mut PerfEventArray<MapData>,
    pub send: &'a mut PerfEventArray<MapData>,
}

/// Data pages of each CPU's set-up event buffer: 64 (256 KiB, ~1,500 events of 176
/// bytes). With 16, a burst of 1,000 netconsole enable/disable cycles in one second lost
/// 228-397 events on 5.10 under TCG before the reader drained them (the bench's burst);
/// pages stay unresident until the kernel writes them, so idle RSS does not grow.
const SETUP_PAGES: usize = 64;
/// Poll and send events are single slow calls and drops, rarer than set-ups.
const EVENT_PAGES: usize = 16;

/// The reader tasks, one per CPU buffer of each array, and the CPUs they cover. A CPU
/// brought online later gets its buffers when `follow_cpus` next looks (until then its
/// events fail in the kernel and are counted as `output_failed`); one that went offline
/// and came back gets new ones, as the kernel drops a CPU's perf events when it goes.
pub struct Readers {
    pub set: JoinSet<()>,
    tx: mpsc::Sender<Msg>,
    unqueued: Arc<Unqueued>,
    stop: tokio::sync::watch::Receiver<bool>,
    online: Vec<u32>,
}

impl Readers {
    /// Readers for every CPU online now.
    pub fn start(
        arrays: Arrays<'_>,
        tx: mpsc::Sender<Msg>,
        unqueued: Arc<Unqueued>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self> {
        let mut r = Self {
            set: JoinSet::new(),
            tx,
            unqueued,
            stop,
            online: Vec::new(),
        };
        let online = online_cpus()?;
        r.open(arrays, &online)?;
        r.online = online;
        Ok(r)
    }

    /// Opens buffers for the CPUs that came online since the last look; returns them.
    pub fn follow_cpus(&mut self, arrays: Arrays<'_>) -> Result<Vec<u32>> {
        let online = online_cpus()?;
        let new: Vec<u32> = online
            .iter()
            .copied()
            .filter(|c| !self.online.contains(c))
            .collect();
        self.open(arrays, &new)?;
        self.online = online;
        Ok(new)
    }

    fn open(&mut self, arrays: Arrays<'_>, cpus: &[u32]) -> Result<()> {
        for &cpu in cpus {
            self.spawn(arrays.setup, cpu, SETUP_PAGES, decode_setup)?;
            self.spawn(arrays.poll, cpu, EVENT_PAGES, decode_poll)?;
            self.spawn(arrays.send, cpu, EVENT_PAGES, decode_send)?;
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        array: &mut PerfEventArray<MapData>,
        cpu: u32,
        pages: usize,
        decode: fn(&[u8], &[u8]) -> Msg,
    ) -> Result<()> {
        let buf = PerfEventArrayBuffer::open(cpu, pages)
            .with_context(|| format!("opening perf buffer for CPU {cpu}"))?;
        // The array holds the buffer's fd only while the array's map fd stays open
        // (`Loaded` keeps it for as long as the readers run).
        array
            .set(cpu, &buf)
            .with_context(|| format!("installing the perf buffer of CPU {cpu}"))?;
        // SAFETY: the buffer owns its fd and moves into the AsyncFd, so the fd
        // stays open exactly as long as it is registered.
        let fd = unsafe { AsyncFd::register(buf) }
            .map_err(|e| anyhow!("registering perf buffer with the runtime: {e}"))?;
        self.set.spawn(read_cpu(
            fd,
            self.tx.clone(),
            self.unqueued.clone(),
            self.stop.clone(),
            decode,
        ));
        Ok(())
    }
}

fn online_cpus() -> Result<Vec<u32>> {
    aya::util::online_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))
}

async fn read_cpu(
    mut fd: AsyncFd<PerfEventArrayBuffer>,
    tx: mpsc::Sender<Msg>,
    unqueued: Arc<Unqueued>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    decode: fn(&[u8], &[u8]) -> Msg,
) {
    let drain = |buf: &mut PerfEventArrayBuffer| {
        buf.for_each(|e| {
            let msg = match e {
                PerfEvent::Sample { head, tail } => decode(head, tail),
                PerfEvent::Lost { count } => Msg::Lost(count),
            };
            offer(&tx, msg, &unqueued);
        });
    };
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let Ok(mut guard) = guard else { break };
                drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = stop.changed() => {
                drain(fd.get_mut());
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_and_keeps_lost_counts() {
        let (tx, mut rx) = mpsc::channel(2);
        let unqueued = Unqueued::default();
        for _ in 0..5 {
            offer(&tx, Msg::BadSample("x".into()), &unqueued);
        }
        offer(&tx, Msg::Lost(7), &unqueued);
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 2);
        assert_eq!(unqueued.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(unqueued.lost.load(Ordering::Relaxed), 7);
        // Room again: queued, not counted.
        offer(&tx, Msg::Lost(1), &unqueued);
        assert!(matches!(rx.try_recv(), Ok(Msg::Lost(1))));
        assert_eq!(unqueued.lost.load(Ordering::Relaxed), 7);
    }
}
