//! One module per command that is more than a few lines.

pub mod agent;
pub mod check;
pub mod dump;
pub mod generate;
pub mod offsets;
pub mod patch;
pub mod receive;
mod signals;
pub mod watch;
