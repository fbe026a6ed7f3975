//! `netpoll-trace agent`: the runner of the model's remediation decisions. It watches
//! netpoll set-ups through the pipeline; per failure or stopped target, one of
//! `model::agent`'s machines decides (patch, report, retry, back off, verify) and
//! `runner` carries each step out. Every decision and action is a journal entry
//! (a `remediation` record), fed to the journal and metrics sinks. `run` reads as
//! start-up (attach, keep only the capabilities the policy needs, tell systemd), the
//! loop (one machine at a time, fed from the backlog) and shutdown.

mod runner;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Result;

use super::signals::Signals;
use crate::{
    cli::{args::RecorderArgs, exit::Exit},
    kernel::{
        attach::AttachChoice, clock::monotonic_ns, command, host, object::ObjectChoice, privileges,
        trusted_file::TrustedFile,
    },
    model::{
        agent::{
            self, Backlog, Handled, Identity, Machine, Need, Note, Patching, Reenabling, Resume,
            Successes,
        },
        config::{self, AgentConfig, TargetStopped},
        diagnosis::Cause,
        output::{Dropped, Output, Sink},
        ready::Ready,
        remediation::{self, Action, Outcome},
    },
    pipeline::{RecorderOptions, TraceOptions, Tracer},
    sinks::{
        journal::Journal,
        metrics::{self, BuildInfo, Metrics},
        status::{self, Stderr},
        systemd,
    },
};

pub struct AgentArgs {
    pub dry_run: bool,
    pub once: bool,
    pub journal: Option<PathBuf>,
    pub btf: Option<PathBuf>,
    pub offsets: Option<PathBuf>,
    pub attach: AttachChoice,
    pub object: ObjectChoice,
    pub recorder: RecorderArgs,
    pub metrics_addr: Option<core::net::SocketAddr>,
}

/// The configuration: `--config FILE`, else /etc/netpoll-trace/agent.toml when it
/// exists, else the built-in defaults (with a note saying so). Validated before
/// anything is attached: a bad key is a one-line error.
pub fn load_config(path: Option<&Path>) -> Result<(AgentConfig, Option<String>)> {
    if let Some(p) = path {
        let text = TrustedFile::open(p, "configuration")?.read_to_string()?;
        return Ok((parse_config(p, &text)?, None));
    }
    let default = Path::new(config::DEFAULT_PATH);
    match TrustedFile::read_if_exists(default, "configuration")? {
        None => Ok((
            AgentConfig::default(),
            Some(format!(
                "no {}: built-in defaults (report every failure, patch nothing)",
                default.display()
            )),
        )),
        Some(text) => Ok((parse_config(default, &text)?, None)),
    }
}

