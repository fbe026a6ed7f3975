//! `cargo xtask fuzz [--time S] [--target NAME]...`: the cargo-fuzz targets of
//! netpoll-trace/fuzz/ (one per parser of untrusted input), each run for a bounded time
//! with bounded memory and a per-input timeout. Any crash, timeout or out-of-memory
//! fails the task, naming the input that caused it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::setup::toolchain;
use crate::{cache, process};

/// cargo-fuzz, pinned (`cargo xtask setup` installs it).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub struct Target {
    pub name: &'static str,
    /// Largest input tried: past what the parser takes (the HTTP head's 8 KiB limit), or a
    /// small BTF's size.
    max_len: u32,
}

/// Every target of netpoll-trace/fuzz/Cargo.toml.
pub const TARGETS: &[Target] = &[
    Target {
        name: "config",
        max_len: 8 << 10,
    },
    Target {
        name: "json_lines",
        max_len: 16 << 10,
    },
    Target {
        name: "btf",
        max_len: 64 << 10,
    },
    Target {
        name: "btf_archive",
        max_len: 64 << 10,
    },
    Target {
        name: "http_request",
        max_len: 12 << 10,
    },
    Target {
        name: "recorder_meta",
        max_len: 4 << 10,
    },
    Target {
        // A small module file and its base: the seed is under 1 KiB.
        name: "module_btf",
        max_len: 16 << 10,
    },
    Target {
        // Many datagrams a run: fragments of up to MAX_MESSAGE (16 KiB) from four senders.
        name: "netconsole",
        max_len: 64 << 10,
    },
];

/// One input slower than this is a hang (a parser of a few KiB takes milliseconds, even
/// under ASan on a loaded machine).
const INPUT_TIMEOUT_S: u32 = 10;
/// Memory of the whole fuzzing process: the largest thing a parser may build is the
/// archive reader's 256 MiB of decompressed tar (kernel/offsets/archive.rs), ASan on top.
const RSS_LIMIT_MB: u32 = 2048;
/// One allocation larger than this is a length field believed: none is legitimately larger
/// than the archive reader's output buffer (which doubles past 256 MiB).
const MALLOC_LIMIT_MB: u32 = 600;

pub struct Options {
    pub time_s: u64,
    /// Empty: every target.
    pub targets: Vec<String>,
}

/// How one target's run ended.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    Crash,
    Timeout,
    OutOfMemory,
    /// Ended otherwise (e.g. did not start); see the log.
    Failed,
}

struct Outcome {
    name: &'static str,
    verdict: Verdict,
    executions: u64,
    elapsed_s: f64,
    peak_rss_mb: u64,
    artifact: Option<PathBuf>,
    log: PathBuf,
}

pub fn target_names() -> Vec<&'static str> {
    TARGETS.iter().map(|t| t.name).collect()
}

