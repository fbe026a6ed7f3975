//! Debian packages: what the host has, installing host tools, and downloading packages for the
//! guest or the lab kernels. Those come through a private apt configuration per suite (the
//! host's own suite too) that reuses the host's mirror and keyring, so downloads stay
//! signature-checked, with its own lists refreshed before use and its own empty dpkg status:
//! what the lab gets never depends on how old the host's /var/lib/apt/lists is, or on what the
//! host has installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{cache, process, progress};

/// True when `pkg` is installed on the host.
pub fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).ends_with("install ok installed")
        })
        .unwrap_or(false)
}

/// Installs the missing ones of `pkgs` on the host; returns the names it installed. A good
/// guest: apt's plan is simulated first (`apt-get -s`) and refused when it would remove or
/// downgrade a host package; when the package to be removed came from another suite (a
/// backport), the packages of its source are taken from that suite (`package/SUITE`), with
/// the dependencies they need from there, and nothing else is (`safe_plan`). apt's output
/// goes to `log`; the terminal gets one line per step.
pub fn install_host(pkgs: &[&str], log: &Path) -> Result<Vec<String>> {
    let missing: Vec<String> = pkgs
        .iter()
        .filter(|p| !installed(p))
        .map(|p| p.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    // Always after a refresh: lists that are old (or empty, on a fresh machine) may not know
    // a package, or name a version the mirror no longer has.
    let step = progress::Step::start("setup: apt-get update (host lists, before installing)");
    process::run_appended(Command::new("apt-get").args(["-q", "update"]), log)
        .context("refreshing the host's package lists (are the apt sources reachable? setup must run as root)")?;
    step.done("fresh");
    let chosen = safe_plan(&missing)?;
    let from = match &chosen.suite {
        Some(s) => {
            let moved: Vec<&str> = chosen
                .install
                .iter()
                .filter_map(|p| p.strip_suffix(&format!("/{s}")))
                .collect();
            format!(" ({} from {s})", moved.join(" "))
        }
        None => String::new(),
    };
    let step = progress::Step::start(format!(
        "setup: installing {} host package(s){from}: {}",
        missing.len(),
        missing.join(" ")
    ));
    let mut cmd = install_command(&chosen.opts, &chosen.install, false);
    // Belt and braces: apt aborts rather than remove anything, whatever changed since the
    // simulation.
    cmd.arg("--no-remove");
    process::run_appended(&mut cmd, log).context("installing host packages")?;
    step.done(&format!(
        "done ({} new, {} upgraded)",
        chosen.plan.installs, chosen.plan.upgrades
    ));
    Ok(missing)
}

/// `program` (apt-get, apt-cache) with `opts` as its `-o` settings.
fn apt_command(program: &str, opts: &[String]) -> Command {
    let mut cmd = Command::new(program);
    for o in opts {
        cmd.arg("-o").arg(o);
    }
    cmd
}

/// `apt-get install` of `pkgs`; `opts` are `-o` settings (none for the host itself; a test
/// points apt at other lists and another dpkg status).
fn install_command(opts: &[String], pkgs: &[String], simulate: bool) -> Command {
    let mut cmd = apt_command("apt-get", opts);
    cmd.args(["install", "-y", "-q", "--no-install-recommends"]);
    if simulate {
        cmd.arg("-s");
    }
    cmd.args(pkgs).env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// What `apt-get -s install` would do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// (package, installed version) of every `Remv` line.
    pub removes: Vec<(String, String)>,
    /// (package, installed version, new version) of every upgrade or downgrade.
    pub changes: Vec<(String, String, String)>,
    pub installs: usize,
    pub upgrades: usize,
    /// apt found no plan at all: the packages its "unmet dependencies" lines name (an
    /// installed one among them is what stands in the way), and those lines.
    pub unresolved: Option<(Vec<String>, String)>,
}

/// From a failed `apt-get -s install`'s output: the packages named by the lines under "The
/// following packages have unmet dependencies:" (` qemu-utils : Breaks: ...`), and the lines.
pub fn parse_unmet(out: &str) -> (Vec<String>, String) {
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("unmet dependencies"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .collect();
    let mut names = Vec::new();
    for l in &lines {
        if let Some((name, _)) = l.split_once(" : ") {
            let name = name.trim().to_string();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let text = lines
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("; ");
    (names, text)
}

/// Reads `apt-get -s` output: `Remv pkg [ver]`, `Inst pkg (new suite [arch])` (new) and
/// `Inst pkg [old] (new suite [arch])` (a change of an installed package).
pub fn parse_plan(out: &str) -> Plan {
    let mut plan = Plan::default();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Remv"), Some(pkg)) => {
                let ver = words
                    .next()
                    .map(|v| v.trim_matches(['[', ']']).to_string())
                    .unwrap_or_default();
                plan.removes.push((pkg.to_string(), ver));
            }
            (Some("Inst"), Some(pkg)) => match words.next() {
                Some(w) if w.starts_with('[') => {
                    let old = w.trim_matches(['[', ']']).to_string();
                    let new = words
                        .next()
                        .map(|v| v.trim_start_matches('(').to_string())
                        .unwrap_or_default();
                    plan.changes.push((pkg.to_string(), old, new));
                }
                _ => plan.installs += 1,
            },
            _ => {}
        }
    }
    plan
}

/// True when Debian version `a` sorts before `b` (dpkg's own comparison).
fn version_lt(a: &str, b: &str) -> bool {
    process::succeeds(Command::new("dpkg").args(["--compare-versions", a, "lt", b]))
}

/// The plan's removals and downgrades, one phrase each (empty: the plan is safe).
fn harms(plan: &Plan) -> Vec<String> {
    if let Some((_, lines)) = &plan.unresolved {
        return vec![format!("find no plan without removing a package ({lines})")];
    }
    let mut out: Vec<String> = plan
        .removes
        .iter()
        .map(|(p, v)| format!("remove {p} {v}"))
        .collect();
    out.extend(
        plan.changes
            .iter()
            .filter(|(_, old, new)| version_lt(new, old))
            .map(|(p, old, new)| format!("downgrade {p} {old} to {new}")),
    );
    out
}

/// The suite the installed version of `pkg` came from, per `apt-cache policy` (None when it
/// is in none of the host's sources, e.g. installed from a downloaded .deb).
fn installed_suite(opts: &[String], pkg: &str) -> Option<String> {
    let out = process::output(apt_command("apt-cache", opts).args(["policy", pkg])).ok()?;
    suite_of_installed(&out)
}

/// From `apt-cache policy` output: the first archive line under the `***` (installed)
/// version; dpkg's own status line (`100 /var/lib/dpkg/status`) is skipped.
pub fn suite_of_installed(policy: &str) -> Option<String> {
    let mut lines = policy
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("***"))
        .skip(1)
        .skip_while(|l| l.trim_end().ends_with("/var/lib/dpkg/status"));
    archive_suite(lines.next()?).map(str::to_string)
}

