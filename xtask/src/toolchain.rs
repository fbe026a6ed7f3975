//! The Rust side of setup: the nightly toolchain with rust-src (eBPF builds need core from
//! source), bpf-linker built against that nightly's own libLLVM, and the dated nightly
//! the fuzzer builds with. (The stable one is rust-toolchain.toml's: `rustup toolchain
//! install` before anything else, as .ci/run does.)

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{cache, process};

/// The toolchain `cargo fuzz` builds netpoll-trace with (ASan needs nightly). Dated and
/// apart from `nightly`: the eBPF nightly stays whatever bpf-linker was built against (an
/// update would break its LLVM), while the fuzz build compiles netpoll-trace itself and so
/// needs what rust-version says (aya 0.16: 1.98), which an older eBPF nightly may not be.
pub const FUZZ_TOOLCHAIN: &str = "nightly-2026-10-29";

/// Makes sure nightly, its rust-src, bpf-linker and the fuzz toolchain are there;
/// returns what it installed.
pub fn ensure(cache_dir: &Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let toolchains = process::output(Command::new("rustup").args(["toolchain", "list"]))
        .context("listing rustup toolchains (is rustup installed?)")?;
    if !toolchains.lines().any(|l| l.starts_with(FUZZ_TOOLCHAIN)) {
        println!("setup: installing {FUZZ_TOOLCHAIN} (the fuzz build's toolchain)");
        process::run(Command::new("rustup").args([
            "toolchain",
            "install",
            FUZZ_TOOLCHAIN,
            "--profile",
            "minimal",
        ]))?;
        done.push(FUZZ_TOOLCHAIN.to_string());
    }
    if !toolchains.lines().any(is_plain_nightly) {
        println!("setup: installing the nightly toolchain");
        process::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        done.push("nightly".to_string());
    }
    let components = process::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: adding rust-src to nightly");
        process::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
        done.push("rust-src".to_string());
    }
    if !process::succeeds(Command::new("bpf-linker").arg("--version")) {
        install_bpf_linker(cache_dir)?;
        done.push("bpf-linker".to_string());
    }
    Ok(done)
}

/// A `rustup toolchain list` line naming the undated nightly (`nightly-<host>`), not a
/// dated one such as the fuzz toolchain.
fn is_plain_nightly(line: &str) -> bool {
    let name = line.split_whitespace().next().unwrap_or("");
    name.strip_prefix("nightly").is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix('-')
                .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_digit()))
    })
}

fn install_bpf_linker(cache_dir: &Path) -> Result<()> {
    let verbose = process::output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = llvm_major(&verbose).ok_or_else(|| {
        anyhow!("`rustc +nightly -vV` names no LLVM version: cannot pick bpf-linker's LLVM")
    })?;
    let sysroot = process::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = find_libllvm(&lib, major)?;
    let prefix = cache_dir.join("llvm-prefix").join(format!("llvm-{major}"));
    let link = prefix.join("lib").join("libLLVM.so");
    cache::create_dir(&prefix.join("lib"))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), libllvm.display()))?;
    let log = cache_dir.join("bpf-linker-build.log");
    println!(
        "setup: building bpf-linker against nightly's LLVM {major} ({}), log in {}",
        libllvm.display(),
        log.display()
    );
    let step = crate::progress::Step::start("setup: building bpf-linker (a few minutes)");
    process::run_logged(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix)
            .env(
                "RUSTFLAGS",
                format!("-C link-args=-Wl,-rpath,{}", lib.display()),
            ),
        &log,
    )
    .context("building bpf-linker")?;
    step.done("built");
    Ok(())
}

/// `libLLVM.so.<major>.*-rust-*` in the toolchain's lib directory.
fn find_libllvm(lib: &Path, major: u32) -> Result<PathBuf> {
    let prefix = format!("libLLVM.so.{major}.");
    let found = std::fs::read_dir(lib)
        .with_context(|| format!("listing {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .is_some_and(|n| n.starts_with(&prefix) && n.contains("-rust-"))
        });
    match found {
        Some(p) => Ok(p),
        None => bail!(
            "no {prefix}*-rust-* in {}: reinstall the nightly toolchain",
            lib.display()
        ),
    }
}

/// The major version from the `LLVM version: 22.1.2` line of `rustc -vV`.
fn llvm_major(verbose: &str) -> Option<u32> {
    verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next())
        .and_then(|m| m.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_undated_nightly_is_the_ebpf_nightly() {
        assert!(is_plain_nightly("nightly-x86_64-unknown-linux-gnu"));
        assert!(is_plain_nightly(
            "nightly-x86_64-unknown-linux-gnu (active)"
        ));
        assert!(!is_plain_nightly(
            "nightly-2026-10-29-x86_64-unknown-linux-gnu"
        ));
        assert!(!is_plain_nightly(
            "stable-x86_64-unknown-linux-gnu (default)"
        ));
    }

    #[test]
    fn llvm_major_from_rustc_verbose_version() {
        let out = "rustc 1.97.0-nightly (abc 2026-05-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\n\
                   release: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(out), Some(22));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
    }
}
