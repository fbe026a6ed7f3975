//! Loads the embedded eBPF object, hands it this kernel's struct layout and
//! attaches its probes: fentry/fexit where the kernel has BPF trampolines,
//! kprobes otherwise, chosen at load time.

use std::{fmt, path::PathBuf, sync::OnceLock, time::Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapData, PerfEventArray},
    programs::{
        FEntry, FExit, KProbe, ProgramError,
        fentry::FEntryLinkId,
        fexit::FExitLinkId,
        kprobe::KProbeLinkId,
        links::{FdLink, PinnedLink},
    },
    util::KernelVersion,
};
use netpoll_trace_common::Config;

use crate::recorder;

/// Where the flight recorder lives and how the programs feed it.
pub struct RecorderPlan {
    pub dir: PathBuf,
    /// Capacity of the ring when the pins are created (an existing ring keeps its own).
    pub ring_size: u32,
    /// Pin the links too, so recording outlives this process.
    pub persist: bool,
    /// Programs whose links an earlier process pinned: they are recording into
    /// these maps already, so nothing is attached a second time.
    pub reuse_links: Vec<String>,
}


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
    /// Programs whose links are pinned in the recorder's directory (by us or reused).
    pub pinned_links: Vec<String>,
    /// Why --persist could not pin the links, when it could not.
    pub unpinnable: Option<String>,
    /// The probes are an earlier process's pinned links, not ours.
    pub reused: bool,
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
pub fn load_and_attach(
    config: &Config,
    choice: AttachChoice,
    present: &[bool],
    recorder: Option<&RecorderPlan>,
) -> Result<Loaded> {
    let start = Instant::now();
    let (loaded, fallback_reason) = match choice {
        _ if recorder.is_some_and(|r| !r.reuse_links.is_empty()) => (reuse_pinned(config, recorder.unwrap())?, None),
        AttachChoice::Kprobe => (attach_all(config, AttachMethod::Kprobe, present, recorder)?, None),
        AttachChoice::Fentry => (attach_all(config, AttachMethod::Fentry, present, recorder)?, None),
        AttachChoice::Auto => match attach_all(config, AttachMethod::Fentry, present, recorder) {
            Ok(l) => (l, None),
            Err(e) => {
                log::info!("fentry unavailable, falling back to kprobes: {e:#}");
                (attach_all(config, AttachMethod::Kprobe, present, recorder)?, Some(format!("{e:#}")))
            }
        },
    };
    let attach_ms = start.elapsed().as_secs_f64() * 1e3;
    release_freed_memory();
    stage("attached; freed memory released");
    Ok(Loaded { fallback_reason, attach_ms, ..loaded })
}

/// Loads the object (maps from the recorder's pins when there is one) and writes
/// the configuration; attaches nothing.
fn load(config: &Config, recorder: Option<&RecorderPlan>) -> Result<Ebpf> {
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
    let mut loader = EbpfLoader::new();
    loader.override_global("AYA_LOG_LEVEL", &level, true);
    if let Some(r) = recorder {
        std::fs::create_dir_all(&r.dir).with_context(|| format!("creating pin directory {}", r.dir.display()))?;
        // aya opens a map already pinned at its path and pins a new one otherwise.
        for m in &recorder::MAPS {
            loader.map_pin_path(m.name, r.dir.join(m.name));
        }
        loader.map_max_entries("RING", r.ring_size);
    }
    let mut ebpf = loader.load(EBPF_OBJECT).map_err(|e| {
        anyhow!("loading the eBPF object failed: {e}; run `netpoll-trace check` to see what this kernel lacks")
    })?;
    let mut cfg: Array<_, Config> =
        Array::try_from(ebpf.map_mut("CONFIG").ok_or_else(|| anyhow!("eBPF object has no CONFIG map"))?)?;
    cfg.set(0, *config, 0).context("writing struct offsets to the CONFIG map")?;
    if let Some(r) = recorder {
        let meta = ebpf.map_mut("META").ok_or_else(|| anyhow!("eBPF object has no META map"))?;
        recorder::init_meta(meta, r.ring_size, crate::pipeline::monotonic_ns())?;
    }
    stage("object loaded (aya parsed the kernel BTF in EbpfLoader::new)");
    Ok(ebpf)
}