/// The suite of an `apt-cache policy` archive line
/// (`500 http://deb.debian.org/debian bookworm-backports/main amd64 Packages`); None for any
/// other line (a version, dpkg's status).
fn archive_suite(line: &str) -> Option<&str> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [prio, _, dist, ..] if prio.parse::<i32>().is_ok() => dist.split('/').next(),
        _ => None,
    }
}

/// A plan that removes and downgrades nothing: the default one, else one that takes the
/// packages of the same source as what stands in the way (QEMU beside a backported
/// qemu-utils) from the suite that came from, through private lists that add the host's
/// backports suite when its sources no longer name it (a machine image built with it,
/// shipped without). Everything else comes from where it would anyway. Otherwise an error
/// naming the conflict and the command that would resolve it; nothing is installed.
fn safe_plan(pkgs: &[String]) -> Result<Chosen> {
    let refusal = match plan_from_sources(&[], pkgs)? {
        Found::Safe(chosen) => return Ok(chosen),
        Found::Refused(refusal) => refusal,
    };
    if refusal.backport
        && let Ok(codename) = host_codename()
    {
        let bpo = format!("{codename}-backports");
        let opts = with_backports(&codename)?;
        let install = pin_same_source(pkgs, &refusal.sources, &bpo, |p| source_of(&opts, p));
        let (install, plan) = plan_in_suite(&opts, install, &bpo)?;
        if harms(&plan).is_empty() {
            return Ok(Chosen {
                opts,
                install,
                suite: Some(bpo),
                plan,
            });
        }
    }
    bail!(
        "{}",
        conflict_message(
            pkgs,
            &harms(&refusal.plan),
            refusal.backport,
            &host_codename().unwrap_or_default()
        )
    )
}

/// A safe plan and how to carry it out.
struct Chosen {
    /// `-o` settings for apt (none: the host's own configuration).
    opts: Vec<String>,
    /// What to name to `apt-get install`: a package, or `package/suite`.
    install: Vec<String>,
    /// The suite some packages come from, when not the default.
    suite: Option<String>,
    plan: Plan,
}

/// Why the host's own sources gave no safe plan.
struct Refusal {
    /// A package in the way is a backport (`~bpo` in its installed version).
    backport: bool,
    /// The source packages of what stands in the way.
    sources: Vec<String>,
    /// The default plan.
    plan: Plan,
}

/// `pkgs`, those built from one of `sources` (by `source_of`) as `package/suite`: only what
/// must match the package in the way moves to its suite.
pub fn pin_same_source(
    pkgs: &[String],
    sources: &[String],
    suite: &str,
    source_of: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    pkgs.iter()
        .map(|p| match source_of(p) {
            Some(src) if sources.contains(&src) => format!("{p}/{suite}"),
            _ => p.clone(),
        })
        .collect()
}

/// `install` simulated; while apt finds no plan because a package wants a dependency's
/// version from `suite` (bookworm-backports' QEMU 10 needs its seabios and
/// qemu-system-data), those dependencies are named from `suite` too, where it has them.
/// Returns what to install and its plan (still unresolved when that did not help).
fn plan_in_suite(
    opts: &[String],
    mut install: Vec<String>,
    suite: &str,
) -> Result<(Vec<String>, Plan)> {
    // Each round pins one layer of dependencies; the bound only stops a plan that never
    // settles.
    let pinned = format!("/{suite}");
    for _ in 0..8 {
        let plan = simulate(opts, &install)?;
        let Some((_, lines)) = &plan.unresolved else {
            return Ok((install, plan));
        };
        let more: Vec<String> = unmet_dependencies(lines)
            .into_iter()
            .filter(|d| {
                !install
                    .iter()
                    .any(|p| p == d || p.strip_suffix(&pinned) == Some(d))
            })
            .filter(|d| {
                process::output(apt_command("apt-cache", opts).args(["policy", d]))
                    .is_ok_and(|out| policy_has_suite(&out, suite))
            })
            .map(|d| format!("{d}/{suite}"))
            .collect();
        if more.is_empty() {
            return Ok((install, plan));
        }
        install.extend(more);
    }
    let plan = simulate(opts, &install)?;
    Ok((install, plan))
}

