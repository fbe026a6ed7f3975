//! The command line on top of the layers: clap's types (`args`), the exit codes
//! (`exit`) and the commands, which wire the kernel layer, the pipeline, the model and
//! the sinks together. Nothing below imports from here.

pub mod args;
pub mod commands;
pub mod exit;

/// `println!` for a command's own output: a closed standard output (`| head`, a reader
/// that went away) ends the program with one line saying so and status 1, never a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// What `outln!` does.
pub fn out_line(args: std::fmt::Arguments) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}").and_then(|()| out.flush()) {
        drop(out);
        crate::status!(Error, "standard output closed ({e}): stopping");
        std::process::exit(i32::from(Exit::Runtime.code()));
    }
}

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;

use self::{
    args::{Cli, Command, OffsetArgs},
    commands::{agent, check, dump, generate, offsets, patch, receive, watch},
    exit::Exit,
};
use crate::{
    kernel::{self, recorder, targets::Unsupported},
    model::{config::AgentConfig, schema},
    sinks::status,
};

pub fn main() -> ExitCode {
    crate::kernel::profile::keep_large_blocks_mapped();
    let cli = Cli::parse();
    // The agent's configuration may choose the log format: it is read first (its errors
    // are reported once the format is known).
    let agent_config = match &cli.command {
        Command::Agent { config, .. } => Some(agent::load_config(config.as_deref())),
        _ => None,
    };
    let configured = agent_config
        .as_ref()
        .and_then(|c| c.as_ref().ok())
        .and_then(|(c, _)| c.log_format);
    status::init(
        cli.log_format
            .map(Into::into)
            .or(configured)
            .unwrap_or_default(),
        cli.verbose,
    );
    let result = run(cli.command, agent_config);
    // Facts a command parsed and start-up did not write yet (`check`, `offsets`, a `watch`
    // that ended before its late pass): the next run's cache, whatever this one's outcome.
    kernel::offsets::write_cache();
    let exit = match result {
        Ok(exit) => exit,
        Err(e) => {
            // The crate's name, not this module's path: log shippers key on it.
            status::line(
                log::Level::Error,
                env!("CARGO_CRATE_NAME"),
                format_args!("{e:#}"),
            );
            if e.downcast_ref::<Unsupported>().is_some() {
                Exit::Unsupported
            } else if let Some(c) = e.downcast_ref::<exit::CommandNotStarted>() {
                Exit::Command(c.code)
            } else {
                Exit::Runtime
            }
        }
    };
    ExitCode::from(exit.code())
}

/// `--object` and `--attach` checked together; a conflict is a usage error (exit 2).
fn tracer_choice_or_exit(
    t: args::TracerArgs,
) -> (
    crate::kernel::object::ObjectChoice,
    crate::kernel::attach::AttachChoice,
) {
    args::tracer_choice(t.object, t.attach).unwrap_or_else(|e| {
        use clap::CommandFactory as _;
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, e)
            .exit()
    })
}

