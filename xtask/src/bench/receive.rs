//! `cargo xtask bench --receive`: `netpoll-trace receive` under a flood on this host's
//! loopback (no VM: the receiver is plain userspace). Many senders (a socket, so a source
//! port, each), plain and extended netconsole, one extended message in 8 fragmented as
//! the kernel does (`ncfrag`), sysdata `msgid` on the extended ones. Reports messages/s,
//! loss (sent vs received, and the kernel's drops at the receiver's sockets: the
//! receiver's own count and /proc/net/udp's), and the receiver's RSS; with one worker
//! pinned to one CPU and the generator on another, and with a worker per CPU. Medians of
//! the repetitions; target/bench/receive.json.

use std::io::{BufRead as _, BufReader};
use std::net::UdpSocket;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

pub struct Options {
    /// The netpoll-trace to measure; None: the static release build.
    pub binary: Option<PathBuf>,
    /// Repetitions of each run (the median is reported).
    pub reps: u32,
    /// Short runs (what `cargo xtask test` can afford).
    pub quick: bool,
}

/// Senders (source ports) in every run: the receiver's whole MAX_SENDERS, as a fleet
/// sends, without forgetting any.
const SENDERS: usize = 1000;
/// Messages per sender per sendmmsg.
const PER_CALL: usize = 8;
/// The rate the receiver must take without loss on one core (#26).
const GOAL_PER_S: u64 = 200_000;

/// One run's figures.
#[derive(Debug, Clone, Default)]
struct Run {
    sent_messages: u64,
    sent_datagrams: u64,
    send_s: f64,
    received_messages: u64,
    /// The receiver's first-to-last-message time.
    receive_s: f64,
    socket_drops: Option<u64>,
    proc_udp_drops: Option<u64>,
    peak_rss_kib: Option<u64>,
    rss_kib: Option<u64>,
    /// CPU time the receiver used (user and system), start to stop.
    cpu_s: Option<f64>,
}

impl Run {
    fn received_per_s(&self) -> f64 {
        if self.receive_s > 0.0 {
            self.received_messages as f64 / self.receive_s
        } else {
            0.0
        }
    }
    fn offered_per_s(&self) -> f64 {
        if self.send_s > 0.0 {
            self.sent_messages as f64 / self.send_s
        } else {
            0.0
        }
    }
    /// Messages per second of the receiver's own CPU time: what one core of its own takes,
    /// whatever else the machine runs (a busy machine lengthens the wall time, not this).
    fn per_cpu_s(&self) -> f64 {
        match self.cpu_s {
            Some(c) if c > 0.0 => self.received_messages as f64 / c,
            _ => 0.0,
        }
    }
    fn lost(&self) -> u64 {
        self.sent_messages.saturating_sub(self.received_messages)
    }
}

/// A configuration measured.
struct Case {
    name: &'static str,
    /// Receiver workers; 0: one per CPU.
    workers: usize,
    /// Pin the receiver to the last CPU and the generator to the first.
    pinned: bool,
    /// Messages/s offered; None: as fast as the generator goes.
    rate: Option<u64>,
}

