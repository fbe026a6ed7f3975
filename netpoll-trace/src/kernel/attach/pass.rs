//! One pass over TARGETS: load (and unless told not to, attach) the programs of every
//! present function the phase takes, with one method; the optional ones that fail are
//! skipped with why.

use anyhow::Result;
use aya::Ebpf;

use super::{
    armed,
    fentry::{self, FentryBtf},
    kprobe,
    on_demand::OnDemand,
    phase::Phase,
    plan::AttachMethod,
    program::LinkId,
};
use crate::kernel::{
    profile::stage,
    targets::{self, TARGETS, Wanted},
};

/// Optional functions not traced, each with why.
pub(super) type Skipped = Vec<(&'static str, String)>;

/// What `load_programs` attached: links to pin, the armed probes' perf events, the
/// functions attached and those skipped.
pub(super) struct Attached {
    pub(super) links: Vec<LinkId>,
    pub(super) armed: Vec<armed::ArmedLink>,
    pub(super) functions: Vec<&'static str>,
    /// The function ids attached (this pass's and `attached_ids` given to it).
    pub(super) ids: Vec<u32>,
    pub(super) skipped: Skipped,
    /// The on-demand program, loaded and held (the late pass only).
    pub(super) on_demand: Option<OnDemand>,
}

/// Loads (and unless `load_only` attaches) the programs of every present target `phase`
/// takes, for `method`; `attached_ids` are the ids an earlier pass attached, and
/// `fentry_btf` fentry's BTF, built here when fentry first needs it.
pub(super) fn load_programs(
    ebpf: &mut Ebpf,
    method: AttachMethod,
    present: &[bool],
    load_only: bool,
    phase: Phase,
    attached_ids: Vec<u32>,
    fentry_btf: &mut FentryBtf,
) -> Result<Attached> {
    let fentry_btf = match method {
        AttachMethod::Fentry => Some(fentry_btf.get()?),
        AttachMethod::Kprobe => None,
    };
    let mut attached = Vec::new();
    let mut attached_ids = attached_ids;
    let mut skipped = Vec::new();
    let mut links = Vec::new();
    let mut armed = Vec::new();
    let mut held = None;
    for (i, t) in TARGETS.iter().enumerate() {
        if !phase.takes(t) {
            continue;
        }
        match targets::wanted(i, present, &attached_ids) {
            Wanted::Yes => {}
            Wanted::Replaced => continue,
            Wanted::Absent => {
                skipped.push((t.function(), "not in /proc/kallsyms".to_string()));
                continue;
            }
        }
        let result = match fentry_btf {
            // Only the late pass holds one: it runs for `watch`, which follows devices.
            _ if t.on_demand() && phase == Phase::Late && !load_only => OnDemand::hold(ebpf, i)
                .map(|od| {
                    held = Some(od);
                    Vec::new()
                }),
            _ if t.armed => armed::attach(ebpf, t, load_only).map(|fds| {
                armed.extend(fds);
                Vec::new()
            }),
            Some(btf) if t.module.is_none() => fentry::attach(ebpf, t, btf, load_only),
            _ => kprobe::attach(ebpf, t, load_only),
        };
        stage(&format!("{} {}", method, t.function()));
        match result {
            Ok(ids) => {
                attached.push(t.function());
                attached_ids.push(t.id);
                // A module's probe is not pinned: a kprobe link pins only on 5.15+ and
                // what it counts needs this process (NC_TARGETS) anyway.
                if t.module.is_none() {
                    links.extend(ids);
                }
            }
            Err(e) if !t.required => skipped.push((t.function(), format!("{e:#}"))),
            Err(e) => return Err(e),
        }
    }
    Ok(Attached {
        links,
        armed,
        functions: attached,
        ids: attached_ids,
        skipped,
        on_demand: held,
    })
}
