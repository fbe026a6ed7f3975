//! `netpoll-trace receive`: a netconsole receiver. Prints (or writes as JSON lines) every
//! message, plain or extended, reassembling fragments, and counts per sender the
//! messages and the gaps in the kernel's numbering (msgid where the sender has it, else
//! the sequence number); a summary on exit.
//!
//! Built for a fleet's rate: `--workers` threads, each with its own socket on the listen
//! address (SO_REUSEPORT): the kernel hashes each sender's address to one socket, so a
//! sender's messages are read, reassembled and written in order by one worker, as
//! netconsd hashes senders to its workers. A worker reads datagrams in batches
//! (recvmmsg), keeps its own senders (`worker_share`), and writes a batch's
//! lines with one write. The kernel's drops at the sockets are counted and reported.

mod socket;

use std::{
    fmt::Write as _,
    fs::File,
    io::{BufWriter, Write as _},
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};

use super::signals::Signals;
use crate::{
    cli::exit::Exit,
    model::netconsole::{Forgotten, Message, Receiver, SenderStats, printable, worker_share},
    sinks::file::{Mode, open_private},
};

pub struct ReceiveArgs {
    pub listen: SocketAddr,
    pub json: bool,
    pub output: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Worker threads (sockets); None: one per CPU.
    pub workers: Option<usize>,
    /// `--reuse-addr`: a later listener may bind the port too (one worker).
    pub reuse_addr: bool,
}

pub fn run(args: ReceiveArgs) -> Result<Exit> {
    super::runtime()?.block_on(receive(args))
}

/// What the workers share: where lines go, when to stop, the --count budget.
struct Shared {
    json: bool,
    out: Mutex<Out>,
    stop: AtomicBool,
    /// Messages written so far, when --count limits them.
    count: Option<(u64, AtomicU64)>,
    /// Told when a worker stops by itself (--count reached, or an error).
    done: tokio::sync::Notify,
}

struct Out {
    stdout: std::io::Stdout,
    file: Option<BufWriter<File>>,
}

/// What a worker counted.
#[derive(Default)]
struct Tally {
    summary: Vec<(SocketAddr, SenderStats)>,
    forgotten: Forgotten,
    /// Datagrams longer than a slot (cut) and from an address of no known family.
    truncated: u64,
    /// The first and last message written.
    first: Option<Instant>,
    last: Option<Instant>,
}

