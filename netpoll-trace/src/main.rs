//! netpoll-trace: why the kernel's netpoll (and so netconsole) refused a device.

mod agent;
mod agent_config;
mod btf;
mod btf_offsets;
mod check;
mod cli;
mod correlate;
mod diagnosis;
mod dump;
mod enrich;
mod errno;
mod ethtool;
mod event;
mod journal;
mod exit;
mod generate;
mod kallsyms;
mod kmsg;
mod loader;
mod log_format;
mod metrics;
mod metrics_http;
mod output;
mod patch;
mod pipeline;
mod poll;
mod policy;
mod privileges;
mod recorder;
mod schema;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

use crate::{cli::{Cli, Command}, exit::Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    log_format::init(cli.log_format, cli.verbose);
    let exit = match run(cli.command) {
        Ok(exit) => exit,
        Err(e) => {
            status!(Error, "{e:#}");
            if e.downcast_ref::<loader::Unsupported>().is_some() {
                Exit::Unsupported
            } else {
                Exit::Runtime
            }
        }
    };
    ExitCode::from(exit.code())
}

fn run(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Check { json } => {
            let report = check::evaluate(&check::Facts::gather());
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(if report.traceable { Exit::Ok } else { Exit::Unsupported })
        }
        Command::Agent { config, dry_run, once, journal, btf, attach, recorder, metrics_addr } => {
            agent::run(agent::AgentArgs { config, dry_run, once, journal, btf, attach, recorder, metrics_addr })
        }
        Command::Dump { json, pin_dir, from } => dump::run(dump::DumpArgs {
            json,
            pin_dir: pin_dir.unwrap_or_else(recorder::default_dir),
            from,
        }),
        Command::Reset { pin_dir } => {
            let dir = pin_dir.unwrap_or_else(recorder::default_dir);
            match recorder::reset(&dir)? {
                Some(r) => println!(
                    "removed the flight recorder at {}: {} pinned probe link(s) detached, {} map(s) unpinned",
                    dir.display(),
                    r.links,
                    r.maps
                ),
                None => println!("nothing to reset: no flight recorder at {}", dir.display()),
            }
            Ok(Exit::Ok)
        }
        Command::Generate { kind, dir } => {
            for p in generate::run(kind, &dir)? {
                println!("{}", p.display());
            }
            Ok(Exit::Ok)
        }
        Command::Patch { dev, module } => {
            let p = patch::patch(&dev, module.as_deref())?;
            let ks = kallsyms::Kallsyms::read().ok();
            println!(
                "patched {}: ops {} -> private copy {:#x} with an empty ndo_poll_controller (owner {} pinned while patched)",
                p.dev,
                patch::ops_name(ks.as_ref(), p.orig_ops),
                p.patched_ops,
                p.owner
            );
            println!("note: a stopgap; on kernels >= 4.19 netpoll needs no poll controller: upgrade the kernel for the real fix");
            Ok(Exit::Ok)
        }
        Command::Unpatch { dev } => {
            let (p, unloaded) = patch::unpatch(&dev)?;
            let ks = kallsyms::Kallsyms::read().ok();
            println!("restored {}: ops {}", p.dev, patch::ops_name(ks.as_ref(), p.orig_ops));
            if unloaded {
                println!("nothing left patched: unloaded {}", patch::MODULE_NAME);
            }
            Ok(Exit::Ok)
        }
        Command::Status { json } => {
            let list = patch::status()?;
            if json {
                println!("{}", serde_json::json!({ "module_loaded": !list.is_empty() || std::path::Path::new("/sys/module/netpoll_patch").exists(), "patched": list }));
            } else if list.is_empty() {
                println!("no device patched");
            } else {
                let ks = kallsyms::Kallsyms::read().ok();
                for p in &list {
                    println!(
                        "{:<16} ifindex {:<4} ops {} -> {:#x} (owner {})",
                        p.dev,
                        p.ifindex,
                        patch::ops_name(ks.as_ref(), p.orig_ops),
                        p.patched_ops,
                        p.owner
                    );
                }
            }
            Ok(Exit::Ok)
        }
        Command::SchemaCheck { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let counts = schema::check_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!("{}: valid ({})", file.display(), summary.join(", "));
            Ok(Exit::Ok)
        }
        Command::Watch { json, duration, devices, btf, attach, slow_poll, record, recorder, command } => {
            watch::run(watch::WatchArgs { json, duration, devices, btf, attach, slow_poll, record, recorder, command })
        }
    }
}
