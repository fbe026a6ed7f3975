//! The lock that keeps a second live recorder off the same pins.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// Keeps a second live recorder off the same pins (its probes would count every
/// set-up twice, and it would steal the first one's events). Held while the
/// recorder runs; the kernel drops it when the process dies, even by SIGKILL.
pub struct Lock {
    _file: File,
}

fn lock_path(dir: &Path) -> PathBuf {
    let name: String =
        dir.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    Path::new("/run/netpoll-trace").join(format!("{name}.lock"))
}

impl Lock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = lock_path(dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another netpoll-trace ({}) is recording into {}; stop it first (a second one would count every set-up twice)",
                holder.trim().strip_prefix("pid ").map_or("pid unknown".to_string(), |p| format!("pid {p}")),
                dir.display()
            );
        }
        let _ = file.set_len(0);
        let _ = std::io::Write::write_all(&mut &file, format!("pid {}\n", std::process::id()).as_bytes());
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_paths_differ_per_directory_and_stay_flat() {
        let a = lock_path(Path::new("/sys/fs/bpf/netpoll-trace/v1"));
        let b = lock_path(Path::new("/sys/fs/bpf/other"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/run/netpoll-trace")));
    }
}
