//! The perf buffers' readers: one task per CPU buffer, decoding each sample into a
//! message for the assembler.

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{
    MapData,
    perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer},
};
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinSet};

use crate::model::{
    event::{self, SetupRecord},
    poll,
};

/// What a reader hands the assembler.
// Setup is by far the most frequent message: boxing it would allocate per event.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    Setup(SetupRecord),
    SlowPoll(poll::SlowPoll),
    Lost(u64),
    BadSample(String),
}

pub fn decode_setup(head: &[u8], tail: &[u8]) -> Msg {
    match event::decode(head, tail) {
        Ok(ev) => match SetupRecord::from_event(&ev) {
            Some(r) => Msg::Setup(r),
            None => Msg::BadSample(format!("unknown function id {}", ev.function)),
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

/// One reader task per CPU buffer of `array`.
pub fn spawn_readers(
    set: &mut JoinSet<()>,
    array: &mut PerfEventArray<MapData>,
    tx: &mpsc::UnboundedSender<Msg>,
    stop: &tokio::sync::watch::Receiver<bool>,
    decode: fn(&[u8], &[u8]) -> Msg,
) -> Result<()> {
    let cpus = aya::util::online_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
    for cpu in cpus {
        let buf = array.open(cpu, Some(16)).with_context(|| format!("opening perf buffer for CPU {cpu}"))?;
        // SAFETY: the buffer owns its fd and moves into the AsyncFd, so the fd
        // stays open exactly as long as it is registered.
        let fd = unsafe { AsyncFd::register(buf) }
            .map_err(|e| anyhow!("registering perf buffer with the runtime: {e}"))?;
        set.spawn(read_cpu(fd, tx.clone(), stop.clone(), decode));
    }
    Ok(())
}

async fn read_cpu(
    mut fd: AsyncFd<PerfEventArrayBuffer<MapData>>,
    tx: mpsc::UnboundedSender<Msg>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    decode: fn(&[u8], &[u8]) -> Msg,
) {
    let drain = |buf: &mut PerfEventArrayBuffer<MapData>| {
        buf.for_each(|e| {
            let msg = match e {
                PerfEvent::Sample { head, tail } => decode(head, tail),
                PerfEvent::Lost { count } => Msg::Lost(count),
            };
            let _ = tx.send(msg);
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
