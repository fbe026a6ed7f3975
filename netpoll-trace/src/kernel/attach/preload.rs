//! The first attempt's object, loaded while start-up still resolves the offsets.

use aya::Ebpf;

use super::plan::{AttachChoice, steps};
use crate::kernel::object::{self, ObjectChoice, ObjectKind, RecorderPlan};

/// The object the first attempt will use, loaded with its maps (no configuration, no
/// program) while start-up still resolves the offsets on another thread.
#[derive(Default)]
pub struct Preloaded(Option<(ObjectKind, Ebpf)>);

impl Preloaded {
    /// Loads the first attempt's object; nothing when that fails (the attempt loads it
    /// again and reports the failure in order) or with a flight recorder: its pins are
    /// state outside this process, made only once the kernel is known to have what the
    /// tracer needs.
    pub fn load(
        object: ObjectChoice,
        choice: AttachChoice,
        recorder: Option<&RecorderPlan>,
    ) -> Self {
        if recorder.is_some() {
            return Self(None);
        }
        let Some((kind, _)) = steps(object, choice).ok().and_then(|s| s.first().copied()) else {
            return Self(None);
        };
        match object::load_maps(kind, None) {
            Ok(ebpf) => Self(Some((kind, ebpf))),
            Err(e) => {
                log::debug!("preloading the {kind} object: {e:#}");
                Self(None)
            }
        }
    }

    /// The preloaded object if it is `kind`, once.
    pub(super) fn take(&mut self, kind: ObjectKind) -> Option<Ebpf> {
        match self.0.take() {
            Some((k, ebpf)) if k == kind => Some(ebpf),
            other => {
                self.0 = other;
                None
            }
        }
    }
}
