//! `netpoll-trace dump`: the post-mortem. Reads the pinned flight recorder (or a
//! JSON-lines file) without attaching anything and prints it with the same
//! enrichment and diagnosis as `watch`.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use netpoll_trace_common::{CounterKey, function};
use serde::Serialize;
use serde_json::Value;

use crate::{
    correlate,
    diagnosis::{self, Diagnosis},
    enrich::Enricher,
    errno::Errno,
    event::{SetupFn, SetupRecord, cstr},
    exit::Exit,
    kmsg::{KernelLog, KmsgReader},
    output,
    pipeline::{host_context, monotonic_ns},
    poll::PollSummary,
    recorder::{self, RingAccount, Snapshot},
    schema,
};

pub struct DumpArgs {
    pub json: bool,
    pub pin_dir: PathBuf,
    pub from: Option<PathBuf>,
}

pub fn run(args: DumpArgs) -> Result<Exit> {
    match &args.from {
        Some(file) => from_file(file, args.json),
        None => from_pins(&args.pin_dir, args.json),
    }
}

/// The recorder's own line: what it holds and what it lost.
#[derive(Debug, Serialize)]
struct RecorderLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ns: u64,
    pin_dir: &'a Path,
    schema: u32,
    ring_size: u32,
    /// Events ever recorded (the next sequence number).
    recorded: u64,
    kept: u64,
    overwritten: u64,
    /// Events that got no sequence number, and counter updates dropped.
    unrecorded: u64,
    counters_full: u64,
    missing_seqs: &'a [u64],
    /// Programs whose links are pinned: recording continues without a process.
    pinned_links: &'a [String],
    memlock_bytes: u64,
}

/// Calls of one function on one device with one result.
#[derive(Debug, Serialize, PartialEq)]
struct CounterLine {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ns: u64,
    dev: Option<String>,
    #[serde(rename = "fn")]
    function: Option<SetupFn>,
    ret: i32,
    errno: Option<&'static str>,
    count: u64,
}

fn counter_line(k: &CounterKey, count: u64, now: u64) -> CounterLine {
    let function = match k.function {
        function::NETPOLL_SETUP => Some(SetupFn::NetpollSetup),
        function::UNDER_NETPOLL_SETUP => Some(SetupFn::InnerNetpollSetup),
        _ => None,
    };
    CounterLine {
        kind: "counter",
        ts_ns: now,
        dev: cstr(&k.dev_name),
        function,
        ret: k.ret,
        errno: Errno::from_ret(k.ret).and_then(Errno::name),
        count,
    }
}

fn from_pins(dir: &Path, json: bool) -> Result<Exit> {
    let now = monotonic_ns();
    let snap = recorder::read(dir, now)?;
    let seqs: Vec<u64> = snap.events.iter().map(|(s, _)| *s).collect();
    let account = RingAccount::new(snap.meta.next_seq, snap.meta.ring_size, &seqs);

    // Names, drivers and symbols are looked up now: the device may have changed
    // or gone since the event was recorded, so every record says so.
    let enricher = Enricher::new();
    let records: Vec<SetupRecord> = snap
        .events
        .iter()
        .filter_map(|(seq, ev)| {
            let mut r = SetupRecord::from_event(ev)?;
            enricher.enrich(&mut r);
            r.seq = Some(*seq);
            r.resolved_at = Some("dump");
            Some(r)
        })
        .collect();
    let mut log = KernelLog::default();
    if let Ok(mut k) = KmsgReader::open_from_start() {
        k.drain_into(&mut log);
    }
    let attempts = diagnosed(records, &mut log);
    let mut counters: Vec<CounterLine> = snap.counters.iter().map(|(k, n)| counter_line(k, *n, now)).collect();
    counters.sort_by(|a, b| (&a.dev, a.function.map(SetupFn::as_str), a.ret).cmp(&(&b.dev, b.function.map(SetupFn::as_str), b.ret)));

    let head = RecorderLine {
        kind: "recorder",
        ts_ns: now,
        pin_dir: dir,
        schema: snap.meta.schema,
        ring_size: snap.meta.ring_size,
        recorded: account.recorded,
        kept: account.kept,
        overwritten: account.overwritten,
        unrecorded: snap.unrecorded,
        counters_full: snap.counters_full,
        missing_seqs: &account.missing,
        pinned_links: &snap.links,
        memlock_bytes: snap.memlock_bytes,
    };
    if json {
        println!("{}", serde_json::to_string(&head)?);
        print_attempts_json(&attempts)?;
        for c in &counters {
            println!("{}", serde_json::to_string(c)?);
        }
        for p in &snap.polls {
            println!("{}", serde_json::to_string(p)?);
        }
    } else {
        print!("{}", render_head(&head, &snap, now));
        print_attempts_human(&attempts, true);
        print!("{}", render_counters(&counters, &snap.polls));
    }
    Ok(Exit::Ok)
}

