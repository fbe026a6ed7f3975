//! The pure model: events and their decoding, correlation of nested calls, diagnosis,
//! policy and the agent's decisions, the configuration, the output contract. No I/O,
//! no clock reads, no sysfs: every fact comes in as data, so every rule is unit-tested.
//! It imports no other layer of this crate (tests/layers.rs enforces it).

pub mod agent;
pub mod check;
pub mod config;
pub mod console_gate;
pub mod correlate;
pub mod diagnosis;
pub mod duration;
pub mod errno;
pub mod event;
pub mod health;
pub mod kernel_log;
pub mod netconsole;
pub mod output;
pub mod policy;
pub mod poll;
pub mod ready;
pub mod recorder;
pub mod remediation;
pub mod replay;
pub mod ring;
pub mod schema;
pub mod send;
pub mod target;
