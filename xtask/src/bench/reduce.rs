//! From one kernel's `NPT-BENCH` lines to its numbers: medians over repetitions, traced
//! floods over their untraced neighbours, the programs' share of a flood, and the ratios
//! the report leads with. No I/O: what a guest printed in, numbers out.

use std::collections::BTreeMap;

/// One kernel's reduced numbers.
#[derive(Debug, Default)]
pub struct Reduced {
    pub attach_ms: Option<f64>,
    /// watch's default method again, with the cache of the kernel's BTF facts warm.
    pub attach_ms_warm: Option<f64>,
    pub attach_ms_self: Option<f64>,
    pub attach_ms_bpftrace: Option<f64>,
    pub attach_runs: usize,
    pub attach_method: Option<String>,
    /// The outer set-up all three tools trace (`outer_setup FUNCTION [MODULE]`):
    /// netpoll_setup, or netconsole's own netcons_netpoll_setup where the module sets
    /// netpoll up itself (7.3); the module holding it, None for vmlinux.
    pub outer_setup: Option<String>,
    pub outer_setup_module: Option<String>,
    /// watch and the libbpf floor loader, per attach method (`fentry`, `kprobe`).
    pub attach_by_method: BTreeMap<String, MethodAttach>,
    pub rate_none: Option<f64>,
    /// Per mode: median over rounds of (traced rate / the untraced floods next to it).
    pub ratio_watch: Option<f64>,
    pub ratio_kprobe: Option<f64>,
    pub ratio_bpftrace: Option<f64>,
    pub ratio_watch_noslow: Option<f64>,
    /// The full libbpf floor (`floor --also`) on the functions watch runs programs on
    /// during a flood: what a C tool doing about the same per-call work costs.
    pub ratio_floor: Option<f64>,
    pub ratio_rounds: usize,
    /// Per mode: median over floods of (tracing programs' run time / flood wall time), and
    /// of the programs' runs per flood (kernel.bpf_stats_enabled, see bench.sh's bpf_run).
    pub bpf_share: BTreeMap<String, (f64, f64)>,
    /// Per mode: what the receiver got of the floods (`flood_rx` lines).
    pub flood_rx: BTreeMap<String, FloodRx>,
    pub rate_watch: Option<f64>,
    pub rate_kprobe: Option<f64>,
    pub rate_watch_noslow: Option<f64>,
    pub poll_lines_watch: Option<f64>,
    pub rate_bpftrace: Option<f64>,
    pub rate_floor: Option<f64>,
    pub rate_serial_only: Option<f64>,
    pub setups: Option<u64>,
    pub setups_ok: Option<u64>,
    pub events: Option<u64>,
    pub lost: Option<u64>,
    pub events_bpftrace: Option<u64>,
    pub lost_bpftrace: Option<u64>,
    pub watch_idle_hwm_kib: Option<u64>,
    pub watch_idle_rss_kib: Option<u64>,
    pub watch_burst_hwm_kib: Option<u64>,
    pub watch_burst_rss_kib: Option<u64>,
    pub agent_idle_rss_kib: Option<u64>,
    pub agent_idle_hwm_kib: Option<u64>,
    /// The allocator's in-use KiB at idle (mallinfo2), beside RSS.
    pub watch_idle_heap_kib: Option<u64>,
    pub agent_idle_heap_kib: Option<u64>,
    pub agent_burst_hwm_kib: Option<u64>,
    pub agent_burst_rss_kib: Option<u64>,
    /// Tools that did not stop on the first SIGINT / at all (see bench.sh's stop_bg), and
    /// throughput floods that did not finish (stuck_<mode>).
    pub stop_resent: Vec<String>,
    pub stop_killed: Vec<String>,
    pub stuck: Vec<String>,
    pub bpftrace_burst_hwm_kib: Option<u64>,
    pub binary_bytes: u64,
    pub bpftrace_version: Option<String>,
    pub bpftrace_unavailable: Option<String>,
    /// The run's conditions, set by the host (`bench::Options`): a host thread per vCPU,
    /// and the tools' program-load threads (None: their default, one per CPU).
    pub mttcg: bool,
    pub load_threads: Option<u32>,
}

