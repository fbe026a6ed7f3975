//! netpoll-trace: why the kernel's netpoll (and so netconsole) refused a device.
//!
//! One-way layers, lowest first (ARCHITECTURE.md; tests/layers.rs enforces them):
//! `kernel` (BPF, procfs, sysfs, modules) and `model` (pure) import no other layer;
//! `pipeline` runs the tracer on both; `sinks` write outputs; `cli` wires it all.

mod cli;
mod kernel;
mod model;
mod pipeline;
mod sinks;

fn main() -> std::process::ExitCode {
    cli::main()
}
