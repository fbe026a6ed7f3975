//! The kernel's BTF facts (`facts`) kept between runs in one root-owned file,
//! /var/cache/netpoll-trace/kernel-btf.json, so that start-up reads the kernel's build-id
//! (or where there is none, hashes the BTF) instead of parsing it. Only the kernel's own
//! BTF is cached. Nothing here is ever fatal: a cache
//! that cannot be read, trusted or written is a miss, said at debug level.
//!
//! Trust: the directory (created 0700 when missing) must be a real directory, not a
//! symbolic link, owned by our effective uid and not writable by group or others; the
//! file is opened with O_NOFOLLOW and must be a regular file with the same owner and
//! modes. It is written to a temporary name (O_CREAT|O_EXCL|O_NOFOLLOW, 0600), synced
//! and renamed into place, so a reader never sees half a document and a planted
//! symbolic link is replaced, never followed.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    io::{Read as _, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::{
            ffi::OsStrExt as _,
            fs::{DirBuilderExt as _, MetadataExt as _},
        },
    },
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::facts::{self, Facts, Identity, IdentityHasher};
use crate::kernel::host;

/// Where the facts are kept.
pub const DIR: &str = "/var/cache/netpoll-trace";
/// The file in `DIR`.
pub const FILE: &str = "kernel-btf.json";

/// The path of the cache file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Where the running kernel's ELF notes are (its build-id among them).
pub const KERNEL_NOTES: &str = "/sys/kernel/notes";

/// The running kernel's build-id, None when it tells none (no such note, or the file is
/// unreadable: root-only since 6.8, and absent where sysfs is).
fn kernel_build_id() -> Option<String> {
    let mut notes = Vec::new();
    File::open(KERNEL_NOTES)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut notes)
        .ok()?;
    super::notes::gnu_build_id(&notes)
}

/// The identity of the running kernel's BTF of `size` bytes: by the kernel's build-id,
/// else by `hash` (the BTF's bytes hashed).
pub fn identity(
    release: &str,
    size: u64,
    hash: impl FnOnce() -> Result<Identity>,
) -> Result<Identity> {
    match kernel_build_id() {
        Some(id) => Ok(Identity::of_build(release, size, id)),
        None => hash(),
    }
}

/// The identity of the running kernel's BTF at `path` (`identity`, the file hashed).
pub fn live_identity(path: &Path, release: &str) -> Result<Identity> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    identity(release, size, || identity_of_file(path, release))
}

/// The identity of the BTF at `path` on kernel `release`, hashed 64 KiB at a time: the
/// whole file, never held in memory.
pub fn identity_of_file(path: &Path, release: &str) -> Result<Identity> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = IdentityHasher::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
        }
    }
    Ok(h.finish(release))
}

