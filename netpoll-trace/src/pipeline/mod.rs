//! The tracing pipeline `watch` and `agent` share: load and attach the programs,
//! read the perf buffers, assemble each set-up attempt (outermost call plus nested
//! calls into lower devices) as soon as it is complete, enrich and diagnose it.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{
    MapData,
    perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer},
};
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinSet};

use crate::{
    btf_offsets, correlate,
    diagnosis::{self, Diagnosis},
    enrich::Enricher,
    event::{self, SetupRecord},
    kmsg, loader, poll, recorder,
};

pub struct TraceOptions {
    pub btf: Option<PathBuf>,
    pub attach: loader::AttachChoice,
    pub slow_poll: Duration,
    /// Record into the pinned flight recorder too.
    pub recorder: Option<RecorderOptions>,
}

pub struct RecorderOptions {
    pub dir: PathBuf,
    pub ring_size: u32,
    /// Pin the links: recording goes on after this process ends.
    pub persist: bool,
    /// Fail when the recorder cannot be set up (else a warning, and no recorder).
    pub required: bool,
}

// Setup is by far the most frequent message: boxing it would allocate per event.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Setup(SetupRecord),
    SlowPoll(poll::SlowPoll),
    Lost(u64),
    BadSample(String),
}

/// What the pipeline hands its user.
pub enum Output {
    /// A finished set-up attempt and, when it failed, its diagnosis.
    Attempt(Box<correlate::Attempt>, Option<Box<Diagnosis>>),
    SlowPoll(poll::SlowPoll),
    /// The kernel dropped this many events (perf buffer full).
    Lost(u64),
    /// Something the user should know (undecodable event, ...).
    Warning(String),
}

/// A running tracer.
pub struct Tracer {
    loaded: loader::Loaded,
    rx: mpsc::UnboundedReceiver<Msg>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    readers: JoinSet<()>,
    assembler: Assembler,
    tick: tokio::time::Interval,
    /// The programs' aya-log records, forwarded to the `log` crate as they come.
    logger: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    /// The line announcing the tracer is attached.
    pub ready: String,
    /// Warnings from start-up (fallbacks, unresolved fields).
    pub notes: Vec<String>,
    /// Held while we record into the pins (keeps a second recorder off them).
    _recorder_lock: Option<recorder::Lock>,
}

