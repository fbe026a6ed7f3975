//! `netpoll-trace check`: what the running kernel offers for tracing netpoll, each
//! missing piece with what to do. Facts are gathered by the command (I/O) and judged
//! by `evaluate` (pure, unit-tested).

use netpoll_trace_common::function;
use serde::Serialize;

/// What `gather` read from the system.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub release: String,
    /// None: no /sys/kernel/btf/vmlinux; Some(Err): present but unreadable.
    pub btf: Option<Result<(), String>>,
    /// Where struct offsets come from: Ok(the source) when every one resolved, else
    /// Err((what is missing, what to provide)); None when not looked at.
    pub offsets: Option<Result<String, (String, String)>>,
    pub kprobe_pmu: bool,
    pub kprobe_events: bool,
    /// kprobes attach through tracefs kprobe_events on this kernel (before 4.17), not
    /// through the kprobe PMU.
    pub kprobes_via_tracefs: bool,
    pub kallsyms_readable: bool,
    pub has_kprobe_symbols: bool,
    pub has_trampoline: bool,
    /// Each traced function and whether the kernel has it (of alternatives, the one the
    /// kernel has: the send path's skb transmit).
    pub netpoll_symbols: Vec<(&'static str, bool)>,
    pub bpffs_mounted: bool,
    pub modules: bool,
    pub modules_disabled: bool,
    pub lockdown: Option<String>,
    pub euid: u32,
    /// What `watch` would load here, found by loading it (nothing attached): Some(Ok)
    /// what worked, Some(Err) why nothing did, None when not tried (not root).
    pub tracer: Option<Result<Tracer, String>>,
    /// Where netconsole is an nbcon console (7.3+), `kernel.panic`'s value (None: not
    /// nbcon, or unreadable).
    pub nbcon_panic_timeout: Option<i64>,
}

/// The object and attach path `watch` would use, and what was refused on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracer {
    /// `modern` or `legacy`.
    pub object: String,
    /// `fentry`, `kprobe (kprobe PMU)`, `kprobe (tracefs kprobe_events)`.
    pub attach_path: String,
    /// One line per refused attempt before it, e.g. "modern object with kprobe: ...".
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Missing, but tracing still works (with less).
    Degraded,
    /// Tracing netpoll is impossible on this kernel.
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it; None when nothing is needed.
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: String,
    /// The eBPF object `watch` would load (`modern`, `legacy`); null when unknown.
    pub object: Option<String>,
    /// The attach path `watch` would use; null when unknown.
    pub attach_path: Option<String>,
    pub items: Vec<Item>,
    /// False when no netpoll tracing is possible: `check` exits 4.
    pub traceable: bool,
}

