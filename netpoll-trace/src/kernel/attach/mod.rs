//! Attaching the loaded programs to the traced functions, one attacher per method:
//! fentry/fexit (`fentry`) where the kernel has BPF trampolines, kprobes (`kprobe`)
//! otherwise (through the kprobe PMU, or tracefs before 4.17: `kernel::tracefs`); the
//! object (modern, else legacy) and the method chosen by trying them in `steps`' order,
//! and the flight recorder's links pinned or reused.

mod armed;
mod fentry;
mod kprobe;
mod on_demand;
mod pass;
mod phase;
mod pins;
mod plan;
mod preload;
mod program;
mod verify;

pub use phase::LateAttached;
pub use plan::{AttachChoice, AttachMethod, Conflict, Fallback, steps};
pub use preload::Preloaded;

use self::{
    fentry::FentryBtf,
    pass::{Attached, load_programs},
    phase::{Deferred, Phase},
    plan::first_working,
};

use std::time::Instant;

use anyhow::{Result, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, PerfEventArray},
};
use netpoll_trace_common::{Config, maps};

use super::{
    object::{self, ObjectChoice, ObjectKind, RecorderPlan},
    profile::{release_freed_memory, stage},
    targets::{self, TARGETS, Target, Wanted},
    tracefs::{self, KprobeVia},
};

/// The object and the attach path in use, as every report names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub object: ObjectKind,
    pub method: AttachMethod,
    /// For kprobes: the kprobe PMU or tracefs kprobe_events.
    pub via: Option<KprobeVia>,
}

impl Path {
    fn new(object: ObjectKind, method: AttachMethod) -> Self {
        let via = (method == AttachMethod::Kprobe).then(tracefs::kprobe_via);
        Self {
            object,
            method,
            via,
        }
    }

    /// `fentry`, `kprobe (kprobe PMU)` or `kprobe (tracefs kprobe_events)`.
    pub fn attach_path(&self) -> String {
        match self.via {
            Some(v) => format!("{} ({})", self.method, v.as_str()),
            None => self.method.to_string(),
        }
    }
}

/// The attached programs and their maps.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub setup_events: PerfEventArray<MapData>,
    pub poll_events: PerfEventArray<MapData>,
    pub send_events: PerfEventArray<MapData>,
    pub method: AttachMethod,
    /// The object loaded and the attach path (with `method`).
    pub path: Path,
    /// Log records of the programs (aya-log), forwarded to the userspace logger; None
    /// for the legacy object, which has no log channel.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The attempts that failed before this one (fentry before kprobes, the modern
    /// object before the legacy one), in order.
    pub fallbacks: Vec<Fallback>,
    /// What preparing the attach path did that the user should hear of (tracefs
    /// mounted, stale kprobe events removed).
    pub notes: Vec<String>,
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
    /// The late programs still to attach (`attach_late`), when the first pass left them.
    deferred: Option<Deferred>,
    /// The armed module probes (`armed`): closing them detaches (pinned ones go on).
    armed: Vec<armed::ArmedLink>,
    /// The program the late pass loaded but attaches only while needed (before
    /// `tracefs_events`: an armed one's event goes after its link).
    on_demand: Option<on_demand::OnDemand>,
    /// kprobes through tracefs (and armed ones): our kprobe events, removed once `ebpf`
    /// and `armed` (declared before it, so dropped before it) have closed the programs'
    /// perf events.
    tracefs_events: Option<tracefs::OwnEvents>,
}

/// `present` is what `targets::require_functions` returned; `preloaded`, what
/// `Preloaded::load` loaded meanwhile. With `defer_late`, only the set-up and poll
/// programs are attached here and `Loaded::attach_late` attaches the rest, unless the
/// recorder pins its links (then everything is attached now, and pinned in one pass).
pub fn load_and_attach(
    config: &Config,
    object: ObjectChoice,
    choice: AttachChoice,
    present: &[bool],
    recorder: Option<&RecorderPlan>,
    mut preloaded: Preloaded,
    defer_late: bool,
) -> Result<Loaded> {
    let start = Instant::now();
    let phase = if defer_late && !recorder.is_some_and(|r| r.persist) {
        Phase::Early
    } else {
        Phase::All
    };
    let (loaded, fallbacks) = match recorder {
        Some(plan) if !plan.reuse_links.is_empty() => {
            first_working(object, AttachChoice::Only(AttachMethod::Kprobe), |o, _| {
                reuse_pinned(config, o, plan)
            })?
        }
        _ => first_working(object, choice, |o, m| {
            attach_all(config, o, m, present, recorder, &mut preloaded, phase)
        })?,
    };
    let attach_ms = start.elapsed().as_secs_f64() * 1e3;
    release_freed_memory();
    stage("attached; freed memory released");
    Ok(Loaded {
        fallbacks,
        attach_ms,
        ..loaded
    })
}

