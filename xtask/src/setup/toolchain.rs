//! The Rust side of setup: the stable that netpoll-trace/rust-toolchain.toml pins for the
//! product, the nightly toolchain with rust-src (eBPF builds need core from source),
//! bpf-linker built against that nightly's own libLLVM, and the dated nightly the fuzzer
//! builds with.
//!
//! The xtask itself runs on whatever default stable rustup has: no toolchain file applies
//! at the workspace root, so `cargo xtask demo` works as a newcomer's first command (rustup
//! 1.29 does not install a pinned toolchain on first use). Every cargo command the xtask runs
//! on the product goes through `product_cargo`, which installs the pin first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::progress::Step;
use crate::{cache, process};

/// The toolchain `cargo fuzz` builds netpoll-trace with (ASan needs nightly). Dated and
/// apart from `nightly`: the eBPF nightly stays whatever bpf-linker was built against (an
/// update would break its LLVM), while the fuzz build compiles netpoll-trace itself and so
/// needs what rust-version says (aya 0.16: 1.98), which an older eBPF nightly may not be.
pub const FUZZ_TOOLCHAIN: &str = "nightly-2026-10-29";

/// The product's toolchain file (relative to the workspace root).
pub const PIN_FILE: &str = "netpoll-trace/rust-toolchain.toml";

/// What the product's rust-toolchain.toml pins.
#[derive(Debug, PartialEq)]
pub struct Pin {
    pub channel: String,
    pub components: Vec<String>,
}