impl Reduced {
    /// Tracing program runs per message of `mode`'s floods: its median runs per flood over
    /// the lines each of its floods sent (None without both).
    pub fn runs_per_message(&self, mode: &str) -> Option<f64> {
        let runs = self.bpf_share.get(mode)?.1;
        let f = self.flood_rx.get(mode)?;
        let lines = f.sent as f64 / f.floods as f64;
        (f.floods > 0 && lines > 0.0).then(|| runs / lines)
    }

    pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
        match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
    pub fn throughput_ratio(&self) -> Option<f64> {
        self.ratio_watch
    }
    pub fn throughput_ratio_kprobe(&self) -> Option<f64> {
        self.ratio_kprobe
    }
    pub fn throughput_ratio_bpftrace(&self) -> Option<f64> {
        self.ratio_bpftrace
    }
    pub fn attach_speedup(&self) -> Option<f64> {
        Self::ratio(self.attach_ms_bpftrace, self.attach_ms)
    }
    /// bpftrace's attach over the floor's (default method): the most bpftrace ÷ ready
    /// could be with watch at the floor.
    pub fn bpftrace_over_libbpf(&self) -> Option<f64> {
        Self::ratio(self.attach_ms_bpftrace, self.attach_ms_libbpf())
    }
    /// The method the top-level libbpf numbers are for: watch's default (what `attach_ms`
    /// measured), else the first method the floor loader attached with.
    pub fn default_method(&self) -> Option<&str> {
        self.attach_method.as_deref().or_else(|| {
            self.attach_by_method
                .iter()
                .find(|(_, m)| m.libbpf_ms.is_some())
                .map(|(name, _)| name.as_str())
        })
    }
    pub fn attach_ms_libbpf(&self) -> Option<f64> {
        self.attach_by_method.get(self.default_method()?)?.libbpf_ms
    }
    /// watch's attach time over the floor's, same method: how far above the floor watch is.
    pub fn attach_ratio_to_libbpf(&self) -> Option<f64> {
        Self::ratio(self.attach_ms, self.attach_ms_libbpf())
    }
    /// The same with watch's cache of BTF facts warm.
    pub fn attach_ratio_warm_to_libbpf(&self) -> Option<f64> {
        Self::ratio(self.attach_ms_warm, self.attach_ms_libbpf())
    }
}

/// Attach times of one method: medians over the repetitions.
#[derive(Debug, Default, PartialEq)]
pub struct MethodAttach {
    /// First runs: no cache of the kernel's BTF facts.
    pub watch_ms: Option<f64>,
    pub watch_runs: usize,
    /// Later runs: the cache the first run wrote.
    pub watch_warm_ms: Option<f64>,
    pub libbpf_ms: Option<f64>,
    pub libbpf_runs: usize,
    /// The floor loader's last message when it did not get ready with this method.
    pub libbpf_failed: Option<String>,
    /// Outer set-up events the floor reported for one configfs enable (burst section):
    /// its programs run, not only attach.
    pub libbpf_setup_events: Option<u64>,
    /// The full attach (cache warm): watch until `all ready:` (the send path, tear-downs
    /// and console write too), and the floor attaching the same functions (`--also`).
    pub watch_full_ms: Option<f64>,
    pub libbpf_full_ms: Option<f64>,
    /// watch again with its programs loaded on one thread (NETPOLL_TRACE_LOAD_THREADS=1),
    /// first and warm, in the same repetitions: the A/B of loading side by side.
    pub watch_one_thread_ms: Option<f64>,
    pub watch_one_thread_warm_ms: Option<f64>,
}

impl MethodAttach {
    /// One thread's ready over the default's (first run): above 1, loading side by side
    /// gained.
    pub fn load_speedup(&self) -> Option<f64> {
        Reduced::ratio(self.watch_one_thread_ms, self.watch_ms)
    }
    pub fn load_speedup_warm(&self) -> Option<f64> {
        Reduced::ratio(self.watch_one_thread_warm_ms, self.watch_warm_ms)
    }
    pub fn ratio_to_libbpf(&self) -> Option<f64> {
        Reduced::ratio(self.watch_ms, self.libbpf_ms)
    }
    /// The full attach over the full floor's.
    pub fn full_ratio_to_libbpf(&self) -> Option<f64> {
        Reduced::ratio(self.watch_full_ms, self.libbpf_full_ms)
    }
    pub fn warm_ratio_to_libbpf(&self) -> Option<f64> {
        Reduced::ratio(self.watch_warm_ms, self.libbpf_ms)
    }
}