fn cstr(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat(2)` relative to `dir` (or the working directory), close-on-exec.
fn openat(
    dir: Option<&File>,
    name: &OsStr,
    flags: i32,
    mode: libc::mode_t,
) -> std::io::Result<File> {
    let c = cstr(name)?;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid directory fd (or AT_FDCWD) and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            at,
            c.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Why a file or directory of the cache cannot be trusted, if it cannot: it must be
/// ours (our effective uid) and not writable by group or others.
fn untrusted(m: &std::fs::Metadata, euid: u32) -> Option<String> {
    if m.uid() != euid {
        return Some(format!("owned by uid {}, not {euid}", m.uid()));
    }
    let perm = m.mode() & 0o7777;
    (perm & 0o022 != 0).then(|| format!("writable by group or others (mode {perm:o})"))
}

/// Opens the cache directory `dir` without following a symbolic link at its last
/// component, and checks it.
fn open_dir(dir: &Path) -> Result<File> {
    let d = openat(
        None,
        dir.as_os_str(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            anyhow!("{} is a symbolic link or not a directory", dir.display())
        }
        _ => anyhow!("{}: {e}", dir.display()),
    })?;
    let m = d.metadata().with_context(|| dir.display().to_string())?;
    if let Some(why) = untrusted(&m, host::euid()) {
        bail!("{} is {why}", dir.display());
    }
    Ok(d)
}

/// The facts cached in `dir` for the BTF `live` identifies; an error says why there are
/// none to use (absent, untrusted, garbled, another BTF's). `live` is computed only once a
/// trusted file was found: a first run does not hash the BTF for nothing.
pub fn load(dir: &Path, live: impl FnOnce() -> Result<Identity>) -> Result<Facts> {
    let d = open_dir(dir)?;
    let path = path_in(dir);
    let file = openat(
        Some(&d),
        OsStr::new(FILE),
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => anyhow!("{} is a symbolic link", path.display()),
        _ => anyhow!("{}: {e}", path.display()),
    })?;
    let m = file
        .metadata()
        .with_context(|| path.display().to_string())?;
    if !m.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if let Some(why) = untrusted(&m, host::euid()) {
        bail!("{} is {why}", path.display());
    }
    let mut bytes = Vec::new();
    file.take(facts::MAX_DOCUMENT as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    let live = live()?;
    facts::decode(&bytes, &live).with_context(|| path.display().to_string())
}

/// Creates `dir` 0700 when it is missing (its parent as an ordinary directory, 0755).
fn ensure_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow!("creating {}: {e}", dir.display())),
    }
}

/// Writes `facts` for the BTF `identity` names into `dir` (see the module's doc for
/// how); returns the file's path.
pub fn store(dir: &Path, identity: &Identity, facts: &Facts) -> Result<PathBuf> {
    ensure_dir(dir)?;
    let d = open_dir(dir)?;
    let path = path_in(dir);
    let tmp = format!(".{FILE}.{}.tmp", std::process::id());
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let mut file = openat(Some(&d), OsStr::new(&tmp), flags, 0o600)
        .with_context(|| format!("creating {}", dir.join(&tmp).display()))?;
    let written = file
        .write_all(&facts::encode(identity, facts))
        .and_then(|()| file.sync_all())
        .and_then(|()| renameat(&d, OsStr::new(&tmp), OsStr::new(FILE)));
    if let Err(e) = written {
        if let Ok(c) = cstr(OsStr::new(&tmp)) {
            // SAFETY: a valid directory fd and a NUL-terminated name.
            unsafe { libc::unlinkat(d.as_raw_fd(), c.as_ptr(), 0) };
        }
        bail!("writing {}: {e}", path.display());
    }
    // The rename is durable once the directory is; a failure here loses only the cache.
    let _ = d.sync_all();
    Ok(path)
}

fn renameat(dir: &File, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: a valid directory fd and NUL-terminated names.
    if unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::kernel::{btf::FunctionIndex, offsets::facts::Answers};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("npt-cache-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn facts() -> Facts {
        Facts {
            functions: vec![
                ("netpoll_setup".into(), true),
                ("netpoll_poll_dev".into(), false),
            ],
            index: FunctionIndex {
                type_count: 10,
                funcs: vec![("netpoll_setup".into(), 4, 3)],
            },
            layout: Answers::default(),
        }
    }

    fn identity() -> Identity {
        Identity::of_bytes("6.12.9-amd64", b"not really btf")
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_hash_of_a_file_is_the_hash_of_its_bytes() {
        let t = TempDir::new("hash");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(t.0.join("btf"), &data).unwrap();
        assert_eq!(
            identity_of_file(&t.0.join("btf"), "r").unwrap(),
            Identity::of_bytes("r", &data)
        );
    }

    #[test]
    fn stored_facts_load_back_from_a_private_directory_and_file() {
        let t = TempDir::new("roundtrip");
        let dir = t.0.join("cache").join("netpoll-trace");
        let path = store(&dir, &identity(), &facts()).unwrap();
        assert_eq!(path, dir.join(FILE));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load(&dir, || Ok(identity())).unwrap(), facts());
        // Nothing left behind but the file; a second store replaces it.
        store(&dir, &identity(), &facts()).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
        let other = Identity::of_bytes("6.12.9-amd64", b"other btf");
        assert!(
            format!("{:#}", load(&dir, || Ok(other.clone())).unwrap_err()).contains("another BTF")
        );
    }

    #[test]
    fn a_symlinked_file_is_not_followed_and_is_replaced() {
        let t = TempDir::new("link");
        let dir = t.0.join("c");
        store(&dir, &identity(), &facts()).unwrap();
        let target = t.0.join("elsewhere.json");
        std::fs::rename(dir.join(FILE), &target).unwrap();
        let before = std::fs::read(&target).unwrap();
        std::os::unix::fs::symlink(&target, dir.join(FILE)).unwrap();
        let e = format!("{:#}", load(&dir, || Ok(identity())).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        store(&dir, &identity(), &facts()).unwrap();
        assert!(
            std::fs::symlink_metadata(dir.join(FILE))
                .unwrap()
                .file_type()
                .is_file()
        );
        assert_eq!(std::fs::read(&target).unwrap(), before);
    }

    #[test]
    fn a_symlinked_or_loose_directory_is_refused() {
        let t = TempDir::new("dir");
        let real = t.0.join("real");
        store(&real, &identity(), &facts()).unwrap();
        let link = t.0.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for e in [
            load(&link, || Ok(identity())).unwrap_err(),
            store(&link, &identity(), &facts()).unwrap_err(),
        ] {
            assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        }
        for loose in [0o770, 0o707, 0o777] {
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(loose)).unwrap();
            for e in [
                load(&real, || Ok(identity())).unwrap_err(),
                store(&real, &identity(), &facts()).unwrap_err(),
            ] {
                assert!(
                    format!("{e:#}").contains("writable by group or others"),
                    "{loose:o}: {e:#}"
                );
            }
        }
    }

    #[test]
    fn a_loose_or_odd_file_is_refused() {
        let t = TempDir::new("file");
        let dir = t.0.join("c");
        let path = store(&dir, &identity(), &facts()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622)).unwrap();
        assert!(
            format!("{:#}", load(&dir, || Ok(identity())).unwrap_err())
                .contains("writable by group or others")
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(load(&dir, || Ok(identity())).is_err());
        std::fs::remove_dir(&path).unwrap();
        // Oversized: refused without reading it all.
        std::fs::write(&path, vec![b' '; facts::MAX_DOCUMENT * 4]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            format!("{:#}", load(&dir, || Ok(identity())).unwrap_err()).contains("larger than")
        );
        assert!(load(&t.0.join("absent"), || Ok(identity())).is_err());
    }
}
