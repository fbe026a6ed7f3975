//! `netpoll-trace watch`: attach, run COMMAND (or wait), drain, report.

use std::{os::unix::process::ExitStatusExt as _, path::PathBuf, process::ExitStatus, time::Duration};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{
    MapData,
    perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer},
};
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinSet};

use crate::{
    btf_offsets, correlate, diagnosis,
    enrich::Enricher,
    event::{self, SetupRecord},
    exit::Exit,
    kmsg, loader, output, poll,
};

pub struct WatchArgs {
    pub json: bool,
    pub duration: Option<Duration>,
    pub devices: Vec<String>,
    pub btf: Option<PathBuf>,
    pub attach: loader::AttachChoice,
    pub slow_poll: Duration,
    pub command: Vec<String>,
}

enum Msg {
    Setup(SetupRecord),
    SlowPoll(poll::SlowPoll),
    Lost(u64),
    BadSample(String),
}

pub fn run(args: WatchArgs) -> Result<Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(watch(args))
}

async fn watch(args: WatchArgs) -> Result<Exit> {
    loader::require_functions()?;
    // Signal handlers go in before "ready" is printed: a script that stops us right
    // after seeing it must not hit the default (or, for `&` jobs, ignored) action.
    let signals = Signals::install()?;
    // Opened before attaching, so every kernel line about our set-ups comes after it.
    let kernel_log = kmsg::KernelLog::default();
    let kmsg = match kmsg::KmsgReader::open() {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!("netpoll-trace: warning: cannot read the kernel log ({e}); diagnoses will not quote it");
            None
        }
    };
    let resolved = match btf_offsets::load(args.btf.as_deref())? {
        Some((btf, path)) => btf_offsets::Resolved { source: Some(path), ..btf_offsets::resolve(&btf) },
        None => btf_offsets::Resolved::reduced(),
    };
    if let Some(missing) = resolved.describe_missing() {
        eprintln!("netpoll-trace: warning: {missing}");
    }
    let mut config = resolved.config;
    config.slow_poll_ns = args.slow_poll.as_nanos().min(u64::MAX as u128) as u64;
    let mut loaded = loader::load_and_attach(&config, args.attach)?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = JoinSet::new();
    spawn_readers(&mut readers, &mut loaded.setup_events, &tx, &stop_rx, decode_setup)?;
    spawn_readers(&mut readers, &mut loaded.poll_events, &tx, &stop_rx, decode_poll)?;
    drop(tx);

    if let Some(reason) = &loaded.fallback_reason {
        eprintln!("netpoll-trace: fentry unavailable ({reason}); using kprobes");
    }
    for (f, why) in &loaded.skipped {
        eprintln!("netpoll-trace: warning: not tracing {f}: {why}");
    }
    eprintln!(
        "netpoll-trace: ready: {} on {} (attached in {:.1} ms; offsets from {})",
        loaded.method,
        loaded.attached.join(", "),
        loaded.attach_ms,
        resolved.source.as_ref().map_or("nowhere: reduced mode".to_string(), |p| p.display().to_string()),
    );

    // Report live: each attempt as soon as its outermost call has returned (plus a
    // short grace, since a nested call's record may come from another CPU's buffer).
    let mut report = Reporter {
        json: args.json,
        devices: args.devices.clone(),
        enricher: Enricher::new(),
        ctx: host_context(),
        kernel_log,
        kmsg,
        buffer: Vec::new(),
        roots: Vec::new(),
        failures: 0,
        lost: 0,
        first_ts: None,
    };
    let end = wait_for_end(&args, signals);
    tokio::pin!(end);
    let mut tick = tokio::time::interval(GRACE);
    let status = loop {
        tokio::select! {
            st = &mut end => break st?,
            Some(msg) = rx.recv() => report.take(msg),
            _ = tick.tick() => report.flush(false),
        }
    };
    // Events are written when the traced call returns, so once COMMAND has exited
    // they are all in the buffers: one final drain per CPU, then stop.
    let _ = stop_tx.send(true);
    while readers.join_next().await.is_some() {}
    while let Some(msg) = rx.recv().await {
        report.take(msg);
    }
    report.flush(true);
    let (failures, lost, kernel_log) = (report.failures, report.lost, report.kernel_log);
    let wanted = |dev: &Option<String>| args.devices.is_empty() || dev.as_ref().is_some_and(|d| args.devices.contains(d));

    let now = monotonic_ns();
    match poll::read_stats(&loaded.ebpf, now) {
        Ok(stats) => {
            for s in stats.iter().filter(|s| wanted(&s.dev)) {
                emit(args.json, &serde_json::to_string(s)?, || s.human());
            }
        }
        Err(e) => eprintln!("netpoll-trace: warning: reading poll statistics: {e:#}"),
    }
    if lost > 0 {
        eprintln!("netpoll-trace: warning: the kernel dropped {lost} events (perf buffer full); the report is incomplete");
    }
    if let Some(line) = kernel_log.netconsole_not_enabled() {
        eprintln!("netpoll-trace: netconsole is NOT logging: the kernel said \"{line}\"");
    }
    eprintln!("netpoll-trace: {failures} failed netpoll set-up(s), {lost} event(s) lost");
    drop(loaded);

    // COMMAND's failure status wins; a command that "succeeded" while a set-up
    // failed (6.x dynamic netconsole) is a silent failure: exit 3.
    Ok(match status.map(exit_code_of) {
        Some(code) if code != 0 => Exit::Command(code),
        _ if failures > 0 => Exit::NetpollFailure,
        _ => Exit::Ok,
    })
}

