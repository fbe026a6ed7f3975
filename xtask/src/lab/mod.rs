//! `cargo xtask lab`: every chosen kernel x scenario booted in QEMU (two guests side by side where there are two cores), judged from
//! the console.
//!
//! Its parts: `scenario` (a script's header), `initramfs` and `cpio` (the guest's root),
//! `qemu` (booting it), `console` (reading what it printed), `receiver` (what it sent to the
//! host), `verdict` (pass or fail, from both), `report` (the lines the runner prints).

pub mod console;
pub mod cpio;
pub mod initramfs;
pub mod qemu;
pub mod receiver;
pub mod report;
pub mod scenario;
pub mod verdict;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::setup::guest;
use crate::setup::kernels::{self, Kernel};
use crate::{build, cache, progress};
use console::Show;
use scenario::Scenario;

/// Seconds QEMU gets beyond the scenario's own timeout: boot, module loading and dmesg.
const BOOT_MARGIN_SECS: u64 = 90;

pub struct Options {
    /// Kernel labels, or `all`.
    pub kernels: Vec<String>,
    /// Scenario names; empty means every scenario.
    pub scenarios: Vec<String>,
    pub keep_going: bool,
    /// What of each guest's console the terminal shows while it runs.
    pub show: Show,
    /// A netpoll-trace binary to use instead of building one.
    pub binary: Option<std::path::PathBuf>,
}

/// Runs the lab; Ok(true) when every run passed.
pub fn run(opts: &Options) -> Result<bool> {
    let root = cache::workspace_root();
    let names = if opts.scenarios.is_empty() {
        scenario::all_names(&root)?
    } else {
        opts.scenarios.clone()
    };
    if names.is_empty() {
        bail!("no scenarios in {}", scenario::dir(&root).display());
    }
    let scenarios = names
        .iter()
        .map(|n| scenario::load(&root, n))
        .collect::<Result<Vec<_>>>()?;
    run_scenarios(opts, &scenarios)
}

