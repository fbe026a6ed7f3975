//! `cargo xtask bench`: netpoll-trace side by side with bpftrace, one lab VM per kernel.
//! The guest script (lab/bench/bench.sh) measures time to attached (netpoll-trace, bpftrace,
//! and a minimal libbpf loader as the floor, per attach method), netconsole throughput
//! through /dev/kmsg untraced and traced, event loss in a configfs enable/disable burst and
//! the tools' peak RSS, and prints `NPT-BENCH key value` lines; this side reduces them
//! (medians, ratios), prints a table and writes target/bench/bench.json.
//! Absolute times are QEMU/TCG emulation times: the ratios are what carries over.
//!
//! `run` boots a kernel with the guest script and collects its lines, `reduce` turns them
//! into numbers, `report` prints the table and writes bench.json (through serde);
//! `bpftrace` fetches the guests' bpftrace and `floor` builds the libbpf reference loader.
//! `receive` is apart: `--receive` floods the host's own `netpoll-trace receive` on loopback
//! (no VM) and writes target/bench/receive.json.

/// The kernel `cargo xtask test` runs the short bench on: 7.3, the newest lab kernel when
/// chosen, so the bench runs where netconsole sets netpoll up itself (the floor and
/// bpftrace follow it: bench.sh's OUTER) and is an nbcon console, whose floods only the
/// receiver can time (bench.sh's flood); timed so, 7.3's traced ÷ untraced ratios came out
/// like 6.18's (docs/performance.md, #26). It was 6.18 while floods were timed over their
/// writes, which on 7.3 gave ratios of 0.1-20.
pub const CI_KERNEL: &str = "7.3";

pub mod bpftrace;
pub mod floor;
pub mod receive;
mod reduce;
mod report;
mod run;

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use crate::setup::guest;
use crate::setup::kernels;
use crate::{build, cache};

pub struct Options {
    /// Kernel labels, or `all`.
    pub kernels: Vec<String>,
    /// Repetitions of the attach measurement (median reported).
    pub reps: u32,
    /// The short version `cargo xtask test` runs: small counts, one throughput round.
    pub quick: bool,
    /// Stream the guest console to the terminal.
    pub live: bool,
    /// Only these parts of the guest script (attach, footprint, burst, tput); all when empty.
    pub sections: Vec<String>,
    /// Only these throughput modes (none, watch, watch_noslow, kprobe, bpftrace); the
    /// script's choice when empty.
    pub modes: Vec<String>,
    /// A host thread per vCPU (`qemu::Machine::mttcg`).
    pub mttcg: bool,
    /// The guest's tools load a pass's programs on this many threads
    /// (NETPOLL_TRACE_LOAD_THREADS); None: their default, one per CPU.
    pub load_threads: Option<u32>,
}

/// Runs the benchmark; Ok(true) when every kernel produced its numbers.
pub fn run(opts: &Options) -> Result<bool> {
    let root = cache::workspace_root();
    let cache_dir = cache::dir()?;
    let specs = kernels::choose(&opts.kernels)?;
    let busybox = guest::busybox(&cache_dir)?;
    let kernels = specs
        .iter()
        .map(|s| kernels::load(&cache_dir, s))
        .collect::<Result<Vec<_>>>()?;
    // Which exact Debian kernels these numbers come from.
    for k in &kernels {
        println!("bench: {}", crate::lab::report::kernel_line(k));
    }
    let binary = build::static_binary()?;
    let binary_bytes = std::fs::metadata(&binary)
        .with_context(|| format!("reading {}", binary.display()))?
        .len();
    let mut tools = build::lab_tools()?;
    tools.push(run::benchtool(&root)?);
    tools.push(floor::build(&root)?);
    let out_dir = root.join("target").join("bench");
    cache::create_dir(&out_dir)?;

    let mut results: BTreeMap<String, reduce::Reduced> = BTreeMap::new();
    let mut all_ok = true;
    for (kernel, spec) in kernels.iter().zip(&specs) {
        let bpftrace = match bpftrace::root(&cache_dir, kernels::userland(spec.suite))
            .and_then(|r| bpftrace::guest_files(&r))
        {
            Ok(files) => files,
            Err(e) => {
                println!("bench: {}: no bpftrace for the guest: {e:#}", kernel.label);
                Vec::new()
            }
        };
        println!(
            "bench: kernel {} ({}), {} attach repetitions{}",
            kernel.label,
            kernel.release,
            opts.reps,
            if opts.quick { ", short version" } else { "" }
        );
        let lines = run::kernel(
            &root, &out_dir, kernel, &busybox, &binary, &tools, &bpftrace, opts,
        )?;
        let mut r = reduce::reduce(&lines, binary_bytes);
        r.mttcg = opts.mttcg;
        r.load_threads = opts.load_threads;
        // A partial run (--section) is for chasing a problem: its gaps are expected.
        let complete = r.attach_ms.is_some()
            && r.attach_ms_libbpf().is_some()
            && r.rate_none.is_some()
            && r.events.is_some();
        if !complete && opts.sections.is_empty() {
            println!(
                "bench: {}: the guest produced no numbers (see target/bench/{}.log)",
                kernel.label, kernel.label
            );
            all_ok = false;
        }
        results.insert(kernel.release.clone(), r);
    }
    let labels: BTreeMap<String, &str> = kernels
        .iter()
        .map(|k| (k.release.clone(), k.label))
        .collect();
    print!("{}", report::table(&results, &labels));
    let json = out_dir.join("bench.json");
    std::fs::write(&json, report::to_json(&results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!(
        "bench: wrote {} (times are QEMU/TCG emulation times; compare the ratios)",
        json.display()
    );
    Ok(all_ok)
}

#[cfg(test)]
mod ci_kernel_tests {
    #[test]
    fn the_ci_bench_kernel_is_a_lab_kernel_in_all() {
        let all: Vec<&str> = crate::setup::kernels::all()
            .iter()
            .map(|k| k.label)
            .collect();
        assert!(all.contains(&super::CI_KERNEL), "{all:?}");
    }
}
