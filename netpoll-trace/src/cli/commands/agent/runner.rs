//! The one runner loop: carries out each `Effect` either machine asks for (patch, wait
//! then retry, wait for a verifying set-up or for a device, see a device send) and
//! reports how it went, journaling every decision on the way. Outputs that are not
//! the awaited one wait in the backlog.

use std::time::Duration;

use anyhow::{Result, anyhow};

use super::{Agent, capability};
use crate::{
    kernel::{
        clock::monotonic_ns,
        command::{self, Ran, StoppedBy},
        ethtool, host, kmsg, netconsole, patch_module, privileges,
    },
    model::{
        agent::{
            self, DeviceBack, Effect, Handled, Identity, KilledBy, Machine, PatchOutcome, Report,
            SendCheck, SendWatch, Verified,
        },
        config::{AgentConfig, RetryMethod},
        output::Output,
    },
    pipeline::Tracer,
};

/// How often the agent looks for a stopped target's device (the first look is one
/// interval after the stop: the unregistering device leaves sysfs just after it).
const DEVICE_POLL: Duration = Duration::from_millis(500);

fn killed_by(by: StoppedBy) -> KilledBy {
    match by {
        StoppedBy::Term => KilledBy::Term,
        StoppedBy::Kill => KilledBy::Kill,
    }
}

impl Agent {
    /// Carries out a machine's effects until it is done.
    pub(super) async fn drive(&mut self, tracer: &mut Tracer, mut m: Machine) -> Handled {
        self.report_backlog_drops();
        loop {
            let (dev, cause, notes) = m.take_notes();
            for note in notes {
                self.log(dev.as_deref(), note, cause);
            }
            let report = match m.effect() {
                Effect::Done(h) => return h,
                Effect::Patch { dev } => Report::Patched(self.patch(&dev)),
                // Never forced: if netpoll is already bound to that device, it stays patched.
                Effect::Unpatch { dev } => {
                    Report::Unpatched(match patch_module::unpatch(&dev, false) {
                        Ok((p, unloaded)) => Ok(format!(
                            "restored ops {} of {} (ifindex {}){}",
                            p.ops(),
                            p.dev,
                            p.ifindex,
                            if unloaded { "; module unloaded" } else { "" }
                        )),
                        Err(e) => Err(format!("{e:#}")),
                    })
                }
                Effect::Retry {
                    dev,
                    remote,
                    attempt,
                    after,
                } => {
                    tokio::time::sleep(after).await;
                    let at_ns = monotonic_ns();
                    match self.retry(&dev, remote.as_deref(), attempt).await {
                        Ran::Exited(r) => Report::Retried {
                            at_ns,
                            outcome: r.map_err(|e| format!("{e:#}")),
                        },
                        Ran::TimedOut { command, by } => Report::RetryTimedOut {
                            at_ns,
                            command,
                            timeout: self.cfg.retry_timeout,
                            by: killed_by(by),
                        },
                    }
                }
                Effect::AwaitSetup { verifies, within } => {
                    let v = self
                        .await_output(tracer, within, |o| verifies.check(o))
                        .await;
                    Report::Verified(v.unwrap_or(Verified::TimedOut))
                }
                Effect::AwaitDevice {
                    target,
                    dev,
                    since_ns,
                    within,
                } => Report::DeviceBack(
                    self.await_device(tracer, &target, &dev, since_ns, within)
                        .await,
                ),
                Effect::VerifySend {
                    dev,
                    marker,
                    within,
                } => Report::Sent(self.verify_send(tracer, &dev, &marker, within).await),
            };
            m.report(report);
        }
    }

    /// Kills the retry command still running, if any, with its process group, and
    /// journals it (the agent is stopping).
    pub(super) async fn kill_retry(&mut self) {
        if let Some(mut r) = self.running.take() {
            let by = killed_by(r.stop().await);
            let (dev, attempt) = self.retrying_for.clone();
            let note = agent::killed_on_stop(&r.command, by, attempt);
            self.log(Some(&dev), note, None);
        }
    }

    /// Re-runs the netconsole set-up for `dev` (the target sending to `remote`, when
    /// known): its configfs target, else the configured command. The command is in
    /// `self.retrying` while it runs, so an agent stopping meanwhile can kill it.
    async fn retry(&mut self, dev: &str, remote: Option<&str>, attempt: u32) -> Ran {
        self.retrying_for = (dev.to_string(), attempt);
        retry(&self.cfg, dev, remote, &mut self.running).await
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
                    if let Some(ifindex) = host::device_present(dev) {
                        return DeviceBack::Present { ifindex, waited: started.elapsed() };
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return DeviceBack::TimedOut,
            }
        }
    }

    /// The first output `pick` answers for, within `within`; the others wait in the
    /// backlog. A successful set-up that answers is noted for the supersede rule.
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
                    if let Output::Attempt(a, None) = &o {
                        self.successes.note(a);
                    }
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
                if let Err(e) = write_marker(marker) {
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
}

/// Writes the marker line to the kernel log at a level the consoles print.
fn write_marker(line: &str) -> Result<()> {
    let printk = kmsg::printk_levels();
    let Some(level) = agent::marker_level(&printk) else {
        anyhow::bail!(
            "console_loglevel lets only emergencies reach netconsole ({})",
            printk.trim()
        );
    };
    kmsg::write(level, line)
}

/// Re-runs the netconsole set-up for `dev` (the target sending to `remote`, when
/// known); says how. The command is in `running` while it runs.
async fn retry(
    cfg: &AgentConfig,
    dev: &str,
    remote: Option<&str>,
    running: &mut Option<command::Running>,
) -> Ran {
    let configfs = std::path::Path::new(netconsole::CONFIGFS);
    let lookup = match cfg.retry_method {
        // Only the command: the message below is never said (the configuration requires
        // a command for this method).
        RetryMethod::Command => netconsole::Lookup::Missing,
        _ => netconsole::find_target(configfs, dev, remote),
    };
    let why = match lookup {
        netconsole::Lookup::Found(t) => return Ran::Exited(netconsole::enable(&t)),
        netconsole::Lookup::Missing => {
            let to = remote
                .map(|r| format!(" sending to {r}"))
                .unwrap_or_default();
            format!(
                "no netconsole target for {dev}{to} under {} (is configfs mounted, is the target dynamic?)",
                netconsole::CONFIGFS
            )
        }
        netconsole::Lookup::Ambiguous(names) => format!(
            "{dev} carries several netconsole targets ({}) and the records do not say where the failing one sends: none is touched (enable it yourself)",
            names.join(", ")
        ),
    };
    if cfg.retry_method == RetryMethod::Configfs {
        return Ran::Exited(Err(anyhow!("{why}")));
    }
    if cfg.retry_command.is_empty() {
        return Ran::Exited(Err(anyhow!(
            "{why}; and no retry.command configured: nothing to retry with"
        )));
    }
    let caps = privileges::CapSets::only(
        &agent::retry_command_needs()
            .into_iter()
            .map(capability)
            .collect::<Vec<_>>(),
    );
    command::run(&cfg.retry_command, caps, cfg.retry_timeout, running).await
}