/// Runs `scenarios` (loaded by the caller, from anywhere) on `opts.kernels`; `opts.scenarios`
/// is not read. `cargo xtask selftests` runs its own this way.
pub fn run_scenarios(opts: &Options, scenarios: &[Scenario]) -> Result<bool> {
    let root = cache::workspace_root();
    let cache_dir = cache::dir()?;
    let specs = choose_kernels(&opts.kernels)?;
    // Everything cached must be there before the (slower) build starts.
    let busybox = guest::busybox(&cache_dir)?;
    let kernels = specs
        .iter()
        .map(|s| kernels::load(&cache_dir, s))
        .collect::<Result<Vec<_>>>()?;
    // Which exact Debian kernels these results come from.
    for k in &kernels {
        println!("lab: {}", report::kernel_line(k));
    }
    let binary = match &opts.binary {
        Some(path) => path.clone(),
        None => build::static_binary()?,
    };
    let tools = build::lab_tools()?;
    // Scenarios that install the release artefacts get them built once for the whole run.
    let dist = match scenarios
        .iter()
        .any(|s| s.header.needs.contains(&scenario::Need::Dist))
    {
        true => {
            let d = crate::dist::run()?;
            vec![
                (d.tarball, "dist/netpoll-trace.tar.gz".to_string()),
                (d.deb, "dist/netpoll-trace.deb".to_string()),
            ]
        }
        false => Vec::new(),
    };

    let mut jobs = std::collections::VecDeque::new();
    for kernel in &kernels {
        for sc in scenarios {
            if !sc.header.runs_on(kernel.label) {
                println!(
                    "{:<5} {:<24} not for this kernel (# kernels: {})",
                    kernel.label,
                    sc.name,
                    sc.header.kernels.as_deref().unwrap_or_default().join(" ")
                );
                continue;
            }
            for variant in sc.runs.iter().filter(|v| sc.run_on(**v, kernel.label)) {
                jobs.push_back((kernel, sc, *variant));
            }
        }
    }
    // Each guest is single-threaded TCG: one core each. With the console shown (demo,
    // --live) one at a time, so it reads as one session.
    let workers = if opts.show == Show::Nothing {
        parallel_guests().min(jobs.len().max(1))
    } else {
        1
    };
    if workers > 1 {
        println!("lab: {} runs, {workers} guests side by side", jobs.len());
    }
    let queue = std::sync::Mutex::new(jobs);
    // Building initramfs images (and the per-kernel modules) shares files under target/lab.
    let prepare = std::sync::Mutex::new(());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let outcome: std::sync::Mutex<(usize, usize, Option<anyhow::Error>)> =
        std::sync::Mutex::new((0, 0, None));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some((kernel, sc, variant)) = queue.lock().unwrap().pop_front() else { break };
                    let carried: Vec<_> = match sc.header.needs.contains(&scenario::Need::Dist) {
                        true => tools.iter().chain(&dist).cloned().collect(),
                        false => tools.clone(),
                    };
                    let run = Run { root: &root, kernel, sc, variant, busybox: &busybox, binary: &binary, tools: &carried };
                    let r = run_one(&run, &prepare, opts.show, workers == 1)
                        .with_context(|| format!("running scenario {} on kernel {}", sc.run_name(variant), kernel.label));
                    let mut o = outcome.lock().unwrap();
                    match r {
                        Ok(true) => o.0 += 1,
                        Ok(false) => {
                            o.1 += 1;
                            if !opts.keep_going && !stop.swap(true, std::sync::atomic::Ordering::Relaxed) {
                                println!("lab: stopping at the first failure (--keep-going runs the rest)");
                            }
                        }
                        Err(e) => {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                            o.2.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    let (passed, failed, error) = outcome.into_inner().unwrap();
    if let Some(e) = error {
        return Err(e);
    }
    println!("{}", report::summary(passed, failed));
    Ok(failed == 0)
}

/// How many guests run at once: `NPT_LAB_GUESTS`, else one per core, at most two (the
/// build machines have two; more would make each guest's clock crawl).
fn parallel_guests() -> usize {
    std::env::var("NPT_LAB_GUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(2)))
}

/// One guest run: which kernel, scenario and variant, with what.
struct Run<'a> {
    root: &'a Path,
    kernel: &'a Kernel,
    sc: &'a Scenario,
    variant: Option<&'a scenario::Variant>,
    busybox: &'a Path,
    binary: &'a Path,
    tools: &'a [(std::path::PathBuf, String)],
}

/// The guest kernel's command line: the console, what a panic does (`panic=-1`: reboot, so
/// QEMU exits; a scenario that panics on purpose gets its kernel's own word, `panic=0` from
/// 7.x), and what lab/init reads (npt.*): the label, the release the guest must be running
/// (smoke checks `uname -r` against it), the script's timeout and the NIC drivers to load;
/// for a variant, its name and environment.
pub fn cmdline(
    kernel: &Kernel,
    ending: scenario::Ending,
    timeout_secs: u64,
    nic_modules: &[&str],
    variant: Option<&scenario::Variant>,
) -> String {
    let panic = match ending {
        scenario::Ending::Exit => kernels::PanicEnd::Reboot.cmdline(),
        scenario::Ending::Panic => kernel.spec.panic.cmdline(),
    };
    let mut line = format!(
        "console=ttyS0 {panic} quiet npt.kernel={} npt.release={} npt.timeout={timeout_secs} npt.nics={}",
        kernel.label,
        kernel.release,
        nic_modules.join(",")
    );
    if let Some(v) = variant {
        let env: Vec<String> = v.env.iter().map(|(k, val)| format!("{k}={val}")).collect();
        line.push_str(&format!(
            " npt.variant={} npt.env={}",
            v.name,
            env.join(",")
        ));
    }
    line
}

fn choose_kernels(labels: &[String]) -> Result<Vec<&'static kernels::Spec>> {
    kernels::choose(labels)
}

/// Boots one guest and judges it; `live` allows a live progress line (one guest at a time).
fn run_one(r: &Run, prepare: &std::sync::Mutex<()>, show: Show, live: bool) -> Result<bool> {
    let Run {
        root,
        kernel,
        sc,
        variant,
        busybox,
        binary,
        tools,
    } = *r;
    let work = root.join("target").join("lab").join(kernel.label);
    cache::create_dir(&work)?;
    let name = sc.run_name(variant);
    let initrd = work.join(format!("{name}.cpio"));
    let lab = root.join("lab");
    let guard = prepare.lock().unwrap_or_else(|e| e.into_inner());
    let mut files: Vec<(std::path::PathBuf, String)> = tools.to_vec();
    files.extend(build::lab_kmods(kernel)?);
    files.extend(
        sc.header
            .files
            .iter()
            .map(|f| (f.source_for(root, kernel.label), f.guest_for(kernel.label))),
    );
    let parts = initramfs::Parts {
        init: &lab.join("init"),
        lib_sh: &lab.join("lib.sh"),
        scenario: &sc.path,
        binary,
        extra_modules: &sc.header.modules,
        files,
    };
    initramfs::build(kernel, busybox, &work, &parts, &initrd)?;
    drop(guard);
    let nic_modules: Vec<&str> = sc.header.nics.iter().map(|n| n.module()).collect();
    // A guest with a NIC on the host's side sends there: listen before it boots.
    let receiver = match sc.header.nics.contains(&qemu::Nic::E1000Host) {
        true => Some(receiver::Receiver::start()?),
        false => None,
    };
    let mut append = cmdline(
        kernel,
        sc.header.ending,
        sc.header.timeout_secs,
        &nic_modules,
        variant,
    );
    if let Some(r) = &receiver {
        append.push_str(&format!(" npt.receiver={}", r.port()));
    }
    for word in &sc.header.cmdline {
        append.push(' ');
        append.push_str(word);
    }
    let machine = qemu::Machine {
        kernel: kernel.vmlinuz(),
        initrd,
        append,
        nics: sc.header.nics.clone(),
        cpus: sc.header.cpus,
        mttcg: false,
    };
    let log = work.join(format!("{name}.log"));
    let label = format!("lab {} {name}", kernel.label);
    // The console is the progress when shown; else a live line with the elapsed time.
    let step = match show {
        Show::Nothing if live => Some(progress::Step::start(label.clone())),
        Show::Nothing => None,
        Show::Session => {
            println!(
                "{label}: booting {} (the session follows; --verbose shows the whole console)",
                kernel.release
            );
            None
        }
        Show::Everything => {
            println!("{label}: booting {} (console follows)", kernel.release);
            None
        }
    };
    let timeout = Duration::from_secs(sc.header.timeout_secs + BOOT_MARGIN_SECS);
    // A guest that panics on purpose is done once the panic is printed (QEMU exits itself
    // with `panic=-1`), or from 7.x once its end line is (`panic=0`: the kernel halts there,
    // having flushed netconsole last; QEMU is then ended).
    let last_line = match sc.header.ending {
        scenario::Ending::Exit => "NPT-DMESG-END",
        scenario::Ending::Panic => kernel.spec.panic.last_line(),
    };
    let mut run = qemu::run(&machine, &log, timeout, show, last_line)?;
    let mut parsed = console::parse(&run.console);
    // Under multi-threaded TCG a guest kernel occasionally dies while patching its own
    // text at boot (an int3 oops in early initcalls), before /init runs any of our
    // code. Such a run proves nothing either way: boot once more, say so, keep the log.
    if parsed.boot.is_none() && !run.timed_out {
        let first = work.join(format!("{name}.boot-crash.log"));
        let _ = std::fs::copy(&log, &first);
        println!(
            "{:<5} {:<24} kernel died before /init ({}); booting once more",
            kernel.label,
            name,
            first.strip_prefix(root).unwrap_or(&first).display()
        );
        run = qemu::run(&machine, &log, timeout, show, last_line)?;
        parsed = console::parse(&run.console);
    }
    if let Some(step) = step {
        step.finish();
    }
    // A variant's run also proves that the tool took its environment (lab/init checks it).
    let mut checks = sc.header.checks.clone();
    if let Some(v) = variant {
        checks.push(format!("variant_{}", v.name));
    }
    // What reached the host, kept beside the console log and judged where a panic was asked for.
    let mut host_checks = Vec::new();
    if let Some(r) = receiver {
        let lines = receiver::lines(&r.finish());
        let received = work.join(format!("{name}.received"));
        std::fs::write(&received, lines.join("\n"))
            .with_context(|| format!("writing {}", received.display()))?;
        if let (scenario::Ending::Panic, Some(total)) = (sc.header.ending, parsed.panic) {
            host_checks = receiver::report_checks(&lines, total);
        }
    }
    let v = verdict::judge(
        &parsed,
        &checks,
        run.timed_out,
        timeout.as_secs(),
        sc.header.ending,
        &host_checks,
    );
    let log_shown = log.strip_prefix(root).unwrap_or(&log).display().to_string();
    println!(
        "{}",
        report::result_line(kernel.label, &name, &v, run.elapsed)
    );
    if !v.passed() {
        print!("{}", report::failure_details(&v, &run.console, &log_shown));
    }
    Ok(v.passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(label: &str) -> Kernel {
        let spec = kernels::spec(label).unwrap();
        Kernel {
            label: spec.label,
            spec,
            release: "r".into(),
            root: "/x".into(),
            packages: Vec::new(),
            build_root: None,
        }
    }

    #[test]
    fn only_a_panic_scenario_on_a_halting_kernel_gets_panic_0() {
        use scenario::Ending;
        let words = |label: &str, ending| {
            cmdline(&kernel(label), ending, 60, &["e1000"], None)
                .split_whitespace()
                .filter(|w| w.starts_with("panic="))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(words("7.3", Ending::Panic), ["panic=0"]);
        // Any other panic there still reboots, so QEMU exits instead of waiting out the timeout.
        assert_eq!(words("7.3", Ending::Exit), ["panic=-1"]);
        assert_eq!(words("6.18", Ending::Panic), ["panic=-1"]);
        assert_eq!(words("5.10", Ending::Exit), ["panic=-1"]);
        assert_eq!(
            kernels::spec("7.3").unwrap().panic.last_line(),
            "---[ end Kernel panic"
        );
    }
}
