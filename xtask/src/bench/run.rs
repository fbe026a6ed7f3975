//! One kernel's benchmark run: the guest's bench.conf and initramfs, the VM under QEMU, and
//! the `NPT-BENCH key value` lines its console carries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::Options;
use crate::lab::console::Show;
use crate::lab::{initramfs, qemu};
use crate::setup::kernels::Kernel;
use crate::{cache, progress};

/// How much the guest script does: the short version's counts or the full run's.
struct Counts {
    msgs: u32,
    tput_reps: u32,
    cycles: u32,
    timeout_secs: u64,
}

impl Counts {
    fn for_options(opts: &Options) -> Self {
        if opts.quick {
            Self {
                msgs: 200,
                tput_reps: 1,
                cycles: 50,
                timeout_secs: 600,
            }
        } else {
            Self {
                msgs: 2000,
                tput_reps: 5,
                cycles: 1000,
                timeout_secs: 2400,
            }
        }
    }
}

/// lab/bench/benchtool.c built static; (host path, guest path).
pub fn benchtool(root: &Path) -> Result<(PathBuf, String)> {
    let src = root.join("lab/bench/benchtool.c");
    let out = root.join("target/lab/tools/benchtool");
    cache::create_dir(out.parent().unwrap_or(root))?;
    crate::build::static_c_tool(&src, &out)?;
    Ok((out, "bin/benchtool".into()))
}

/// Boots `kernel` with the guest script and returns its `NPT-BENCH` lines.
#[allow(clippy::too_many_arguments)]
pub fn kernel(
    root: &Path,
    out_dir: &Path,
    kernel: &Kernel,
    busybox: &Path,
    binary: &Path,
    tools: &[(PathBuf, String)],
    bpftrace: &[(PathBuf, String)],
    opts: &Options,
) -> Result<Vec<(String, String)>> {
    let c = Counts::for_options(opts);
    let work = out_dir.join(kernel.label);
    cache::create_dir(&work)?;
    let conf = work.join("bench.conf");
    std::fs::write(
        &conf,
        format!(
            "REPS={}\nMSGS={}\nTPUT_REPS={}\nCYCLES={}\nQUICK={}\n{}{}{}",
            opts.reps.max(1),
            c.msgs,
            c.tput_reps,
            c.cycles,
            u8::from(opts.quick),
            shell_list("SECTIONS", &opts.sections),
            shell_list("MODES", &opts.modes),
            opts.load_threads
                .map_or_else(String::new, |n| format!("LOAD_THREADS={n}\n")),
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let mut files = tools.to_vec();
    files.push((conf, "bench.conf".into()));
    files.push((root.join("lab/bench/bench.bt"), "bench.bt".into()));
    files.extend(bpftrace.iter().cloned());
    let lab = root.join("lab");
    let parts = initramfs::Parts {
        init: &lab.join("init"),
        lib_sh: &lab.join("lib.sh"),
        scenario: &lab.join("bench/bench.sh"),
        binary,
        extra_modules: &[],
        files,
    };
    let initrd = work.join("bench.cpio");
    initramfs::build(kernel, busybox, &work, &parts, &initrd)?;
    let machine = qemu::Machine {
        kernel: kernel.vmlinuz(),
        initrd,
        // A 2 MiB printk ring (Debian's is 128 KiB): on 7.x a flood's writes outrun the
        // consoles' printk threads, and a 2,000-line flood overflowed the ring ("** 130
        // printk messages dropped **", 152 lines lost at the receiver): loss that is
        // printk's, not netconsole's.
        append: crate::lab::cmdline(
            kernel,
            crate::lab::scenario::Ending::Exit,
            c.timeout_secs,
            &["virtio_net"],
            None,
        ) + " log_buf_len=2M",
        cpus: crate::lab::scenario::DEFAULT_CPUS,
        mttcg: opts.mttcg,
        nics: vec![qemu::Nic::Virtio, qemu::Nic::Virtio],
    };
    let log = out_dir.join(format!("{}.log", kernel.label));
    let show = if opts.live {
        Show::Everything
    } else {
        Show::Nothing
    };
    // Minutes of emulation: a live line with the elapsed time (none under --live, whose
    // console lines are the progress).
    let step = (!opts.live).then(|| progress::Step::start(format!("bench {}", kernel.label)));
    let run = qemu::run(
        &machine,
        &log,
        Duration::from_secs(c.timeout_secs + 120),
        show,
        "NPT-DMESG-END",
    )?;
    if let Some(step) = step {
        step.finish();
    }
    if run.timed_out {
        println!(
            "bench: {}: timed out after {:.0}s",
            kernel.label,
            run.elapsed.as_secs_f64()
        );
    } else {
        println!(
            "bench: {}: guest done in {:.0}s",
            kernel.label,
            run.elapsed.as_secs_f64()
        );
    }
    for bad in ["BUG:", "Oops", "general protection", "Kernel panic"] {
        if run.console.contains(bad) {
            bail!(
                "kernel {}: the console shows {bad:?}: see {}",
                kernel.label,
                log.display()
            );
        }
    }
    Ok(parse(&run.console))
}

/// `NAME="a b"` for bench.conf, or nothing when `words` is empty (the script's default).
fn shell_list(name: &str, words: &[String]) -> String {
    if words.is_empty() {
        return String::new();
    }
    let words: Vec<&str> = words
        .iter()
        .flat_map(|w| w.split([',', ' ']))
        .filter(|w| !w.is_empty())
        .collect();
    format!("{name}=\"{}\"\n", words.join(" "))
}

/// `NPT-BENCH key value...` lines, in order.
pub fn parse(console: &str) -> Vec<(String, String)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l[l.find("NPT-BENCH ")?..].strip_prefix("NPT-BENCH ")?;
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}
