//! The loaded object and the late programs (the send path, tear-downs, console write):
//! these attach after `ready` on a blocking thread that holds the object meanwhile, and
//! are reported once (`Output::LateReady`) when it hands the object back.

use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::{
    kernel::{attach, clock, targets},
    model::{
        output::Output,
        ready::{LateReady, Skipped},
    },
};

/// The late programs' attach, on a blocking thread with the loaded object.
type LateAttach = tokio::task::JoinHandle<(Box<attach::Loaded>, attach::LateAttached)>;

/// The loaded object: here, or away with the late pass.
pub(super) struct Object {
    here: Option<Box<attach::Loaded>>,
    away: Option<LateAttach>,
    /// What to report first: the late programs attached with `ready`.
    said: Option<LateReady>,
    ready_at: Instant,
}

impl Object {
    /// Starts the late pass when the first one left one: the object goes to its thread.
    /// Else it stays, and with `defer` (a `watch`) what came with `ready` is said as the
    /// late pass would say it.
    pub(super) fn start(loaded: attach::Loaded, defer: bool) -> Self {
        let ready_at = Instant::now();
        if loaded.has_late() {
            let mut loaded = Box::new(loaded);
            // The verifier's and attach syscalls block: off the runtime's thread, so
            // COMMAND starts and events are read meanwhile.
            let away: LateAttach = tokio::task::spawn_blocking(move || {
                let late = loaded.attach_late();
                (loaded, late)
            });
            return Self {
                here: None,
                away: Some(away),
                said: None,
                ready_at,
            };
        }
        let said = defer.then(|| {
            let late: Vec<&'static str> = loaded
                .attached
                .iter()
                .copied()
                .filter(|f| {
                    targets::TARGETS
                        .iter()
                        .any(|t| t.late && t.function() == *f)
                })
                .collect();
            late_ready(late, Vec::new(), false, 0.0, 0.0, None, None)
        });
        Self {
            here: Some(Box::new(loaded)),
            away: None,
            said,
            ready_at,
        }
    }

    /// The loaded object, or why it cannot be read now.
    pub(super) fn get(&self) -> Result<&attach::Loaded> {
        self.here
            .as_deref()
            .ok_or_else(|| anyhow!("the programs are still being attached"))
    }

    pub(super) fn get_mut(&mut self) -> Option<&mut attach::Loaded> {
        self.here.as_deref_mut()
    }

    /// The late pass is over (or none ran) and its report was taken.
    pub(super) fn all_attached(&self) -> bool {
        self.away.is_none() && self.said.is_none()
    }

    /// What is due to be said now (the late programs attached with `ready`), once.
    pub(super) fn take_said(&mut self) -> Option<Output> {
        self.said.take().map(Output::LateReady)
    }

    /// Waits until the late pass is over and reports it; never, when none runs.
    /// Cancel-safe: awaiting the handle again after a cancel resumes the wait.
    pub(super) async fn back(&mut self) -> Output {
        let Some(h) = self.away.as_mut() else {
            return std::future::pending().await;
        };
        let done = h.await;
        self.away = None;
        let after_ready_ms = self.ready_at.elapsed().as_secs_f64() * 1e3;
        match done {
            Ok((loaded, l)) => {
                self.here = Some(loaded);
                Output::LateReady(late_ready(
                    l.functions,
                    l.skipped,
                    true,
                    l.attach_ms,
                    after_ready_ms,
                    l.error,
                    l.on_demand,
                ))
            }
            // The object went with the thread: the readers go on with what they hold.
            Err(e) => Output::LateReady(late_ready(
                Vec::new(),
                Vec::new(),
                true,
                0.0,
                after_ready_ms,
                Some(format!("the attaching thread failed: {e}")),
                None,
            )),
        }
    }

    /// Waits for the late pass, if one runs (the end needs the object's maps).
    pub(super) async fn settle(&mut self) -> Option<Output> {
        self.away.as_ref()?;
        Some(self.back().await)
    }
}

/// The `attached` object.
fn late_ready(
    functions: Vec<&'static str>,
    skipped: Vec<(&'static str, String)>,
    deferred: bool,
    attach_ms: f64,
    after_ready_ms: f64,
    error: Option<String>,
    on_demand: Option<&'static str>,
) -> LateReady {
    LateReady {
        kind: LateReady::KIND,
        ts_ns: clock::monotonic_ns(),
        functions,
        skipped: skipped
            .into_iter()
            .map(|(function, reason)| Skipped { function, reason })
            .collect(),
        deferred,
        attach_ms,
        after_ready_ms,
        error,
        on_demand,
    }
}
