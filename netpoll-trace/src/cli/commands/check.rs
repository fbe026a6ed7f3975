//! `netpoll-trace check`: gathers what the running kernel offers (I/O, through the
//! kernel layer) and prints the model's verdict.

use std::path::Path;

use anyhow::Result;

use crate::{
    cli::exit::Exit,
    kernel::{btf::Btf, host, kallsyms::Kallsyms, offsets, targets},
    model::check::{self, Facts},
    sinks::terminal::render_check,
};

pub fn run(json: bool) -> Result<Exit> {
    let report = check::evaluate(&gather());
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render_check(&report));
    }
    Ok(if report.traceable { Exit::Ok } else { Exit::Unsupported })
}

fn gather() -> Facts {
    let ks = Kallsyms::read().ok();
    let has = |name: &str| ks.as_ref().is_some_and(|k| k.contains(name));
    let btf = Path::new(offsets::SYSFS_VMLINUX).exists().then(|| {
        std::fs::read(offsets::SYSFS_VMLINUX)
            .map_err(|e| e.to_string())
            .and_then(|d| Btf::parse(&d).map(|_| ()).map_err(|e| format!("{e:#}")))
    });
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    Facts {
        release: host::release().unwrap_or("unknown").to_string(),
        btf,
        kprobe_pmu: Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
        kprobe_events: Path::new("/sys/kernel/tracing/kprobe_events").exists()
            || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists(),
        kallsyms_readable: ks.is_some(),
        has_kprobe_symbols: has("register_kprobe"),
        has_trampoline: has("bpf_trampoline_link_prog"),
        netpoll_symbols: targets::functions().into_iter().map(|f| (f, has(f))).collect(),
        bpffs_mounted: mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("bpf")),
        modules: Path::new("/proc/modules").exists(),
        modules_disabled: host::read_trim("/proc/sys/kernel/modules_disabled").as_deref() == Some("1"),
        lockdown: host::read_trim("/sys/kernel/security/lockdown"),
        euid: host::euid(),
    }
}
