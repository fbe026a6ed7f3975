//! Files the sinks write as root (the agent's journal, `watch --record`): created 0600,
//! never through a symlink, and only regular files: a FIFO would block the writer, a
//! device would take the output somewhere else. The directories on the way are opened
//! one by one, each without following a symlink (`open_dir`), so a link someone planted
//! in a directory they can write (`/var/tmp/x -> /etc`) cannot send root's writes
//! elsewhere, and nothing can be swapped between a check and the open.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{
            ffi::OsStrExt as _,
            fs::{MetadataExt as _, PermissionsExt as _},
        },
    },
    path::{Component, Path, PathBuf},
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

/// Most symbolic links followed on the way to a file (the kernel's own limit, 40).
const MAX_LINKS: usize = 40;

/// Whether a symbolic link may be followed on the way to a file we write: only one root
/// or this user (`euid`) made, in a directory only they can change (`/var/run -> /run`,
/// merged /usr), so that nobody else chose where it points or can repoint it.
fn may_follow(link_uid: u32, dir_uid: u32, dir_mode: u32, euid: u32) -> bool {
    let ours = |uid| uid == 0 || uid == euid;
    ours(link_uid) && ours(dir_uid) && dir_mode & 0o022 == 0
}

fn cstr(name: &OsStr) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| anyhow::anyhow!("a NUL in {name:?}"))
}

fn stat_at(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-parameter; dir is open, name NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH,
        )
    };
    if r == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn open_at(dir: Option<&OwnedFd>, name: &CString, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: openat with a NUL-terminated name; the descriptor is owned at once.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC, 0o755) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The directory `dir`, opened a component at a time without following symbolic links
