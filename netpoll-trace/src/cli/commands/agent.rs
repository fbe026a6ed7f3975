//! `netpoll-trace agent`: the runner of the model's remediation decisions. It watches
//! netpoll set-ups through the pipeline; per failure, `model::agent` decides (patch,
//! report, retry, back off, verify) and this carries each step out: the patch module,
//! the retry (configfs or the configured command), waiting for the verifying set-up.
//! Every decision and action is a journal entry, fed to the journal and metrics sinks.

use std::{collections::VecDeque, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use super::signals::Signals;
use crate::{
    cli::{args::RecorderArgs, exit::Exit},
    kernel::{attach::AttachChoice, clock::monotonic_ns, object::ObjectChoice, host, patch_module, privileges},
    model::{
        agent::{self, Handled, Need, Next, Note, PatchOutcome, Remediation, Successes, Verified},
        config::{AgentConfig, RetryMethod},
        correlate::Attempt,
        diagnosis::{Cause, Diagnosis},
        output::{Output, Sink},
        remediation::{self, Action, Outcome},
    },
    pipeline::{RecorderOptions, TraceOptions, Tracer},
    sinks::{
        journal::Journal,
        metrics::{self, BuildInfo, Metrics},
        status::Stderr,
        systemd,
    },
};

pub struct AgentArgs {
    pub config: Option<PathBuf>,
    pub dry_run: bool,
    pub once: bool,
    pub journal: Option<PathBuf>,
    pub btf: Option<PathBuf>,
    pub offsets: Option<PathBuf>,
    pub attach: AttachChoice,
    pub object: ObjectChoice,
    pub recorder: RecorderArgs,
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub fn run(args: AgentArgs) -> Result<Exit> {
    // Validated before anything is attached: a bad key is a one-line error.
    let cfg = match &args.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    // Before any thread exists: it edits the environment.
    let notify = systemd::Notifier::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(Agent::new(args, cfg)?.run(notify))
}

/// The agent's sinks: journal (stdout and file), metrics when served, stderr.
struct Sinks {
    journal: Journal,
    metrics: Option<Metrics>,
    stderr: Stderr,
}

impl Sink for Sinks {
    fn emit(&mut self, out: &Output) {
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
    /// Outputs that arrived while a remediation was waiting for its verification.
    backlog: VecDeque<Output>,
    successes: Successes,
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
        let sinks = Sinks { journal, metrics: None, stderr: Stderr::default() };
        Ok(Self { args, cfg, sinks, backlog: VecDeque::new(), successes: Successes::default() })
    }

    /// Stamps and journals one entry.
    fn log(&mut self, dev: Option<&str>, note: Note, cause: Option<Cause>) {
        self.sinks.emit(&Output::Remediation(remediation::Remediation {
            kind: "remediation",
            ts_ns: monotonic_ns(),
            dev: dev.map(str::to_string),
            action: note.action,
            result: note.result,
            detail: note.detail,
            cause,
            attempt: note.attempt,
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
        let listener = match self.args.metrics_addr {
            Some(addr) => Some(metrics::http::bind(addr)?),
            None => None,
        };
        let r = &self.args.recorder;
        // The agent always feeds the flight recorder; without --persist or --pin-dir
        // a host that cannot pin (no bpffs) still gets remediation, with a warning.
        let recorder = Some(RecorderOptions {
            dir: r.dir(),
            ring_size: r.ring_size,
            persist: r.persist,
            required: r.persist || r.pin_dir.is_some(),
        });
        let opts = TraceOptions {
            btf: self.args.btf.clone(),
            offsets: self.args.offsets.clone(),
            attach: self.args.attach,
            object: self.args.object,
            slow_poll: Duration::from_millis(1),
            recorder,
            poll_refresh: listener.is_some().then_some(metrics::POLL_REFRESH),
        };
        let mut tracer = Tracer::start(&opts)?;
        for n in &tracer.notes {
            crate::status!(Warn, "{n}");
        }
        let mut endpoint = None;
        if let Some(l) = listener {
            let build = BuildInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                kernel: host::release().unwrap_or_default().to_string(),
                attach_method: tracer.method().as_str().to_string(),
                object: tracer.path().object.as_str().to_string(),
            };
            let m = Metrics::new(&build);
            endpoint = Some((l, m.clone()));
            self.sinks.metrics = Some(m);
        }
        // Programs are attached and every fd is open: keep only what remediation uses.
        let keep: Vec<u32> =
            agent::needs(self.args.dry_run, self.sinks.metrics.is_some()).into_iter().map(capability).collect();
        let kept: Vec<&str> = keep.iter().map(|c| privileges::name(*c)).collect();
        // Fatal when it fails: returning drops the tracer, which detaches everything not
        // asked to persist.
        privileges::keep_only(&keep)?;
        privileges::all_threads_within(&keep)?;
        let caps = format!("keeping only {}", kept.join(", "));
        let dry = if self.args.dry_run { "; dry run: nothing will be changed" } else { "" };
        // Its own thread, made now so that it has only the capabilities kept.
        if let Some((l, m)) = endpoint {
            metrics::http::spawn(l, m)?;
        }
        crate::status!(Info, "agent {}; {caps}{dry}", tracer.ready);
        // Ready for systemd only now: every probe is attached and the drop succeeded.
        let notify = notify.map(|(n, watchdog)| {
            let _ = n.send(&systemd::ready_message(&format!("agent {}", tracer.ready)));
            let n = std::sync::Arc::new(n);
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
        let detail = format!("{}; {caps}{}", tracer.ready, if self.args.dry_run { "; dry run" } else { "" });
        self.log(None, Note { action: Action::Start, result: Outcome::Ok, detail, attempt: None }, None);

        let Signals { mut term, mut int } = signals;
        let mut unfixed = 0usize;
        'outer: loop {
            if self.backlog.is_empty() {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    outs = tracer.next() => {
                        self.observe(&outs);
                        self.backlog.extend(outs);
                    }
                }
            }
            // Outputs are handled in order: a success supersedes only failures after it.
            while let Some(o) = self.backlog.pop_front() {
                let (attempt, d) = match o {
                    Output::Attempt(a, None) => {
                        self.successes.note(&a);
                        continue;
                    }
                    Output::Attempt(a, Some(d)) => (a, d),
                    _ => continue,
                };
                let handled = tokio::select! {
                    h = self.handle(&mut tracer, &attempt, &d) => h,
                    _ = term.recv() => break 'outer,
                    _ = int.recv() => break 'outer,
                };
                if handled == Handled::Unfixed {
                    unfixed += 1;
                }
                if self.args.once {
                    break 'outer;
                }
            }
        }
        if let Some(n) = &notify {
            let _ = n.send("STOPPING=1");
        }
        let detail = format!("stopping; {unfixed} failure(s) left unfixed");
        self.log(None, Note { action: Action::Stop, result: Outcome::Ok, detail, attempt: None }, None);
        let _ = tracer.finish().await;
        Ok(if self.args.once && unfixed > 0 { Exit::NetpollFailure } else { Exit::Ok })
    }

    /// Carries out the model's decisions for one failure until it is done.
    async fn handle(&mut self, tracer: &mut Tracer, attempt: &Attempt, d: &Diagnosis) -> Handled {
        let driver = attempt.culprit().and_then(|c| c.driver.clone());
        let (mut rem, mut next) =
            Remediation::begin(d, driver.as_deref(), &self.cfg, self.args.dry_run, &self.successes);
        // When the last retry started: only set-ups from then on verify it.
        let mut retried_at = 0;
        loop {
            for note in rem.take_notes() {
                self.log(Some(&rem.dev), note, Some(d.cause));
            }
            next = match next {
                Next::Done(h) => return h,
                Next::Patch => rem.patched(self.patch(&rem.dev)),
                Next::Retry { after, .. } => {
                    tokio::time::sleep(after).await;
                    retried_at = monotonic_ns();
                    rem.retried(retry(&self.cfg, &rem.dev).await.map_err(|e| format!("{e:#}")))
                }
                Next::Verify { within, .. } => {
                    let v = self.verify(tracer, &rem.dev, retried_at, within).await;
                    if let Verified::Succeeded(ts) = v {
                        self.successes.note_device(&rem.dev, ts);
                    }
                    rem.verified(v)
                }
            };
        }
    }

    fn patch(&mut self, dev: &str) -> PatchOutcome {
        match patch_module::patch(dev, self.cfg.patch_module.as_deref()) {
            Ok(p) => PatchOutcome::Patched(format!("ops {} -> a private copy (owner {})", p.ops(), p.owner)),
            Err(e) if e.to_string().contains("already patched") => PatchOutcome::AlreadyPatched,
            Err(e) => PatchOutcome::Failed(format!("{e:#}")),
        }
    }

    /// The next set-up attempt involving `dev` that started at `since_ns` or later, within
    /// `within`. Other outputs wait in the backlog.
    async fn verify(&mut self, tracer: &mut Tracer, dev: &str, since_ns: u64, within: Duration) -> Verified {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let outs = tokio::select! {
                outs = tracer.next() => outs,
                _ = tokio::time::sleep_until(deadline) => return Verified::TimedOut,
            };
            self.observe(&outs);
            let mut found = None;
            for o in outs {
                if found.is_none()
                    && let Some(v) = agent::verification(&o, dev, since_ns)
                {
                    if let Output::Attempt(a, None) = &o {
                        self.successes.note(a);
                    }
                    found = Some(v);
                    continue;
                }
                self.backlog.push_back(o);
            }
            if let Some(v) = found {
                return v;
            }
        }
    }
}

const CONFIGFS: &str = "/sys/kernel/config/netconsole";

/// The configfs target (dynamic netconsole) whose dev_name is `dev`.
fn configfs_target(dev: &str) -> Option<PathBuf> {
    std::fs::read_dir(CONFIGFS).ok()?.flatten().map(|e| e.path()).find(|p| {
        std::fs::read_to_string(p.join("dev_name")).is_ok_and(|n| n.trim() == dev)
    })
}

/// Re-runs the netconsole set-up for `dev`; says how.
async fn retry(cfg: &AgentConfig, dev: &str) -> Result<String> {
    let target = match cfg.retry_method {
        RetryMethod::Command => None,
        _ => configfs_target(dev),
    };
    if let Some(t) = target {
        return enable_target(&t);
    }
    if cfg.retry_method == RetryMethod::Configfs {
        anyhow::bail!("no netconsole target for {dev} under {CONFIGFS} (is configfs mounted, is the target dynamic?)");
    }
    let Some((prog, args)) = cfg.retry_command.split_first() else {
        anyhow::bail!("no configfs target for {dev} and no retry.command configured: nothing to retry with");
    };
    let caps = privileges::CapSets::only(&agent::retry_command_needs().into_iter().map(capability).collect::<Vec<_>>());
    // No shell: the configured argv runs as is.
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args).stdin(std::process::Stdio::null());
    // SAFETY: the hook only makes system calls (prctl, capset).
    unsafe { cmd.pre_exec(move || privileges::restrict_child(&caps)) };
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {prog}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        anyhow::bail!("{} exited with {}: {}", cfg.retry_command.join(" "), out.status, stderr.trim());
    }
    Ok(format!("ran {} (exit 0)", cfg.retry_command.join(" ")))
}

fn enable_target(t: &std::path::Path) -> Result<String> {
    let enabled = t.join("enabled");
    let now = std::fs::read_to_string(&enabled).with_context(|| format!("reading {}", enabled.display()))?;
    if now.trim() == "1" {
        // Already enabled: toggle so netpoll is set up again.
        std::fs::write(&enabled, "0").with_context(|| format!("writing 0 to {}", enabled.display()))?;
    }
    std::fs::write(&enabled, "1").with_context(|| format!("writing 1 to {}", enabled.display()))?;
    Ok(format!("wrote 1 to {}", enabled.display()))
}
