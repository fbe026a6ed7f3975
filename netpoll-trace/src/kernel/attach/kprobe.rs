//! kprobe/kretprobe: through the kernel's kprobe PMU, or before 4.17 through tracefs
//! `kprobe_events` (aya chooses; `kernel::tracefs` prepares and reports it): works
//! wherever kprobes do.

use anyhow::Result;
use aya::{Ebpf, programs::KProbe, util::KernelVersion};

use super::{
    program::{LinkId, load_kprobes, program, program_error, skip_return},
    verify::Verified,
};
use crate::kernel::targets::Target;

/// Loads `t`'s programs and, unless `load_only`, attaches them: the return probe
/// first, so a call already running when we attach can lose only its entry (an
/// unpaired return, counted) and never leaves an entry whose return we miss.
///
/// kretprobe maxactive (return instances per probe) stays the kernel's default,
/// max(10, 2 x CPUs) with CONFIG_PREEMPTION (the CPU count on some non-preemptible
/// builds): the kprobe PMU aya attaches through on 4.17+ takes no maxactive, only a
/// tracefs `r<N>:` event does, and aya writes those itself. Our nesting on one thread
/// is at most MAX_DEPTH (8) calls of one function; a return beyond the instances is
/// missed, and the programs pair and count around it (`netpoll_trace_common::pairing`).
pub(super) fn attach(
    ebpf: &mut Ebpf,
    t: &Target,
    load_only: bool,
    verified: &mut Verified,
) -> Result<Vec<LinkId>> {
    let mut ids = Vec::new();
    for (name, kind, ret) in load_kprobes(ebpf, t, verified)? {
        if load_only || (ret && skip_return(t.function())) {
            continue;
        }
        let prog: &mut KProbe = program(ebpf, name)?;
        ids.push(LinkId::Kprobe(
            name,
            prog.attach(t.function(), 0)
                .map_err(|e| program_error(kind, name, t.function(), e))?,
        ));
    }
    Ok(ids)
}

/// Kprobe links can be pinned only as BPF perf links (bpf_link_create for perf events,
/// kernel 5.15).
pub(super) fn unpinnable() -> Option<&'static str> {
    if KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(5, 15, 0)) {
        None
    } else {
        Some(
            "kprobe links can be pinned only on kernels 5.15 and later (BPF perf links): the probes end with this process; the recorded maps stay pinned",
        )
    }
}
