//! The lock that keeps a second live recorder off the same pins.
//!
//! The lock is the pin directory itself: `flock` on a descriptor of the directory,
//! so every spelling of it (a trailing slash, `..`, a symlink, a bind mount) takes the
//! same lock. A lock keyed by the path's text let `v1/` attach a second set of probes
//! and take the first recorder's perf arrays over (issue #13, item 4).

use std::{
    fs::File,
    os::{
        fd::AsRawFd as _,
        unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    },
    path::Path,
};

use anyhow::{Context as _, Result, bail};

/// Keeps a second live recorder (and `reset`) off the same pins: its probes would count
/// every set-up twice, and it would steal the first one's events. Held while the
/// recorder runs; the kernel drops it when the process dies, even by SIGKILL.
#[derive(Debug)]
pub struct Lock {
    _dir: File,
}

/// Who holds the lock, for the error: the flock entry of /proc/locks on the directory's
/// device and inode.
fn holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; "->" lines are waiters.
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f[4].parse().ok())?
    })
}

impl Lock {
    /// The lock of a recorder about to use `dir`; creates the directory.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating pin directory {}", dir.display()))?;
        Self::take(
            dir,
            "recording into",
            "stop it first (a second one would count every set-up twice and take its events)",
        )
    }

    /// The lock `reset` holds while it removes `dir` (which must exist).
    pub fn for_reset(dir: &Path) -> Result<Self> {
        Self::take(
            dir,
            "recording into",
            "stop it first (SIGTERM), then reset; its pins stay while it runs",
        )
    }

    fn take(dir: &Path, doing: &str, fix: &str) -> Result<Self> {
        // Following a symlink is wanted: the lock is on the directory the pins go into.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .with_context(|| format!("opening pin directory {}", dir.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                bail!("locking pin directory {}: {err}", dir.display());
            }
            let pid = file
                .metadata()
                .ok()
                .and_then(|m| {
                    holder(
                        &std::fs::read_to_string("/proc/locks").unwrap_or_default(),
                        m.dev(),
                        m.ino(),
                    )
                })
                .map_or("pid unknown".to_string(), |p| format!("pid {p}"));
            bail!(
                "another netpoll-trace ({pid}) is {doing} {}; {fix}",
                dir.display()
            );
        }
        // The path must still name the directory we locked (not swapped meanwhile).
        let (locked, now) = (file.metadata()?, std::fs::metadata(dir));
        if !now.is_ok_and(|n| n.dev() == locked.dev() && n.ino() == locked.ino()) {
            bail!(
                "pin directory {} was replaced while it was being locked; try again",
                dir.display()
            );
        }
        Ok(Self { _dir: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_directory_takes_the_same_lock() {
        let root = std::env::temp_dir().join(format!("npt-lock-{}", std::process::id()));
        let dir = root.join("v1");
        std::fs::create_dir_all(&dir).unwrap();
        let link = root.join("link");
        let _ = std::os::unix::fs::symlink(&dir, &link);
        let first = Lock::acquire(&dir).unwrap();
        let spellings = [
            format!("{}/", dir.display()),
            format!("{}/../v1", dir.display()),
            format!("{}/./", dir.display()),
            link.display().to_string(),
        ];
        for s in &spellings {
            let e = Lock::acquire(Path::new(s)).expect_err(s).to_string();
            assert!(
                e.contains("another netpoll-trace") && e.contains("stop it first"),
                "{s}: {e}"
            );
            assert!(
                e.contains(&format!("pid {}", std::process::id())) || e.contains("pid unknown"),
                "{e}"
            );
            assert!(Lock::for_reset(Path::new(s)).is_err(), "{s}");
        }
        drop(first);
        // Released with its holder: any spelling takes it now.
        drop(Lock::acquire(Path::new(&spellings[3])).unwrap());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:1a:42 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 00:1a:42 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 00:1a:42 0 EOF\n";
        let dev = libc::makedev(0, 0x1a);
        assert_eq!(holder(locks, dev, 42), Some(1234));
        assert_eq!(holder(locks, dev, 43), None);
        assert_eq!(holder(locks, libc::makedev(8, 1), 42), None);
    }
}