pub fn run(opts: &Options) -> Result<bool> {
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => crate::build::static_binary()?,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let secs = if opts.quick { 1.0 } else { 5.0 };
    let reps = if opts.quick { 1 } else { opts.reps.max(1) };
    let cases = [
        Case {
            name: "one_core_flat_out",
            workers: 1,
            pinned: cpus > 1,
            rate: None,
        },
        Case {
            name: "one_core_at_goal",
            workers: 1,
            pinned: cpus > 1,
            rate: Some(GOAL_PER_S),
        },
        Case {
            name: "all_cores_flat_out",
            workers: 0,
            pinned: false,
            rate: None,
        },
    ];
    println!(
        "bench receive: {} ({cpus} CPUs), {SENDERS} senders, {secs} s per run, {reps} run(s) each",
        binary.display()
    );
    let mut results = Vec::new();
    for case in &cases {
        let mut runs = Vec::new();
        for i in 0..reps {
            let r = measure(&binary, case, cpus, secs)
                .with_context(|| format!("bench receive: {} run {}", case.name, i + 1))?;
            println!(
                "  {:<20} run {}: offered {:>9.0}/s, received {:>9.0}/s ({:>9.0} per CPU-second), lost {} of {}, socket drops {}, peak RSS {} KiB",
                case.name,
                i + 1,
                r.offered_per_s(),
                r.received_per_s(),
                r.per_cpu_s(),
                r.lost(),
                r.sent_messages,
                opt(r.socket_drops),
                opt(r.peak_rss_kib)
            );
            runs.push(r);
        }
        results.push((case, runs));
    }
    println!(
        "\n{:<20} {:>8} {:>12} {:>12} {:>12} {:>10} {:>12} {:>10}",
        "receive (median)",
        "workers",
        "offered/s",
        "received/s",
        "per CPU-s",
        "lost",
        "socket drops",
        "peak RSS"
    );
    for (case, runs) in &results {
        println!(
            "{:<20} {:>8} {:>12.0} {:>12.0} {:>12.0} {:>10} {:>12} {:>7} KiB",
            case.name,
            workers_of(case, cpus),
            median(runs.iter().map(Run::offered_per_s)),
            median(runs.iter().map(Run::received_per_s)),
            median(runs.iter().map(Run::per_cpu_s)),
            median(runs.iter().map(|r| r.lost() as f64)),
            median(runs.iter().map(|r| r.socket_drops.unwrap_or(0) as f64)),
            median(runs.iter().map(|r| r.peak_rss_kib.unwrap_or(0) as f64)),
        );
    }
    let out_dir = crate::cache::workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let json = out_dir.join("receive.json");
    std::fs::write(&json, to_json(&results, cpus, secs))
        .with_context(|| format!("writing {}", json.display()))?;
    println!("bench receive: wrote {}", json.display());
    // Judged only where a CPU is the receiver's alone: the goal run must lose nothing.
    let goal = results
        .iter()
        .find(|(c, _)| c.name == "one_core_at_goal")
        .map(|(_, runs)| median(runs.iter().map(|r| r.lost() as f64)))
        .unwrap_or(0.0);
    if goal > 0.0 {
        println!(
            "bench receive: {goal} message(s) lost at {GOAL_PER_S}/s on one core (a shared machine is noisy: see the runs)"
        );
    }
    Ok(true)
}

