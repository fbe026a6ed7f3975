//! The .deb as dpkg and lintian see it (`cargo xtask test`): `dpkg -i`, `-r` and `-P` into a
//! throwaway root (`dpkg --root` with a fresh admin directory; the maintainer scripts run
//! chrootless with DPKG_ROOT set, as they must support), asserting what each leaves; the
//! maintainer scripts once more as a booted systemd host would run them (a private mount
//! namespace with /run/systemd/system, systemctl and deb-systemd-invoke stubbed) to see that
//! they reload systemd and never enable or start the agent; lintian, each remaining tag
//! explained in packaging/INSTALL.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cache, dist, process};

/// Files `dpkg -i` must install (relative to the root).
const INSTALLED: &[&str] = &[
    "usr/bin/netpoll-trace",
    "usr/lib/systemd/system/netpoll-trace-agent.service",
    dist::CONFFILE,
    "usr/share/man/man8/netpoll-trace.8.gz",
    "usr/share/man/man8/netpoll-trace-agent.8.gz",
    "usr/share/man/man5/netpoll-trace-agent.toml.5.gz",
    "usr/share/doc/netpoll-trace/copyright",
    "usr/share/doc/netpoll-trace/changelog.gz",
];

/// Runs every check on `deb`; prints one line per failure, Ok(true) when none.
pub fn run(deb: &Path) -> Result<bool> {
    let work = cache::workspace_root()
        .join("target")
        .join("dist")
        .join("dpkg-check");
    cache::remove_dir(&work)?;
    let mut failures = dpkg_cycle(deb, &work.join("root"))?;
    failures.extend(scripts_under_systemd(deb, &work.join("scripts"))?);
    failures.extend(lintian(deb)?);
    for f in &failures {
        println!("debcheck: FAIL {f}");
    }
    if failures.is_empty() {
        println!("debcheck: dpkg -i/-r/-P, maintainer scripts and lintian: PASS");
    }
    Ok(failures.is_empty())
}

fn dpkg(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("dpkg");
    cmd.arg(format!("--root={}", root.display()))
        // Scripts run in this process's root, with DPKG_ROOT naming the target.
        .arg("--force-script-chrootless")
        .arg("--log=/dev/null")
        .args(args);
    cmd
}