impl Loaded {
    /// Whether `attach_late` has programs to attach.
    pub fn has_late(&self) -> bool {
        self.deferred.is_some()
    }

    /// Attaches the late programs (the send path, tear-downs, console write) the first
    /// pass left, with the method it chose. Their failures are not fatal: each is
    /// optional, and the set-up tracing goes on whatever happens here.
    pub fn attach_late(&mut self) -> LateAttached {
        let Some(d) = self.deferred.take() else {
            return LateAttached::default();
        };
        let start = Instant::now();
        let mut out = LateAttached::default();
        let mut fentry_btf = d.fentry_btf;
        match load_programs(
            &mut self.ebpf,
            d.method,
            &d.present,
            false,
            Phase::Late,
            d.attached_ids,
            &mut fentry_btf,
        ) {
            Ok(a) => {
                if let Err(e) = transmit_counts(&mut self.ebpf, &a.ids) {
                    out.error = Some(format!("{e:#}"));
                }
                self.armed.extend(a.armed);
                self.on_demand = a.on_demand;
                out.on_demand = self.on_demand_function();
                self.attached.extend(&a.functions);
                self.skipped.extend(a.skipped.iter().cloned());
                out.functions = a.functions;
                out.skipped = a.skipped;
            }
            Err(e) => out.error = Some(format!("{e:#}")),
        }
        out.attach_ms = start.elapsed().as_secs_f64() * 1e3;
        release_freed_memory();
        stage("late programs attached; freed memory released");
        out
    }

    /// Whether the on-demand program (the console write) is attached now; None when
    /// there is none (not loaded, or attached for good).
    pub fn on_demand_attached(&self) -> Option<bool> {
        self.on_demand.as_ref().map(on_demand::OnDemand::attached)
    }

    /// The on-demand program's function.
    pub fn on_demand_function(&self) -> Option<&'static str> {
        self.on_demand.as_ref().map(|o| o.target().function())
    }

    /// Attaches or detaches the on-demand program: the milliseconds it took when
    /// anything changed.
    pub fn set_on_demand(&mut self, on: bool) -> Result<Option<f64>> {
        let Some(od) = self.on_demand.as_mut() else {
            return Ok(None);
        };
        let start = Instant::now();
        let changed = od.set(&mut self.ebpf, on)?;
        Ok(changed.then(|| start.elapsed().as_secs_f64() * 1e3))
    }
}
/// Once the skb transmit's return is traced, it counts the messages
/// (`config_flags::SEND_RETURN`); else the send's entry goes on counting them.
fn transmit_counts(ebpf: &mut Ebpf, attached_ids: &[u32]) -> Result<()> {
    if attached_ids.contains(&netpoll_trace_common::function::NETPOLL_SEND_SKB) {
        object::set_config_flag(ebpf, netpoll_trace_common::config_flags::SEND_RETURN)?;
    }
    Ok(())
}

/// What `check` and `status` report: the object and path `watch` would use here, found
/// the same way (the objects and programs loaded by the kernel, nothing attached).
pub struct Probed {
    pub path: Path,
    pub fallbacks: Vec<Fallback>,
}

/// Loads what `load_and_attach` would (same order, same fallbacks) without attaching.
pub fn probe(
    config: &Config,
    object: ObjectChoice,
    choice: AttachChoice,
    present: &[bool],
) -> Result<Probed> {
    let (path, fallbacks) = first_working(object, choice, |o, m| {
        let mut ebpf = object::load(o, config, None)?;
        load_programs(
            &mut ebpf,
            m,
            present,
            true,
            Phase::All,
            Vec::new(),
            &mut FentryBtf::default(),
        )?;
        // (Nothing attached: no armed event was made.)
        Ok(Path::new(o, m))
    })?;
    Ok(Probed { path, fallbacks })
}