fn item(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Item {
    Item {
        name,
        status,
        detail: detail.into(),
        fix: fix.map(str::to_string),
    }
}

pub fn evaluate(f: &Facts) -> Report {
    use Status::{Degraded, Missing};
    let ok = Status::Ok;
    let mut items = Vec::new();

    items.push(match &f.btf {
        Some(Ok(())) => item("btf", ok, "/sys/kernel/btf/vmlinux present and readable", None),
        Some(Err(e)) => item(
            "btf",
            Degraded,
            format!("/sys/kernel/btf/vmlinux unreadable: {e}"),
            Some("pass a BTF file with --btf FILE, or use the offsets from the kernel's headers (see the offsets item); without either only return codes are reported"),
        ),
        None => item(
            "btf",
            Degraded,
            "no /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF)",
            Some("pass a BTF file for this kernel with --btf FILE (BTFHub's <release>.btf.tar.xz, or `pahole -J` of the debug vmlinux), or use the offsets from the kernel's headers (see the offsets item); without either only return codes are reported"),
        ),
    });

    if let Some(o) = &f.offsets {
        items.push(match o {
            Ok(source) => item("offsets", ok, format!("struct offsets from {source}"), None),
            Err((detail, fix)) => item("offsets", Degraded, detail.clone(), Some(fix)),
        });
    }

    // aya attaches through the PMU from 4.17 on and through kprobe_events before.
    let kprobes = if f.kprobes_via_tracefs {
        f.kprobe_events || f.has_kprobe_symbols
    } else {
        f.kprobe_pmu
    };
    items.push(if kprobes {
        let how = match (f.kprobes_via_tracefs, f.kprobe_events) {
            (false, _) => "kprobe PMU",
            (true, true) => "tracefs kprobe_events",
            (true, false) => "tracefs kprobe_events; tracefs is not mounted: watch mounts it",
        };
        item("kprobes", ok, format!("available ({how})"), None)
    } else {
        item(
            "kprobes",
            Missing,
            if f.has_kprobe_symbols {
                "kprobe support is built in, but neither the kprobe PMU nor tracefs kprobe_events is reachable"
            } else {
                "kernel built without kprobes (CONFIG_KPROBES / CONFIG_KPROBE_EVENTS off)"
            },
            Some(if f.has_kprobe_symbols {
                "mount tracefs (mount -t tracefs tracefs /sys/kernel/tracing) or run on the host, not in a restricted container"
            } else {
                "run on a kernel built with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y (every distribution kernel is)"
            }),
        )
    });

    items.push(if f.has_trampoline && matches!(f.btf, Some(Ok(()))) {
        item(
            "fentry",
            ok,
            "BPF trampolines and BTF present: fentry/fexit possible",
            None,
        )
    } else {
        item(
            "fentry",
            Degraded,
            "no BPF trampoline or no BTF: fentry/fexit unavailable, kprobes are used instead",
            Some("nothing needed; kprobes work (at a higher cost per call)"),
        )
    });

    items.push(if f.bpffs_mounted {
        item("bpffs", ok, "mounted", None)
    } else {
        item(
            "bpffs",
            Degraded,
            "no bpf filesystem mounted: the flight recorder cannot persist",
            Some("mount -t bpf bpf /sys/fs/bpf"),
        )
    });

    let present_fns: Vec<&str> = f
        .netpoll_symbols
        .iter()
        .filter(|(_, present)| *present)
        .map(|(n, _)| *n)
        .collect();
    let has = |id| function::symbol(id).is_some_and(|n| present_fns.contains(&n));
    // 7.3+: netconsole's own set-up (in the module, traced before it loads) stands in
    // for the netpoll_setup vmlinux no longer has.
    let stood_in = !has(function::NETPOLL_SETUP) && has(function::NETCONS_NETPOLL_SETUP);
    let missing_fns: Vec<&str> = f
        .netpoll_symbols
        .iter()
        .filter(|(n, present)| {
            !present && !(stood_in && function::symbol(function::NETPOLL_SETUP) == Some(*n))
        })
        .map(|(n, _)| *n)
        .collect();
    // Only the set-up functions are required; the rest feed statistics and lifecycles.
    let required = [function::NETPOLL_SETUP, function::INNER_NETPOLL_SETUP].map(function::symbol);
    let required_missing = missing_fns.iter().any(|n| required.contains(&Some(*n)));
    let all_fns: Vec<&str> = f.netpoll_symbols.iter().map(|(n, _)| *n).collect();
    let listed = if stood_in {
        format!(
            "{} present (netpoll_setup is not in vmlinux here: netconsole sets netpoll up itself, and its netcons_netpoll_setup is traced in the module, armed before the module loads)",
            present_fns.join(", ")
        )
    } else {
        format!("{} present", all_fns.join(", "))
    };
    items.push(if !f.kallsyms_readable {
        item(
            "netpoll",
            Missing,
            "/proc/kallsyms unreadable: cannot tell whether the kernel has netpoll",
            Some("run as root on the host"),
        )
    } else if missing_fns.is_empty() {
        item("netpoll", ok, listed, None)
    } else if required_missing && has(function::INNER_NETPOLL_SETUP) {
        // netpoll is there (its inner set-up is) but its outer entry is nowhere we can
        // trace: never say CONFIG_NETPOLL is missing then.
        item(
            "netpoll",
            Missing,
            format!(
                "netpoll is built in ({} present) but {} not found, and netconsole's own set-up (netcons_netpoll_setup) was not found in the netconsole module either; lost: set-ups, their diagnoses and the target lifecycle",
                present_fns.join(", "),
                missing_fns.join(", ")
            ),
            Some("check that the netconsole module is installed (modinfo netconsole)"),
        )
    } else if required_missing {
        item(
            "netpoll",
            Missing,
            format!("kernel has no netpoll ({} not found in /proc/kallsyms)", missing_fns.join(", ")),
            Some("netpoll needs a kernel built with CONFIG_NETPOLL (selected by CONFIG_NETCONSOLE); there is nothing to trace here"),
        )
    } else {
        item(
            "netpoll",
            Degraded,
            format!("{} not found: {} unavailable", missing_fns.join(", "), optional_features(&missing_fns)),
            Some("nothing needed for set-up tracing"),
        )
    });

    if f.kallsyms_readable {
        items.push(send_path_item(&f.netpoll_symbols));
    }
    if let Some(timeout) = f.nbcon_panic_timeout {
        items.push(panic_report_item(timeout));
    }

    items.push(if !f.modules {
        item(
            "modules",
            Degraded,
            "kernel built without loadable modules: netconsole must be built in and the runtime patch cannot load",
            Some("use a kernel with CONFIG_MODULES=y for `patch`"),
        )
    } else if f.modules_disabled {
        item(
            "modules",
            Degraded,
            "module loading disabled (kernel.modules_disabled=1)",
            Some("modules_disabled cannot be undone until reboot; `patch` is unavailable"),
        )
    } else {
        item("modules", ok, "module loading available", None)
    });

    let lockdown = f.lockdown.as_deref().and_then(|l| {
        // "none integrity [confidentiality]": the bracketed word is active.
        l.split_whitespace()
            .find(|w| w.starts_with('['))
            .map(|w| w.trim_matches(['[', ']']).to_string())
    });
    items.push(match lockdown.as_deref() {
        None | Some("none") => item("lockdown", ok, "not locked down", None),
        Some("integrity") => item(
            "lockdown",
            Degraded,
            "lockdown=integrity: unsigned modules refused",
            Some("sign the patch module with a key the kernel trusts, or boot without lockdown"),
        ),
        Some(mode) => item(
            "lockdown",
            Missing,
            format!("lockdown={mode}: BPF reads of kernel memory are refused"),
            Some("boot with lockdown=integrity or none to trace netpoll"),
        ),
    });

    items.push(if f.euid == 0 {
        item("privileges", ok, "running as root", None)
    } else {
        item(
            "privileges",
            Degraded,
            format!(
                "running as uid {}: loading BPF needs CAP_BPF and CAP_PERFMON (or root)",
                f.euid
            ),
            Some("run with sudo"),
        )
    });

    items.push(match &f.tracer {
        Some(Ok(t)) => {
            let mut detail = format!("watch loads the {} eBPF object and attaches with {}", t.object, t.attach_path);
            if !t.fallbacks.is_empty() {
                detail.push_str(&format!(" (refused before it: {})", t.fallbacks.join("; ")));
            }
            item("ebpf", ok, detail, None)
        }
        Some(Err(e)) => item(
            "ebpf",
            Missing,
            format!("no eBPF object loads on this kernel: {e}"),
            Some("RUST_LOG=debug netpoll-trace check shows the verifier's log; report it with `uname -r`"),
        ),
        None => item(
            "ebpf",
            Degraded,
            "not tried: loading the eBPF objects needs root",
            Some("run `sudo netpoll-trace check` to load them (nothing is attached)"),
        ),
    });

    let traceable = !items.iter().any(|i| i.status == Missing);
    let tracer = f.tracer.as_ref().and_then(|t| t.as_ref().ok());
    Report {
        kernel: f.release.clone(),
        object: tracer.map(|t| t.object.clone()),
        attach_path: tracer.map(|t| t.attach_path.clone()),
        items,
        traceable,
    }
}

/// What the missing optional functions would have fed.
fn optional_features(missing: &[&str]) -> String {
    let mut what: Vec<&str> = Vec::new();
    for m in missing {
        let feature = match function::id(m) {
            Some(function::NETPOLL_POLL_DEV) => "poll statistics",
            Some(function::NETPOLL_SEND_UDP) => "send-path statistics",
            Some(function::NETPOLL_CLEANUP | function::INNER_NETPOLL_CLEANUP) => {
                "target lifecycle events"
            }
            Some(function::NETPOLL_SEND_SKB) => "send outcomes and times",
            _ => continue,
        };
        if !what.contains(&feature) {
            what.push(feature);
        }
    }
    what.join(", ")
}

/// The send path's item: which skb transmit function carries netconsole's messages here.
/// 7.3+: netconsole is an nbcon console marked atomic-unsafe, flushed in a panic only by
/// `nbcon_atomic_flush_unsafe()` at the very end of panic(), after the reboot that a
/// non-zero `kernel.panic` does (kernel/panic.c; measured in the lab: with panic=-1 or 5
/// no panic line reached the receiver, with 0 it did).
fn panic_report_item(timeout: i64) -> Item {
    if timeout == 0 {
        return item(
            "panic_report",
            Status::Ok,
            "kernel.panic is 0: netconsole (an nbcon console here) sends a panic's report before the kernel halts",
            None,
        );
    }
    item(
        "panic_report",
        Status::Degraded,
        format!(
            "kernel.panic is {timeout}: this kernel reboots in panic() before it flushes netconsole (an nbcon console flushed only at panic()'s end), so a panic's report never leaves the machine"
        ),
        Some(
            "sysctl kernel.panic=0 (the machine then stays halted after a panic: reboot it with a watchdog or by hand), or keep the report another way (kdump, pstore)",
        ),
    )
}

fn send_path_item(symbols: &[(&'static str, bool)]) -> Item {
    let has = |id: u32| {
        symbols
            .iter()
            .find(|(n, p)| *p && function::id(n) == Some(id))
            .map(|(n, _)| *n)
    };
    let udp = has(function::NETPOLL_SEND_UDP).is_some();
    let skb = has(function::NETPOLL_SEND_SKB);
    match (udp, skb) {
        (true, Some(skb)) => item(
            "send_path",
            Status::Ok,
            format!("netconsole's messages traced through netpoll_send_udp and {skb}"),
            None,
        ),
        _ => item(
            "send_path",
            Status::Degraded,
            format!(
                "no {}: netconsole's delivery (sent, deferred, dropped) cannot be counted",
                if udp {
                    function::SEND_SKB_SYMBOLS.join(" or ")
                } else {
                    "netpoll_send_udp".to_string()
                }
            ),
            Some("nothing needed for set-up tracing"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACED: [u32; 7] = [
        function::NETPOLL_SETUP,
        function::INNER_NETPOLL_SETUP,
        function::NETPOLL_POLL_DEV,
        function::NETPOLL_SEND_UDP,
        function::NETPOLL_SEND_SKB,
        function::NETPOLL_CLEANUP,
        function::INNER_NETPOLL_CLEANUP,
    ];

    fn symbols(present: bool) -> Vec<(&'static str, bool)> {
        TRACED
            .iter()
            .map(|id| (function::symbol(*id).unwrap(), present))
            .collect()
    }

    /// Every detail and fix, as one text to search.
    fn text(r: &Report) -> String {
        r.items
            .iter()
            .map(|i| format!("{} {}\n", i.detail, i.fix.as_deref().unwrap_or("")))
            .collect()
    }

    fn lab_kernel() -> Facts {
        Facts {
            release: "6.1.0-test".into(),
            btf: Some(Ok(())),
            offsets: Some(Ok("/sys/kernel/btf/vmlinux".into())),
            kprobe_pmu: true,
            kprobe_events: true,
            kallsyms_readable: true,
            has_kprobe_symbols: true,
            has_trampoline: true,
            netpoll_symbols: symbols(true),
            bpffs_mounted: true,
            modules: true,
            modules_disabled: false,
            lockdown: Some("[none] integrity confidentiality".into()),
            euid: 0,
            kprobes_via_tracefs: false,
            tracer: Some(Ok(Tracer {
                object: "modern".into(),
                attach_path: "fentry".into(),
                fallbacks: Vec::new(),
            })),
            nbcon_panic_timeout: None,
        }
    }

    /// 7.3: with kernel.panic set the panic's report is lost over netconsole: said, with
    /// the fix; with 0 it is fine; older kernels get no such line.
    #[test]
    fn an_nbcon_netconsole_with_a_panic_timeout_loses_the_panic_report() {
        assert!(
            evaluate(&lab_kernel())
                .items
                .iter()
                .all(|i| i.name != "panic_report")
        );
        let r = evaluate(&Facts {
            nbcon_panic_timeout: Some(10),
            ..lab_kernel()
        });
        assert_eq!(status(&r, "panic_report"), Status::Degraded);
        assert!(r.traceable);
        let t = text(&r);
        assert!(
            t.contains("kernel.panic is 10") && t.contains("sysctl kernel.panic=0"),
            "{t}"
        );
        let r = evaluate(&Facts {
            nbcon_panic_timeout: Some(0),
            ..lab_kernel()
        });
        assert_eq!(status(&r, "panic_report"), Status::Ok);
    }

    fn status(r: &Report, name: &str) -> Status {
        r.items.iter().find(|i| i.name == name).unwrap().status
    }

    #[test]
    fn the_send_path_item_names_the_transmit_function_the_kernel_has() {
        let item = |r: &Report| {
            r.items
                .iter()
                .find(|i| i.name == "send_path")
                .cloned()
                .unwrap()
        };
        let r = evaluate(&lab_kernel());
        let i = item(&r);
        assert_eq!(i.status, Status::Ok);
        assert!(
            i.detail.contains("netpoll_send_udp and netpoll_send_skb"),
            "{}",
            i.detail
        );
        // Before 5.8: the other one.
        let mut f = lab_kernel();
        for s in &mut f.netpoll_symbols {
            if s.0 == "netpoll_send_skb" {
                *s = ("netpoll_send_skb_on_dev", true);
            }
        }
        assert!(
            item(&evaluate(&f))
                .detail
                .contains("netpoll_send_skb_on_dev")
        );
        // Neither: degraded, and set-up tracing still works.
        f.netpoll_symbols
            .retain(|s| !s.0.starts_with("netpoll_send_skb"));
        let r = evaluate(&f);
        assert_eq!(item(&r).status, Status::Degraded);
        assert!(r.traceable);
        assert!(
            text(&r).contains("netpoll_send_skb or netpoll_send_skb_on_dev"),
            "{}",
            text(&r)
        );
    }

    #[test]
    fn the_offsets_item_names_the_source_or_what_to_provide() {
        let r = evaluate(&lab_kernel());
        assert_eq!(status(&r, "offsets"), Status::Ok);
        assert!(text(&r).contains("struct offsets from /sys/kernel/btf/vmlinux"));
        let f = Facts {
            btf: None,
            offsets: Some(Err((
                "no source of struct offsets".into(),
                "build netpoll-patch".into(),
            ))),
            ..lab_kernel()
        };
        let r = evaluate(&f);
        assert!(r.traceable);
        assert_eq!(status(&r, "offsets"), Status::Degraded);
        assert!(text(&r).contains("no source of struct offsets build netpoll-patch"));
        assert!(
            evaluate(&Facts {
                offsets: None,
                ..lab_kernel()
            })
            .items
            .iter()
            .all(|i| i.name != "offsets")
        );
    }

    #[test]
    fn a_full_kernel_is_traceable() {
        let r = evaluate(&lab_kernel());
        assert!(r.traceable);
        assert!(r.items.iter().all(|i| i.status == Status::Ok), "{r:?}");
    }

    #[test]
    fn no_kprobes_and_no_netpoll_is_untraceable_and_says_both() {
        let mut f = lab_kernel();
        f.kprobe_pmu = false;
        f.kprobe_events = false;
        f.has_kprobe_symbols = false;
        f.netpoll_symbols = symbols(false);
        let r = evaluate(&f);
        assert!(!r.traceable);
        assert_eq!(status(&r, "kprobes"), Status::Missing);
        assert_eq!(status(&r, "netpoll"), Status::Missing);
        let text = text(&r);
        assert!(text.contains("CONFIG_KPROBES"), "{text}");
        assert!(text.contains("CONFIG_NETPOLL"), "{text}");
    }

    /// #23: Linux 7.3's vmlinux has __netpoll_setup but no netpoll_setup (netconsole sets
    /// netpoll up itself): never "built without CONFIG_NETPOLL".
    #[test]
    fn netpoll_without_its_outer_entry_is_not_called_missing_netpoll() {
        let mut f = lab_kernel();
        for (n, present) in f.netpoll_symbols.iter_mut() {
            if Some(*n) == function::symbol(function::NETPOLL_SETUP) {
                *present = false;
            }
        }
        let r = evaluate(&f);
        assert_eq!(status(&r, "netpoll"), Status::Missing);
        let text = text(&r);
        assert!(!text.contains("CONFIG_NETPOLL"), "{text}");
        assert!(
            text.contains("netpoll_setup not found") && text.contains("netcons_netpoll_setup"),
            "{text}"
        );
    }

    /// 7.3: netconsole's own set-up, found in the module, stands in for netpoll_setup:
    /// set-up tracing works, and the line says why netpoll_setup is not there.
    #[test]
    fn netconsoles_own_setup_stands_in_for_netpoll_setup() {
        let mut f = lab_kernel();
        for (n, present) in f.netpoll_symbols.iter_mut() {
            if Some(*n) == function::symbol(function::NETPOLL_SETUP) {
                *present = false;
            }
        }
        f.netpoll_symbols.push((
            function::symbol(function::NETCONS_NETPOLL_SETUP).unwrap(),
            true,
        ));
        let r = evaluate(&f);
        assert_eq!(status(&r, "netpoll"), Status::Ok, "{}", text(&r));
        assert!(r.traceable);
        let text = text(&r);
        assert!(text.contains("netconsole sets netpoll up itself"), "{text}");
        assert!(!text.contains("not found"), "{text}");
    }

    #[test]
    fn missing_btf_or_poll_dev_only_degrades() {
        let mut f = lab_kernel();
        f.btf = None;
        f.netpoll_symbols[2].1 = false;
        let r = evaluate(&f);
        assert!(r.traceable);
        assert_eq!(status(&r, "btf"), Status::Degraded);
        assert_eq!(status(&r, "fentry"), Status::Degraded);
        assert_eq!(status(&r, "netpoll"), Status::Degraded);
        assert!(text(&r).contains("--btf FILE"));
    }

    /// 4.14: kprobes through kprobe_events (no PMU), and the modern object refused: the
    /// legacy one is named, with why the modern one was not used.
    #[test]
    fn an_old_kernel_names_the_legacy_object_and_tracefs() {
        let mut f = lab_kernel();
        f.kprobe_pmu = false;
        f.kprobes_via_tracefs = true;
        f.tracer = Some(Ok(Tracer {
            object: "legacy".into(),
            attach_path: "kprobe (tracefs kprobe_events)".into(),
            fallbacks: vec!["modern object with kprobe: failed to create map AYA_LOGS".into()],
        }));
        let r = evaluate(&f);
        assert!(r.traceable);
        assert_eq!(r.object.as_deref(), Some("legacy"));
        assert_eq!(
            r.attach_path.as_deref(),
            Some("kprobe (tracefs kprobe_events)")
        );
        assert_eq!(status(&r, "kprobes"), Status::Ok);
        assert!(text(&r).contains("tracefs kprobe_events"), "{}", text(&r));
        assert!(text(&r).contains("AYA_LOGS"), "{}", text(&r));
        // Not mounted yet: still fine, watch mounts it.
        f.kprobe_events = false;
        assert_eq!(status(&evaluate(&f), "kprobes"), Status::Ok);
        // From 4.17 aya uses the PMU only: kprobe_events alone is not enough.
        f.kprobes_via_tracefs = false;
        f.kprobe_events = true;
        assert_eq!(status(&evaluate(&f), "kprobes"), Status::Missing);
    }

    /// The 4.14 bug: every ingredient present, but the object does not load, so `check`
    /// must not say traceable.
    #[test]
    fn an_object_that_does_not_load_is_untraceable() {
        let mut f = lab_kernel();
        f.tracer = Some(Err("loading the legacy eBPF object failed: ...".into()));
        let r = evaluate(&f);
        assert!(!r.traceable);
        assert_eq!(status(&r, "ebpf"), Status::Missing);
        assert_eq!((r.object, r.attach_path), (None, None));
        f.tracer = None;
        f.euid = 1000;
        let r = evaluate(&f);
        assert!(r.traceable);
        assert_eq!(status(&r, "ebpf"), Status::Degraded);
    }

    #[test]
    fn confidentiality_lockdown_blocks_tracing_but_integrity_does_not() {
        let mut f = lab_kernel();
        f.lockdown = Some("none integrity [confidentiality]".into());
        assert!(!evaluate(&f).traceable);
        f.lockdown = Some("none [integrity] confidentiality".into());
        let r = evaluate(&f);
        assert!(r.traceable);
        assert_eq!(status(&r, "lockdown"), Status::Degraded);
    }
}
