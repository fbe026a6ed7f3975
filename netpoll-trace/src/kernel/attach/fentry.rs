//! fentry/fexit through BPF trampolines: the cheapest probes, where the kernel has
//! trampolines and BTF.

use anyhow::{Result, anyhow, bail};
use aya::{
    Btf, Ebpf,
    programs::{FEntry, FExit},
};

use super::{
    program::{LinkId, program, program_error, skip_return},
    verify::Verified,
};
use crate::kernel::{
    btf::{self, FunctionIndex},
    offsets,
    targets::{TARGETS, Target},
};

/// The BTF `FEntry::load` looks the traced functions' type ids up in. When start-up read
/// those ids from the kernel's BTF (function presence), a stand-in with the same ids
/// (`btf::function_index_btf`) instead of aya's full parse of the kernel's BTF:
/// measured under TCG on 6.12, that parse alone took 220-560 ms of the time to ready.
/// The kernel attaches to whatever function its own BTF has at the id, so the ids must be
/// exact: they come from the same file moments earlier (the unit test pins the id
/// arithmetic; the lab's fallbacks scenario checks that fentry and kprobes see the same
/// set-ups). Without an index (no BTF at presence time), aya parses as before.
fn function_btf(index: &mut Option<FunctionIndex>) -> Result<Btf> {
    if !std::path::Path::new(offsets::SYSFS_VMLINUX).exists() {
        bail!(
            "fentry needs the kernel's BTF and there is no {}",
            offsets::SYSFS_VMLINUX
        );
    }
    // Taken once from start-up and kept by the caller: a later pass builds its own.
    if index.is_none() {
        *index = offsets::take_function_index();
    }
    if let Some(index) = index.as_ref()
        && index_serves(index)
    {
        return Ok(btf::function_index_btf(index));
    }
    Btf::from_sys_fs().map_err(|e| anyhow!("fentry needs /sys/kernel/btf/vmlinux: {e}"))
}

/// fentry's BTF for one attach, built when a pass first needs it and kept for the late
/// pass, which starts as soon as `ready` is out: building it again there cost the full
/// attach 85-140 ms under TCG on 6.12 (one 72-byte entry per kernel type id), and
/// holding it the few milliseconds between the passes adds nothing to the start-up
/// peak, which is this very allocation. Dropped with the late pass.
#[derive(Default)]
pub(super) struct FentryBtf {
    /// The function index start-up read, taken once (without it aya parses the kernel's
    /// BTF in full).
    index: Option<FunctionIndex>,
    btf: Option<Btf>,
}

impl FentryBtf {
    pub(super) fn get(&mut self) -> Result<&Btf> {
        if self.btf.is_none() {
            self.btf = Some(function_btf(&mut self.index)?);
            crate::kernel::profile::stage("kernel BTF for fentry ready");
        }
        Ok(self.btf.as_ref().expect("set above"))
    }
}

/// The index holds every one of our functions the BTF describes, and fentry can attach to
/// no other: the stand-in serves whenever it has every required vmlinux function but one
/// another row stands in for (7.3's netpoll_setup: netconsole's own set-up, a module
/// function traced by kprobe). Demanding that one too sent 7.3 to aya's full parse of the
/// kernel's BTF: measured there, 160 ms and +12 MiB (a 26 MiB start-up peak).
fn index_serves(index: &FunctionIndex) -> bool {
    TARGETS
        .iter()
        .filter(|t| t.required && t.module.is_none() && t.or.is_none())
        .all(|t| index.funcs.iter().any(|(n, _, _)| n == t.function()))
}

/// Loads `t`'s programs and, unless `load_only`, attaches them: fexit first, so a
/// call already running when we attach can lose only its entry, never its return.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    t: &Target,
    btf: &Btf,
    load_only: bool,
    verified: &mut Verified,
) -> Result<Vec<LinkId>> {
    let (entry, exit) = t.fentry;
    if let Some(entry) = entry {
        let prog: &mut FEntry = program(ebpf, entry)?;
        verified
            .load(entry, t.function(), || prog.load(t.function(), btf))
            .map_err(|e| program_error("fentry", entry, t.function(), e))?;
    }
    if let Some(exit) = exit {
        let prog: &mut FExit = program(ebpf, exit)?;
        verified
            .load(exit, t.function(), || prog.load(t.function(), btf))
            .map_err(|e| program_error("fexit", exit, t.function(), e))?;
    }
    crate::kernel::profile::stage(&format!("{}: programs loaded", t.function()));
    if load_only {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    if let Some(exit) = exit
        && !skip_return(t.function())
    {
        let b = program::<FExit>(ebpf, exit)?
            .attach()
            .map_err(|e| program_error("fexit", exit, t.function(), e))?;
        ids.push(LinkId::FExit(exit, b));
    }
    if let Some(entry) = entry {
        let a = program::<FEntry>(ebpf, entry)?
            .attach()
            .map_err(|e| program_error("fentry", entry, t.function(), e))?;
        ids.push(LinkId::FEntry(entry, a));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[&str]) -> FunctionIndex {
        FunctionIndex {
            type_count: 100,
            funcs: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), 10 + i as u32, 1))
                .collect(),
        }
    }

    #[test]
    fn the_stand_in_serves_where_netconsole_owns_the_outer_set_up() {
        // 6.x: both set-ups in vmlinux.
        assert!(index_serves(&index(&["netpoll_setup", "__netpoll_setup"])));
        // 7.3: netpoll_setup is gone (netconsole's own set-up, a module function, stands
        // in): the stand-in still serves; it sent 7.3 to aya's full parse before.
        assert!(index_serves(&index(&[
            "__netpoll_setup",
            "netpoll_poll_dev"
        ])));
        // Without __netpoll_setup nothing can be traced by fentry from this index.
        assert!(!index_serves(&index(&[
            "netpoll_setup",
            "netpoll_poll_dev"
        ])));
    }
}
