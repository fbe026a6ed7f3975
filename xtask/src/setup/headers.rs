//! Makes a lab kernel's Debian header packages usable from the cache: they point at
//! /usr/src/linux-headers-*-common and /usr/lib/linux-kbuild-* by absolute path, and name the
//! exact gcc Debian built with. Proven by building a hello-world module against them.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::cache;
use crate::setup::kernels::Kernel;

/// Rewrites the absolute references inside the unpacked tree `root` so they resolve inside it.
/// `exists` says whether a program is there to build with (the host's PATH, or a toolchain
/// root's usr/bin).
pub fn fix_up(root: &Path, headers: &Path, exists: impl Fn(&str) -> bool) -> Result<()> {
    relink_absolute_symlinks(root, root)?;
    let makefile = headers.join("Makefile");
    let text = read(&makefile)?;
    write(&makefile, &relative_includes(&text))?;
    let vars = headers.join(".kernelvariables");
    if vars.exists() {
        let text = read(&vars)?;
        let fixed = host_compiler(&text, exists);
        if fixed != text {
            println!(
                "  headers: this host lacks the gcc Debian built with; using the host's gcc instead"
            );
            write(&vars, &fixed)?;
        }
    }
    Ok(())
}

/// Builds a hello-world module against `kernel`'s headers (with the kernel's toolchain) in a
/// fresh directory under `scratch`.
pub fn verify(kernel: &Kernel, scratch: &Path) -> Result<()> {
    let headers = &kernel.headers_dir();
    let dir = scratch.join("hello-module");
    cache::remove_dir(&dir)?;
    cache::create_dir(&dir)?;
    write(
        &dir.join("hello.c"),
        "#include <linux/module.h>\n\
         static int __init hello_init(void) { pr_info(\"hello\\n\"); return 0; }\n\
         static void __exit hello_exit(void) {}\n\
         module_init(hello_init);\nmodule_exit(hello_exit);\nMODULE_LICENSE(\"GPL\");\n\
         MODULE_DESCRIPTION(\"setup's check that the headers build a module\");\n",
    )?;
    write(&dir.join("Kbuild"), "obj-m := hello.o\n")?;
    let out = kernel
        .make(&[scratch])
        .arg("-C")
        .arg(headers)
        .arg(format!("M={}", dir.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .context("running make: is it installed? (`cargo xtask setup` installs it)")?;
    if !out.status.success() || !dir.join("hello.ko").is_file() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "building a test module against {} failed; make said:\n{}",
            headers.display(),
            tail.join("\n")
        );
    }
    cache::remove_dir(&dir)
}

/// Replaces every symlink under `dir` whose target is absolute with a relative one to the same
/// path inside `root`.
fn relink_absolute_symlinks(root: &Path, dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&path)?;
            if target.is_absolute() {
                let link_dir = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .parent()
                    .unwrap_or(Path::new(""));
                let new = relative_target(link_dir, &target);
                std::fs::remove_file(&path)
                    .with_context(|| format!("replacing {}", path.display()))?;
                std::os::unix::fs::symlink(&new, &path)
                    .with_context(|| format!("linking {} -> {}", path.display(), new.display()))?;
            }
        } else if kind.is_dir() {
            relink_absolute_symlinks(root, &path)?;
        }
    }
    Ok(())
}

/// For a link living in `link_dir` (relative to the tree root), the relative path that reaches
/// the absolute `target` as seen from the tree root.
fn relative_target(link_dir: &Path, target: &Path) -> PathBuf {
    let ups = link_dir
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut out = PathBuf::new();
    for _ in 0..ups {
        out.push("..");
    }
    out.push(target.strip_prefix("/").unwrap_or(target));
    out
}

/// `include /usr/src/X/Makefile` -> an include relative to the including Makefile's
/// directory; trixie-era headers also set `KBUILD_OUTPUT=/usr/src/linux-headers-RELEASE`,
/// which becomes this Makefile's own directory. That must be a simple (`:=`) assignment:
/// a recursive `=` would expand after the include, when MAKEFILE_LIST ends in the -common
/// Makefile ("include/config/auto.conf: No such file").
fn relative_includes(makefile: &str) -> String {
    let mut out = String::new();
    for line in makefile.lines() {
        if let Some(rest) = line.strip_prefix("include /usr/src/") {
            out.push_str(&format!(
                "include $(dir $(lastword $(MAKEFILE_LIST)))../{rest}"
            ));
        } else if line.starts_with("KBUILD_OUTPUT=/usr/src/") {
            out.push_str("KBUILD_OUTPUT:=$(abspath $(dir $(lastword $(MAKEFILE_LIST))))");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Debian pins `CC` to the exact `gcc-NN` it used; where the host has no such program, fall back
/// to the host's `gcc` (same target, newer version: fine for out-of-tree modules).
fn host_compiler(kernelvariables: &str, exists: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for line in kernelvariables.lines() {
        let mut line = line.to_string();
        if (line.trim_start().starts_with("CC ") || line.trim_start().starts_with("CC="))
            && let Some(gcc) = line
                .split(|c: char| c == ')' || c.is_whitespace())
                .find(|w| is_versioned_gcc(w))
        {
            let gcc = gcc.to_string();
            if !exists(&gcc) && !exists(&format!("x86_64-linux-gnu-{gcc}")) {
                line = line.replace(&gcc, "gcc");
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn is_versioned_gcc(word: &str) -> bool {
    word.strip_prefix("gcc-")
        .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_link_becomes_relative_inside_the_tree() {
        let got = relative_target(
            Path::new("lib/modules/5.10.0-32-amd64"),
            Path::new("/usr/src/linux-headers-5.10.0-32-amd64"),
        );
        assert_eq!(
            got,
            PathBuf::from("../../../usr/src/linux-headers-5.10.0-32-amd64")
        );
    }

    #[test]
    fn include_of_common_makefile_is_made_relative() {
        let got = relative_includes("include /usr/src/linux-headers-6.1.0-56-common/Makefile\n");
        assert_eq!(
            got,
            "include $(dir $(lastword $(MAKEFILE_LIST)))../linux-headers-6.1.0-56-common/Makefile\n"
        );
    }

    #[test]
    fn trixie_headers_output_is_the_makefile_own_directory() {
        let got = relative_includes(
            "KBUILD_OUTPUT=/usr/src/linux-headers-7.3.4+deb13-amd64\n\
             include /usr/src/linux-headers-7.3.4+deb13-common/Makefile\n",
        );
        assert_eq!(
            got,
            "KBUILD_OUTPUT:=$(abspath $(dir $(lastword $(MAKEFILE_LIST))))\n\
             include $(dir $(lastword $(MAKEFILE_LIST)))../linux-headers-7.3.4+deb13-common/Makefile\n"
        );
        // Already fixed: unchanged (setup may run it again).
        assert_eq!(relative_includes(&got), got);
    }

    #[test]
    fn missing_versioned_gcc_falls_back_to_gcc() {
        let vars = "CCACHE = ccache\nCC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-10\n";
        let got = host_compiler(vars, |g| g == "gcc-12");
        assert!(got.ends_with("$(CROSS_COMPILE)gcc\n"), "{got}");
        let vars12 = vars.replace("gcc-10", "gcc-12");
        assert_eq!(host_compiler(&vars12, |g| g == "gcc-12"), vars12);
    }
}