/// The packages that unmet `Depends:`/`Pre-Depends:` lines name (`parse_unmet`'s text:
/// `qemu-system-x86 : Depends: seabios (> 1.16.3-1~) but 1.16.2-1 is to be installed; ...`);
/// Recommends are not installed, Breaks and Conflicts name what stands in the way.
pub fn unmet_dependencies(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in text.split("; ") {
        let rel = part.split_once(" : ").map_or(part, |(_, r)| r).trim();
        let Some(rest) = rel
            .strip_prefix("Depends:")
            .or_else(|| rel.strip_prefix("PreDepends:"))
            .or_else(|| rel.strip_prefix("Pre-Depends:"))
        else {
            continue;
        };
        if let Some(name) = rest.split_whitespace().next()
            && !out.iter().any(|o| o == name)
        {
            out.push(name.to_string());
        }
    }
    out
}

/// From `apt-cache policy` output: whether some version of the package comes from `suite`.
pub fn policy_has_suite(policy: &str, suite: &str) -> bool {
    policy.lines().any(|l| archive_suite(l) == Some(suite))
}

/// The source package `pkg`'s candidate is built from (its own name when no `Source:`
/// field says otherwise; the field may carry a version: `qemu (1:7.2)`).
fn source_of(opts: &[String], pkg: &str) -> Option<String> {
    let out =
        process::output(apt_command("apt-cache", opts).args(["show", "--no-all-versions", pkg]))
            .ok()?;
    Some(
        show_field(&out, "Source")
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| pkg.to_string()),
    )
}

/// `apt-get -s install` of `pkgs` (a package or `package/suite`) with `opts`.
fn simulate(opts: &[String], pkgs: &[String]) -> Result<Plan> {
    let mut cmd = install_command(opts, pkgs, true);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("simulating `apt-get install {}`", pkgs.join(" ")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        return Ok(parse_plan(&stdout));
    }
    let (names, lines) = parse_unmet(&stdout);
    if names.is_empty() {
        bail!(
            "`{}` failed ({}): {}",
            process::describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Plan {
        unresolved: Some((names, lines)),
        ..Plan::default()
    })
}

/// apt options for the host's own sources plus `CODENAME-backports` on the same mirror, with
/// lists of their own in the cache (refreshed once per process) and the host's dpkg status:
/// a host whose backport came from a source it no longer lists gets that suite back for
/// this install only.
fn with_backports(codename: &str) -> Result<Vec<String>> {
    let files = host_source_files();
    let bpo = format!("{codename}-backports");
    let mut sources = private_sources(&files, codename, codename)?;
    sources.push_str(&private_sources(&files, codename, &bpo)?);
    let dir = cache::dir()?.join("apt").join("host-with-backports");
    let lists = dir.join("lists");
    let parts = dir.join("sources.list.d");
    for d in [lists.join("partial"), parts.clone()] {
        cache::create_dir(&d)?;
    }
    let list = dir.join("sources.list");
    std::fs::write(&list, &sources).with_context(|| format!("writing {}", list.display()))?;
    let opts = vec![
        "APT::Sandbox::User=root".to_string(),
        format!("Dir::Etc::SourceList={}", list.display()),
        format!("Dir::Etc::SourceParts={}", parts.display()),
        format!("Dir::State::Lists={}", lists.display()),
    ];
    refresh_once(&opts, &lists, &format!("host's and {bpo}"), &sources)?;
    Ok(opts)
}

/// `apt-get update` with `opts`, once per process for the lists in `lists`: stale lists may
/// name packages the mirror dropped, or miss new ones. `what` names them on the terminal,
/// `sources` in an error.
fn refresh_once(opts: &[String], lists: &Path, what: &str, sources: &str) -> Result<()> {
    let mut refreshed = REFRESHED.lock().unwrap_or_else(|e| e.into_inner());
    if refreshed.iter().any(|l| l == lists) {
        return Ok(());
    }
    // Short: a live line longer than the terminal wraps, and `\r` cannot redraw it.
    let step = progress::Step::start(format!(
        "setup: refreshing the {what} package lists (private)"
    ));
    process::output(apt_command("apt-get", opts).args(["-q", "update"])).with_context(|| {
        format!(
            "fetching the {what} package lists ({})",
            sources.trim().replace('\n', "; ")
        )
    })?;
    step.done("fresh");
    refreshed.push(lists.to_path_buf());
    Ok(())
}

/// What `plan_from_sources` found: a safe plan, or why there was none.
enum Found {
    Safe(Chosen),
    Refused(Refusal),
}

/// A safe plan from the sources `opts` name: the default one, else one from the suite a
/// package in the way was installed from.
fn plan_from_sources(opts: &[String], pkgs: &[String]) -> Result<Found> {
    let plan = simulate(opts, pkgs)?;
    if harms(&plan).is_empty() {
        return Ok(Found::Safe(Chosen {
            opts: opts.to_vec(),
            install: pkgs.to_vec(),
            suite: None,
            plan,
        }));
    }
    // What stands in the way: what the plan would remove, or what apt's unmet dependencies
    // name; the suite its installed version came from may have packages that fit it.
    let mut blockers: Vec<String> = plan.removes.iter().map(|(p, _)| p.clone()).collect();
    if let Some((names, _)) = &plan.unresolved {
        blockers.extend(names.iter().filter(|n| installed(n)).cloned());
        blockers.extend(names.iter().cloned());
    }
    let mut sources: Vec<String> = blockers.iter().filter_map(|b| source_of(opts, b)).collect();
    sources.sort();
    sources.dedup();
    let mut tried = Vec::new();
    for pkg in &blockers {
        if let Some(suite) = installed_suite(opts, pkg)
            && !tried.contains(&suite)
        {
            let install = pin_same_source(pkgs, &sources, &suite, |p| source_of(opts, p));
            let (install, alt) = plan_in_suite(opts, install, &suite)?;
            if harms(&alt).is_empty() {
                return Ok(Found::Safe(Chosen {
                    opts: opts.to_vec(),
                    install,
                    suite: Some(suite),
                    plan: alt,
                }));
            }
            tried.push(suite);
        }
    }
    let backport = blockers.iter().any(|pkg| {
        process::output(apt_command("apt-cache", opts).args(["policy", pkg]))
            .ok()
            .and_then(|out| {
                out.lines()
                    .find_map(|l| l.trim().strip_prefix("Installed:").map(str::to_string))
            })
            .is_some_and(|v| v.contains("~bpo"))
    });
    Ok(Found::Refused(Refusal {
        backport,
        sources,
        plan,
    }))
}

/// The error for a plan that would harm the host: what, why, and the commands that would
/// resolve it.
pub fn conflict_message(
    pkgs: &[String],
    harm: &[String],
    backport: bool,
    codename: &str,
) -> String {
    let suite_hint = if backport && !codename.is_empty() {
        format!(
            "install them from the suite the removed package came from (add {codename}-backports \
             to the apt sources, then `apt-get install -t {codename}-backports {}`)",
            pkgs.join(" ")
        )
    } else {
        "install versions that fit what is installed".to_string()
    };
    format!(
        "setup refused to install {}: apt would {}; nothing was installed. Either {suite_hint}, \
         or accept the change with `apt-get install {}`; then run setup again",
        pkgs.join(" "),
        harm.join(", "),
        pkgs.join(" ")
    )
}

/// The host's release codename, e.g. `bookworm`.
pub fn host_codename() -> Result<String> {
    let text = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| anyhow!("/etc/os-release names no VERSION_CODENAME: is this Debian?"))
}