fn run(
    command: Command,
    agent_config: Option<Result<(AgentConfig, Option<String>)>>,
) -> Result<Exit> {
    match command {
        Command::Check {
            json,
            tracer,
            no_cache,
        } => {
            let (object, attach) = tracer_choice_or_exit(tracer);
            kernel::offsets::use_cache(!no_cache);
            check::run(json, object, attach)
        }
        Command::Agent {
            config,
            dry_run,
            once,
            journal,
            sources,
            tracer,
            recorder,
            metrics_addr,
        } => {
            let (object, attach) = tracer_choice_or_exit(tracer);
            let OffsetArgs {
                btf,
                offsets,
                no_cache,
            } = sources;
            kernel::offsets::use_cache(!no_cache);
            let (cfg, note) =
                agent_config.unwrap_or_else(|| agent::load_config(config.as_deref()))?;
            if let Some(n) = note {
                crate::status!(Info, "{n}");
            }
            let recorder = recorder.over(&cfg);
            let metrics_addr = metrics_addr.or(cfg.metrics_addr);
            agent::run(
                agent::AgentArgs {
                    dry_run,
                    once,
                    journal,
                    btf,
                    offsets,
                    attach,
                    object,
                    recorder,
                    metrics_addr,
                },
                cfg,
            )
        }
        Command::Offsets { json, sources } => {
            kernel::offsets::use_cache(!sources.no_cache);
            offsets::run(json, sources.btf.as_deref(), sources.offsets.as_deref())
        }
        Command::Dump {
            json,
            pin_dir,
            from,
        } => dump::run(dump::DumpArgs {
            json,
            pin_dir: pin_dir.unwrap_or_else(recorder::default_dir),
            from,
        }),
        Command::Reset {
            all: true, json, ..
        } => {
            let root = std::path::Path::new(recorder::PIN_ROOT);
            let done = recorder::reset_all(root)?;
            if json {
                let removed: Vec<_> = done
                    .iter()
                    .map(|(d, r)| serde_json::json!({"pin_dir": d, "links_detached": r.links, "maps_unpinned": r.maps}))
                    .collect();
                outln!("{}", serde_json::json!({ "removed": removed }));
                return Ok(Exit::Ok);
            }
            if done.is_empty() {
                outln!(
                    "nothing to reset: no flight recorder under {}",
                    root.display()
                );
            }
            for (d, r) in &done {
                outln!(
                    "removed the flight recorder at {}: {} pinned probe link(s) detached, {} map(s) unpinned",
                    d.display(),
                    r.links,
                    r.maps
                );
            }
            Ok(Exit::Ok)
        }
        Command::Reset { pin_dir, json, .. } => {
            let dir = pin_dir.unwrap_or_else(recorder::default_dir);
            let report = recorder::reset(&dir)?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "pin_dir": dir,
                        "removed": report.is_some(),
                        "links_detached": report.as_ref().map_or(0, |r| r.links),
                        "maps_unpinned": report.as_ref().map_or(0, |r| r.maps),
                    })
                );
                return Ok(Exit::Ok);
            }
            match report {
                Some(r) => outln!(
                    "removed the flight recorder at {}: {} pinned probe link(s) detached, {} map(s) unpinned",
                    dir.display(),
                    r.links,
                    r.maps
                ),
                None => outln!("nothing to reset: no flight recorder at {}", dir.display()),
            }
            Ok(Exit::Ok)
        }
        Command::Generate { kind, dir } => {
            for p in generate::run(kind, &dir)? {
                outln!("{}", p.display());
            }
            Ok(Exit::Ok)
        }
        Command::Receive {
            listen,
            json,
            output,
            duration,
            count,
            workers,
            reuse_addr,
        } => receive::run(receive::ReceiveArgs {
            listen,
            json,
            output,
            duration,
            count,
            // A shared address is one socket's (clap refuses --workers beside it).
            workers: if reuse_addr {
                Some(1)
            } else {
                workers.map(usize::from)
            },
            reuse_addr,
        }),
        Command::Patch { dev, module, json } => patch::patch(&dev, module.as_deref(), json),
        Command::Unpatch { dev, force, json } => patch::unpatch(&dev, force, json),
        Command::Status {
            json,
            tracer,
            pin_dir,
        } => {
            let (object, attach) = tracer_choice_or_exit(tracer);
            let pin_dir = pin_dir.unwrap_or_else(crate::kernel::recorder::default_dir);
            patch::status(json, object, attach, &pin_dir)
        }
        Command::SchemaCheck { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let counts = schema::check_text(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            outln!("{}: valid ({})", file.display(), summary.join(", "));
            Ok(Exit::Ok)
        }
        Command::Watch {
            json,
            duration,
            devices,
            sources,
            tracer,
            slow_poll,
            slow_send,
            stats_every,
            record,
            recorder,
            wait_all,
            command,
        } => {
            let (object, attach) = tracer_choice_or_exit(tracer);
            let OffsetArgs {
                btf,
                offsets,
                no_cache,
            } = sources;
            kernel::offsets::use_cache(!no_cache);
            watch::run(watch::WatchArgs {
                json,
                duration,
                devices,
                btf,
                offsets,
                attach,
                object,
                slow_poll,
                slow_send,
                stats_every: (!stats_every.is_zero()).then_some(stats_every),
                record,
                recorder,
                wait_all,
                command,
            })
        }
    }
}
