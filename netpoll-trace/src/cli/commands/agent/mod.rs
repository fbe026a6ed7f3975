//! `netpoll-trace agent`: the runner of the model's remediation decisions. It watches
//! netpoll set-ups through the pipeline; per failure, `model::agent` decides (patch,
//! report, retry, back off, verify) and this carries each step out: the patch module,
//! the retry (configfs or the configured command), waiting for the verifying set-up.
//! Every decision and action is a journal entry, fed to the journal and metrics sinks.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::signals::Signals;
use crate::{
    cli::{args::RecorderArgs, exit::Exit},
    kernel::{
        attach::AttachChoice, clock::monotonic_ns, ethtool, host, netconsole, object::ObjectChoice,
        patch_module, privileges, trusted_file::TrustedFile,
    },
    model::{
        agent::{
            self, Backlog, DeviceBack, Handled, Identity, KILL_GRACE, KilledBy, Need, Next, Note,
            PatchOutcome, Reenabling, Remediation, SendCheck, SendWatch, Step, Successes, Verified,
        },
        config::{self, AgentConfig, RetryMethod, TargetStopped},
        correlate::Attempt,
        diagnosis::{Cause, Diagnosis},
        output::{Dropped, Output, Sink},
        remediation::{self, Action, Outcome},
        target::TargetEvent,
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

/// The configuration: `--config FILE`, else /etc/netpoll-trace/agent.toml when it
/// exists, else the built-in defaults (with a note saying so). Validated before
/// anything is attached: a bad key is a one-line error.
pub fn load_config(path: Option<&Path>) -> Result<(AgentConfig, Option<String>)> {
    if let Some(p) = path {
        return Ok((read_config(p)?, None));
    }
    let default = Path::new(config::DEFAULT_PATH);
    match std::fs::symlink_metadata(default) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((
            AgentConfig::default(),
            Some(format!(
                "no {}: built-in defaults (report every failure, patch nothing)",
                default.display()
            )),
        )),
        _ => Ok((read_config(default)?, None)),
    }
}

/// The configuration names a command run as root and a journal the agent chmods: it is
/// read only from a root-owned file that neither group nor others can write, in
/// directories only root can change (as the patch module is), through the descriptor
/// that was checked.
fn read_config(path: &Path) -> Result<AgentConfig> {
    let text = TrustedFile::open(path, "configuration")?.read_to_string()?;
    AgentConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
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
    running: Option<Running>,
}

/// A retry command that is running.
struct Running {
    child: tokio::process::Child,
    /// Its process group (its own: everything it starts is killed with it).
    pgid: i32,
    command: String,
    dev: String,
    attempt: u32,
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
        })
    }

    /// Stamps and journals one entry.
    fn log(&mut self, dev: Option<&str>, note: Note, cause: Option<Cause>) {
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
            ring_size: r.ring_size(),
            persist: r.persist,
            required: r.persist || r.pin_dir.is_some(),
        });
        let opts = TraceOptions {
            btf: self.args.btf.clone(),
            offsets: self.args.offsets.clone(),
            attach: self.args.attach,
            object: self.args.object,
            slow_poll: Duration::from_millis(1),
            slow_send: Duration::from_millis(2),
            recorder,
            // Metrics show the statistics; a re-enable checks the send counters grow.
            poll_refresh: (listener.is_some() || self.reads_send_stats())
                .then_some(metrics::POLL_REFRESH),
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
        let reads_maps = self.sinks.metrics.is_some() || self.reads_send_stats();
        let keep: Vec<u32> = agent::needs(&self.cfg, self.args.dry_run, reads_maps)
            .into_iter()
            .map(capability)
            .collect();
        let kept: Vec<&str> = keep.iter().map(|c| privileges::name(*c)).collect();
        // Fatal when it fails: returning drops the tracer, which detaches everything not
        // asked to persist.
        privileges::keep_only(&keep)?;
        privileges::all_threads_within(&keep)?;
        let caps = format!("keeping only {}", kept.join(", "));
        let dry = if self.args.dry_run {
            "; dry run: nothing will be changed"
        } else {
            ""
        };
        // Its own thread, holding no capability at all: it only serves what the main loop
        // gathered (a peer on the network talks to it).
        if let Some((l, m)) = endpoint {
            metrics::http::spawn(l, m, privileges::drop_all_in_this_thread)?;
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
        let detail = format!(
            "{}; {caps}{}",
            tracer.ready,
            if self.args.dry_run { "; dry run" } else { "" }
        );
        self.log(
            None,
            Note::new(Action::Start, Outcome::Ok, detail, None),
            None,
        );

        let Signals { mut term, mut int } = signals;
        let mut unfixed = 0usize;
        'outer: loop {
            if self.backlog.is_empty() {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    outs = tracer.next() => {
                        self.observe(&outs);
                        for o in outs {
                            self.backlog.push(o);
                        }
                    }
                }
            }
            // Outputs are handled in order: a success supersedes only failures after it.
            while let Some(o) = self.backlog.pop() {
                let (attempt, d) = match o {
                    Output::Attempt(a, None) => {
                        self.successes.note(&a);
                        continue;
                    }
                    Output::Attempt(a, Some(d)) => (a, d),
                    Output::Target(e) => {
                        let handled = tokio::select! {
                            h = self.handle_target(&mut tracer, &e) => h,
                            _ = term.recv() => break 'outer,
                            _ = int.recv() => break 'outer,
                        };
                        match handled {
                            None => continue,
                            Some(Handled::Unfixed) => unfixed += 1,
                            Some(Handled::Fixed) => {}
                        }
                        if self.args.once {
                            break 'outer;
                        }
                        continue;
                    }
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
        // Stopped mid-retry: the command must not outlive the agent.
        if let Some(mut r) = self.running.take() {
            let by = terminate(&mut r.child, r.pgid).await;
            self.log(
                Some(&r.dev),
                agent::killed_on_stop(&r.command, by, r.attempt),
                None,
            );
        }
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
        Ok(if self.args.once && unfixed > 0 {
            Exit::NetpollFailure
        } else {
            Exit::Ok
        })
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

    /// Carries out the model's decisions for one failure until it is done.
    async fn handle(&mut self, tracer: &mut Tracer, attempt: &Attempt, d: &Diagnosis) -> Handled {
        self.report_backlog_drops();
        let failed = Identity::of(attempt, d.failing_device().unwrap_or_default());
        let (mut rem, mut next) = Remediation::begin(
            &attempt.root,
            d,
            &failed,
            &self.cfg,
            self.args.dry_run,
            &self.successes,
        );
        // When the last retry started: only set-ups from then on verify it.
        let mut retried_at = 0;
        loop {
            for note in rem.take_notes() {
                self.log(Some(&rem.dev), note, Some(d.cause));
            }
            next = match next {
                Next::Done(h) => return h,
                Next::Patch => rem.patched(self.patch(&rem.dev)),
                // Never forced: if netpoll is already bound to that device, it stays patched.
                Next::Unpatch => rem.unpatched(match patch_module::unpatch(&rem.dev, false) {
                    Ok((p, unloaded)) => Ok(format!(
                        "restored ops {} of {} (ifindex {}){}",
                        p.ops(),
                        p.dev,
                        p.ifindex,
                        if unloaded { "; module unloaded" } else { "" }
                    )),
                    Err(e) => Err(format!("{e:#}")),
                }),
                Next::Retry { attempt, after } => {
                    tokio::time::sleep(after).await;
                    retried_at = monotonic_ns();
                    // The target that failed: its own device (a vlan's target names the
                    // vlan, the patch went to the lower device) and its remote.
                    let (dev, remote) = match &rem.target {
                        Some(t) => (
                            t.dev.clone().unwrap_or_else(|| rem.dev.clone()),
                            t.remote.clone(),
                        ),
                        None => (rem.dev.clone(), None),
                    };
                    match retry(
                        &self.cfg,
                        &dev,
                        remote.as_deref(),
                        attempt,
                        &mut self.running,
                    )
                    .await
                    {
                        Retried::Done(r) => rem.retried(r.map_err(|e| format!("{e:#}"))),
                        Retried::TimedOut { command, by } => {
                            rem.retry_timed_out(&command, self.cfg.retry_timeout, by)
                        }
                    }
                }
                Next::Verify { within, .. } => {
                    // A success is noted for the supersede rule by `verify` itself.
                    let v = self
                        .verify(tracer, &rem.dev, rem.target.as_ref(), retried_at, within)
                        .await;
                    rem.verified(v)
                }
            };
        }
    }

    /// Whether the agent reads the send statistics while it runs: to see a re-enabled
    /// target send (a dry run re-enables nothing).
    fn reads_send_stats(&self) -> bool {
        self.cfg.target_stopped == TargetStopped::Reenable && !self.args.dry_run
    }

    /// Carries out the model's decisions for a target's change until done; None when
    /// the change needs none.
    async fn handle_target(&mut self, tracer: &mut Tracer, e: &TargetEvent) -> Option<Handled> {
        self.report_backlog_drops();
        let now = tracer
            .targets()
            .targets()
            .find(|s| s.target == e.target)
            .cloned();
        let (mut r, mut step) = Reenabling::begin(e, now.as_ref(), &self.cfg, self.args.dry_run)?;
        // When the last re-enable started: only set-ups from then on verify it.
        let mut reenabled_at = 0;
        loop {
            let dev = (!r.dev.is_empty()).then(|| r.dev.clone());
            for note in r.take_notes() {
                self.log(dev.as_deref(), note, None);
            }
            step = match step {
                Step::Done(h) => return Some(h),
                Step::AwaitDevice { dev, within } => {
                    let back = self
                        .await_device(tracer, &r.target, &dev, r.stopped_ns, within)
                        .await;
                    r.device_back(back, within)
                }
                Step::Reenable { attempt, after } => {
                    tokio::time::sleep(after).await;
                    reenabled_at = monotonic_ns();
                    match retry(
                        &self.cfg,
                        &r.dev,
                        r.remote.as_deref(),
                        attempt,
                        &mut self.running,
                    )
                    .await
                    {
                        Retried::Done(x) => r.reenabled(x.map_err(|e| format!("{e:#}"))),
                        Retried::TimedOut { command, by } => {
                            r.reenable_timed_out(&command, self.cfg.retry_timeout, by)
                        }
                    }
                }
                Step::VerifySetup { within, .. } => {
                    let (target, dev) = (r.target.clone(), r.dev.clone());
                    let v = self
                        .await_output(tracer, within, |o| {
                            agent::target_verification(o, &target, &dev, reenabled_at)
                        })
                        .await;
                    r.setup_verified(v.unwrap_or(Verified::TimedOut))
                }
                Step::VerifySend { within } => {
                    let check = self.verify_send(tracer, &r.dev, &r.marker(), within).await;
                    r.send_verified(check)
                }
            };
        }
    }

    /// Waits until `dev` exists again (checked every `DEVICE_POLL`), at most `within`,
    /// or until `target` is set up again after `since_ns` by someone else.
    async fn await_device(
        &mut self,
        tracer: &mut Tracer,
        target: &str,
        dev: &str,
        since_ns: u64,
        within: Duration,
    ) -> DeviceBack {
        let started = tokio::time::Instant::now();
        let deadline = started + within;
        let mut poll = tokio::time::interval_at(started + DEVICE_POLL, DEVICE_POLL);
        loop {
            tokio::select! {
                outs = tracer.next() => {
                    self.observe(&outs);
                    let mut up = false;
                    for o in outs {
                        if agent::target_up(&o, target, since_ns) {
                            up = true;
                        } else {
                            self.backlog.push(o);
                        }
                    }
                    if up {
                        return DeviceBack::TargetUp;
                    }
                }
                _ = poll.tick() => {
                    if let Some(ifindex) = device_present(dev) {
                        return DeviceBack::Present { ifindex, waited: started.elapsed() };
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return DeviceBack::TimedOut,
            }
        }
    }

    /// The first output `pick` answers for, within `within`; the others wait in the backlog.
    async fn await_output<T>(
        &mut self,
        tracer: &mut Tracer,
        within: Duration,
        mut pick: impl FnMut(&Output) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let outs = tokio::select! {
                outs = tracer.next() => outs,
                _ = tokio::time::sleep_until(deadline) => return None,
            };
            self.observe(&outs);
            let mut found = None;
            for o in outs {
                if found.is_none()
                    && let Some(v) = pick(&o)
                {
                    found = Some(v);
                    continue;
                }
                self.backlog.push(o);
            }
            if found.is_some() {
                return found;
            }
        }
    }

    /// Takes `dev`'s send counters from the next statistics, writes `marker` to the
    /// kernel log, and waits at most `within` (from the start) for the counters to grow.
    async fn verify_send(
        &mut self,
        tracer: &mut Tracer,
        dev: &str,
        marker: &str,
        within: Duration,
    ) -> SendCheck {
        let deadline = tokio::time::Instant::now() + within;
        let mut watch = SendWatch::new(dev);
        let mut marked = false;
        loop {
            let outs = tokio::select! {
                outs = tracer.next() => outs,
                _ = tokio::time::sleep_until(deadline) => return watch.flat(),
            };
            self.observe(&outs);
            let mut found = None;
            for o in outs {
                if let Output::SendStats { stats, .. } = &o {
                    // The baseline, then (after the marker) growth.
                    if found.is_none() && (!watch.ready() || marked) {
                        found = watch.observe(stats);
                    }
                    continue;
                }
                self.backlog.push(o);
            }
            if let Some(c) = found {
                return c;
            }
            if watch.ready() && !marked {
                marked = true;
                if let Err(e) = write_kmsg(marker) {
                    return SendCheck::Marker(format!("{e:#}"));
                }
            }
        }
    }

    /// Patches `dev` by name and reads back which device that name stands for now
    /// (ifindex from the module's own state, driver from ethtool or sysfs).
    fn patch(&mut self, dev: &str) -> PatchOutcome {
        let driver = || {
            ethtool::driver_info(dev)
                .map(|(d, _)| d)
                .or_else(|| host::sysfs_driver(dev))
        };
        match patch_module::patch(dev, self.cfg.patch_module.as_deref()) {
            Ok(p) => PatchOutcome::Patched {
                detail: format!(
                    "ops {} -> a private copy (owner {}, ifindex {})",
                    p.ops(),
                    p.owner,
                    p.ifindex
                ),
                found: Identity {
                    ifindex: Some(p.ifindex),
                    driver: driver(),
                },
            },
            Err(e) if e.to_string().contains("already patched") => {
                let ifindex = patch_module::status()
                    .ok()
                    .and_then(|s| s.into_iter().find(|p| p.dev == dev))
                    .map(|p| p.ifindex);
                PatchOutcome::AlreadyPatched {
                    found: Identity {
                        ifindex,
                        driver: driver(),
                    },
                }
            }
            Err(e) => PatchOutcome::Failed(format!("{e:#}")),
        }
    }

    /// The next set-up attempt involving `dev` that started at `since_ns` or later, within
    /// `within`. Other outputs wait in the backlog.
    async fn verify(
        &mut self,
        tracer: &mut Tracer,
        dev: &str,
        target: Option<&agent::TargetOf>,
        since_ns: u64,
        within: Duration,
    ) -> Verified {
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
                    && let Some(v) = agent::verification(&o, dev, target, since_ns)
                {
                    if let Output::Attempt(a, None) = &o {
                        self.successes.note(a);
                    }
                    found = Some(v);
                    continue;
                }
                self.backlog.push(o);
            }
            if let Some(v) = found {
                return v;
            }
        }
    }
}

/// How often the agent looks for a stopped target's device (the first look is one
/// interval after the stop: the unregistering device leaves sysfs just after it).
const DEVICE_POLL: Duration = Duration::from_millis(500);

/// Whether the interface `dev` exists, and its ifindex when readable.
fn device_present(dev: &str) -> Option<Option<i32>> {
    if dev.is_empty() || dev.contains('/') || dev == "." || dev == ".." {
        return None;
    }
    let dir = Path::new("/sys/class/net").join(dev);
    if !dir.exists() {
        return None;
    }
    Some(
        std::fs::read_to_string(dir.join("ifindex"))
            .ok()
            .and_then(|i| i.trim().parse().ok()),
    )
}

/// Writes one line to the kernel log at a level the consoles print (root's file, no
/// capability needed).
fn write_kmsg(line: &str) -> Result<()> {
    use std::io::Write as _;
    let printk = std::fs::read_to_string("/proc/sys/kernel/printk").unwrap_or_default();
    let Some(level) = agent::marker_level(&printk) else {
        anyhow::bail!(
            "console_loglevel lets only emergencies reach netconsole ({})",
            printk.trim()
        );
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .context("opening /dev/kmsg")?;
    f.write_all(format!("<{level}>{line}\n").as_bytes())
        .context("writing to /dev/kmsg")
}

/// The configfs target (dynamic netconsole) whose dev_name is `dev` and, when given,
/// whose remote_ip:remote_port is `remote` (a device can carry several targets).
fn configfs_target(dev: &str, remote: Option<&str>) -> Option<PathBuf> {
    configfs_target_in(Path::new(netconsole::CONFIGFS), dev, remote)
}

fn configfs_target_in(root: &Path, dev: &str, remote: Option<&str>) -> Option<PathBuf> {
    // Sorted by name: the same choice every time, whatever order the directory lists.
    netconsole::targets(root)
        .into_iter()
        .find(|t| {
            t.dev.as_deref() == Some(dev) && remote.is_none_or(|r| t.remote().as_deref() == Some(r))
        })
        .map(|t| root.join(t.name))
}

/// How a retry went.
enum Retried {
    /// Done: how, or why it failed.
    Done(Result<String>),
    /// The command ran past retry.timeout and was killed.
    TimedOut { command: String, by: KilledBy },
}

/// Re-runs the netconsole set-up for `dev` (the target sending to `remote`, when
/// known); says how. The command runs in `running` while it runs, so an agent stopping
/// meanwhile can kill it.
async fn retry(
    cfg: &AgentConfig,
    dev: &str,
    remote: Option<&str>,
    attempt: u32,
    running: &mut Option<Running>,
) -> Retried {
    let target = match cfg.retry_method {
        RetryMethod::Command => None,
        _ => configfs_target(dev, remote),
    };
    if let Some(t) = target {
        return Retried::Done(enable_target(&t));
    }
    if cfg.retry_method == RetryMethod::Configfs {
        let to = remote
            .map(|r| format!(" sending to {r}"))
            .unwrap_or_default();
        let configfs = netconsole::CONFIGFS;
        return Retried::Done(Err(anyhow::anyhow!(
            "no netconsole target for {dev}{to} under {configfs} (is configfs mounted, is the target dynamic?)"
        )));
    }
    let Some((prog, args)) = cfg.retry_command.split_first() else {
        return Retried::Done(Err(anyhow::anyhow!(
            "no configfs target for {dev} and no retry.command configured: nothing to retry with"
        )));
    };
    let command = cfg.retry_command.join(" ");
    let caps = privileges::CapSets::only(
        &agent::retry_command_needs()
            .into_iter()
            .map(capability)
            .collect::<Vec<_>>(),
    );
    // No shell: the configured argv runs as is, in a process group of its own so that
    // whatever it starts is killed with it.
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: the hook only makes system calls (prctl, capset).
    unsafe { cmd.pre_exec(move || privileges::restrict_child(&caps)) };
    let spawned = cmd.spawn().with_context(|| format!("running {prog}"));
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Retried::Done(Err(e)),
    };
    let Some(pgid) = child.id().map(|p| p as i32) else {
        return Retried::Done(Err(anyhow::anyhow!(
            "{command} exited before it could be watched"
        )));
    };
    let stderr = child.stderr.take().map(|e| tokio::spawn(read_bounded(e)));
    // In `running` until it is reaped: if the agent stops meanwhile (this future is
    // dropped), the agent kills it.
    let r = running.insert(Running {
        child,
        pgid,
        command: command.clone(),
        dev: dev.to_string(),
        attempt,
    });
    let status = match tokio::time::timeout(cfg.retry_timeout, r.child.wait()).await {
        Ok(status) => {
            // Nothing it started outlives it.
            signal_group(pgid, libc::SIGKILL);
            status
        }
        Err(_) => {
            let by = terminate(&mut r.child, pgid).await;
            *running = None;
            return Retried::TimedOut { command, by };
        }
    };
    *running = None;
    let stderr = match stderr {
        Some(task) => tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default(),
        None => String::new(),
    };
    Retried::Done(match status {
        Ok(s) if s.success() => Ok(format!("ran {command} (exit 0)")),
        Ok(s) => Err(anyhow::anyhow!(
            "{command} exited with {s}: {}",
            stderr.trim()
        )),
        Err(e) => Err(anyhow::anyhow!("waiting for {command}: {e}")),
    })
}

/// The first 4 KiB of a command's stderr (the rest is read and discarded, so the
/// command never blocks on a full pipe).
async fn read_bounded(mut from: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = 4096usize.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) on a process group we created; ESRCH (already gone) is fine.
    unsafe { libc::kill(-pgid, sig) };
}

