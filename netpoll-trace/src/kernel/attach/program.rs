//! What every attacher shares: a program by name, the links to pin, and errors that
//! name the program and function.

use anyhow::{Context as _, Result, anyhow};

use super::verify::Verified;
use crate::kernel::object::{LoadRefused, Refusal};
use aya::{
    Ebpf,
    programs::{FEntry, FExit, KProbe, ProgramError, links::FdLink},
};

/// A link to pin, by program.
pub(super) enum LinkId {
    Kprobe(&'static str, aya::programs::kprobe::KProbeLinkId),
    FEntry(&'static str, aya::programs::fentry::FEntryLinkId),
    FExit(&'static str, aya::programs::fexit::FExitLinkId),
}

impl LinkId {
    /// The link, taken from its program as a BPF link that can be pinned.
    pub(super) fn take_fd(self, ebpf: &mut Ebpf) -> Result<(&'static str, FdLink)> {
        match self {
            Self::Kprobe(name, id) => {
                let link = program::<KProbe>(ebpf, name)?.take_link(id)?;
                let fd = FdLink::try_from(link)
                    .map_err(|e| anyhow!("the link of {name} is not a BPF link: {e}"))?;
                Ok((name, fd))
            }
            Self::FEntry(name, id) => {
                Ok((name, program::<FEntry>(ebpf, name)?.take_link(id)?.into()))
            }
            Self::FExit(name, id) => {
                Ok((name, program::<FExit>(ebpf, name)?.take_link(id)?.into()))
            }
        }
    }
}

/// `t`'s kprobe programs in attach order, the return probe first (a call already running
/// when we attach can then lose only its entry): (program, is the return probe).
pub(super) fn kprobe_programs(
    t: &crate::kernel::targets::Target,
) -> impl Iterator<Item = (&'static str, bool)> {
    t.kprobe
        .1
        .map(|exit| (exit, true))
        .into_iter()
        .chain([(t.kprobe.0, false)])
}

/// `t`'s kprobe programs (`kprobe_programs`), each loaded: (program, kind, is the return
/// probe).
pub(super) fn load_kprobes(
    ebpf: &mut Ebpf,
    t: &crate::kernel::targets::Target,
    verified: &mut Verified,
) -> Result<Vec<(&'static str, &'static str, bool)>> {
    let mut loaded = Vec::new();
    for (name, ret) in kprobe_programs(t) {
        let kind = if ret { "kretprobe" } else { "kprobe" };
        let prog: &mut KProbe = program(ebpf, name)?;
        verified
            .load(name, t.function(), || prog.load())
            .map_err(|e| program_error(kind, name, t.function(), e))?;
        loaded.push((name, kind, ret));
    }
    crate::kernel::profile::stage(&format!("{}: programs loaded", t.function()));
    Ok(loaded)
}

pub(super) fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?;
    prog.try_into()
        .with_context(|| format!("program {name} has an unexpected type"))
}

/// One line naming the program and function; the verifier log only at debug level.
/// A refusal by the kernel is a `LoadRefused` (`Refusal::Program`): the loader may try
/// another method or object.
pub(super) fn program_error(
    kind: &str,
    program: &str,
    function: &str,
    e: ProgramError,
) -> anyhow::Error {
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
    {
        log::debug!("verifier log for {program}:\n{verifier_log}");
        // The verifier's verdict is its log's last line ("unreachable insn 8", ...).
        let verdict = verifier_log.to_string();
        let verdict = verdict
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("processed "))
            .unwrap_or("");
        let verdict = if verdict.is_empty() {
            String::new()
        } else {
            format!(" ({})", verdict.trim())
        };
        return anyhow::Error::new(LoadRefused {
            refusal: Refusal::Program,
            reason: format!(
                "the kernel refused {kind} program {program} for {function}: {io_error}{verdict} (RUST_LOG=debug shows the verifier log)"
            ),
        });
    }
    anyhow::Error::from(e).context(format!("attaching {kind} {program} to {function}"))
}

/// Fault injection for the lab's pairing scenario, never for production: the
/// environment variable names a traced function whose return probe is loaded but not
/// attached, as if the kernel had skipped every fexit (or run out of kretprobe
/// instances) for it, so the recovery from missed returns is tested on real set-ups.
pub const FAULT_SKIP_RETURN: &str = "NETPOLL_TRACE_FAULT_SKIP_RETURN";

/// Whether `function`'s return probe is to be left unattached (`FAULT_SKIP_RETURN`);
/// says so, as the records of that function's calls are lost.
pub(super) fn skip_return(function: &str) -> bool {
    // A module's function by its name alone too (`netcons_netpoll_setup`).
    let bare = netpoll_trace_common::function::without_module(function);
    let skip = std::env::var(FAULT_SKIP_RETURN).is_ok_and(|f| f == function || f == bare);
    if skip {
        log::warn!(
            "{FAULT_SKIP_RETURN}={function}: its return probe is not attached (fault injection): its returns are missed"
        );
    }
    skip
}
