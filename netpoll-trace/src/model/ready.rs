//! What a started tracer attached, as facts: which functions, by which method, with
//! which object, from which offsets source, recording where. The pipeline returns it;
//! the sinks phrase it (`sinks::status::ready_line`) or serialise it (the journal's
//! `start` entry carries it as `ready`).

use serde::Serialize;

/// The tracer, attached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ready {
    /// `fentry` or `kprobe`.
    pub method: &'static str,
    /// For kprobes, how they are created: `kprobe PMU` or `tracefs kprobe_events`;
    /// null for fentry.
    pub kprobes_via: Option<&'static str>,
    /// The kernel functions probed, in attach order.
    pub functions: Vec<&'static str>,
    /// The flight recorder's pinned probes were reopened, not attached now.
    pub reused_pins: bool,
    /// Wall time to attach (or reopen) them, in milliseconds.
    pub attach_ms: f64,
    /// `modern` or `legacy`.
    pub object: &'static str,
    /// Where the struct offsets came from; null in reduced mode (return codes only).
    pub offsets: Option<OffsetsSource>,
    /// Where the flight recorder records; null without one.
    pub recorder: Option<Recording>,
}

/// The source of the struct offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffsetsSource {
    /// `kernel_btf`, `btf_file`, `btf_archive` or `headers` (as `offsets --json`).
    pub kind: &'static str,
    pub path: String,
    /// The archive member used, the release the headers were for, or for the kernel's
    /// BTF the cache its facts came from; null when none.
    pub detail: Option<String>,
}

/// The flight recorder, as the tracer left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recording {
    /// The pin directory.
    pub dir: String,
    /// Its probes' links are pinned: recording goes on after this process.
    pub links_pinned: bool,
}

/// The JSON `attached` object: the late programs (the send path, tear-downs, console
/// write) attached, after `ready` when they were deferred, or with it (a recorder that
/// pins its links attaches everything in one pass).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LateReady {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    /// The functions attached now, in attach order.
    pub functions: Vec<&'static str>,
    /// Optional functions not traced, with why.
    pub skipped: Vec<Skipped>,
    /// Attached after `ready` (false: with it).
    pub deferred: bool,
    /// Wall time of this pass, in milliseconds (0 when attached with `ready`).
    pub attach_ms: f64,
    /// From `ready` to now, in milliseconds: how long sends and tear-downs went untraced.
    pub after_ready_ms: f64,
    /// Why the pass stopped early, or null.
    pub error: Option<String>,
    /// The function of `functions` traced only while a known target's device is down
    /// (netconsole's console write, under `watch`), or null.
    pub on_demand: Option<&'static str>,
}

/// A function not traced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub function: &'static str,
    pub reason: String,
}

/// How a status line says a function is not traced, at start-up or after the late pass.
pub fn not_tracing(function: &str, reason: &str) -> String {
    format!("not tracing {function}: {reason}")
}

impl LateReady {
    pub const KIND: &'static str = "attached";
}
