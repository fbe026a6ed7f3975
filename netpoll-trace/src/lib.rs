//! netpoll-trace: why the kernel's netpoll (and so netconsole) refused a device.
//!
//! One-way layers, lowest first (ARCHITECTURE.md; tests/layers.rs enforces them):
//! `kernel` (BPF, procfs, sysfs, modules) and `model` (pure) import no other layer;
//! `pipeline` runs the tracer on both; `sinks` write outputs; `cli` wires it all.
//!
//! A library only so that the fuzz targets (`fuzz/`) can reach the parsers: the layers
//! stay private, so an unused item is still a dead-code warning; `main`, the `fuzz`
//! entry points and the JSON schema's table (`schema`) are all it exports.

mod cli;
mod kernel;
mod model;
mod pipeline;
mod sinks;

#[doc(hidden)]
pub mod fuzz;

/// The fields the JSON schema requires per `type`, for tests/contract.rs, which checks
/// them against docs/contract.md section 4.
#[doc(hidden)]
pub mod schema {
    pub use crate::model::schema::{COMMON, ONE_OF, REQUIRED};
}

/// The command line: what the `netpoll-trace` binary runs.
pub fn main() -> std::process::ExitCode {
    cli::main()
}
