//! kprobe/kretprobe: through the kernel's kprobe PMU, or before 4.17 through tracefs
//! `kprobe_events` (aya chooses; `kernel::tracefs` prepares and reports it): works
//! wherever kprobes do.

use anyhow::Result;
use aya::{
    Ebpf,
    programs::KProbe,
    util::KernelVersion,
};

use super::program::{LinkId, program, program_error};
use crate::kernel::targets::Target;

/// Loads `t`'s programs and, unless `load_only`, attaches them.
pub(super) fn attach(ebpf: &mut Ebpf, t: &Target, load_only: bool) -> Result<Vec<LinkId>> {
    let mut ids = Vec::new();
    for (name, ret) in [(t.kprobe.0, false), (t.kprobe.1, true)] {
        let kind = if ret { "kretprobe" } else { "kprobe" };
        let prog: &mut KProbe = program(ebpf, name)?;
        prog.load().map_err(|e| program_error(kind, name, t.function(), e))?;
        if load_only {
            continue;
        }
        ids.push(LinkId::Kprobe(
            name,
            prog.attach(t.function(), 0).map_err(|e| program_error(kind, name, t.function(), e))?,
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
