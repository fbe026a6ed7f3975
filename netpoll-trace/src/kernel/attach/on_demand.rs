//! A program attached only while it is needed (`Target::on_demand`: netconsole's
//! console write, which counts only what a down device makes netconsole skip): loaded
//! by the late pass, then attached and detached at the pipeline's word. A module's
//! function, so kprobes whatever the method: a PMU kprobe, or an armed event (made
//! once; the kernel registers its kprobe only while a program is attached to it).

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{KProbe, kprobe::KProbeLinkId},
};

use super::{
    armed::{self, ArmedLink},
    program::{load_kprobes, program, program_error},
    verify::Verified,
};
use crate::kernel::targets::{TARGETS, Target};

pub(super) struct OnDemand {
    /// Its TARGETS row.
    row: usize,
    /// The entry program (on-demand rows have no return probe).
    program: &'static str,
    /// The armed event's tracepoint id, for an armed row.
    armed_event: Option<u64>,
    link: Option<Link>,
}

enum Link {
    Kprobe(KProbeLinkId),
    /// Closing it detaches.
    Armed(#[allow(dead_code)] ArmedLink),
}

impl OnDemand {
    /// Loads TARGETS[`row`]'s program (and arms its event), attaching nothing.
    pub(super) fn hold(ebpf: &mut Ebpf, row: usize, verified: &mut Verified) -> Result<Self> {
        let t = &TARGETS[row];
        let loaded = load_kprobes(ebpf, t, verified)?;
        let program = loaded
            .iter()
            .find(|(_, _, ret)| !ret)
            .map(|(name, _, _)| *name)
            .context("an on-demand function without an entry program")?;
        let armed_event = if t.armed {
            Some(armed::arm(t, "kprobe", false)?)
        } else {
            None
        };
        Ok(Self {
            row,
            program,
            armed_event,
            link: None,
        })
    }

    pub(super) fn target(&self) -> &'static Target {
        &TARGETS[self.row]
    }

    pub(super) fn attached(&self) -> bool {
        self.link.is_some()
    }

    /// Attaches (`on`) or detaches the program; whether anything changed.
    pub(super) fn set(&mut self, ebpf: &mut Ebpf, on: bool) -> Result<bool> {
        let t = self.target();
        match (on, self.link.take()) {
            (true, None) => {
                self.link = Some(match self.armed_event {
                    Some(id) => {
                        Link::Armed(armed::attach_program(ebpf, t, self.program, "kprobe", id)?)
                    }
                    None => Link::Kprobe(
                        program::<KProbe>(ebpf, self.program)?
                            .attach(t.function(), 0)
                            .map_err(|e| program_error("kprobe", self.program, t.function(), e))?,
                    ),
                });
                Ok(true)
            }
            (false, Some(Link::Kprobe(id))) => {
                program::<KProbe>(ebpf, self.program)?
                    .detach(id)
                    .with_context(|| format!("detaching {} from {}", self.program, t.function()))?;
                Ok(true)
            }
            (false, Some(Link::Armed(link))) => {
                drop(link);
                Ok(true)
            }
            (_, link) => {
                self.link = link;
                Ok(false)
            }
        }
    }
}
