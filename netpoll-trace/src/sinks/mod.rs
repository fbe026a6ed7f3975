//! Sinks: where outputs go. Each implements `model::output::Sink`: the terminal for
//! people, JSON lines (stdout, `--record` files), the agent's journal, Prometheus
//! metrics, stderr for warnings, and the service manager (readiness). `dump` and `watch` use the same ones.

pub mod file;
pub mod filter;
pub mod journal;
pub mod json;
pub mod metrics;
pub mod status;
pub mod systemd;
pub mod terminal;
