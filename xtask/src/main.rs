//! Project tasks for netpoll-trace: `setup`, `build`, `lab`, `test`, `demo`.

mod apt;
mod build;
mod cache;
mod guest;
mod headers;
mod kernels;
mod modules;
mod process;
mod setup;
mod toolchain;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "netpoll-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the project needs on this machine (idempotent).
    Setup,
    /// Build the static netpoll-trace binary; prints its path last.
    Build,
}

fn main() {
    if let Err(err) = run(Cli::parse()) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.task {
        Task::Setup => setup::run(),
        Task::Build => {
            let binary = build::static_binary()?;
            println!("{}", binary.display());
            Ok(())
        }
    }
}
