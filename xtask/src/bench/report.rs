//! What `cargo xtask bench` shows and keeps: the table on the terminal and
//! target/bench/bench.json (an object keyed by kernel release), both from the reduced
//! numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::reduce::{FloodRx, MethodAttach, Reduced};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn opt_u(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The table `cargo xtask bench` prints: ratios first, then absolute (emulated) values and
/// per-kernel detail lines.
pub fn table(results: &BTreeMap<String, Reduced>, labels: &BTreeMap<String, &str>) -> String {
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
            "       outer set-up traced by watch, libbpf and bpftrace: {}\n",
            outer_setup_name(r)
        ));
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
            let per = r
                .runs_per_message(mode)
                .map(|m| format!(" ({m:.2} per message)"))
                .unwrap_or_default();
            s.push_str(&format!(
                "       {mode}: tracing programs ran {runs:.0} times per flood{per}, {:.4}% of its time\n",
                share * 100.0
            ));
        }
        if !r.flood_rx.is_empty() {
            s.push_str(&format!(
                "       lines received/sent (writes' share of a flood's time): {}\n",
                flood_rx_line(r)
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

/// `netpoll_setup`, `netconsole:netcons_netpoll_setup` (a module's), or `-` (not reported).
fn outer_setup_name(r: &Reduced) -> String {
    match (&r.outer_setup, &r.outer_setup_module) {
        (Some(f), Some(m)) => format!("{m}:{f}"),
        (Some(f), None) => f.clone(),
        (None, _) => "-".into(),
    }
}

/// `none 600/600 (0.11); watch 199/200 (0.12)`: per mode, summed over its floods.
fn flood_rx_line(r: &Reduced) -> String {
    r.flood_rx
        .iter()
        .map(|(mode, f)| {
            format!(
                "{mode} {}/{} ({})",
                f.received,
                f.sent,
                opt(f.write_share, 2)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `fentry 1431.0 / 310.2 (4.61x); kprobe ...`, with the floor's failure where it had one.
fn by_method_line(r: &Reduced) -> String {
    r.attach_by_method
        .iter()
        .map(|(method, m)| match (&m.libbpf_failed, m.libbpf_ms) {
            (Some(why), None) => format!("{method} {} / failed: {why}", opt(m.watch_ms, 1)),
            _ => format!(
                "{method} {} / {} ({}x; cache warm {} ms, {}x; full {} / {}, {}x; one load thread {} / {} ms, {}x / {}x)",
                opt(m.watch_ms, 1),
                opt(m.libbpf_ms, 1),
                opt(m.ratio_to_libbpf(), 2),
                opt(m.watch_warm_ms, 1),
                opt(m.warm_ratio_to_libbpf(), 2),
                opt(m.watch_full_ms, 1),
                opt(m.libbpf_full_ms, 1),
                opt(m.full_ratio_to_libbpf(), 2),
                opt(m.watch_one_thread_ms, 1),
                opt(m.watch_one_thread_warm_ms, 1),
                opt(m.load_speedup(), 2),
                opt(m.load_speedup_warm(), 2)
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One kernel in bench.json. The names are the file's contract (docs/performance.md
/// cites them); every time and ratio is rounded to four decimal places.
#[derive(Serialize)]
struct KernelJson<'a> {
    attach_ms: Option<f64>,
    attach_ms_bpftrace: Option<f64>,
    attach_speedup: Option<f64>,
    /// bpftrace over the libbpf floor (default method): how far bpftrace ÷ ready could go.
    attach_speedup_libbpf: Option<f64>,
    attach_ms_self_reported: Option<f64>,
    attach_runs: usize,
    attach_method: Option<&'a str>,
    /// The outer set-up traced (netpoll_setup, or 7.3's netcons_netpoll_setup) and its
    /// module (null: vmlinux).
    outer_setup: Option<&'a str>,
    outer_setup_module: Option<&'a str>,
    attach_ms_libbpf: Option<f64>,
    attach_ratio_to_libbpf: Option<f64>,
    attach_ms_warm: Option<f64>,
    attach_ratio_warm_to_libbpf: Option<f64>,
    attach_by_method: BTreeMap<&'a str, MethodJson<'a>>,
    throughput_ratio: Option<f64>,
    throughput_ratio_kprobe: Option<f64>,
    throughput_ratio_bpftrace: Option<f64>,
    /// The full libbpf floor's floods (its programs on the functions watch's run on).
    throughput_ratio_floor: Option<f64>,
    throughput_ratio_no_slow_poll_events: Option<f64>,
    throughput_ratio_floods: usize,
    poll_lines_per_flood: Option<f64>,
    bpf_time_share_watch: Option<f64>,
    bpf_time_share_kprobe: Option<f64>,
    bpf_time_share_bpftrace: Option<f64>,
    bpf_time_share_floor: Option<f64>,
    bpf_runs_per_flood_watch: Option<f64>,
    bpf_runs_per_flood_kprobe: Option<f64>,
    bpf_runs_per_flood_bpftrace: Option<f64>,
    bpf_runs_per_flood_floor: Option<f64>,
    /// Runs per flood over the lines each flood sent.
    bpf_runs_per_message_watch: Option<f64>,
    bpf_runs_per_message_kprobe: Option<f64>,
    bpf_runs_per_message_bpftrace: Option<f64>,
    bpf_runs_per_message_floor: Option<f64>,
    msgs_per_sec_untraced: Option<f64>,
    msgs_per_sec_watch: Option<f64>,
    msgs_per_sec_kprobe: Option<f64>,
    msgs_per_sec_bpftrace: Option<f64>,
    msgs_per_sec_floor: Option<f64>,
    msgs_per_sec_watch_noslow: Option<f64>,
    msgs_per_sec_serial_only: Option<f64>,
    /// Per throughput mode: the floods' lines sent, received, lost (floods are timed to
    /// their last line at the receiver) and the writes' share of a flood's time.
    flood_lines: BTreeMap<&'a str, FloodJson>,
    setups: Option<u64>,
    setups_ok: Option<u64>,
    events: Option<u64>,
    lost: Option<u64>,
    events_bpftrace: Option<u64>,
    lost_bpftrace: Option<u64>,
    watch_idle_rss_kib: Option<u64>,
    watch_idle_hwm_kib: Option<u64>,
    watch_burst_rss_kib: Option<u64>,
    watch_burst_hwm_kib: Option<u64>,
    agent_idle_rss_kib: Option<u64>,
    agent_idle_hwm_kib: Option<u64>,
    watch_idle_heap_kib: Option<u64>,
    agent_idle_heap_kib: Option<u64>,
    agent_burst_rss_kib: Option<u64>,
    agent_burst_hwm_kib: Option<u64>,
    /// bpftrace's peak RSS (VmHWM) after the burst; was `bpftrace_burst_rss_kib`, which
    /// named the wrong number.
    bpftrace_burst_hwm_kib: Option<u64>,
    binary_bytes: u64,
    /// The guest had a host thread per vCPU (`--mttcg`); else one for both, as the lab.
    mttcg: bool,
    /// watch's and the agent's program-load threads (`--load-threads`); null: their
    /// default, one per CPU.
    load_threads: Option<u32>,
    bpftrace_version: Option<&'a str>,
    bpftrace_unavailable: Option<&'a str>,
    stopped_by_second_sigint: &'a [String],
    stopped_by_sigkill: &'a [String],
    stuck_floods: &'a [String],
}

/// One attach method in bench.json's `attach_by_method`.
#[derive(Serialize)]
struct MethodJson<'a> {
    watch_ms: Option<f64>,
    libbpf_ms: Option<f64>,
    ratio_to_libbpf: Option<f64>,
    watch_runs: usize,
    libbpf_runs: usize,
    libbpf_error: Option<&'a str>,
    libbpf_setup_events: Option<u64>,
    watch_warm_ms: Option<f64>,
    warm_ratio_to_libbpf: Option<f64>,
    /// watch until `all ready:`, cache warm; the floor with the same functions (--also).
    watch_full_ms: Option<f64>,
    libbpf_full_ms: Option<f64>,
    full_ratio_to_libbpf: Option<f64>,
    /// watch with its programs loaded on one thread (first, warm), and that over the
    /// default (side by side): above 1, loading side by side gained.
    watch_one_thread_ms: Option<f64>,
    watch_one_thread_warm_ms: Option<f64>,
    load_speedup: Option<f64>,
    load_speedup_warm: Option<f64>,
}

/// One throughput mode in bench.json's `flood_lines`.
#[derive(Serialize)]
struct FloodJson {
    floods: usize,
    sent: u64,
    received: u64,
    lost: u64,
    write_share: Option<f64>,
}

impl FloodJson {
    fn new(f: &FloodRx) -> Self {
        Self {
            floods: f.floods,
            sent: f.sent,
            received: f.received,
            lost: f.lost(),
            write_share: dec4(f.write_share),
        }
    }
}

/// Four decimal places, as bench.json has always carried them.
fn dec4(v: Option<f64>) -> Option<f64> {
    v.map(|v| (v * 1e4).round() / 1e4)
}

impl<'a> MethodJson<'a> {
    fn new(m: &'a MethodAttach) -> Self {
        Self {
            watch_ms: dec4(m.watch_ms),
            libbpf_ms: dec4(m.libbpf_ms),
            ratio_to_libbpf: dec4(m.ratio_to_libbpf()),
            watch_runs: m.watch_runs,
            libbpf_runs: m.libbpf_runs,
            libbpf_error: m.libbpf_failed.as_deref(),
            libbpf_setup_events: m.libbpf_setup_events,
            watch_warm_ms: dec4(m.watch_warm_ms),
            warm_ratio_to_libbpf: dec4(m.warm_ratio_to_libbpf()),
            watch_full_ms: dec4(m.watch_full_ms),
            libbpf_full_ms: dec4(m.libbpf_full_ms),
            full_ratio_to_libbpf: dec4(m.full_ratio_to_libbpf()),
            watch_one_thread_ms: dec4(m.watch_one_thread_ms),
            watch_one_thread_warm_ms: dec4(m.watch_one_thread_warm_ms),
            load_speedup: dec4(m.load_speedup()),
            load_speedup_warm: dec4(m.load_speedup_warm()),
        }
    }
}

impl<'a> KernelJson<'a> {
    fn new(r: &'a Reduced) -> Self {
        let share = |mode: &str| dec4(r.bpf_share.get(mode).map(|x| x.0));
        let runs = |mode: &str| dec4(r.bpf_share.get(mode).map(|x| x.1));
        Self {
            attach_ms: dec4(r.attach_ms),
            attach_ms_bpftrace: dec4(r.attach_ms_bpftrace),
            attach_speedup: dec4(r.attach_speedup()),
            attach_speedup_libbpf: dec4(r.bpftrace_over_libbpf()),
            attach_ms_self_reported: dec4(r.attach_ms_self),
            attach_runs: r.attach_runs,
            attach_method: r.attach_method.as_deref(),
            outer_setup: r.outer_setup.as_deref(),
            outer_setup_module: r.outer_setup_module.as_deref(),
            attach_ms_libbpf: dec4(r.attach_ms_libbpf()),
            attach_ratio_to_libbpf: dec4(r.attach_ratio_to_libbpf()),
            attach_ms_warm: dec4(r.attach_ms_warm),
            attach_ratio_warm_to_libbpf: dec4(r.attach_ratio_warm_to_libbpf()),
            attach_by_method: r
                .attach_by_method
                .iter()
                .map(|(method, m)| (method.as_str(), MethodJson::new(m)))
                .collect(),
            throughput_ratio: dec4(r.throughput_ratio()),
            throughput_ratio_kprobe: dec4(r.throughput_ratio_kprobe()),
            throughput_ratio_bpftrace: dec4(r.throughput_ratio_bpftrace()),
            throughput_ratio_floor: dec4(r.ratio_floor),
            throughput_ratio_no_slow_poll_events: dec4(r.ratio_watch_noslow),
            throughput_ratio_floods: r.ratio_rounds,
            poll_lines_per_flood: dec4(r.poll_lines_watch),
            bpf_time_share_watch: share("watch"),
            bpf_time_share_kprobe: share("kprobe"),
            bpf_time_share_bpftrace: share("bpftrace"),
            bpf_time_share_floor: share("floor"),
            bpf_runs_per_flood_watch: runs("watch"),
            bpf_runs_per_flood_kprobe: runs("kprobe"),
            bpf_runs_per_flood_bpftrace: runs("bpftrace"),
            bpf_runs_per_flood_floor: runs("floor"),
            bpf_runs_per_message_watch: dec4(r.runs_per_message("watch")),
            bpf_runs_per_message_kprobe: dec4(r.runs_per_message("kprobe")),
            bpf_runs_per_message_bpftrace: dec4(r.runs_per_message("bpftrace")),
            bpf_runs_per_message_floor: dec4(r.runs_per_message("floor")),
            msgs_per_sec_untraced: dec4(r.rate_none),
            msgs_per_sec_watch: dec4(r.rate_watch),
            msgs_per_sec_kprobe: dec4(r.rate_kprobe),
            msgs_per_sec_bpftrace: dec4(r.rate_bpftrace),
            msgs_per_sec_floor: dec4(r.rate_floor),
            msgs_per_sec_watch_noslow: dec4(r.rate_watch_noslow),
            msgs_per_sec_serial_only: dec4(r.rate_serial_only),
            flood_lines: r
                .flood_rx
                .iter()
                .map(|(mode, f)| (mode.as_str(), FloodJson::new(f)))
                .collect(),
            setups: r.setups,
            setups_ok: r.setups_ok,
            events: r.events,
            lost: r.lost,
            events_bpftrace: r.events_bpftrace,
            lost_bpftrace: r.lost_bpftrace,
            watch_idle_rss_kib: r.watch_idle_rss_kib,
            watch_idle_hwm_kib: r.watch_idle_hwm_kib,
            watch_burst_rss_kib: r.watch_burst_rss_kib,
            watch_burst_hwm_kib: r.watch_burst_hwm_kib,
            agent_idle_rss_kib: r.agent_idle_rss_kib,
            agent_idle_hwm_kib: r.agent_idle_hwm_kib,
            watch_idle_heap_kib: r.watch_idle_heap_kib,
            agent_idle_heap_kib: r.agent_idle_heap_kib,
            agent_burst_rss_kib: r.agent_burst_rss_kib,
            agent_burst_hwm_kib: r.agent_burst_hwm_kib,
            bpftrace_burst_hwm_kib: r.bpftrace_burst_hwm_kib,
            binary_bytes: r.binary_bytes,
            mttcg: r.mttcg,
            load_threads: r.load_threads,
            bpftrace_version: r.bpftrace_version.as_deref(),
            bpftrace_unavailable: r.bpftrace_unavailable.as_deref(),
            stopped_by_second_sigint: &r.stop_resent,
            stopped_by_sigkill: &r.stop_killed,
            stuck_floods: &r.stuck,
        }
    }
}

/// bench.json: `{"<kernel release>": {...}, ...}`, pretty-printed, with a final newline.
pub fn to_json(results: &BTreeMap<String, Reduced>) -> serde_json::Result<String> {
    let kernels: BTreeMap<&str, KernelJson> = results
        .iter()
        .map(|(release, r)| (release.as_str(), KernelJson::new(r)))
        .collect();
    let mut json = serde_json::to_string_pretty(&kernels)?;
    json.push('\n');
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::reduce::reduce;
    use crate::bench::run::parse;
    use serde_json::{Value, json};

    /// Every kind of line the guest prints, once or more.
    const CONSOLE: &str = "NPT-BENCH attach_ms 1000\nNPT-BENCH attach_method fentry\n\
        NPT-BENCH attach_watch fentry 1000\nNPT-BENCH attach_watch kprobe 900\n\
        NPT-BENCH outer_setup netcons_netpoll_setup netconsole\n\
        NPT-BENCH attach_libbpf fentry 250\nNPT-BENCH attach_libbpf kprobe 300\n\
        NPT-BENCH attach_ms 3000\nNPT-BENCH attach_watch fentry 3000\nNPT-BENCH attach_ms_self 812.5\n\
        NPT-BENCH attach_ms_warm 333.3333\nNPT-BENCH attach_ms_bpftrace 4321.123456\n\
        NPT-BENCH attach_libbpf_failed kprobe attaching poll_kprobe: No such \"file\"\n\
        NPT-BENCH attach_ms 2000\nNPT-BENCH attach_watch fentry 2000\nNPT-BENCH attach_libbpf fentry 200\n\
        NPT-BENCH libbpf_setup_events fentry 1\nNPT-BENCH attach_watch_warm fentry 300\n\
        NPT-BENCH attach_watch_warm fentry 260\nNPT-BENCH attach_watch_full fentry 900\n\
        NPT-BENCH attach_watch_one_thread fentry 2400\nNPT-BENCH attach_watch_one_thread fentry 2600\n\
        NPT-BENCH attach_watch_one_thread_warm fentry 350\n\
        NPT-BENCH attach_watch_full fentry 700\nNPT-BENCH attach_libbpf_full fentry 400\n\
        NPT-BENCH rate_serial_only 5000\nNPT-BENCH rate_none 1000\n\
        NPT-BENCH rate_watch 990\nNPT-BENCH bpf_watch 1000000 4 1000.0\nNPT-BENCH rate_none 1000\n\
        NPT-BENCH rate_kprobe 900\nNPT-BENCH bpf_kprobe 3000000 7 333.0\nNPT-BENCH rate_none 500\n\
        NPT-BENCH rate_watch_noslow 480\nNPT-BENCH rate_none 510\nNPT-BENCH rate_bpftrace 300\n\
        NPT-BENCH bpf_bpftrace 9000000 2 777.7\nNPT-BENCH rate_none 490\nNPT-BENCH poll_lines_watch 12\n\
        NPT-BENCH rate_floor 441\nNPT-BENCH bpf_floor 500000 400 1000.0\nNPT-BENCH flood_rx floor 200 200 11.0 40.0\n\
        NPT-BENCH flood_rx none 200 200 10.0 100.0\nNPT-BENCH flood_rx watch 200 190 12.0 36.0\n\
        NPT-BENCH setups 50\nNPT-BENCH setups_ok 49\nNPT-BENCH events 49\nNPT-BENCH lost 0\n\
        NPT-BENCH events_bpftrace 48\nNPT-BENCH lost_bpftrace 1\nNPT-BENCH watch_idle_hwm_kib 5000\n\
        NPT-BENCH watch_idle_rss_kib 4000\nNPT-BENCH watch_burst_hwm_kib 6000\n\
        NPT-BENCH watch_burst_rss_kib 5500\nNPT-BENCH agent_idle_rss_kib 3000\n\
        NPT-BENCH agent_idle_hwm_kib 3100\nNPT-BENCH watch_idle_heap_kib 700\n\
        NPT-BENCH agent_idle_heap_kib 600\nNPT-BENCH agent_burst_hwm_kib 3500\n\
        NPT-BENCH agent_burst_rss_kib 3400\nNPT-BENCH stop_resent bpftrace\nNPT-BENCH stop_killed floor\n\
        NPT-BENCH stuck_kprobe 1\nNPT-BENCH bpftrace_burst_hwm_kib 40000\nNPT-BENCH bpftrace_version v0.17.0\n";

    fn json_of(console: &str, binary_bytes: u64) -> Value {
        let results =
            BTreeMap::from([("6.12.9".to_string(), reduce(&parse(console), binary_bytes))]);
        let text = to_json(&results).expect("serialises");
        assert!(text.ends_with("}\n"), "{text}");
        let v: Value = serde_json::from_str(&text).expect("bench.json is JSON");
        v["6.12.9"].clone()
    }

    #[test]
    fn bench_json_keeps_its_names_and_order() {
        // serde_json's Value sorts keys: read the order from the text, by indentation.
        let results = BTreeMap::from([("6.12.9".to_string(), reduce(&parse(CONSOLE), 1))]);
        let text = to_json(&results).expect("serialises");
        let keys_at = |indent: usize| -> Vec<String> {
            text.lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix(&" ".repeat(indent))?.strip_prefix('"')?;
                    let (key, after) = rest.split_once('"')?;
                    after.starts_with(':').then(|| key.to_string())
                })
                .collect()
        };
        let keys = keys_at(4);
        assert_eq!(
            keys,
            [
                "attach_ms",
                "attach_ms_bpftrace",
                "attach_speedup",
                "attach_speedup_libbpf",
                "attach_ms_self_reported",
                "attach_runs",
                "attach_method",
                "outer_setup",
                "outer_setup_module",
                "attach_ms_libbpf",
                "attach_ratio_to_libbpf",
                "attach_ms_warm",
                "attach_ratio_warm_to_libbpf",
                "attach_by_method",
                "throughput_ratio",
                "throughput_ratio_kprobe",
                "throughput_ratio_bpftrace",
                "throughput_ratio_floor",
                "throughput_ratio_no_slow_poll_events",
                "throughput_ratio_floods",
                "poll_lines_per_flood",
                "bpf_time_share_watch",
                "bpf_time_share_kprobe",
                "bpf_time_share_bpftrace",
                "bpf_time_share_floor",
                "bpf_runs_per_flood_watch",
                "bpf_runs_per_flood_kprobe",
                "bpf_runs_per_flood_bpftrace",
                "bpf_runs_per_flood_floor",
                "bpf_runs_per_message_watch",
                "bpf_runs_per_message_kprobe",
                "bpf_runs_per_message_bpftrace",
                "bpf_runs_per_message_floor",
                "msgs_per_sec_untraced",
                "msgs_per_sec_watch",
                "msgs_per_sec_kprobe",
                "msgs_per_sec_bpftrace",
                "msgs_per_sec_floor",
                "msgs_per_sec_watch_noslow",
                "msgs_per_sec_serial_only",
                "flood_lines",
                "setups",
                "setups_ok",
                "events",
                "lost",
                "events_bpftrace",
                "lost_bpftrace",
                "watch_idle_rss_kib",
                "watch_idle_hwm_kib",
                "watch_burst_rss_kib",
                "watch_burst_hwm_kib",
                "agent_idle_rss_kib",
                "agent_idle_hwm_kib",
                "watch_idle_heap_kib",
                "agent_idle_heap_kib",
                "agent_burst_rss_kib",
                "agent_burst_hwm_kib",
                "bpftrace_burst_hwm_kib",
                "binary_bytes",
                "mttcg",
                "load_threads",
                "bpftrace_version",
                "bpftrace_unavailable",
                "stopped_by_second_sigint",
                "stopped_by_sigkill",
                "stuck_floods",
            ]
        );
        assert_eq!(keys_at(6), ["fentry", "kprobe", "floor", "none", "watch"]);
        let at8 = keys_at(8);
        let (methods, floods) = at8.split_at(32);
        for keys in floods.chunks(5) {
            assert_eq!(keys, ["floods", "sent", "received", "lost", "write_share"]);
        }
        for keys in methods.chunks(16) {
            assert_eq!(
                keys,
                [
                    "watch_ms",
                    "libbpf_ms",
                    "ratio_to_libbpf",
                    "watch_runs",
                    "libbpf_runs",
                    "libbpf_error",
                    "libbpf_setup_events",
                    "watch_warm_ms",
                    "warm_ratio_to_libbpf",
                    "watch_full_ms",
                    "libbpf_full_ms",
                    "full_ratio_to_libbpf",
                    "watch_one_thread_ms",
                    "watch_one_thread_warm_ms",
                    "load_speedup",
                    "load_speedup_warm",
                ]
            );
        }
    }

    #[test]
    fn bench_json_values_four_places_counts_strings_and_nulls() {
        let k = json_of(CONSOLE, 12_345_678);
        // Medians and ratios, rounded to four decimal places.
        assert_eq!(k["attach_ms"], json!(2000.0));
        assert_eq!(k["attach_ms_bpftrace"], json!(4321.1235));
        assert_eq!(k["attach_speedup"], json!(2.1606));
        // bpftrace over the floor itself (default method's median, 225 ms).
        assert_eq!(k["attach_speedup_libbpf"], json!(19.205));
        assert_eq!(k["attach_ms_warm"], json!(333.3333));
        assert_eq!(k["attach_ms_libbpf"], json!(225.0));
        assert_eq!(k["attach_ratio_to_libbpf"], json!(8.8889));
        assert_eq!(k["attach_ratio_warm_to_libbpf"], json!(1.4815));
        assert_eq!(k["throughput_ratio"], json!(0.99));
        assert_eq!(k["throughput_ratio_kprobe"], json!(1.2));
        assert_eq!(k["throughput_ratio_floods"], json!(5));
        // The full libbpf floor's flood, against its untraced neighbour (490).
        assert_eq!(k["throughput_ratio_floor"], json!(0.9));
        assert_eq!(k["bpf_time_share_floor"], json!(0.0005));
        assert_eq!(k["bpf_runs_per_message_floor"], json!(2.0));
        assert_eq!(k["msgs_per_sec_floor"], json!(441.0));
        assert_eq!(k["bpf_time_share_watch"], json!(0.001));
        assert_eq!(k["bpf_time_share_bpftrace"], json!(0.0116));
        assert_eq!(k["bpf_runs_per_flood_kprobe"], json!(7.0));
        // watch's floods sent 200 lines each: 4 runs a flood is 0.02 a message; kprobe's
        // floods were not received (no flood_rx line): unknown, not a division by zero.
        assert_eq!(k["bpf_runs_per_message_watch"], json!(0.02));
        assert_eq!(k["bpf_runs_per_message_kprobe"], Value::Null);
        // Counts as integers, the peak bpftrace reached under its own name.
        assert_eq!(k["attach_runs"], json!(3));
        // The lab's conditions unless asked otherwise.
        assert_eq!(k["mttcg"], json!(false));
        assert_eq!(k["load_threads"], Value::Null);
        assert_eq!(k["lost"], json!(0));
        assert_eq!(k["bpftrace_burst_hwm_kib"], json!(40000));
        assert_eq!(k["binary_bytes"], json!(12_345_678));
        assert_eq!(k["stuck_floods"], json!(["kprobe"]));
        assert_eq!(
            k["flood_lines"],
            json!({
                "floor": {"floods": 1, "sent": 200, "received": 200, "lost": 0, "write_share": 0.275},
                "none": {"floods": 1, "sent": 200, "received": 200, "lost": 0, "write_share": 0.1},
                "watch": {"floods": 1, "sent": 200, "received": 190, "lost": 10, "write_share": 0.3333},
            })
        );
        assert_eq!(k["stopped_by_sigkill"], json!(["floor"]));
        assert_eq!(k["bpftrace_unavailable"], Value::Null);
        assert_eq!(k["outer_setup"], json!("netcons_netpoll_setup"));
        assert_eq!(k["outer_setup_module"], json!("netconsole"));
        assert_eq!(
            k["attach_by_method"],
            json!({
                "fentry": {"watch_ms": 2000.0, "libbpf_ms": 225.0, "ratio_to_libbpf": 8.8889,
                    "watch_runs": 3, "libbpf_runs": 2, "libbpf_error": null,
                    "libbpf_setup_events": 1, "watch_warm_ms": 280.0,
                    "warm_ratio_to_libbpf": 1.2444, "watch_full_ms": 800.0,
                    "libbpf_full_ms": 400.0, "full_ratio_to_libbpf": 2.0,
                    "watch_one_thread_ms": 2500.0, "watch_one_thread_warm_ms": 350.0,
                    "load_speedup": 1.25, "load_speedup_warm": 1.25},
                "kprobe": {"watch_ms": 900.0, "libbpf_ms": 300.0, "ratio_to_libbpf": 3.0,
                    "watch_runs": 1, "libbpf_runs": 1, "libbpf_error": null,
                    "libbpf_setup_events": null, "watch_warm_ms": null,
                    "warm_ratio_to_libbpf": null, "watch_full_ms": null,
                    "libbpf_full_ms": null, "full_ratio_to_libbpf": null,
                    "watch_one_thread_ms": null, "watch_one_thread_warm_ms": null,
                    "load_speedup": null, "load_speedup_warm": null},
            })
        );
    }

    #[test]
    fn bench_json_of_a_kernel_without_numbers_is_nulls_and_zeros() {
        let k = json_of(
            "NPT-BENCH bpftrace_unavailable no \"bpftrace\"\\here\u{1}\n",
            0,
        );
        assert_eq!(
            k["bpftrace_unavailable"],
            json!("no \"bpftrace\"\\here\u{1}")
        );
        assert_eq!((&k["attach_ms"], &k["lost"]), (&Value::Null, &Value::Null));
        assert_eq!(
            (&k["attach_runs"], &k["binary_bytes"]),
            (&json!(0), &json!(0))
        );
        assert_eq!(k["stopped_by_second_sigint"], json!([]));
        assert_eq!(k["flood_lines"], json!({}));
        let fentry = &k["attach_by_method"]["fentry"];
        assert_eq!(
            (&fentry["libbpf_ms"], &fentry["libbpf_runs"]),
            (&Value::Null, &json!(0))
        );
    }

    #[test]
    fn the_outer_set_up_is_named_with_its_module() {
        let named = |console: &str| outer_setup_name(&reduce(&parse(console), 0));
        assert_eq!(
            named("NPT-BENCH outer_setup netcons_netpoll_setup netconsole\n"),
            "netconsole:netcons_netpoll_setup"
        );
        assert_eq!(
            named("NPT-BENCH outer_setup netpoll_setup\n"),
            "netpoll_setup"
        );
        assert_eq!(named(""), "-");
        let k = json_of("NPT-BENCH outer_setup netpoll_setup\n", 0);
        assert_eq!(
            (&k["outer_setup"], &k["outer_setup_module"]),
            (&json!("netpoll_setup"), &Value::Null)
        );
    }

    #[test]
    fn a_failed_floor_method_carries_its_error() {
        let console = "NPT-BENCH attach_ms 800\nNPT-BENCH attach_method kprobe\nNPT-BENCH attach_watch kprobe 800\n\
                       NPT-BENCH attach_libbpf_failed fentry loading the fentry programs: Invalid argument\n\
                       NPT-BENCH attach_libbpf kprobe 100\n";
        let k = json_of(console, 0);
        assert_eq!(
            k["attach_by_method"]["fentry"],
            json!({"watch_ms": null, "libbpf_ms": null, "ratio_to_libbpf": null, "watch_runs": 0,
                "libbpf_runs": 0, "libbpf_error": "loading the fentry programs: Invalid argument",
                "libbpf_setup_events": null, "watch_warm_ms": null, "warm_ratio_to_libbpf": null,
                "watch_full_ms": null, "libbpf_full_ms": null, "full_ratio_to_libbpf": null,
                "watch_one_thread_ms": null, "watch_one_thread_warm_ms": null,
                "load_speedup": null, "load_speedup_warm": null})
        );
        let r = reduce(&parse(console), 0);
        assert!(
            by_method_line(&r).contains("fentry - / failed: loading the fentry programs"),
            "{}",
            by_method_line(&r)
        );
    }

    #[test]
    fn the_table_leads_with_ratios_then_absolute_values() {
        let results = BTreeMap::from([
            ("6.12.9".to_string(), reduce(&parse(CONSOLE), 12_345_678)),
            ("5.10.0".to_string(), reduce(&[], 0)),
        ]);
        let labels = BTreeMap::from([
            ("6.12.9".to_string(), "6.12"),
            ("5.10.0".to_string(), "5.10"),
        ]);
        let table = table(&results, &labels);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "");
        assert!(lines[1].starts_with("ratios first"), "{table}");
        // Rows by release, so 5.10 before 6.12; a kernel without numbers shows dashes.
        assert_eq!(
            lines[4],
            "5.10           -         -         -         -         -        -/- (-)        -/- (-)         -       0.0"
        );
        assert_eq!(
            lines[5],
            "6.12        2.16      8.89     0.990     1.200     0.600      49/50 (0)      48/50 (1)      3000      11.8"
        );
        assert!(
            table.contains(
                "\n6.12     fentry     2000.0      225.0     4321.1      510      990      900      300     5000       5000       6000       3500\n"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "fentry 2000.0 / 225.0 (8.89x; cache warm 280.0 ms, 1.24x; full 800.0 / 400.0, 2.00x; one load thread 2500.0 / 350.0 ms, 1.25x / 1.25x); kprobe 900.0 / 300.0 (3.00x; cache warm - ms, -x; full - / -, -x; one load thread - / - ms, -x / -x)"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "       kprobe: tracing programs ran 7 times per flood, 0.9009% of its time\n"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "       floor: tracing programs ran 400 times per flood (2.00 per message), 0.0500% of its time\n"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "       lines received/sent (writes' share of a flood's time): floor 200/200 (0.28); none 200/200 (0.10); watch 190/200 (0.33)\n"
            ),
            "{table}"
        );
        // A kernel without floods has no such line.
        assert_eq!(table.matches("lines received/sent").count(), 1, "{table}");
        assert!(
            table.contains(
                "needed a second SIGINT: [bpftrace]; SIGKILL: [floor]; floods stuck: [kprobe]"
            ),
            "{table}"
        );
        // Without attach lines both methods still appear, as dashes.
        assert!(
            table.contains(
                "fentry - / - (-x; cache warm - ms, -x; full - / -, -x; one load thread - / - ms, -x / -x); kprobe - / - (-x; cache warm - ms, -x; full - / -, -x; one load thread - / - ms, -x / -x)"
            ),
            "{table}"
        );
    }
}