async fn receive(args: ReceiveArgs) -> Result<Exit> {
    let signals = Signals::install()?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let group = socket::bind(args.listen, workers, args.reuse_addr).with_context(|| {
        format!(
            "listening on UDP {} (a port below 1024 needs root; is another receiver there?)",
            args.listen
        )
    })?;
    let file = match &args.output {
        Some(p) => Some(BufWriter::new(open_private(
            p,
            Mode::Append,
            "output file",
        )?)),
        None => None,
    };
    let listening = group.sockets[0].local_addr().unwrap_or(args.listen);
    crate::status!(
        Info,
        "receive: listening on UDP {listening} ({workers} worker(s))"
    );
    if group.rcvbuf / 2 < socket::RCVBUF {
        crate::status!(
            Warn,
            "receive: the receive buffer is {} KiB per socket, not the {} KiB asked for ({}): \
             a burst the workers cannot keep up with is dropped sooner (counted at exit); \
             run as root, or raise it: sysctl -w net.core.rmem_max={}",
            group.rcvbuf / 2 / 1024,
            socket::RCVBUF / 1024,
            group
                .rmem_max
                .map_or("net.core.rmem_max".to_string(), |m| format!(
                    "net.core.rmem_max is {m}"
                )),
            socket::RCVBUF
        );
    }
    let shared = Arc::new(Shared {
        json: args.json,
        out: Mutex::new(Out {
            stdout: std::io::stdout(),
            file,
        }),
        stop: AtomicBool::new(false),
        count: args.count.map(|c| (c, AtomicU64::new(0))),
        done: tokio::sync::Notify::new(),
    });
    let sockets: Vec<Arc<UdpSocket>> = group.sockets.into_iter().map(Arc::new).collect();
    let share = worker_share(workers);
    let handles: Vec<_> = sockets
        .iter()
        .enumerate()
        .map(|(i, sock)| {
            let (sock, shared) = (Arc::clone(sock), Arc::clone(&shared));
            std::thread::Builder::new()
                .name(format!("receive-{i}"))
                .spawn(move || {
                    let r = work(&sock, &shared, share);
                    if r.is_err() {
                        shared.stop.store(true, Ordering::Relaxed);
                    }
                    shared.done.notify_one();
                    r
                })
                .context("starting a receive worker")
        })
        .collect::<Result<_>>()?;

    let Signals { mut term, mut int } = signals;
    let limit = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    if args.count != Some(0) {
        tokio::select! {
            _ = limit => {},
            _ = term.recv() => {},
            _ = int.recv() => {},
            _ = shared.done.notified() => {},
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let drops: Option<u64> = sockets.iter().map(|s| socket::drops(s)).sum();
    for s in &sockets {
        socket::wake(s);
    }
    let mut tally = Tally::default();
    let mut failed = None;
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => {
                tally.summary.extend(t.summary);
                tally.forgotten.add(&t.forgotten);
                tally.truncated = tally.truncated.saturating_add(t.truncated);
                tally.first = tally.first.into_iter().chain(t.first).min();
                tally.last = tally.last.into_iter().chain(t.last).max();
            }
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some(anyhow!("a receive worker panicked")),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    report(&args, workers, tally, drops);
    Ok(Exit::Ok)
}

/// One worker: read batches, decode, write each batch's lines at once.
fn work(sock: &UdpSocket, shared: &Shared, max_senders: usize) -> Result<Tally> {
    let mut receiver = Receiver::new(max_senders);
    let mut batch = socket::Batch::default();
    let mut tally = Tally::default();
    let (mut lines, mut json_lines) = (Vec::<u8>::new(), Vec::<u8>::new());
    let to_file = shared.out.lock().map(|o| o.file.is_some()).unwrap_or(false);
    let mut text = String::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match batch.recv(sock) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("receiving"),
        };
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        lines.clear();
        json_lines.clear();
        let mut reached = false;
        for i in 0..n {
            let (from, bytes, cut) = batch.get(i);
            let Some(from) = from else {
                tally.truncated += 1;
                continue;
            };
            tally.truncated += u64::from(cut);
            let Some(m) = receiver.take(from, bytes) else {
                continue;
            };
            if let Some((limit, written)) = &shared.count {
                let k = written.fetch_add(1, Ordering::Relaxed) + 1;
                if k > *limit {
                    reached = true;
                    break;
                }
                reached = k == *limit;
            }
            if shared.json {
                serde_json::to_writer(&mut lines, &m)?;
                lines.push(b'\n');
            } else {
                text.clear();
                human(&mut text, &m);
                lines.extend_from_slice(text.as_bytes());
            }
            if to_file {
                serde_json::to_writer(&mut json_lines, &m)?;
                json_lines.push(b'\n');
            }
            if reached {
                break;
            }
        }
        if !lines.is_empty() {
            let now = Instant::now();
            tally.first.get_or_insert(now);
            tally.last = Some(now);
            let mut out = shared
                .out
                .lock()
                .map_err(|_| anyhow!("a receive worker panicked while writing"))?;
            let mut stdout = out.stdout.lock();
            if let Err(e) = stdout.write_all(&lines).and_then(|()| stdout.flush()) {
                drop(stdout);
                drop(out);
                crate::status!(Error, "standard output closed ({e}): stopping");
                std::process::exit(i32::from(Exit::Runtime.code()));
            }
            drop(stdout);
            if let Some(f) = out.file.as_mut() {
                f.write_all(&json_lines)
                    .and_then(|()| f.flush())
                    .context("writing the output file")?;
            }
        }
        if reached {
            shared.stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    tally.summary = receiver.summary().into_iter().collect();
    tally.forgotten = receiver.forgotten().clone();
    Ok(tally)
}

/// The summary: a JSON object with --json, and lines on stderr.
fn report(args: &ReceiveArgs, workers: usize, tally: Tally, drops: Option<u64>) {
    // A sender seen by two workers (never, with the kernel's hash) is added up.
    let mut summary = std::collections::BTreeMap::<SocketAddr, SenderStats>::new();
    for (from, s) in tally.summary {
        summary.entry(from).or_default().add(&s);
    }
    let messages = summary.values().fold(tally.forgotten.messages, |n, s| {
        n.saturating_add(s.messages)
    });
    let seconds = match (tally.first, tally.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    if args.json {
        let senders: serde_json::Map<String, serde_json::Value> = summary
            .iter()
            .map(|(k, s)| (k.to_string(), serde_json::to_value(s).unwrap_or_default()))
            .collect();
        crate::cli::outln!(
            "{}",
            serde_json::json!({
                "type": "summary",
                "senders": senders,
                "forgotten": tally.forgotten,
                "messages": messages,
                "first_to_last_s": seconds,
                "socket_drops": drops,
                "truncated": tally.truncated,
                "workers": workers,
            })
        );
    }
    for (from, s) in &summary {
        crate::status!(
            Info,
            "receive: {from}: {} message(s), {}, {} out of order, {} incomplete, {} malformed fragment(s)",
            s.messages,
            s.gaps_phrase(),
            s.out_of_order,
            s.incomplete,
            s.malformed
        );
    }
    if tally.forgotten.senders > 0 {
        crate::status!(Warn, "{}", forgotten_line(&tally.forgotten, workers));
    }
    if messages == 0 {
        crate::status!(Info, "receive: nothing received");
    } else {
        crate::status!(
            Info,
            "{}",
            totals_line(messages, summary.len(), &tally.forgotten, seconds)
        );
    }
    match drops {
        Some(0) => {}
        Some(n) => crate::status!(
            Warn,
            "receive: the kernel dropped {n} datagram(s) at the socket (its receive buffer was full: the receiver fell behind)"
        ),
        None => crate::status!(
            Info,
            "receive: this kernel does not tell the socket's drops (SO_MEMINFO, Linux 4.6)"
        ),
    }
    if tally.truncated > 0 {
        crate::status!(
            Warn,
            "receive: {} datagram(s) longer than {} bytes were cut (netconsole sends at most 1000)",
            tally.truncated,
            socket::SLOT
        );
    }
}

/// The warning when workers forgot senders to make room: what the per-sender lines lack.
fn forgotten_line(f: &Forgotten, workers: usize) -> String {
    format!(
        "receive: forgot senders {} time(s) to make room (their {} message(s), {} gap(s) and {} incomplete message(s) are not in the per-sender lines): more than {} senders at once over {} worker(s), {} each",
        f.senders,
        f.messages,
        f.gaps,
        f.incomplete,
        worker_share(workers) * workers,
        workers,
        worker_share(workers)
    )
}

/// The last line: messages, senders, rate (`cargo xtask bench --receive` reads "N
/// message(s) from ... in S s"). A sender forgotten and heard from again is
/// tracked anew, so the senders tracked at the end and the times any was forgotten are
/// told apart (telling distinct senders would take memory per sender ever seen).
fn totals_line(messages: u64, tracked: usize, f: &Forgotten, seconds: f64) -> String {
    let rate = if seconds > 0.0 {
        format!(" ({:.0}/s)", messages as f64 / seconds)
    } else {
        String::new()
    };
    let forgotten = if f.senders > 0 {
        format!("; senders were forgotten {} time(s)", f.senders)
    } else {
        String::new()
    };
    format!(
        "receive: {messages} message(s) from {tracked} sender(s) tracked at the end in {seconds:.3} s{rate}{forgotten}"
    )
}

/// One line per line of the message, each prefixed with the sender (and the sequence
/// number and level of an extended message), so line-oriented tools keep working; then
/// the lines after the text (dictionary, userdata, sysdata) as the kernel sent them.
fn human(out: &mut String, m: &Message) {
    let prefix = |out: &mut String| {
        let _ = match (m.seq, m.level) {
            (Some(seq), Some(level)) => write!(out, "{} #{seq} <{level}> ", m.from),
            _ => write!(out, "{} ", m.from),
        };
    };
    let text = m.text.strip_suffix('\n').unwrap_or(&m.text);
    for l in text.split('\n') {
        prefix(out);
        out.push_str(&printable(l));
        out.push('\n');
    }
    let mut field = |k: &str, v: &dyn std::fmt::Display| {
        prefix(out);
        out.push(' ');
        out.push_str(&printable(&format!("{k}={v}")));
        out.push('\n');
    };
    for (k, v) in m.dict.iter().chain(&m.userdata) {
        field(k, v);
    }
    if let Some(c) = m.cpu {
        field("cpu", &c);
    }
    if let Some(t) = &m.taskname {
        field("taskname", t);
    }
    if let Some(id) = m.msgid {
        field("msgid", &id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender forgotten and heard from again was counted twice as a sender.
    #[test]
    fn the_totals_line_does_not_count_a_forgotten_sender_again() {
        let f = Forgotten {
            senders: 2,
            messages: 5,
            ..Forgotten::default()
        };
        let line = totals_line(9, 1, &f, 0.0);
        assert!(
            line.contains("from 1 sender(s) tracked at the end")
                && line.contains("forgotten 2 time(s)"),
            "{line}"
        );
        let line = totals_line(9, 1, &Forgotten::default(), 0.0);
        assert!(!line.contains("forgotten"), "{line}");
        // As xtask's receive bench reads it.
        let line = totals_line(9, 1, &f, 2.0);
        let rest = line.split_once(" message(s) from ").map(|(_, r)| r);
        assert_eq!(
            rest.and_then(|r| r.split(" in ").nth(1)),
            Some("2.000 s (4/s); senders were forgotten 2 time(s)"),
            "{line}"
        );
    }

    #[test]
    fn the_forgotten_warning_says_what_was_not_in_the_per_sender_lines() {
        let (a, b) = (
            SocketAddr::from(([10, 0, 0, 1], 1)),
            SocketAddr::from(([10, 0, 0, 1], 2)),
        );
        let mut r = Receiver::new(1);
        for d in [&b"6,1,1,-;m"[..], b"6,5,1,-;m", b"6,6,1,-,ncfrag=0/9;x"] {
            r.take(a, d);
        }
        r.take(b, b"6,1,1,-;m");
        let line = forgotten_line(r.forgotten(), 2);
        assert!(
            line.contains("3 gap(s)") && line.contains("1 incomplete"),
            "{line}"
        );
    }
}
