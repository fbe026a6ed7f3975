//! netpoll-trace: why the kernel's netpoll (and so netconsole) refused a device.

mod btf;
mod btf_offsets;
mod check;
mod cli;
mod correlate;
mod diagnosis;
mod enrich;
mod errno;
mod event;
mod exit;
mod kallsyms;
mod kmsg;
mod loader;
mod output;
mod poll;
mod schema;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

use crate::{cli::{Cli, Command}, exit::Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    let exit = match run(cli.command) {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("netpoll-trace: error: {e:#}");
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
        Command::SchemaCheck { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let counts = schema::check_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!("{}: valid ({})", file.display(), summary.join(", "));
            Ok(Exit::Ok)
        }
        Command::Watch { json, duration, devices, btf, attach, slow_poll, command } => {
            watch::run(watch::WatchArgs { json, duration, devices, btf, attach, slow_poll, command })
        }
    }
}
