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

/// One reader task per CPU buffer of `array`.
pub fn spawn_readers(
    set: &mut JoinSet<()>,
    array: &mut PerfEventArray<MapData>,
    tx: &mpsc::Sender<Msg>,
    unqueued: &Arc<Unqueued>,
    stop: &tokio::sync::watch::Receiver<bool>,
    decode: fn(&[u8], &[u8]) -> Msg,
) -> Result<()> {
    let cpus = aya::util::online_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
    for cpu in cpus {
        let buf = PerfEventArrayBuffer::open(cpu, 16)
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
        set.spawn(read_cpu(
            fd,
            tx.clone(),
            unqueued.clone(),
            stop.clone(),
            decode,
        ));
    }
    Ok(())
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
