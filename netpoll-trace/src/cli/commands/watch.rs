//! `netpoll-trace watch`: attach, run COMMAND (or wait), report every set-up live.

use std::{
    os::unix::process::ExitStatusExt as _, path::PathBuf, process::ExitStatus, time::Duration,
};

use anyhow::{Context as _, Result};

use super::signals::Signals;
use crate::{
    cli::{
        args::RecorderArgs,
        exit::{CommandNotStarted, Exit},
    },
    kernel::{attach::AttachChoice, object::ObjectChoice},
    model::output::{Output, Sink},
    pipeline::{RecorderOptions, TraceOptions, Tracer},
    sinks::{
        file::{Mode, open_private},
        filter::{DeviceFilter, Failures},
        json::JsonLines,
        status::{self, Stderr},
        terminal::Terminal,
    },
};

pub struct WatchArgs {
    pub json: bool,
    pub duration: Option<Duration>,
    pub devices: Vec<String>,
    pub btf: Option<PathBuf>,
    pub offsets: Option<PathBuf>,
    pub attach: AttachChoice,
    pub object: ObjectChoice,
    pub slow_poll: Duration,
    pub slow_send: Duration,
    /// Send and poll statistics while running, this often (None: only at the end).
    pub stats_every: Option<Duration>,
    pub record: Option<PathBuf>,
    pub recorder: RecorderArgs,
    /// Start COMMAND only once the late probes are attached too.
    pub wait_all: bool,
    pub command: Vec<String>,
}

pub fn run(args: WatchArgs) -> Result<Exit> {
    super::runtime()?.block_on(watch(args))
}

/// What watch shows, behind the `--dev` filter: stdout (table or JSON), the record
/// file, and the failures its exit status depends on.
struct Shown {
    outputs: Vec<Box<dyn Sink>>,
    failures: Failures,
}

impl Sink for Shown {
    fn emit(&mut self, out: &Output) {
        self.outputs.emit(out);
        self.failures.emit(out);
    }

    fn finish(&mut self) -> Result<()> {
        self.outputs.finish()
    }
}

/// Everything watch feeds: what it shows, and warnings on stderr.
struct Sinks {
    shown: DeviceFilter<Shown>,
    stderr: Stderr,
}

impl Sink for Sinks {
    fn emit(&mut self, out: &Output) {
        self.shown.emit(out);
        self.stderr.emit(out);
    }

    fn finish(&mut self) -> Result<()> {
        self.shown.finish()
    }
}

async fn watch(args: WatchArgs) -> Result<Exit> {
    // Signal handlers go in before "ready" is printed: a script that stops us right
    // after seeing it must not hit the default (or, for `&` jobs, ignored) action.
    let signals = Signals::install()?;
    // Opened before attaching: a bad path is an error before anything changes.
    let mut outputs: Vec<Box<dyn Sink>> = vec![if args.json {
        Box::new(JsonLines::stdout())
    } else {
        Box::new(Terminal::new(false))
    }];
    if let Some(p) = &args.record {
        let file = open_private(p, Mode::Truncate, "record file")?;
        outputs.push(Box::new(JsonLines::new(
            std::io::BufWriter::new(file),
            "the record file",
        )));
    }
    let r = &args.recorder;
    let recorder = (r.persist || r.pin_dir.is_some()).then(|| RecorderOptions {
        dir: r.dir(),
        ring_size: r.ring_size(),
        persist: r.persist,
        required: true,
    });
    let opts = TraceOptions {
        btf: args.btf.clone(),
        offsets: args.offsets.clone(),
        attach: args.attach,
        object: args.object,
        slow_poll: args.slow_poll,
        slow_send: args.slow_send,
        recorder,
        poll_refresh: args.stats_every,
        // COMMAND starts at ready: the send path and tear-downs follow.
        defer_late: true,
    };
    let mut tracer = Tracer::start(&opts)?;
    for n in &tracer.notes {
        crate::status!(Warn, "{n}");
    }
    crate::status!(Info, "{}", status::ready_line(&tracer.ready));

    let mut sinks = Sinks {
        shown: DeviceFilter::new(
            args.devices.clone(),
            Shown {
                outputs,
                failures: Failures::default(),
            },
        ),
        stderr: Stderr::default(),
    };
    if args.wait_all {
        // COMMAND's first sends and tear-downs must be traced: its start waits for them.
        while !tracer.all_attached() {
            tracer.pump(&mut sinks).await;
        }
    }
    let end = wait_for_end(&args, signals);
    tokio::pin!(end);
    let status = loop {
        tokio::select! {
            st = &mut end => break st?,
            () = tracer.pump(&mut sinks) => {}
        }
    };
    // Events are written when the traced call returns, so once COMMAND has exited
    // they are all in the buffers: finish drains them.
    let (rest, silent) = tracer.finish().await;
    for o in &rest {
        sinks.emit(o);
    }
    sinks.finish()?;
    if let Some(line) = silent {
        crate::status!(
            Info,
            "netconsole is NOT logging: the kernel said \"{line}\""
        );
    }
    let failures = sinks.shown.inner().failures.count;
    crate::status!(
        Info,
        "{} failed netpoll set-up(s), {} event(s) lost",
        failures,
        sinks.stderr.lost
    );

    // COMMAND's failure status wins; a command that "succeeded" while a set-up
    // failed (6.x dynamic netconsole) is a silent failure: exit 3.
    Ok(match status.map(exit_code_of) {
        Some(code) if code != 0 => Exit::Command(code),
        _ if failures > 0 => Exit::NetpollFailure,
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

/// Runs COMMAND to completion, or waits for --for / SIGINT / SIGTERM.
async fn wait_for_end(args: &WatchArgs, signals: Signals) -> Result<Option<ExitStatus>> {
    let Signals { mut term, mut int } = signals;
    if let Some((prog, rest)) = args.command.split_first() {
        let mut child = tokio::process::Command::new(prog)
            .args(rest)
            .spawn()
            .map_err(|e| CommandNotStarted::new(prog, e))?;
        let st = child
            .wait()
            .await
            .with_context(|| format!("waiting for `{prog}`"))?;
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
