//! `netpoll-trace check`: gathers what the running kernel offers (I/O, through the
//! kernel layer) and prints the model's verdict.

use crate::cli::outln;

use anyhow::Result;
use netpoll_trace_common::Config;

use crate::{
    cli::exit::Exit,
    kernel::{
        attach::{self, AttachChoice},
        features, host,
        kallsyms::Kallsyms,
        netconsole,
        object::ObjectChoice,
        offsets, targets, tracefs,
    },
    model::check::{self, Facts, Tracer},
    sinks::terminal::render_check,
};

pub fn run(json: bool, object: ObjectChoice, attach: AttachChoice) -> Result<Exit> {
    let report = check::evaluate(&gather(object, attach));
    if json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        outln!("{}", render_check(&report).trim_end_matches('\n'));
    }
    Ok(if report.traceable {
        Exit::Ok
    } else {
        Exit::Unsupported
    })
}

/// What `watch` would load and how it would attach here, found the way `watch` finds it
/// (same order and fallbacks: `attach::probe`), the objects and programs loaded by the
/// kernel and nothing attached. None when not root: loading needs privileges.
pub fn probe_tracer(object: ObjectChoice, attach: AttachChoice) -> Option<Result<Tracer, String>> {
    if host::euid() != 0 {
        return None;
    }
    let present = match targets::present() {
        Ok(p) => p,
        Err(e) => return Some(Err(format!("{e:#}"))),
    };
    Some(
        attach::probe(&Config::default(), object, attach, &present)
            .map(|p| Tracer {
                object: p.path.object.to_string(),
                attach_path: p.path.attach_path(),
                fallbacks: p
                    .fallbacks
                    .iter()
                    .map(|f| format!("{} object with {}: {}", f.object, f.method, f.reason))
                    .collect(),
            })
            .map_err(|e| format!("{e:#}")),
    )
}

fn gather(object: ObjectChoice, attach: AttachChoice) -> Facts {
    let ks = Kallsyms::read().ok();
    let has = |name: &str| ks.as_ref().is_some_and(|k| k.contains(name));
    let btf = features::vmlinux_btf();
    let (modules, modules_disabled) = features::modules();
    let hint = || offsets::reduced_hint(host::release().unwrap_or("$(uname -r)"));
    // First: the offsets' own look at the kernel's BTF (its cache says so, as watch's).
    let resolved = offsets::resolve_sources(None, None);
    // What watch would trace: module functions (7.3+ netconsole's own) by the module's
    // BTF even before it loads, vmlinux's by BTF or kallsyms.
    let present = targets::present().ok();
    let traced = |name: &str| match &present {
        Some(p) => targets::TARGETS
            .iter()
            .zip(p)
            .any(|(t, p)| *p && t.symbol == name),
        None => has(name),
    };
    let offsets = match resolved {
        Ok(mut r) => {
            let nt_note = present
                .as_deref()
                .filter(|p| targets::traces_netconsole_target(p))
                .and_then(|_| offsets::netconsole_target::resolve(&mut r, None));
            match (&r.source, r.describe_missing().or(nt_note)) {
            (Some(s), None) => Ok(s.to_string()),
            (Some(s), Some(missing)) => Err((format!("struct offsets from {s}, but it {missing}"), hint())),
            (None, _) => Err((
                "no source of struct offsets: no kernel BTF and no netpoll_offsets.o for this kernel; only return codes are reported".to_string(),
                hint(),
            )),
            }
        }
        Err(e) => Err((format!("{e:#}"), hint())),
    };
    Facts {
        release: host::release().unwrap_or("unknown").to_string(),
        btf,
        offsets: Some(offsets),
        kprobe_pmu: features::kprobe_pmu(),
        kprobe_events: features::kprobe_events(),
        kallsyms_readable: ks.is_some(),
        has_kprobe_symbols: has("register_kprobe"),
        has_trampoline: has("bpf_trampoline_link_prog"),
        netpoll_symbols: targets::checked(traced),
        bpffs_mounted: features::bpffs_mounted(),
        modules,
        modules_disabled,
        lockdown: features::lockdown(),
        euid: host::euid(),
        kprobes_via_tracefs: tracefs::kprobe_via() == tracefs::KprobeVia::Tracefs,
        tracer: probe_tracer(object, attach),
        nbcon_panic_timeout: netconsole::is_nbcon().then(host::panic_timeout).flatten(),
    }
}
