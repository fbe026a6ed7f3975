//! `cargo xtask bench`: netpoll-trace side by side with bpftrace, one lab VM per kernel.
//! The guest script (lab/bench/bench.sh) measures time to attached (netpoll-trace, bpftrace,
//! and a minimal libbpf loader as the floor, per attach method), netconsole throughput
//! through /dev/kmsg untraced and traced, event loss in a configfs enable/disable burst and
//! the tools' peak RSS, and prints `NPT-BENCH key value` lines; this side reduces them
//! (medians, ratios), prints a table and writes target/bench/bench.json.
//! Absolute times are QEMU/TCG emulation times: the ratios are what carries over.

pub mod bpftrace;
pub mod floor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::lab::console::Show;
use crate::lab::{initramfs, qemu, report};
use crate::setup::guest;
use crate::setup::kernels::{self, Kernel};
use crate::{build, cache, process, progress};

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
}

struct Counts {
    msgs: u32,
    tput_reps: u32,
    cycles: u32,
    timeout_secs: u64,
}

impl Options {
    fn counts(&self) -> Counts {
        if self.quick {
            Counts {
                msgs: 200,
                tput_reps: 1,
                cycles: 50,
                timeout_secs: 600,
            }
        } else {
            Counts {
                msgs: 2000,
                tput_reps: 5,
                cycles: 1000,
                timeout_secs: 2400,
            }
        }
    }
}

