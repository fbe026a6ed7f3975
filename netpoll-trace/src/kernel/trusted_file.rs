//! Files root trusts with what it runs: a kernel module it loads, the agent's configuration
//! (which names a command run as root and a journal the agent chmods). Each is opened once,
//! without following a symbolic link, and checked through its descriptor together with
//! every directory above it: root-owned, not writable by group or others (a sticky
//! directory such as /tmp excepted: others cannot replace root's entries there).

use std::{
    ffi::CString,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Result, anyhow};

/// What is wrong with a file or directory on a trusted file's path, if anything: only root
/// may be able to change what gets loaded into the kernel or what the agent runs. `sticky` directories
/// (/tmp) may be writable by others: they cannot replace root's entries there.
pub fn untrusted(kind: Kind, uid: u32, mode: u32) -> Option<String> {
    let perm = mode & 0o7777;
    if uid != 0 {
        return Some(format!("owned by uid {uid}, not root"));
    }
    let writable = perm & 0o022 != 0;
    match kind {
        Kind::File if writable => Some(format!("writable by group or others (mode {perm:o})")),
        Kind::Dir if writable && perm & 0o1000 == 0 => Some(format!(
            "a directory writable by group or others (mode {perm:o}), so its entries can be swapped"
        )),
        Kind::Other => Some("not a regular file".to_string()),
        _ => None,
    }
}

/// What `untrusted` is judging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Other,
}

/// A file opened once, checked through its descriptor (the file and every directory above
/// it), and used through that same descriptor: a path swapped after the check changes
/// nothing.
pub struct TrustedFile {
    pub file: std::fs::File,
    pub path: PathBuf,
}

fn openat(
    dir: Option<&std::fs::File>,
    name: &std::ffi::OsStr,
    flags: i32,
) -> std::io::Result<std::fs::File> {
    use std::os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::ffi::OsStrExt as _,
    };
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid directory fd (or AT_FDCWD) and a NUL-terminated name.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The directory `at` is in, opened and checked with every directory above it (links
/// among them resolved once, then each real directory opened without following one):
/// its descriptor, its real path, and `at`'s last component. `path` (what was asked
/// for) names it in errors.
fn checked_dir<'a>(
    at: &'a Path,
    what: &str,
    path: &Path,
) -> Result<(std::fs::File, PathBuf, &'a std::ffi::OsStr)> {
    let shown = path.display();
    let refuse = |dir: &Path, why: String| {
        anyhow!(
            "refusing {what} {shown}: {} is {why} (fix its owner or mode if you trust it)",
            dir.display()
        )
    };
    let name = at
        .file_name()
        .ok_or_else(|| anyhow!("{what} {shown}: not a file name"))?;
    let parent = at
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let real = std::fs::canonicalize(parent)
        .map_err(|e| anyhow!("{what} {shown}: {}: {e}", parent.display()))?;
    let mut dir: Option<std::fs::File> = None;
    let mut walked = PathBuf::from("/");
    for c in real.components() {
        let part = c.as_os_str();
        if c != std::path::Component::RootDir {
            walked.push(part);
        }
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let d = openat(dir.as_ref(), part, flags)
            .map_err(|e| anyhow!("{what} {shown}: {}: {e}", walked.display()))?;
        let m = d
            .metadata()
            .map_err(|e| anyhow!("{what} {shown}: {}: {e}", walked.display()))?;
        if let Some(why) = untrusted(Kind::Dir, m.uid(), m.mode()) {
            return Err(refuse(&walked, why));
        }
        dir = Some(d);
    }
    let dir = dir.ok_or_else(|| anyhow!("{what} {shown}: no directory"))?;
    Ok((dir, real, name))
}

/// The target of the symbolic link `link` (opened O_PATH|O_NOFOLLOW) refers to.
fn read_link(link: &std::fs::File) -> std::io::Result<PathBuf> {
    use std::os::{fd::AsRawFd as _, unix::ffi::OsStringExt as _};
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an O_PATH descriptor of a link, "" (the link itself), a buffer of its size.
    let n = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(std::ffi::OsString::from_vec(buf).into())
}

