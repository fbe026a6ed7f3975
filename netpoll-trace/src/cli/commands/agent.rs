//! `netpoll-trace agent`: watches netpoll set-ups and, per failure, applies the
//! configured policy: for missing_poll_controller on an allowlisted driver, patch the
//! device and retry the netconsole target (bounded attempts, backoff), verifying by
//! the next set-up event; for every other cause, report with the remedies and never
//! patch. Every decision and action goes to the journal.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    agent_config::{Config, RetryMethod},
    correlate::Attempt,
    diagnosis::Diagnosis,
    exit::Exit,
    journal::{Entry, Journal, Outcome, Step},
    loader, patch,
    pipeline::{Output, TraceOptions, Tracer, monotonic_ns},
    policy::{self, Decision},
    privileges,
    watch::Signals,
};

pub struct AgentArgs {
    pub config: Option<PathBuf>,
    pub dry_run: bool,
    pub once: bool,
    pub journal: Option<PathBuf>,
    pub btf: Option<PathBuf>,
    pub attach: loader::AttachChoice,
    pub recorder: crate::cli::RecorderArgs,
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub fn run(args: AgentArgs) -> Result<Exit> {
    // Validated before anything is attached: a bad key is a one-line error.
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(Agent::new(args, cfg)?.run())
}

/// How handling one failure ended.
#[derive(Debug, PartialEq, Eq)]
enum Handled {
    Fixed,
    Unfixed,
}

struct Agent {
    args: AgentArgs,
    cfg: Config,
    journal: Journal,
    /// Outputs that arrived while a remediation was waiting for its verification.
    backlog: VecDeque<Output>,
    /// Per device: entry time of its latest successful set-up.
    last_success: HashMap<String, u64>,
    /// `--metrics-addr`: what the endpoint serves.
    metrics: Option<crate::metrics::Recorder>,
}

impl Agent {
    fn new(args: AgentArgs, cfg: Config) -> Result<Self> {
        let journal = Journal::open(args.journal.as_deref().or(cfg.journal.as_deref()))?;
        Ok(Self { args, cfg, journal, backlog: VecDeque::new(), last_success: HashMap::new(), metrics: None })
    }

    fn log(&mut self, dev: Option<&str>, action: Step, result: Outcome, detail: String, d: Option<&Diagnosis>, attempt: Option<u32>) {
        if let Some(m) = &self.metrics {
            m.metrics.remediation(action, result);
        }
        self.journal.write(&Entry {
            kind: "remediation",
            ts_ns: monotonic_ns(),
            dev,
            action,
            result,
            detail,
            cause: d.map(|d| d.cause.as_str()),
            attempt,
        });
    }

