//! `netpoll-trace dump`: the post-mortem. Reads the pinned flight recorder (or a
//! JSON-lines file) without attaching anything and hands it, enriched and diagnosed as
//! `watch` does, to the same sinks.

use crate::cli::outln;
use std::{
    fs::{File, OpenOptions},
    io::BufReader,
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use anyhow::{Result, anyhow};
use netpoll_trace_common::loss;

use crate::{
    cli::exit::Exit,
    kernel::{clock::monotonic_ns, kmsg::KmsgReader, recorder},
    model::{
        correlate, diagnosis,
        event::SetupRecord,
        kernel_log::KernelLog,
        output::{Output, Sink},
        poll,
        recorder::{
            LineErrorKind, Losses, MAX_LINE, RecordedLine, RecorderLine, counter_lines, read_lines,
        },
        replay,
        ring::RingAccount,
        send,
        target::Teardown,
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
    let mut sink: Box<dyn Sink> = if args.json {
        Box::new(JsonLines::stdout())
    } else {
        Box::new(Terminal::new(args.from.is_none()))
    };
    if let (Some(file), false) = (&args.from, args.json)
        && outputs.is_empty()
    {
        outln!("{}: no records", file.display());
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
    let mut enricher = Enricher::read_now();
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
    let lost = Losses(snap.losses);
    let head = RecorderLine {
        kind: "recorder",
        ts_ns: now,
        pin_dir: dir.to_path_buf(),
        schema: snap.meta.schema,
        ring_size: snap.meta.ring_size,
        recorded: account.recorded,
        kept: account.kept,
        overwritten: account.overwritten,
        unrecorded: lost.get(loss::UNRECORDED),
        counters_full: lost.get(loss::COUNTERS_FULL),
        lost,
        missing_seqs: account.missing,
        pinned_links: snap.links,
        memlock_bytes: snap.memlock_bytes,
        created_ns: snap.meta.created_ns,
        kept_seqs: seqs.first().zip(seqs.last()).map(|(a, b)| (*a, *b)),
    };
    let teardowns: Vec<Teardown> = snap
        .events
        .iter()
        .filter_map(|(_, ev)| Teardown::from_event(ev))
        .collect();
    let mut outputs = vec![Output::Recorder(Box::new(head))];
    outputs.extend(replay::targets(diagnosed(records, &mut log), teardowns));
    outputs.push(Output::Counters(counter_lines(&snap.counters, now)));
    outputs.push(Output::PollStats {
        stats: poll::summarize_all(&snap.polls, now),
        last: true,
    });
    outputs.push(Output::SendStats {
        stats: send::summarize_all(&snap.sends, now),
        last: true,
    });
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
/// or the agent's journal; every line is checked before anything is printed. Read
/// line by line, each at most `MAX_LINE` bytes: memory grows with the records kept,
/// never with one line.
fn from_file(file: &Path) -> Result<Vec<Output>> {
    let input = BufReader::new(open_regular(file)?);
    let mut records = Vec::new();
    let mut others = Vec::new();
    let mut log = KernelLog::unbounded();
    for line in read_lines(input, MAX_LINE) {
        // A writer stopped mid-line (a crash, a full disk) leaves its last line torn: say
        // so and keep what came before it.
        let line = match line {
            Err(e) if e.kind == LineErrorKind::Truncated => {
                crate::status!(
                    Warn,
                    "{}: {e}; ignored, the lines before it are kept",
                    file.display()
                );
                break;
            }
            other => other,
        };
        match line.map_err(|e| anyhow!("{}: {e}", file.display()))? {
            RecordedLine::Setup(r) => records.push(*r),
            // The recorded kernel line is quoted again by the fresh diagnosis.
            RecordedLine::Diagnosis { kernel_message } => {
                if let Some(m) = kernel_message {
                    log.push(m, 0);
                }
            }
            RecordedLine::Other { kind, value } => others.push(Output::Passthrough {
                kind: kind.to_string(),
                value,
            }),
        }
    }
    let mut outputs = diagnosed(records, &mut log);
    outputs.extend(others);
    Ok(outputs)
}

/// Opens `file` for reading if it is a regular file (a symlink to one is fine). A
/// FIFO would block until a writer came and a device such as /dev/zero never ends:
/// both are refused, by a stat before opening (opening some devices does something,
/// e.g. a watchdog's) and an fstat after (in case the path changed in between).
/// O_NONBLOCK keeps that open from waiting on a FIFO's writer.
fn open_regular(file: &Path) -> Result<File> {
    let refuse = |t: std::fs::FileType| {
        anyhow!(
            "{}: {}, not a regular file: dump --from reads a file written by `watch --record` or the agent's journal",
            file.display(),
            file_kind(t)
        )
    };
    let meta = std::fs::metadata(file).map_err(|e| anyhow!("reading {}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(refuse(meta.file_type()));
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(file)
        .map_err(|e| anyhow!("reading {}: {e}", file.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| anyhow!("reading {}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(refuse(meta.file_type()));
    }
    // Blocking reads from here on, as for any regular file.
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let fd = f.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok(f)
}

/// What a file that is not a regular file is, for the error.
fn file_kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_reported_and_the_lines_before_it_kept() {
        let dir = std::env::temp_dir().join(format!("npt-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.jsonl");
        std::fs::write(&f, "{\"type\":\"remediation\",\"ts_ns\":1,\"dev\":null,\"action\":\"start\",\"result\":\"ok\",\"detail\":\"x\"}\n{\"type\":\"setup\",\"ts_").unwrap();
        let outs = from_file(&f).unwrap();
        assert_eq!(outs.len(), 1, "{outs:?}");
        assert!(matches!(&outs[0], Output::Passthrough { kind, .. } if kind == "remediation"));
        // A bad line that is not the last is still an error naming it.
        std::fs::write(
            &f,
            "{\"type\":\"setup\",\"ts_\n{\"type\":\"remediation\"}\n",
        )
        .unwrap();
        let e = from_file(&f).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("npt-dump-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `from_file` on another thread, with a deadline: a read that blocks or grows
    /// without end fails the test instead of hanging it.
    fn from_file_within(path: PathBuf, limit: std::time::Duration) -> Result<String, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(from_file(&path).map(|o| o.len()).map_err(|e| e.to_string()));
        });
        match rx.recv_timeout(limit) {
            Ok(Ok(n)) => Ok(format!("{n} outputs")),
            Ok(Err(e)) => Err(e),
            Err(_) => panic!("dump --from did not return within {limit:?}"),
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = temp_dir("fifo");
        let f = dir.join("pipe");
        let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = from_file_within(f, std::time::Duration::from_secs(2)).unwrap_err();
        assert!(
            e.contains("not a regular file") && e.contains("FIFO"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_device_is_refused_before_reading() {
        // /dev/zero never ends: reading it whole grew until out of memory.
        let e =
            from_file_within("/dev/zero".into(), std::time::Duration::from_secs(2)).unwrap_err();
        assert!(
            e.contains("/dev/zero")
                && e.contains("not a regular file")
                && e.contains("character device"),
            "{e}"
        );
        let e =
            from_file_within(std::env::temp_dir(), std::time::Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("directory"), "{e}");
    }

    #[test]
    fn an_overlong_line_is_an_error_naming_it() {
        let dir = temp_dir("long");
        let f = dir.join("long.jsonl");
        let good = "{\"type\":\"remediation\",\"ts_ns\":1,\"dev\":null,\"action\":\"start\",\"result\":\"ok\",\"detail\":\"x\"}\n";
        let mut text = good.repeat(2);
        text.push_str(&"x".repeat(200 * 1024));
        text.push('\n');
        std::fs::write(&f, text).unwrap();
        let e = from_file_within(f, std::time::Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("line 3") && e.contains("64 KiB"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
