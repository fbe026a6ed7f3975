//! Loads the embedded eBPF object, hands it this kernel's struct layout and
//! attaches its probes: fentry/fexit where the kernel has BPF trampolines,
//! kprobes otherwise, chosen at load time.

use std::{fmt, sync::OnceLock, time::Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapData, PerfEventArray},
    programs::{FEntry, FExit, KProbe, ProgramError},
};
use netpoll_trace_common::Config;


/// When start-up began (the first `stage` call).
static START: OnceLock<Instant> = OnceLock::new();

/// Start-up profile, at debug level (`RUST_LOG=netpoll_trace=debug`): milliseconds since
/// start-up began at each step. The lab benchmark reads these to say where the time to
/// "ready" goes under emulation, where no profiler runs.
pub(crate) fn stage(what: &str) {
    let start = *START.get_or_init(Instant::now);
    log::debug!("start-up: {what} at {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
}

/// The programs, built by build.rs from netpoll-trace-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpoll-trace-ebpf"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMethod {
    Fentry,
    Kprobe,
}

impl AttachMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
        }
    }
}

impl fmt::Display for AttachMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for with `--attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachChoice {
    /// fentry/fexit when the kernel supports them, else kprobes.
    Auto,
    Fentry,
    Kprobe,
}

/// One traced kernel function and its programs for each method; names live here
/// once, never as scattered literals.
pub struct Target {
    pub function: &'static str,
    pub kprobe: (&'static str, &'static str),
    pub fentry: (&'static str, &'static str),
    /// Set-up tracing is impossible without it; the poll statistics are optional.
    pub required: bool,
}

pub const TARGETS: [Target; 3] = [
    Target {
        function: "netpoll_setup",
        kprobe: ("netpoll_setup_entry", "netpoll_setup_exit"),
        fentry: ("netpoll_setup_fentry", "netpoll_setup_fexit"),
        required: true,
    },
    Target {
        function: "__netpoll_setup",
        kprobe: ("inner_netpoll_setup_entry", "inner_netpoll_setup_exit"),
        fentry: ("inner_netpoll_setup_fentry", "inner_netpoll_setup_fexit"),
        required: true,
    },
    Target {
        function: "netpoll_poll_dev",
        kprobe: ("poll_dev_entry", "poll_dev_exit"),
        fentry: ("poll_dev_fentry", "poll_dev_fexit"),
        required: false,
    },
];

/// The attached programs and their maps.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub setup_events: PerfEventArray<MapData>,
    pub poll_events: PerfEventArray<MapData>,
    pub method: AttachMethod,
    /// Log records of the programs (aya-log), forwarded to the userspace logger.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Why fentry was not used, when auto fell back to kprobes.
    pub fallback_reason: Option<String>,
    /// Functions attached to.
    pub attached: Vec<&'static str>,
    /// Optional functions that could not be attached, with the reason.
    pub skipped: Vec<(&'static str, String)>,
    /// Wall time from the start of `load_and_attach` to the last probe attached.
    pub attach_ms: f64,
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

/// Which TARGETS the kernel has: from its BTF when that lists every one (the parse is
/// kept for the struct offsets), else from /proc/kallsyms, which has the final word on
/// anything BTF does not show. Reading kallsyms is the slow path: the kernel formats
/// 120,000+ lines (measured natively ~100 ms against ~8 ms for our BTF parse; seconds
/// under TCG).
fn targets_present() -> Result<Vec<bool>> {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.function).collect();
    if let Some(present) = crate::btf_offsets::functions_present(&names)
        && present.iter().all(|p| *p)
    {
        stage("functions present (BTF)");
        return Ok(present);
    }
    let present = crate::kallsyms::functions_present(&names).context("reading /proc/kallsyms (are you root?)");
    stage("functions present (kallsyms)");
    present
}

/// Hands memory freed after start-up back to the kernel. Loading parses the kernel's BTF
/// (aya twice for fentry, we once for offsets: tens of MiB in small blocks); glibc keeps
/// freed blocks in its arenas, so without this they would stay in a long-running agent's
/// RSS for good.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Fails with `Unsupported` (exit 4) when the kernel lacks a function we must probe.
pub fn require_functions() -> Result<Vec<bool>> {
    stage("begin");
    // The tracer's enrichment reads kallsyms next; let that overlap everything below.
    crate::enrich::prefetch_symbols();
    let present = targets_present()?;
    let missing: Vec<&str> =
        TARGETS.iter().zip(&present).filter(|(t, p)| t.required && !**p).map(|(t, _)| t.function).collect();
    if !missing.is_empty() {
        bail!(Unsupported(format!(
            "this kernel has no {} (built without CONFIG_NETPOLL?); run `netpoll-trace check`",
            missing.join(", ")
        )));
    }
    Ok(present)
}

/// `present` is what `require_functions` returned.
pub fn load_and_attach(config: &Config, choice: AttachChoice, present: &[bool]) -> Result<Loaded> {
    let start = Instant::now();
    let (loaded, fallback_reason) = match choice {
        AttachChoice::Kprobe => (attach_all(config, AttachMethod::Kprobe, present)?, None),
        AttachChoice::Fentry => (attach_all(config, AttachMethod::Fentry, present)?, None),
        AttachChoice::Auto => match attach_all(config, AttachMethod::Fentry, present) {
            Ok(l) => (l, None),
            Err(e) => {
                log::info!("fentry unavailable, falling back to kprobes: {e:#}");
                (attach_all(config, AttachMethod::Kprobe, present)?, Some(format!("{e:#}")))
            }
        },
    };
    let attach_ms = start.elapsed().as_secs_f64() * 1e3;
    release_freed_memory();
    stage("attached; freed memory released");
    Ok(Loaded { fallback_reason, attach_ms, ..loaded })
}

fn attach_all(config: &Config, method: AttachMethod, present: &[bool]) -> Result<Loaded> {
    // The programs' log statements are switched off in the kernel unless the
    // userspace logger would show them (-v, -vv or RUST_LOG): quiet and cheap.
    let level: u8 = match log::max_level() {
        log::LevelFilter::Off => 0,
        log::LevelFilter::Error => 1,
        log::LevelFilter::Warn => 2,
        log::LevelFilter::Info => 3,
        log::LevelFilter::Debug => 4,
        log::LevelFilter::Trace => 5,
    };
    stage("loading the object");
    let mut ebpf = EbpfLoader::new().override_global("AYA_LOG_LEVEL", &level, true).load(EBPF_OBJECT).map_err(|e| {
        anyhow!("loading the eBPF object failed: {e}; run `netpoll-trace check` to see what this kernel lacks")
    })?;
    let mut cfg: Array<_, Config> =
        Array::try_from(ebpf.map_mut("CONFIG").ok_or_else(|| anyhow!("eBPF object has no CONFIG map"))?)?;
    cfg.set(0, *config, 0).context("writing struct offsets to the CONFIG map")?;
    stage("object loaded (aya parsed the kernel BTF in EbpfLoader::new)");

    let btf = match method {
        AttachMethod::Fentry if !std::path::Path::new(crate::btf_offsets::SYSFS_VMLINUX).exists() => {
            bail!("fentry needs the kernel's BTF and there is no {}", crate::btf_offsets::SYSFS_VMLINUX)
        }
        AttachMethod::Fentry => Some(fentry_btf()?),
        AttachMethod::Kprobe => None,
    };
    if btf.is_some() {
        stage("kernel BTF for fentry ready");
    }
    let mut attached = Vec::new();
    let mut skipped = Vec::new();
    for (t, present) in TARGETS.iter().zip(present) {
        if !t.required && !present {
            skipped.push((t.function, "not in /proc/kallsyms".to_string()));
            continue;
        }
        let result = match &btf {
            Some(btf) => attach_fentry(&mut ebpf, t, btf),
            None => attach_kprobe(&mut ebpf, t),
        };
        stage(&format!("{} {}", method, t.function));
        match result {
            Ok(()) => attached.push(t.function),
            Err(e) if !t.required => skipped.push((t.function, format!("{e:#}"))),
            Err(e) => return Err(e),
        }
    }
    let mut take = |name: &str| -> Result<PerfEventArray<MapData>> {
        let map = ebpf.take_map(name).ok_or_else(|| anyhow!("eBPF object has no {name} map"))?;
        Ok(PerfEventArray::try_from(map)?)
    };
    let setup_events = take("SETUP_EVENTS")?;
    let poll_events = take("POLL_EVENTS")?;
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn!("the programs' log records are unavailable: {e}");
            None
        }
    };
    Ok(Loaded { ebpf, setup_events, poll_events, method, logger, fallback_reason: None, attached, skipped, attach_ms: 0.0 })
}

/// The BTF `FEntry::load` looks the traced functions' type ids up in. When start-up read
/// those ids from the kernel's BTF (function presence), a small stand-in with the same ids
/// (`btf::function_index_blob`) instead of aya's second full parse of the kernel's BTF:
/// measured under TCG on 6.12, that parse alone took 220-560 ms of the time to ready.
/// The kernel attaches to whatever function its own BTF has at the id, so the ids must be
/// exact: they come from the same file moments earlier (the unit test pins the id
/// arithmetic; the lab's fallbacks scenario checks that fentry and kprobes see the same
/// set-ups). Without an index (no BTF at presence time), aya parses as before.
fn fentry_btf() -> Result<Btf> {
    if let Some(index) = crate::btf_offsets::take_function_index()
        && TARGETS.iter().all(|t| index.funcs.iter().any(|(n, _, _)| n == t.function))
    {
        let blob = crate::btf::function_index_blob(&index);
        return Btf::parse(&blob, aya::Endianness::default())
            .map_err(|e| anyhow!("building the fentry function index: {e}"));
    }
    Btf::from_sys_fs().map_err(|e| anyhow!("fentry needs /sys/kernel/btf/vmlinux: {e}"))
}

fn attach_kprobe(ebpf: &mut Ebpf, t: &Target) -> Result<()> {
    for (name, ret) in [(t.kprobe.0, false), (t.kprobe.1, true)] {
        let kind = if ret { "kretprobe" } else { "kprobe" };
        let prog: &mut KProbe = program(ebpf, name)?;
        prog.load().map_err(|e| program_error(kind, name, t.function, e))?;
        prog.attach(t.function, 0).map_err(|e| program_error(kind, name, t.function, e))?;
    }
    Ok(())
}

fn attach_fentry(ebpf: &mut Ebpf, t: &Target, btf: &Btf) -> Result<()> {
    let (entry, exit) = t.fentry;
    let prog: &mut FEntry = program(ebpf, entry)?;
    prog.load(t.function, btf).map_err(|e| program_error("fentry", entry, t.function, e))?;
    prog.attach().map_err(|e| program_error("fentry", entry, t.function, e))?;
    let prog: &mut FExit = program(ebpf, exit)?;
    prog.load(t.function, btf).map_err(|e| program_error("fexit", exit, t.function, e))?;
    prog.attach().map_err(|e| program_error("fexit", exit, t.function, e))?;
    Ok(())
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or_else(|| anyhow!("eBPF object has no program {name}"))?;
    prog.try_into().with_context(|| format!("program {name} has an unexpected type"))
}

/// One line naming the program and function; the verifier log only at debug level.
fn program_error(kind: &str, program: &str, function: &str, e: ProgramError) -> anyhow::Error {
    if let ProgramError::LoadError { io_error, verifier_log } = &e {
        log::debug!("verifier log for {program}:\n{verifier_log}");
        return anyhow!(
            "the kernel refused {kind} program {program} for {function}: {io_error} (RUST_LOG=debug shows the verifier log)"
        );
    }
    anyhow::Error::from(e).context(format!("attaching {kind} {program} to {function}"))
}
