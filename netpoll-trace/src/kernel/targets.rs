//! The kernel functions the programs trace, each with its programs per attach method:
//! the one table every attach path, the pin checks and `check` read.

use std::fmt;

use anyhow::{Context as _, Result, bail};
use netpoll_trace_common::{function, programs as p};

use super::{kallsyms, offsets, profile::stage};

/// One traced kernel function and its programs.
pub struct Target {
    /// `netpoll_trace_common::function` id; two rows share one when the kernel has one
    /// or the other function (`function::SEND_SKB_SYMBOLS`).
    pub id: u32,
    /// The kernel symbol.
    pub symbol: &'static str,
    /// kprobe and kretprobe programs (kprobe PMU, or tracefs kprobe_events); no return
    /// program for a function whose entry tells all.
    pub kprobe: (&'static str, Option<&'static str>),
    /// fentry and fexit programs (BPF trampolines); a function whose return tells all
    /// (fexit sees the arguments too) has no entry program.
    pub fentry: (Option<&'static str>, Option<&'static str>),
    /// Set-up tracing is impossible without it; the rest (poll statistics, the send
    /// path, tear-downs) is optional.
    pub required: bool,
    /// Only some kernels have it and the others need nothing in its place: its absence
    /// is not reported.
    pub where_present: bool,
    /// The module it is in (`symbol` is then `module:function`, as kprobes name it); it
    /// is traced with kprobes whatever the method (fentry needs the module's BTF), and
    /// only when the module is loaded when tracing starts, unless `armed`.
    pub module: Option<&'static str>,
    /// A module function traced through a tracefs kprobe event, which the kernel arms
    /// whenever the module loads: before it is loaded (`watch -- modprobe netconsole`)
    /// and again after each reload (a PMU kprobe dies with the module).
    pub armed: bool,
    /// The row that stands in for this required one where the kernel lacks it (7.3+:
    /// netconsole's own set-up for netpoll_setup).
    pub or: Option<usize>,
    /// Its programs take the first argument as a `struct netconsole_target *` (its `np`
    /// at `Config::nt_np`): traced only where the module's BTF says the function takes one
    /// (a kernel whose module function took a `struct netpoll *` would be misread).
    pub takes_target: bool,
    /// Attached after `ready` (`attach::Phase::Late`): the send path, the tear-downs and
    /// the console write. `ready` is the moment a set-up is traced (`watch -- COMMAND`
    /// starts COMMAND then), so it waits for the set-up and poll programs alone.
    pub late: bool,
}

impl Target {
    /// The kernel symbol.
    pub fn function(&self) -> &'static str {
        self.symbol
    }

    /// Attached only while needed when the late pass holds it (`watch`): netconsole's
    /// console write, which counts only what netconsole skips for a down device.
    pub fn on_demand(&self) -> bool {
        self.id == function::NETCONSOLE_WRITE_MSG
    }
}

