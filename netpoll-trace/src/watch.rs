//! `netpoll-trace watch`: attach, run COMMAND (or wait), drain, report.

use std::{os::unix::process::ExitStatusExt as _, path::PathBuf, process::ExitStatus, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::perf::PerfEvent;
use netpoll_trace_common::SetupEvent;
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinSet};

use crate::{btf_offsets, correlate, diagnosis, enrich::Enricher, event, exit::Exit, kmsg, loader, output};

pub struct WatchArgs {
    pub json: bool,
    pub duration: Option<Duration>,
    pub devices: Vec<String>,
    pub btf: Option<PathBuf>,
    pub command: Vec<String>,
}

enum Msg {
    Event(Box<SetupEvent>),
    Lost(u64),
    BadSample(String),
}

pub fn run(args: WatchArgs) -> Result<Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(watch(args))
}

async fn watch(args: WatchArgs) -> Result<Exit> {
    loader::require_functions()?;
    // Opened before attaching, so every kernel line about our set-ups is after it.
    let mut kernel_log = kmsg::KernelLog::default();
    let mut kmsg = match kmsg::KmsgReader::open() {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!("netpoll-trace: warning: cannot read the kernel log ({e}); diagnoses will not quote it");
            None
        }
    };
    let resolved = match btf_offsets::load(args.btf.as_deref())? {
        Some((btf, path)) => btf_offsets::Resolved { source: Some(path), ..btf_offsets::resolve(&btf) },
        None => btf_offsets::Resolved::reduced(),
    };
    if let Some(missing) = resolved.describe_missing() {
        eprintln!("netpoll-trace: warning: {missing}");
    }
    let mut loaded = loader::load_and_attach(&resolved.config)?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = JoinSet::new();
    let cpus = aya::util::online_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    for cpu in cpus {
        let buf = loaded.events.open(cpu, Some(16)).with_context(|| format!("opening perf buffer for CPU {cpu}"))?;
        // SAFETY: the buffer owns its fd and moves into the AsyncFd, so the fd stays
        // open exactly as long as it is registered.
        let fd = unsafe { AsyncFd::register(buf) }
            .map_err(|e| anyhow::anyhow!("registering perf buffer with the runtime: {e}"))?;
        readers.spawn(read_cpu(fd, tx.clone(), stop_rx.clone()));
    }
    drop(tx);

    eprintln!(
        "netpoll-trace: ready: {} on netpoll_setup, __netpoll_setup (attached in {:.1} ms; offsets from {})",
        loaded.attach_method,
        loaded.attach_ms,
        resolved.source.as_ref().map_or("nowhere: reduced mode".to_string(), |p| p.display().to_string()),
    );

    let status = wait_for_end(&args).await?;
    // Events are written at return time, so once COMMAND has exited they are all
    // in the buffers: one final drain per CPU, then stop.
    let _ = stop_tx.send(true);
    while readers.join_next().await.is_some() {}

    kmsg.as_mut().map(|k| k.drain_into(&mut kernel_log));

    let enricher = Enricher::new();
    let mut lost = 0u64;
    let mut records = Vec::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Event(ev) => records.extend(event::SetupRecord::from_event(&ev)),
            Msg::Lost(n) => lost += n,
            Msg::BadSample(e) => eprintln!("netpoll-trace: warning: undecodable event: {e}"),
        }
    }
    for r in &mut records {
        enricher.enrich(r);
    }
    let ctx = host_context();
    let mut failures = 0usize;
    let mut first_ts = None;
    for attempt in correlate::group(records) {
        let wanted = args.devices.is_empty()
            || attempt.records().any(|r| r.dev.as_ref().is_some_and(|d| args.devices.contains(d)));
        if !wanted {
            continue;
        }
        let since = *first_ts.get_or_insert(attempt.root.ts_ns);
        for r in attempt.records() {
            if args.json {
                println!("{}", output::json_line(r));
            } else {
                println!("{}", output::human_line(r, since));
            }
        }
        if let Some(d) = diagnosis::diagnose(&attempt, &ctx, &mut kernel_log) {
            failures += 1;
            if args.json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                print!("{}", d.render());
            }
        }
    }
    if lost > 0 {
        eprintln!("netpoll-trace: warning: the kernel dropped {lost} events (perf buffer full); the report is incomplete");
    }
    if let Some(line) = kernel_log.netconsole_not_enabled() {
        eprintln!("netpoll-trace: netconsole is NOT logging: the kernel said \"{line}\"");
    }
    eprintln!("netpoll-trace: {failures} failed netpoll set-up(s)");
    drop(loaded.ebpf);

    // COMMAND's failure status wins; a command that "succeeded" while a set-up
    // failed (6.x dynamic netconsole) is a silent failure: exit 3.
    Ok(match status.map(exit_code_of) {
        Some(code) if code != 0 => Exit::Command(code),
        _ if failures > 0 => Exit::NetpollFailure,
        _ => Exit::Ok,
    })
}

/// Interfaces and their masters, for name suggestions and slave diagnoses.
fn host_context() -> diagnosis::Context {
    let mut ctx = diagnosis::Context::default();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return ctx };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(master) = std::fs::read_link(entry.path().join("master"))
            && let Some(m) = master.file_name()
        {
            ctx.masters.push((name.clone(), m.to_string_lossy().into_owned()));
        }
        ctx.interfaces.push(name);
    }
    ctx.interfaces.sort();
    ctx
}

fn exit_code_of(st: ExitStatus) -> u8 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// Runs COMMAND to completion, or waits for --for / SIGINT / SIGTERM.
async fn wait_for_end(args: &WatchArgs) -> Result<Option<ExitStatus>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    if let Some((prog, rest)) = args.command.split_first() {
        let mut child = tokio::process::Command::new(prog)
            .args(rest)
            .spawn()
            .with_context(|| format!("starting command `{prog}`"))?;
        let st = child.wait().await.with_context(|| format!("waiting for `{prog}`"))?;
        return Ok(Some(st));
    }
    let limit = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = limit => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(None)
}

async fn read_cpu(
    mut fd: AsyncFd<aya::maps::perf::PerfEventArrayBuffer<aya::maps::MapData>>,
    tx: mpsc::UnboundedSender<Msg>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let drain = |buf: &mut aya::maps::perf::PerfEventArrayBuffer<aya::maps::MapData>| {
        buf.for_each(|e| {
            let msg = match e {
                PerfEvent::Sample { head, tail } => match event::decode(head, tail) {
                    Ok(ev) => Msg::Event(Box::new(ev)),
                    Err(e) => Msg::BadSample(e.to_string()),
                },
                PerfEvent::Lost { count } => Msg::Lost(count),
            };
            let _ = tx.send(msg);
        });
    };
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let Ok(mut guard) = guard else { break };
                drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = stop.changed() => {
                drain(fd.get_mut());
                break;
            }
        }
    }
}
