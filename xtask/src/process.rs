//! Running external programs with errors that name the program and what to do.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// Renders a command line for messages, e.g. `apt-get download foo`.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with the terminal attached (its progress shows) and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    let status = cmd.status().with_context(|| {
        format!("could not start `{line}`: is it installed? (`cargo xtask setup` installs it)")
    })?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd`, returns its standard output; on failure the error carries its last stderr lines.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let out = cmd.stdin(Stdio::null()).output().with_context(|| {
        format!("could not start `{line}`: is it installed? (`cargo xtask setup` installs it)")
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("`{line}` failed ({}): {}", out.status, tail.join(" | "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with its output appended to the file `log` (setup's one log: every apt and
/// rustup/cargo-install step in order, each under a `$ command` line); a failure names the log
/// and quotes the step's last lines.
pub fn run_appended(cmd: &mut Command, log: &std::path::Path) -> Result<()> {
    use std::io::{Seek as _, Write as _};
    let line = describe(cmd);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    writeln!(file, "\n$ {line}").with_context(|| format!("writing {}", log.display()))?;
    let start = file.stream_position().unwrap_or(0);
    let err = file
        .try_clone()
        .with_context(|| format!("opening {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .with_context(|| {
            format!("could not start `{line}`: is it installed? (`cargo xtask setup` installs it)")
        })?;
    if !status.success() {
        let text = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(start as usize..).unwrap_or_default());
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{line}` failed ({status}); its output is in {}, ending:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// True when `cmd` starts and exits 0; all output is discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// True when `program` can be found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}