/// The perf arrays and the programs' log channel of a loaded object.
fn finish(
    mut ebpf: Ebpf,
    path: Path,
    attached: Vec<&'static str>,
    skipped: Vec<(&'static str, String)>,
) -> Result<Loaded> {
    let mut take = |name: &str| -> Result<PerfEventArray<MapData>> {
        let map = ebpf
            .take_map(name)
            .ok_or_else(|| anyhow!("eBPF object has no {name} map"))?;
        Ok(PerfEventArray::try_from(map)?)
    };
    let setup_events = take(maps::SETUP_EVENTS)?;
    let poll_events = take(maps::POLL_EVENTS)?;
    let send_events = take(maps::SEND_EVENTS)?;
    let logger = if path.object.has_log() {
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("the programs' log records are unavailable: {e}");
                None
            }
        }
    } else {
        None
    };
    Ok(Loaded {
        ebpf,
        setup_events,
        poll_events,
        send_events,
        method: path.method,
        path,
        logger,
        fallbacks: Vec::new(),
        notes: Vec::new(),
        attached,
        skipped,
        attach_ms: 0.0,
        pinned_links: Vec::new(),
        unpinnable: None,
        reused: false,
        deferred: None,
        armed: Vec::new(),
        on_demand: None,
        tracefs_events: None,
    })
}

/// An earlier process's pinned links are recording: read their maps, attach nothing.
fn reuse_pinned(config: &Config, object: ObjectKind, plan: &RecorderPlan) -> Result<Loaded> {
    let ebpf = object::load(object, config, Some(plan))?;
    let is = |name: &str| plan.reuse_links.iter().any(|l| l == name);
    let pinned = |m: AttachMethod, t: &Target| m.programs(t).into_iter().flatten().any(is);
    let method = AttachMethod::ALL
        .into_iter()
        .find(|&m| TARGETS.iter().any(|t| pinned(m, t)))
        .unwrap_or(AttachMethod::Kprobe);
    let attached = TARGETS
        .iter()
        .filter(|t| pinned(method, t))
        .map(Target::function)
        .collect();
    let mut loaded = finish(ebpf, Path::new(object, method), attached, Vec::new())?;
    // The running programs log into their own object's channel, not this one's.
    loaded.logger = None;
    loaded.pinned_links = plan.reuse_links.clone();
    loaded.reused = true;
    Ok(loaded)
}

fn attach_all(
    config: &Config,
    object: ObjectKind,
    method: AttachMethod,
    present: &[bool],
    recorder: Option<&RecorderPlan>,
    preloaded: &mut Preloaded,
    phase: Phase,
) -> Result<Loaded> {
    let path = Path::new(object, method);
    let mut notes = Vec::new();
    // Declared before `ebpf`: on an early return it is dropped after it, like in Loaded.
    let mut own_events = None;
    let arms = TARGETS
        .iter()
        .enumerate()
        .any(|(i, t)| t.armed && targets::wanted(i, present, &[]) == Wanted::Yes);
    if path.via == Some(KprobeVia::Tracefs) || arms {
        notes.extend(prepare_tracefs()?);
        own_events = Some(tracefs::OwnEvents::new(
            TARGETS.iter().map(Target::function).collect(),
        ));
    }
    let mut ebpf = match preloaded.take(object) {
        Some(ebpf) => ebpf,
        None => object::load_maps(object, recorder)?,
    };
    object::write_config(&mut ebpf, config)?;
    let mut fentry_btf = FentryBtf::default();
    let Attached {
        links,
        armed,
        functions: attached,
        ids,
        skipped,
        on_demand: _,
    } = load_programs(
        &mut ebpf,
        method,
        present,
        false,
        phase,
        Vec::new(),
        &mut fentry_btf,
    )?;
    transmit_counts(&mut ebpf, &ids)?;
    let mut pinned = Vec::new();
    let mut unpinnable = None;
    if let Some(plan) = recorder.filter(|r| r.persist) {
        match method.unpinnable() {
            Some(why) => unpinnable = Some(why.to_string()),
            None => {
                pinned = pins::pin_links(&mut ebpf, links, &armed, &plan.dir)?;
            }
        }
    }
    // The events of pinned armed links stay: the links hold them past this process.
    if let Some(own) = own_events.as_mut() {
        for a in armed
            .iter()
            .filter(|a| pinned.iter().any(|p| p == a.program))
        {
            if let Some(t) = TARGETS
                .iter()
                .find(|t| t.kprobe.0 == a.program || t.kprobe.1 == Some(a.program))
            {
                own.keep(t.function());
            }
        }
    }
    let mut loaded = finish(ebpf, path, attached, skipped)?;
    loaded.pinned_links = pinned;
    loaded.unpinnable = unpinnable;
    loaded.notes = notes;
    loaded.armed = armed;
    loaded.tracefs_events = own_events;
    loaded.deferred = (phase == Phase::Early).then(|| Deferred {
        method,
        fentry_btf,
        present: present.to_vec(),
        attached_ids: ids,
    });
    Ok(loaded)
}

