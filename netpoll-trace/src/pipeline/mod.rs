//! The tracing pipeline `watch` and `agent` share, and the only owner of the running
//! tracer: load and attach the programs (kernel layer), read the perf buffers
//! (`readers`), assemble each set-up attempt as soon as it is complete, enriched
//! (`enrich`) and diagnosed (model), and hand the outputs to sinks.

mod assemble;
mod console_write;
pub mod enrich;
mod late;
mod readers;
mod recorder_plan;
mod retired;

pub use recorder_plan::RecorderOptions;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Result;
use tokio::{io::unix::AsyncFd, sync::mpsc};

use self::{
    assemble::{Assembler, GRACE},
    console_write::ConsoleWrite,
    late::Object,
    readers::{Arrays, Msg, QUEUE, Readers, Unqueued},
    recorder_plan::recorder_plan,
    retired::Retired,
};
use crate::{
    kernel::{
        attach::{self, AttachChoice, AttachMethod},
        clock, device_stats, kmsg,
        object::ObjectChoice,
        offsets,
        profile::{self, stage},
        recorder, targets,
    },
    model::{
        output::{Dropped, Output, Sink},
        poll,
        ready::{self, OffsetsSource, Ready, Recording},
        recorder::Losses,
        send,
    },
};

pub struct TraceOptions {
    pub btf: Option<PathBuf>,
    /// `netpoll_offsets.o` (offsets from the kernel's headers), for kernels without BTF.
    pub offsets: Option<PathBuf>,
    pub attach: AttachChoice,
    /// Which eBPF object (`--object`).
    pub object: ObjectChoice,
    pub slow_poll: Duration,
    /// Skb transmits at least this slow are reported one by one (`slow_send`).
    pub slow_send: Duration,
    /// Record into the pinned flight recorder too.
    pub recorder: Option<RecorderOptions>,
    /// Also push the poll statistics this often while running (for metrics).
    pub poll_refresh: Option<Duration>,
    /// Attach the send path, tear-downs and console write after `ready`, on a blocking
    /// thread, and report them (`Output::LateReady`): `watch`, whose COMMAND starts at
    /// `ready`. The agent attaches all before it drops its capabilities.
    pub defer_late: bool,
}

/// A running tracer.
pub struct Tracer {
    /// The loaded object (away while the late programs attach to it).
    object: Object,
    method: AttachMethod,
    path: attach::Path,
    /// The console write's targets and its on-demand probe.
    console_write: ConsoleWrite,
    rx: mpsc::Receiver<Msg>,
    /// What the readers could not queue (reported as `Dropped` and `Lost`).
    unqueued: Arc<Unqueued>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    readers: Readers,
    /// When the readers last looked for CPUs brought online.
    cpus_checked: Instant,
    /// Unregistered devices' statistics, out of the kernel's maps.
    retired: Retired,
    /// The programs' loss counts when we attached (a pinned recorder's go back further).
    losses_at_start: Losses,
    assembler: Assembler,
    tick: tokio::time::Interval,
    /// The programs' aya-log records, forwarded to the `log` crate as they come.
    logger: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    /// What was attached, how, and with what (phrased by the sinks).
    pub ready: Ready,
    /// Warnings from start-up (fallbacks, unresolved fields).
    pub notes: Vec<String>,
    /// Re-read the poll statistics this often while running (`Output::PollStats`).
    poll_refresh: Option<Duration>,
    last_poll: Option<Instant>,
    /// The allocator's in-use bytes were logged once start-up was over.
    idle_reported: bool,
    /// Held while we record into the pins (keeps a second recorder off them).
    _recorder_lock: Option<recorder::Lock>,
}

