//! Attaching the loaded programs to the traced functions, one attacher per method:
//! fentry/fexit (`fentry`) where the kernel has BPF trampolines, kprobes (`kprobe`)
//! otherwise; chosen at load time, and the flight recorder's links pinned or reused.

mod fentry;
mod kprobe;
mod program;

use std::{fmt, time::Instant};

use anyhow::{Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{MapData, PerfEventArray},
    programs::links::PinnedLink,
};
use netpoll_trace_common::{Config, maps};

use self::program::LinkId;
use super::{
    object::{self, RecorderPlan},
    profile::{release_freed_memory, stage},
    recorder,
    targets::{TARGETS, Target},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMethod {
    Fentry,
    Kprobe,
}

impl AttachMethod {
    /// In the order `Auto` tries them.
    pub const ALL: [Self; 2] = [Self::Fentry, Self::Kprobe];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
        }
    }

    /// The entry and return programs of `t` for this method.
    pub fn programs(self, t: &Target) -> (&'static str, &'static str) {
        match self {
            Self::Fentry => t.fentry,
            Self::Kprobe => t.kprobe,
        }
    }

    /// Why this method's links cannot be pinned on this kernel, if they cannot.
    fn unpinnable(self) -> Option<&'static str> {
        match self {
            Self::Fentry => None,
            Self::Kprobe => kprobe::unpinnable(),
        }
    }
}

