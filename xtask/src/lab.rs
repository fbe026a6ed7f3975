//! `cargo xtask lab`: every chosen kernel x scenario booted in QEMU, one at a time, judged from
//! the console.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::console::Show;
use crate::kernels::{self, Kernel};
use crate::scenario::{self, Scenario};
use crate::{build, cache, console, guest, initramfs, progress, qemu, report, verdict};

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
    let cache_dir = cache::dir()?;
    let specs = choose_kernels(&opts.kernels)?;
    let names = if opts.scenarios.is_empty() { scenario::all_names(&root)? } else { opts.scenarios.clone() };
    if names.is_empty() {
        bail!("no scenarios in {}", scenario::dir(&root).display());
    }
    let scenarios = names.iter().map(|n| scenario::load(&root, n)).collect::<Result<Vec<_>>>()?;
    // Everything cached must be there before the (slower) build starts.
    let busybox = guest::busybox(&cache_dir)?;
    let kernels = specs.iter().map(|s| kernels::load(&cache_dir, s)).collect::<Result<Vec<_>>>()?;
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
    let dist = match scenarios.iter().any(|s| s.header.needs.contains(&scenario::Need::Dist)) {
        true => {
            let d = crate::dist::run()?;
            vec![(d.tarball, "dist/netpoll-trace.tar.gz".to_string()), (d.deb, "dist/netpoll-trace.deb".to_string())]
        }
        false => Vec::new(),
    };

    let (mut passed, mut failed) = (0, 0);
    'kernels: for kernel in &kernels {
        for sc in &scenarios {
            if !sc.header.runs_on(kernel.label) {
                println!("{:<5} {:<24} not for this kernel (# kernels: {})", kernel.label, sc.name,
                    sc.header.kernels.as_deref().unwrap_or_default().join(" "));
                continue;
            }
            let carried: Vec<_> = match sc.header.needs.contains(&scenario::Need::Dist) {
                true => tools.iter().chain(&dist).cloned().collect(),
                false => tools.clone(),
            };
            for variant in &sc.runs {
                let ok = run_one(&root, kernel, sc, *variant, &busybox, &binary, &carried, opts.show)
                    .with_context(|| format!("running scenario {} on kernel {}", sc.run_name(*variant), kernel.label))?;
                if ok {
                    passed += 1;
                } else {
                    failed += 1;
                    if !opts.keep_going {
                        println!("lab: stopping at the first failure (--keep-going runs the rest)");
                        break 'kernels;
                    }
                }
            }
        }
    }
    println!("{}", report::summary(passed, failed));
    Ok(failed == 0)
}

/// The guest kernel's command line: the console, and what lab/init reads (npt.*): the label,
/// the release the guest must be running (smoke checks `uname -r` against it), the script's
/// timeout and the NIC drivers to load; for a variant, its name and environment.
pub fn cmdline(kernel: &Kernel, timeout_secs: u64, nic_modules: &[&str], variant: Option<&scenario::Variant>) -> String {
    let mut line = format!(
        "console=ttyS0 panic=-1 quiet npt.kernel={} npt.release={} npt.timeout={timeout_secs} npt.nics={}",
        kernel.label,
        kernel.release,
        nic_modules.join(",")
    );
    if let Some(v) = variant {
        let env: Vec<String> = v.env.iter().map(|(k, val)| format!("{k}={val}")).collect();
        line.push_str(&format!(" npt.variant={} npt.env={}", v.name, env.join(",")));
    }
    line
}

fn choose_kernels(labels: &[String]) -> Result<Vec<&'static kernels::Spec>> {
    if labels.is_empty() || labels.iter().any(|l| l == "all") {
        return Ok(kernels::KERNELS.iter().collect());
    }
    labels.iter().map(|l| kernels::spec(l)).collect()
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    root: &Path,
    kernel: &Kernel,
    sc: &Scenario,
    variant: Option<&scenario::Variant>,
    busybox: &Path,
    binary: &Path,
    tools: &[(std::path::PathBuf, String)],
    show: Show,
) -> Result<bool> {
    let work = root.join("target").join("lab").join(kernel.label);
    cache::create_dir(&work)?;
    let name = sc.run_name(variant);
    let initrd = work.join(format!("{name}.cpio"));
    let lab = root.join("lab");
    let mut files: Vec<(std::path::PathBuf, String)> = tools.to_vec();
    files.extend(build::lab_kmods(kernel)?);
    files.extend(sc.header.files.iter().map(|f| (f.source_for(root, kernel.label), f.guest_for(kernel.label))));
    let parts = initramfs::Parts {
        init: &lab.join("init"),
        lib_sh: &lab.join("lib.sh"),
        scenario: &sc.path,
        binary,
        extra_modules: &sc.header.modules,
        files,
    };
    initramfs::build(kernel, busybox, &work, &parts, &initrd)?;
    let nic_modules: Vec<&str> = sc
        .header
        .nics
        .iter()
        .map(|n| match n {
            qemu::Nic::Virtio => "virtio_net",
            qemu::Nic::E1000 => "e1000",
        })
        .collect();
    let machine = qemu::Machine {
        kernel: kernel.vmlinuz(),
        initrd,
        append: cmdline(kernel, sc.header.timeout_secs, &nic_modules, variant),
        nics: sc.header.nics.clone(),
    };
    let log = work.join(format!("{name}.log"));
    let label = format!("lab {} {name}", kernel.label);
    // The console is the progress when shown; else a live line with the elapsed time.
    let step = match show {
        Show::Nothing => Some(progress::Step::start(label.clone())),
        Show::Session => {
            println!("{label}: booting {} (the session follows; --verbose shows the whole console)", kernel.release);
            None
        }
        Show::Everything => {
            println!("{label}: booting {} (console follows)", kernel.release);
            None
        }
    };
    let timeout = Duration::from_secs(sc.header.timeout_secs + BOOT_MARGIN_SECS);
    let mut run = qemu::run(&machine, &log, timeout, show, "NPT-DMESG-END")?;
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
        run = qemu::run(&machine, &log, timeout, show, "NPT-DMESG-END")?;
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
    let v = verdict::judge(&parsed, &checks, run.timed_out, timeout.as_secs());
    let log_shown = log.strip_prefix(root).unwrap_or(&log).display().to_string();
    println!("{}", report::result_line(kernel.label, &name, &v, run.elapsed));
    if !v.passed() {
        print!("{}", report::failure_details(&v, &run.console, &log_shown));
    }
    Ok(v.passed())
}
