//! Loads the embedded eBPF object, hands it this kernel's struct layout and
//! attaches its probes.

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerfEventArray},
    programs::{KProbe, ProgramError},
};
use netpoll_trace_common::Config;

use crate::kallsyms::Kallsyms;

/// The programs, built by build.rs from netpoll-trace-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpoll-trace-ebpf"));

/// One probe: the program in the object and the kernel function it attaches to.
pub struct Probe {
    pub program: &'static str,
    pub function: &'static str,
    pub is_return: bool,
}

/// Every probe we attach; names live here once, never as scattered literals.
pub const PROBES: [Probe; 4] = [
    Probe { program: "netpoll_setup_entry", function: "netpoll_setup", is_return: false },
    Probe { program: "netpoll_setup_exit", function: "netpoll_setup", is_return: true },
    Probe { program: "inner_netpoll_setup_entry", function: "__netpoll_setup", is_return: false },
    Probe { program: "inner_netpoll_setup_exit", function: "__netpoll_setup", is_return: true },
];

/// Fails with `Unsupported` (exit 4) when the kernel lacks a function we probe.
pub fn require_functions() -> Result<()> {
    let ks = Kallsyms::read().context("reading /proc/kallsyms (are you root?)")?;
    let mut missing: Vec<&str> = PROBES.iter().map(|p| p.function).filter(|f| !ks.contains(f)).collect();
    missing.dedup();
    if !missing.is_empty() {
        bail!(Unsupported(format!(
            "this kernel has no {} (built without CONFIG_NETPOLL?); run `netpoll-trace check`",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The attached programs and their event map.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub events: PerfEventArray<MapData>,
    pub attach_method: &'static str,
    /// Wall time from the start of `load` to the last probe attached.
    pub attach_ms: f64,
}

pub fn load_and_attach(config: &Config) -> Result<Loaded> {
    let start = Instant::now();
    require_functions()?;
    let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT).map_err(|e| {
        anyhow!("loading the eBPF object failed: {e}; run `netpoll-trace check` to see what this kernel lacks")
    })?;
    let mut cfg: Array<_, Config> = Array::try_from(
        ebpf.map_mut("CONFIG").ok_or_else(|| anyhow!("eBPF object has no CONFIG map"))?,
    )?;
    cfg.set(0, *config, 0).context("writing struct offsets to the CONFIG map")?;

    for p in &PROBES {
        let prog: &mut KProbe = ebpf
            .program_mut(p.program)
            .ok_or_else(|| anyhow!("eBPF object has no program {}", p.program))?
            .try_into()
            .with_context(|| format!("program {} is not a kprobe", p.program))?;
        prog.load().map_err(|e| program_error(p, e))?;
        prog.attach(p.function, 0).map_err(|e| program_error(p, e))?;
    }
    let events = PerfEventArray::try_from(
        ebpf.take_map("SETUP_EVENTS").ok_or_else(|| anyhow!("eBPF object has no SETUP_EVENTS map"))?,
    )?;
    Ok(Loaded { ebpf, events, attach_method: "kprobe", attach_ms: start.elapsed().as_secs_f64() * 1e3 })
}

/// The kernel cannot be traced; maps to exit code 4.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// One line naming the program and function; the verifier log only at debug level.
fn program_error(p: &Probe, e: ProgramError) -> anyhow::Error {
    let kind = if p.is_return { "kretprobe" } else { "kprobe" };
    if let ProgramError::LoadError { io_error, verifier_log } = &e {
        log::debug!("verifier log for {}:\n{verifier_log}", p.program);
        return anyhow!(
            "the kernel refused {kind} program {} for {}: {io_error} (RUST_LOG=debug shows the verifier log)",
            p.program,
            p.function
        );
    }
    anyhow::Error::from(e).context(format!("attaching {kind} {} to {}", p.program, p.function))
}
