//! Builds an out-of-tree kernel module (netpoll-patch/, lab/emulate/) against one kernel's
//! headers with kbuild, warning-free; and, for the lab, a BTFHub-style archive of a kernel's
//! own BTF (`btf_archive`).
//!
//! The sources are copied into a build directory of their own per module and kernel
//! (`<out_dir>/<module dir name>/<kernel release>/`), so builds for different kernels never share
//! object files and the source tree stays clean. make's output is shown only on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::setup::kernels::Kernel;

/// Builds the module in `src_dir` (a directory with a `Kbuild` naming `obj-m := NAME.o`)
/// against `kernel`'s headers (the `linux-headers-<release>` directory that has the kernel's
/// `Makefile`) with the kernel's toolchain, inside `out_dir`. Returns the path of the built
/// `NAME.ko`. Fails if make fails or prints any warning.
pub fn build(kernel: &Kernel, src_dir: &Path, out_dir: &Path) -> Result<PathBuf> {
    let headers_dir = &kernel.headers_dir();
    let release = kernel_release(headers_dir);
    if !headers_dir.join("Makefile").is_file() {
        bail!(
            "no kernel headers for {release} at {} (no Makefile there): run `cargo xtask setup` to fetch and fix them up",
            headers_dir.display()
        );
    }
    let kbuild_path = src_dir.join("Kbuild");
    let kbuild = std::fs::read_to_string(&kbuild_path).with_context(|| {
        format!(
            "reading {} (every module directory needs one)",
            kbuild_path.display()
        )
    })?;
    let Some(module) = module_name(&kbuild) else {
        bail!(
            "{} has no `obj-m := NAME.o` line: cannot tell which module it builds",
            kbuild_path.display()
        );
    };
    let src_name = src_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| module.clone());
    let build_dir = out_dir.join(src_name).join(path_component(&release));
    prepare_build_dir(src_dir, &build_dir)?;

    let out = kernel
        .make(&[out_dir])
        .arg("-C")
        .arg(headers_dir)
        .arg(format!("M={}", build_dir.display()))
        .arg("modules")
        .stdin(Stdio::null())
        .output()
        .context("could not start `make`: is it installed? (`cargo xtask setup` installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ko = build_dir.join(format!("{module}.ko"));
    let warnings = find_warnings(&text);
    if !out.status.success() || !ko.is_file() {
        eprintln!("{text}");
        bail!(
            "building {module}.ko for kernel {release} failed ({}): fix the errors shown above in {}, or re-run `cargo xtask setup` if the headers are broken",
            out.status,
            src_dir.display()
        );
    }
    if !warnings.is_empty() {
        eprintln!("{text}");
        bail!(
            "building {module}.ko for kernel {release} printed {} warning(s), first: `{}`: the module must build warning-free; fix {}",
            warnings.len(),
            warnings[0].trim(),
            src_dir.display()
        );
    }
    Ok(ko)
}

/// Makes `<out_dir>/<release>.btf.tar.xz` as BTFHub publishes one (an xz tar holding
/// `<release>.btf`), from the kernel's own BTF: the `.BTF` section of the vmlinux inside
/// `vmlinuz` (the bytes /sys/kernel/btf/vmlinux serves). Reused while newer than `vmlinuz`.
pub fn btf_archive(vmlinuz: &Path, release: &str, out_dir: &Path) -> Result<PathBuf> {
    let archive = out_dir.join(format!("{release}.btf.tar.xz"));
    let newer = |p: &Path| {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((m(p), m(vmlinuz)), (Some(a), Some(b)) if a >= b)
    };
    if newer(&archive) {
        return Ok(archive);
    }
    println!(
        "build: BTFHub-style {release}.btf.tar.xz from {}",
        vmlinuz.display()
    );
    let image = std::fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let vmlinux = decompress_vmlinux(&image)
        .with_context(|| format!("no xz or zstd vmlinux found in {}", vmlinuz.display()))?;
    let work = out_dir.join(format!("{release}.btf.work"));
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let elf = work.join("vmlinux");
    std::fs::write(&elf, &vmlinux).with_context(|| format!("writing {}", elf.display()))?;
    let btf_name = format!("{release}.btf");
    let run = |cmd: &mut Command, what: &str| -> Result<()> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("could not start {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    run(
        Command::new("objcopy")
            .args(["-O", "binary", "--only-section=.BTF"])
            .arg(&elf)
            .arg(work.join(&btf_name)),
        "objcopy (binutils) extracting .BTF",
    )?;
    let btf = std::fs::metadata(work.join(&btf_name))
        .map(|m| m.len())
        .unwrap_or(0);
    if btf < 1024 {
        bail!(
            "{} has no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF?)",
            vmlinuz.display()
        );
    }
    let partial = out_dir.join(format!("{release}.btf.tar.xz.partial"));
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&work)
            .arg("-cJf")
            .arg(&partial)
            .arg(&btf_name),
        "tar -cJf (xz-utils)",
    )?;
    std::fs::rename(&partial, &archive)
        .with_context(|| format!("renaming to {}", archive.display()))?;
    std::fs::remove_dir_all(&work).ok();
    Ok(archive)
}

