//! `cargo xtask build`: the static userspace binary that drops into a lab initramfs.
//! Also the lab's own artefacts: its C tools and, through `kmod`, the kernel modules built
//! against a lab kernel's headers.

pub mod kmod;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cache, process};

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds netpoll-trace statically and returns the binary's path.
pub fn static_binary() -> Result<PathBuf> {
    let root = cache::workspace_root();
    let mut cargo = crate::setup::toolchain::product_cargo()?;
    println!("build: netpoll-trace (release, static, {TARGET})");
    process::run(
        cargo
            .args([
                "build",
                "--release",
                "-p",
                "netpoll-trace",
                "--target",
                TARGET,
            ])
            .current_dir(&root)
            // Target-scoped, not RUSTFLAGS: netpoll-trace's build.rs runs a nested cargo for the
            // eBPF crate, which must not inherit crt-static.
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C target-feature=+crt-static",
            )
            .env_remove("RUSTFLAGS"),
    )
    .context("building netpoll-trace")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target_dir
        .join(TARGET)
        .join("release")
        .join("netpoll-trace");
    check_static(&binary)?;
    Ok(binary)
}

/// Small C helpers the guest needs (lab/tools/*.c), built static with the host's gcc
/// into target/lab/tools; returns (host path, guest path) pairs for the initramfs.
pub fn lab_tools() -> Result<Vec<(PathBuf, String)>> {
    let root = cache::workspace_root();
    let out_dir = root.join("target").join("lab").join("tools");
    cache::create_dir(&out_dir)?;
    let mut tools = Vec::new();
    for name in ["nlhelper", "udprecv", "capexec", "sdlisten", "tcpidle"] {
        let src = root.join("lab").join("tools").join(format!("{name}.c"));
        let out = out_dir.join(name);
        static_c_tool(&src, &out)?;
        tools.push((out, format!("bin/{name}")));
    }
    Ok(tools)
}

/// Builds the C program `src` static with the host's gcc into `out`, unless `out` is
/// newer than `src`; checks that it came out static (the guest has no loader).
pub fn static_c_tool(src: &Path, out: &Path) -> Result<()> {
    let fresh = match (std::fs::metadata(src), std::fs::metadata(out)) {
        (Ok(s), Ok(o)) => o.modified()? >= s.modified()?,
        _ => false,
    };
    if !fresh {
        process::run(
            Command::new("gcc")
                .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(out)
                .arg(src),
        )
        .with_context(|| {
            format!(
                "building {} (is gcc installed? run `cargo xtask setup`)",
                src.display()
            )
        })?;
        check_static(out)?;
    }
    Ok(())
}

pub(crate) fn check_static(binary: &Path) -> Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    match has_interpreter(&bytes) {
        Some(false) => Ok(()),
        Some(true) => bail!(
            "{} is dynamically linked (it has an ELF interpreter): the crt-static flag did not reach it",
            binary.display()
        ),
        None => bail!(
            "{} is not a 64-bit little-endian ELF file",
            binary.display()
        ),
    }
}

/// Whether a 64-bit little-endian ELF image has a PT_INTERP program header (a dynamic loader);
/// None when `elf` is not such an image.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    use object::read::elf::{FileHeader as _, ProgramHeader as _};
    let header = object::elf::FileHeader64::<object::LittleEndian>::parse(elf).ok()?;
    let e = header.endian().ok()?;
    let segments = header.program_headers(e, elf).ok()?;
    Some(
        segments
            .iter()
            .any(|p| p.p_type(e) == object::elf::PT_INTERP),
    )
}

/// The kernel modules (runtime patch, test-only emulation) built for `kernel`, rebuilt only
/// when a source is newer than the built module, with the patch module's
/// `netpoll_offsets.o` (/lib/kmods/) and the kernel's BTF as a BTFHub archive
/// (/lib/btfhub/<release>.btf.tar.xz); (host path, guest path).
pub fn lab_kmods(kernel: &crate::setup::kernels::Kernel) -> Result<Vec<(PathBuf, String)>> {
    let root = cache::workspace_root();
    let out_dir = root.join("target").join("kmod");
    let mut out = Vec::new();
    for (src, name) in [
        ("netpoll-patch", "netpoll_patch"),
        ("lab/emulate", "emulate_pre419"),
        ("lab/panic", "npt_panic"),
        ("lab/netdev", "npt_netdev"),
    ] {
        let ko = kmod_for(kernel, &root.join(src), &out_dir)?;
        if name == "netpoll_patch" {
            // The struct offsets from this kernel's headers, built by the same kbuild run.
            let offsets = ko.with_file_name("netpoll_offsets.o");
            if !offsets.is_file() {
                bail!(
                    "building netpoll-patch for {} left no {}: check netpoll-patch/Kbuild",
                    kernel.release,
                    offsets.display()
                );
            }
            out.push((offsets, "lib/kmods/netpoll_offsets.o".to_string()));
        }
        out.push((ko, format!("lib/kmods/{name}.ko")));
    }
    // The kernel's own BTF as BTFHub publishes it, for `--btf` on an archive.
    let btfhub = root.join("target").join("lab").join("btfhub");
    cache::create_dir(&btfhub)?;
    let archive = kmod::btf_archive(&kernel.vmlinuz(), &kernel.release, &btfhub)?;
    out.push((archive, format!("lib/btfhub/{}.btf.tar.xz", kernel.release)));
    Ok(out)
}

/// Builds one module for one kernel unless an up-to-date build exists.
pub fn kmod_for(
    kernel: &crate::setup::kernels::Kernel,
    src: &Path,
    out_dir: &Path,
) -> Result<PathBuf> {
    let newest_source = std::fs::read_dir(src)
        .with_context(|| format!("listing {}", src.display()))?
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    let stamp = out_dir.join(format!(
        "{}-{}.path",
        src.file_name().unwrap_or_default().to_string_lossy(),
        kernel.release
    ));
    if let (Ok(path), Some(newest)) = (std::fs::read_to_string(&stamp), newest_source) {
        let ko = PathBuf::from(path.trim());
        if std::fs::metadata(&ko)
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= newest)
        {
            return Ok(ko);
        }
    }
    println!("build: {} for kernel {}", src.display(), kernel.release);
    let ko = kmod::build(kernel, src, out_dir)?;
    cache::create_dir(out_dir)?;
    std::fs::write(&stamp, ko.display().to_string())
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(ko)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with(types: &[u32]) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56 * types.len()];
        e[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            e[64 + 56 * i..64 + 56 * i + 4].copy_from_slice(&t.to_le_bytes());
        }
        e
    }

    #[test]
    fn interpreter_means_dynamic() {
        assert_eq!(has_interpreter(&elf_with(&[6, 3, 1])), Some(true));
        assert_eq!(has_interpreter(&elf_with(&[1, 1, 2])), Some(false));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn a_32_bit_or_big_endian_image_is_not_ours() {
        for (byte, value) in [(4, 1), (5, 2)] {
            let mut e = elf_with(&[3]);
            e[byte] = value;
            assert_eq!(has_interpreter(&e), None, "e_ident[{byte}] = {value}");
        }
    }

    #[test]
    fn truncated_header_is_not_elf() {
        let mut e = elf_with(&[1]);
        e.truncate(0x30);
        assert_eq!(has_interpreter(&e), None);
    }
}