/// One private apt configuration for one suite.
pub struct Apt {
    options: Vec<String>,
    name: String,
    /// The mirror's URI (from the host's sources), for files no index lists.
    mirror: String,
}

/// Private list directories refreshed by this process: each is fetched once per run.
static REFRESHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

impl Apt {
    /// The private configuration for `suite` in the cache (`<cache>/apt/<suite>`), refreshed.
    pub fn for_suite(cache_dir: &Path, suite: &str) -> Result<Apt> {
        Apt::private(&cache_dir.join("apt").join(suite), suite)
    }

    /// A private apt configuration in `dir` for `suite`, on the host's Debian mirror, with fresh
    /// package lists (fetched once per process) and an empty dpkg status of its own.
    pub fn private(dir: &Path, suite: &str) -> Result<Apt> {
        let files = host_source_files();
        let codename = host_codename()?;
        let sources = private_sources(&files, &codename, suite)?;
        let mirror = find_source(&files, &codename)
            .map(|s| s.uri)
            .unwrap_or_default();
        let lists = dir.join("lists");
        let parts = dir.join("sources.list.d");
        let cache_dir = dir.join("cache");
        for d in [
            lists.join("partial"),
            parts.clone(),
            cache_dir.join("archives").join("partial"),
        ] {
            cache::create_dir(&d)?;
        }
        // The host's installed versions would otherwise be candidates too (a newer host
        // package wins over the suite's own).
        let status = dir.join("status");
        std::fs::write(&status, "").with_context(|| format!("writing {}", status.display()))?;
        let list = dir.join("sources.list");
        std::fs::write(&list, &sources).with_context(|| format!("writing {}", list.display()))?;
        let path = |p: &PathBuf| p.display().to_string();
        let apt = Apt {
            options: vec![
                // The cache may sit where the _apt user cannot write (e.g. under /root).
                "APT::Sandbox::User=root".to_string(),
                format!("Dir::Etc::SourceList={}", path(&list)),
                format!("Dir::Etc::SourceParts={}", path(&parts)),
                format!("Dir::State::Lists={}", path(&lists)),
                format!("Dir::Cache={}", path(&cache_dir)),
                format!("Dir::State::status={}", path(&status)),
            ],
            name: format!("apt for {suite}"),
            mirror,
        };
        refresh_once(&apt.options, &lists, suite, &sources)?;
        Ok(apt)
    }

    fn command(&self, program: &str) -> Command {
        apt_command(program, &self.options)
    }

    /// The packages `pkg` depends on (alternatives included), as `apt-cache depends` lists them.
    pub fn depends(&self, pkg: &str) -> Result<Vec<String>> {
        let out = process::output(self.command("apt-cache").args(["depends", pkg]))
            .with_context(|| format!("resolving {pkg} with {}", self.name))?;
        Ok(parse_depends(&out))
    }