type Diagnosed = Vec<(correlate::Attempt, Option<Diagnosis>)>;

fn diagnosed(records: Vec<SetupRecord>, log: &mut KernelLog) -> Diagnosed {
    let ctx = host_context();
    correlate::group(records)
        .into_iter()
        .map(|a| {
            let d = diagnosis::diagnose(&a, &ctx, log);
            (a, d)
        })
        .collect()
}

fn print_attempts_json(attempts: &Diagnosed) -> Result<()> {
    for (a, d) in attempts {
        for r in a.records() {
            println!("{}", output::json_line(r));
        }
        if let Some(d) = d {
            println!("{}", serde_json::to_string(d)?);
        }
    }
    Ok(())
}

fn print_attempts_human(attempts: &Diagnosed, with_seq: bool) {
    let since = attempts.first().map_or(0, |(a, _)| a.root.ts_ns);
    for (a, d) in attempts {
        for r in a.records() {
            let line = output::human_line(r, since);
            match r.seq.filter(|_| with_seq) {
                Some(seq) => println!("#{seq:<5} {line}"),
                None => println!("{line}"),
            }
        }
        if let Some(d) = d {
            println!("{}", d.render().trim_end());
        }
    }
}

fn render_head(h: &RecorderLine, snap: &Snapshot, now: u64) -> String {
    let age = now.saturating_sub(snap.meta.created_ns) as f64 / 1e9;
    let mut out = format!(
        "flight recorder {} (schema v{}, ring of {} set-up events, created {age:.0}s ago)\n",
        h.pin_dir.display(),
        h.schema,
        h.ring_size
    );
    out.push_str(&format!(
        "events: {} recorded, {} kept{}, {} overwritten (ring full), {} lost (no free sequence number)\n",
        h.recorded,
        h.kept,
        match (snap.events.first(), snap.events.last()) {
            (Some((a, _)), Some((b, _))) => format!(" (#{a}..#{b})"),
            _ => String::new(),
        },
        h.overwritten,
        h.unrecorded
    ));
    if !h.missing_seqs.is_empty() {
        let s: Vec<String> = h.missing_seqs.iter().map(|n| format!("#{n}")).collect();
        out.push_str(&format!("gaps: no event under {}\n", s.join(", ")));
    }
    if h.counters_full > 0 {
        out.push_str(&format!("counters: {} update(s) dropped (counter map full)\n", h.counters_full));
    }
    out.push_str(&if h.pinned_links.is_empty() {
        "probes: none pinned: recording stopped when the process that recorded ended\n".to_string()
    } else {
        format!("probes: pinned ({}): still recording\n", h.pinned_links.join(", "))
    });
    out.push_str(&format!("memory: the pinned maps take {} KiB of kernel memory\n", h.memlock_bytes.div_ceil(1024)));
    if !snap.events.is_empty() {
        out.push_str("devices, drivers and ops symbols below are resolved now, at dump time, not when recorded\n");
    }
    out
}

/// Per device: set-ups and their results, nested set-ups, polls.
fn render_counters(counters: &[CounterLine], polls: &[PollSummary]) -> String {
    let mut out = String::new();
    if !counters.is_empty() {
        out.push_str("counters (device: function result x calls):\n");
    }
    let mut devs: Vec<Option<&String>> = counters.iter().map(|c| c.dev.as_ref()).collect();
    devs.dedup();
    for dev in devs {
        let parts: Vec<String> = counters
            .iter()
            .filter(|c| c.dev.as_ref() == dev)
            .map(|c| {
                let result = match (c.ret, c.errno) {
                    (0, _) => "ok".to_string(),
                    (_, Some(e)) => format!("-{e}"),
                    (r, None) => r.to_string(),
                };
                format!("{} {result} x{}", c.function.map_or("?", SetupFn::as_str), c.count)
            })
            .collect();
        out.push_str(&format!("  {}: {}\n", dev.map_or("?", String::as_str), parts.join(", ")));
    }
    for p in polls {
        out.push_str(&format!("{}\n", p.human()));
    }
    out
}

