//! The steps and reports of the re-enabling machine (`reenabling`): what the runner
//! does next for a stopped target and what it found.

use std::time::Duration;

use super::shared::Handled;

/// What the runner does next for a stopped target (`Reenabling`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReenablingStep {
    Done(Handled),
    /// Wait until the device named `dev` exists again, at most `within`; report with
    /// `device_back`.
    AwaitDevice {
        dev: String,
        within: Duration,
    },
    /// Wait `after`, then re-enable the target; report with `reenabled` (or
    /// `reenable_timed_out`).
    Reenable {
        attempt: u32,
        after: Duration,
    },
    /// Wait for the target's next set-up, at most `within`; report with `setup_verified`.
    VerifySetup {
        attempt: u32,
        within: Duration,
    },
    /// Take the device's send counters, write a marker line to the kernel log, and wait
    /// at most `within` for its `sent` to grow; report with `send_verified`.
    VerifySend {
        within: Duration,
    },
}

/// How the wait for a stopped target's device ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceBack {
    /// The name exists again (a re-created device has a new ifindex); after `waited`.
    Present {
        ifindex: Option<i32>,
        waited: Duration,
    },
    /// It did not within `device_wait`.
    TimedOut,
    /// The target was set up again meanwhile (its owner, or the kernel): nothing to do.
    TargetUp,
}

/// What the send counters showed after the marker line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendCheck {
    /// `sent` on the device grew from `from` to `to`.
    Grew { from: u64, to: u64 },
    /// It stayed at `sent` through the wait.
    Flat { sent: u64 },
    /// No send statistics arrived within the wait (reading the programs' map failed).
    NoStats,
    /// The marker line could not be written (the counters may still grow by others).
    Marker(String),
}

/// Who sets a stopped target up again once its device is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The agent writes `enabled` (kernels before netconsole's target recovery).
    ByAgent,
    /// The kernel itself (7.3+: netconsole has `process_resume_target`): the agent
    /// waits for the device and the kernel's set-up and reports them, and never writes
    /// `enabled` behind the kernel's back.
    ByKernel,
}