/// One mode's floods as the receiver saw them, summed over the mode's floods.
#[derive(Debug, Default, PartialEq)]
pub struct FloodRx {
    pub floods: usize,
    pub sent: u64,
    pub received: u64,
    /// Median over floods of (time the writes took / time to the last line received):
    /// near 1 where the writer sends itself (legacy console), far below it where a printk
    /// thread sends after the writes return (nbcon, 7.x), the case receiver timing is for.
    pub write_share: Option<f64>,
}

impl FloodRx {
    /// Lines netconsole (or the receiver) lost; never negative (a line seen twice counts
    /// once guest-side, but a bad line must not wrap the sum).
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// `flood_rx MODE SENT RECEIVED WRITE_MS ELAPSED_MS` lines: per mode, lines sent and
/// received summed and the writes' median share of a flood's time. A line with a field
/// missing or unparsable is skipped whole, so sent and received always pair up.
fn flood_rx(lines: &[(String, String)]) -> BTreeMap<String, FloodRx> {
    let mut per_mode: BTreeMap<String, (FloodRx, Vec<f64>)> = BTreeMap::new();
    for (k, v) in lines {
        if k != "flood_rx" {
            continue;
        }
        let w: Vec<&str> = v.split_whitespace().collect();
        let [mode, sent, received, write_ms, ms] = w[..] else {
            continue;
        };
        let (Ok(sent), Ok(received), Ok(write_ms), Ok(ms)) = (
            sent.parse::<u64>(),
            received.parse::<u64>(),
            write_ms.parse::<f64>(),
            ms.parse::<f64>(),
        ) else {
            continue;
        };
        let e = per_mode.entry(mode.to_string()).or_default();
        e.0.floods += 1;
        e.0.sent += sent;
        e.0.received += received;
        if ms > 0.0 {
            e.1.push(write_ms / ms);
        }
    }
    per_mode
        .into_iter()
        .map(|(mode, (mut f, shares))| {
            f.write_share = median(shares);
            (mode, f)
        })
        .collect()
}

/// The methods every report names, with nulls where a kernel gave no number.
const METHODS: [&str; 2] = ["fentry", "kprobe"];

/// One method's attach times, one list per kind of run.
#[derive(Default)]
struct Times {
    /// watch's first runs (no cache of the kernel's BTF facts).
    watch: Vec<f64>,
    /// watch's later runs (cache warm).
    warm: Vec<f64>,
    /// watch until `all ready:`.
    full: Vec<f64>,
    libbpf: Vec<f64>,
    /// The floor with `--also`.
    libbpf_full: Vec<f64>,
    /// watch with its programs loaded on one thread, first and warm.
    one_thread: Vec<f64>,
    one_thread_warm: Vec<f64>,
}

impl Times {
    /// The list a line of kind `key` goes into; None for other kinds.
    fn of(&mut self, key: &str) -> Option<&mut Vec<f64>> {
        Some(match key {
            "attach_watch" => &mut self.watch,
            "attach_watch_warm" => &mut self.warm,
            "attach_watch_full" => &mut self.full,
            "attach_libbpf" => &mut self.libbpf,
            "attach_libbpf_full" => &mut self.libbpf_full,
            "attach_watch_one_thread" => &mut self.one_thread,
            "attach_watch_one_thread_warm" => &mut self.one_thread_warm,
            _ => return None,
        })
    }
}

/// `attach_watch METHOD MS` (and `_warm`, `_full`), `attach_libbpf METHOD MS` (and
/// `_full`), `attach_libbpf_failed METHOD REASON` and `libbpf_setup_events METHOD N`
/// lines: per method, the medians and how many runs made them. fentry and kprobe are
/// always present; another method appears when a line names it.
fn attach_by_method(lines: &[(String, String)]) -> BTreeMap<String, MethodAttach> {
    let mut times: BTreeMap<String, Times> = METHODS
        .iter()
        .map(|m| (m.to_string(), Times::default()))
        .collect();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in lines {
        let (method, rest) = v.split_once(' ').unwrap_or((v.as_str(), ""));
        if method.is_empty() {
            continue;
        }
        match k.as_str() {
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
            key => {
                // Not an attach time: no method entry made for it.
                if Times::default().of(key).is_none() {
                    continue;
                }
                let Ok(ms) = rest.trim().parse::<f64>() else {
                    continue;
                };
                let t = times.entry(method.to_string()).or_default();
                if let Some(list) = t.of(key) {
                    list.push(ms);
                }
            }
        }
    }
    times
        .into_iter()
        .map(|(method, t)| {
            let libbpf_failed = failed.remove(&method).filter(|_| t.libbpf.is_empty());
            let m = MethodAttach {
                watch_runs: t.watch.len(),
                watch_ms: median(t.watch),
                watch_warm_ms: median(t.warm),
                libbpf_runs: t.libbpf.len(),
                libbpf_ms: median(t.libbpf),
                libbpf_failed,
                libbpf_setup_events: events.remove(&method),
                watch_full_ms: median(t.full),
                libbpf_full_ms: median(t.libbpf_full),
                watch_one_thread_ms: median(t.one_thread),
                watch_one_thread_warm_ms: median(t.one_thread_warm),
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

/// One kernel's `NPT-BENCH` lines reduced to its numbers; `binary_bytes` is the static
/// binary's size, measured on this side.
pub fn reduce(lines: &[(String, String)], binary_bytes: u64) -> Reduced {
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
    let outer = last_str("outer_setup");
    let mut outer = outer.as_deref().unwrap_or("").split_whitespace();
    let (outer_setup, outer_setup_module) = (
        outer.next().map(str::to_string),
        outer.next().map(str::to_string),
    );
    Reduced {
        attach_ms: median(floats("attach_ms")),
        attach_ms_warm: median(floats("attach_ms_warm")),
        attach_ms_self: median(floats("attach_ms_self")),
        attach_ms_bpftrace: median(floats("attach_ms_bpftrace")),
        attach_runs: floats("attach_ms").len(),
        attach_method: last_str("attach_method"),
        outer_setup,
        outer_setup_module,
        attach_by_method: attach_by_method(lines),
        rate_none: median(floats("rate_none")),
        ratio_watch: ratios.get("watch").copied(),
        ratio_kprobe: ratios.get("kprobe").copied(),
        ratio_bpftrace: ratios.get("bpftrace").copied(),
        ratio_watch_noslow: ratios.get("watch_noslow").copied(),
        ratio_floor: ratios.get("floor").copied(),
        ratio_rounds,
        bpf_share: bpf_shares(lines),
        flood_rx: flood_rx(lines),
        rate_watch: median(floats("rate_watch")),
        rate_kprobe: median(floats("rate_kprobe")),
        rate_watch_noslow: median(floats("rate_watch_noslow")),
        poll_lines_watch: median(floats("poll_lines_watch")),
        rate_bpftrace: median(floats("rate_bpftrace")),
        rate_floor: median(floats("rate_floor")),
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
        mttcg: false,
        load_threads: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::run::parse;

    #[test]
    fn reduces_medians_and_ratios() {
        let console = "x\nNPT-BENCH attach_ms 10.0\n[ 1.0] NPT-BENCH attach_ms 30.0\nNPT-BENCH attach_ms 20.0\n\
                       NPT-BENCH attach_ms_bpftrace 100\nNPT-BENCH rate_none 1000\nNPT-BENCH rate_watch 990\n\
                       NPT-BENCH events 5\nNPT-BENCH attach_method fentry\nNPT-BENCH bpftrace_unavailable a \"b\"\n";
        let r = reduce(&parse(console), 7);
        assert_eq!(r.attach_ms, Some(20.0));
        assert_eq!(r.attach_runs, 3);
        assert_eq!(r.attach_speedup(), Some(5.0));
        assert_eq!(r.throughput_ratio(), Some(0.99));
        assert_eq!(r.throughput_ratio_bpftrace(), None);
        assert_eq!(r.attach_method.as_deref(), Some("fentry"));
        assert_eq!(r.events, Some(5));
        assert_eq!(r.lost, None);
        assert_eq!(r.binary_bytes, 7);
        assert_eq!(r.bpftrace_unavailable.as_deref(), Some("a \"b\""));
    }

    #[test]
    fn the_outer_set_up_and_its_module() {
        // 7.3: netconsole's own set-up, in the module.
        let r = reduce(
            &parse("NPT-BENCH outer_setup netcons_netpoll_setup netconsole\n"),
            0,
        );
        assert_eq!(r.outer_setup.as_deref(), Some("netcons_netpoll_setup"));
        assert_eq!(r.outer_setup_module.as_deref(), Some("netconsole"));
        // Earlier kernels: netpoll_setup in vmlinux, no module.
        let r = reduce(&parse("NPT-BENCH outer_setup netpoll_setup\n"), 0);
        assert_eq!(r.outer_setup.as_deref(), Some("netpoll_setup"));
        assert_eq!(r.outer_setup_module, None);
        // A guest script from before the line: nothing known.
        let r = reduce(&parse("NPT-BENCH events 1\n"), 0);
        assert_eq!((r.outer_setup, r.outer_setup_module), (None, None));
    }

    #[test]
    fn medians_of_odd_even_unsorted_and_empty() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn ratios_need_both_numbers_and_a_positive_denominator() {
        assert_eq!(Reduced::ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(Reduced::ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(Reduced::ratio(None, Some(2.0)), None);
        assert_eq!(Reduced::ratio(Some(3.0), None), None);
    }

    #[test]
    fn the_last_value_of_a_count_wins_and_unparsable_ones_are_skipped() {
        let console = "NPT-BENCH events 5\nNPT-BENCH events 7\nNPT-BENCH lost x\n\
                       NPT-BENCH rate_none 100\nNPT-BENCH rate_none fast\nNPT-BENCH rate_none 300\n";
        let r = reduce(&parse(console), 0);
        assert_eq!(r.events, Some(7));
        assert_eq!(r.lost, None);
        assert_eq!(r.rate_none, Some(200.0));
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
        // The same lines through reduce: the ratios and the flood count land in their fields.
        let r = reduce(&parse(console), 0);
        assert_eq!((r.ratio_rounds, r.ratio_bpftrace), (4, None));
        assert!((r.throughput_ratio_kprobe().unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(r.rate_watch, Some((990.0 + 495.0) / 2.0));
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
    fn what_the_receiver_got_per_mode() {
        // 7.3-like: the writes take a tenth of the flood, one untraced flood lost 3 lines.
        let console = "NPT-BENCH flood_rx none 200 200 10.0 100.0
NPT-BENCH flood_rx watch 200 200 12.0 110.0
                       NPT-BENCH flood_rx none 200 197 30.0 100.0
NPT-BENCH flood_rx none 200 200 20.0 100.0
                       NPT-BENCH flood_rx kprobe 200
NPT-BENCH flood_rx kprobe 200 x 1.0 2.0
                       NPT-BENCH flood_rx bpftrace 200 0 5.0 0
";
        let rx = flood_rx(&parse(console));
        let none = &rx["none"];
        assert_eq!(
            (none.floods, none.sent, none.received, none.lost()),
            (3, 600, 597, 3)
        );
        assert_eq!(none.write_share, Some(0.2));
        assert_eq!(rx["watch"].lost(), 0);
        // Incomplete lines are skipped whole: no kprobe floods at all.
        assert!(!rx.contains_key("kprobe"), "{rx:?}");
        // Nothing received and no time to divide by: counted, no share.
        let bt = &rx["bpftrace"];
        assert_eq!((bt.floods, bt.lost(), bt.write_share), (1, 200, None));
        // Through reduce, into its field.
        assert_eq!(reduce(&parse(console), 0).flood_rx, rx);
    }

    #[test]
    fn more_received_than_sent_is_no_loss() {
        let f = FloodRx {
            sent: 10,
            received: 12,
            ..Default::default()
        };
        assert_eq!(f.lost(), 0);
    }

    #[test]
    fn escalations_are_kept() {
        let console = "NPT-BENCH stop_resent bpftrace\nNPT-BENCH stuck_kprobe 1\n";
        let r = reduce(&parse(console), 0);
        assert_eq!(r.stop_resent, ["bpftrace"]);
        assert_eq!(r.stuck, ["kprobe"]);
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
                       NPT-BENCH attach_watch_warm fentry 300\nNPT-BENCH attach_watch_warm fentry 260\n\
                       NPT-BENCH attach_ms_warm 300\n";
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
        assert_eq!(fentry.libbpf_setup_events, Some(1));
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
        assert_eq!(r.attach_ratio_warm_to_libbpf(), Some(1.5));
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
    }

    #[test]
    fn without_a_default_method_the_first_one_the_floor_attached_is_used() {
        let console = "NPT-BENCH attach_ms 800\nNPT-BENCH attach_libbpf kprobe 100\n";
        let r = reduce(&parse(console), 0);
        assert_eq!(r.default_method(), Some("kprobe"));
        assert_eq!(r.attach_ratio_to_libbpf(), Some(8.0));
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
    }
}