/// kprobes through tracefs: mount it if aya would find none, and remove the kprobe
/// events that earlier, killed runs left on our functions; returns what to say.
fn prepare_tracefs() -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if let Some(mounted) = tracefs::ensure_mounted()? {
        notes.push(mounted);
    }
    let functions: Vec<&str> = TARGETS.iter().map(Target::function).collect();
    match tracefs::remove_stale_events(&functions) {
        Ok((removed, failed)) => {
            if !removed.is_empty() {
                notes.push(format!(
                    "removed {} stale kprobe event(s) that an earlier, killed run left: {}",
                    removed.len(),
                    removed.join(", ")
                ));
            }
            if !failed.is_empty() {
                notes.push(format!(
                    "could not remove stale kprobe event(s): {}",
                    failed.join(", ")
                ));
            }
        }
        Err(e) => notes.push(format!("could not look for stale kprobe events: {e:#}")),
    }
    stage("tracefs ready for kprobe_events");
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::{
        plan::{Step, try_next},
        *,
    };
    use crate::kernel::object::Refusal;

    const MF: Step = (ObjectKind::Modern, AttachMethod::Fentry);
    const MK: Step = (ObjectKind::Modern, AttachMethod::Kprobe);
    const LK: Step = (ObjectKind::Legacy, AttachMethod::Kprobe);

    fn steps_of(o: ObjectChoice, a: AttachChoice) -> Vec<Step> {
        steps(o, a).unwrap()
    }

    #[test]
    fn auto_tries_modern_fentry_then_modern_kprobes_then_legacy() {
        assert_eq!(
            steps_of(ObjectChoice::Auto, AttachChoice::Auto),
            [MF, MK, LK]
        );
        assert_eq!(
            steps_of(ObjectChoice::Auto, AttachChoice::Only(AttachMethod::Kprobe)),
            [MK, LK]
        );
        assert_eq!(
            steps_of(ObjectChoice::Auto, AttachChoice::Only(AttachMethod::Fentry)),
            [MF]
        );
        assert_eq!(
            steps_of(ObjectChoice::Only(ObjectKind::Modern), AttachChoice::Auto),
            [MF, MK]
        );
    }

    #[test]
    fn legacy_means_kprobes_and_refuses_fentry() {
        let legacy = ObjectChoice::Only(ObjectKind::Legacy);
        assert_eq!(steps_of(legacy, AttachChoice::Auto), [LK]);
        assert_eq!(
            steps_of(legacy, AttachChoice::Only(AttachMethod::Kprobe)),
            [LK]
        );
        let err = steps(legacy, AttachChoice::Only(AttachMethod::Fentry)).unwrap_err();
        assert!(err.0.contains("--attach kprobe"), "{err}");
    }

    #[test]
    fn a_refused_object_skips_its_other_methods_and_goes_to_the_legacy_one() {
        // 4.14: the modern object's AYA_LOGS ring buffer cannot be created.
        assert!(!try_next(MF, Some(Refusal::Object), MK));
        assert!(try_next(MF, Some(Refusal::Object), LK));
        assert!(try_next(MK, Some(Refusal::Object), LK));
    }

    #[test]
    fn a_refused_program_tries_the_next_method_and_then_the_other_object() {
        assert!(try_next(MF, Some(Refusal::Program), MK));
        // The verifier refused a modern kprobe program (e.g. a bpf-to-bpf call on 4.14).
        assert!(try_next(MK, Some(Refusal::Program), LK));
    }

    #[test]
    fn an_attach_failure_changes_the_method_but_never_the_object() {
        // fentry loaded but could not attach: kprobes may still attach.
        assert!(try_next(MF, None, MK));
        // kprobes could not attach (no kprobe support): the legacy kprobes cannot either.
        assert!(!try_next(MK, None, LK));
        assert!(!try_next(MF, None, LK));
    }
}