    /// The candidate version of `pkg` (what `download` would fetch).
    pub fn version(&self, pkg: &str) -> Result<String> {
        let out =
            process::output(
                self.command("apt-cache")
                    .args(["show", "--no-all-versions", pkg]),
            )
            .with_context(|| format!("looking up {pkg} with {}", self.name))?;
        out.lines()
            .find_map(|l| l.strip_prefix("Version:"))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| anyhow!("{} shows no version for {pkg}", self.name))
    }

    /// Names of the packages the lists know that start with `prefix`, sorted.
    pub fn pkgnames(&self, prefix: &str) -> Result<Vec<String>> {
        let out = process::output(self.command("apt-cache").args(["pkgnames", prefix]))
            .with_context(|| format!("listing {prefix}* with {}", self.name))?;
        let mut names: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
        names.retain(|n| !n.is_empty());
        names.sort();
        Ok(names)
    }

    /// One field (`Filename`, `Source`) of `pkg`'s candidate version.
    pub fn field(&self, pkg: &str, field: &str) -> Result<String> {
        let out =
            process::output(
                self.command("apt-cache")
                    .args(["show", "--no-all-versions", pkg]),
            )
            .with_context(|| format!("looking up {pkg} with {}", self.name))?;
        show_field(&out, field).ok_or_else(|| anyhow!("{} shows no {field} for {pkg}", self.name))
    }

    /// Downloads `files` from the mirror's `pool_dir` into `dir` with apt's own transport
    /// (`apt-helper download-file`). No index lists them, so nothing is verified here: the
    /// caller checks what they hold.
    pub fn download_from_pool(&self, pool_dir: &str, files: &[String], dir: &Path) -> Result<()> {
        if self.mirror.is_empty() {
            bail!(
                "{} knows no mirror to fetch {} from",
                self.name,
                files.join(" ")
            );
        }
        cache::create_dir(dir)?;
        let step = progress::Step::start(format!(
            "setup: downloading {} file(s) from the mirror's {pool_dir}",
            files.len()
        ));
        for f in files {
            let uri = format!("{}/{pool_dir}/{f}", self.mirror.trim_end_matches('/'));
            process::output(
                Command::new("/usr/lib/apt/apt-helper")
                    .args(["download-file", &uri])
                    .arg(dir.join(f)),
            )
            .with_context(|| format!("downloading {uri}"))?;
        }
        step.done(&format!("done, {}", human_size(dir_bytes(dir))));
        Ok(())
    }

    /// Downloads `pkgs` and everything they depend on, as installing them on an empty
    /// system would (`apt-get install --download-only` against the private, empty dpkg
    /// status), into `dir`; recommends left out.
    pub fn download_closure(&self, pkgs: &[&str], dir: &Path) -> Result<()> {
        cache::create_dir(&dir.join("partial"))?;
        let step = progress::Step::start(format!(
            "setup: downloading {} and their dependencies",
            pkgs.join(" ")
        ));
        process::output(
            self.command("apt-get")
                .arg("-o")
                .arg(format!("Dir::Cache::archives={}", dir.display()))
                .args([
                    "-q",
                    "-y",
                    "--download-only",
                    "--no-install-recommends",
                    "install",
                ])
                .args(pkgs)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| format!("downloading {} with {}", pkgs.join(" "), self.name))?;
        step.done(&format!("done, {}", human_size(dir_bytes(dir))));
        Ok(())
    }

    /// The URLs `download` would fetch `pkgs` from, without fetching them: proves they exist
    /// in the signed indexes.
    pub fn uris(&self, pkgs: &[String]) -> Result<Vec<String>> {
        let out = process::output(
            self.command("apt-get")
                .args(["--print-uris", "download"])
                .args(pkgs),
        )
        .with_context(|| format!("locating {} with {}", pkgs.join(" "), self.name))?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|u| u.trim_matches('\'').to_string())
            .collect())
    }

    /// Downloads `pkgs` (verified against the signed indexes) into `dir`.
    pub fn download(&self, pkgs: &[String], dir: &Path) -> Result<()> {
        cache::create_dir(dir)?;
        let what = match pkgs {
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} and {} more", rest.len()),
            [] => return Ok(()),
        };
        let step = progress::Step::start(format!("setup: downloading {what}"));
        process::output(
            self.command("apt-get")
                // Files land in our cache dir, which the _apt user may not be able to write.
                .args(["-o", "APT::Sandbox::User=root", "download"])
                .args(pkgs)
                .current_dir(dir),
        )
        .with_context(|| format!("downloading {} with {}", pkgs.join(" "), self.name))?;
        step.done(&format!("done, {}", human_size(dir_bytes(dir))));
        Ok(())
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn human_size(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Unpacks every `.deb` in `debs` into `root`.
pub fn unpack_all(debs: &Path, root: &Path) -> Result<()> {
    cache::create_dir(root)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(debs)
        .with_context(|| format!("listing {}", debs.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    for deb in files {
        process::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))
            .with_context(|| format!("unpacking {}", deb.display()))?;
    }
    Ok(())
}

/// A field of the first stanza of `apt-cache show` output.
pub fn show_field(out: &str, field: &str) -> Option<String> {
    out.split("\n\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

/// Package names from `apt-cache depends` output: `Depends:` and `PreDepends:` lines, with
/// alternatives (`|Depends:`); virtual packages (`<name>`) are left out.
pub fn parse_depends(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('|');
            l.strip_prefix("Depends:")
                .or_else(|| l.strip_prefix("PreDepends:"))
        })
        .map(str::trim)
        .filter(|name| !name.starts_with('<'))
        .map(str::to_string)
        .collect()
}

/// Where the host fetches Debian's main archive from.
#[derive(Debug, PartialEq)]
pub struct Source {
    pub uri: String,
    pub signed_by: Option<String>,
}

/// The host's apt source files, (file name, text), sources.list first.
fn host_source_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".into(), text));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if (name.ends_with(".sources") || name.ends_with(".list"))
                && let Ok(text) = std::fs::read_to_string(&p)
            {
                files.push((name, text));
            }
        }
    }
    files
}

