//! The flight recorder's links, pinned in its directory so the probes outlive us: the
//! programs' links (all or nothing) and the armed module probes' BPF perf links.

use anyhow::{Result, bail};
use aya::{Ebpf, programs::links::PinnedLink};

use super::{armed, program::LinkId};
use crate::kernel::recorder;

/// Pins the armed probes' BPF links (a perf event without a link cannot be pinned: said
/// by the caller's other pins' absence); their names as `pin_links` names them.
pub(super) fn pin_armed(armed: &[armed::ArmedLink], dir: &std::path::Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for a in armed.iter().filter(|a| a.is_link) {
        let path = dir.join(format!("{}{}", recorder::LINK_PREFIX, a.program));
        armed::pin(&a.fd, &path)?;
        done.push(a.program.to_string());
    }
    Ok(done)
}

/// Pins every link, all or nothing: on a failure the pins made so far are removed
/// (and with them their links) and the start fails.
pub(super) fn pin_links(
    ebpf: &mut Ebpf,
    links: Vec<LinkId>,
    dir: &std::path::Path,
) -> Result<Vec<String>> {
    let mut done: Vec<(String, PinnedLink)> = Vec::new();
    let undo = |done: Vec<(String, PinnedLink)>| {
        for (_, p) in done {
            let _ = p.unpin();
        }
    };
    for link in links {
        let (name, fd) = match link.take_fd(ebpf) {
            Ok(x) => x,
            Err(e) => {
                undo(done);
                return Err(e);
            }
        };
        let path = dir.join(format!("{}{name}", recorder::LINK_PREFIX));
        match fd.pin(&path) {
            Ok(p) => done.push((name.to_string(), p)),
            Err(e) => {
                undo(done);
                bail!("pinning the link of {name} at {}: {e}", path.display());
            }
        }
    }
    Ok(done.into_iter().map(|(n, _)| n).collect())
}
