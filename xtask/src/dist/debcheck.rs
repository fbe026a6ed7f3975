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

use crate::setup::kernels;
use crate::{cache, dist, process, progress};

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

/// Runs every check on `deb` and, when given, on the DKMS package `dkms_deb`; prints one line
/// per failure, Ok(true) when none.
pub fn run(deb: &Path, dkms_deb: Option<&Path>) -> Result<bool> {
    let work = cache::workspace_root()
        .join("target")
        .join("dist")
        .join("dpkg-check");
    cache::remove_dir(&work)?;
    let mut failures = dpkg_cycle(deb, &work.join("root"))?;
    failures.extend(scripts_under_systemd(deb, &work.join("scripts"))?);
    failures.extend(lintian(deb)?);
    if let Some(dkms_deb) = dkms_deb {
        failures.extend(dkms_cycle(dkms_deb, &work.join("dkms"))?);
        failures.extend(dkms_scripts(dkms_deb, &work.join("dkms-scripts"))?);
        failures.extend(lintian(dkms_deb)?);
    }
    for f in &failures {
        println!("debcheck: FAIL {f}");
    }
    if failures.is_empty() {
        println!(
            "debcheck: dpkg -i/-r/-P, maintainer scripts, lintian{}: PASS",
            if dkms_deb.is_some() {
                ", dkms add/build/install/remove for every lab kernel"
            } else {
                ""
            }
        );
    }
    Ok(failures.is_empty())
}

/// The installed module and netpoll_offsets.o dkms left for `release` under `install_tree`
/// (dkms compresses the module when the kernel's own modules are).
fn dkms_installed(install_tree: &Path, release: &str) -> Vec<PathBuf> {
    let dir = install_tree.join(release).join("updates/dkms");
    [
        "netpoll_patch.ko",
        "netpoll_patch.ko.xz",
        "netpoll_patch.ko.zst",
        "netpoll_patch.ko.gz",
        "netpoll_offsets.o",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.is_file())
    .collect()
}

/// The DKMS package's source through dkms itself, against every lab kernel's headers: `dkms
/// add` from the unpacked /usr/src, then per kernel `build`, `install` (the module and
/// netpoll_offsets.o must land in updates/dkms/, root-owned, not writable by others) and
/// `remove` (both gone). dkms's trees are scratch directories (--dkmstree, --sourcetree,
/// --installtree): nothing of the host's /lib/modules or /var/lib/dkms is touched.
fn dkms_cycle(dkms_deb: &Path, work: &Path) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt as _;
    let mut fail = Vec::new();
    if !process::on_path("dkms") {
        return Ok(vec![
            "dkms is not installed: run `cargo xtask setup`".into(),
        ]);
    }
    let root = work.join("root");
    let (tree, inst) = (work.join("dkms-tree"), work.join("install-tree"));
    for d in [&root, &tree, &inst] {
        cache::create_dir(d)?;
    }
    process::run(Command::new("dpkg-deb").arg("-x").arg(dkms_deb).arg(&root))?;
    let src = root.join("usr/src");
    let version = std::fs::read_dir(&src)
        .with_context(|| format!("{} has no /usr/src", dkms_deb.display()))?
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&format!("{}-", dist::DKMS_MODULE))
                .map(str::to_string)
        })
        .with_context(|| {
            format!(
                "{} has no /usr/src/{}-VERSION",
                dkms_deb.display(),
                dist::DKMS_MODULE
            )
        })?;
    if !src
        .join(format!("{}-{version}/dkms.conf", dist::DKMS_MODULE))
        .is_file()
    {
        fail.push(format!("{} has no dkms.conf", dkms_deb.display()));
        return Ok(fail);
    }
    let trees = |cmd: &mut Command| {
        cmd.arg("--dkmstree")
            .arg(&tree)
            .arg("--sourcetree")
            .arg(&src)
            .arg("--installtree")
            .arg(&inst);
    };
    let dkms = |args: &[&str]| {
        let mut cmd = Command::new("dkms");
        cmd.args(args)
            .args(["-m", dist::DKMS_MODULE, "-v", &version]);
        trees(&mut cmd);
        cmd
    };
    let log = work.join("dkms.log");
    process::run_appended(&mut dkms(&["add"]), &log).context("dkms add")?;
    let cache_dir = cache::dir()?;
    for spec in kernels::KERNELS {
        let kernel = kernels::load(&cache_dir, spec)?;
        let rel = kernel.release.as_str();
        // dkms runs the host's make and gcc, as on a user's machine; these headers need a
        // newer compiler and glibc than this host has (the lab builds their modules in a
        // toolchain root instead), so a host-side dkms build cannot pass here.
        if let Some(suite) = spec.build_root {
            println!(
                "debcheck: dkms for {rel} skipped: its headers need {suite}'s gcc and glibc, \
                 which this host lacks"
            );
            continue;
        }
        let failed_before = fail.len();
        let step = progress::Step::start(format!("debcheck: dkms build/install/remove for {rel}"));
        cache::create_dir(&inst.join(rel))?;
        let headers = kernel.headers_dir();
        let with_kernel = |verb: &str| {
            let mut cmd = dkms(&[verb, "-k", rel, "--no-depmod"]);
            cmd.arg("--kernelsourcedir").arg(&headers);
            cmd
        };
        if let Err(e) = process::run_appended(&mut with_kernel("build"), &log)
            .and_then(|()| process::run_appended(&mut with_kernel("install"), &log))
        {
            step.done("FAILED");
            fail.push(format!("dkms build/install for {rel}: {e:#}"));
            continue;
        }
        let installed = dkms_installed(&inst, rel);
        let names: Vec<String> = installed
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if !names.iter().any(|n| n.starts_with("netpoll_patch.ko"))
            || !names.iter().any(|n| n == "netpoll_offsets.o")
        {
            fail.push(format!("dkms install for {rel}: updates/dkms/ holds {names:?}, not the module and netpoll_offsets.o"));
        }
        for p in &installed {
            let m = std::fs::metadata(p)?;
            if m.uid() != 0 || m.mode() & 0o022 != 0 {
                fail.push(format!(
                    "dkms install for {rel}: {} is uid {} mode {:o}",
                    p.display(),
                    m.uid(),
                    m.mode() & 0o7777
                ));
            }
        }
        if let Err(e) =
            process::run_appended(&mut dkms(&["remove", "-k", rel, "--no-depmod"]), &log)
        {
            fail.push(format!("dkms remove for {rel}: {e:#}"));
        }
        let left = dkms_installed(&inst, rel);
        if !left.is_empty() {
            fail.push(format!("dkms remove for {rel} left {left:?}"));
        }
        step.done(if fail.len() == failed_before {
            "ok"
        } else {
            "FAILED"
        });
        // `remove` of the last kernel unregisters the module; add it again for the next.
        let mut status = Command::new("dkms");
        status.arg("status");
        trees(&mut status);
        if process::output(&mut status)?.trim().is_empty() {
            process::run_appended(&mut dkms(&["add"]), &log).context("dkms add")?;
        }
    }
    Ok(fail)
}

