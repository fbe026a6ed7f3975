//! `netpoll-trace dump`: the post-mortem. Reads the pinned flight recorder (or a
//! JSON-lines file) without attaching anything and hands it, enriched and diagnosed as
//! `watch` does, to the same sinks.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::{
    cli::exit::Exit,
    kernel::{clock::monotonic_ns, kmsg::KmsgReader, recorder},
    model::{
        correlate,
        diagnosis,
        event::SetupRecord,
        kernel_log::KernelLog,
        output::{Output, Sink},
        poll,
        recorder::{RecorderLine, counter_lines},
        ring::RingAccount,
        schema,
    },
    pipeline::enrich::{Enricher, host_context},
    sinks::{json::JsonLines, terminal::Terminal},
};

pub struct DumpArgs {
    pub json: bool,
    pub pin_dir: PathBuf,
    pub from: Option<PathBuf>,
}

pub fn run(args: DumpArgs) -> Result<Exit> {
    let outputs = match &args.from {
        Some(file) => from_file(file)?,
        None => from_pins(&args.pin_dir)?,
    };
    let mut sink: Box<dyn Sink> =
        if args.json { Box::new(JsonLines::stdout()) } else { Box::new(Terminal::new(args.from.is_none())) };
    if let (Some(file), false) = (&args.from, args.json)
        && outputs.is_empty()
    {
        println!("{}: no records", file.display());
    }
    for o in &outputs {
        sink.emit(o);
    }
    sink.finish()?;
    Ok(Exit::Ok)
}

fn from_pins(dir: &Path) -> Result<Vec<Output>> {
    let now = monotonic_ns();
    let snap = recorder::snapshot::read(dir)?;
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
    let mut log = KernelLog::unbounded();
    if let Ok(mut k) = KmsgReader::open_from_start() {
        k.drain(|line| log.push(line, now));
    }
    let head = RecorderLine {
        kind: "recorder",
        ts_ns: now,
        pin_dir: dir.to_path_buf(),
        schema: snap.meta.schema,
        ring_size: snap.meta.ring_size,
        recorded: account.recorded,
        kept: account.kept,
        overwritten: account.overwritten,
        unrecorded: snap.unrecorded,
        counters_full: snap.counters_full,
        missing_seqs: account.missing,
        pinned_links: snap.links,
        memlock_bytes: snap.memlock_bytes,
        created_ns: snap.meta.created_ns,
        kept_seqs: seqs.first().zip(seqs.last()).map(|(a, b)| (*a, *b)),
    };
    let mut outputs = vec![Output::Recorder(Box::new(head))];
    outputs.extend(diagnosed(records, &mut log));
    outputs.push(Output::Counters(counter_lines(&snap.counters, now)));
    outputs.push(Output::PollStats { stats: poll::summarize_all(&snap.polls, now), last: true });
    Ok(outputs)
}

/// Each attempt with its diagnosis, as `watch` would have reported it.
fn diagnosed(records: Vec<SetupRecord>, log: &mut KernelLog) -> Vec<Output> {
    let ctx = host_context();
    correlate::group(records)
        .into_iter()
        .map(|a| {
            let d = diagnosis::diagnose(&a, &ctx, log);
            Output::Attempt(Box::new(a), d.map(Box::new))
        })
        .collect()
}

/// `dump --from FILE`: a file of JSON lines from `watch --record`, `watch --json`
/// or the agent's journal; every line is checked before anything is printed.
fn from_file(file: &Path) -> Result<Vec<Output>> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("reading {}: {e}", file.display()))?;
    let mut records = Vec::new();
    let mut others = Vec::new();
    let mut log = KernelLog::unbounded();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |e: &dyn std::fmt::Display| anyhow!("{}: line {}: {e}; not a JSON-lines file from `watch --record` or the agent's journal, or truncated", file.display(), i + 1);
        let kind = schema::check_line(line).map_err(|e| at(&e))?;
        let v: Value = serde_json::from_str(line).map_err(|e| at(&e))?;
        match kind {
            "setup" => records.push(SetupRecord::from_json(v).map_err(|e| at(&e))?),
            // The recorded kernel line is quoted again by the fresh diagnosis.
            "diagnosis" => {
                if let Some(m) = v["kernel_message"].as_str() {
                    log.push(m.to_string(), 0);
                }
            }
            _ => others.push(Output::Passthrough { kind: kind.to_string(), value: v }),
        }
    }
    if !text.ends_with('\n') && !text.is_empty() {
        bail!("{}: the last line has no newline: the file is truncated", file.display());
    }
    let mut outputs = diagnosed(records, &mut log);
    outputs.extend(others);
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_file_is_one_error_naming_the_line() {
        let dir = std::env::temp_dir().join(format!("npt-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.jsonl");
        std::fs::write(&f, "{\"type\":\"remediation\",\"ts_ns\":1,\"dev\":null,\"action\":\"start\",\"result\":\"ok\",\"detail\":\"x\"}\n{\"type\":\"setup\",\"ts_").unwrap();
        let e = from_file(&f).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("truncated"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