/// but those `may_follow` allows; missing ones created (0755) when `create`.
fn open_dir(dir: &Path, create: bool, what: &str, file: &Path) -> Result<OwnedFd> {
    const DIR: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let refuse = |why: String| anyhow::anyhow!("{what} {}: {why}", file.display());
    let mut todo: Vec<PathBuf> = vec![dir.to_path_buf()];
    let mut at = open_at(None, &cstr(OsStr::new("."))?, DIR)?;
    let mut links = 0;
    while let Some(next) = todo.pop() {
        // Components in order; a link's target is pushed in front of what remained.
        let mut comps = next.components().peekable();
        while let Some(c) = comps.next() {
            let name = match c {
                Component::RootDir => {
                    at = open_at(None, &cstr(OsStr::new("/"))?, DIR)?;
                    continue;
                }
                Component::CurDir | Component::Prefix(_) => continue,
                Component::ParentDir => cstr(OsStr::new(".."))?,
                Component::Normal(n) => cstr(n)?,
            };
            match open_at(Some(&at), &name, DIR) {
                Ok(fd) => {
                    at = fd;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    // SAFETY: mkdirat with a NUL-terminated name in an open directory.
                    let r = unsafe { libc::mkdirat(at.as_raw_fd(), name.as_ptr(), 0o755) };
                    let err = std::io::Error::last_os_error();
                    if r != 0 && err.raw_os_error() != Some(libc::EEXIST) {
                        return Err(refuse(format!("creating {name:?}: {err}")));
                    }
                    at = open_at(Some(&at), &name, DIR)
                        .map_err(|e| refuse(format!("opening {name:?}: {e}")))?;
                    continue;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {}
                Err(e) => return Err(refuse(format!("opening {name:?} on the way: {e}"))),
            }
            // Not a directory: a symbolic link to follow, if anyone but root could not
            // have chosen it, else refused.
            let st = stat_at(&at, &name).map_err(|e| refuse(format!("{name:?}: {e}")))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                return Err(refuse(format!("{name:?} on the way is not a directory")));
            }
            let parent = stat_at(&at, &CString::default())
                .map_err(|e| refuse(format!("checking the directory of {name:?}: {e}")))?;
            links += 1;
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            if links > MAX_LINKS || !may_follow(st.st_uid, parent.st_uid, parent.st_mode, euid) {
                return Err(refuse(format!(
                    "{name:?} on the way is a symbolic link that someone else made or could change: refused (give the real path)"
                )));
            }
            let mut buf = vec![0u8; libc::PATH_MAX as usize];
            // SAFETY: readlinkat into a buffer of its stated size.
            let n = unsafe {
                libc::readlinkat(
                    at.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(refuse(format!(
                    "reading the link {name:?}: {}",
                    std::io::Error::last_os_error()
                )));
            }
            buf.truncate(n as usize);
            let rest: PathBuf = comps.by_ref().collect();
            todo.push(rest);
            todo.push(PathBuf::from(OsStr::from_bytes(&buf)));
            break;
        }
    }
    Ok(at)
}

/// Opens `path` for writing as described above; `what` names it in errors. Its directory
/// must exist.
pub fn open_private(path: &Path, mode: Mode, what: &str) -> Result<File> {
    open(path, mode, what, false)
}

/// `open_private`, creating the directories on the way that are missing (0755).
pub fn open_private_with_dirs(path: &Path, mode: Mode, what: &str) -> Result<File> {
    open(path, mode, what, true)
}

fn open(path: &Path, mode: Mode, what: &str, parents: bool) -> Result<File> {
    let Some(name) = path.file_name() else {
        bail!("{what} {}: not a file name", path.display());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = open_dir(dir, parents, what, path)?;
    // Readable too: the journal checks its own last line (a torn one is cut).
    let flags = libc::O_RDWR
        | libc::O_CREAT
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | match mode {
            Mode::Append => libc::O_APPEND,
            Mode::Truncate => 0,
        };
    let name = cstr(name)?;
    // SAFETY: openat in an open directory with a NUL-terminated name; owned at once.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            0o600,
        )
    };
    let opened = if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(unsafe { File::from_raw_fd(fd) })
    };
    let file = opened.map_err(|e| match e.raw_os_error() {
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
    fn a_link_on_the_way_is_followed_only_where_nobody_else_could_have_planted_it() {
        // Root (or this user) made both, in directories only root can change: followed.
        assert!(may_follow(0, 0, 0o040755, 0));
        assert!(may_follow(1000, 1000, 0o040755, 1000));
        // Someone else's link, or any link in a directory others can write (/var/tmp).
        assert!(!may_follow(1000, 0, 0o040755, 0));
        assert!(!may_follow(0, 0, 0o041777, 0));
        assert!(!may_follow(0, 0, 0o040775, 0));
        assert!(!may_follow(0, 1000, 0o040755, 0));
    }

    #[test]
    fn a_directory_link_others_could_plant_is_refused_and_nothing_is_created() {
        let d = dir("dirlink");
        let elsewhere = d.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink("elsewhere", d.join("np")).unwrap();
        let p = d.join("np").join("journal.jsonl");
        // A directory others can write, as /var/tmp: the link there is not followed.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        for open in [open_private, open_private_with_dirs] {
            let e = open(&p, Mode::Append, "journal").unwrap_err().to_string();
            assert!(e.contains("symbolic link") && e.contains("\"np\""), "{e}");
            assert!(!e.contains('\n'));
        }
        assert!(!elsewhere.join("journal.jsonl").exists());
        // The same link where only its owner can change it is followed.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        open_private(&p, Mode::Append, "journal").unwrap();
        assert!(elsewhere.join("journal.jsonl").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_directories_are_created_only_when_asked() {
        let d = dir("parents");
        let p = d.join("a").join("b").join("journal.jsonl");
        let e = open_private(&p, Mode::Append, "journal")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(!d.join("a").exists(), "nothing created");
        open_private_with_dirs(&p, Mode::Append, "journal").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        // Relative and through `..`, as a command line gives them.
        let q = d
            .join("a")
            .join("..")
            .join("a")
            .join("b")
            .join("again.jsonl");
        open_private(&q, Mode::Truncate, "record file").unwrap();
        assert!(d.join("a/b/again.jsonl").exists());
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
