//! Guest userland that comes from Debian packages rather than from the kernel: busybox-static,
//! downloaded for the host's suite and unpacked into the cache (never installed on the host).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::cache;
use crate::setup::apt;

/// The unpacked busybox-static tree.
fn tree(cache_dir: &Path) -> PathBuf {
    cache_dir.join("guest").join("busybox-static")
}

/// The static busybox binary, or an error saying to run setup.
pub fn busybox(cache_dir: &Path) -> Result<PathBuf> {
    let dir = tree(cache_dir);
    if cache::stamp(&dir).is_none() {
        bail!(
            "busybox-static is not in the cache ({}): run `cargo xtask setup`",
            dir.display()
        );
    }
    Ok(dir.join("root/bin/busybox"))
}

/// Downloads and unpacks busybox-static unless present; true when it did.
pub fn ensure(cache_dir: &Path) -> Result<bool> {
    if busybox(cache_dir).is_ok() {
        return Ok(false);
    }
    let dir = tree(cache_dir);
    println!("setup: downloading busybox-static for the guest");
    cache::remove_dir(&dir)?;
    let debs = dir.join("debs");
    // The host's suite through its private, refreshed lists: the host's own may be empty.
    apt::Apt::for_suite(cache_dir, &apt::host_codename()?)?
        .download(&["busybox-static".to_string()], &debs)?;
    apt::unpack_all(&debs, &dir.join("root"))?;
    if !dir.join("root/bin/busybox").is_file() {
        bail!("busybox-static holds no /bin/busybox: has Debian changed its layout?");
    }
    cache::remove_dir(&debs)?;
    cache::write_stamp(&dir, "busybox-static\n")?;
    Ok(true)
}