/// The configuration names a command run as root and a journal the agent chmods: it is
/// read (above) only from a root-owned file that neither group nor others can write, in
/// directories only root can change (as the patch module is), through the descriptor
/// that was checked; the model parses it.
fn parse_config(path: &Path, text: &str) -> Result<AgentConfig> {
    AgentConfig::parse(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn run(args: AgentArgs, cfg: AgentConfig) -> Result<Exit> {
    // Before any thread exists: it edits the environment.
    let notify = systemd::Notifier::from_env();
    super::runtime()?.block_on(Agent::new(args, cfg)?.run(notify))
}

/// The agent's sinks: journal (stdout and file), metrics when served, stderr.
struct Sinks {
    journal: Journal,
    metrics: Option<Metrics>,
    stderr: Stderr,
    /// What was dropped to stay bounded, in total (the journal's stop entry says it).
    dropped: [u64; Dropped::ALL.len()],
}

impl Sink for Sinks {
    fn emit(&mut self, out: &Output) {
        if let Output::Dropped { what, count } = out
            && let Some(i) = Dropped::ALL.iter().position(|d| d == what)
        {
            self.dropped[i] += count;
        }
        self.journal.emit(out);
        if let Some(m) = self.metrics.as_mut() {
            m.emit(out);
        }
        self.stderr.emit(out);
    }
}

struct Agent {
    args: AgentArgs,
    cfg: AgentConfig,
    sinks: Sinks,
    /// Attempts that arrived while a remediation was waiting for its verification.
    backlog: Backlog,
    successes: Successes,
    /// The retry command while it runs: killed if the agent stops meanwhile.
    running: Option<command::Running>,
    /// The device and attempt of the latest retry (the journal says what a kill cut off).
    retrying_for: (String, u32),
    /// Who sets a stopped target up again on this kernel (7.3+: the kernel itself).
    resume: Resume,
}

/// The capability that grants a need on this kernel.
fn capability(n: Need) -> u32 {
    match n {
        Need::LoadModules => privileges::CAP_SYS_MODULE,
        Need::ReadKernelLog => privileges::CAP_SYSLOG,
        Need::ReadBpfMaps if privileges::has_cap_bpf() => privileges::CAP_BPF,
        // Before 5.8 bpf() on a map needs CAP_SYS_ADMIN.
        Need::ReadBpfMaps => privileges::CAP_SYS_ADMIN,
    }
}

impl Agent {
    fn new(args: AgentArgs, cfg: AgentConfig) -> Result<Self> {
        let journal = Journal::open(args.journal.as_deref().or(cfg.journal.as_deref()))?;
        let sinks = Sinks {
            journal,
            metrics: None,
            stderr: Stderr::default(),
            dropped: [0; Dropped::ALL.len()],
        };
        Ok(Self {
            args,
            cfg,
            sinks,
            backlog: Backlog::default(),
            successes: Successes::default(),
            running: None,
            retrying_for: (String::new(), 0),
            resume: if crate::kernel::netconsole::resumes_targets() {
                Resume::ByKernel
            } else {
                Resume::ByAgent
            },
        })
    }

    /// Stamps and journals one entry.
    fn log(&mut self, dev: Option<&str>, note: Note, cause: Option<Cause>) {
        self.journal(dev, note, cause, None);
    }

    /// Stamps and journals one entry; the start entry carries what the tracer attached.
    fn journal(
        &mut self,
        dev: Option<&str>,
        note: Note,
        cause: Option<Cause>,
        ready: Option<Ready>,
    ) {
        self.sinks
            .emit(&Output::Remediation(remediation::Remediation {
                kind: "remediation",
                ts_ns: monotonic_ns(),
                dev: dev.map(str::to_string),
                action: note.action,
                result: note.result,
                detail: note.detail,
                cause,
                attempt: note.attempt,
                not_proved: (!note.proved.is_empty())
                    .then(|| remediation::Evidence::not_proved(&note.proved)),
                proved: (!note.proved.is_empty()).then_some(note.proved),
                ready,
            }));
    }

    /// Feeds outputs to the sinks.
    fn observe(&mut self, outs: &[Output]) {
        for o in outs {
            self.sinks.emit(o);
        }
    }

    async fn run(mut self, notify: Option<(systemd::Notifier, Option<Duration>)>) -> Result<Exit> {
        let signals = Signals::install()?;
        let (mut tracer, notify) = self.start(notify)?;
        let unfixed = self.serve(&mut tracer, signals).await;
        self.shutdown(tracer, notify, unfixed).await;
        Ok(if self.args.once && unfixed > 0 {
            Exit::NetpollFailure
        } else {
            Exit::Ok
        })
    }

    /// Start-up: attaches (the tracer), serves metrics when asked, keeps only the
    /// capabilities the policy needs, then says it is ready (stderr, journal, systemd).
    fn start(
        &mut self,
        notify: Option<(systemd::Notifier, Option<Duration>)>,
    ) -> Result<(Tracer, Option<Arc<systemd::Notifier>>)> {
        let listener = match self.args.metrics_addr {
            Some(addr) => Some(metrics::http::bind(addr)?),
            None => None,
        };
        let tracer = Tracer::start(&self.trace_options(listener.is_some()))?;
        for n in &tracer.notes {
            crate::status!(Warn, "{n}");
        }
        let endpoint = listener.map(|l| {
            let m = Metrics::new(&BuildInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                kernel: host::release().unwrap_or_default().to_string(),
                attach_method: tracer.method().as_str().to_string(),
                object: tracer.path().object.as_str().to_string(),
            });
            self.sinks.metrics = Some(m.clone());
            (l, m)
        });
        // Programs are attached and every fd is open: keep only what remediation uses.
        let reads_maps = self.sinks.metrics.is_some() || self.reads_send_stats();
        let keep: Vec<u32> = agent::needs(&self.cfg, self.args.dry_run, reads_maps, self.resume)
            .into_iter()
            .map(capability)
            .collect();
        let kept: Vec<&str> = keep.iter().map(|c| privileges::name(*c)).collect();
        // Fatal when it fails: returning drops the tracer, which detaches everything not
        // asked to persist.
        privileges::keep_only(&keep)?;
        privileges::all_threads_within(&keep)?;
        let caps = format!("keeping only {}", kept.join(", "));
        // Its own thread, holding no capability at all: it only serves what the main loop
        // gathered (a peer on the network talks to it).
        if let Some((l, m)) = endpoint {
            metrics::http::spawn(l, m, privileges::drop_all_in_this_thread)?;
        }
        let dry = if self.args.dry_run {
            "; dry run: nothing will be changed"
        } else {
            ""
        };
        let ready = status::ready_line(&tracer.ready);
        crate::status!(Info, "agent {ready}; {caps}{dry}");
        // Ready for systemd only now: every probe is attached and the drop succeeded.
        let notify = notify.map(|(n, watchdog)| {
            let _ = n.send(&systemd::ready_message(&format!("agent {ready}")));
            let n = Arc::new(n);
            if let Some(every) = watchdog {
                // The runtime has one thread: a stuck agent stops pinging.
                let pinger = n.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tick.tick().await;
                        let _ = pinger.send("WATCHDOG=1");
                    }
                });
            }
            n
        });
        let dry = if self.args.dry_run { "; dry run" } else { "" };
        let detail = format!("{ready}; {caps}{dry}");
        let start = Note::new(Action::Start, Outcome::Ok, detail, None);
        self.journal(None, start, None, Some(tracer.ready.clone()));
        Ok((tracer, notify))
    }

    /// What the tracer is asked for: the flight recorder always (without --persist or
    /// --pin-dir a host that cannot pin, no bpffs, still gets remediation, with a
    /// warning), the statistics when metrics or a re-enable's send check read them.
    fn trace_options(&self, serving_metrics: bool) -> TraceOptions {
        let r = &self.args.recorder;
        TraceOptions {
            btf: self.args.btf.clone(),
            offsets: self.args.offsets.clone(),
            attach: self.args.attach,
            object: self.args.object,
            slow_poll: Duration::from_millis(1),
            slow_send: Duration::from_millis(2),
            recorder: Some(RecorderOptions {
                dir: r.dir(),
                ring_size: r.ring_size(),
                persist: r.persist,
                required: r.persist || r.pin_dir.is_some(),
            }),
            poll_refresh: (serving_metrics || self.reads_send_stats())
                .then_some(metrics::POLL_REFRESH),
            // Everything attaches before the capabilities are dropped.
            defer_late: false,
        }
    }

    /// The loop: outputs are handled in order, one machine at a time, until a signal
    /// (or, with --once, the first one handled); the failures left unfixed.
    async fn serve(&mut self, tracer: &mut Tracer, signals: Signals) -> usize {
        let Signals { mut term, mut int } = signals;
        let mut unfixed = 0;
        loop {
            if self.backlog.is_empty() {
                tokio::select! {
                    _ = term.recv() => return unfixed,
                    _ = int.recv() => return unfixed,
                    outs = tracer.next() => {
                        self.observe(&outs);
                        for o in outs {
                            self.backlog.push(o);
                        }
                    }
                }
            }
            // A success supersedes only failures after it.
            while let Some(o) = self.backlog.pop() {
                let Some(m) = self.machine_for(tracer, o) else {
                    continue;
                };
                let handled = tokio::select! {
                    h = self.drive(tracer, m) => h,
                    _ = term.recv() => return unfixed,
                    _ = int.recv() => return unfixed,
                };
                if handled == Handled::Unfixed {
                    unfixed += 1;
                }
                if self.args.once {
                    return unfixed;
                }
            }
        }
    }

    /// The machine an output starts: `Patching` for a failed set-up, `Reenabling` for a
    /// target's stop or disable that needs a decision; None for anything else (a
    /// success is noted for the supersede rule).
    fn machine_for(&mut self, tracer: &Tracer, o: Output) -> Option<Machine> {
        match o {
            Output::Attempt(a, None) => {
                self.successes.note(&a);
                None
            }
            Output::Attempt(a, Some(d)) => {
                let failed = Identity::of(&a, d.failing_device().unwrap_or_default());
                let (m, first) = Patching::begin(
                    &a.root,
                    &d,
                    &failed,
                    &self.cfg,
                    self.args.dry_run,
                    &self.successes,
                );
                Some(Machine::patching(m, first))
            }
            Output::Target(e) => {
                // Reported before deciding, as for a failure: even a change that needs
                // no decision.
                self.report_backlog_drops();
                let now = tracer
                    .targets()
                    .targets()
                    .find(|s| s.target == e.target)
                    .cloned();
                let (m, first) =
                    Reenabling::begin(&e, now.as_ref(), &self.cfg, self.args.dry_run, self.resume)?;
                Some(Machine::reenabling(m, first))
            }
            _ => None,
        }
    }

    /// Shutdown: tells systemd, kills a retry command still running, journals what was
    /// left unfixed and dropped, and detaches.
    async fn shutdown(
        &mut self,
        tracer: Tracer,
        notify: Option<Arc<systemd::Notifier>>,
        unfixed: usize,
    ) {
        if let Some(n) = &notify {
            let _ = n.send("STOPPING=1");
        }
        // Stopped mid-retry: the command must not outlive the agent.
        self.kill_retry().await;
        self.report_backlog_drops();
        let mut detail = format!("stopping; {unfixed} failure(s) left unfixed");
        let dropped: Vec<String> = Dropped::ALL
            .iter()
            .zip(self.sinks.dropped)
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| format!("{n} {}", d.as_str().replace('_', " ")))
            .collect();
        if !dropped.is_empty() {
            detail.push_str(&format!(
                "; dropped to stay bounded: {}",
                dropped.join(", ")
            ));
        }
        self.log(
            None,
            Note::new(Action::Stop, Outcome::Ok, detail, None),
            None,
        );
        let _ = tracer.finish().await;
    }

    /// Reports the attempts the backlog dropped (to the journal's sinks: stderr, metrics).
    fn report_backlog_drops(&mut self) {
        let count = self.backlog.take_dropped();
        if count > 0 {
            self.sinks.emit(&Output::Dropped {
                what: Dropped::Backlog,
                count,
            });
        }
    }

    /// Whether the agent reads the send statistics while it runs: to see a re-enabled
    /// target send (a dry run re-enables nothing).
    fn reads_send_stats(&self) -> bool {
        self.cfg.target_stopped == TargetStopped::Reenable && !self.args.dry_run
    }
}