/// Ok(false): a target failed (each failure already reported with its input).
pub fn run(opts: &Options) -> Result<bool> {
    let selected: Vec<&Target> = if opts.targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        opts.targets
            .iter()
            .map(|n| {
                TARGETS.iter().find(|t| t.name == n).with_context(|| {
                    format!(
                        "no fuzz target `{n}`; the targets are {}",
                        target_names().join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if opts.time_s == 0 {
        bail!("--time must be at least 1 second");
    }
    let root = cache::workspace_root();
    let out = root.join("target").join("fuzz");
    build(&root, &out, &selected)?;
    let bin_dir = out.join("x86_64-unknown-linux-gnu").join("release");
    // One target per core at a time: each fuzzer is one process on one core, so two cores
    // give every target its full time in half the wall time.
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(selected.len().max(1));
    let next = std::sync::Mutex::new(selected.iter().enumerate());
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let Some((i, t)) = next.lock().unwrap_or_else(|e| e.into_inner()).next() else {
                        break;
                    };
                    println!("fuzz: {} for {} s ...", t.name, opts.time_s);
                    let o = run_one(t, &root, &out, &bin_dir, opts.time_s);
                    if let Ok(o) = &o {
                        println!("fuzz: {}", row(o));
                    }
                    done.lock().unwrap_or_else(|e| e.into_inner()).push((i, o));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    let outcomes = done
        .into_iter()
        .map(|(_, o)| o)
        .collect::<Result<Vec<Outcome>>>()?;
    println!(
        "\n{:<14} {:>12} {:>9} {:>10} {:>8}  result",
        "target", "executions", "seconds", "exec/s", "RSS MB"
    );
    for o in &outcomes {
        println!("{}", row(o));
    }
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::Ok)
        .collect();
    for o in &failed {
        match &o.artifact {
            Some(a) => eprintln!(
                "fuzz: {} failed ({}); input {}; reproduce with `{} {}`; log {}",
                o.name,
                verdict_name(&o.verdict),
                a.display(),
                bin_dir.join(o.name).display(),
                a.display(),
                o.log.display()
            ),
            None => eprintln!(
                "fuzz: {} failed ({}); log {}",
                o.name,
                verdict_name(&o.verdict),
                o.log.display()
            ),
        }
    }
    Ok(failed.is_empty())
}

/// The targets, instrumented (ASan, coverage) with debug assertions on, so that an
/// arithmetic overflow is found as a panic rather than wrapping silently as in release.
fn build(root: &Path, out: &Path, targets: &[&Target]) -> Result<()> {
    println!(
        "fuzz: building {} target(s) with cargo-fuzz ({}, ASan)",
        targets.len(),
        toolchain::FUZZ_TOOLCHAIN
    );
    let mut cmd = nightly_cargo_fuzz();
    cmd.args(["build", "--debug-assertions", "--target-dir"])
        .arg(out)
        .current_dir(root.join("netpoll-trace"));
    if targets.len() == 1 {
        cmd.arg(targets[0].name);
    }
    process::run(&mut cmd)
        .context("building the fuzz targets (`cargo xtask setup` installs cargo-fuzz and nightly)")
}

/// `cargo fuzz` under the fuzz toolchain (`toolchain::FUZZ_TOOLCHAIN`), with the outer (stable) build's compiler
/// kept out, as netpoll-trace/build.rs does for its eBPF build.
fn nightly_cargo_fuzz() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain::FUZZ_TOOLCHAIN, "cargo", "fuzz"])
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd
}

/// One target's line of the table (also printed as each finishes).
fn row(o: &Outcome) -> String {
    format!(
        "{:<14} {:>12} {:>9.1} {:>10.0} {:>8}  {}",
        o.name,
        o.executions,
        o.elapsed_s,
        o.executions as f64 / o.elapsed_s.max(0.001),
        o.peak_rss_mb,
        describe(o)
    )
}

fn run_one(t: &Target, root: &Path, out: &Path, bin_dir: &Path, time_s: u64) -> Result<Outcome> {
    // New inputs go to the first directory (under target/); the checked-in seeds stay as they are.
    let corpus = out.join("corpus").join(t.name);
    let seeds = root
        .join("netpoll-trace")
        .join("fuzz")
        .join("seeds")
        .join(t.name);
    let artifacts = out.join("artifacts").join(t.name);
    let logs = out.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        cache::create_dir(d)?;
    }
    let log = logs.join(format!("{}.log", t.name));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let bin = bin_dir.join(t.name);
    let mut cmd = Command::new(&bin);
    cmd.arg(&corpus)
        .arg(&seeds)
        .arg(format!("-max_total_time={time_s}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
        .arg(format!("-max_len={}", t.max_len))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        // The tool's own panics abort with a stack; leaks are not what is looked for.
        .env("ASAN_OPTIONS", "detect_leaks=0:detect_odr_violation=0")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("running {} (was it built?)", bin.display()))?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let stats = Stats::parse(&text);
    let verdict = if status.success() {
        Verdict::Ok
    } else {
        verdict_of(&text)
    };
    Ok(Outcome {
        name: t.name,
        verdict,
        executions: stats.executions,
        elapsed_s,
        peak_rss_mb: stats.peak_rss_mb,
        artifact: stats.artifact,
        log,
    })
}

/// What libFuzzer's output says about the run.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    executions: u64,
    peak_rss_mb: u64,
    artifact: Option<PathBuf>,
}

impl Stats {
    fn parse(log: &str) -> Self {
        let mut s = Stats::default();
        for line in log.lines() {
            if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
                s.executions = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("stat::peak_rss_mb:") {
                s.peak_rss_mb = v.trim().parse().unwrap_or(0);
            } else if let Some(i) = line.find("Test unit written to ") {
                s.artifact = Some(PathBuf::from(
                    line[i + "Test unit written to ".len()..].trim(),
                ));
            } else if let Some(n) = line
                .strip_prefix('#')
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
            {
                // Progress lines (`#12345 pulse ...`): all a crashed run prints (no final stats).
                s.executions = s.executions.max(n);
            }
        }
        s
    }
}

