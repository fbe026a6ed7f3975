//! One module per command that is more than a few lines.

pub mod agent;
pub mod check;
pub mod dump;
pub mod generate;
pub mod offsets;
pub mod patch;
pub mod receive;
mod signals;

/// The runtime every long-running command uses: one thread (the agent's capability drop
/// and the watchdog rely on it).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
pub mod watch;
