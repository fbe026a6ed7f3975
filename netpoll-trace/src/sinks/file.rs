//! Files the sinks write as root (the agent's journal, `watch --record`): created 0600,
//! never through a symlink, and only regular files: a FIFO would block the writer, a
//! device would take the output somewhere else.

use std::{
    fs::File,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

/// How an existing file is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep what is there, write at the end (the journal).
    Append,
    /// Start empty (a record file).
    Truncate,
}

/// Opens `path` for writing as described above; `what` names it in errors.
pub fn open_private(path: &Path, mode: Mode, what: &str) -> Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    // Readable too: the journal checks its own last line (a torn one is cut).
    opts.read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    match mode {
        Mode::Append => opts.append(true),
        Mode::Truncate => opts.truncate(false),
    };
    let file = opts.open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => anyhow::anyhow!(
            "{what} {} is a symbolic link: refused (give the real path)",
            path.display()
        ),
        Some(libc::ENXIO) => anyhow::anyhow!(
            "{what} {} is a FIFO or socket: refused (give a regular file)",
            path.display()
        ),
        _ => anyhow::anyhow!("opening {what} {}: {e}", path.display()),
    })?;
    let meta = file
        .metadata()
        .with_context(|| format!("checking {what} {}", path.display()))?;
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt as _;
        let t = meta.file_type();
        let kind = if t.is_fifo() || t.is_socket() {
            "is a FIFO or socket"
        } else {
            "is not a regular file"
        };
        bail!(
            "{what} {} {kind}: refused (give a regular file)",
            path.display()
        );
    }
    // Before anything is truncated or chmodded: a second name for the file (a hard link
    // someone made to another file of root's) or another user's file is not ours to change.
    if meta.nlink() > 1 {
        bail!(
            "{what} {} has {} hard links: refused (it may be another file under a second name; give a file of its own)",
            path.display(),
            meta.nlink()
        );
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        bail!(
            "{what} {} belongs to uid {}, not to this user ({euid}): refused (remove it or give another path)",
            path.display(),
            meta.uid()
        );
    }
    // Only once it is known to be a regular file of ours: truncating a device could do harm.
    if mode == Mode::Truncate {
        file.set_len(0)
            .with_context(|| format!("emptying {what} {}", path.display()))?;
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {what} {} private (0600)", path.display()))?;
    }
    // Blocking writes from here on, as for any regular file.
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("npt-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn new_files_are_private_and_existing_ones_made_so() {
        let d = dir("mode");
        let p = d.join("journal.jsonl");
        open_private(&p, Mode::Append, "journal").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let q = d.join("wide");
        std::fs::write(&q, "old\n").unwrap();
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_private(&q, Mode::Append, "journal").unwrap();
        assert_eq!(std::fs::metadata(&q).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&q).unwrap(),
            "old\n",
            "append keeps the content"
        );
        open_private(&q, Mode::Truncate, "record file").unwrap();
        assert_eq!(std::fs::read_to_string(&q).unwrap(), "");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_fifos_and_directories_are_refused_and_left_alone() {
        let d = dir("refuse");
        let target = d.join("target");
        std::fs::write(&target, "keep\n").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_private(&link, Mode::Truncate, "record file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");

        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_private(&fifo, Mode::Append, "journal")
            .unwrap_err()
            .to_string();
        assert!(e.contains("FIFO"), "{e}");

        let e = open_private(&d, Mode::Append, "journal")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&d.display().to_string()), "{e}");
        assert!(!e.contains('\n'));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_hard_linked_file_is_refused_before_it_is_changed() {
        let d = dir("hardlink");
        let other = d.join("shadow");
        std::fs::write(&other, "keep\n").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = d.join("journal.jsonl");
        std::fs::hard_link(&other, &link).unwrap();
        for mode in [Mode::Append, Mode::Truncate] {
            let e = open_private(&link, mode, "journal")
                .unwrap_err()
                .to_string();
            assert!(e.contains("2 hard links"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep\n");
        assert_eq!(std::fs::metadata(&other).unwrap().mode() & 0o777, 0o644);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn another_users_file_is_refused_before_it_is_changed() {
        // (The build machines run tests as root, which can give a file away.)
        let d = dir("owner");
        let p = d.join("record.jsonl");
        std::fs::write(&p, "theirs\n").unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        let e = open_private(&p, Mode::Truncate, "record file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to uid 65534"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "theirs\n");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