/// `dump --from FILE`: a file of JSON lines from `watch --record`, `watch --json`
/// or the agent's journal; every line is checked before anything is printed.
fn from_file(file: &Path, json: bool) -> Result<Exit> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("reading {}: {e}", file.display()))?;
    let mut records = Vec::new();
    let mut others: Vec<(String, Value)> = Vec::new();
    let mut log = KernelLog::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |e: &dyn std::fmt::Display| anyhow!("{}: line {}: {e}; not a JSON-lines file from `watch --record` or the agent's journal, or truncated", file.display(), i + 1);
        let kind = schema::check_line(line).map_err(|e| at(&e))?;
        let v: Value = serde_json::from_str(line).map_err(|e| at(&e))?;
        match kind {
            "setup" => records.push(SetupRecord::from_json(v).map_err(|e| at(&e))?),
            // The recorded kernel line is quoted again by the fresh diagnosis.
            "diagnosis" => {
                if let Some(m) = v["kernel_message"].as_str() {
                    log.push(m.to_string());
                }
            }
            _ => others.push((kind.to_string(), v)),
        }
    }
    if !text.ends_with('\n') && !text.is_empty() {
        bail!("{}: the last line has no newline: the file is truncated", file.display());
    }
    let attempts = diagnosed(records, &mut log);
    if json {
        print_attempts_json(&attempts)?;
        for (_, v) in &others {
            println!("{v}");
        }
    } else {
        if attempts.is_empty() && others.is_empty() {
            println!("{}: no records", file.display());
        }
        print_attempts_human(&attempts, false);
        for (kind, v) in &others {
            println!("{}", human_other(kind, v));
        }
    }
    Ok(Exit::Ok)
}

/// A `remediation` or `poll` line for people.
fn human_other(kind: &str, v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    match kind {
        "remediation" => format!(
            "remediation {} {} {}: {}",
            v["dev"].as_str().unwrap_or("-"),
            s("action"),
            s("result"),
            s("detail")
        ),
        _ => match v.get("duration_ns").and_then(Value::as_u64) {
            Some(ns) => format!("slow poll {} took {}us", s("dev"), ns / 1000),
            None => format!("poll {}: {} call(s)", s("dev"), v["count"]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dev: &str, f: u32, ret: i32) -> CounterKey {
        let mut k = CounterKey { dev_name: [0; 16], function: f, ret };
        k.dev_name[..dev.len()].copy_from_slice(dev.as_bytes());
        k
    }

    #[test]
    fn counter_lines_name_function_and_errno() {
        let c = counter_line(&key("nosuch0", function::NETPOLL_SETUP, -19), 3, 5);
        assert_eq!(c.dev.as_deref(), Some("nosuch0"));
        assert_eq!(c.function, Some(SetupFn::NetpollSetup));
        assert_eq!(c.errno, Some("ENODEV"));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "counter");
        assert_eq!(v["fn"], "netpoll_setup");
        assert_eq!(v["count"], 3);
        assert_eq!(schema::check_line(&v.to_string()).unwrap(), "counter");
    }

    #[test]
    fn counters_render_per_device() {
        let lines = vec![
            counter_line(&key("eth0", function::NETPOLL_SETUP, 0), 1, 0),
            counter_line(&key("eth0", function::NETPOLL_SETUP, -524), 2, 0),
            counter_line(&key("nosuch0", function::NETPOLL_SETUP, -19), 3, 0),
        ];
        let out = render_counters(&lines, &[]);
        assert!(out.contains("eth0: netpoll_setup ok x1, netpoll_setup -ENOTSUPP x2"), "{out}");
        assert!(out.contains("nosuch0: netpoll_setup -ENODEV x3"), "{out}");
    }

    #[test]
    fn a_truncated_file_is_one_error_naming_the_line() {
        let dir = std::env::temp_dir().join(format!("npt-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.jsonl");
        std::fs::write(&f, "{\"type\":\"remediation\",\"ts_ns\":1,\"dev\":null,\"action\":\"start\",\"result\":\"ok\",\"detail\":\"x\"}\n{\"type\":\"setup\",\"ts_").unwrap();
        let e = from_file(&f, true).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("truncated"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