/// The vmlinux ELF inside a bzImage: the first xz or zstd stream that decompresses to ELF
/// (as the kernel's scripts/extract-vmlinux finds it).
pub(crate) fn decompress_vmlinux(image: &[u8]) -> Result<Vec<u8>> {
    const XZ: &[u8] = b"\xfd7zXZ\x00";
    const ZSTD: &[u8] = b"\x28\xb5\x2f\xfd";
    let mut candidates: Vec<(usize, &str)> = Vec::new();
    for (magic, tool) in [(XZ, "xz"), (ZSTD, "zstd")] {
        candidates.extend(
            image
                .windows(magic.len())
                .enumerate()
                .filter(|(_, w)| *w == magic)
                .map(|(i, _)| (i, tool)),
        );
    }
    candidates.sort();
    for (off, tool) in candidates {
        let mut child = Command::new(tool)
            .args(if tool == "xz" {
                &["-dc", "--single-stream"][..]
            } else {
                &["-dc"][..]
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("could not start {tool} (`cargo xtask setup` installs it)"))?;
        let mut stdin = child.stdin.take().context("decompressor stdin")?;
        let tail = image[off..].to_vec();
        let feeder = std::thread::spawn(move || {
            use std::io::Write as _;
            // Trailing bytes after the stream make the decompressor stop reading: ignore.
            let _ = stdin.write_all(&tail);
        });
        let out = child
            .wait_with_output()
            .context("running the decompressor")?;
        let _ = feeder.join();
        if out.stdout.starts_with(b"\x7fELF") {
            return Ok(out.stdout);
        }
    }
    bail!("no compressed ELF found")
}

/// The kernel release a headers directory is for: `linux-headers-<release>` by Debian's naming,
/// else the directory's name.
fn kernel_release(headers_dir: &Path) -> String {
    let name = headers_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| headers_dir.display().to_string());
    match name.strip_prefix("linux-headers-") {
        Some(release) if !release.is_empty() => release.to_string(),
        _ => name,
    }
}

/// A string made safe to use as one path component.
fn path_component(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out == "." || out == ".." {
        "_".to_string()
    } else {
        out
    }
}

/// The module a Kbuild file builds: `NAME` from `obj-m := NAME.o` (also `=`, `+=`).
fn module_name(kbuild: &str) -> Option<String> {
    kbuild.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let rest = line.strip_prefix("obj-m")?.trim_start();
        let rest = rest
            .strip_prefix(":=")
            .or_else(|| rest.strip_prefix("+="))
            .or_else(|| rest.strip_prefix('='))?;
        let object = rest.split_whitespace().next()?;
        let name = object.strip_suffix(".o")?;
        (!name.is_empty()).then(|| name.to_string())
    })
}

/// The lines of a build's output that are warnings (compiler, kbuild, modpost: any case).
fn find_warnings(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|line| line.to_ascii_lowercase().contains("warning:"))
        .collect()
}

/// Files of a module directory that a build needs: sources, headers and the kbuild files;
/// never build products (so a directory someone built in by hand copies cleanly).
fn is_source_file(name: &str) -> bool {
    if name.starts_with('.') || name.ends_with(".mod.c") {
        return false;
    }
    matches!(name, "Kbuild" | "Makefile") || name.ends_with(".c") || name.ends_with(".h")
}