fn verdict_of(log: &str) -> Verdict {
    if log.contains("ERROR: libFuzzer: timeout") {
        Verdict::Timeout
    } else if log.contains("ERROR: libFuzzer: out-of-memory")
        || log.contains("allocation-size-too-big")
    {
        Verdict::OutOfMemory
    } else if log.contains("ERROR: libFuzzer: deadly signal")
        || log.contains("ERROR: AddressSanitizer")
        || log.contains("panicked at")
        || log.contains("ERROR: libFuzzer: fuzz target exited")
    {
        Verdict::Crash
    } else {
        Verdict::Failed
    }
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Crash => "crash",
        Verdict::Timeout => "timeout",
        Verdict::OutOfMemory => "out of memory",
        Verdict::Failed => "failed",
    }
}

fn describe(o: &Outcome) -> String {
    match (&o.verdict, &o.artifact) {
        (Verdict::Ok, _) => "ok".into(),
        (v, Some(a)) => format!("{} ({})", verdict_name(v), a.display()),
        (v, None) => format!("{} (see {})", verdict_name(v), o.log.display()),
    }
}

/// Installs the pinned cargo-fuzz unless it is there; true when it installed it.
pub fn ensure_cargo_fuzz() -> Result<bool> {
    let want = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let have =
        process::output(Command::new("cargo").args(["fuzz", "--version"])).unwrap_or_default();
    if have.trim() == want {
        return Ok(false);
    }
    let step = crate::progress::Step::start(format!("setup: installing {want} (a few minutes)"));
    process::run_appended(
        Command::new("cargo").args([
            "install",
            "--locked",
            "--force",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ]),
        &crate::setup::log_path()?,
    )
    .context("installing cargo-fuzz")?;
    step.done("installed");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_give_executions_and_memory() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10\n#65536\tpulse  cov: 40\nDone 812345 runs in 61 second(s)\nstat::number_of_executed_units: 812345\nstat::average_exec_per_sec:     13317\nstat::new_units_added:          120\nstat::slowest_unit_time_sec:    0\nstat::peak_rss_mb:              87\n";
        assert_eq!(
            Stats::parse(log),
            Stats {
                executions: 812345,
                peak_rss_mb: 87,
                artifact: None
            }
        );
        assert_eq!(verdict_of(log), Verdict::Failed);
    }

    #[test]
    fn a_crash_names_its_input_and_counts_what_ran() {
        let log = "#1024\tpulse  cov: 40\n#2048\tNEW    cov: 41\nthread '<unnamed>' panicked at netpoll-trace/src/kernel/btf.rs:12:5:\nattempt to add with overflow\n==1== ERROR: libFuzzer: deadly signal\nartifact_prefix='target/fuzz/artifacts/btf/'; Test unit written to target/fuzz/artifacts/btf/crash-da39a3ee\nBase64: AAAA\n";
        let s = Stats::parse(log);
        assert_eq!(s.executions, 2048);
        assert_eq!(
            s.artifact.as_deref(),
            Some(Path::new("target/fuzz/artifacts/btf/crash-da39a3ee"))
        );
        assert_eq!(verdict_of(log), Verdict::Crash);
        assert_eq!(
            verdict_of("==7== ERROR: libFuzzer: timeout after 10 seconds\n"),
            Verdict::Timeout
        );
        assert_eq!(
            verdict_of("==7== ERROR: libFuzzer: out-of-memory (malloc(4294967296))\n"),
            Verdict::OutOfMemory
        );
    }

    #[test]
    fn every_target_has_seeds_and_a_source() {
        let fuzz = cache::workspace_root().join("netpoll-trace").join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                fuzz.join("fuzz_targets")
                    .join(format!("{}.rs", t.name))
                    .is_file(),
                "{}",
                t.name
            );
            assert!(
                manifest.contains(&format!("name = \"{}\"", t.name)),
                "{}",
                t.name
            );
            let seeds = std::fs::read_dir(fuzz.join("seeds").join(t.name))
                .map(|d| d.count())
                .unwrap_or(0);
            assert!(seeds > 0, "no seeds for {}", t.name);
        }
    }
}