fn workers_of(case: &Case, cpus: usize) -> usize {
    if case.workers == 0 {
        cpus
    } else {
        case.workers
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a cpu_set_t built by the libc macros, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One run: start the receiver, flood it for `secs`, let it drain, read its figures.
fn measure(binary: &Path, case: &Case, cpus: usize, secs: f64) -> Result<Run> {
    let workers = workers_of(case, cpus);
    let mut cmd = Command::new(binary);
    cmd.args(["receive", "--listen", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if case.pinned {
        let cpu = cpus - 1;
        // SAFETY: sched_setaffinity only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || pin_to(cpu));
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let result = flood_and_stop(&mut child, case, cpus, secs);
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

fn flood_and_stop(child: &mut Child, case: &Case, cpus: usize, secs: f64) -> Result<Run> {
    let stderr = child.stderr.take().context("receiver's stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .context("the receiver said nothing")?;
    let port: u16 = first
        .split("listening on UDP ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in the receiver's first line: {first}"))?;
    let mut run = flood(port, case, cpus, secs)?;
    // Let it drain what is queued, then read what the kernel and /proc say.
    std::thread::sleep(Duration::from_millis(500));
    run.proc_udp_drops = proc_udp_drops(port);
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    run.peak_rss_kib = kib(&status, "VmHWM:");
    run.rss_kib = kib(&status, "VmRSS:");
    run.cpu_s = cpu_seconds(child.id());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(l);
    }
    let exit = child.wait()?;
    if !exit.success() {
        bail!("the receiver exited with {exit}: {}", lines.join("\n"));
    }
    for l in &lines {
        // receive: N message(s) from M sender(s) in S s (R/s)
        if let Some(rest) = l.split("receive: ").nth(1)
            && rest.contains(" message(s) from ")
            && let Some((n, rest)) = rest.split_once(" message(s) from ")
            && let Some(s) = rest.split(" in ").nth(1).and_then(|s| s.split(' ').next())
        {
            run.received_messages = n.trim().parse().unwrap_or(0);
            run.receive_s = s.parse().unwrap_or(0.0);
        }
        if let Some(n) = l
            .split("the kernel dropped ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
        {
            run.socket_drops = n.parse().ok();
        }
    }
    if run.socket_drops.is_none() && !lines.iter().any(|l| l.contains("SO_MEMINFO")) {
        run.socket_drops = Some(0);
    }
    Ok(run)
}

/// utime + stime of a process, from /proc/PID/stat (fields 14 and 15, after the
/// parenthesised name), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

fn kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The drops column of /proc/net/udp for every socket on `port` (the receiver's).
fn proc_udp_drops(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let want = format!(":{port:04X}");
    let mut total = None;
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1).is_some_and(|local| local.ends_with(&want)) {
            *total.get_or_insert(0) += f.last()?.parse::<u64>().ok()?;
        }
    }
    total
}

/// What one generator thread sends: its senders' sockets and their counters.
struct Sender {
    sock: UdpSocket,
    kind: Kind,
    seq: u64,
    msgid: u32,
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Extended,
    /// Extended, one message in 8 long enough to be fragmented.
    Fragmenting,
}

/// Floods 127.0.0.1:`port` from SENDERS sockets for `secs`; the generator threads are
/// pinned to the CPUs the receiver is not on (when it is pinned).
fn flood(port: u16, case: &Case, cpus: usize, secs: f64) -> Result<Run> {
    let threads = if case.pinned {
        (cpus - 1).max(1)
    } else {
        cpus.max(1)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..threads {
        let mut senders = Vec::new();
        for i in (t..SENDERS).step_by(threads) {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            sock.connect(("127.0.0.1", port))?;
            let kind = match i % 3 {
                0 => Kind::Plain,
                1 => Kind::Extended,
                _ => Kind::Fragmenting,
            };
            senders.push(Sender {
                sock,
                kind,
                seq: 1000,
                msgid: 0,
            });
        }
        let rate = case.rate.map(|r| r as f64 / threads as f64);
        let (stop, pinned) = (Arc::clone(&stop), case.pinned);
        handles.push(std::thread::spawn(move || -> Result<(u64, u64)> {
            if pinned {
                pin_to(t)?;
            }
            blast(&mut senders, rate, &stop)
        }));
    }
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut run = Run::default();
    for h in handles {
        let (m, d) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        run.sent_messages += m;
        run.sent_datagrams += d;
    }
    run.send_s = start.elapsed().as_secs_f64();
    Ok(run)
}

/// Sends PER_CALL messages per sender per sendmmsg, round the senders, until `stop`;
/// at `rate` messages/s when given. Returns (messages, datagrams) sent.
fn blast(senders: &mut [Sender], rate: Option<f64>, stop: &AtomicBool) -> Result<(u64, u64)> {
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod ";
    let long = filler.repeat(24); // ~1,750 bytes: two fragments
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    let (mut messages, mut sent) = (0u64, 0u64);
    let start = Instant::now();
    'outer: loop {
        for s in senders.iter_mut() {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            datagrams.clear();
            for _ in 0..PER_CALL {
                s.seq += 1;
                s.msgid = s.msgid.wrapping_add(1);
                let (seq, id) = (s.seq, s.msgid);
                match s.kind {
                    Kind::Plain => datagrams
                        .push(format!("bench: plain message {seq}: {filler}\n").into_bytes()),
                    Kind::Fragmenting if seq % 8 == 0 => {
                        let body =
                            format!("bench: long message {seq}: {long}\n cpu=1\n msgid={id}\n");
                        let (a, b) = body.as_bytes().split_at(body.len() / 2);
                        for (off, part) in [(0, a), (a.len(), b)] {
                            let mut d =
                                format!("6,{seq},{},-,ncfrag={off}/{};", seq * 10, body.len())
                                    .into_bytes();
                            d.extend_from_slice(part);
                            datagrams.push(d);
                        }
                    }
                    Kind::Extended | Kind::Fragmenting => datagrams.push(
                        format!(
                            "6,{seq},{},-;bench: message {seq}: {filler}\n cpu=1\n msgid={id}\n",
                            seq * 10
                        )
                        .into_bytes(),
                    ),
                }
            }
            sent += sendmmsg(&s.sock, &datagrams)? as u64;
            messages += PER_CALL as u64;
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(messages as f64 / rate);
                while start.elapsed() < due {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    std::hint::spin_loop();
                }
            }
        }
    }
    Ok((messages, sent))
}

/// Every datagram on the connected socket, in as few calls as the kernel takes.
fn sendmmsg(sock: &UdpSocket, datagrams: &[Vec<u8>]) -> Result<usize> {
    let mut iovecs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    // SAFETY: all-zero mmsghdrs, then each pointed at its iovec.
    let mut headers: Vec<libc::mmsghdr> = (0..datagrams.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (h, iov) in headers.iter_mut().zip(iovecs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let mut done = 0;
    while done < headers.len() {
        // SAFETY: headers[done..] are valid mmsghdrs whose iovecs outlive the call.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                headers[done..].as_mut_ptr(),
                (headers.len() - done) as libc::c_uint,
                0,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // The receiver not there yet or gone (ICMP port unreachable), or a full queue.
            if matches!(
                e.raw_os_error(),
                Some(libc::ECONNREFUSED | libc::ENOBUFS | libc::EAGAIN)
            ) {
                continue;
            }
            return Err(e).context("sendmmsg");
        }
        done += r as usize;
    }
    Ok(done)
}

fn to_json(results: &[(&Case, Vec<Run>)], cpus: usize, secs: f64) -> String {
    let mut out = format!(
        "{{\n  \"cpus\": {cpus},\n  \"senders\": {SENDERS},\n  \"seconds_per_run\": {secs},\n  \"goal_msgs_per_s\": {GOAL_PER_S},\n"
    );
    let n = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
    for (i, (case, runs)) in results.iter().enumerate() {
        let list = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "  \"{}\": {{\"workers\": {}, \"receiver_pinned_to_one_cpu\": {}, \"offered_msgs_per_s\": {:.0}, \
\"received_msgs_per_s\": {:.0}, \"received_msgs_per_cpu_s\": {:.0}, \"lost_messages\": {:.0}, \
\"socket_drops_datagrams\": {:.0}, \"peak_rss_kib\": {:.0}, \
\"runs\": {{\"sent_messages\": [{}], \"sent_datagrams\": [{}], \"received_messages\": [{}], \
\"received_msgs_per_s\": [{}], \"receiver_cpu_s\": [{}], \"socket_drops_datagrams\": [{}], \
\"proc_net_udp_drops_datagrams\": [{}], \"peak_rss_kib\": [{}], \"rss_kib\": [{}]}}}}{}\n",
            case.name,
            workers_of(case, cpus),
            case.pinned,
            median(runs.iter().map(Run::offered_per_s)),
            median(runs.iter().map(Run::received_per_s)),
            median(runs.iter().map(Run::per_cpu_s)),
            median(runs.iter().map(|r| r.lost() as f64)),
            median(runs.iter().map(|r| r.socket_drops.unwrap_or(0) as f64)),
            median(runs.iter().map(|r| r.peak_rss_kib.unwrap_or(0) as f64)),
            list(&|r| r.sent_messages.to_string()),
            list(&|r| r.sent_datagrams.to_string()),
            list(&|r| r.received_messages.to_string()),
            list(&|r| format!("{:.0}", r.received_per_s())),
            list(&|r| r.cpu_s.map_or("null".into(), |c| format!("{c:.2}"))),
            list(&|r| n(r.socket_drops)),
            list(&|r| n(r.proc_udp_drops)),
            list(&|r| n(r.peak_rss_kib)),
            list(&|r| n(r.rss_kib)),
            if i + 1 < results.len() { "," } else { "" }
        ));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_loss_and_rate() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        let run = Run {
            sent_messages: 10,
            received_messages: 7,
            receive_s: 0.5,
            ..Run::default()
        };
        assert_eq!((run.lost(), run.received_per_s()), (3, 14.0));
    }
}
