//! `netpoll-trace watch`: attach, run COMMAND (or wait), report every set-up live.

use std::{os::unix::process::ExitStatusExt as _, path::PathBuf, process::ExitStatus, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    exit::Exit,
    loader, output,
    pipeline::{Output, RecorderOptions, TraceOptions, Tracer},
};
use std::io::Write as _;

pub struct WatchArgs {
    pub json: bool,
    pub duration: Option<Duration>,
    pub devices: Vec<String>,
    pub btf: Option<PathBuf>,
    pub attach: loader::AttachChoice,
    pub slow_poll: Duration,
    pub record: Option<PathBuf>,
    pub recorder: crate::cli::RecorderArgs,
    pub command: Vec<String>,
}

pub fn run(args: WatchArgs) -> Result<Exit> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(watch(args))
}

/// Prints outputs and counts what the exit status depends on.
struct Printer {
    json: bool,
    devices: Vec<String>,
    failures: usize,
    lost: u64,
    first_ts: Option<u64>,
    /// `--record FILE`: every JSON line, whatever goes to stdout.
    record: Option<std::io::BufWriter<std::fs::File>>,
}

impl Printer {
    fn wanted(&self, dev: &Option<String>) -> bool {
        self.devices.is_empty() || dev.as_ref().is_some_and(|d| self.devices.contains(d))
    }

    fn print(&mut self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Attempt(attempt, diagnosis) => {
                    if !attempt.records().any(|r| self.wanted(&r.dev)) {
                        continue;
                    }
                    let since = *self.first_ts.get_or_insert(attempt.root.ts_ns);
                    for r in attempt.records() {
                        self.emit(&output::json_line(r), || output::human_line(r, since));
                    }
                    if let Some(d) = diagnosis {
                        self.failures += 1;
                        let line = serde_json::to_string(&d).unwrap_or_default();
                        self.emit(&line, || d.render().trim_end().to_string());
                    }
                }
                Output::SlowPoll(p) => {
                    if self.wanted(&p.dev) {
                        let line = serde_json::to_string(&p).unwrap_or_default();
                        self.emit(&line, || {
                            format!("slow poll {} took {}us", p.dev.as_deref().unwrap_or("?"), p.duration_ns / 1000)
                        });
                    }
                }
                Output::Lost(n) => {
                    self.lost += n;
                    crate::status!(Warn, "the kernel dropped {n} events (perf buffer full)");
                }
                Output::Warning(w) => crate::status!(Warn, "{w}"),
            }
        }
    }

    fn emit(&mut self, json_line: &str, human: impl FnOnce() -> String) {
        if let Some(f) = self.record.as_mut()
            && let Err(e) = writeln!(f, "{json_line}")
        {
            crate::status!(Warn, "writing the record file failed ({e}); recording to it stops");
            self.record = None;
        }
        if self.json {
            println!("{json_line}");
        } else {
            println!("{}", human());
        }
    }
}

async fn watch(args: WatchArgs) -> Result<Exit> {
    // Signal handlers go in before "ready" is printed: a script that stops us right
    // after seeing it must not hit the default (or, for `&` jobs, ignored) action.
    let signals = Signals::install()?;
    // Opened before attaching: a bad path is an error before anything changes.
    let record = match &args.record {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating record file {}", p.display()))?,
        )),
        None => None,
    };
    let r = &args.recorder;
    let recorder = (r.persist || r.pin_dir.is_some()).then(|| RecorderOptions {
        dir: r.dir(),
        ring_size: r.ring_size,
        persist: r.persist,
        required: true,
    });
    let opts = TraceOptions { btf: args.btf.clone(), attach: args.attach, slow_poll: args.slow_poll, recorder };
    let mut tracer = Tracer::start(&opts)?;
    for n in &tracer.notes {
        crate::status!(Warn, "{n}");
    }
    crate::status!(Info, "{}", tracer.ready);

    let mut printer =
        Printer { json: args.json, devices: args.devices.clone(), failures: 0, lost: 0, first_ts: None, record };
    let end = wait_for_end(&args, signals);
    tokio::pin!(end);
    let status = loop {
        tokio::select! {
            st = &mut end => break st?,
            outs = tracer.next() => printer.print(outs),
        }
    };
    // Events are written when the traced call returns, so once COMMAND has exited
    // they are all in the buffers: finish drains them.
    let (rest, stats, silent) = tracer.finish().await;
    printer.print(rest);
    for s in &stats {
        if !printer.wanted(&s.dev) {
            continue;
        }
        printer.emit(&serde_json::to_string(s)?, || s.human());
    }
    if let Some(mut f) = printer.record.take() {
        f.flush().context("writing the record file")?;
    }
    if let Some(line) = silent {
        crate::status!(Info, "netconsole is NOT logging: the kernel said \"{line}\"");
    }
    crate::status!(Info, "{} failed netpoll set-up(s), {} event(s) lost", printer.failures, printer.lost);

    // COMMAND's failure status wins; a command that "succeeded" while a set-up
    // failed (6.x dynamic netconsole) is a silent failure: exit 3.
    Ok(match status.map(exit_code_of) {
        Some(code) if code != 0 => Exit::Command(code),
        _ if printer.failures > 0 => Exit::NetpollFailure,
        _ => Exit::Ok,
    })
}

fn exit_code_of(st: ExitStatus) -> u8 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// SIGTERM and SIGINT, caught (installed early, see `watch`).
pub struct Signals {
    pub term: tokio::signal::unix::Signal,
    pub int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }
}

/// Runs COMMAND to completion, or waits for --for / SIGINT / SIGTERM.
async fn wait_for_end(args: &WatchArgs, signals: Signals) -> Result<Option<ExitStatus>> {
    let Signals { mut term, mut int } = signals;
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

