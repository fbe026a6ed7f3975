//! What to try: the attach methods, what the user asked for, and the plan: which
//! (object, method) pairs to try, in order, and whether a failure moves on to the next.
//! Pure but for a method's pinnability, so the fallback rules are unit-tested without
//! a kernel.

use std::fmt;

use anyhow::{Result, anyhow};

use super::kprobe;
use crate::kernel::{
    object::{self, ObjectChoice, ObjectKind, Refusal},
    targets::Target,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMethod {
    Fentry,
    Kprobe,
}

impl AttachMethod {
    /// In the order `Auto` tries them.
    pub const ALL: [Self; 2] = [Self::Fentry, Self::Kprobe];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
        }
    }

    /// The programs of `t` for this method: entry, then return.
    pub fn programs(self, t: &Target) -> [Option<&'static str>; 2] {
        match self {
            Self::Fentry => [t.fentry.0, t.fentry.1],
            Self::Kprobe => [Some(t.kprobe.0), t.kprobe.1],
        }
    }

    /// Why this method's links cannot be pinned on this kernel, if they cannot.
    pub(super) fn unpinnable(self) -> Option<&'static str> {
        match self {
            Self::Fentry => None,
            Self::Kprobe => kprobe::unpinnable(),
        }
    }
}

impl fmt::Display for AttachMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for (`--attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachChoice {
    /// fentry/fexit when the kernel supports them, else kprobes.
    Auto,
    Only(AttachMethod),
}

/// `--object legacy --attach fentry`: the legacy object has no fentry programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict(pub String);

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Conflict {}

/// One attempt: load this object, attach with this method.
pub type Step = (ObjectKind, AttachMethod);

/// The attempts for what the user asked, best first: the modern object before the
/// legacy one, fentry before kprobes (the legacy object has kprobes only).
pub fn steps(object: ObjectChoice, attach: AttachChoice) -> Result<Vec<Step>, Conflict> {
    let objects: Vec<ObjectKind> = match object {
        ObjectChoice::Auto => ObjectKind::ALL.to_vec(),
        ObjectChoice::Only(k) => vec![k],
    };
    let methods: Vec<AttachMethod> = match attach {
        AttachChoice::Auto => AttachMethod::ALL.to_vec(),
        AttachChoice::Only(m) => vec![m],
    };
    let steps: Vec<Step> = objects
        .iter()
        .flat_map(|o| methods.iter().map(move |m| (*o, *m)))
        .filter(|(o, m)| *m != AttachMethod::Fentry || o.has_fentry())
        .collect();
    if steps.is_empty() {
        return Err(Conflict(
            "--object legacy has kprobe programs only: use --attach kprobe (or auto) with it, or --object modern for fentry"
                .to_string(),
        ));
    }
    Ok(steps)
}

/// After `failed` failed (with `refusal`: how far loading got, None when something
/// other than loading failed), whether to try `next`:
/// - another method of the same object, unless the object itself was refused (its maps
///   cannot be created: no program of it will load);
/// - the other object only after a load failure (a kernel that cannot attach the modern
///   object's kprobes cannot attach the legacy one's either).
pub fn try_next(failed: Step, refusal: Option<Refusal>, next: Step) -> bool {
    if next.0 == failed.0 {
        refusal != Some(Refusal::Object)
    } else {
        refusal.is_some()
    }
}

/// One attempt that failed before the one that worked, and why.
#[derive(Debug, Clone)]
pub struct Fallback {
    pub object: ObjectKind,
    pub method: AttachMethod,
    pub reason: String,
}

/// Tries `steps` in order, moving on per `try_next`; the first that works
/// wins, with the earlier failures in `fallbacks`. The last failure is the error.
pub(super) fn first_working<T>(
    object: ObjectChoice,
    choice: AttachChoice,
    mut attempt: impl FnMut(ObjectKind, AttachMethod) -> Result<T>,
) -> Result<(T, Vec<Fallback>)> {
    let steps = steps(object, choice)?;
    let mut fallbacks: Vec<Fallback> = Vec::new();
    let mut last: Option<(Step, Option<Refusal>, anyhow::Error)> = None;
    for step in steps {
        if let Some((failed, refusal, _)) = &last
            && !try_next(*failed, *refusal, step)
        {
            continue;
        }
        if let Some((failed, _, e)) = last.take() {
            let reason = format!("{e:#}");
            log::info!(
                "{} object with {} failed, trying the {} object with {}: {reason}",
                failed.0,
                failed.1,
                step.0,
                step.1
            );
            fallbacks.push(Fallback {
                object: failed.0,
                method: failed.1,
                reason,
            });
        }
        match attempt(step.0, step.1) {
            Ok(t) => return Ok((t, fallbacks)),
            Err(e) => last = Some((step, object::refusal(&e), e)),
        }
    }
    Err(last
        .map(|(_, _, e)| e)
        .unwrap_or_else(|| anyhow!("nothing to try")))
}