    async fn run(mut self) -> Result<Exit> {
        let signals = Signals::install()?;
        let listener = match self.args.metrics_addr {
            Some(addr) => Some(crate::metrics_http::bind(addr).await?),
            None => None,
        };
        let r = &self.args.recorder;
        // The agent always feeds the flight recorder; without --persist or --pin-dir
        // a host that cannot pin (no bpffs) still gets remediation, with a warning.
        let recorder = Some(crate::pipeline::RecorderOptions {
            dir: r.dir(),
            ring_size: r.ring_size,
            persist: r.persist,
            required: r.persist || r.pin_dir.is_some(),
        });
        let opts = TraceOptions {
            btf: self.args.btf.clone(),
            attach: self.args.attach,
            slow_poll: Duration::from_millis(1),
            recorder,
        };
        let mut tracer = Tracer::start(&opts)?;
        for n in &tracer.notes {
            crate::status!(Warn, "{n}");
        }
        self.metrics = listener.map(|l| crate::metrics::Recorder::serve(l, &tracer));
        // Programs are attached and every fd is open: keep only what remediation uses.
        let keep: &[u32] = if self.args.dry_run {
            &[privileges::CAP_SYSLOG]
        } else {
            &[privileges::CAP_SYS_MODULE, privileges::CAP_SYSLOG, privileges::CAP_DAC_OVERRIDE]
        };
        let keep = crate::metrics::capabilities(keep, self.metrics.is_some());
        let kept: Vec<&str> = keep.iter().map(|c| privileges::name(*c)).collect();
        let caps = match privileges::keep_only(&keep) {
            Ok(()) => format!("keeping only {}", kept.join(", ")),
            Err(e) => format!("could not drop capabilities ({e:#})"),
        };
        crate::status!(Info, "agent {}; {caps}{}", tracer.ready, if self.args.dry_run { "; dry run: nothing will be changed" } else { "" });
        let detail = format!("{}; {caps}{}", tracer.ready, if self.args.dry_run { "; dry run" } else { "" });
        self.log(None, Step::Start, Outcome::Ok, detail, None, None);

        let Signals { mut term, mut int } = signals;
        let mut unfixed = 0usize;
        'outer: loop {
            if self.backlog.is_empty() {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    outs = tracer.next() => {
                        if let Some(m) = self.metrics.as_mut() { m.outputs(&tracer, &outs) }
                        self.backlog.extend(outs)
                    }
                }
            }
            while let Some(o) = self.backlog.pop_front() {
                match o {
                    Output::Attempt(attempt, None) => self.note_success(&attempt),
                    Output::Attempt(attempt, Some(d)) => {
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
                    Output::Lost(n) => crate::status!(Warn, "the kernel dropped {n} events"),
                    Output::Warning(w) => crate::status!(Warn, "{w}"),
                    Output::SlowPoll(_) => {}
                }
            }
        }
        self.log(None, Step::Stop, Outcome::Ok, format!("stopping; {unfixed} failure(s) left unfixed"), None, None);
        let _ = tracer.finish().await;
        Ok(if self.args.once && unfixed > 0 { Exit::NetpollFailure } else { Exit::Ok })
    }

    fn note_success(&mut self, a: &Attempt) {
        for r in a.records() {
            if let Some(dev) = &r.dev {
                self.last_success.insert(dev.clone(), r.ts_ns);
            }
        }
    }

    async fn handle(&mut self, tracer: &mut Tracer, attempt: &Attempt, d: &Diagnosis) -> Handled {
        let culprit = attempt.culprit();
        let dev = d.chain.last().or(d.dev.as_ref()).cloned().unwrap_or_default();
        if self.last_success.get(&dev).is_some_and(|ok| *ok > d.ts_ns) {
            let detail = "a later set-up on this device succeeded".to_string();
            self.log(Some(&dev), Step::Decide, Outcome::Superseded, detail, Some(d), None);
            return Handled::Fixed;
        }
        let driver = culprit.and_then(|c| c.driver.clone());
        match policy::decide(d, driver.as_deref(), &self.cfg) {
            Decision::Report { reason } => {
                self.log(Some(&dev), Step::Decide, Outcome::Reported, reason, Some(d), None);
                Handled::Unfixed
            }
            Decision::PatchAndRetry { dev } => {
                let detail = format!("driver {} is allowed: patch, then retry", driver.as_deref().unwrap_or("?"));
                self.log(Some(&dev), Step::Decide, Outcome::Ok, detail, Some(d), None);
                if self.args.dry_run {
                    let module = self.cfg.patch_module.as_ref().map_or("the default module path".into(), |p| p.display().to_string());
                    self.log(Some(&dev), Step::Patch, Outcome::DryRun, format!("would patch {dev} with {module}"), Some(d), None);
                    self.log(Some(&dev), Step::Retry, Outcome::DryRun, "would retry the netconsole target".into(), Some(d), None);
                    return Handled::Unfixed;
                }
                if !self.patch(&dev, d) {
                    return Handled::Unfixed;
                }
                self.retry_until_verified(tracer, &dev, d).await
            }
        }
    }