/// Runs the benchmark; Ok(true) when every kernel produced its numbers.
pub fn run(opts: &Options) -> Result<bool> {
    let root = cache::workspace_root();
    let cache_dir = cache::dir()?;
    let specs: Vec<&'static kernels::Spec> =
        if opts.kernels.is_empty() || opts.kernels.iter().any(|k| k == "all") {
            kernels::KERNELS.iter().collect()
        } else {
            opts.kernels
                .iter()
                .map(|k| kernels::spec(k))
                .collect::<Result<_>>()?
        };
    let busybox = guest::busybox(&cache_dir)?;
    let kernels = specs
        .iter()
        .map(|s| kernels::load(&cache_dir, s))
        .collect::<Result<Vec<_>>>()?;
    // Which exact Debian kernels these numbers come from.
    for k in &kernels {
        println!("bench: {}", report::kernel_line(k));
    }
    let binary = build::static_binary()?;
    let binary_bytes = std::fs::metadata(&binary)
        .with_context(|| format!("reading {}", binary.display()))?
        .len();
    let mut tools = build::lab_tools()?;
    tools.push(benchtool(&root)?);
    tools.push(floor::build(&root)?);
    let out_dir = root.join("target").join("bench");
    cache::create_dir(&out_dir)?;

    let mut results: BTreeMap<String, Result_> = BTreeMap::new();
    let mut all_ok = true;
    for (kernel, spec) in kernels.iter().zip(&specs) {
        let bpftrace =
            match bpftrace::root(&cache_dir, spec.suite).and_then(|r| bpftrace::guest_files(&r)) {
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
        let lines = run_kernel(
            &root, &out_dir, kernel, &busybox, &binary, &tools, &bpftrace, opts,
        )?;
        let r = reduce(&lines, binary_bytes);
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
    print!("{}", table(&results, &labels));
    let json = out_dir.join("bench.json");
    std::fs::write(&json, to_json(&results))
        .with_context(|| format!("writing {}", json.display()))?;
    println!(
        "bench: wrote {} (times are QEMU/TCG emulation times; compare the ratios)",
        json.display()
    );
    Ok(all_ok)
}

/// lab/bench/benchtool.c built static; (host path, guest path).
fn benchtool(root: &Path) -> Result<(PathBuf, String)> {
    let src = root.join("lab/bench/benchtool.c");
    let out = root.join("target/lab/tools/benchtool");
    cache::create_dir(out.parent().unwrap_or(root))?;
    let fresh = match (std::fs::metadata(&src), std::fs::metadata(&out)) {
        (Ok(s), Ok(o)) => o.modified()? >= s.modified()?,
        _ => false,
    };
    if !fresh {
        process::run(
            Command::new("gcc")
                .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(&out)
                .arg(&src),
        )
        .with_context(|| format!("building {}", src.display()))?;
    }
    Ok((out, "bin/benchtool".into()))
}

#[allow(clippy::too_many_arguments)]
fn run_kernel(
    root: &Path,
    out_dir: &Path,
    kernel: &Kernel,
    busybox: &Path,
    binary: &Path,
    tools: &[(PathBuf, String)],
    bpftrace: &[(PathBuf, String)],
    opts: &Options,
) -> Result<Vec<(String, String)>> {
    let c = opts.counts();
    let work = out_dir.join(kernel.label);
    cache::create_dir(&work)?;
    let conf = work.join("bench.conf");
    std::fs::write(
        &conf,
        format!(
            "REPS={}\nMSGS={}\nTPUT_REPS={}\nCYCLES={}\nQUICK={}\n{}{}",
            opts.reps.max(1),
            c.msgs,
            c.tput_reps,
            c.cycles,
            u8::from(opts.quick),
            shell_list("SECTIONS", &opts.sections),
            shell_list("MODES", &opts.modes),
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
        append: crate::lab::cmdline(kernel, c.timeout_secs, &["virtio_net"], None),
        cpus: crate::lab::scenario::DEFAULT_CPUS,
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
fn parse(console: &str) -> Vec<(String, String)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l[l.find("NPT-BENCH ")?..].strip_prefix("NPT-BENCH ")?;
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// One kernel's reduced numbers.
#[derive(Debug, Default)]
struct Result_ {
    attach_ms: Option<f64>,
    /// watch's default method again, with the cache of the kernel's BTF facts warm.
    attach_ms_warm: Option<f64>,
    attach_ms_self: Option<f64>,
    attach_ms_bpftrace: Option<f64>,
    attach_runs: usize,
    attach_method: Option<String>,
    /// watch and the libbpf floor loader, per attach method (`fentry`, `kprobe`).
    attach_by_method: BTreeMap<String, MethodAttach>,
    rate_none: Option<f64>,
    /// Per mode: median over rounds of (traced rate / the untraced floods next to it).
    ratio_watch: Option<f64>,
    ratio_kprobe: Option<f64>,
    ratio_bpftrace: Option<f64>,
    ratio_watch_noslow: Option<f64>,
    ratio_rounds: usize,
    /// Per mode: median over floods of (tracing programs' run time / flood wall time), and
    /// of the programs' runs per flood (kernel.bpf_stats_enabled, see bench.sh's bpf_run).
    bpf_share: BTreeMap<String, (f64, f64)>,
    rate_watch: Option<f64>,
    rate_kprobe: Option<f64>,
    rate_watch_noslow: Option<f64>,
    poll_lines_watch: Option<f64>,
    rate_bpftrace: Option<f64>,
    rate_serial_only: Option<f64>,
    setups: Option<u64>,
    setups_ok: Option<u64>,
    events: Option<u64>,
    lost: Option<u64>,
    events_bpftrace: Option<u64>,
    lost_bpftrace: Option<u64>,
    watch_idle_hwm_kib: Option<u64>,
    watch_idle_rss_kib: Option<u64>,
    watch_burst_hwm_kib: Option<u64>,
    watch_burst_rss_kib: Option<u64>,
    agent_idle_rss_kib: Option<u64>,
    agent_idle_hwm_kib: Option<u64>,
    /// The allocator's in-use KiB at idle (mallinfo2), beside RSS.
    watch_idle_heap_kib: Option<u64>,
    agent_idle_heap_kib: Option<u64>,
    agent_burst_hwm_kib: Option<u64>,
    agent_burst_rss_kib: Option<u64>,
    /// Tools that did not stop on the first SIGINT / at all (see bench.sh's stop_bg), and
    /// throughput floods that did not finish (stuck_<mode>).
    stop_resent: Vec<String>,
    stop_killed: Vec<String>,
    stuck: Vec<String>,
    bpftrace_burst_hwm_kib: Option<u64>,
    binary_bytes: u64,
    bpftrace_version: Option<String>,
    bpftrace_unavailable: Option<String>,
}

impl Result_ {
    fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
        match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
    fn throughput_ratio(&self) -> Option<f64> {
        self.ratio_watch
    }
    fn throughput_ratio_kprobe(&self) -> Option<f64> {
        self.ratio_kprobe
    }
    fn throughput_ratio_bpftrace(&self) -> Option<f64> {
        self.ratio_bpftrace
    }
    fn attach_speedup(&self) -> Option<f64> {
        Self::ratio(self.attach_ms_bpftrace, self.attach_ms)
    }
    /// The method the top-level libbpf numbers are for: watch's default (what `attach_ms`
    /// measured), else the first method the floor loader attached with.
    fn default_method(&self) -> Option<&str> {
        self.attach_method.as_deref().or_else(|| {
            self.attach_by_method
                .iter()
                .find(|(_, m)| m.libbpf_ms.is_some())
                .map(|(name, _)| name.as_str())
        })
    }
    fn attach_ms_libbpf(&self) -> Option<f64> {
        self.attach_by_method.get(self.default_method()?)?.libbpf_ms
    }
    /// watch's attach time over the floor's, same method: how far above the floor watch is.
    fn attach_ratio_to_libbpf(&self) -> Option<f64> {
        Self::ratio(self.attach_ms, self.attach_ms_libbpf())
    }
}

/// Attach times of one method: medians over the repetitions.
#[derive(Debug, Default, PartialEq)]
struct MethodAttach {
    /// First runs: no cache of the kernel's BTF facts.
    watch_ms: Option<f64>,
    watch_runs: usize,
    /// Later runs: the cache the first run wrote.
    watch_warm_ms: Option<f64>,
    libbpf_ms: Option<f64>,
    libbpf_runs: usize,
    /// The floor loader's last message when it did not get ready with this method.
    libbpf_failed: Option<String>,
    /// netpoll_setup events the floor reported for one configfs enable (burst section):
    /// its programs run, not only attach.
    libbpf_setup_events: Option<u64>,
}

impl MethodAttach {
    fn ratio_to_libbpf(&self) -> Option<f64> {
        Result_::ratio(self.watch_ms, self.libbpf_ms)
    }
    fn warm_ratio_to_libbpf(&self) -> Option<f64> {
        Result_::ratio(self.watch_warm_ms, self.libbpf_ms)
    }
}

/// The methods every report names, with nulls where a kernel gave no number.
const METHODS: [&str; 2] = ["fentry", "kprobe"];

/// `attach_watch METHOD MS`, `attach_libbpf METHOD MS`, `attach_libbpf_failed METHOD
/// REASON` and `libbpf_setup_events METHOD N` lines: per method, the medians and how many
/// runs made them. fentry and kprobe
/// are always present; another method appears when a line names it.
fn attach_by_method(lines: &[(String, String)]) -> BTreeMap<String, MethodAttach> {
    // Per method: watch's first runs, the floor's, watch's later (cache warm) runs.
    type Times = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut times: BTreeMap<String, Times> = METHODS
        .iter()
        .map(|m| (m.to_string(), Default::default()))
        .collect();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in lines {
        let (method, rest) = v.split_once(' ').unwrap_or((v.as_str(), ""));
        if method.is_empty() {
            continue;
        }
        match k.as_str() {
            "attach_watch" | "attach_libbpf" | "attach_watch_warm" => {
                let Ok(ms) = rest.trim().parse::<f64>() else {
                    continue;
                };
                let t = times.entry(method.to_string()).or_default();
                match k.as_str() {
                    "attach_watch" => &mut t.0,
                    "attach_libbpf" => &mut t.1,
                    _ => &mut t.2,
                }
                .push(ms);
            }
            "attach_libbpf_failed" => {
                times.entry(method.to_string()).or_default();
                failed.insert(method.to_string(), rest.trim().to_string());
            }
            "libbpf_setup_events" => {
                if let Ok(n) = rest.trim().parse() {
                    times.entry(method.to_string()).or_default();
                    events.insert(method.to_string(), n);
                }
            }
            _ => {}
        }
    }
    times
        .into_iter()
        .map(|(method, (watch, libbpf, warm))| {
            let libbpf_failed = failed.remove(&method).filter(|_| libbpf.is_empty());
            let m = MethodAttach {
                watch_runs: watch.len(),
                watch_ms: median(watch),
                watch_warm_ms: median(warm),
                libbpf_runs: libbpf.len(),
                libbpf_ms: median(libbpf),
                libbpf_failed,
                libbpf_setup_events: events.remove(&method),
            };
            (method, m)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Traced/untraced ratios per mode, each traced flood against the mean of the untraced
/// floods right before and after it (the script interleaves them): host load drifts over a
/// run, and a neighbour comparison cancels most of the drift. Returns the median per mode
/// and the number of traced floods that had an untraced neighbour.
fn neighbour_ratios(lines: &[(String, String)]) -> (BTreeMap<String, f64>, usize) {
    let floods: Vec<(&str, f64)> = lines
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("rate_")?, v.parse().ok()?)))
        .filter(|(m, _)| *m != "serial_only")
        .collect();
    let mut per_mode: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut n = 0;
    for (i, (mode, rate)) in floods.iter().enumerate() {
        if *mode == "none" {
            continue;
        }
        let before = floods[..i]
            .iter()
            .rev()
            .take_while(|(m, _)| *m != *mode)
            .find(|(m, _)| *m == "none");
        let after = floods[i + 1..]
            .iter()
            .take_while(|(m, _)| *m != *mode)
            .find(|(m, _)| *m == "none");
        let base: Vec<f64> = [before, after]
            .into_iter()
            .flatten()
            .map(|(_, r)| *r)
            .collect();
        if base.is_empty() {
            continue;
        }
        let base = base.iter().sum::<f64>() / base.len() as f64;
        if base > 0.0 {
            per_mode
                .entry(mode.to_string())
                .or_default()
                .push(rate / base);
            n += 1;
        }
    }
    (
        per_mode
            .into_iter()
            .filter_map(|(m, v)| Some((m, median(v)?)))
            .collect(),
        n,
    )
}

/// `bpf_<mode> RUN_NS RUNS FLOOD_MS` lines: per mode, the median share of the flood's
/// wall time spent in the tracing programs and the median runs per flood.
fn bpf_shares(lines: &[(String, String)]) -> BTreeMap<String, (f64, f64)> {
    let mut per_mode: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (k, v) in lines {
        let Some(mode) = k.strip_prefix("bpf_") else {
            continue;
        };
        let n: Vec<f64> = v
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [ns, runs, ms] = n[..]
            && ms > 0.0
        {
            let e = per_mode.entry(mode.to_string()).or_default();
            e.0.push(ns / (ms * 1e6));
            e.1.push(runs);
        }
    }
    per_mode
        .into_iter()
        .filter_map(|(m, (share, runs))| Some((m, (median(share)?, median(runs)?))))
        .collect()
}

fn reduce(lines: &[(String, String)], binary_bytes: u64) -> Result_ {
    let (ratios, ratio_rounds) = neighbour_ratios(lines);
    let all_str = |key: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let floats = |key: &str| -> Vec<f64> {
        lines
            .iter()
            .filter(|(k, _)| k == key)
            .filter_map(|(_, v)| v.parse().ok())
            .collect()
    };
    let last_u64 = |key: &str| {
        lines
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
    };
    let last_str = |key: &str| {
        lines
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    Result_ {
        attach_ms: median(floats("attach_ms")),
        attach_ms_warm: median(floats("attach_ms_warm")),
        attach_ms_self: median(floats("attach_ms_self")),
        attach_ms_bpftrace: median(floats("attach_ms_bpftrace")),
        attach_runs: floats("attach_ms").len(),
        attach_method: last_str("attach_method"),
        attach_by_method: attach_by_method(lines),
        rate_none: median(floats("rate_none")),
        ratio_watch: ratios.get("watch").copied(),
        ratio_kprobe: ratios.get("kprobe").copied(),
        ratio_bpftrace: ratios.get("bpftrace").copied(),
        ratio_watch_noslow: ratios.get("watch_noslow").copied(),
        ratio_rounds,
        bpf_share: bpf_shares(lines),
        rate_watch: median(floats("rate_watch")),
        rate_kprobe: median(floats("rate_kprobe")),
        rate_watch_noslow: median(floats("rate_watch_noslow")),
        poll_lines_watch: median(floats("poll_lines_watch")),
        rate_bpftrace: median(floats("rate_bpftrace")),
        rate_serial_only: median(floats("rate_serial_only")),
        setups: last_u64("setups"),
        setups_ok: last_u64("setups_ok"),
        events: last_u64("events"),
        lost: last_u64("lost"),
        events_bpftrace: last_u64("events_bpftrace"),
        lost_bpftrace: last_u64("lost_bpftrace"),
        watch_idle_hwm_kib: last_u64("watch_idle_hwm_kib"),
        watch_idle_rss_kib: last_u64("watch_idle_rss_kib"),
        watch_burst_hwm_kib: last_u64("watch_burst_hwm_kib"),
        watch_burst_rss_kib: last_u64("watch_burst_rss_kib"),
        agent_idle_rss_kib: last_u64("agent_idle_rss_kib"),
        agent_idle_hwm_kib: last_u64("agent_idle_hwm_kib"),
        watch_idle_heap_kib: last_u64("watch_idle_heap_kib"),
        agent_idle_heap_kib: last_u64("agent_idle_heap_kib"),
        agent_burst_hwm_kib: last_u64("agent_burst_hwm_kib"),
        agent_burst_rss_kib: last_u64("agent_burst_rss_kib"),
        stop_resent: all_str("stop_resent"),
        stop_killed: all_str("stop_killed"),
        stuck: lines
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("stuck_").map(str::to_string))
            .collect(),
        bpftrace_burst_hwm_kib: last_u64("bpftrace_burst_hwm_kib"),
        binary_bytes,
        bpftrace_version: last_str("bpftrace_version"),
        bpftrace_unavailable: last_str("bpftrace_unavailable"),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn opt_u(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn table(results: &BTreeMap<String, Result_>, labels: &BTreeMap<String, &str>) -> String {
    let mut s = String::new();
    s.push_str(
        "\nratios first (QEMU/TCG: absolute times are emulation times, not hardware times)\n",
    );
    s.push_str(&format!(
        "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14} {:>14} {:>9} {:>9}\n",
        "kernel",
        "attach x",
        "watch ÷",
        "tput",
        "tput",
        "tput",
        "events/setups",
        "bpftrace",
        "agent",
        "binary"
    ));
    s.push_str(&format!(
        "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14} {:>14} {:>9} {:>9}\n",
        "",
        "vs bpftr.",
        "libbpf",
        "watch",
        "kprobe",
        "bpftrace",
        "(lost)",
        "ev. (lost)",
        "idle KiB",
        "MiB"
    ));
    for (release, r) in results {
        s.push_str(&format!(
            "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14} {:>14} {:>9} {:>9.1}\n",
            labels.get(release).copied().unwrap_or("?"),
            opt(r.attach_speedup(), 2),
            opt(r.attach_ratio_to_libbpf(), 2),
            opt(r.throughput_ratio(), 3),
            opt(r.throughput_ratio_kprobe(), 3),
            opt(r.throughput_ratio_bpftrace(), 3),
            format!(
                "{}/{} ({})",
                opt_u(r.events),
                opt_u(r.setups),
                opt_u(r.lost)
            ),
            format!(
                "{}/{} ({})",
                opt_u(r.events_bpftrace),
                opt_u(r.setups),
                opt_u(r.lost_bpftrace)
            ),
            opt_u(r.agent_idle_rss_kib),
            r.binary_bytes as f64 / 1048576.0,
        ));
    }
    s.push_str("\nabsolute values (emulated)\n");
    s.push_str(&format!(
        "{:<6} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}\n",
        "kernel",
        "method",
        "attach ms",
        "libbpf ms",
        "bpftr. ms",
        "msg/s",
        "watch",
        "kprobe",
        "bpftr.",
        "serial",
        "watch KiB",
        "after bst",
        "agent bst"
    ));
    for (release, r) in results {
        s.push_str(&format!(
            "{:<6} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}\n",
            labels.get(release).copied().unwrap_or("?"),
            r.attach_method.as_deref().unwrap_or("-"),
            opt(r.attach_ms, 1),
            opt(r.attach_ms_libbpf(), 1),
            opt(r.attach_ms_bpftrace, 1),
            opt(r.rate_none, 0),
            opt(r.rate_watch, 0),
            opt(r.rate_kprobe, 0),
            opt(r.rate_bpftrace, 0),
            opt(r.rate_serial_only, 0),
            opt_u(r.watch_idle_hwm_kib),
            opt_u(r.watch_burst_hwm_kib),
            opt_u(r.agent_burst_hwm_kib),
        ));
        if let Some(why) = &r.bpftrace_unavailable {
            s.push_str(&format!("       bpftrace unavailable: {why}\n"));
        }
        s.push_str(&format!(
            "       attach ms by method, watch / libbpf (watch ÷ libbpf): {}\n",
            by_method_line(r)
        ));
        s.push_str(&format!(
            "       RSS now/peak KiB: watch idle {}/{} (heap {}), after burst {}/{}; agent idle {}/{} (heap {}), after burst {}/{}\n",
            opt_u(r.watch_idle_rss_kib),
            opt_u(r.watch_idle_hwm_kib),
            opt_u(r.watch_idle_heap_kib),
            opt_u(r.watch_burst_rss_kib),
            opt_u(r.watch_burst_hwm_kib),
            opt_u(r.agent_idle_rss_kib),
            opt_u(r.agent_idle_hwm_kib),
            opt_u(r.agent_idle_heap_kib),
            opt_u(r.agent_burst_rss_kib),
            opt_u(r.agent_burst_hwm_kib),
        ));
        for (mode, (share, runs)) in &r.bpf_share {
            s.push_str(&format!(
                "       {mode}: tracing programs ran {runs:.0} times per flood, {:.4}% of its time\n",
                share * 100.0
            ));
        }
        if !r.stop_resent.is_empty() || !r.stop_killed.is_empty() || !r.stuck.is_empty() {
            s.push_str(&format!(
                "       needed a second SIGINT: [{}]; SIGKILL: [{}]; floods stuck: [{}]\n",
                r.stop_resent.join(" "),
                r.stop_killed.join(" "),
                r.stuck.join(" ")
            ));
        }
    }
    s
}

/// `fentry 1431.0 / 310.2 (4.61x); kprobe ...`, with the floor's failure where it had one.
fn by_method_line(r: &Result_) -> String {
    r.attach_by_method
        .iter()
        .map(|(method, m)| match (&m.libbpf_failed, m.libbpf_ms) {
            (Some(why), None) => format!("{method} {} / failed: {why}", opt(m.watch_ms, 1)),
            _ => format!(
                "{method} {} / {} ({}x; cache warm {} ms, {}x)",
                opt(m.watch_ms, 1),
                opt(m.libbpf_ms, 1),
                opt(m.ratio_to_libbpf(), 2),
                opt(m.watch_warm_ms, 1),
                opt(m.warm_ratio_to_libbpf(), 2)
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"fentry": {"watch_ms": .., "libbpf_ms": .., "ratio_to_libbpf": .., ...}, "kprobe": {..}}`
fn by_method_json(by_method: &BTreeMap<String, MethodAttach>) -> String {
    let f = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.4}"));
    let methods: Vec<String> = by_method
        .iter()
        .map(|(method, m)| {
            format!(
                "{}: {{\"watch_ms\": {}, \"libbpf_ms\": {}, \"ratio_to_libbpf\": {}, \"watch_runs\": {}, \"libbpf_runs\": {}, \"libbpf_error\": {}, \"libbpf_setup_events\": {}, \"watch_warm_ms\": {}, \"warm_ratio_to_libbpf\": {}}}",
                json_str(method),
                f(m.watch_ms),
                f(m.libbpf_ms),
                f(m.ratio_to_libbpf()),
                m.watch_runs,
                m.libbpf_runs,
                m.libbpf_failed.as_deref().map_or("null".into(), json_str),
                m.libbpf_setup_events.map_or("null".into(), |n| n.to_string()),
                f(m.watch_warm_ms),
                f(m.warm_ratio_to_libbpf()),
            )
        })
        .collect();
    format!("{{{}}}", methods.join(", "))
}

fn to_json(results: &BTreeMap<String, Result_>) -> String {
    let f = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.4}"));
    let u = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
    let st = |v: &Option<String>| v.as_deref().map_or("null".into(), json_str);
    let strs = |v: &[String]| {
        format!(
            "[{}]",
            v.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let mut out = String::from("{\n");
    let n = results.len();
    for (i, (release, r)) in results.iter().enumerate() {
        let fields = [
            ("attach_ms", f(r.attach_ms)),
            ("attach_ms_bpftrace", f(r.attach_ms_bpftrace)),
            ("attach_speedup", f(r.attach_speedup())),
            ("attach_ms_self_reported", f(r.attach_ms_self)),
            ("attach_runs", r.attach_runs.to_string()),
            ("attach_method", st(&r.attach_method)),
            ("attach_ms_libbpf", f(r.attach_ms_libbpf())),
            ("attach_ratio_to_libbpf", f(r.attach_ratio_to_libbpf())),
            ("attach_ms_warm", f(r.attach_ms_warm)),
            (
                "attach_ratio_warm_to_libbpf",
                f(Result_::ratio(r.attach_ms_warm, r.attach_ms_libbpf())),
            ),
            ("attach_by_method", by_method_json(&r.attach_by_method)),
            ("throughput_ratio", f(r.throughput_ratio())),
            ("throughput_ratio_kprobe", f(r.throughput_ratio_kprobe())),
            (
                "throughput_ratio_bpftrace",
                f(r.throughput_ratio_bpftrace()),
            ),
            (
                "throughput_ratio_no_slow_poll_events",
                f(r.ratio_watch_noslow),
            ),
            ("throughput_ratio_floods", r.ratio_rounds.to_string()),
            ("poll_lines_per_flood", f(r.poll_lines_watch)),
            (
                "bpf_time_share_watch",
                f(r.bpf_share.get("watch").map(|x| x.0)),
            ),
            (
                "bpf_time_share_kprobe",
                f(r.bpf_share.get("kprobe").map(|x| x.0)),
            ),
            (
                "bpf_time_share_bpftrace",
                f(r.bpf_share.get("bpftrace").map(|x| x.0)),
            ),
            (
                "bpf_runs_per_flood_watch",
                f(r.bpf_share.get("watch").map(|x| x.1)),
            ),
            (
                "bpf_runs_per_flood_kprobe",
                f(r.bpf_share.get("kprobe").map(|x| x.1)),
            ),
            (
                "bpf_runs_per_flood_bpftrace",
                f(r.bpf_share.get("bpftrace").map(|x| x.1)),
            ),
            ("msgs_per_sec_untraced", f(r.rate_none)),
            ("msgs_per_sec_watch", f(r.rate_watch)),
            ("msgs_per_sec_kprobe", f(r.rate_kprobe)),
            ("msgs_per_sec_bpftrace", f(r.rate_bpftrace)),
            ("msgs_per_sec_watch_noslow", f(r.rate_watch_noslow)),
            ("msgs_per_sec_serial_only", f(r.rate_serial_only)),
            ("setups", u(r.setups)),
            ("setups_ok", u(r.setups_ok)),
            ("events", u(r.events)),
            ("lost", u(r.lost)),
            ("events_bpftrace", u(r.events_bpftrace)),
            ("lost_bpftrace", u(r.lost_bpftrace)),
            ("watch_idle_rss_kib", u(r.watch_idle_rss_kib)),
            ("watch_idle_hwm_kib", u(r.watch_idle_hwm_kib)),
            ("watch_burst_rss_kib", u(r.watch_burst_rss_kib)),
            ("watch_burst_hwm_kib", u(r.watch_burst_hwm_kib)),
            ("agent_idle_rss_kib", u(r.agent_idle_rss_kib)),
            ("agent_idle_hwm_kib", u(r.agent_idle_hwm_kib)),
            ("watch_idle_heap_kib", u(r.watch_idle_heap_kib)),
            ("agent_idle_heap_kib", u(r.agent_idle_heap_kib)),
            ("agent_burst_rss_kib", u(r.agent_burst_rss_kib)),
            ("agent_burst_hwm_kib", u(r.agent_burst_hwm_kib)),
            ("bpftrace_burst_rss_kib", u(r.bpftrace_burst_hwm_kib)),
            ("binary_bytes", r.binary_bytes.to_string()),
            ("bpftrace_version", st(&r.bpftrace_version)),
            ("bpftrace_unavailable", st(&r.bpftrace_unavailable)),
            ("stopped_by_second_sigint", strs(&r.stop_resent)),
            ("stopped_by_sigkill", strs(&r.stop_killed)),
            ("stuck_floods", strs(&r.stuck)),
        ];
        out.push_str(&format!("  {}: {{\n", json_str(release)));
        for (j, (k, v)) in fields.iter().enumerate() {
            out.push_str(&format!(
                "    \"{k}\": {v}{}\n",
                if j + 1 < fields.len() { "," } else { "" }
            ));
        }
        out.push_str(&format!("  }}{}\n", if i + 1 < n { "," } else { "" }));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_medians_and_ratios() {
        let console = "x\nNPT-BENCH attach_ms 10.0\n[ 1.0] NPT-BENCH attach_ms 30.0\nNPT-BENCH attach_ms 20.0\n\
                       NPT-BENCH attach_ms_bpftrace 100\nNPT-BENCH rate_none 1000\nNPT-BENCH rate_watch 990\n\
                       NPT-BENCH events 5\nNPT-BENCH attach_method fentry\nNPT-BENCH bpftrace_unavailable a \"b\"\n";
        let r = reduce(&parse(console), 7);
        assert_eq!(r.attach_ms, Some(20.0));
        assert_eq!(r.attach_speedup(), Some(5.0));
        assert_eq!(r.throughput_ratio(), Some(0.99));
        assert_eq!(r.throughput_ratio_bpftrace(), None);
        assert_eq!(r.attach_method.as_deref(), Some("fentry"));
        let json = to_json(&BTreeMap::from([("6.1.0".to_string(), r)]));
        assert!(json.contains("\"attach_ms\": 20.0000,"), "{json}");
        assert!(json.contains("\"lost\": null,"), "{json}");
        assert!(
            json.contains("\"bpftrace_unavailable\": \"a \\\"b\\\"\""),
            "{json}"
        );
    }

    #[test]
    fn traced_floods_compare_with_their_untraced_neighbours() {
        // Host load halves every rate in the second round: ratios of medians would be
        // skewed by it, neighbour ratios are not.
        let console = "NPT-BENCH rate_serial_only 5000\nNPT-BENCH rate_none 1000\nNPT-BENCH rate_watch 990\n\
                       NPT-BENCH rate_none 1000\nNPT-BENCH rate_kprobe 900\nNPT-BENCH rate_none 500\n\
                       NPT-BENCH rate_watch 495\nNPT-BENCH rate_none 500\nNPT-BENCH rate_kprobe 450\n";
        let (ratios, n) = neighbour_ratios(&parse(console));
        assert_eq!(n, 4);
        assert!((ratios["watch"] - 0.99).abs() < 1e-9, "{ratios:?}");
        // 900 / mean(1000, 500), then 450 / 500 (no untraced flood after it).
        assert!(
            (ratios["kprobe"] - (1.2 + 0.9) / 2.0).abs() < 1e-9,
            "{ratios:?}"
        );
        assert!(!ratios.contains_key("serial_only"));
    }

    #[test]
    fn bpf_run_time_share_per_mode() {
        let console = "NPT-BENCH bpf_watch 1000000 4 1000.0\nNPT-BENCH bpf_watch 3000000 2 1000.0\n\
                       NPT-BENCH bpf_watch 2000000 3 1000.0\nNPT-BENCH bpf_kprobe bad\n";
        let shares = bpf_shares(&parse(console));
        assert_eq!(shares["watch"], (0.002, 3.0));
        assert!(!shares.contains_key("kprobe"));
    }

    #[test]
    fn escalations_are_kept() {
        let console = "NPT-BENCH stop_resent bpftrace\nNPT-BENCH stuck_kprobe 1\n";
        let r = reduce(&parse(console), 0);
        assert_eq!(r.stop_resent, ["bpftrace"]);
        assert_eq!(r.stuck, ["kprobe"]);
        assert!(
            to_json(&BTreeMap::from([("k".to_string(), r)]))
                .contains("\"stuck_floods\": [\"kprobe\"]")
        );
    }

    #[test]
    fn attach_per_method_against_the_libbpf_floor() {
        let console = "NPT-BENCH attach_ms 1000\nNPT-BENCH attach_method fentry\nNPT-BENCH attach_watch fentry 1000\n\
                       NPT-BENCH attach_watch kprobe 900\nNPT-BENCH attach_libbpf fentry 250\n\
                       NPT-BENCH attach_libbpf kprobe 300\nNPT-BENCH attach_ms 3000\nNPT-BENCH attach_watch fentry 3000\n\
                       NPT-BENCH attach_watch kprobe 1100\nNPT-BENCH attach_libbpf fentry 150\n\
                       NPT-BENCH attach_libbpf_failed kprobe attaching poll_kprobe: No such file\n\
                       NPT-BENCH attach_ms 2000\nNPT-BENCH attach_watch fentry 2000\nNPT-BENCH attach_libbpf fentry 200\n\
                       NPT-BENCH attach_libbpf bogus\nNPT-BENCH libbpf_setup_events fentry 1\n\
                       NPT-BENCH attach_watch_warm fentry 300\nNPT-BENCH attach_watch_warm fentry 260\n";
        let r = reduce(&parse(console), 0);
        let fentry = &r.attach_by_method["fentry"];
        // Later runs (cache warm) apart from first runs, over the same floor.
        assert_eq!(
            (fentry.watch_warm_ms, fentry.warm_ratio_to_libbpf()),
            (Some(280.0), Some(1.4))
        );
        assert_eq!(
            (
                fentry.watch_ms,
                fentry.libbpf_ms,
                fentry.watch_runs,
                fentry.libbpf_runs
            ),
            (Some(2000.0), Some(200.0), 3, 3)
        );
        assert_eq!(fentry.ratio_to_libbpf(), Some(10.0));
        // One kprobe failure among successes is not reported as the method's failure.
        let kprobe = &r.attach_by_method["kprobe"];
        assert_eq!(
            (
                kprobe.watch_ms,
                kprobe.libbpf_ms,
                kprobe.libbpf_runs,
                kprobe.libbpf_failed.as_deref()
            ),
            (Some(1000.0), Some(300.0), 1, None)
        );
        assert!(!r.attach_by_method.contains_key("bogus"));
        // Top level: watch's default method (fentry), attach_ms over libbpf's fentry median.
        assert_eq!(r.attach_ms_libbpf(), Some(200.0));
        assert_eq!(r.attach_ratio_to_libbpf(), Some(10.0));
        let json = to_json(&BTreeMap::from([("6.12".to_string(), r)]));
        assert!(json.contains("\"attach_ms_libbpf\": 200.0000,"), "{json}");
        assert!(
            json.contains("\"attach_ratio_to_libbpf\": 10.0000,"),
            "{json}"
        );
        assert!(json.contains("\"attach_by_method\": {\"fentry\": {\"watch_ms\": 2000.0000, \"libbpf_ms\": 200.0000, \"ratio_to_libbpf\": 10.0000, \"watch_runs\": 3, \"libbpf_runs\": 3, \"libbpf_error\": null, \"libbpf_setup_events\": 1, \"watch_warm_ms\": 280.0000, \"warm_ratio_to_libbpf\": 1.4000}, \"kprobe\": {\"watch_ms\": 1000.0000, \"libbpf_ms\": 300.0000"), "{json}");
    }

    #[test]
    fn a_method_the_floor_never_attached_says_why_and_has_no_ratio() {
        // A kernel without fentry: watch falls back to kprobes, the floor's fentry fails.
        let console = "NPT-BENCH attach_ms 800\nNPT-BENCH attach_method kprobe\nNPT-BENCH attach_watch kprobe 800\n\
                       NPT-BENCH attach_libbpf_failed fentry loading the fentry programs: Invalid argument\n\
                       NPT-BENCH attach_libbpf kprobe 100\n";
        let r = reduce(&parse(console), 0);
        let fentry = &r.attach_by_method["fentry"];
        assert_eq!(
            fentry.libbpf_failed.as_deref(),
            Some("loading the fentry programs: Invalid argument")
        );
        assert_eq!((fentry.watch_ms, fentry.ratio_to_libbpf()), (None, None));
        assert_eq!(r.attach_ratio_to_libbpf(), Some(8.0));
        assert!(
            by_method_line(&r).contains("fentry - / failed: loading the fentry programs"),
            "{}",
            by_method_line(&r)
        );
        let json = to_json(&BTreeMap::from([("5.4".to_string(), r)]));
        assert!(json.contains("\"libbpf_error\": \"loading the fentry programs: Invalid argument\", \"libbpf_setup_events\": null, \"watch_warm_ms\": null, \"warm_ratio_to_libbpf\": null}"), "{json}");
    }

    #[test]
    fn no_attach_lines_give_nulls_for_both_methods() {
        let r = reduce(&[], 0);
        assert_eq!(
            r.attach_by_method.keys().collect::<Vec<_>>(),
            ["fentry", "kprobe"]
        );
        assert_eq!(
            (r.attach_ms_libbpf(), r.attach_ratio_to_libbpf()),
            (None, None)
        );
        let table = table(&BTreeMap::from([("k".to_string(), r)]), &BTreeMap::new());
        assert!(
            table.contains(
                "fentry - / - (-x; cache warm - ms, -x); kprobe - / - (-x; cache warm - ms, -x)"
            ),
            "{table}"
        );
    }

    #[test]
    fn median_of_even_count() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
