//! `cargo xtask first-contact`: the README's first command, run the way a newcomer runs it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::progress::Step;
use crate::setup::toolchain;
use crate::{cache, process};

/// `cargo xtask first-contact`: `cargo xtask` as a newcomer's first command, on a machine
/// whose rustup has only its default toolchain. A private rustup home (target/first-contact)
/// holds a hard-linked copy of this machine's default toolchain and nothing else, so the
/// product's pin is not installed there; `cargo xtask --help` must then build and run the
/// xtask from the workspace root (a toolchain file applying there would stop rustup with
/// "toolchain ... is not installed"). Seconds once the xtask is built; downloads nothing.
pub fn run() -> Result<bool> {
    let root = cache::workspace_root();
    let home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
        .ok_or_else(|| anyhow!("neither RUSTUP_HOME nor HOME is set: cannot find rustup's home"))?;
    let default = process::output(Command::new("rustup").arg("default"))
        .context("asking rustup for its default toolchain")?;
    let default = default
        .split_whitespace()
        .next()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| anyhow!("rustup names no default toolchain: `rustup default stable`"))?
        .to_string();
    let work = root.join("target").join("first-contact");
    let private = work.join("rustup");
    cache::remove_dir(&private)?;
    cache::create_dir(&private.join("toolchains"))?;
    process::run(
        Command::new("cp")
            .arg("-al")
            .arg(home.join("toolchains").join(&default))
            .arg(private.join("toolchains")),
    )
    .context("linking the default toolchain into the private rustup home")?;
    let version = std::fs::read_to_string(home.join("settings.toml"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("version = ").map(str::to_string))
        })
        .unwrap_or_else(|| "\"12\"".into());
    std::fs::write(
        private.join("settings.toml"),
        format!("version = {version}\ndefault_toolchain = \"{default}\"\nprofile = \"minimal\"\n"),
    )
    .context("writing the private rustup settings")?;
    let pin = toolchain::pin()?;
    let private_cmd = |cmd: &mut Command| {
        cmd.current_dir(&root)
            .env("RUSTUP_HOME", &private)
            .env("CARGO_TARGET_DIR", work.join("target"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTUP_TOOLCHAIN_SOURCE")
            .env_remove("CARGO")
            .env_remove("RUSTC");
    };
    let mut list = Command::new("rustup");
    list.args(["toolchain", "list"]);
    private_cmd(&mut list);
    if toolchain::listed(&process::output(&mut list)?, &pin.channel) {
        bail!(
            "the private rustup home lists {}: the check would prove nothing",
            pin.channel
        );
    }
    let step = Step::start(format!(
        "first-contact: `cargo xtask --help` with only {default} (no {})",
        pin.channel
    ));
    let mut cmd = Command::new("cargo");
    cmd.args(["xtask", "--help"]);
    private_cmd(&mut cmd);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .context("running cargo (is rustup's cargo on PATH?)")?;
    let ok = out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains("netpoll-trace project tasks");
    if ok {
        step.done("ok");
    } else {
        step.done("FAILED");
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().take(4).collect();
        println!(
            "first-contact: FAIL `cargo xtask` does not run as a first command: {}",
            tail.join(" | ")
        );
    }
    Ok(ok)
}