impl Tracer {
    pub fn start(opts: &TraceOptions) -> Result<Self> {
        stage("begin");
        let mut notes = Vec::new();
        // Which functions exist and the struct offsets (the kernel's BTF mapped or read, and parsed)
        // on a helper thread, while this one opens the kernel log and loads the object.
        let (facts, kmsg, recorder, preloaded) = std::thread::scope(|s| {
            let facts = s.spawn(|| -> Result<_> {
                let present = targets::require_functions()?;
                let mut resolved =
                    offsets::resolve_sources(opts.btf.as_deref(), opts.offsets.as_deref())?;
                // 7.3+: where netconsole's own functions keep the netpoll in its target.
                let nt_note = targets::traces_netconsole_target(&present)
                    .then(|| {
                        offsets::netconsole_target::resolve(&mut resolved, opts.btf.as_deref())
                    })
                    .flatten();
                Ok((present, resolved, nt_note))
            });
            // Opened before attaching, so every kernel line about our set-ups comes after it.
            let kmsg = match kmsg::KmsgReader::open() {
                Ok(k) => Some(k),
                Err(e) => {
                    notes.push(format!(
                        "cannot read the kernel log ({e}); diagnoses will not quote it"
                    ));
                    None
                }
            };
            let recorder = match &opts.recorder {
                Some(r) => match recorder_plan(r, &mut notes) {
                    Ok((lock, plan)) => Ok((Some(lock), Some(plan))),
                    Err(e) if !r.required => {
                        notes.push(format!("no flight recorder: {e:#}"));
                        Ok((None, None))
                    }
                    Err(e) => Err(e),
                },
                None => Ok((None, None)),
            };
            let preloaded = match &recorder {
                Ok((_, plan)) => attach::Preloaded::load(opts.object, opts.attach, plan.as_ref()),
                Err(_) => attach::Preloaded::default(),
            };
            let facts = facts
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("resolving the kernel's facts panicked")));
            (facts, kmsg, recorder, preloaded)
        });
        // A kernel without what we probe (exit 4) says so before any recorder error.
        let (present, resolved, nt_note) = facts?;
        let (recorder_lock, plan) = recorder?;
        notes.extend(resolved.notes.iter().cloned());
        if let Some(missing) = resolved.describe_missing() {
            notes.push(missing);
        }
        notes.extend(nt_note);
        let mut config = resolved.config;
        config.slow_poll_ns = opts.slow_poll.as_nanos().min(u64::MAX as u128) as u64;
        config.slow_send_ns = opts.slow_send.as_nanos().min(u64::MAX as u128) as u64;
        let mut loaded = attach::load_and_attach(
            &config,
            opts.object,
            opts.attach,
            &present,
            plan.as_ref(),
            preloaded,
            opts.defer_late,
        )?;
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

        let (tx, rx) = mpsc::channel(QUEUE);
        let unqueued = Arc::new(Unqueued::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let losses_at_start = Losses(recorder::snapshot::losses_loaded(&loaded.ebpf)?);
        let readers = Readers::start(
            Arrays {
                setup: &mut loaded.setup_events,
                poll: &mut loaded.poll_events,
                send: &mut loaded.send_events,
            },
            tx,
            unqueued.clone(),
            stop_rx,
        )?;

        for f in &loaded.fallbacks {
            notes.push(if f.object == loaded.path.object {
                // Within one object only fentry falls back, to kprobes.
                format!("{} unavailable ({}); using kprobes", f.method, f.reason)
            } else {
                format!(
                    "the {} eBPF object did not load ({}); using the {} object",
                    f.object, f.reason, loaded.path.object
                )
            });
        }
        notes.extend(loaded.notes.iter().cloned());

        for (f, why) in &loaded.skipped {
            notes.push(ready::not_tracing(f, why));
        }
        if loaded.reused
            && let AttachChoice::Only(asked) = opts.attach
            && asked != loaded.method
        {
            notes.push(format!(
                "--attach ignored: the pinned probes are {}; `netpoll-trace reset` first to change the method",
                loaded.method
            ));
        }
        if let Some(why) = &loaded.unpinnable {
            notes.push(why.clone());
        }
        let ready = Ready {
            method: loaded.method.as_str(),
            kprobes_via: loaded.path.via.map(|v| v.as_str()),
            functions: loaded.attached.clone(),
            reused_pins: loaded.reused,
            attach_ms: loaded.attach_ms,
            object: loaded.path.object.as_str(),
            offsets: resolved.source.as_ref().map(|s| OffsetsSource {
                kind: s.kind.name(),
                path: s.path.display().to_string(),
                detail: s.detail.clone(),
            }),
            recorder: plan.as_ref().map(|p| Recording {
                dir: p.dir.display().to_string(),
                links_pinned: !loaded.pinned_links.is_empty(),
            }),
        };
        let (method, path) = (loaded.method, loaded.path);
        let object = Object::start(loaded, opts.defer_late);
        Ok(Self {
            object,
            method,
            path,
            console_write: ConsoleWrite::default(),
            rx,
            unqueued,
            stop_tx,
            readers,
            cpus_checked: Instant::now(),
            retired: Retired::default(),
            losses_at_start,
            assembler: Assembler::new(kmsg),
            tick: tokio::time::interval(GRACE),
            logger,
            ready,
            notes,
            poll_refresh: opts.poll_refresh,
            last_poll: None,
            idle_reported: false,
            _recorder_lock: recorder_lock,
        })
    }

    /// Waits for events or the next tick; returns what became complete (maybe nothing).
    /// Cancel-safe: nothing is lost when the caller's select! picks another branch.
    pub async fn next(&mut self) -> Vec<Output> {
        if !self.idle_reported && self.object.all_attached() {
            // Start-up is over (the late pass too: it holds the fentry BTF stand-in until
            // done): what stays in use from here is the idle footprint.
            self.idle_reported = true;
            profile::report_memory("after start-up");
            // The BTF facts cache is for the next run: written now, off the event loop
            // (its store syncs to disk).
            tokio::task::spawn_blocking(offsets::write_cache);
        }
        // Records wait for the symbol table their first one started reading; meanwhile
        // the readers keep queueing (the channel holds a burst).
        if self.assembler.is_pending() {
            self.assembler.ready().await;
            profile::report_memory("with the symbol table read");
        }
        let logs = async {
            match self.logger.as_mut() {
                Some(fd) => fd.readable_mut().await.ok(),
                None => std::future::pending().await,
            }
        };
        let mut outs = tokio::select! {
            Some(msg) = self.rx.recv() => self.take(msg),
            _ = self.tick.tick() => {
                self.follow_cpus();
                self.assembler.flush(false)
            }
            Some(mut guard) = logs => {
                guard.get_inner_mut().flush();
                guard.clear_ready();
                Vec::new()
            }
            back = self.object.back() => {
                // The console write may have come with it: give it the targets up now.
                self.console_write.targets_changed();
                vec![back]
            }
            _ = self.console_write.readable() => Vec::new(),
        };
        if let Some(said) = self.object.take_said() {
            outs.insert(0, said);
        }
        self.report_unqueued(&mut outs);
        if outs.iter().any(|o| matches!(o, Output::Target(_))) {
            self.console_write.targets_changed();
        }
        let Some(loaded) = self.object.get_mut() else {
            // The late pass has the object: the rest waits for it.
            return outs;
        };
        outs.extend(self.console_write.sync(loaded, &self.assembler.targets));
        self.retired.collect(&mut loaded.ebpf, false);
        if let Some(every) = self.poll_refresh
            && self.last_poll.is_none_or(|t| t.elapsed() >= every)
        {
            self.last_poll = Some(Instant::now());
            match self.poll_stats() {
                Ok(stats) => outs.push(Output::PollStats { stats, last: false }),
                Err(e) => log::debug!("reading poll statistics: {e:#}"),
            }
            match self.send_stats() {
                Ok(stats) => outs.push(Output::SendStats { stats, last: false }),
                Err(e) => log::debug!("reading send statistics: {e:#}"),
            }
            match self
                .object
                .get()
                .and_then(|l| recorder::snapshot::losses_loaded(&l.ebpf))
            {
                Ok(l) => outs.push(Output::Losses(Losses(l))),
                Err(e) => log::debug!("reading the programs' losses: {e:#}"),
            }
        }
        outs
    }

    /// Hands a reader's message to the assembler, noting an unregistering device first.
    fn take(&mut self, msg: Msg) -> Vec<Output> {
        if let Msg::Teardown(t) = &msg {
            self.retired.note(t);
        }
        self.assembler.take(msg)
    }

    /// Opens perf buffers for CPUs brought online since the last look (once a second).
    fn follow_cpus(&mut self) {
        if self.cpus_checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.cpus_checked = Instant::now();
        let Some(l) = self.object.get_mut() else {
            return;
        };
        let arrays = Arrays {
            setup: &mut l.setup_events,
            poll: &mut l.poll_events,
            send: &mut l.send_events,
        };
        match self.readers.follow_cpus(arrays) {
            Ok(new) if !new.is_empty() => {
                log::info!("reading the events of CPUs {new:?}, online since start-up")
            }
            Ok(_) => {}
            Err(e) => log::warn!("following CPUs brought online: {e:#}"),
        }
    }

    /// What the readers dropped since the last report, as outputs.
    fn report_unqueued(&self, outs: &mut Vec<Output>) {
        let dropped = self.unqueued.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            outs.push(Output::Dropped {
                what: Dropped::Events,
                count: dropped,
            });
        }
        let lost = self.unqueued.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            outs.push(Output::Lost(lost));
        }
    }

    /// Waits for the next outputs (see `next`) and hands each to `sink`.
    pub async fn pump(&mut self, sink: &mut dyn Sink) {
        for o in self.next().await {
            sink.emit(&o);
        }
    }

    /// The kernel's per-device poll statistics so far.
    fn poll_stats(&self) -> Result<Vec<poll::PollSummary>> {
        let mut all = device_stats::read(device_stats::map(
            &self.object.get()?.ebpf,
            netpoll_trace_common::maps::POLL_STATS,
        )?)?;
        all.extend(self.retired.polls().cloned());
        Ok(poll::summarize_all(&all, clock::monotonic_ns()))
    }

    /// The kernel's per-device send-path statistics so far.
    fn send_stats(&self) -> Result<Vec<send::SendSummary>> {
        let mut all = device_stats::read(device_stats::map(
            &self.object.get()?.ebpf,
            netpoll_trace_common::maps::SEND_STATS,
        )?)?;
        all.extend(self.retired.sends().cloned());
        Ok(send::summarize_all(&all, clock::monotonic_ns()))
    }

    /// Whether every probe is attached (the late pass, if any, is over and reported).
    pub fn all_attached(&self) -> bool {
        self.object.all_attached()
    }

    /// Every netconsole target seen and its last change.
    pub fn targets(&self) -> &crate::model::target::Lifecycle {
        &self.assembler.targets
    }

    /// How the programs are attached.
    pub fn method(&self) -> AttachMethod {
        self.method
    }

    /// The eBPF object and attach path in use.
    pub fn path(&self) -> attach::Path {
        self.path
    }

    /// Stops reading, drains every buffer and returns the rest, the final poll
    /// statistics last, and the kernel's word on whether netconsole was left disabled.
    pub async fn finish(mut self) -> (Vec<Output>, Option<String>) {
        // A late pass still running has the object (its maps hold the statistics).
        let mut out: Vec<Output> = self.object.take_said().into_iter().collect();
        out.extend(self.object.settle().await);
        let _ = self.stop_tx.send(true);
        while self.readers.set.join_next().await.is_some() {}
        while let Ok(msg) = self.rx.try_recv() {
            out.extend(self.take(msg));
        }
        if let Some(loaded) = self.object.get_mut() {
            self.retired.collect(&mut loaded.ebpf, true);
        }
        // The last records may have started reading the symbol table.
        self.assembler.ready().await;
        out.extend(self.assembler.flush(true));
        self.report_unqueued(&mut out);
        if let Some(fd) = self.logger.as_mut() {
            fd.get_mut().flush();
        }
        match self.poll_stats() {
            Ok(stats) => out.push(Output::PollStats { stats, last: true }),
            Err(e) => out.push(Output::Warning(format!("reading poll statistics: {e:#}"))),
        }
        match self.send_stats() {
            Ok(stats) => out.push(Output::SendStats { stats, last: true }),
            Err(e) => out.push(Output::Warning(format!("reading send statistics: {e:#}"))),
        }
        match self
            .object
            .get()
            .and_then(|l| recorder::snapshot::losses_loaded(&l.ebpf))
        {
            Ok(l) => out.extend(
                Losses(l)
                    .since(&self.losses_at_start)
                    .live_warnings()
                    .into_iter()
                    .map(Output::Warning),
            ),
            Err(e) => out.push(Output::Warning(format!(
                "reading the programs' losses: {e:#}"
            ))),
        }
        let silent = self
            .assembler
            .kernel_log
            .netconsole_not_enabled()
            .map(str::to_string);
        (out, silent)
    }
}
