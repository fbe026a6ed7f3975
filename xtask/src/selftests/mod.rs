//! `cargo xtask selftests`: the kernel's own netconsole selftests (issue #29) in the lab,
//! bare, with the tool attached (`watch`, both objects; the agent) and with `receive` as
//! their listener. The tests come from the lab kernel's `linux-source-<series>` package
//! (`source`), their userland from Debian (`userland`); the guest's driver is
//! lab/selftests/netcons.sh, run as a lab scenario, and its `NPT-SELFTEST` lines become a
//! table per kernel (`table`). Only the with-tool runs of tests that pass bare judge the
//! tool; a test failing bare is reported with its own output.

pub mod source;
pub mod table;
pub mod userland;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::lab::{self, console::Show, scenario};
use crate::setup::kernels;
use crate::{cache, process};

/// The kernel `cargo xtask test` runs the selftests on: the first lab kernel whose source
/// carries a netconsole selftest (netcons_basic.sh), all modes, about 40 s once fetched.
pub const CI_KERNEL: &str = "6.12";

/// The modes after `bare`, in the order the guest runs them (lab/selftests/netcons.sh).
pub const MODES: &[&str] = &["watch", "watch_legacy", "agent", "receive"];

pub struct Options {
    /// Kernel labels (`all`: every lab kernel).
    pub kernels: Vec<String>,
    /// Test names (`netcons_basic`); empty: every one the kernel has.
    pub tests: Vec<String>,
    /// Modes after bare; empty: all of MODES.
    pub modes: Vec<String>,
    pub live: bool,
    pub binary: Option<PathBuf>,
}

/// Runs the selftests on each kernel; Ok(true) when every with-tool run of a test that
/// passes bare passed (bare failures are reported, not judged).
pub fn run(opts: &Options) -> Result<bool> {
    let root = cache::workspace_root();
    let cache_dir = cache::dir()?;
    let labels: Vec<&str> = if opts.kernels.is_empty() || opts.kernels.iter().any(|k| k == "all") {
        kernels::labels()
    } else {
        opts.kernels.iter().map(String::as_str).collect()
    };
    for m in &opts.modes {
        if !MODES.contains(&m.as_str()) {
            bail!("unknown mode {m:?}: choose from {}", MODES.join(", "));
        }
    }
    let modes: Vec<&str> = match opts.modes.is_empty() {
        true => MODES.to_vec(),
        false => MODES
            .iter()
            .copied()
            .filter(|m| opts.modes.iter().any(|o| o == m))
            .collect(),
    };
    let mut all_ok = true;
    let mut tables = Vec::new();
    for label in labels {
        let spec = kernels::spec(label)?;
        let kernel = kernels::load(&cache_dir, spec)?;
        let Some(tests) = source::ensure(&cache_dir, spec, &kernel)? else {
            continue;
        };
        let chosen: Vec<String> = tests
            .tests
            .iter()
            .filter(|t| {
                opts.tests.is_empty() || opts.tests.iter().any(|n| *n == table::test_name(t))
            })
            .cloned()
            .collect();
        if chosen.is_empty() {
            println!(
                "selftests {label}: {} has no netconsole selftest{}",
                tests.package,
                if opts.tests.is_empty() {
                    ""
                } else {
                    " of those asked for"
                }
            );
            continue;
        }
        let files = userland::ensure(&cache_dir, userland::base_suite(spec.suite))?;
        let work = root.join("target").join("selftests").join(label);
        cache::create_dir(&work)?;
        let netdevsim = crate::build::kmod_for(&kernel, &tests.netdevsim, &work.join("kmod"))?;
        // Its dependencies (psample, ...) come from the kernel's own modules.
        let depends = process::output(
            Command::new("modinfo")
                .args(["-F", "depends"])
                .arg(&netdevsim),
        )?;
        let depends: Vec<String> = depends
            .trim()
            .split(',')
            .filter(|d| !d.is_empty())
            .map(String::from)
            .collect();
        let mut files = files;
        files.push((netdevsim, "opt/selftests/netdevsim.ko".into()));
        std::fs::write(work.join("netdevsim.depends"), depends.join(" ") + "\n")?;
        files.push((
            work.join("netdevsim.depends"),
            "opt/selftests/netdevsim.depends".into(),
        ));
        let tar = work.join("guest.tar");
        stage(&root, &work, &tests, &chosen, &modes, &files, &tar)?;
        let mut sc = scenario_for(&root, label, &chosen, &modes)?;
        sc.header.modules.extend(depends.iter().cloned());
        let ok = lab::run_scenarios(
            &lab::Options {
                kernels: vec![label.to_string()],
                scenarios: Vec::new(),
                keep_going: true,
                show: if opts.live {
                    Show::Everything
                } else {
                    Show::Nothing
                },
                binary: opts.binary.clone(),
            },
            std::slice::from_ref(&sc),
        )?;
        all_ok &= ok;
        let log = root.join("target/lab").join(label).join("selftests.log");
        let text =
            std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
        let rows = table::parse(&text);
        let checks = table::checks(&text);
        let t = table::render(
            label,
            &tests.package,
            &kernel.release,
            &rows,
            &checks,
            &modes,
        );
        std::fs::write(work.join("table.md"), &t)?;
        tables.push(t);
    }
    for t in &tables {
        println!("\n{t}");
    }
    Ok(all_ok)
}

