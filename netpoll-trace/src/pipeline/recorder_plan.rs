//! The flight recorder's plan: its pin directory checked, its lock taken, what it
//! already holds.

use std::path::PathBuf;

use anyhow::Result;

use crate::kernel::{object::RecorderPlan, recorder};

/// The flight recorder asked for (`--persist`, `--pin-dir`; the agent's always).
pub struct RecorderOptions {
    pub dir: PathBuf,
    pub ring_size: u32,
    /// Pin the links: recording goes on after this process ends.
    pub persist: bool,
    /// Fail when the recorder cannot be set up (else a warning, and no recorder).
    pub required: bool,
}

/// Checks the pin directory and takes the recorder's lock; notes what it found.
pub(super) fn recorder_plan(
    r: &RecorderOptions,
    notes: &mut Vec<String>,
) -> Result<(recorder::Lock, RecorderPlan)> {
    recorder::require_bpffs(&r.dir)?;
    for other in recorder::other_versions(&r.dir) {
        // Its programs would go on running beside ours: detach them, keep its data.
        let what = match recorder::detach_links(&other) {
            Ok(n) => format!("its {n} pinned probe link(s) detached, its maps kept"),
            Err(e) => format!("left alone ({e:#})"),
        };
        notes.push(format!(
            "{} is a recorder of another schema version: not reused, {what} (`netpoll-trace reset --pin-dir {}` removes it)",
            other.display(),
            other.display()
        ));
    }
    let lock = recorder::Lock::acquire(&r.dir)?;
    let reuse_links = match recorder::inspect(&r.dir)? {
        recorder::Found::Absent => Vec::new(),
        recorder::Found::Recorder(insp) => {
            if insp.meta.ring_size != r.ring_size {
                notes.push(format!(
                    "the ring at {} keeps {} events, as it was created; a new size takes effect after `netpoll-trace reset`",
                    r.dir.display(),
                    insp.meta.ring_size
                ));
            }
            insp.links
        }
    };
    let plan = RecorderPlan {
        dir: r.dir.clone(),
        ring_size: r.ring_size,
        persist: r.persist,
        reuse_links,
    };
    Ok((lock, plan))
}
