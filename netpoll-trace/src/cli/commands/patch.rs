//! `patch`, `unpatch`, `status`: the runtime patch by hand, through the kernel layer's
//! driver of the netpoll_patch module.

use crate::cli::outln;
use anyhow::Result;

use super::check;
use crate::{
    cli::exit::Exit,
    kernel::{
        attach::AttachChoice,
        clock::monotonic_ns,
        netconsole,
        object::ObjectChoice,
        patch_module::{self, MODULE_NAME},
        recorder,
    },
    model::{
        correlate,
        event::SetupRecord,
        health::{self, Dynamic, TargetHealth},
        output::Output,
        replay, send,
        target::{Lifecycle, Teardown},
    },
};

pub fn patch(dev: &str, module: Option<&std::path::Path>, json: bool) -> Result<Exit> {
    let p = patch_module::patch(dev, module)?;
    if json {
        outln!("{}", serde_json::to_string(&p)?);
        return Ok(Exit::Ok);
    }
    // What the hook does, as the module says (an older module does not say).
    let hook = match p.hook.as_deref() {
        Some("napi") => format!(
            "an ndo_poll_controller that schedules {}'s NAPI contexts",
            p.dev
        ),
        Some(other) => format!("an ndo_poll_controller ({other})"),
        None => "an ndo_poll_controller (the module does not say what it does: an old build?)"
            .to_string(),
    };
    outln!(
        "patched {}: ops {} -> a private copy{} with {hook} (owner {} pinned while patched)",
        p.dev,
        p.ops(),
        p.copy.map(|c| format!(" (copy {c})")).unwrap_or_default(),
        p.owner
    );
    outln!(
        "note: a stopgap for kernels whose netpoll demands the hook (before 4.19, or a distro kernel that never took that change); they poll only NAPI contexts a hook scheduled, which is what a panic's report needs. A kernel >= 4.19 needs no hook: upgrade for the real fix"
    );
    Ok(Exit::Ok)
}

pub fn unpatch(dev: &str, force: bool, json: bool) -> Result<Exit> {
    if force {
        crate::status!(
            Warn,
            "--force: restoring {dev}'s ops even if netpoll is attached; before 4.19 netconsole output on {dev} may stall"
        );
    }
    let (p, unloaded) = patch_module::unpatch(dev, force)?;
    if json {
        let mut v = serde_json::to_value(&p)?;
        v["module_unloaded"] = unloaded.into();
        outln!("{v}");
        return Ok(Exit::Ok);
    }
    outln!("restored {}: ops {}", p.dev, p.ops());
    if unloaded {
        outln!("nothing left patched: unloaded {MODULE_NAME}");
    }
    Ok(Exit::Ok)
}

/// Each netconsole target's health: configfs's, and the recorder's (when one is pinned
/// at `pin_dir`); with why the recorder could not be read, when it could not.
fn targets(pin_dir: &std::path::Path) -> (Vec<TargetHealth>, Option<String>) {
    let dynamic: Vec<Dynamic> = netconsole::targets(std::path::Path::new(netconsole::CONFIGFS))
        .into_iter()
        .map(|t| Dynamic {
            remote: t.remote(),
            name: t.name,
            dev: t.dev,
            enabled: t.enabled,
            transmit_errors: t.transmit_errors,
        })
        .collect();
    let (states, sends, note) = match recorder::snapshot::read(pin_dir) {
        Ok(snap) => {
            let records: Vec<SetupRecord> = snap
                .events
                .iter()
                .filter_map(|(_, ev)| SetupRecord::from_event(ev))
                .collect();
            let teardowns: Vec<Teardown> = snap
                .events
                .iter()
                .filter_map(|(_, ev)| Teardown::from_event(ev))
                .collect();
            let attempts = correlate::group(records)
                .into_iter()
                .map(|a| Output::Attempt(Box::new(a), None))
                .collect();
            let mut life = Lifecycle::default();
            for o in replay::targets(attempts, teardowns) {
                if let Output::Target(t) = o {
                    life.apply(&t);
                }
            }
            let states: Vec<_> = life.targets().cloned().collect();
            (
                states,
                send::summarize_all(&snap.sends, monotonic_ns()),
                None,
            )
        }
        Err(e) => (Vec::new(), Vec::new(), Some(format!("{e:#}"))),
    };
    (health::health(&dynamic, &states, &sends), note)
}

