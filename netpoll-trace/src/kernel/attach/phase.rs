//! The two passes: the set-up and poll programs before `ready`, the send path,
//! tear-downs and console write after it (`Target::late`), on the same object
//! (`Loaded::attach_late`).

use super::{fentry::FentryBtf, plan::AttachMethod};
use crate::kernel::targets::Target;

/// Which of TARGETS' programs one pass loads and attaches (`Target::late`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The set-up and poll programs: what `ready` waits for.
    Early,
    /// The send path, tear-downs and console write, attached after `ready`.
    Late,
    /// Both in one pass (`check`, a recorder that pins its links: its pins are
    /// all-or-nothing, made once).
    All,
}

impl Phase {
    pub(super) fn takes(self, t: &Target) -> bool {
        match self {
            Self::Early => !t.late,
            Self::Late => t.late,
            Self::All => true,
        }
    }
}

/// What the late pass needs from the early one.
pub(super) struct Deferred {
    pub(super) method: AttachMethod,
    /// fentry's BTF as the first pass built it (`FentryBtf`).
    pub(super) fentry_btf: FentryBtf,
    pub(super) present: Vec<bool>,
    pub(super) attached_ids: Vec<u32>,
}

/// What the late pass attached (`Loaded::attach_late`).
#[derive(Debug, Clone, Default)]
pub struct LateAttached {
    /// Functions attached in this pass.
    pub functions: Vec<&'static str>,
    /// Optional functions not attached, with why.
    pub skipped: Vec<(&'static str, String)>,
    /// Wall time of the pass, in milliseconds.
    pub attach_ms: f64,
    /// A failure that stopped the pass (the functions not attached are not traced).
    pub error: Option<String>,
    /// The function of `functions` whose program is attached only while needed
    /// (`Loaded::set_on_demand`).
    pub on_demand: Option<&'static str>,
}