impl fmt::Display for AttachMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for (`--attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachChoice {
    /// fentry/fexit when the kernel supports them, else kprobes.
    Auto,
    Only(AttachMethod),
}

/// The attached programs and their maps.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub setup_events: PerfEventArray<MapData>,
    pub poll_events: PerfEventArray<MapData>,
    pub method: AttachMethod,
    /// Log records of the programs (aya-log), forwarded to the userspace logger.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Why fentry was not used, when auto fell back to kprobes.
    pub fallback_reason: Option<String>,
    /// Functions attached to.
    pub attached: Vec<&'static str>,
    /// Optional functions that could not be attached, with the reason.
    pub skipped: Vec<(&'static str, String)>,
    /// Wall time from the start of `load_and_attach` to the last probe attached.
    pub attach_ms: f64,
    /// Programs whose links are pinned in the recorder's directory (by us or reused).
    pub pinned_links: Vec<String>,
    /// Why --persist could not pin the links, when it could not.
    pub unpinnable: Option<String>,
    /// The probes are an earlier process's pinned links, not ours.
    pub reused: bool,
}

/// `present` is what `targets::require_functions` returned.
pub fn load_and_attach(
    config: &Config,
    choice: AttachChoice,
    present: &[bool],
    recorder: Option<&RecorderPlan>,
) -> Result<Loaded> {
    let start = Instant::now();
    let (loaded, fallback_reason) = match (choice, recorder) {
        (_, Some(plan)) if !plan.reuse_links.is_empty() => (reuse_pinned(config, plan)?, None),
        (AttachChoice::Only(m), _) => (attach_all(config, m, present, recorder)?, None),
        (AttachChoice::Auto, _) => match attach_all(config, AttachMethod::Fentry, present, recorder) {
            Ok(l) => (l, None),
            Err(e) => {
                log::info!("fentry unavailable, falling back to kprobes: {e:#}");
                (attach_all(config, AttachMethod::Kprobe, present, recorder)?, Some(format!("{e:#}")))
            }
        },
    };
    let attach_ms = start.elapsed().as_secs_f64() * 1e3;
    release_freed_memory();
    stage("attached; freed memory released");
    Ok(Loaded { fallback_reason, attach_ms, ..loaded })
}

/// The perf arrays and the programs' log channel of a loaded object.
fn finish(
    mut ebpf: Ebpf,
    method: AttachMethod,
    attached: Vec<&'static str>,
    skipped: Vec<(&'static str, String)>,
) -> Result<Loaded> {
    let mut take = |name: &str| -> Result<PerfEventArray<MapData>> {
        let map = ebpf.take_map(name).ok_or_else(|| anyhow!("eBPF object has no {name} map"))?;
        Ok(PerfEventArray::try_from(map)?)
    };
    let setup_events = take(maps::SETUP_EVENTS)?;
    let poll_events = take(maps::POLL_EVENTS)?;
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn!("the programs' log records are unavailable: {e}");
            None
        }
    };
    Ok(Loaded {
        ebpf,
        setup_events,
        poll_events,
        method,
        logger,
        fallback_reason: None,
        attached,
        skipped,
        attach_ms: 0.0,
        pinned_links: Vec::new(),
        unpinnable: None,
        reused: false,
    })
}

/// An earlier process's pinned links are recording: read their maps, attach nothing.
fn reuse_pinned(config: &Config, plan: &RecorderPlan) -> Result<Loaded> {
    let ebpf = object::load(config, Some(plan))?;
    let is = |name: &str| plan.reuse_links.iter().any(|l| l == name);
    let method = AttachMethod::ALL
        .into_iter()
        .find(|m| TARGETS.iter().any(|t| is(m.programs(t).0)))
        .unwrap_or(AttachMethod::Kprobe);
    let attached = TARGETS.iter().filter(|t| is(method.programs(t).0)).map(Target::function).collect();
    let mut loaded = finish(ebpf, method, attached, Vec::new())?;
    // The running programs log into their own object's channel, not this one's.
    loaded.logger = None;
    loaded.pinned_links = plan.reuse_links.clone();
    loaded.reused = true;
    Ok(loaded)
}

fn attach_all(config: &Config, method: AttachMethod, present: &[bool], recorder: Option<&RecorderPlan>) -> Result<Loaded> {
    let mut ebpf = object::load(config, recorder)?;
    let fentry_btf = match method {
        AttachMethod::Fentry => {
            let btf = fentry::function_btf()?;
            stage("kernel BTF for fentry ready");
            Some(btf)
        }
        AttachMethod::Kprobe => None,
    };
    let mut attached = Vec::new();
    let mut skipped = Vec::new();
    let mut links = Vec::new();
    for (t, present) in TARGETS.iter().zip(present) {
        if !t.required && !present {
            skipped.push((t.function(), "not in /proc/kallsyms".to_string()));
            continue;
        }
        let result = match &fentry_btf {
            Some(btf) => fentry::attach(&mut ebpf, t, btf),
            None => kprobe::attach(&mut ebpf, t),
        };
        stage(&format!("{} {}", method, t.function()));
        match result {
            Ok(ids) => {
                attached.push(t.function());
                links.extend(ids);
            }
            Err(e) if !t.required => skipped.push((t.function(), format!("{e:#}"))),
            Err(e) => return Err(e),
        }
    }
    let mut pinned = Vec::new();
    let mut unpinnable = None;
    if let Some(plan) = recorder.filter(|r| r.persist) {
        match method.unpinnable() {
            Some(why) => unpinnable = Some(why.to_string()),
            None => pinned = pin_links(&mut ebpf, links, &plan.dir)?,
        }
    }
    let mut loaded = finish(ebpf, method, attached, skipped)?;
    loaded.pinned_links = pinned;
    loaded.unpinnable = unpinnable;
    Ok(loaded)
}

/// Pins every link, all or nothing: on a failure the pins made so far are removed
/// (and with them their links) and the start fails.
fn pin_links(ebpf: &mut Ebpf, links: Vec<LinkId>, dir: &std::path::Path) -> Result<Vec<String>> {
    let mut done: Vec<(String, PinnedLink)> = Vec::new();
    let undo = |done: Vec<(String, PinnedLink)>| {
        for (_, p) in done {
            let _ = p.unpin();
        }
    };
    for link in links {
        let (name, fd) = match link.take_fd(ebpf) {
            Ok(x) => x,
            Err(e) => {
                undo(done);
                return Err(e);
            }
        };
        let path = dir.join(format!("{}{name}", recorder::LINK_PREFIX));
        match fd.pin(&path) {
            Ok(p) => done.push((name.to_string(), p)),
            Err(e) => {
                undo(done);
                bail!("pinning the link of {name} at {}: {e}", path.display());
            }
        }
    }
    Ok(done.into_iter().map(|(n, _)| n).collect())
}