    fn patch(&mut self, dev: &str, d: &Diagnosis) -> bool {
        match patch::patch(dev, self.cfg.patch_module.as_deref()) {
            Ok(p) => {
                let detail = format!("ops {:#x} -> private copy {:#x} (owner {})", p.orig_ops, p.patched_ops, p.owner);
                self.log(Some(dev), Step::Patch, Outcome::Ok, detail, Some(d), None);
                true
            }
            Err(e) if e.to_string().contains("already patched") => {
                self.log(Some(dev), Step::Patch, Outcome::Ok, "already patched".into(), Some(d), None);
                true
            }
            Err(e) => {
                self.log(Some(dev), Step::Patch, Outcome::Failed, format!("{e:#}"), Some(d), None);
                false
            }
        }
    }

    async fn retry_until_verified(&mut self, tracer: &mut Tracer, dev: &str, d: &Diagnosis) -> Handled {
        let mut wait = self.cfg.backoff;
        for n in 1..=self.cfg.max_attempts {
            if n > 1 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            match retry(&self.cfg, dev).await {
                Ok(how) => self.log(Some(dev), Step::Retry, Outcome::Ok, how, Some(d), Some(n)),
                Err(e) => {
                    self.log(Some(dev), Step::Retry, Outcome::Failed, format!("{e:#}"), Some(d), Some(n));
                    continue;
                }
            }
            match self.verify(tracer, dev).await {
                Some(Ok(ts)) => {
                    self.last_success.insert(dev.to_string(), ts);
                    self.log(Some(dev), Step::Verify, Outcome::Ok, format!("netpoll set-up on {dev} succeeded"), Some(d), Some(n));
                    return Handled::Fixed;
                }
                Some(Err(cause)) => {
                    let detail = format!("set-up on {dev} failed again: {cause}");
                    self.log(Some(dev), Step::Verify, Outcome::Failed, detail, Some(d), Some(n));
                }
                None => {
                    let detail = format!("no set-up on {dev} seen within {:?}", self.cfg.verify_timeout);
                    self.log(Some(dev), Step::Verify, Outcome::Failed, detail, Some(d), Some(n));
                }
            }
        }
        Handled::Unfixed
    }

    /// The next set-up attempt involving `dev`: Ok(entry ts) when it succeeded,
    /// Err(cause) when it failed, None on timeout. Other outputs wait in the backlog.
    async fn verify(&mut self, tracer: &mut Tracer, dev: &str) -> Option<Result<u64, String>> {
        let deadline = tokio::time::Instant::now() + self.cfg.verify_timeout;
        loop {
            let outs = tokio::select! {
                outs = tracer.next() => outs,
                _ = tokio::time::sleep_until(deadline) => return None,
            };
            if let Some(m) = self.metrics.as_mut() { m.outputs(tracer, &outs) }
            let mut found = None;
            for o in outs {
                if found.is_none()
                    && let Output::Attempt(a, diag) = &o
                    && a.records().any(|r| r.dev.as_deref() == Some(dev))
                {
                    found = Some(match diag {
                        None => Ok(a.root.ts_ns),
                        Some(d) => Err(d.cause.as_str().to_string()),
                    });
                    if diag.is_none() {
                        self.note_success(a);
                    }
                    continue;
                }
                self.backlog.push_back(o);
            }
            if found.is_some() {
                return found;
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
async fn retry(cfg: &Config, dev: &str) -> Result<String> {
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
    // No shell: the configured argv runs as is.
    let out = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {prog}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        anyhow::bail!("{} exited with {}: {}", cfg.retry_command.join(" "), out.status, stderr.trim());
    }
    Ok(format!("ran {} (exit 0)", cfg.retry_command.join(" ")))
}

fn enable_target(t: &Path) -> Result<String> {
    let enabled = t.join("enabled");
    let now = std::fs::read_to_string(&enabled).with_context(|| format!("reading {}", enabled.display()))?;
    if now.trim() == "1" {
        // Already enabled: toggle so netpoll is set up again.
        std::fs::write(&enabled, "0").with_context(|| format!("writing 0 to {}", enabled.display()))?;
    }
    std::fs::write(&enabled, "1").with_context(|| format!("writing 1 to {}", enabled.display()))?;
    Ok(format!("wrote 1 to {}", enabled.display()))
}
