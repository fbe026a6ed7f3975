//! The RPMs as rpm and rpmlint see them (`cargo xtask rpmcheck`, part of `cargo xtask test`):
//! each installed into a throwaway root (`rpm --root DIR -i --nodeps`: a fresh database there;
//! `--noscripts`: the root has no shell to run them in), checked against its own digests
//! (`rpm -V`), the configuration marked `%config(noreplace)` and kept as .rpmsave once
//! edited when the package is erased; the scriptlets run as rpm would run them, in a private
//! mount namespace with systemctl and dkms stubbed (as debcheck runs the .debs' scripts);
//! rpmlint, each remaining tag filtered with its reason in packaging/rpm/rpmlintrc.

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

/// Every check on the two RPMs; one line per failure, Ok(true) when none.
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
    fail.extend(main_scriptlets(rpm, &work.join("scriptlets"))?);
    let dkms_work = work.join("dkms-scriptlets");
    cache::create_dir(&dkms_work)?;
    let post = dkms_work.join("post");
    let preun = dkms_work.join("preun");
    std::fs::write(&post, scriptlet(dkms_rpm, "POSTIN")?)?;
    std::fs::write(&preun, scriptlet(dkms_rpm, "PREUN")?)?;
    fail.extend(
        crate::dist::debcheck::dkms_scripts_run(&post, &preun, &version, &dkms_work)?
            .into_iter()
            .map(|f| format!("{} scriptlets: {f}", dist::DKMS_PACKAGE)),
    );
    fail.extend(rpmlint(&[rpm, dkms_rpm])?);
    for f in &fail {
        println!("rpmcheck: FAIL {f}");
    }
    if fail.is_empty() {
        println!("rpmcheck: rpm --root -i/-V/-e, %config(noreplace), scriptlets and rpmlint: PASS");
    }
    Ok(fail.is_empty())
}

/// One scriptlet's body (`POSTIN`, `PREUN`, `POSTUN`), as rpm stores it.
fn scriptlet(rpm: &Path, tag: &str) -> Result<String> {
    process::output(
        Command::new("rpm")
            .args(["-qp", "--qf"])
            .arg(format!("%{{{tag}}}"))
            .arg(rpm),
    )
}

/// netpoll-trace's %post, %preun and %postun as rpm runs them for an install then an erase
/// (`$1` 1, then 0 and 0), on a booted systemd host and on one without systemd, with
/// systemctl stubbed: they reload systemd and stop the agent on erase, only under systemd,
/// and never enable or start it.
fn main_scriptlets(rpm: &Path, work: &Path) -> Result<Vec<String>> {
    let stubs = work.join("bin");
    cache::create_dir(&stubs)?;
    for (tag, file) in [("POSTIN", "post"), ("PREUN", "preun"), ("POSTUN", "postun")] {
        std::fs::write(work.join(file), scriptlet(rpm, tag)?)?;
    }
    let log = work.join("calls");
    std::fs::write(
        stubs.join("systemctl"),
        format!("#!/bin/sh\necho \"systemctl $*\" >>'{}'\n", log.display()),
    )?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        stubs.join("systemctl"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let steps = "sh \"$W/post\" 1 && sh \"$W/preun\" 0 && sh \"$W/postun\" 0";
    let mut fail = Vec::new();
    for booted in [true, false] {
        let _ = std::fs::remove_file(&log);
        let script = if booted {
            format!("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && {steps}")
        } else {
            format!("mount -t tmpfs tmpfs /run && {steps}")
        };
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("W", work)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    stubs.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .context("running the scriptlets in a private mount namespace (unshare)")?;
        if !out.status.success() {
            fail.push(format!(
                "netpoll-trace scriptlets failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let calls: Vec<&str> = calls.lines().collect();
        let want: &[&str] = if booted {
            &[
                "systemctl --system daemon-reload",
                "systemctl stop netpoll-trace-agent.service",
                "systemctl --system daemon-reload",
            ]
        } else {
            &[]
        };
        if calls != want {
            fail.push(format!(
                "netpoll-trace scriptlets ({}) called {calls:?}, expected {want:?}",
                if booted { "systemd host" } else { "no systemd" }
            ));
        }
    }
    Ok(fail)
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
    // --nodeps: the throwaway root has none of the packages' dependencies (dkms, /bin/sh).
    let verify = rpm_in(root).args(["-V", "--nodeps", pkg]).output()?;
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