pub fn status(
    json: bool,
    object: ObjectChoice,
    attach: AttachChoice,
    pin_dir: &std::path::Path,
) -> Result<Exit> {
    let list = patch_module::status()?;
    let (targets, recorder_note) = targets(pin_dir);
    // What the tracer (and so the agent that patches) would use on this kernel, with the
    // same defaults (NETPOLL_TRACE_OBJECT, NETPOLL_TRACE_ATTACH) as watch and agent.
    let tracer = check::probe_tracer(object, attach);
    if json {
        let (object, attach_path, tracer_error) = match &tracer {
            Some(Ok(t)) => (Some(t.object.clone()), Some(t.attach_path.clone()), None),
            Some(Err(e)) => (None, None, Some(e.clone())),
            None => (
                None,
                None,
                Some("not tried: loading the eBPF objects needs root".to_string()),
            ),
        };
        outln!(
            "{}",
            serde_json::json!({
                "module_loaded": !list.is_empty() || patch_module::module_loaded(),
                "patched": list,
                "object": object,
                "attach_path": attach_path,
                "tracer_error": tracer_error,
                "targets": targets,
                "recorder_error": recorder_note,
            })
        );
        return Ok(Exit::Ok);
    }
    match &tracer {
        Some(Ok(t)) => outln!(
            "tracer: the {} eBPF object, attach path {}",
            t.object,
            t.attach_path
        ),
        Some(Err(e)) => outln!("tracer: no eBPF object loads on this kernel: {e}"),
        None => outln!("tracer: unknown (run as root: loading the eBPF objects needs it)"),
    }
    if list.is_empty() {
        outln!("no device patched");
    } else {
        for p in &list {
            outln!(
                "{:<16} ifindex {:<4} ops {} -> a private copy{} (owner {}, hook {})",
                p.dev,
                p.ifindex,
                p.ops(),
                p.copy.map(|c| format!(" {c}")).unwrap_or_default(),
                p.owner,
                p.hook.as_deref().unwrap_or("?")
            );
        }
    }
    if targets.is_empty() {
        outln!("no netconsole target known (none in configfs, none recorded)");
    }
    let now = monotonic_ns();
    for t in &targets {
        outln!("{}", target_line(t, now));
    }
    if let Some(why) = recorder_note {
        outln!("target delivery: no flight recorder to read ({why})");
    }
    Ok(Exit::Ok)
}

/// One target's health on one line.
fn target_line(t: &TargetHealth, now_ns: u64) -> String {
    use crate::sinks::terminal::esc;
    let opt = |v: &Option<String>| {
        v.as_deref()
            .map_or("?".to_string(), |s| esc(s).into_owned())
    };
    let mut line = format!(
        "target {} dev {} remote {} {}",
        esc(&t.target),
        opt(&t.dev),
        opt(&t.remote),
        match t.enabled {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "enabled?",
        }
    );
    if let Some(c) = &t.configfs {
        line.push_str(&format!(" (configfs {})", esc(c)));
    }
    if let (Some(change), Some(cause)) = (t.last_change, t.last_cause) {
        line.push_str(&format!("; last {change} ({})", cause.replace('_', " ")));
    }
    match (t.messages, t.dropped) {
        (Some(m), Some(d)) => {
            line.push_str(&format!(
                "; {m} message(s), {} sent, {} deferred, {d} dropped",
                t.sent.unwrap_or(0),
                t.deferred.unwrap_or(0)
            ));
            if let (Some(at), Some(r)) = (t.last_drop_ns, t.last_drop_reason) {
                line.push_str(&format!(
                    ", last {:.0}s ago: {}",
                    now_ns.saturating_sub(at) as f64 / 1e9,
                    r.as_str()
                ));
            }
        }
        _ => line.push_str("; no messages recorded"),
    }
    if let Some(n) = t.transmit_errors {
        line.push_str(&format!("; the kernel counts {n} transmit error(s)"));
    }
    line
}
