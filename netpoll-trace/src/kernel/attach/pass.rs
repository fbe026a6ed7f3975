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
    program::{LinkId, kprobe_programs},
    verify::{Job, Loader, load_ahead},
};
use crate::kernel::{
    profile::stage,
    targets::{self, TARGETS, Target, Wanted},
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
    let mut verified = load_ahead(
        ebpf,
        &jobs(method, present, phase, load_only, &attached_ids),
        fentry_btf,
    );
    if verified.threads > 0 {
        stage(&format!("programs loaded on {} threads", verified.threads));
    }
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
        let v = &mut verified;
        let result = match (route(t, method, phase, load_only), fentry_btf) {
            (Route::OnDemand, _) => OnDemand::hold(ebpf, i, v).map(|od| {
                held = Some(od);
                Vec::new()
            }),
            (Route::Armed, _) => armed::attach(ebpf, t, load_only, v).map(|fds| {
                armed.extend(fds);
                Vec::new()
            }),
            (Route::Fentry, Some(btf)) => fentry::attach(ebpf, t, btf, load_only, v),
            _ => kprobe::attach(ebpf, t, load_only, v),
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

/// How a pass loads and attaches a target's programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Loaded and held, attached while needed: only the late pass holds one (it runs for
    /// `watch`, which follows devices).
    OnDemand,
    /// kprobes on an armed tracefs event (a module function, before it loads).
    Armed,
    Fentry,
    Kprobe,
}

fn route(t: &Target, method: AttachMethod, phase: Phase, load_only: bool) -> Route {
    if t.on_demand() && phase == Phase::Late && !load_only {
        Route::OnDemand
    } else if t.armed {
        Route::Armed
    } else if method == AttachMethod::Fentry && t.module.is_none() {
        Route::Fentry
    } else {
        Route::Kprobe
    }
}

/// The programs the pass will load, as `load_programs` walks TARGETS, if every attach
/// succeeds (a row that replaces a failed one is loaded by the pass itself).
fn jobs(
    method: AttachMethod,
    present: &[bool],
    phase: Phase,
    load_only: bool,
    attached_ids: &[u32],
) -> Vec<Job> {
    let mut ids = attached_ids.to_vec();
    let mut jobs = Vec::new();
    for (i, t) in TARGETS.iter().enumerate() {
        if !phase.takes(t) || targets::wanted(i, present, &ids) != Wanted::Yes {
            continue;
        }
        ids.push(t.id);
        let job = |program, loader| Job {
            program,
            function: t.function(),
            loader,
        };
        match route(t, method, phase, load_only) {
            Route::Fentry => {
                jobs.extend(t.fentry.1.map(|p| job(p, Loader::FExit)));
                jobs.extend(t.fentry.0.map(|p| job(p, Loader::FEntry)));
            }
            _ => jobs.extend(kprobe_programs(t).map(|(p, _)| job(p, Loader::KProbe))),
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs(jobs: &[Job]) -> Vec<(&'static str, &'static str, Loader)> {
        jobs.iter()
            .map(|j| (j.program, j.function, j.loader))
            .collect()
    }

    fn row(symbol: &str) -> &'static Target {
        TARGETS.iter().find(|t| t.symbol == symbol).expect("a row")
    }

    /// Every row present but those named.
    fn present_but(absent: &[&str]) -> Vec<bool> {
        TARGETS
            .iter()
            .map(|t| !absent.contains(&t.symbol))
            .collect()
    }

    #[test]
    fn the_early_pass_loads_the_set_ups_and_poll_return_probe_first() {
        let present = present_but(&["netconsole:netcons_netpoll_setup"]);
        let jobs = jobs(AttachMethod::Fentry, &present, Phase::Early, false, &[]);
        let mut want = Vec::new();
        for f in ["netpoll_setup", "__netpoll_setup", "netpoll_poll_dev"] {
            let t = row(f);
            want.push((t.fentry.1.unwrap(), f, Loader::FExit));
            want.push((t.fentry.0.unwrap(), f, Loader::FEntry));
        }
        assert_eq!(programs(&jobs), want);
        // kprobes: the same functions, through their kprobe programs.
        let jobs = jobs_kprobe(&present);
        assert_eq!(jobs.len(), 6);
        assert!(jobs.iter().all(|j| j.loader == Loader::KProbe));
        assert_eq!(jobs[0].program, row("netpoll_setup").kprobe.1.unwrap());
        assert_eq!(jobs[1].program, row("netpoll_setup").kprobe.0);
    }

    fn jobs_kprobe(present: &[bool]) -> Vec<Job> {
        jobs(AttachMethod::Kprobe, present, Phase::Early, false, &[])
    }

    #[test]
    fn netconsoles_own_set_up_is_loaded_as_kprobes_under_fentry() {
        // 7.3: netpoll_setup is gone; netconsole's set-up (armed) stands in for it.
        let present = present_but(&["netpoll_setup"]);
        let jobs = jobs(AttachMethod::Fentry, &present, Phase::Early, false, &[]);
        let nc = row("netconsole:netcons_netpoll_setup");
        assert_eq!(
            programs(&jobs[..2]),
            [
                (nc.kprobe.1.unwrap(), nc.symbol, Loader::KProbe),
                (nc.kprobe.0, nc.symbol, Loader::KProbe)
            ]
        );
        assert!(
            !jobs
                .iter()
                .any(|j| row("netpoll_setup").fentry.0 == Some(j.program))
        );
    }

    #[test]
    fn the_late_pass_loads_one_row_of_each_function() {
        // Both skb transmits are present: only the first is loaded (the other replaces it
        // only if it fails, and the pass loads that one itself).
        let present = present_but(&[]);
        let jobs = jobs(AttachMethod::Fentry, &present, Phase::Late, false, &[]);
        let functions: Vec<_> = jobs.iter().map(|j| j.function).collect();
        let [first, second] = netpoll_trace_common::function::SEND_SKB_SYMBOLS;
        assert!(functions.contains(&first), "{functions:?}");
        assert!(!functions.contains(&second), "{functions:?}");
        // The set-ups are the early pass's.
        assert!(!functions.contains(&"__netpoll_setup"));
        // The console write, held on demand, is a module's: kprobes.
        let write = jobs
            .iter()
            .find(|j| j.function == "netconsole:write_msg")
            .expect("the console write");
        assert_eq!(write.loader, Loader::KProbe);
    }
}