/// Stops a command and its process group: SIGTERM, then SIGKILL after KILL_GRACE;
/// says which signal ended it.
async fn terminate(child: &mut tokio::process::Child, pgid: i32) -> KilledBy {
    signal_group(pgid, libc::SIGTERM);
    let by = match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(_) => KilledBy::Term,
        Err(_) => KilledBy::Kill,
    };
    // Also whatever in the group ignored SIGTERM after its leader exited.
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait().await;
    by
}

fn enable_target(t: &std::path::Path) -> Result<String> {
    let enabled = t.join("enabled");
    let now = std::fs::read_to_string(&enabled)
        .with_context(|| format!("reading {}", enabled.display()))?;
    if now.trim() == "1" {
        // Already enabled: toggle so netpoll is set up again.
        std::fs::write(&enabled, "0")
            .with_context(|| format!("writing 0 to {}", enabled.display()))?;
    }
    std::fs::write(&enabled, "1").with_context(|| format!("writing 1 to {}", enabled.display()))?;
    Ok(format!("wrote 1 to {}", enabled.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(script: &str, timeout: Duration) -> AgentConfig {
        AgentConfig {
            retry_method: RetryMethod::Command,
            retry_command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            retry_timeout: timeout,
            ..AgentConfig::default()
        }
    }

    /// Gone (or a zombie of a reaper that is not us) within a second: SIGKILL is
    /// delivered at once, the exit takes a moment.
    fn gone(pid: i32) -> bool {
        (0..20).any(|_| {
            let dead = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "));
            if !dead {
                std::thread::sleep(Duration::from_millis(50));
            }
            dead
        })
    }

    fn child_pid(file: &std::path::Path) -> i32 {
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_retry_command_past_its_timeout_is_killed_with_its_process_group() {
        let file = std::env::temp_dir().join(format!("npt-retry-{}", std::process::id()));
        // Ignores SIGTERM, and so does the grandchild it leaves behind.
        let script = format!("trap '' TERM; sleep 60 & echo $! >{}; wait", file.display());
        let mut running = None;
        let started = std::time::Instant::now();
        let r = rt().block_on(async {
            // Bounded here too: before the fix the retry waited for the command forever.
            tokio::time::timeout(
                Duration::from_secs(20),
                retry(
                    &cfg(&script, Duration::from_secs(1)),
                    "eth0",
                    None,
                    1,
                    &mut running,
                ),
            )
            .await
        });
        let Ok(Retried::TimedOut { command, by }) = r else {
            panic!("not timed out")
        };
        assert_eq!(by, KilledBy::Kill);
        assert!(command.starts_with("/bin/sh -c trap"), "{command}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(running.is_none());
        assert!(
            gone(child_pid(&file)),
            "the grandchild outlived the timeout"
        );
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn a_retry_command_cut_off_by_a_stop_is_left_for_the_agent_to_kill() {
        let file = std::env::temp_dir().join(format!("npt-retry-stop-{}", std::process::id()));
        let script = format!("sleep 60 & echo $! >{}; wait", file.display());
        let mut running = None;
        let rt = rt();
        rt.block_on(async {
            // The agent's select! drops the retry when SIGTERM arrives: here, after 1 s.
            let stopped = tokio::time::timeout(
                Duration::from_secs(1),
                retry(
                    &cfg(&script, Duration::from_secs(60)),
                    "eth0",
                    None,
                    2,
                    &mut running,
                ),
            )
            .await;
            assert!(stopped.is_err());
        });
        let mut r = running.take().expect("the running command is still known");
        assert_eq!((r.dev.as_str(), r.attempt), ("eth0", 2));
        assert_eq!(rt.block_on(terminate(&mut r.child, r.pgid)), KilledBy::Term);
        assert!(gone(child_pid(&file)));
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn the_configfs_target_is_found_by_device_and_remote() {
        let root = std::env::temp_dir().join(format!("npt-configfs-{}", std::process::id()));
        for (item, dev, ip, port) in [
            ("a", "eth0", "10.0.0.9", "514"),
            ("b", "eth1.100", "10.0.0.9", "514"),
            ("c", "eth1.100", "10.0.2.2", "6666"),
        ] {
            let d = root.join(item);
            std::fs::create_dir_all(&d).unwrap();
            for (f, v) in [("dev_name", dev), ("remote_ip", ip), ("remote_port", port)] {
                std::fs::write(d.join(f), format!("{v}\n")).unwrap();
            }
        }
        assert_eq!(
            configfs_target_in(&root, "eth1.100", Some("10.0.2.2:6666")),
            Some(root.join("c"))
        );
        assert_eq!(
            configfs_target_in(&root, "eth1.100", Some("10.0.0.9:514")),
            Some(root.join("b"))
        );
        assert_eq!(
            configfs_target_in(&root, "eth1.100", None),
            Some(root.join("b"))
        );
        assert_eq!(
            configfs_target_in(&root, "eth1.100", Some("10.0.0.1:514")),
            None
        );
        assert_eq!(configfs_target_in(&root, "eth2", None), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn only_interface_names_are_looked_up_in_sysfs() {
        assert_eq!(device_present("lo").map(|i| i.is_some()), Some(true));
        for bad in ["", ".", "..", "../lo", "npt-no-such-dev0"] {
            assert_eq!(device_present(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_retry_command_that_fails_says_how() {
        let mut running = None;
        let r = rt().block_on(retry(
            &cfg("echo nope >&2; exit 3", Duration::from_secs(10)),
            "eth0",
            None,
            1,
            &mut running,
        ));
        let Retried::Done(Err(e)) = r else {
            panic!("not a failure")
        };
        assert!(e.to_string().contains("exit status: 3: nope"), "{e}");
        let r = rt().block_on(retry(
            &cfg("exit 0", Duration::from_secs(10)),
            "eth0",
            None,
            1,
            &mut running,
        ));
        assert!(matches!(r, Retried::Done(Ok(_))));
    }
}