/// In attach order: the skb transmit before the UDP send, as a message is counted at the
/// send's entry and its outcome at the transmit's return (the send has no return probe):
/// a send traced before its transmit would look like one that found no skb.
pub const TARGETS: [Target; 13] = [
    Target {
        id: function::NETPOLL_SETUP,
        symbol: "netpoll_setup",
        kprobe: (p::NETPOLL_SETUP_ENTRY, Some(p::NETPOLL_SETUP_EXIT)),
        fentry: (Some(p::NETPOLL_SETUP_FENTRY), Some(p::NETPOLL_SETUP_FEXIT)),
        required: true,
        where_present: false,
        module: None,
        armed: false,
        or: Some(NETCONS_SETUP),
        takes_target: false,
        late: false,
    },
    Target {
        id: function::NETCONS_NETPOLL_SETUP,
        symbol: "netconsole:netcons_netpoll_setup",
        kprobe: (p::NC_SETUP_ENTRY, Some(p::NC_SETUP_EXIT)),
        fentry: (Some(p::NC_SETUP_ENTRY), Some(p::NC_SETUP_EXIT)),
        required: false,
        where_present: true,
        module: Some("netconsole"),
        armed: true,
        or: None,
        takes_target: true,
        late: false,
    },
    Target {
        id: function::INNER_NETPOLL_SETUP,
        symbol: "__netpoll_setup",
        kprobe: (
            p::INNER_NETPOLL_SETUP_ENTRY,
            Some(p::INNER_NETPOLL_SETUP_EXIT),
        ),
        fentry: (
            Some(p::INNER_NETPOLL_SETUP_FENTRY),
            Some(p::INNER_NETPOLL_SETUP_FEXIT),
        ),
        required: true,
        where_present: false,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: false,
    },
    Target {
        id: function::NETPOLL_POLL_DEV,
        symbol: "netpoll_poll_dev",
        kprobe: (p::POLL_DEV_ENTRY, Some(p::POLL_DEV_EXIT)),
        fentry: (Some(p::POLL_DEV_FENTRY), Some(p::POLL_DEV_FEXIT)),
        required: false,
        where_present: false,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: false,
    },
    Target {
        id: function::NETPOLL_SEND_SKB,
        symbol: function::SEND_SKB_SYMBOLS[0],
        kprobe: (p::SEND_SKB_ENTRY, Some(p::SEND_SKB_EXIT)),
        fentry: (None, Some(p::SEND_SKB_FEXIT)),
        required: false,
        where_present: false,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: true,
    },
    Target {
        id: function::NETPOLL_SEND_SKB,
        symbol: function::SEND_SKB_SYMBOLS[1],
        kprobe: (p::SEND_SKB_ON_DEV_ENTRY, Some(p::SEND_SKB_ON_DEV_EXIT)),
        fentry: (None, Some(p::SEND_SKB_ON_DEV_FEXIT)),
        required: false,
        where_present: false,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: true,
    },
    Target {
        id: function::NETPOLL_SEND_UDP,
        symbol: "netpoll_send_udp",
        kprobe: (p::SEND_UDP_ENTRY, None),
        fentry: (Some(p::SEND_UDP_FENTRY), None),
        required: false,
        where_present: false,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: true,
    },
    Target {
        id: function::NETPOLL_SEND_UDP,
        symbol: function::NETCONS_SEND_UDP_SYMBOL,
        kprobe: (p::NC_SEND_UDP_ENTRY, None),
        fentry: (Some(p::NC_SEND_UDP_ENTRY), None),
        required: false,
        where_present: false,
        module: Some("netconsole"),
        armed: true,
        or: None,
        takes_target: true,
        late: true,
    },
    Target {
        id: function::NETPOLL_CLEANUP,
        symbol: "netpoll_cleanup",
        kprobe: (p::CLEANUP_ENTRY, None),
        fentry: (Some(p::CLEANUP_FENTRY), None),
        required: false,
        where_present: false,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: true,
    },
    Target {
        id: function::INNER_NETPOLL_CLEANUP,
        symbol: "__netpoll_cleanup",
        kprobe: (p::INNER_CLEANUP_ENTRY, None),
        fentry: (Some(p::INNER_CLEANUP_FENTRY), None),
        required: false,
        where_present: false,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: true,
    },
    Target {
        id: function::DO_NETPOLL_CLEANUP,
        symbol: "do_netpoll_cleanup",
        kprobe: (p::DO_CLEANUP_ENTRY, None),
        fentry: (Some(p::DO_CLEANUP_FENTRY), None),
        required: false,
        where_present: true,
        module: None,
        armed: false,
        or: None,
        takes_target: false,
        late: true,
    },
    Target {
        id: function::NETCONSOLE_WRITE_MSG,
        symbol: "netconsole:write_msg",
        kprobe: (p::NC_WRITE_MSG_ENTRY, None),
        fentry: (Some(p::NC_WRITE_MSG_ENTRY), None),
        required: false,
        where_present: true,
        module: Some("netconsole"),
        armed: false,
        or: None,
        takes_target: false,
        late: true,
    },
    Target {
        id: function::NETCONSOLE_WRITE_MSG,
        symbol: function::NETCONSOLE_WRITE_BASIC_SYMBOL,
        kprobe: (p::NC_WRITE_BASIC_ENTRY, None),
        fentry: (Some(p::NC_WRITE_BASIC_ENTRY), None),
        required: false,
        where_present: true,
        module: Some("netconsole"),
        armed: true,
        or: None,
        takes_target: false,
        late: true,
    },
];

/// The row of netconsole's own set-up (7.3+).
const NETCONS_SETUP: usize = 1;

/// The traced functions' symbols, in TARGETS order.
pub fn functions() -> Vec<&'static str> {
    TARGETS.iter().map(Target::function).collect()
}

