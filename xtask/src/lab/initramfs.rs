//! The lab initramfs: a per-kernel base archive (busybox, the modules every scenario may load,
//! the module indexes), cached, followed by a per-scenario archive (/init, /lib.sh,
//! /scenario.sh, /bin/netpoll-trace, the scenario's extra modules and files). The kernel
//! unpacks concatenated cpio archives in order.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::lab::cpio::Writer;
use crate::setup::kernels::Kernel;
use crate::setup::modules::Index;

/// Modules every scenario can load: the lab's NICs and the devices netpoll cares about.
pub const ALWAYS_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "e1000",
    "netconsole",
    "dummy",
    "bonding",
    "bridge",
    "8021q",
    "veth",
];
/// Loaded into the base only where the kernel has them.
pub const OPTIONAL_MODULES: &[&str] = &["netkit"];

/// Everything one run's initramfs is made of.
pub struct Parts<'a> {
    pub init: &'a Path,
    pub lib_sh: &'a Path,
    pub scenario: &'a Path,
    pub binary: &'a Path,
    pub extra_modules: &'a [String],
    /// (host path, guest path)
    pub files: Vec<(PathBuf, String)>,
}

/// Writes `out` = base archive for `kernel` (rebuilt when its inputs changed) + this run's parts.
pub fn build(
    kernel: &Kernel,
    busybox: &Path,
    work: &Path,
    parts: &Parts,
    out: &Path,
) -> Result<()> {
    let index = Index::load(&kernel.modules_dir())?;
    let mut base_modules: Vec<&str> = ALWAYS_MODULES.to_vec();
    base_modules.extend(OPTIONAL_MODULES.iter().filter(|m| index.has(m)));
    let base_set = index.closure(&base_modules).with_context(|| {
        format!(
            "kernel {} lacks a module the lab always needs",
            kernel.label
        )
    })?;
    let base = work.join("base.cpio");
    let key_path = work.join("base.key");
    let key = format!(
        "{}\n{}\n{}\n",
        kernel.release,
        busybox.display(),
        base_set.iter().cloned().collect::<Vec<_>>().join(" ")
    );
    if !base.is_file() || std::fs::read_to_string(&key_path).ok().as_deref() != Some(&key) {
        let bytes = base_archive(kernel, busybox, &base_set)?;
        write(&base, &bytes)?;
        write(&key_path, key.as_bytes())?;
    }
    let extra = index.closure(parts.extra_modules).with_context(|| {
        format!(
            "a module the scenario names is missing on kernel {}",
            kernel.label
        )
    })?;
    let extra: BTreeSet<String> = extra.difference(&base_set).cloned().collect();
    let run_part = run_archive(kernel, parts, &extra)?;
    let mut initrd = std::fs::read(&base).with_context(|| format!("reading {}", base.display()))?;
    initrd.extend_from_slice(&run_part);
    write(out, &initrd)
}

fn base_archive(kernel: &Kernel, busybox: &Path, modules: &BTreeSet<String>) -> Result<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc", "root",
        "mnt", "var",
    ] {
        w.dir(dir)?;
    }
    w.char_device("dev/console", 5, 1)?;
    w.file("bin/busybox", 0o755, &read(busybox)?)?;
    // /init runs under /bin/sh; busybox installs its other applets at boot.
    w.symlink("bin/sh", "busybox")?;
    let guest_dir = format!("lib/modules/{}", kernel.release);
    let host_dir = kernel.modules_dir();
    for entry in
        std::fs::read_dir(&host_dir).with_context(|| format!("listing {}", host_dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("modules.") && entry.file_type()?.is_file() {
            w.file(&format!("{guest_dir}/{name}"), 0o644, &read(&entry.path())?)?;
        }
    }
    for m in modules {
        w.file(
            &format!("{guest_dir}/{m}"),
            0o644,
            &read(&host_dir.join(m))?,
        )?;
    }
    Ok(w.finish()?)
}

fn run_archive(
    kernel: &Kernel,
    parts: &Parts,
    extra_modules: &BTreeSet<String>,
) -> Result<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    w.file("init", 0o755, &read(parts.init)?)?;
    w.file("lib.sh", 0o644, &read(parts.lib_sh)?)?;
    w.file("scenario.sh", 0o755, &read(parts.scenario)?)?;
    w.file("bin/netpoll-trace", 0o755, &read(parts.binary)?)?;
    let host_dir = kernel.modules_dir();
    for m in extra_modules {
        w.file(
            &format!("lib/modules/{}/{m}", kernel.release),
            0o644,
            &read(&host_dir.join(m))?,
        )?;
    }
    for (host, guest) in &parts.files {
        let data = std::fs::read(host).with_context(|| {
            format!(
                "reading {}, which the scenario's `# files:` names",
                host.display()
            )
        })?;
        w.file(guest, 0o755, &data)?;
    }
    Ok(w.finish()?)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
