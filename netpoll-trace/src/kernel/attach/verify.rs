//! A pass's programs loaded side by side, one thread per CPU, before the pass attaches
//! them one by one in its order. Loading is where the kernel verifies a program, in the
//! loading thread, and that is most of the time to `ready` (docs/performance.md):
//! privileged loads are not serialised (`bpf_check` takes `bpf_verifier_lock` only for
//! unprivileged ones; 4.x kernels took it for every load, and there the threads simply
//! take turns). Nothing is attached here: the attach order (return probes before entry
//! probes) is the pass's, unchanged.

use std::{collections::HashMap, sync::Mutex};

use aya::{
    Btf, Ebpf,
    programs::{Program, ProgramError},
};

/// How a program is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loader {
    FEntry,
    FExit,
    KProbe,
}

/// One program to load, for the function it traces (fentry's BTF id is fixed at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Job {
    pub(super) program: &'static str,
    pub(super) function: &'static str,
    pub(super) loader: Loader,
}

/// What was loaded ahead, by program: the function it was loaded for and the kernel's
/// refusal, if any. The pass's own load calls go through `load`, which hands back that
/// outcome instead of loading again.
#[derive(Default)]
pub(super) struct Verified {
    done: HashMap<&'static str, (&'static str, Option<ProgramError>)>,
    /// Threads used (0: nothing was loaded ahead).
    pub(super) threads: usize,
}

impl Verified {
    /// Loads `program` for `function` with `load`, unless it was loaded ahead for that
    /// same function: then that load's outcome (a refusal once, with its verifier log).
    /// A program loaded ahead for another function is loaded again, as before, and
    /// aya refuses it (already loaded).
    pub(super) fn load(
        &mut self,
        program: &'static str,
        function: &'static str,
        load: impl FnOnce() -> Result<(), ProgramError>,
    ) -> Result<(), ProgramError> {
        match self.done.get(program) {
            Some((f, _)) if *f == function => match self.done.remove(program) {
                Some((_, Some(e))) => Err(e),
                _ => Ok(()),
            },
            _ => load(),
        }
    }
}

/// Sets the threads a pass loads its programs on (default: one per CPU; 1 loads them
/// one by one, in the pass): for measuring what loading side by side gains.
const LOAD_THREADS: &str = "NETPOLL_TRACE_LOAD_THREADS";

/// The number of threads to load `jobs` on: `wanted` (one per CPU by default), no more
/// than there are jobs; below two, nothing is loaded ahead (the pass loads each program
/// itself).
pub(super) fn threads_for(jobs: usize, wanted: usize) -> usize {
    match wanted.min(jobs) {
        n if n < 2 => 0,
        n => n,
    }
}

/// The threads asked for: `LOAD_THREADS` when set to a positive number (a warning and
/// the default otherwise), else the CPUs this process may run on.
fn wanted_threads(setting: Option<&str>, cpus: usize) -> usize {
    match setting.map(|s| s.trim().parse::<usize>()) {
        None => cpus,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            log::warn!(
                "{LOAD_THREADS}={:?} is not a positive number of threads: one per CPU ({cpus})",
                setting.unwrap_or_default()
            );
            cpus
        }
    }
}

/// Loads `jobs`' programs on `threads_for` threads; fentry's and fexit's look their
/// function up in `btf`. A program the object lacks, or of another type than its job
/// says, is left to the pass, which reports it.
pub(super) fn load_ahead(ebpf: &mut Ebpf, jobs: &[Job], btf: Option<&Btf>) -> Verified {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let setting = std::env::var(LOAD_THREADS).ok();
    let threads = threads_for(jobs.len(), wanted_threads(setting.as_deref(), cpus));
    if threads == 0 {
        return Verified::default();
    }
    // Taken in the pass's order.
    let mut programs: HashMap<&str, &mut Program> = ebpf.programs_mut().collect();
    let queue = Mutex::new(
        jobs.iter()
            .filter_map(|j| Some((*j, programs.remove(j.program)?)))
            .collect::<Vec<_>>()
            .into_iter(),
    );
    let done = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = queue.lock().expect("no loader panics holding it").next();
                    let Some((job, prog)) = next else { break };
                    if let Some(outcome) = load_one(job, prog, btf) {
                        done.lock()
                            .expect("no loader panics holding it")
                            .insert(job.program, (job.function, outcome.err()));
                    }
                }
            });
        }
    });
    Verified {
        done: done.into_inner().expect("the loaders have ended"),
        threads,
    }
}

/// Loads one job's program: None when its type is not the job's (left to the pass).
fn load_one(job: Job, prog: &mut Program, btf: Option<&Btf>) -> Option<Result<(), ProgramError>> {
    match (job.loader, prog, btf) {
        (Loader::FEntry, Program::FEntry(p), Some(btf)) => Some(p.load(job.function, btf)),
        (Loader::FExit, Program::FExit(p), Some(btf)) => Some(p.load(job.function, btf)),
        (Loader::KProbe, Program::KProbe(p), _) => Some(p.load()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_per_cpu_and_none_for_a_single_cpu_or_job() {
        assert_eq!(threads_for(6, 2), 2);
        assert_eq!(threads_for(6, 8), 6);
        assert_eq!(threads_for(1, 8), 0);
        assert_eq!(threads_for(6, 1), 0);
        assert_eq!(threads_for(0, 2), 0);
    }

    #[test]
    fn the_setting_overrides_the_cpus_and_a_bad_one_is_ignored() {
        assert_eq!(wanted_threads(None, 2), 2);
        assert_eq!(wanted_threads(Some("1"), 2), 1);
        assert_eq!(wanted_threads(Some(" 4 "), 2), 4);
        assert_eq!(wanted_threads(Some("0"), 2), 2);
        assert_eq!(wanted_threads(Some("many"), 2), 2);
    }

    #[test]
    fn an_outcome_loaded_ahead_is_handed_back_once_and_only_for_its_function() {
        let mut v = Verified::default();
        v.done.insert("p", ("f", None));
        v.done.insert(
            "q",
            ("g", Some(ProgramError::InvalidName { name: "x".into() })),
        );
        let loads = std::cell::Cell::new(0);
        let load = |v: &mut Verified, program, function| {
            v.load(program, function, || {
                loads.set(loads.get() + 1);
                Ok(())
            })
            .is_ok()
        };
        // Loaded ahead for f: no second load.
        assert!(load(&mut v, "p", "f"));
        assert_eq!(loads.get(), 0);
        // Asked again (an alternative row): loaded by the caller, as before.
        assert!(load(&mut v, "p", "f"));
        assert_eq!(loads.get(), 1);
        // Loaded ahead for g and refused: the refusal, without loading again.
        assert!(!load(&mut v, "q", "g"));
        assert_eq!(loads.get(), 1);
        // Loaded ahead for another function: the caller loads (aya refuses it).
        v.done.insert("r", ("h", None));
        assert!(load(&mut v, "r", "other"));
        assert_eq!(loads.get(), 2);
    }
}