/// The guest's tarball: the tests under /selftests (with TESTS and PACKAGE), the userland
/// under /opt/selftests/bin with its libraries, the `receive` shim as /opt/selftests/shim/socat.
fn stage(
    root: &Path,
    work: &Path,
    tests: &source::Selftests,
    chosen: &[String],
    modes: &[&str],
    files: &[(PathBuf, String)],
    tar: &Path,
) -> Result<()> {
    let stage = work.join("stage");
    cache::remove_dir(&stage)?;
    let copy = |from: &Path, to: &str| -> Result<()> {
        let dest = stage.join(to.trim_start_matches('/'));
        cache::create_dir(dest.parent().unwrap_or(&stage))?;
        std::fs::copy(from, &dest)
            .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        Ok(())
    };
    for (host, guest) in files {
        copy(host, guest)?;
    }
    copy(
        &root.join("lab/selftests/socat"),
        "opt/selftests/shim/socat",
    )?;
    // Found by PATH only when executable, whatever the checkout's mode.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        stage.join("opt/selftests/shim/socat"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let mut stack = vec![tests.root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&tests.root)?.display().to_string();
                copy(&p, &format!("selftests/{rel}"))?;
            }
        }
    }
    std::fs::write(
        stage.join("selftests/TESTS"),
        format!("{}\n", chosen.join("\n")),
    )?;
    std::fs::write(
        stage.join("selftests/PACKAGE"),
        format!("{}\n", tests.package),
    )?;
    std::fs::write(
        stage.join("selftests/MODES"),
        format!("{}\n", modes.join(" ")),
    )?;
    process::run(
        Command::new("tar")
            .arg("-cf")
            .arg(tar)
            .args(["--owner=0", "--group=0", "-C"])
            .arg(&stage)
            .arg("."),
    )
}

/// lab/selftests/netcons.sh as a scenario: the tarball, netdevsim, a timeout for the tests
/// chosen, and one check per test and mode after bare.
fn scenario_for(
    root: &Path,
    label: &str,
    tests: &[String],
    modes: &[&str],
) -> Result<scenario::Scenario> {
    let path = root.join("lab/selftests/netcons.sh");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut header = scenario::parse_header(&text)?;
    header.files.push(scenario::FileSpec {
        source: format!("target/selftests/{label}/guest.tar"),
        guest: "/selftests.tar".into(),
    });
    header.timeout_secs = tests
        .iter()
        .map(|t| table::budget_secs(t) * (1 + modes.len() as u64))
        .sum::<u64>()
        + 60;
    header.checks = tests
        .iter()
        .flat_map(|t| {
            modes
                .iter()
                .map(move |m| format!("{}_{m}", table::test_name(t)))
        })
        .collect();
    Ok(scenario::Scenario {
        name: "selftests".into(),
        path,
        header,
        runs: vec![None],
        explicit: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ci_kernel_is_a_lab_kernel() {
        assert!(kernels::spec(CI_KERNEL).is_ok());
    }
}