/// Makes `build_dir` a fresh copy of the module sources in `src_dir`.
fn prepare_build_dir(src_dir: &Path, build_dir: &Path) -> Result<()> {
    if build_dir.exists() {
        std::fs::remove_dir_all(build_dir)
            .with_context(|| format!("removing {}", build_dir.display()))?;
    }
    std::fs::create_dir_all(build_dir)
        .with_context(|| format!("creating {}", build_dir.display()))?;
    let entries =
        std::fs::read_dir(src_dir).with_context(|| format!("listing {}", src_dir.display()))?;
    let mut copied = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", src_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() || !is_source_file(&name) {
            continue;
        }
        std::fs::copy(entry.path(), build_dir.join(&name)).with_context(|| {
            format!(
                "copying {} to {}",
                entry.path().display(),
                build_dir.display()
            )
        })?;
        copied += 1;
    }
    if copied == 0 {
        bail!("{} has no module sources", src_dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmlinux_is_found_after_a_false_magic_and_before_trailing_bytes() {
        use std::io::Write as _;
        let mut xz = Command::new("xz")
            .args(["-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        xz.stdin
            .take()
            .unwrap()
            .write_all(b"\x7fELF pretend vmlinux")
            .unwrap();
        let packed = xz.wait_with_output().unwrap().stdout;
        // A zstd magic that is not a stream, the xz stream, then trailing bytes.
        let mut image = b"MZ setup code \x28\xb5\x2f\xfd not zstd ".to_vec();
        image.extend_from_slice(&packed);
        image.extend_from_slice(b"trailer");
        assert_eq!(
            decompress_vmlinux(&image).unwrap(),
            b"\x7fELF pretend vmlinux"
        );
        assert!(decompress_vmlinux(b"MZ nothing here").is_err());
    }

    #[test]
    fn warnings_are_found_in_compiler_kbuild_and_modpost_output() {
        let out = "  CC [M]  /b/netpoll_patch.o\n\
                   /b/netpoll_patch.c:10:5: warning: unused variable 'x' [-Wunused-variable]\n\
                   WARNING: modpost: missing MODULE_LICENSE() in /b/x.o\n\
                   Skipping BTF generation for /b/netpoll_patch.ko due to unavailability of vmlinux\n\
                   make[1]: Leaving directory '/h'\n";
        let w = find_warnings(out);
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("unused variable"));
        assert!(w[1].starts_with("WARNING: modpost"));
    }

    #[test]
    fn a_clean_build_has_no_warnings() {
        let out = "make: Entering directory '/h'\n  CC [M]  /b/a.o\n  MODPOST /b/Module.symvers\n  LD [M]  /b/a.ko\n";
        assert!(find_warnings(out).is_empty());
    }

    #[test]
    fn module_name_comes_from_obj_m() {
        assert_eq!(
            module_name("obj-m := netpoll_patch.o\n").as_deref(),
            Some("netpoll_patch")
        );
        assert_eq!(
            module_name(
                "# Test-only module\nobj-m += emulate_pre419.o # comment\nccflags-y += -DX\n"
            )
            .as_deref(),
            Some("emulate_pre419")
        );
        assert_eq!(module_name("obj-m=a.o b.o").as_deref(), Some("a"));
        assert_eq!(module_name("obj-y := a.o\n"), None);
        assert_eq!(module_name("obj-m := a.c\n"), None);
        assert_eq!(module_name("# obj-m := a.o\n"), None);
    }

    #[test]
    fn release_comes_from_debian_header_dir_names() {
        assert_eq!(
            kernel_release(Path::new(
                "/c/6.12/root/usr/src/linux-headers-6.12.117+deb12-amd64"
            )),
            "6.12.117+deb12-amd64"
        );
        assert_eq!(
            kernel_release(Path::new("/lib/modules/6.1.0-56-amd64/build")),
            "build"
        );
    }

    #[test]
    fn path_components_are_sanitised() {
        assert_eq!(
            path_component("6.12.117+deb12-amd64"),
            "6.12.117+deb12-amd64"
        );
        assert_eq!(path_component("a/b c"), "a_b_c");
        assert_eq!(path_component(".."), "_");
        assert_eq!(path_component(""), "_");
    }

    #[test]
    fn only_sources_are_copied() {
        for name in ["netpoll_patch.c", "x.h", "Kbuild", "Makefile"] {
            assert!(is_source_file(name), "{name}");
        }
        for name in [
            "netpoll_patch.o",
            "netpoll_patch.ko",
            "netpoll_patch.mod.c",
            ".netpoll_patch.o.cmd",
            "Module.symvers",
            "modules.order",
            "README.md",
        ] {
            assert!(!is_source_file(name), "{name}");
        }
    }

    #[test]
    fn build_dir_gets_a_fresh_copy_of_the_sources() {
        let tmp = std::env::temp_dir().join(format!("npt-kmod-test-{}", std::process::id()));
        let src = tmp.join("mod");
        let build = tmp.join("out/mod/6.1");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("m.c"), "int x;\n").unwrap();
        std::fs::write(src.join("Kbuild"), "obj-m := m.o\n").unwrap();
        std::fs::write(src.join("m.o"), "stale").unwrap();
        std::fs::create_dir_all(&build).unwrap();
        std::fs::write(build.join("old.o"), "stale").unwrap();
        prepare_build_dir(&src, &build).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&build)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["Kbuild", "m.c"]);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