impl Tracer {
    pub fn start(opts: &TraceOptions) -> Result<Self> {
        let present = loader::require_functions()?;
        let mut notes = Vec::new();
        // Opened before attaching, so every kernel line about our set-ups comes after it.
        let kmsg = match kmsg::KmsgReader::open() {
            Ok(k) => Some(k),
            Err(e) => {
                notes.push(format!("cannot read the kernel log ({e}); diagnoses will not quote it"));
                None
            }
        };
        let resolved = match btf_offsets::load(opts.btf.as_deref())? {
            Some((btf, path)) => btf_offsets::Resolved { source: Some(path), ..btf_offsets::resolve(&btf) },
            None => btf_offsets::Resolved::reduced(),
        };
        if let Some(missing) = resolved.describe_missing() {
            notes.push(missing);
        }
        let mut config = resolved.config;
        config.slow_poll_ns = opts.slow_poll.as_nanos().min(u64::MAX as u128) as u64;
        let (recorder_lock, plan) = match &opts.recorder {
            Some(r) => match recorder_plan(r, &mut notes) {
                Ok((lock, plan)) => (Some(lock), Some(plan)),
                Err(e) if !r.required => {
                    notes.push(format!("no flight recorder: {e:#}"));
                    (None, None)
                }
                Err(e) => return Err(e),
            },
            None => (None, None),
        };
        let mut loaded = loader::load_and_attach(&config, opts.attach, &present, plan.as_ref())?;
        let logger = match loaded.logger.take() {
            // SAFETY: the logger owns its ring buffer fd and moves into the AsyncFd.
            Some(l) => match unsafe { AsyncFd::register(l) } {
                Ok(fd) => Some(fd),
                Err(e) => {
                    notes.push(format!("cannot poll the programs' log records: {e}"));
                    None
                }
            },
            None => None,
        };

        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut readers = JoinSet::new();
        spawn_readers(&mut readers, &mut loaded.setup_events, &tx, &stop_rx, decode_setup)?;
        spawn_readers(&mut readers, &mut loaded.poll_events, &tx, &stop_rx, decode_poll)?;

        if let Some(reason) = &loaded.fallback_reason {
            notes.push(format!("fentry unavailable ({reason}); using kprobes"));
        }
        for (f, why) in &loaded.skipped {
            notes.push(format!("not tracing {f}: {why}"));
        }
        let asked = match opts.attach {
            loader::AttachChoice::Fentry => Some(loader::AttachMethod::Fentry),
            loader::AttachChoice::Kprobe => Some(loader::AttachMethod::Kprobe),
            loader::AttachChoice::Auto => None,
        };
        if loaded.reused && asked.is_some_and(|m| m != loaded.method) {
            notes.push(format!(
                "--attach ignored: the pinned probes are {}; `netpoll-trace reset` first to change the method",
                loaded.method
            ));
        }
        if let Some(why) = &loaded.unpinnable {
            notes.push(why.clone());
        }
        let mut ready = format!(
            "ready: {} on {} ({} {:.1} ms; offsets from {})",
            loaded.method,
            loaded.attached.join(", "),
            if loaded.reused { "reusing the pinned probes, opened in" } else { "attached in" },
            loaded.attach_ms,
            resolved.source.as_ref().map_or("nowhere: reduced mode".to_string(), |p| p.display().to_string()),
        );
        if let Some(p) = &plan {
            ready.push_str(&format!(
                "; recording into {} ({})",
                p.dir.display(),
                if loaded.pinned_links.is_empty() {
                    "probes end with this process"
                } else {
                    "links pinned: recording goes on after this process"
                }
            ));
        }
        Ok(Self {
            loaded,
            rx,
            stop_tx,
            readers,
            assembler: Assembler::new(kmsg),
            tick: tokio::time::interval(GRACE),
            logger,
            ready,
            notes,
            _recorder_lock: recorder_lock,
        })
    }