/// Whether `t` is to be attached, given which TARGETS the kernel has (`present`) and
/// which ids are attached already: a function absent here is skipped quietly when a
/// later alternative may stand in for it or it exists only where needed
/// (`where_present`), and an alternative is not attached when an earlier one of its id was.
pub fn wanted(i: usize, present: &[bool], attached_ids: &[u32]) -> Wanted {
    let t = &TARGETS[i];
    let has = |j: usize| present.get(j).copied().unwrap_or(false);
    if !t.required && attached_ids.contains(&t.id) {
        return Wanted::Replaced;
    }
    if t.required && !has(i) && t.or.is_some_and(has) {
        return Wanted::Replaced;
    }
    if t.required || has(i) {
        return Wanted::Yes;
    }
    if t.where_present
        || TARGETS
            .iter()
            .enumerate()
            .skip(i + 1)
            .any(|(j, u)| u.id == t.id && has(j))
    {
        Wanted::Replaced
    } else {
        Wanted::Absent
    }
}

/// `wanted`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Yes,
    /// Another row of the same function id is (or will be) attached instead.
    Replaced,
    /// Not in the kernel (and no alternative is).
    Absent,
}

/// The functions `check` lists: each id once, as the symbol the kernel has (the first
/// alternative when it has none), with whether it has it.
pub fn checked(has: impl Fn(&str) -> bool) -> Vec<(&'static str, bool)> {
    let mut out: Vec<(u32, &'static str, bool)> = Vec::new();
    for t in &TARGETS {
        let present = has(t.symbol);
        if t.where_present && !present {
            continue;
        }
        match out.iter_mut().find(|(id, _, _)| *id == t.id) {
            Some(e) if !e.2 && present => *e = (t.id, t.symbol, true),
            Some(_) => {}
            None => out.push((t.id, t.symbol, present)),
        }
    }
    out.into_iter().map(|(_, s, p)| (s, p)).collect()
}

/// The kernel cannot be traced; maps to exit code 4.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Which TARGETS the kernel has: from its BTF when that lists every required one (the
/// parse is kept for the struct offsets), else from /proc/kallsyms. The BTF describes
/// every function of the kernel that was not inlined, and fentry attaches to no other:
/// an optional function it lacks (an alternative of another release, a 6.x-only helper)
/// is absent. Reading kallsyms is the slow path: the kernel formats 120,000+ lines
/// (measured natively ~100 ms against ~8 ms for our BTF parse; seconds under TCG).
fn targets_present() -> Result<Vec<bool>> {
    let names = functions();
    // The kernel's BTF (and its cache) describes vmlinux: a module's function is not
    // asked of it.
    let vmlinux: Vec<&str> = TARGETS
        .iter()
        .filter(|t| t.module.is_none())
        .map(Target::function)
        .collect();
    if let Some(found) = offsets::functions_present(&vmlinux) {
        let mut found = found.into_iter();
        let present: Vec<bool> = TARGETS
            .iter()
            .map(|t| t.module.is_none() && found.next().unwrap_or(false))
            .collect();
        // A required row with a stand-in (`or`) is settled by `with_modules`.
        if TARGETS
            .iter()
            .zip(&present)
            .all(|(t, p)| *p || !t.required || t.or.is_some())
        {
            stage("functions present (BTF)");
            return Ok(with_modules(present));
        }
    }
    let present =
        kallsyms::functions_present(&names).context("reading /proc/kallsyms (are you root?)");
    stage("functions present (kallsyms)");
    present.map(with_modules)
}

/// A module's function counts as present while the module is loaded (the kernel's BTF
/// does not describe it; attaching says whether it has the function). An armed row
/// counts where the row it stands in for is missing and the module (loaded or on disk)
/// has the function: netconsole's own set-up on 7.3+, traced before netconsole loads.
fn with_modules(present: Vec<bool>) -> Vec<bool> {
    modules_present(
        present,
        |m| std::path::Path::new("/sys/module").join(m).exists(),
        module_has_function,
    )
}

/// `with_modules` with its look-ups given: whether module `m` is loaded, and whether it
/// has function `f` (`module_has_function`).
///
/// Where the outer set-up moved into netconsole (7.3+) its BTF is read anyway, for the
/// armed rows; a loaded module's plain row is then present only when that BTF has the
/// function. Measured under TCG on 7.3: netconsole's `write_msg` (gone there, the
/// console write is `netconsole_write_basic`) had its program verified for ~370 ms of
/// the time to ready before its kprobe failed (ENOENT), warning "not tracing
/// netconsole:write_msg". Elsewhere the module's BTF is not read for it (a loaded
/// module's row is tried, its attach says).
fn modules_present(
    mut present: Vec<bool>,
    loaded: impl Fn(&str) -> bool,
    has: impl Fn(&str, &str, bool) -> Option<bool>,
) -> Vec<bool> {
    let vmlinux = present.clone();
    let moved = moved_into_netconsole(&vmlinux);
    for (i, t) in TARGETS.iter().enumerate() {
        let Some(m) = t.module else { continue };
        let f = function::without_module(t.symbol);
        present[i] |= if t.armed {
            // Unreadable BTF: only the set-up's stand-in is tried (the attach says); the
            // rest would read through a layout nobody knows.
            moved
                && armed_needed(i, &vmlinux)
                && has(m, f, t.takes_target).unwrap_or(TARGETS.iter().any(|u| u.or == Some(i)))
        } else {
            // Unreadable BTF: tried, as where it is not read.
            loaded(m) && (!moved || has(m, f, t.takes_target).unwrap_or(true))
        };
    }
    present
}

/// Whether netpoll's outer set-up left vmlinux for netconsole (7.3+): vmlinux has
/// `__netpoll_setup` but not the required row that has a stand-in. Only there are the
/// armed rows looked for (older kernels never read netconsole's module BTF).
fn moved_into_netconsole(vmlinux: &[bool]) -> bool {
    let has = |j: usize| vmlinux.get(j).copied().unwrap_or(false);
    let inner = TARGETS
        .iter()
        .enumerate()
        .any(|(j, t)| has(j) && t.id == function::INNER_NETPOLL_SETUP);
    inner
        && TARGETS
            .iter()
            .enumerate()
            .any(|(j, t)| t.required && t.or.is_some() && !has(j))
}

/// An armed row is needed where vmlinux lacks what it stands in for: the required row
/// naming it (`or`), or every other row of its function id.
fn armed_needed(i: usize, vmlinux: &[bool]) -> bool {
    let has = |j: usize| vmlinux.get(j).copied().unwrap_or(false);
    let stands_in = TARGETS
        .iter()
        .enumerate()
        .any(|(j, u)| u.or == Some(i) && !has(j));
    let same_id = TARGETS
        .iter()
        .enumerate()
        .filter(|(j, u)| *j != i && u.id == TARGETS[i].id)
        .map(|(j, _)| j)
        .collect::<Vec<_>>();
    stands_in || (!same_id.is_empty() && !same_id.iter().any(|&j| has(j)))
}

/// Whether a function of netconsole's own (7.3+, taking its target) is to be traced:
/// then `offsets::netconsole_target` must say where the target's netpoll is.
pub fn traces_netconsole_target(present: &[bool]) -> bool {
    TARGETS
        .iter()
        .zip(present)
        .any(|(t, p)| *p && t.armed && t.module == Some("netconsole"))
}

/// Whether module `m` has function `f` (taking a `struct netconsole_target *` first, when
/// `takes_target`), from its BTF (loaded, or the module file); None when that is unreadable
/// (the attach then says whether it has it; without the target's layout its programs
/// read nothing through it).
fn module_has_function(m: &str, f: &str, takes_target: bool) -> Option<bool> {
    match super::module_btf::load(m) {
        Ok(btf) => Some(
            btf.has_function(f)
                && (!takes_target
                    || btf.first_param_struct(f).as_deref() == Some("netconsole_target")),
        ),
        Err(e) => {
            log::debug!("{m}'s BTF: {e:#}");
            None
        }
    }
}

/// Which TARGETS the kernel has (none required).
pub fn present() -> Result<Vec<bool>> {
    targets_present()
}

/// Fails with `Unsupported` (exit 4) when the kernel lacks a function we must probe;
/// else which TARGETS it has.
pub fn require_functions() -> Result<Vec<bool>> {
    let present = targets_present()?;
    let missing: Vec<&str> = TARGETS
        .iter()
        .zip(&present)
        .filter(|(t, p)| t.required && !**p && !t.or.is_some_and(|j| present[j]))
        .map(|(t, _)| t.function())
        .collect();
    if !missing.is_empty() {
        let inner_present = TARGETS
            .iter()
            .zip(&present)
            .any(|(t, p)| *p && t.function() == "__netpoll_setup");
        let why = if inner_present {
            "netpoll is built in, but its outer set-up is neither in vmlinux nor found as netcons_netpoll_setup in the netconsole module (is netconsole installed? modinfo netconsole)"
        } else {
            "built without CONFIG_NETPOLL?"
        };
        bail!(Unsupported(format!(
            "this kernel has no {} ({why}); run `netpoll-trace check`",
            missing.join(", ")
        )));
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::attach::AttachMethod;

    #[test]
    fn every_target_names_a_kernel_function_once() {
        assert_eq!(
            functions(),
            [
                "netpoll_setup",
                "netconsole:netcons_netpoll_setup",
                "__netpoll_setup",
                "netpoll_poll_dev",
                "netpoll_send_skb",
                "netpoll_send_skb_on_dev",
                "netpoll_send_udp",
                "netconsole:netpoll_send_udp",
                "netpoll_cleanup",
                "__netpoll_cleanup",
                "do_netpoll_cleanup",
                "netconsole:write_msg",
                "netconsole:netconsole_write_basic"
            ]
        );
        assert_eq!(TARGETS[NETCONS_SETUP].id, function::NETCONS_NETPOLL_SETUP);
        for t in &TARGETS {
            assert!(
                !t.armed || t.module.is_some(),
                "{}: armed needs a module",
                t.symbol
            );
        }
        // A module's function has kprobes only (its fentry pair names them again).
        let all: Vec<&str> = TARGETS
            .iter()
            .flat_map(|t| {
                let fentry = if t.module.is_some() {
                    [None, None]
                } else {
                    [t.fentry.0, t.fentry.1]
                };
                [Some(t.kprobe.0), t.kprobe.1, fentry[0], fentry[1]]
            })
            .flatten()
            .collect();
        let mut programs = all.clone();
        programs.sort();
        programs.dedup();
        assert_eq!(programs.len(), all.len());
        for t in &TARGETS {
            assert_eq!(t.kprobe.1.is_some(), t.fentry.1.is_some(), "{}", t.symbol);
            assert_eq!(function::id(t.symbol), Some(t.id), "{}", t.symbol);
            assert_eq!(t.module.is_some(), t.symbol.contains(':'), "{}", t.symbol);
            if t.module.is_some() {
                assert_eq!(
                    t.fentry,
                    (Some(t.kprobe.0), t.kprobe.1),
                    "kprobes whatever the method"
                );
            }
        }
    }

    /// The attach table names every program of `programs::ALL` and no other (the built
    /// objects are checked against `programs` in `object`'s tests).
    #[test]
    fn ready_waits_for_the_set_up_and_poll_programs_only() {
        let early: Vec<u32> = TARGETS.iter().filter(|t| !t.late).map(|t| t.id).collect();
        for t in &TARGETS {
            // A required row and its stand-in are what `ready` promises.
            if t.required {
                assert!(!t.late, "{}", t.symbol);
                if let Some(j) = t.or {
                    assert!(!TARGETS[j].late, "{}", TARGETS[j].symbol);
                }
            }
            // One id's rows in one pass: `wanted` picks among them by what was attached.
            assert!(
                TARGETS.iter().all(|u| u.id != t.id || u.late == t.late),
                "{}",
                t.symbol
            );
        }
        // The floor's three pairs (set-ups and polls) and nothing else.
        for id in [
            function::NETPOLL_SETUP,
            function::NETCONS_NETPOLL_SETUP,
            function::INNER_NETPOLL_SETUP,
            function::NETPOLL_POLL_DEV,
        ] {
            assert!(early.contains(&id), "{id}");
        }
        assert_eq!(early.len(), 4);
    }

    /// A message costs two program runs under fentry (the send's entry, the transmit's
    /// return) and three under kprobes (a kretprobe cannot see the netpoll): the send has
    /// no return probe, so the transmit's must be attached first (see `TARGETS`).
    #[test]
    fn the_send_path_runs_two_programs_a_message_under_fentry() {
        let send = |id: u32, method: AttachMethod| -> Vec<usize> {
            let t = TARGETS.iter().find(|t| t.id == id && t.module.is_none());
            t.map(|t| method.programs(t).iter().flatten().count())
                .into_iter()
                .collect()
        };
        let runs =
            |m| send(function::NETPOLL_SEND_UDP, m)[0] + send(function::NETPOLL_SEND_SKB, m)[0];
        assert_eq!(runs(AttachMethod::Fentry), 2);
        assert_eq!(runs(AttachMethod::Kprobe), 3);
        let first = |id: u32| TARGETS.iter().position(|t| t.id == id).unwrap();
        let last = |id: u32| TARGETS.iter().rposition(|t| t.id == id).unwrap();
        assert!(last(function::NETPOLL_SEND_SKB) < first(function::NETPOLL_SEND_UDP));
        // 7.3's netconsole send (a module function, kprobes whatever the method): one.
        for t in TARGETS
            .iter()
            .filter(|t| t.id == function::NETPOLL_SEND_UDP)
        {
            assert_eq!(t.kprobe.1, None, "{}", t.symbol);
            assert_eq!(t.fentry.1, None, "{}", t.symbol);
        }
    }

    #[test]
    fn the_table_attaches_every_named_program() {
        let mut attached: Vec<&str> = TARGETS
            .iter()
            .flat_map(|t| [Some(t.kprobe.0), t.kprobe.1, t.fentry.0, t.fentry.1])
            .flatten()
            .collect();
        attached.sort();
        attached.dedup();
        let mut named = p::ALL.to_vec();
        named.sort();
        assert_eq!(attached, named);
    }

    /// 7.3+: vmlinux has no netpoll_setup; netconsole's own set-up stands in for it,
    /// and where it too is missing the kernel is refused as before.
    #[test]
    fn netconsoles_setup_stands_in_for_a_missing_netpoll_setup() {
        let mut present = [true; 13];
        present[0] = false;
        assert_eq!(wanted(0, &present, &[]), Wanted::Replaced);
        assert_eq!(wanted(NETCONS_SETUP, &present, &[]), Wanted::Yes);
        // Older kernels: netpoll_setup is traced, the module row quietly not.
        let mut present = [true; 13];
        present[NETCONS_SETUP] = false;
        assert_eq!(wanted(0, &present, &[]), Wanted::Yes);
        assert_eq!(wanted(NETCONS_SETUP, &present, &[]), Wanted::Replaced);
        // Neither: netpoll_setup is wanted (and its attach fails, naming it).
        present[0] = false;
        assert_eq!(wanted(0, &present, &[]), Wanted::Yes);
    }

    /// The armed rows are looked for only where the outer set-up left vmlinux (5.10's
    /// run read netconsole's module BTF, which it has none of, and warned about it).
    #[test]
    fn only_a_kernel_whose_outer_setup_moved_looks_in_the_module() {
        let mut vmlinux = [true; 13];
        vmlinux[NETCONS_SETUP] = false;
        assert!(!moved_into_netconsole(&vmlinux), "5.10 to 6.18");
        vmlinux[0] = false;
        assert!(moved_into_netconsole(&vmlinux), "7.3");
        vmlinux[2] = false;
        assert!(!moved_into_netconsole(&vmlinux), "no netpoll at all");
    }

    /// 7.3+: netconsole's own netpoll_send_udp is traced only where vmlinux has none.
    #[test]
    fn netconsoles_send_udp_stands_in_only_where_vmlinux_has_none() {
        let (udp, nc_udp) = (4, 5);
        let mut vmlinux = [true; 13];
        vmlinux[nc_udp] = false;
        vmlinux[NETCONS_SETUP] = false;
        assert!(!armed_needed(nc_udp, &vmlinux));
        assert!(!armed_needed(NETCONS_SETUP, &vmlinux));
        vmlinux[udp] = false;
        vmlinux[0] = false;
        assert!(armed_needed(nc_udp, &vmlinux));
        assert!(armed_needed(NETCONS_SETUP, &vmlinux));
        let mut present = vmlinux;
        present[nc_udp] = true;
        assert_eq!(wanted(udp, &present, &[]), Wanted::Replaced);
        assert_eq!(wanted(nc_udp, &present, &[]), Wanted::Yes);
    }

    /// 7.3 with netconsole loaded: its BTF has no write_msg (the console write is
    /// netconsole_write_basic), so write_msg's program is neither loaded nor attached
    /// (it was: ~370 ms of verifier under TCG, then ENOENT and a warning); 6.x: a loaded
    /// netconsole's write_msg is tried without reading the module's BTF.
    #[test]
    fn a_loaded_modules_row_needs_the_function_where_its_btf_is_read() {
        let (write_msg, write_basic) = (11, 12);
        assert_eq!(TARGETS[write_msg].symbol, "netconsole:write_msg");
        let seven = |f: &str| {
            matches!(
                f,
                "netcons_netpoll_setup" | "netpoll_send_udp" | "netconsole_write_basic"
            )
        };
        // vmlinux of 7.3: no netpoll_setup, no netpoll_send_udp, no module row.
        let mut vmlinux = vec![true; 13];
        for i in [0, 1, 5, 6, 7, write_msg, write_basic] {
            vmlinux[i] = false;
        }
        let asked = std::cell::RefCell::new(Vec::new());
        let present = modules_present(
            vmlinux.clone(),
            |m| m == "netconsole",
            |m, f, _| {
                asked.borrow_mut().push(f.to_string());
                Some(m == "netconsole" && seven(f))
            },
        );
        assert!(!present[write_msg], "7.3: no write_msg in netconsole");
        assert!(present[write_basic] && present[NETCONS_SETUP] && present[7]);
        assert_eq!(
            wanted(write_msg, &present, &[]),
            Wanted::Replaced,
            "quietly"
        );
        // Unreadable BTF: tried as before (the attach says).
        let present = modules_present(vmlinux.clone(), |_| true, |_, _, _| None);
        assert!(present[write_msg]);
        // Not loaded: not tried.
        let present = modules_present(vmlinux, |_| false, |_, _, _| Some(true));
        assert!(!present[write_msg]);
        // 6.12: netpoll_setup in vmlinux; netconsole's BTF is not read.
        asked.borrow_mut().clear();
        let mut vmlinux = vec![true; 13];
        for i in [1, 5, 7, write_msg, write_basic] {
            vmlinux[i] = false;
        }
        let present = modules_present(
            vmlinux,
            |_| true,
            |_, f, _| {
                asked.borrow_mut().push(f.to_string());
                Some(false)
            },
        );
        assert!(present[write_msg], "6.x: a loaded netconsole's write_msg");
        assert!(asked.borrow().is_empty(), "{:?}", asked.borrow());
    }

    #[test]
    fn one_send_skb_function_is_chosen_by_what_the_kernel_has() {
        let (send_skb, on_dev) = (4, 5);
        // 5.8+: netpoll_send_skb.
        let mut present = [
            true, false, true, true, true, false, true, false, true, true, false, false, false,
        ];
        assert_eq!(TARGETS[send_skb].symbol, "netpoll_send_skb");
        assert_eq!(TARGETS[on_dev].symbol, "netpoll_send_skb_on_dev");
        assert_eq!(
            wanted(10, &present, &[]),
            Wanted::Replaced,
            "do_netpoll_cleanup: 6.x only, never reported missing"
        );
        assert_eq!(wanted(send_skb, &present, &[]), Wanted::Yes);
        assert_eq!(
            wanted(on_dev, &present, &[function::NETPOLL_SEND_SKB]),
            Wanted::Replaced
        );
        // Before 5.8: only netpoll_send_skb_on_dev.
        present[send_skb] = false;
        present[on_dev] = true;
        assert_eq!(wanted(send_skb, &present, &[]), Wanted::Replaced);
        assert_eq!(wanted(on_dev, &present, &[]), Wanted::Yes);
        // Neither: the last one says so.
        present[on_dev] = false;
        assert_eq!(wanted(send_skb, &present, &[]), Wanted::Absent);
        assert_eq!(wanted(on_dev, &present, &[]), Wanted::Absent);
        let listed = checked(|s| s != "netpoll_send_skb" && !s.starts_with("netconsole:n"));
        assert_eq!(
            listed.len(),
            9,
            "each id once, not the absent module set-up"
        );
        assert!(listed.contains(&("netpoll_send_skb_on_dev", true)));
        let listed = checked(|s| s != "do_netpoll_cleanup");
        assert!(
            !listed.iter().any(|(s, _)| *s == "do_netpoll_cleanup"),
            "not listed where absent"
        );
        let listed = checked(|s| !s.starts_with("netpoll_send_skb"));
        assert!(listed.contains(&("netpoll_send_skb", false)));
    }
}