/// How long a returned outermost call waits for nested records from other CPUs.
const GRACE: Duration = Duration::from_millis(100);

/// Turns the event stream into reported attempts, live.
struct Reporter {
    json: bool,
    devices: Vec<String>,
    enricher: Enricher,
    ctx: diagnosis::Context,
    kernel_log: kmsg::KernelLog,
    kmsg: Option<kmsg::KmsgReader>,
    /// Records not yet reported.
    buffer: Vec<SetupRecord>,
    /// Outermost calls that have returned: (pid, entry ts, return ts, when it arrived).
    roots: Vec<(u32, u64, u64, std::time::Instant)>,
    failures: usize,
    lost: u64,
    first_ts: Option<u64>,
}

impl Reporter {
    fn wanted(&self, dev: &Option<String>) -> bool {
        self.devices.is_empty() || dev.as_ref().is_some_and(|d| self.devices.contains(d))
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Setup(mut r) => {
                self.enricher.enrich(&mut r);
                if r.depth == 0 {
                    let end = r.ts_ns.saturating_add(r.duration_ns);
                    self.roots.push((r.pid, r.ts_ns, end, std::time::Instant::now()));
                }
                self.buffer.push(r);
            }
            Msg::SlowPoll(p) => {
                if self.wanted(&p.dev) {
                    let line = serde_json::to_string(&p).unwrap_or_default();
                    emit(self.json, &line, || {
                        format!("slow poll {} took {}us", p.dev.as_deref().unwrap_or("?"), p.duration_ns / 1000)
                    });
                }
            }
            Msg::Lost(n) => {
                self.lost += n;
                eprintln!("netpoll-trace: warning: the kernel dropped {n} events (perf buffer full)");
            }
            Msg::BadSample(e) => eprintln!("netpoll-trace: warning: undecodable event: {e}"),
        }
    }

    /// Reports attempts whose outermost call returned over GRACE ago (all when `all`).
    fn flush(&mut self, all: bool) {
        let due: Vec<(u32, u64, u64)> = self
            .roots
            .iter()
            .filter(|(_, _, _, at)| all || at.elapsed() >= GRACE)
            .map(|(pid, ts, end, _)| (*pid, *ts, *end))
            .collect();
        if due.is_empty() && !(all && !self.buffer.is_empty()) {
            return;
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
        for attempt in correlate::group(ready) {
            self.report(&attempt);
        }
    }

    fn report(&mut self, attempt: &correlate::Attempt) {
        if !attempt.records().any(|r| self.wanted(&r.dev)) {
            return;
        }
        let since = *self.first_ts.get_or_insert(attempt.root.ts_ns);
        for r in attempt.records() {
            emit(self.json, &output::json_line(r), || output::human_line(r, since));
        }
        if let Some(d) = diagnosis::diagnose(attempt, &self.ctx, &mut self.kernel_log) {
            self.failures += 1;
            let line = serde_json::to_string(&d).unwrap_or_default();
            emit(self.json, &line, || d.render().trim_end().to_string());
        }
    }
}

fn emit(json: bool, json_line: &str, human: impl FnOnce() -> String) {
    if json {
        println!("{json_line}");
    } else {
        println!("{}", human());
    }
}

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Interfaces and their masters, for name suggestions and slave diagnoses.
fn host_context() -> diagnosis::Context {
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

fn exit_code_of(st: ExitStatus) -> u8 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }
}

/// Runs COMMAND to completion, or waits for --for / SIGINT / SIGTERM.
async fn wait_for_end(args: &WatchArgs, signals: Signals) -> Result<Option<ExitStatus>> {
    let Signals { mut term, mut int } = signals;
    if let Some((prog, rest)) = args.command.split_first() {
        let mut child = tokio::process::Command::new(prog)
            .args(rest)
            .spawn()
            .with_context(|| format!("starting command `{prog}`"))?;
        let st = child.wait().await.with_context(|| format!("waiting for `{prog}`"))?;
        return Ok(Some(st));
    }
    let limit = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = limit => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(None)
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