/// The pin in `PIN_FILE`.
pub fn pin() -> Result<Pin> {
    let path = cache::workspace_root().join(PIN_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_pin(&text).with_context(|| format!("{}", path.display()))
}

/// `channel = "1.99.1"` and `components = ["clippy", "rustfmt"]` of a rust-toolchain.toml's
/// [toolchain] table (the only keys it uses; one line each).
fn parse_pin(text: &str) -> Result<Pin> {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let channel = value("channel")
        .map(|v| v.trim_matches('"').to_string())
        .filter(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ".-_".contains(ch))
        })
        .ok_or_else(|| anyhow!("names no channel (`channel = \"1.99.1\"`)"))?;
    let components = value("components")
        .map(|v| {
            v.trim_matches(['[', ']'])
                .split(',')
                .map(|c| c.trim().trim_matches('"').to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Pin {
        channel,
        components,
    })
}

/// True when `rustup toolchain list` lists `channel` (`1.99.1-x86_64-...`).
pub fn listed(toolchains: &str, channel: &str) -> bool {
    toolchains.lines().any(|l| {
        l.split_whitespace()
            .next()
            .and_then(|name| name.strip_prefix(channel))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    })
}

/// Installs the product's pinned stable when rustup lacks it; Some(channel) when it did.
pub fn ensure_pinned() -> Result<Option<String>> {
    let pin = pin()?;
    let toolchains = process::output(Command::new("rustup").args(["toolchain", "list"]))
        .context("listing rustup toolchains (is rustup installed?)")?;
    if listed(&toolchains, &pin.channel) {
        return Ok(None);
    }
    let log = crate::setup::log_path()?;
    let step = crate::progress::Step::start(format!(
        "setup: installing Rust {} (the product's, {PIN_FILE})",
        pin.channel
    ));
    let mut cmd = Command::new("rustup");
    cmd.args(["toolchain", "install", &pin.channel, "--profile", "minimal"]);
    for c in &pin.components {
        cmd.args(["--component", c]);
    }
    process::run_appended(&mut cmd, &log).context("installing the product's toolchain")?;
    step.done("installed");
    Ok(Some(pin.channel))
}

/// `cargo` on the product's pinned toolchain (installed first when missing): the rustup proxy
/// with RUSTUP_TOOLCHAIN set, not $CARGO (that is the xtask's own, the default stable's cargo).
pub fn product_cargo() -> Result<Command> {
    ensure_pinned()?;
    let mut cmd = Command::new("cargo");
    cmd.env("RUSTUP_TOOLCHAIN", pin()?.channel)
        .env_remove("RUSTUP_TOOLCHAIN_SOURCE")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    Ok(cmd)
}

/// Makes sure the product's stable, nightly, its rust-src, bpf-linker and the fuzz toolchain
/// are there; returns what it installed.
pub fn ensure(cache_dir: &Path) -> Result<Vec<String>> {
    let log = crate::setup::log_path()?;
    let mut done: Vec<String> = ensure_pinned()?.into_iter().collect();
    let toolchains = process::output(Command::new("rustup").args(["toolchain", "list"]))
        .context("listing rustup toolchains (is rustup installed?)")?;
    if !toolchains.lines().any(|l| l.starts_with(FUZZ_TOOLCHAIN)) {
        let step = Step::start(format!(
            "setup: installing {FUZZ_TOOLCHAIN} (the fuzz build's)"
        ));
        process::run_appended(
            Command::new("rustup").args([
                "toolchain",
                "install",
                FUZZ_TOOLCHAIN,
                "--profile",
                "minimal",
            ]),
            &log,
        )?;
        step.done("installed");
        done.push(FUZZ_TOOLCHAIN.to_string());
    }
    if !toolchains.lines().any(is_plain_nightly) {
        let step = Step::start("setup: installing the nightly toolchain (eBPF)");
        process::run_appended(
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]),
            &log,
        )?;
        step.done("installed");
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
        let step = Step::start("setup: adding rust-src to nightly");
        process::run_appended(
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
            &log,
        )?;
        step.done("added");
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
    let log = crate::setup::log_path()?;
    let step = Step::start(format!(
        "setup: building bpf-linker against nightly's LLVM {major} (a few minutes)"
    ));
    process::run_appended(
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
    fn the_pin_is_read_from_the_products_toolchain_file() {
        let p = parse_pin(
            "# c\n[toolchain]\nchannel = \"1.99.1\"\nprofile = \"minimal\"\ncomponents = [\"clippy\", \"rustfmt\"]\n",
        )
        .unwrap();
        assert_eq!(p.channel, "1.99.1");
        assert_eq!(p.components, ["clippy", "rustfmt"]);
        assert!(parse_pin("[toolchain]\nprofile = \"minimal\"\n").is_err());
        assert!(parse_pin("channel = \"1.0; rm -rf /\"\n").is_err());
        assert!(pin().is_ok(), "{PIN_FILE} must name a channel");
        assert!(listed(
            "1.99.1-x86_64-unknown-linux-gnu (active)\n",
            "1.99.1"
        ));
        assert!(!listed("1.99.10-x86_64-unknown-linux-gnu\n", "1.99.1"));
    }

    /// `cargo xtask demo` as a newcomer's first command: no toolchain file may apply at the
    /// workspace root (rustup would stop every cargo command there until the pin is installed),
    /// and the xtask's own floor must not exceed an older stable's.
    #[test]
    fn cargo_xtask_runs_on_the_default_stable() {
        let root = cache::workspace_root();
        for dir in root.ancestors() {
            for name in ["rust-toolchain.toml", "rust-toolchain"] {
                assert!(
                    !dir.join(name).exists(),
                    "{} applies to `cargo xtask` at the workspace root: a pin that is not \
                     installed stops it before it can install anything (move it to {PIN_FILE})",
                    dir.join(name).display()
                );
            }
        }
        let manifest = std::fs::read_to_string(root.join("xtask/Cargo.toml")).unwrap();
        let floor = manifest
            .lines()
            .find_map(|l| l.strip_prefix("rust-version = "))
            .expect("xtask/Cargo.toml sets its own rust-version, not the workspace's");
        let minor: u32 = floor
            .trim_matches('"')
            .split('.')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(minor <= 90, "xtask's rust-version {floor} is above 1.90");
    }

    #[test]
    fn llvm_major_from_rustc_verbose_version() {
        let out = "rustc 1.97.0-nightly (abc 2026-05-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\n\
                   release: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(out), Some(22));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
    }
}
