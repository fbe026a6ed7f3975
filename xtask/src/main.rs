//! Project tasks for netpoll-trace: `setup`, `build`, `lab`, `test`, `fuzz`, `demo`.

mod bench;
mod build;
mod cache;
mod checks;
mod dist;
mod lab;
mod process;
mod progress;
mod selftests;
mod setup;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use checks::{bpfcheck, first_contact, fuzz};
use dist::{debcheck, rpmcheck};
use lab::{console, scenario};
use setup::{kernels, toolchain};

#[derive(Parser)]
#[command(about = "netpoll-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the project needs on this machine (idempotent); prints the exact
    /// kernel packages the lab uses.
    Setup {
        /// Move the lab kernels to their suites' newest point releases (a cached kernel
        /// otherwise stays).
        #[arg(long)]
        refresh: bool,
    },
    /// Resolve every lab kernel's exact packages against fresh, initially empty private apt
    /// lists (what a fresh machine gets), downloading no kernel.
    ResolveKernels,
    /// Build the static netpoll-trace binary; prints its path last.
    Build,
    /// Build the runtime patch module (netpoll-patch/) against a lab kernel's headers;
    /// prints the .ko's path last. On a target host use
    /// `make -C /lib/modules/$(uname -r)/build M=$PWD/netpoll-patch` instead.
    BuildKmod {
        /// Kernel label (the lab's kernels: xtask/src/setup/kernels.rs).
        #[arg(long, value_parser = kernels::label_parser(false))]
        kernel: String,
    },
    /// Boot lab kernels under QEMU and run scenarios from lab/scenarios.
    Lab(LabArgs),
    /// Unit tests, the fuzz targets for 60 s each, then every scenario on every kernel in
    /// `all` (the `+legacy` variants on their kernels: lab/README.md), and the kernel's
    /// netconsole selftests on 6.12.
    Test,
    /// Coverage-guided fuzzing (cargo-fuzz, ASan) of every parser of untrusted input: the
    /// agent's configuration, `dump --from`'s JSON lines, BTF, BTFHub archives, HTTP
    /// requests, the recorder's pinned header. Prints executions per target and a table;
    /// exit status 1 on any crash, timeout or out-of-memory, naming the input.
    Fuzz {
        /// Seconds per target.
        #[arg(long = "time", value_name = "S", default_value_t = 60)]
        time_s: u64,
        /// Only this target (repeatable): config, json_lines, btf, btf_archive,
        /// http_request, recorder_meta.
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
    /// Static check that eBPF objects load on Linux 4.4, or 4.9 with --kernel 4.9
    /// (instruction limit, no calls, no loops, helpers, opcodes and map types, no global
    /// data, helper pointer arguments on the stack; 4.4: no per-CPU maps, no pointer
    /// arithmetic); default: the legacy object of the static build. Exit status 1 when
    /// one fails.
    Bpfcheck {
        /// The oldest kernel to hold the objects to: 4.4 (default) or 4.9 (with 4.14's rules).
        #[arg(long, default_value = "4.4")]
        kernel: String,
        /// eBPF ELF objects to check.
        objects: Vec<std::path::PathBuf>,
    },
    /// netpoll-trace vs bpftrace in the lab: attach time (also against a minimal libbpf
    /// loader, per attach method), netconsole throughput, event loss, footprint; prints a
    /// table and writes target/bench/bench.json.
    Bench {
        /// Kernel label or `all` (every lab kernel without an opt-in reason); repeatable.
        #[arg(long = "kernel", default_value = "all", value_parser = kernels::label_parser(true))]
        kernels: Vec<String>,
        /// Repetitions of the attach measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: u32,
        /// The short version `cargo xtask test` runs (small counts; numbers, no timings judged).
        #[arg(long)]
        quick: bool,
        /// Stream the guest console to the terminal.
        #[arg(long)]
        live: bool,
        /// Run only these parts: attach, footprint, burst, tput (repeatable or comma-separated).
        #[arg(long = "section")]
        sections: Vec<String>,
        /// Throughput modes to time: none, watch, watch_noslow, kprobe, bpftrace, floor (the
        /// full libbpf floor on the functions watch runs programs on during a flood).
        #[arg(long = "mode")]
        modes: Vec<String>,
        /// A host thread per guest vCPU (QEMU's multi-threaded TCG), so that what the guest
        /// does side by side (the program loads of a pass) runs side by side; the lab keeps
        /// one thread for both, as under it a guest patching its own text has trapped on a
        /// stale int3. bench.json says which was used (`mttcg`).
        #[arg(long)]
        mttcg: bool,
        /// The guest's watch and agent load a pass's programs on N threads
        /// (NETPOLL_TRACE_LOAD_THREADS; their default is one per CPU, 1 loads them one by
        /// one): the same run's A/B of the parallel load. bench.json: `load_threads`.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
        load_threads: Option<u32>,
        /// Only `receive` under a flood on this host's loopback (no VM): messages/s on one
        /// core and on all, loss, RSS; writes target/bench/receive.json.
        #[arg(long)]
        receive: bool,
        /// The netpoll-trace to measure with --receive [default: the static release build].
        #[arg(long, value_name = "PATH", requires = "receive")]
        binary: Option<std::path::PathBuf>,
    },
    /// Release artefacts in target/dist/: netpoll-trace-<version>-x86_64.tar.gz (static binary,
    /// man pages, completions, systemd unit, patch module source, INSTALL.md) and a .deb.
    Dist,
    /// The .deb through `dpkg -i`, `-r` and `-P` in a throwaway root, its maintainer scripts as
    /// a systemd host runs them, and lintian (default: the one `dist` builds); with the
    /// DKMS package `dist` builds, also dkms add/build/install/remove against every lab
    /// kernel's headers, its scripts, and lintian.
    Debcheck {
        /// A .deb to check instead of building one.
        deb: Option<std::path::PathBuf>,
    },
    /// `cargo xtask` as a newcomer's first command: from the workspace root, with a private
    /// rustup home holding only this machine's default toolchain (the product's pin absent).
    FirstContact,
    /// The RPMs `dist` builds: installed, verified and erased in a throwaway root (`rpm
    /// --root`), %config(noreplace), scriptlets, and rpmlint.
    Rpmcheck,
    /// The kernel's own netconsole selftests (from its linux-source package) in the lab:
    /// bare, under `watch --json` (both objects), with the agent, and with `receive` as
    /// their listener; a table per kernel (lab/selftests/README.md).
    Selftests {
        /// Kernel label or `all` (kernels whose source has no netconsole selftest, or is not
        /// in their suite's index, are said and skipped); repeatable.
        #[arg(long = "kernel", default_value = "all", value_parser = kernels::label_parser(true))]
        kernels: Vec<String>,
        /// Only this test (e.g. netcons_basic); repeatable.
        #[arg(long = "test", value_name = "NAME")]
        tests: Vec<String>,
        /// Only these modes after bare: watch, watch_legacy, agent, receive; repeatable.
        #[arg(long = "mode", value_name = "MODE")]
        modes: Vec<String>,
        /// Stream the guest console to the terminal.
        #[arg(long)]
        live: bool,
        /// Use this static netpoll-trace instead of building one.
        #[arg(long, value_name = "PATH")]
        binary: Option<std::path::PathBuf>,
    },
    /// Boot one kernel with lab/scenarios/demo.sh and show the tool's session live (the
    /// guest's kernel log only when a check fails, or with --verbose).
    Demo {
        /// Kernel label.
        #[arg(long, default_value = kernels::NEWEST, value_parser = kernels::label_parser(false))]
        kernel: String,
        /// Show the guest's whole console: firmware, kernel log and the closing dmesg.
        #[arg(long, short)]
        verbose: bool,
    },
}

