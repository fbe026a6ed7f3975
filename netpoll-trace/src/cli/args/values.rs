//! The flags' values (`--attach`, `--object`, `--log-format`, what `generate` writes)
//! and what each stands for in the layers below.

use crate::{
    kernel::{
        attach::{self, AttachChoice, AttachMethod, Conflict},
        object::{ObjectChoice, ObjectKind},
    },
    sinks::status::LogFormat,
};

/// What `generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenerateKind {
    /// bash, zsh and fish completions.
    Completions,
    /// roff man pages, one per command.
    Man,
}

/// `--attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachArg {
    /// fentry/fexit when the kernel supports them, else kprobes.
    Auto,
    Fentry,
    Kprobe,
}

/// `--object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectArg {
    /// The modern object, else the legacy one when the kernel refuses the modern one.
    Auto,
    /// fentry and kprobes, aya-log (kernel 5.8 and later).
    Modern,
    /// kprobes only, no aya-log, no global data (kernel 4.4 and later).
    Legacy,
}

impl From<ObjectArg> for ObjectChoice {
    fn from(a: ObjectArg) -> Self {
        match a {
            ObjectArg::Auto => Self::Auto,
            ObjectArg::Modern => Self::Only(ObjectKind::Modern),
            ObjectArg::Legacy => Self::Only(ObjectKind::Legacy),
        }
    }
}

/// `--object` with `--attach`, checked together: the legacy object has no fentry
/// programs. An error is a usage error (exit 2).
pub fn tracer_choice(
    object: ObjectArg,
    attach: AttachArg,
) -> Result<(ObjectChoice, AttachChoice), Conflict> {
    let (object, attach) = (object.into(), attach.into());
    attach::steps(object, attach)?;
    Ok((object, attach))
}

impl From<AttachArg> for AttachChoice {
    fn from(a: AttachArg) -> Self {
        match a {
            AttachArg::Auto => Self::Auto,
            AttachArg::Fentry => Self::Only(AttachMethod::Fentry),
            AttachArg::Kprobe => Self::Only(AttachMethod::Kprobe),
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormatArg {
    /// `netpoll-trace: warning: ...` lines.
    #[default]
    Text,
    /// One JSON object per line: ts (RFC 3339, UTC), level, target, message.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Text => Self::Text,
            LogFormatArg::Json => Self::Json,
        }
    }
}