impl TrustedFile {
    /// Opens `path`; `what` names it in errors (a module file, the configuration).
    pub fn open(path: &Path, what: &str) -> Result<Self> {
        let (dir, _, name) = checked_dir(path, what, path)?;
        Self::open_in(&dir, name, what, path)
    }

    /// Opens a program to run as root: as `open`, but a symbolic link in its place
    /// (/usr/sbin/modprobe -> /bin/kmod) is followed when it is root's, read through its
    /// checked directory; the file it ends at is checked in turn.
    pub fn open_program(path: &Path, what: &str) -> Result<Self> {
        let shown = path.display();
        let mut at = path.to_path_buf();
        // As the kernel's own limit on links followed in one lookup.
        for _ in 0..40 {
            let (dir, real, name) = checked_dir(&at, what, path)?;
            let link = openat(Some(&dir), name, libc::O_PATH | libc::O_NOFOLLOW)
                .map_err(|e| anyhow!("{what} {shown}: {}: {e}", at.display()))?;
            let m = link
                .metadata()
                .map_err(|e| anyhow!("{what} {shown}: {}: {e}", at.display()))?;
            if !m.file_type().is_symlink() {
                return Self::open_in(&dir, name, what, path);
            }
            if m.uid() != 0 {
                return Err(anyhow!(
                    "refusing {what} {shown}: {} is a symbolic link owned by uid {}, not root (fix its owner if you trust it)",
                    at.display(),
                    m.uid()
                ));
            }
            // Relative to the link's (real) directory; an absolute target replaces it.
            at = real.join(read_link(&link).map_err(|e| anyhow!("{what} {shown}: {e}"))?);
        }
        Err(anyhow!("refusing {what} {shown}: too many symbolic links"))
    }

    /// Opens `name` in the checked `dir`, without following a link, and checks the file.
    fn open_in(
        dir: &std::fs::File,
        name: &std::ffi::OsStr,
        what: &str,
        path: &Path,
    ) -> Result<Self> {
        let shown = path.display();
        let file = openat(
            Some(dir),
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => anyhow!(
                "refusing {what} {shown}: it is a symbolic link; pass the file it points to"
            ),
            _ => anyhow!("{what} {shown}: {e}"),
        })?;
        let m = file
            .metadata()
            .map_err(|e| anyhow!("{what} {shown}: {e}"))?;
        let kind = if m.is_file() { Kind::File } else { Kind::Other };
        if let Some(why) = untrusted(kind, m.uid(), m.mode()) {
            return Err(anyhow!(
                "refusing {what} {shown}: {why} (fix its owner or mode if you trust it)"
            ));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The whole file at `path` when it exists (a symbolic link counts as existing, and
    /// is then refused), read through the checked descriptor; None when it does not.
    pub fn read_if_exists(path: &Path, what: &str) -> Result<Option<String>> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => Ok(Some(Self::open(path, what)?.read_to_string()?)),
        }
    }

    /// The whole file, read through the checked descriptor.
    pub fn read_to_string(&mut self) -> Result<String> {
        use std::io::Read as _;
        let mut text = String::new();
        self.file
            .read_to_string(&mut text)
            .map_err(|e| anyhow!("reading {}: {e}", self.path.display()))?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("npt-trusted-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    /// The agent's configuration names a command it runs as root: a file group or others
    /// can write, or another user's, is refused, naming the file and the reason. (Tests run
    /// as root on the build machines, which can give a file away.)
    #[test]
    fn a_configuration_others_could_change_is_refused_and_a_good_one_read() {
        let d = scratch("config");
        let good = d.join("agent.toml");
        std::fs::write(&good, "journal = \"/tmp/j\"\n").unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            TrustedFile::open(&good, "configuration")
                .unwrap()
                .read_to_string()
                .unwrap(),
            "journal = \"/tmp/j\"\n"
        );
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = TrustedFile::open(&good, "configuration")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("refusing configuration ") && e.contains("writable by group or others"),
            "{e}"
        );
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&good, Some(65534), None).unwrap();
        let e = TrustedFile::open(&good, "configuration")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