/// The sources.list of the private configuration for `suite`. The host's own suite gets
/// every source the host has for it (`suite`, `-updates`, `-security`: a point release's
/// kernels arrive through the last two first); another suite gets its main archive on the
/// mirror that serves the host's suite.
pub fn private_sources(files: &[(String, String)], host: &str, suite: &str) -> Result<String> {
    let line = |s: &Source, suite: &str| {
        let signed = s
            .signed_by
            .as_deref()
            .map(|k| format!(" [signed-by={k}]"))
            .unwrap_or_default();
        format!("deb{signed} {} {suite} main\n", s.uri)
    };
    let Some(main) = find_source(files, host) else {
        bail!(
            "found no apt source for suite {host} in /etc/apt/sources.list(.d): \
             the lab's package downloads reuse that mirror, so add one"
        );
    };
    if suite != host {
        return Ok(line(&main, suite));
    }
    let mut text = line(&main, suite);
    for extra in [format!("{suite}-updates"), format!("{suite}-security")] {
        if let Some(s) = find_source(files, &extra) {
            text.push_str(&line(&s, &extra));
        }
    }
    Ok(text)
}

/// The first enabled source serving exactly `codename` (`bookworm` is not `bookworm-updates`), from apt
/// source files in deb822 (`*.sources`) or one-line (`*.list`) format.
pub fn find_source(files: &[(String, String)], codename: &str) -> Option<Source> {
    for (name, text) in files {
        let found = if name.ends_with(".sources") {
            find_in_deb822(text, codename)
        } else {
            find_in_one_line(text, codename)
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn find_in_deb822(text: &str, codename: &str) -> Option<Source> {
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (!l.starts_with('#') && k.trim().eq_ignore_ascii_case(key))
                    .then(|| v.trim().to_string())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let suite = field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == codename));
        if enabled && deb && suite {
            let uri = field("URIs")?.split_whitespace().next()?.to_string();
            return Some(Source {
                uri,
                signed_by: field("Signed-By"),
            });
        }
    }
    None
}