/// dpkg's view of the package in `root`: its Status line, and the Conffiles it records.
fn status(root: &Path) -> String {
    dpkg(root, &["-s", "netpoll-trace"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn dpkg_cycle(deb: &Path, root: &Path) -> Result<Vec<String>> {
    let mut fail = Vec::new();
    let admin = root.join("var/lib/dpkg");
    for d in ["info", "updates"] {
        cache::create_dir(&admin.join(d))?;
    }
    std::fs::write(admin.join("status"), "").context("initialising the throwaway dpkg status")?;
    let file = |rel: &str| root.join(rel);

    process::output(dpkg(root, &["-i"]).arg(deb)).context("dpkg -i into the throwaway root")?;
    for f in INSTALLED {
        if !file(f).is_file() {
            fail.push(format!("dpkg -i: {f} not installed"));
        }
    }
    let st = status(root);
    if !st.contains("Status: install ok installed") {
        fail.push(format!("dpkg -i: not installed per dpkg -s:\n{st}"));
    }
    if !st
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("/{} ", dist::CONFFILE)))
    {
        fail.push(format!(
            "dpkg -i: /{} not recorded as a conffile:\n{st}",
            dist::CONFFILE
        ));
    }
    // dpkg --verify checks every file against DEBIAN/md5sums: silent when all match, and
    // it has nothing to check without them.
    let verify = process::output(&mut dpkg(root, &["--verify", "netpoll-trace"]))?;
    if !verify.trim().is_empty() {
        fail.push(format!("dpkg --verify: {}", verify.trim()));
    }
    if !file("var/lib/dpkg/info/netpoll-trace.md5sums").is_file() {
        fail.push("dpkg -i: the package has no md5sums".into());
    }
    fail.extend(
        enabled(root)
            .into_iter()
            .map(|p| format!("dpkg -i enabled the service: {}", p.display())),
    );

    // What an operator and the agent add: an edited conffile and a journal.
    let edited = "\n# edited by the operator\n";
    if file(dist::CONFFILE).is_file() {
        append(&file(dist::CONFFILE), edited)?;
    }
    cache::create_dir(&file("var/log/netpoll-trace"))?;
    std::fs::write(file("var/log/netpoll-trace/journal.jsonl"), "{}\n")
        .context("writing a journal")?;

    process::output(&mut dpkg(root, &["-r", "netpoll-trace"]))
        .context("dpkg -r in the throwaway root")?;
    if file("usr/bin/netpoll-trace").exists()
        || file("usr/lib/systemd/system/netpoll-trace-agent.service").exists()
    {
        fail.push("dpkg -r: the binary or the unit is still there".into());
    }
    match std::fs::read_to_string(file(dist::CONFFILE)) {
        Ok(t) if t.ends_with(edited) => {}
        _ => fail.push(format!(
            "dpkg -r: the edited /{} was not kept",
            dist::CONFFILE
        )),
    }
    if !status(root).contains("Status: deinstall ok config-files") {
        fail.push(format!(
            "dpkg -r: not in config-files state:\n{}",
            status(root)
        ));
    }

    process::output(&mut dpkg(root, &["-P", "netpoll-trace"]))
        .context("dpkg -P in the throwaway root")?;
    for gone in ["etc/netpoll-trace", "var/log/netpoll-trace"] {
        if file(gone).exists() {
            fail.push(format!("dpkg -P: /{gone} is still there"));
        }
    }
    if status(root).contains("Status:") {
        fail.push("dpkg -P: dpkg still knows the package".into());
    }
    Ok(fail)
}

/// Links that enable the unit, anywhere under the root's /etc/systemd.
fn enabled(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.join("etc/systemd")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("netpoll-trace"))
            {
                found.push(p);
            }
        }
    }
    found
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The maintainer scripts as dpkg runs them on a booted systemd host (install, then
/// remove): in a private mount namespace whose /run has systemd/system, with systemctl and
/// deb-systemd-invoke stubs that record their arguments. Without /run/systemd/system (a
/// chroot, a container without systemd) they must call neither.
fn scripts_under_systemd(deb: &Path, work: &Path) -> Result<Vec<String>> {
    let mut fail = Vec::new();
    let control = work.join("control");
    let stubs = work.join("bin");
    cache::create_dir(&stubs)?;
    process::run(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(&control),
    )?;
    let missing: Vec<&str> = ["postinst", "prerm", "postrm"]
        .into_iter()
        .filter(|s| !control.join(s).is_file())
        .collect();
    if !missing.is_empty() {
        return Ok(vec![format!("the package has no {}", missing.join(", "))]);
    }
    let log = work.join("calls");
    for stub in ["systemctl", "deb-systemd-invoke"] {
        let path = stubs.join(stub);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{stub} $*\" >>'{}'\n", log.display()),
        )?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let steps = "\"$C/postinst\" configure && \"$C/prerm\" remove && \"$C/postrm\" remove";
    for booted in [true, false] {
        let _ = std::fs::remove_file(&log);
        let script = if booted {
            format!("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && {steps}")
        } else {
            format!("mount -t tmpfs tmpfs /run && {steps}")
        };
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("C", &control)
            .env("PATH", &path)
            .env_remove("DPKG_ROOT")
            .output()
            .context(
                "running the maintainer scripts in a private mount namespace (unshare, util-linux)",
            )?;
        if !out.status.success() {
            bail!(
                "the maintainer scripts failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let calls: Vec<&str> = calls.lines().collect();
        let want: &[&str] = if booted {
            &[
                "systemctl --system daemon-reload",
                "deb-systemd-invoke stop netpoll-trace-agent.service",
                "systemctl --system daemon-reload",
            ]
        } else {
            &[]
        };
        if calls != want {
            let host = if booted {
                "a systemd host"
            } else {
                "a host without systemd"
            };
            fail.push(format!(
                "maintainer scripts on {host} called {calls:?}, expected {want:?}"
            ));
        }
        if calls
            .iter()
            .any(|c| c.contains("enable") || c.contains(" start"))
        {
            fail.push(format!(
                "maintainer scripts enable or start the service: {calls:?}"
            ));
        }
    }
    Ok(fail)
}

/// lintian's errors and warnings, each allowed only when packaging/INSTALL.md explains it
/// (its tag in backquotes in the "lintian" section).
fn lintian(deb: &Path) -> Result<Vec<String>> {
    if !process::on_path("lintian") {
        return Ok(vec![
            "lintian is not installed: run `cargo xtask setup`".into(),
        ]);
    }
    let out = Command::new("lintian")
        .arg(deb)
        .output()
        .context("running lintian")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let install = std::fs::read_to_string(cache::workspace_root().join("packaging/INSTALL.md"))
        .context("reading packaging/INSTALL.md")?;
    let explained = install.split("## lintian").nth(1).unwrap_or_default();
    let mut fail = Vec::new();
    for (tag, line) in lintian_tags(&text) {
        println!("debcheck: lintian: {line}");
        if !explained.contains(&format!("`{tag}`")) {
            fail.push(format!(
                "lintian {tag} is not explained in packaging/INSTALL.md: {line}"
            ));
        }
    }
    if !out.status.success() && fail.is_empty() && lintian_tags(&text).is_empty() {
        fail.push(format!(
            "lintian failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(fail)
}

/// (tag, line) of every `E:` and `W:` line of lintian's output.
fn lintian_tags(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .filter_map(|l| Some((l.split_whitespace().nth(2)?.to_string(), l.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lintian_errors_and_warnings_are_read_but_not_info() {
        let out = "E: netpoll-trace: statically-linked-binary [usr/bin/netpoll-trace]\n\
                   W: netpoll-trace: no-manual-page x\nI: netpoll-trace: spelling-error y\nN: note\n";
        let tags: Vec<String> = lintian_tags(out).into_iter().map(|t| t.0).collect();
        assert_eq!(tags, ["statically-linked-binary", "no-manual-page"]);
    }
}
