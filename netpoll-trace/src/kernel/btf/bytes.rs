//! The kernel's BTF as bytes: mapped where the kernel lets /sys/kernel/btf/vmlinux be
//! mapped (6.16 and later map it read-only onto the kernel's own pages), else read.
//!
//! Why: sysfs hands a binary file out one page per read(2), so the kernel's 5-6 MiB took
//! ~1,200 system calls (38 ms per read under TCG on 6.12) and sat in our heap as a copy
//! (the start-up peak of a run without the facts cache). A mapping is neither: its pages
//! are the kernel's, mapped by PFN, and not counted in our RSS.

use std::{
    fs::File,
    io::Read as _,
    ops::Deref,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    ptr::NonNull,
};

/// Where the running kernel publishes its BTF: the one file mapped.
pub const SYSFS_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `statfs(2)`'s f_type of sysfs.
const SYSFS_MAGIC: libc::c_long = 0x6265_6572;

/// A BTF file's bytes, read or mapped.
pub enum Bytes {
    Read(Vec<u8>),
    Mapped(Mapping),
}

impl Bytes {
    pub fn is_mapped(&self) -> bool {
        matches!(self, Bytes::Mapped(_))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes::Read(v)
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Read(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.is_mapped() { "mapped" } else { "read" };
        write!(f, "Bytes({how}, {} bytes)", self.len())
    }
}

/// A read-only private mapping of a whole sysfs file, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the pages are mapped read-only and are the kernel's BTF, which it never writes
// after boot (`map_sysfs` maps nothing else); sharing a view of them between threads is
// sharing a `&[u8]`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes (mmap succeeded with that length) until
        // drop, and nothing writes them (see the Send/Sync note).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mmap returned; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Whether a file may be mapped: only the kernel's own BTF, on sysfs (`fs_type`) and the
/// very inode of SYSFS_VMLINUX (`file` and `vmlinux`: device and inode). Its mapping is
/// the kernel's read-only data; any other sysfs file that maps (a PCI device's resource,
/// reachable through a path the user gives, as `--btf`'s base) may be device memory that
/// changes or goes away under a `&[u8]`, and a regular file could be truncated under it.
fn mappable(fs_type: libc::c_long, file: (u64, u64), vmlinux: Option<(u64, u64)>) -> bool {
    fs_type == SYSFS_MAGIC && vmlinux == Some(file)
}

/// `file` (opened from `path`) mapped, when it is the kernel's BTF (`mappable`) and the
/// kernel maps it; None otherwise (before 6.16 sysfs refuses: ENODEV), said at debug.
pub(crate) fn map_sysfs(file: &File, path: &Path) -> Option<Mapping> {
    let fd = file.as_raw_fd();
    // SAFETY: a zeroed statfs is a valid out-parameter; fd is open.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd, &mut fs) } != 0 {
        return None;
    }
    let meta = file.metadata().ok()?;
    let vmlinux = std::fs::metadata(SYSFS_VMLINUX)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    if !mappable(fs.f_type as libc::c_long, (meta.dev(), meta.ino()), vmlinux) {
        return None;
    }
    let len = usize::try_from(meta.len()).ok()?;
    if len == 0 {
        return None;
    }
    // SAFETY: a new mapping chosen by the kernel (no address given), read-only and private,
    // of an open descriptor; checked for MAP_FAILED below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        log::debug!(
            "{}: not mapped ({}); reading it",
            path.display(),
            std::io::Error::last_os_error()
        );
        return None;
    }
    // Never null without MAP_FIXED; were it, the range is still unmapped, not leaked.
    let Some(ptr) = NonNull::new(ptr.cast()) else {
        // SAFETY: the range mmap just returned, referenced by nothing.
        unsafe { libc::munmap(ptr, len) };
        return None;
    };
    Some(Mapping { ptr, len })
}

/// The whole of `path`: mapped where `map_sysfs` can, else read.
pub fn read(path: &Path) -> std::io::Result<Bytes> {
    let mut file = File::open(path)?;
    if let Some(m) = map_sysfs(&file, path) {
        return Ok(Bytes::Mapped(m));
    }
    let mut data = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut data)?;
    Ok(Bytes::Read(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_never_mapped() {
        let p = std::env::temp_dir().join(format!("npt-bytes-{}.btf", std::process::id()));
        let blob = b"\x9f\xeb\x01\x00abc";
        std::fs::write(&p, blob).unwrap();
        let (b, mapped) = (read(&p).unwrap(), map_sysfs(&File::open(&p).unwrap(), &p));
        std::fs::remove_file(&p).unwrap();
        assert!(!b.is_mapped() && mapped.is_none());
        assert_eq!(&b[..], blob);
    }

    #[test]
    fn only_the_kernels_own_btf_is_mapped() {
        let vmlinux = Some((20, 7));
        assert!(mappable(SYSFS_MAGIC, (20, 7), vmlinux));
        // Another sysfs file (a device's resource), or no kernel BTF to compare with.
        assert!(!mappable(SYSFS_MAGIC, (20, 8), vmlinux));
        assert!(!mappable(SYSFS_MAGIC, (20, 7), None));
        // The same numbers off sysfs (a copy of the BTF on another file system).
        assert!(!mappable(0xEF53, (20, 7), vmlinux));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(read(Path::new("/nonexistent/btf")).is_err());
    }
}