fn find_in_one_line(text: &str, codename: &str) -> Option<Source> {
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let (opts, after) = opts.split_once(']')?;
            signed_by = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by=").map(str::to_string));
            rest = after.trim();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        if suite == codename {
            return Some(Source {
                uri: uri.to_string(),
                signed_by,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# http://example.org/old\nURIs: http://mirror.example/debian\n\
        Suites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n\
        Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";

    /// What bookworm's qemu-system-x86 did to a host with qemu-utils from bookworm-backports
    /// (`apt-get -s` output, trimmed), and a plan that only installs and upgrades.
    const REMOVES_BACKPORT: &str = "NOTE: This is only a simulation!\n\
        Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
        Inst perl-base [5.36.0-7+deb12u2] (5.36.0-7+deb12u4 Debian:12.15/oldstable [amd64])\n\
        Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])\n\
        Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])\n";

    #[test]
    fn a_plan_that_removes_a_package_is_refused_with_the_way_out() {
        let plan = parse_plan(REMOVES_BACKPORT);
        assert_eq!(
            plan.removes,
            [(
                "qemu-utils".to_string(),
                "1:10.0.2+ds-2+deb13u1~bpo12+1".to_string()
            )]
        );
        assert_eq!(plan.installs, 1);
        assert_eq!(
            plan.changes,
            [(
                "perl-base".to_string(),
                "5.36.0-7+deb12u2".to_string(),
                "5.36.0-7+deb12u4".to_string()
            )]
        );
        let harm = harms(&plan);
        assert_eq!(harm, ["remove qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1"]);
        let msg = conflict_message(&["qemu-system-x86".into()], &harm, true, "bookworm");
        assert!(msg.contains("remove qemu-utils"), "{msg}");
        assert!(
            msg.contains("apt-get install -t bookworm-backports qemu-system-x86"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
        // An upgrade is not harm; a downgrade is.
        let down = parse_plan(
            "Inst qemu-utils [1:10.0.2+ds-2~bpo12+1] (1:7.2+dfsg-7 Debian:12 [amd64])\n",
        );
        assert_eq!(harms(&down).len(), 1, "{down:?}");
        assert!(harms(&parse_plan("Inst a (1 D [all])\nConf a (1 D [all])\n")).is_empty());
    }

    /// Issue 28's host, simulated end to end without touching the host: the host's dpkg
    /// status with qemu-utils from bookworm-backports (and no QEMU system emulator), apt
    /// pointed at fresh lists for the host's suites plus backports. Installing
    /// qemu-system-x86 plainly would remove qemu-utils; setup's plan must come from
    /// backports instead and remove nothing. Ignored by default: it fetches package lists.
    /// Run: `cargo test -p xtask -- --ignored qemu_from_the_suite`.
    #[test]
    #[ignore = "fetches the host suite's and its backports' package lists"]
    fn qemu_from_the_suite_of_a_backported_qemu_utils() {
        let codename = host_codename().unwrap();
        let bpo = format!("{codename}-backports");
        let dir = cache::workspace_root().join("target").join("apt-bpo-test");
        let lists = dir.join("lists");
        cache::create_dir(&lists.join("partial")).unwrap();
        cache::create_dir(&dir.join("archives").join("partial")).unwrap();
        let files = host_source_files();
        let mut sources = private_sources(&files, &codename, &codename).unwrap();
        sources.push_str(&private_sources(&files, &codename, &bpo).unwrap());
        std::fs::write(dir.join("sources.list"), &sources).unwrap();
        let mut opts: Vec<String> = vec![
            "APT::Sandbox::User=root".into(),
            format!(
                "Dir::Etc::SourceList={}",
                dir.join("sources.list").display()
            ),
            "Dir::Etc::SourceParts=-".into(),
            format!("Dir::State::Lists={}", lists.display()),
            format!("Dir::Cache::archives={}", dir.join("archives").display()),
        ];
        let apt = apt_command;
        process::output(apt("apt-get", &opts).args(["-q", "update"])).unwrap();
        // The host's status without any QEMU, plus qemu-utils from backports, installed.
        let host = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
        let mut status: String = host
            .split("\n\n")
            .filter(|st| {
                !st.lines().any(|l| {
                    l.strip_prefix("Package: ")
                        .is_some_and(|p| p.starts_with("qemu-"))
                })
            })
            .map(|st| format!("{}\n\n", st.trim_end()))
            .collect();
        let show =
            process::output(apt("apt-cache", &opts).args(["show", &format!("qemu-utils/{bpo}")]))
                .unwrap();
        let stanza = show.split("\n\n").next().unwrap();
        status.push_str(&stanza.replacen(
            "Package: qemu-utils\n",
            "Package: qemu-utils\nStatus: install ok installed\n",
            1,
        ));
        status.push_str("\n\n");
        std::fs::write(dir.join("status"), status).unwrap();
        opts.push(format!(
            "Dir::State::status={}",
            dir.join("status").display()
        ));

        let pkgs = vec!["qemu-system-x86".to_string()];
        // The plain plan removes qemu-utils (as on issue 28's host, where apt had it as
        // automatically installed) or finds none (apt keeps a manually installed one).
        let plain = install_command(&opts, &pkgs, true).output().unwrap();
        let text = String::from_utf8_lossy(&plain.stdout);
        let blocked = if plain.status.success() {
            parse_plan(&text)
                .removes
                .iter()
                .any(|(p, _)| p == "qemu-utils")
        } else {
            parse_unmet(&text).0.iter().any(|p| p == "qemu-utils")
        };
        assert!(
            blocked,
            "the plain plan does not conflict with qemu-utils: {text}"
        );
        assert_eq!(
            installed_suite(&opts, "qemu-utils").as_deref(),
            Some(bpo.as_str())
        );
        let Found::Safe(Chosen {
            suite,
            plan,
            install,
            ..
        }) = plan_from_sources(&opts, &pkgs).unwrap()
        else {
            panic!("no safe plan from the backport's own suite");
        };
        assert_eq!(suite.as_deref(), Some(bpo.as_str()));
        assert!(
            install.contains(&format!("qemu-system-x86/{bpo}")),
            "{install:?}"
        );
        assert!(plan.removes.is_empty(), "{plan:?}");
        assert!(harms(&plan).is_empty(), "{plan:?}");
    }

    /// Only the packages built from the blocker's source move to its suite: `-t SUITE` took
    /// every package the backports had (libbpf 1.4, elfutils 0.192), and the floor's static
    /// link against libelf.a then failed (zstd, libeu).
    #[test]
    fn only_the_blockers_source_moves_to_its_suite() {
        let pkgs: Vec<String> = ["qemu-system-x86", "libelf-dev", "libbpf-dev", "cpio"]
            .map(String::from)
            .to_vec();
        let source = |p: &str| {
            Some(match p {
                "qemu-system-x86" => "qemu".to_string(),
                "libelf-dev" => "elfutils".to_string(),
                other => other.to_string(),
            })
        };
        let got = pin_same_source(&pkgs, &["qemu".to_string()], "bookworm-backports", source);
        assert_eq!(
            got,
            [
                "qemu-system-x86/bookworm-backports",
                "libelf-dev",
                "libbpf-dev",
                "cpio"
            ]
        );
    }

    /// bookworm-backports' qemu-system-x86 10.0.2 named alone (2026-12-07): its
    /// dependencies stay at bookworm's versions, so apt finds no plan until they are named
    /// from backports too. Recommends are not installed (`--no-install-recommends`).
    #[test]
    fn dependencies_that_want_the_suites_version() {
        let out = "The following packages have unmet dependencies:\n \
            qemu-system-x86 : Depends: qemu-system-common (= 1:10.0.2+ds-2+deb13u1~bpo12+1) but it is not going to be installed\n   \
                Depends: qemu-system-data (> 1:10.0.2+ds~) but 1:7.2+dfsg-7+deb12u18 is to be installed\n   \
                Depends: seabios (> 1.16.3-1~) but 1.16.2-1 is to be installed\n   \
                Recommends: ovmf but it is not going to be installed\n \
            qemu-utils : Breaks: qemu-system-common (< 1:8.0~) but 1:7.2 is to be installed\n \
            a : PreDepends: b (>= 2) but 1 is to be installed\n\
            E: Unable to correct problems, you have held broken packages.\n";
        let (names, text) = parse_unmet(out);
        assert_eq!(names, ["qemu-system-x86", "qemu-utils", "a"]);
        assert_eq!(
            unmet_dependencies(&text),
            ["qemu-system-common", "qemu-system-data", "seabios", "b"]
        );
        let policy = "seabios:\n  Installed: (none)\n  Candidate: 1.16.2-1\n  Version table:\n     \
            1.16.3-2~bpo12+1 100\n        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages\n     \
            1.16.2-1 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n";
        assert!(policy_has_suite(policy, "bookworm-backports"));
        assert!(policy_has_suite(policy, "bookworm"));
        assert!(!policy_has_suite(policy, "trixie-backports"));
        assert!(!policy_has_suite(
            "x:\n  Version table:\n *** 1 100\n        100 /var/lib/dpkg/status\n",
            "bookworm-backports"
        ));
    }

    #[test]
    fn unmet_dependencies_name_what_stands_in_the_way() {
        let out = "Reading package lists...\nSome packages could not be installed.\n\
            The following packages have unmet dependencies:\n \
            qemu-utils : Breaks: qemu-system-common (< 1:8.0+dfsg-5~) but 1:7.2+dfsg-7+deb12u18+b3 is to be installed\n\
            E: Error, pkgProblemResolver::Resolve generated breaks\n";
        let (names, lines) = parse_unmet(out);
        assert_eq!(names, ["qemu-utils"]);
        assert!(lines.starts_with("qemu-utils : Breaks:"), "{lines}");
        let plan = Plan {
            unresolved: Some((names, lines)),
            ..Plan::default()
        };
        assert_eq!(harms(&plan).len(), 1);
    }

    #[test]
    fn the_suite_of_the_installed_version() {
        let policy = "qemu-utils:\n  Installed: 1:10.0.2+ds-2+deb13u1~bpo12+1\n  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1\n  Version table:\n \
            *** 1:10.0.2+ds-2+deb13u1~bpo12+1 100\n        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages\n        100 /var/lib/dpkg/status\n     \
            1:7.2+dfsg-7+deb12u18+b3 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n";
        assert_eq!(
            suite_of_installed(policy).as_deref(),
            Some("bookworm-backports")
        );
        // Installed from a downloaded .deb: only dpkg's status knows it.
        let local = "qemu-utils:\n  Installed: 1:10\n  Version table:\n *** 1:10 100\n        100 /var/lib/dpkg/status\n     1:7.2 500\n        500 http://m/debian bookworm/main amd64 Packages\n";
        assert_eq!(suite_of_installed(local), None);
        // dpkg's status line before the archive's: skipped, not taken for the end.
        let status_first = "x:\n  Version table:\n *** 2~bpo12+1 100\n        100 /var/lib/dpkg/status\n        \
            100 http://m/debian bookworm-backports/main amd64 Packages\n";
        assert_eq!(
            suite_of_installed(status_first).as_deref(),
            Some("bookworm-backports")
        );
    }

    #[test]
    fn deb822_source_for_the_codename() {
        let files = vec![("debian.sources".to_string(), DEB822.to_string())];
        let s = find_source(&files, "bookworm").unwrap();
        assert_eq!(s.uri, "http://mirror.example/debian");
        assert_eq!(s.signed_by.as_deref(), Some("/usr/share/keyrings/k.gpg"));
        assert_eq!(find_source(&files, "trixie"), None);
    }

    #[test]
    fn one_line_source_skips_security_and_other_suites() {
        let text = "# comment\ndeb http://sec.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        let files = vec![("sources.list".to_string(), text.to_string())];
        let s = find_source(&files, "bookworm").unwrap();
        assert_eq!(
            s,
            Source {
                uri: "http://m.example/debian".into(),
                signed_by: Some("/k.gpg".into())
            }
        );
    }

    #[test]
    fn the_host_suite_gets_updates_and_security_another_suite_only_main() {
        let files = vec![("debian.sources".to_string(), DEB822.to_string())];
        let host = private_sources(&files, "bookworm", "bookworm").unwrap();
        assert_eq!(
            host,
            "deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bookworm main\n\
             deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bookworm-updates main\n\
             deb http://mirror.example/debian-security bookworm-security main\n"
        );
        let other = private_sources(&files, "bookworm", "bullseye").unwrap();
        assert_eq!(
            other,
            "deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bullseye main\n"
        );
        assert!(private_sources(&files, "trixie", "trixie").is_err());
    }

    #[test]
    fn disabled_deb822_stanza_is_ignored() {
        let text = "Types: deb\nEnabled: no\nURIs: http://a.example/\nSuites: bookworm\n";
        let files = vec![("x.sources".to_string(), text.to_string())];
        assert_eq!(find_source(&files, "bookworm"), None);
    }

    #[test]
    fn a_field_of_the_first_stanza() {
        let out = "Package: linux-image-6.18.15+deb13-amd64\nSource: linux-signed-amd64 (6.18.15+1~bpo13+1)\n\
                   Filename: pool/main/l/linux-signed-amd64/a.deb\nDescription: x\n\n\
                   Package: other\nFilename: pool/b.deb\n";
        assert_eq!(
            show_field(out, "Filename").as_deref(),
            Some("pool/main/l/linux-signed-amd64/a.deb")
        );
        assert_eq!(show_field(out, "Depends"), None);
        assert_eq!(
            show_field("Package: p\n\nFilename: pool/b.deb\n", "Filename"),
            None
        );
    }

    #[test]
    fn depends_lists_alternatives_but_not_virtual_packages() {
        let out = "linux-headers-6.12.117+deb12-amd64\n  Depends: linux-base\n  \
                   Depends: linux-headers-6.12.117+deb12-common\n |Depends: linux-image-6.12.117+deb12-amd64\n  \
                   Depends: <linux-initramfs-tool>\n    dracut\n  Conflicts: foo\n";
        assert_eq!(
            parse_depends(out),
            vec![
                "linux-base",
                "linux-headers-6.12.117+deb12-common",
                "linux-image-6.12.117+deb12-amd64"
            ]
        );
    }
}