#[derive(Args)]
struct LabArgs {
    /// Kernel label or `all` (every kernel but the opt-in ones: kernels.rs says why each is);
    /// repeatable.
    #[arg(long = "kernel", default_value = "all", value_parser = kernels::label_parser(true))]
    kernels: Vec<String>,
    /// Scenario name (lab/scenarios/NAME.sh); repeatable; default every scenario.
    #[arg(long = "scenario", num_args = 1..)]
    scenarios: Vec<String>,
    /// Continue after a failing run.
    #[arg(long)]
    keep_going: bool,
    /// Stream the guest console to the terminal.
    #[arg(long)]
    live: bool,
    /// Use this static netpoll-trace instead of building one.
    #[arg(long, value_name = "PATH")]
    binary: Option<std::path::PathBuf>,
}

fn main() {
    match run(Cli::parse()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}

/// Ok(false): the task ran and something it checked failed (already reported).
fn run(cli: Cli) -> Result<bool> {
    match cli.task {
        Task::Setup { refresh } => setup::run(refresh).map(|()| true),
        Task::ResolveKernels => resolve_kernels(),
        Task::Build => {
            let binary = build::static_binary()?;
            println!("{}", binary.display());
            Ok(true)
        }
        Task::BuildKmod { kernel } => {
            let spec = kernels::spec(&kernel)?;
            let kernel = kernels::load(&cache::dir()?, spec)?;
            let root = cache::workspace_root();
            let ko = build::kmod_for(
                &kernel,
                &root.join("netpoll-patch"),
                &root.join("target").join("kmod"),
            )?;
            println!("{}", ko.display());
            Ok(true)
        }
        Task::Lab(args) => lab::run(&lab::Options {
            kernels: args.kernels,
            scenarios: args.scenarios,
            keep_going: args.keep_going,
            show: if args.live {
                console::Show::Everything
            } else {
                console::Show::Nothing
            },
            binary: args.binary,
        }),
        Task::Test => test(),
        Task::Fuzz { time_s, targets } => {
            setup::for_fuzzing()?;
            fuzz::run(&fuzz::Options { time_s, targets })
        }
        Task::Bpfcheck { kernel, objects } => {
            bpfcheck::run(&objects, bpfcheck::Floor::parse(&kernel)?)
        }
        Task::Bench {
            kernels,
            reps,
            quick,
            live,
            sections,
            modes,
            mttcg,
            load_threads,
            receive,
            binary,
        } => {
            if receive {
                return bench::receive::run(&bench::receive::Options {
                    binary,
                    reps,
                    quick,
                });
            }
            setup::run(false)?;
            bench::run(&bench::Options {
                kernels,
                reps,
                quick,
                live,
                sections,
                modes,
                mttcg,
                load_threads,
            })
        }
        Task::Demo { kernel, verbose } => demo(kernel, verbose),
        Task::Selftests {
            kernels,
            tests,
            modes,
            live,
            binary,
        } => selftests::run(&selftests::Options {
            kernels,
            tests,
            modes,
            live,
            binary,
        }),
        Task::Dist => dist::run().map(|_| true),
        Task::FirstContact => first_contact::run(),
        Task::Rpmcheck => {
            let a = dist::run()?;
            rpmcheck::run(&a.rpm, &a.dkms_rpm)
        }
        Task::Debcheck { deb } => match deb {
            Some(d) => debcheck::run(&d, None),
            None => {
                let a = dist::run()?;
                debcheck::run(&a.deb, Some(&a.dkms_deb))
            }
        },
    }
}

fn test() -> Result<bool> {
    // Everything the tests need, installed by the project itself (seconds when present).
    setup::run(false)?;
    println!("test: cargo xtask first-contact (`cargo xtask` without the product's pin installed)");
    let first_ok = first_contact::run().unwrap_or_else(|e| {
        eprintln!("test: first-contact failed: {e:#}");
        false
    });
    // The workspace's default members: the eBPF crate only builds for the BPF target.
    println!("test: cargo test (unit and host tests, on the product's pinned toolchain)");
    let unit = toolchain::product_cargo().and_then(|mut cargo| {
        process::run(cargo.args(["test"]).current_dir(cache::workspace_root()))
    });
    if let Err(e) = &unit {
        eprintln!("test: unit tests failed: {e:#}");
    }
    let resolve_ok = resolve_kernels().unwrap_or_else(|e| {
        eprintln!("test: resolving the lab kernels failed: {e:#}");
        false
    });
    // The lab has no 4.14 kernel: what keeps the legacy object loadable there is checked
    // statically, on the object the lab then embeds.
    println!("test: cargo xtask bpfcheck (the legacy object against Linux 4.4's rules)");
    let bpf_ok = bpfcheck::run(&[], bpfcheck::Floor::K4_4).unwrap_or_else(|e| {
        eprintln!("test: bpfcheck failed: {e:#}");
        false
    });
    // Before the lab, while nothing else needs the CPU: 60 s each, a target per core.
    println!("test: cargo xtask fuzz --time 60 (every parser of untrusted input)");
    let fuzz_ok = fuzz::run(&fuzz::Options {
        time_s: 60,
        targets: Vec::new(),
    })
    .unwrap_or_else(|e| {
        eprintln!("test: fuzzing failed: {e:#}");
        false
    });
    let lab_ok = lab::run(&lab::Options {
        kernels: vec!["all".into()],
        scenarios: Vec::new(),
        keep_going: true,
        show: console::Show::Nothing,
        binary: None,
    })?;
    // The kernel's own netconsole selftest, all modes (bare, watch with both objects, the
    // agent, receive as listener) on one kernel: about 40 s once fetched.
    println!(
        "test: cargo xtask selftests --kernel {} (the kernel's netconsole selftests with the tool)",
        selftests::CI_KERNEL
    );
    let selftests_ok = selftests::run(&selftests::Options {
        kernels: vec![selftests::CI_KERNEL.into()],
        tests: Vec::new(),
        modes: Vec::new(),
        live: false,
        binary: None,
    })
    .unwrap_or_else(|e| {
        eprintln!("test: selftests failed: {e:#}");
        false
    });
    // The benchmark's short version, so it cannot rot: it fails only when no numbers come
    // out; timings are not judged (one kernel keeps it near two minutes).
    println!(
        "test: cargo xtask bench --quick --kernel {} (numbers produced; timings not judged)",
        bench::CI_KERNEL
    );
    let bench_ok = bench::run(&bench::Options {
        kernels: vec![bench::CI_KERNEL.into()],
        reps: 1,
        quick: true,
        live: false,
        sections: Vec::new(),
        modes: Vec::new(),
        mttcg: false,
        load_threads: None,
    })
    .unwrap_or_else(|e| {
        eprintln!("test: bench failed: {e:#}");
        false
    });
    println!(
        "test: cargo xtask debcheck (dpkg -i/-r/-P in a throwaway root, maintainer scripts, lintian)"
    );
    println!("test: cargo xtask rpmcheck (rpm --root -i/-V/-e, rpmlint)");
    let deb_ok = dist::run()
        .and_then(|d| {
            let deb = debcheck::run(&d.deb, Some(&d.dkms_deb))?;
            let rpm = rpmcheck::run(&d.rpm, &d.dkms_rpm)?;
            Ok(deb && rpm)
        })
        .unwrap_or_else(|e| {
            eprintln!("test: debcheck/rpmcheck failed: {e:#}");
            false
        });
    Ok(first_ok
        && unit.is_ok()
        && resolve_ok
        && bpf_ok
        && fuzz_ok
        && lab_ok
        && selftests_ok
        && bench_ok
        && deb_ok)
}

/// A fresh machine's view of the lab kernels: private lists in a new directory under
/// target/, refreshed from the host's mirror, resolved, compared with the cache.
fn resolve_kernels() -> Result<bool> {
    println!("test: resolving the lab kernels against empty private apt lists (a fresh machine)");
    let dir = cache::workspace_root().join("target").join("apt-fresh");
    kernels::resolve_fresh(&dir, &cache::dir()?)
}

fn demo(kernel: String, verbose: bool) -> Result<bool> {
    setup::run(false)?;
    let root = cache::workspace_root();
    let path = scenario::dir(&root).join("demo.sh");
    if !path.is_file() {
        bail!(
            "{} is missing: the demo scenario has not been written yet",
            path.display()
        );
    }
    let show = if verbose {
        console::Show::Everything
    } else {
        console::Show::Session
    };
    lab::run(&lab::Options {
        kernels: vec![kernel],
        scenarios: vec!["demo".into()],
        keep_going: false,
        show,
        binary: None,
    })
}
