//! The RPMs as rpm and rpmlint see them (`cargo xtask rpmcheck`, part of `cargo xtask test`):
//! each installed into a throwaway root (`rpm --root DIR -i --nodeps`: a fresh database there;
//! `--noscripts`, as the root has no shell to run them: their bodies are the .deb's
//! maintainer scripts, which debcheck runs), checked against its own digests (`rpm -V`), the
//! configuration marked `%config(noreplace)` and kept as .rpmsave once edited when the
//! package is erased; the scriptlets present; rpmlint, each remaining tag filtered with its
//! reason in packaging/rpm/rpmlintrc.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{cache, dist, process};

/// Files the netpoll-trace RPM must install (relative to the root).
const INSTALLED: &[&str] = &[
    "usr/bin/netpoll-trace",
    "usr/lib/systemd/system/netpoll-trace-agent.service",
    dist::CONFFILE,
    "usr/share/man/man8/netpoll-trace.8.gz",
    "usr/share/man/man5/netpoll-trace-agent.toml.5.gz",
    "usr/share/netpoll-trace/netpoll-patch/netpoll_patch.c",
];

pub fn run(rpm: &Path, dkms_rpm: &Path) -> Result<bool> {
    let work = cache::workspace_root()
        .join("target")
        .join("dist")
        .join("rpm-check");
    cache::remove_dir(&work)?;
    let mut fail = Vec::new();
    let version = dkms_rpm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .and_then(|n| {
            n.strip_prefix(&format!("{}-", dist::DKMS_PACKAGE))
                .and_then(|r| r.split('-').next())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let dkms_files = [format!("usr/src/{}-{version}/dkms.conf", dist::DKMS_MODULE)];
    let main_files: Vec<String> = INSTALLED.iter().map(|s| s.to_string()).collect();
    for (pkg, file, files, config, scripts) in [
        (
            "netpoll-trace",
            rpm,
            &main_files[..],
            Some(dist::CONFFILE),
            &[
                "daemon-reload",
                "systemctl stop netpoll-trace-agent.service",
            ][..],
        ),
        (
            dist::DKMS_PACKAGE,
            dkms_rpm,
            &dkms_files[..],
            None,
            &["dkms add", "dkms install", "dkms remove"][..],
        ),
    ] {
        fail.extend(cycle(pkg, file, &work.join(pkg), files, config)?);
        let text = process::output(Command::new("rpm").args(["-qp", "--scripts"]).arg(file))?;
        for s in scripts {
            if !text.contains(s) {
                fail.push(format!("{pkg}: no scriptlet runs `{s}`"));
            }
        }
    }
    fail.extend(rpmlint(&[rpm, dkms_rpm])?);
    for f in &fail {
        println!("rpmcheck: FAIL {f}");
    }
    if fail.is_empty() {
        println!("rpmcheck: rpm --root -i/-V/-e, %config(noreplace), scriptlets and rpmlint: PASS");
    }
    Ok(fail.is_empty())
}

fn rpm_in(root: &Path) -> Command {
    let mut cmd = Command::new("rpm");
    cmd.arg("--root").arg(root);
    cmd
}

fn cycle(
    pkg: &str,
    file: &Path,
    root: &Path,
    files: &[String],
    config: Option<&str>,
) -> Result<Vec<String>> {
    let mut fail = Vec::new();
    cache::create_dir(root)?;
    process::output(rpm_in(root).arg("--initdb")).context("rpm --initdb in the throwaway root")?;
    process::output(
        rpm_in(root)
            .args(["-i", "--nodeps", "--noscripts"])
            .arg(file),
    )
    .with_context(|| format!("rpm --root -i {}", file.display()))?;
    for f in files {
        if !root.join(f).is_file() {
            fail.push(format!("{pkg}: rpm -i did not install /{f}"));
        }
    }
    let verify = rpm_in(root).args(["-V", pkg]).output()?;
    let verify_out = String::from_utf8_lossy(&verify.stdout);
    if !verify.status.success() || !verify_out.trim().is_empty() {
        fail.push(format!("{pkg}: rpm -V: {}", verify_out.trim()));
    }
    if let Some(conf) = config {
        let listed = process::output(rpm_in(root).args(["-qc", pkg]))?;
        if !listed.lines().any(|l| l == format!("/{conf}")) {
            fail.push(format!("{pkg}: /{conf} is not a %config file: {listed}"));
        }
        let flags = process::output(rpm_in(root).args([
            "-q",
            "--qf",
            "[%{FILENAMES} %{FILEFLAGS:fflags}\n]",
            pkg,
        ]))?;
        if !flags
            .lines()
            .any(|l| l.starts_with(&format!("/{conf} ")) && l.contains('n'))
        {
            fail.push(format!("{pkg}: /{conf} is not %config(noreplace)"));
        }
        std::fs::write(root.join(conf), "# edited by the operator\n")?;
    }
    process::output(rpm_in(root).args(["-e", "--noscripts", pkg]))
        .with_context(|| format!("rpm --root -e {pkg}"))?;
    for f in files {
        if root.join(f).exists() {
            fail.push(format!("{pkg}: rpm -e left /{f}"));
        }
    }
    if let Some(conf) = config
        && !root.join(format!("{conf}.rpmsave")).is_file()
    {
        fail.push(format!(
            "{pkg}: rpm -e did not keep the edited /{conf} as .rpmsave"
        ));
    }
    Ok(fail)
}

/// rpmlint's errors and warnings after packaging/rpm/rpmlintrc's filters (each with its reason).
fn rpmlint(rpms: &[&Path]) -> Result<Vec<String>> {
    if !process::on_path("rpmlint") {
        return Ok(vec![
            "rpmlint is not installed: run `cargo xtask setup`".into(),
        ]);
    }
    let rc = cache::workspace_root().join("packaging/rpm/rpmlintrc");
    let out = Command::new("rpmlint")
        .arg("-r")
        .arg(&rc)
        .args(rpms)
        .output()
        .context("running rpmlint")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fail = Vec::new();
    for line in text.lines() {
        if line.contains(": E: ") || line.contains(": W: ") {
            println!("rpmcheck: rpmlint: {line}");
            fail.push(format!(
                "rpmlint: {line} (fix it, or filter it with a reason in packaging/rpm/rpmlintrc)"
            ));
        }
    }
    if !out.status.success() && fail.is_empty() {
        fail.push(format!(
            "rpmlint failed ({}): {} {}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(fail)
}