    /// Waits for events or the next tick; returns what became complete (maybe nothing).
    /// Cancel-safe: nothing is lost when the caller's select! picks another branch.
    pub async fn next(&mut self) -> Vec<Output> {
        let logs = async {
            match self.logger.as_mut() {
                Some(fd) => fd.readable_mut().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(msg) = self.rx.recv() => self.assembler.take(msg),
            _ = self.tick.tick() => self.assembler.flush(false),
            Some(mut guard) = logs => {
                guard.get_inner_mut().flush();
                guard.clear_ready();
                Vec::new()
            }
        }
    }

    /// The kernel's per-device poll statistics so far (for metrics, while running).
    pub fn poll_stats(&self) -> Result<Vec<poll::PollSummary>> {
        poll::read_stats(&self.loaded.ebpf, monotonic_ns())
    }

    /// How the programs are attached.
    pub fn method(&self) -> loader::AttachMethod {
        self.loaded.method
    }

    /// Stops reading, drains every buffer and returns the rest, then the poll
    /// statistics and the kernel's word on whether netconsole was left disabled.
    pub async fn finish(mut self) -> (Vec<Output>, Vec<poll::PollSummary>, Option<String>) {
        let _ = self.stop_tx.send(true);
        while self.readers.join_next().await.is_some() {}
        let mut out = Vec::new();
        while let Ok(msg) = self.rx.try_recv() {
            out.extend(self.assembler.take(msg));
        }
        out.extend(self.assembler.flush(true));
        if let Some(fd) = self.logger.as_mut() {
            fd.get_mut().flush();
        }
        let stats = match poll::read_stats(&self.loaded.ebpf, monotonic_ns()) {
            Ok(s) => s,
            Err(e) => {
                out.push(Output::Warning(format!("reading poll statistics: {e:#}")));
                Vec::new()
            }
        };
        let silent = self.assembler.kernel_log.netconsole_not_enabled().map(str::to_string);
        (out, stats, silent)
    }
}

/// Checks the pin directory and takes the recorder's lock; notes what it found.
fn recorder_plan(r: &RecorderOptions, notes: &mut Vec<String>) -> Result<(recorder::Lock, loader::RecorderPlan)> {
    recorder::require_bpffs(&r.dir)?;
    for other in recorder::other_versions(&r.dir) {
        notes.push(format!(
            "{} is a recorder of another schema version: left alone, not reused (`netpoll-trace reset --pin-dir {}` removes it)",
            other.display(),
            other.display()
        ));
    }
    let lock = recorder::Lock::acquire(&r.dir)?;
    let reuse_links = match recorder::inspect(&r.dir)? {
        recorder::Found::Absent => Vec::new(),
        recorder::Found::Recorder(insp) => {
            if insp.meta.ring_size != r.ring_size {
                notes.push(format!(
                    "the ring at {} keeps {} events, as it was created; a new size takes effect after `netpoll-trace reset`",
                    r.dir.display(),
                    insp.meta.ring_size
                ));
            }
            insp.links
        }
    };
    let plan = loader::RecorderPlan { dir: r.dir.clone(), ring_size: r.ring_size, persist: r.persist, reuse_links };
    Ok((lock, plan))
}

/// How long a returned outermost call waits for nested records from other CPUs.
const GRACE: Duration = Duration::from_millis(100);

/// Turns the event stream into finished attempts, live.
struct Assembler {
    enricher: Enricher,
    ctx: diagnosis::Context,
    kernel_log: kmsg::KernelLog,
    kmsg: Option<kmsg::KmsgReader>,
    /// Records not yet reported.
    buffer: Vec<SetupRecord>,
    /// Outermost calls that have returned: (pid, entry ts, return ts, when it arrived).
    roots: Vec<(u32, u64, u64, std::time::Instant)>,
}

impl Assembler {
    fn new(kmsg: Option<kmsg::KmsgReader>) -> Self {
        Self {
            enricher: Enricher::new(),
            ctx: host_context(),
            kernel_log: kmsg::KernelLog::default(),
            kmsg,
            buffer: Vec::new(),
            roots: Vec::new(),
        }
    }

    fn take(&mut self, msg: Msg) -> Vec<Output> {
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
    fn flush(&mut self, all: bool) -> Vec<Output> {
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
        if let Some(k) = self.kmsg.as_mut() {
            k.drain_into(&mut self.kernel_log);
        }
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
        correlate::group(ready)
            .into_iter()
            .map(|attempt| {
                let d = diagnosis::diagnose(&attempt, &self.ctx, &mut self.kernel_log);
                Output::Attempt(Box::new(attempt), d.map(Box::new))
            })
            .collect()
    }
}

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Interfaces and their masters, for name suggestions and slave diagnoses.
pub fn host_context() -> diagnosis::Context {
    let mut ctx = diagnosis::Context::default();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return ctx };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(master) = std::fs::read_link(entry.path().join("master"))
            && let Some(m) = master.file_name()
        {
            ctx.masters.push((name.clone(), m.to_string_lossy().into_owned()));
        }
        ctx.interfaces.push(name);
    }
    ctx.interfaces.sort();
    ctx
}

fn decode_setup(head: &[u8], tail: &[u8]) -> Msg {
    match event::decode(head, tail) {
        Ok(ev) => match SetupRecord::from_event(&ev) {
            Some(r) => Msg::Setup(r),
            None => Msg::BadSample(format!("unknown function id {}", ev.function)),
        },
        Err(e) => Msg::BadSample(e.to_string()),
    }
}

fn decode_poll(head: &[u8], tail: &[u8]) -> Msg {
    match event::decode_as::<netpoll_trace_common::PollEvent>(head, tail) {
        Ok(ev) => Msg::SlowPoll(poll::slow(&ev)),
        Err(e) => Msg::BadSample(e.to_string()),
    }
}

/// One reader task per CPU buffer of `array`.
fn spawn_readers(
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