/// The DKMS package's postinst and prerm as dpkg runs them on a host with two kernels, one
/// with headers: a stub `dkms` records the calls. postinst must add the source and build and
/// install for the kernel with headers only; prerm must remove it from every kernel. The
/// kernels are in a private mount namespace (an overlay on /usr/lib, so the host's
/// /lib/modules is untouched).
fn dkms_scripts(dkms_deb: &Path, work: &Path) -> Result<Vec<String>> {
    let control = work.join("control");
    cache::create_dir(work)?;
    process::run(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(dkms_deb)
            .arg(&control),
    )?;
    let version = dkms_deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .and_then(|n| n.split('_').nth(1).map(str::to_string))
        .unwrap_or_default();
    dkms_scripts_run(
        &control.join("postinst"),
        &control.join("prerm"),
        &version,
        work,
    )
}

/// Runs `install` (postinst configure, or the RPM's %post) then `remove` (prerm remove, or
/// %preun) of the DKMS package `version` with a stub dkms and two kernels, one with headers;
/// returns what differs from the expected dkms calls. Shared with rpmcheck.
pub fn dkms_scripts_run(
    install: &Path,
    remove: &Path,
    version: &str,
    work: &Path,
) -> Result<Vec<String>> {
    let stubs = work.join("bin");
    let (up, ovl) = (work.join("upper"), work.join("overlay-work"));
    for d in [&stubs, &up, &ovl] {
        cache::create_dir(d)?;
    }
    let log = work.join("calls");
    let added = work.join("added");
    std::fs::write(
        stubs.join("dkms"),
        format!(
            "#!/bin/sh\necho \"dkms $*\" >>'{log}'\n\
             case \"$1\" in add) touch '{added}';; status) [ -e '{added}' ] && echo \"$3/$5: added\";; \
             remove) rm -f '{added}';; esac\nexit 0\n",
            log = log.display(),
            added = added.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(stubs.join("dkms"), std::fs::Permissions::from_mode(0o755))?;
    let script = format!(
        "mount -t overlay overlay -o lowerdir=/usr/lib,upperdir={up},workdir={ovl} /usr/lib && \
         mkdir -p /lib/modules/9.9.9-with/build /lib/modules/9.9.9-without && \
         touch /lib/modules/9.9.9-with/build/Makefile && \
         sh \"$I\" configure && sh \"$R\" remove",
        up = up.display(),
        ovl = ovl.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("I", install)
        .env("R", remove)
        .env(
            "PATH",
            format!(
                "{}:{}",
                stubs.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("DPKG_ROOT")
        .output()
        .context("running the DKMS package's scripts in a private mount namespace")?;
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let calls: Vec<&str> = calls.lines().collect();
    let v = version;
    let m = dist::DKMS_MODULE;
    let want = [
        format!("dkms status -m {m} -v {v}"),
        format!("dkms add -m {m} -v {v}"),
        format!("dkms build -m {m} -v {v} -k 9.9.9-with"),
        format!("dkms install -m {m} -v {v} -k 9.9.9-with"),
        format!("dkms status -m {m} -v {v}"),
        format!("dkms remove -m {m} -v {v} --all"),
    ];
    let mut fail = Vec::new();
    if !out.status.success() {
        fail.push(format!(
            "the DKMS package's scripts failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if calls != want {
        fail.push(format!(
            "the DKMS package's scripts called {calls:?}, expected {want:?}"
        ));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.contains("no headers for 9.9.9-without") {
        fail.push(format!(
            "postinst did not say that 9.9.9-without has no headers: {stderr}"
        ));
    }
    Ok(fail)
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
