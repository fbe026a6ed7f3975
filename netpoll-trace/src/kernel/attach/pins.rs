//! The flight recorder's links, pinned in its directory so the probes outlive us: the
//! programs' links and the armed module probes' BPF perf links, all or nothing.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use aya::{Ebpf, programs::links::PinnedLink};

use super::{armed, program::LinkId};
use crate::kernel::recorder;

/// A pin made, undone by removing it (and with it its link).
enum Pinned {
    Program(PinnedLink),
    Armed(PathBuf),
}

impl Pinned {
    fn undo(self) {
        match self {
            Self::Program(p) => drop(p.unpin()),
            Self::Armed(path) => drop(std::fs::remove_file(path)),
        }
    }
}

/// Pins every link, the programs' (`links`) and the armed probes' BPF perf links (a perf
/// event without a link cannot be pinned), all or nothing: on a failure the pins made so
/// far are removed (and with them their links) and the start fails. Names as
/// `recorder::LINK_PREFIX` + program.
pub(super) fn pin_links(
    ebpf: &mut Ebpf,
    links: Vec<LinkId>,
    armed: &[armed::ArmedLink],
    dir: &Path,
) -> Result<Vec<String>> {
    let mut done: Vec<(String, Pinned)> = Vec::new();
    let path_of = |name: &str| dir.join(format!("{}{name}", recorder::LINK_PREFIX));
    let mut pin_one = |done: &mut Vec<(String, Pinned)>, link: LinkId| -> Result<()> {
        let (name, fd) = link.take_fd(ebpf)?;
        let path = path_of(name);
        let p = fd
            .pin(&path)
            .map_err(|e| anyhow!("pinning the link of {name} at {}: {e}", path.display()))?;
        done.push((name.to_string(), Pinned::Program(p)));
        Ok(())
    };
    let mut result = Ok(());
    for link in links {
        result = pin_one(&mut done, link);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        for a in armed.iter().filter(|a| a.is_link) {
            let path = path_of(a.program);
            result = armed::pin(&a.fd, &path);
            if result.is_err() {
                break;
            }
            done.push((a.program.to_string(), Pinned::Armed(path)));
        }
    }
    match result {
        Ok(()) => Ok(done.into_iter().map(|(n, _)| n).collect()),
        Err(e) => {
            for (_, p) in done {
                p.undo();
            }
            Err(e)
        }
    }
}