/// The perf arrays and the programs' log channel of a loaded object.
fn finish(
    mut ebpf: Ebpf,
    method: AttachMethod,
    attached: Vec<&'static str>,
    skipped: Vec<(&'static str, String)>,
) -> Result<Loaded> {
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
    Ok(Loaded {
        ebpf,
        setup_events,
        poll_events,
        method,
        logger,
        fallback_reason: None,
        attached,
        skipped,
        attach_ms: 0.0,
        pinned_links: Vec::new(),
        unpinnable: None,
        reused: false,
    })
}

/// An earlier process's pinned links are recording: read their maps, attach nothing.
fn reuse_pinned(config: &Config, plan: &RecorderPlan) -> Result<Loaded> {
    let ebpf = load(config, Some(plan))?;
    let is = |name: &str| plan.reuse_links.iter().any(|l| l == name);
    let method = if TARGETS.iter().any(|t| is(t.fentry.0)) { AttachMethod::Fentry } else { AttachMethod::Kprobe };
    let attached =
        TARGETS.iter().filter(|t| is(t.fentry.0) || is(t.kprobe.0)).map(|t| t.function).collect();
    let mut loaded = finish(ebpf, method, attached, Vec::new())?;
    // The running programs log into their own object's channel, not this one's.
    loaded.logger = None;
    loaded.pinned_links = plan.reuse_links.clone();
    loaded.reused = true;
    Ok(loaded)
}

/// A link to pin, by program.
enum LinkId {
    Kprobe(&'static str, KProbeLinkId),
    FEntry(&'static str, FEntryLinkId),
    FExit(&'static str, FExitLinkId),
}

/// Kprobe links can be pinned only as BPF perf links (bpf_link_create for
/// perf events, kernel 5.15); fentry/fexit links always are BPF links.
fn kprobe_links_pinnable() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(5, 15, 0))
}

fn attach_all(config: &Config, method: AttachMethod, present: &[bool], recorder: Option<&RecorderPlan>) -> Result<Loaded> {
    let mut ebpf = load(config, recorder)?;

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
    let mut links = Vec::new();
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
            Ok(ids) => {
                attached.push(t.function);
                links.extend(ids);
            }
            Err(e) if !t.required => skipped.push((t.function, format!("{e:#}"))),
            Err(e) => return Err(e),
        }
    }
    let mut pinned = Vec::new();
    let mut unpinnable = None;
    if let Some(plan) = recorder.filter(|r| r.persist) {
        if method == AttachMethod::Kprobe && !kprobe_links_pinnable() {
            unpinnable = Some(
                "kprobe links can be pinned only on kernels 5.15 and later (BPF perf links): the probes end with this process; the recorded maps stay pinned"
                    .to_string(),
            );
        } else {
            pinned = pin_links(&mut ebpf, links, &plan.dir)?;
        }
    }
    let mut loaded = finish(ebpf, method, attached, skipped)?;
    loaded.pinned_links = pinned;
    loaded.unpinnable = unpinnable;
    Ok(loaded)
}

/// Pins every link, all or nothing: on a failure the pins made so far are removed
/// (and with them their links) and the start fails.
fn pin_links(ebpf: &mut Ebpf, links: Vec<LinkId>, dir: &std::path::Path) -> Result<Vec<String>> {
    let mut done: Vec<(String, PinnedLink)> = Vec::new();
    let undo = |done: Vec<(String, PinnedLink)>| {
        for (_, p) in done {
            let _ = p.unpin();
        }
    };
    for link in links {
        let (name, fd) = match take_fd_link(ebpf, link) {
            Ok(x) => x,
            Err(e) => {
                undo(done);
                return Err(e);
            }
        };
        let path = dir.join(format!("{}{name}", recorder::LINK_PREFIX));
        match fd.pin(&path) {
            Ok(p) => done.push((name.to_string(), p)),
            Err(e) => {
                undo(done);
                bail!("pinning the link of {name} at {}: {e}", path.display());
            }
        }
    }
    Ok(done.into_iter().map(|(n, _)| n).collect())
}

fn take_fd_link(ebpf: &mut Ebpf, link: LinkId) -> Result<(&'static str, FdLink)> {
    Ok(match link {
        LinkId::FEntry(name, id) => (name, program::<FEntry>(ebpf, name)?.take_link(id)?.into()),
        LinkId::FExit(name, id) => (name, program::<FExit>(ebpf, name)?.take_link(id)?.into()),
        LinkId::Kprobe(name, id) => {
            let link = program::<KProbe>(ebpf, name)?.take_link(id)?;
            (name, FdLink::try_from(link).map_err(|e| anyhow!("the link of {name} is not a BPF link: {e}"))?)
        }
    })
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

fn attach_kprobe(ebpf: &mut Ebpf, t: &Target) -> Result<Vec<LinkId>> {
    let mut ids = Vec::new();
    for (name, ret) in [(t.kprobe.0, false), (t.kprobe.1, true)] {
        let kind = if ret { "kretprobe" } else { "kprobe" };
        let prog: &mut KProbe = program(ebpf, name)?;
        prog.load().map_err(|e| program_error(kind, name, t.function, e))?;
        ids.push(LinkId::Kprobe(name, prog.attach(t.function, 0).map_err(|e| program_error(kind, name, t.function, e))?));
    }
    Ok(ids)
}

fn attach_fentry(ebpf: &mut Ebpf, t: &Target, btf: &Btf) -> Result<Vec<LinkId>> {
    let (entry, exit) = t.fentry;
    let prog: &mut FEntry = program(ebpf, entry)?;
    prog.load(t.function, btf).map_err(|e| program_error("fentry", entry, t.function, e))?;
    let a = prog.attach().map_err(|e| program_error("fentry", entry, t.function, e))?;
    let prog: &mut FExit = program(ebpf, exit)?;
    prog.load(t.function, btf).map_err(|e| program_error("fexit", exit, t.function, e))?;
    let b = prog.attach().map_err(|e| program_error("fexit", exit, t.function, e))?;
    Ok(vec![LinkId::FEntry(entry, a), LinkId::FExit(exit, b)])
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
