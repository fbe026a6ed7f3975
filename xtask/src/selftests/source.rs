//! The kernel's own netconsole selftests, from the lab kernel's `linux-source-<series>`
//! package of the same version: downloaded through the kernel's suite, and only the
//! `netcons*` scripts and the files they `source` (followed, not guessed) kept in the cache,
//! laid out as under `tools/testing/selftests/` (nothing of it is ever committed).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cache;
use crate::setup::apt;
use crate::setup::kernels::{self, Kernel};

/// Members of the source tarball worth unpacking (GNU tar wildcards, `*` crossing `/`):
/// every netcons* file, and the library directories they source from. What is kept is
/// then only the `source` closure of the netcons*.sh scripts.
const PATTERNS: &[&str] = &[
    "*/tools/testing/selftests/drivers/net/*netcons*",
    "*/tools/testing/selftests/drivers/net/lib/sh/*",
    "*/tools/testing/selftests/net/lib.sh",
    "*/tools/testing/selftests/net/net_helper.sh",
    "*/tools/testing/selftests/net/lib/sh/*",
    // Debian builds no netdevsim (CONFIG_NETDEVSIM is not set): the lab builds it from the
    // same source against the kernel's headers.
    "*/drivers/net/netdevsim/*",
];
const SELFTESTS: &str = "tools/testing/selftests";

/// The kept selftests of one kernel: `root` is their `tools/testing/selftests`.
pub struct Selftests {
    pub root: PathBuf,
    /// drivers/net/netdevsim of the same source, with a Kbuild building it as a module.
    pub netdevsim: PathBuf,
    /// The test scripts relative to `root` (`drivers/net/netconsole/netcons_basic.sh`).
    pub tests: Vec<String>,
    /// `linux-source-6.12 6.12.118-1~deb12u1`
    pub package: String,
}

/// `6.12` from `6.12.118+deb12-amd64`, `7.3` from `7.3.4+deb13-amd64`, `6.1` from `6.1.0-41-amd64`.
pub fn series(release: &str) -> Result<String> {
    let mut parts = release.split(['.', '-', '+']);
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) if a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok() => {
            Ok(format!("{a}.{b}"))
        }
        _ => bail!("cannot tell the kernel series of release {release:?}"),
    }
}

fn tree(cache_dir: &Path, label: &str) -> PathBuf {
    cache_dir.join("selftests").join(label)
}

/// The selftests of `kernel`, fetched into the cache unless there; None (said why) when the
/// suite's index has no source package of the kernel's exact version (6.18 in
/// trixie-backports: its image is indexed, its source is not).
pub fn ensure(
    cache_dir: &Path,
    spec: &kernels::Spec,
    kernel: &Kernel,
) -> Result<Option<Selftests>> {
    let dir = tree(cache_dir, kernel.label);
    let series = series(&kernel.release)?;
    let pkg = format!("linux-source-{series}");
    let (_, version) = kernel
        .packages
        .first()
        .ok_or_else(|| anyhow!("kernel {} records no package version", kernel.label))?;
    let want = format!("{pkg} {version}");
    let root = dir.join("root");
    if cache::stamp(&dir).is_some_and(|s| s.lines().next() == Some(&want))
        && dir.join("netdevsim/Kbuild").is_file()
    {
        return Ok(Some(Selftests {
            tests: tests_in(&root)?,
            root,
            netdevsim: dir.join("netdevsim"),
            package: want,
        }));
    }
    let apt = apt::Apt::for_suite(cache_dir, spec.suite)?;
    let exact = format!("{pkg}={version}");
    if apt.uris(std::slice::from_ref(&exact)).is_err() {
        println!(
            "selftests: kernel {}: no {want} in {}'s index: its selftests cannot be fetched",
            kernel.label, spec.suite
        );
        return Ok(None);
    }
    println!(
        "selftests: fetching {want} for kernel {} ({})",
        kernel.label, spec.suite
    );
    cache::remove_dir(&dir)?;
    let debs = dir.join("debs");
    apt.download(&[exact], &debs)?;
    let deb = std::fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| anyhow!("apt-get download left no .deb in {}", debs.display()))?;
    let unpacked = dir.join("unpacked");
    cache::create_dir(&unpacked)?;
    let step = crate::progress::Step::start(format!("selftests: unpacking netcons* from {pkg}"));
    unpack(&deb, &unpacked)?;
    step.done("done");
    let src = find_selftests(&unpacked)?;
    let tests = test_scripts(&src)?;
    if tests.is_empty() {
        println!("selftests: {want} has no netcons*.sh selftest");
    }
    let keep = closure(&src, &tests)?;
    for rel in &keep {
        let to = root.join(rel);
        cache::create_dir(to.parent().unwrap_or(&root))?;
        std::fs::copy(src.join(rel), &to)
            .with_context(|| format!("copying {} from {pkg}", rel.display()))?;
    }
    keep_netdevsim(&src, &dir.join("netdevsim"))?;
    cache::remove_dir(&unpacked)?;
    cache::remove_dir(&debs)?;
    let list: Vec<String> = keep.iter().map(|p| p.display().to_string()).collect();
    cache::write_stamp(&dir, &format!("{want}\n{}\n", list.join("\n")))?;
    Ok(Some(Selftests {
        tests: tests_in(&root)?,
        root,
        netdevsim: dir.join("netdevsim"),
        package: want,
    }))
}

/// The netdevsim sources (next to the selftests root: `../../../drivers/net/netdevsim`) into
/// `to`, with a Kbuild that builds them as a module whatever the kernel's config says.
fn keep_netdevsim(selftests: &Path, to: &Path) -> Result<()> {
    let from = selftests.join("../../../drivers/net/netdevsim");
    let makefile = std::fs::read_to_string(from.join("Makefile"))
        .context("the source package has no drivers/net/netdevsim/Makefile")?;
    cache::create_dir(to)?;
    for e in std::fs::read_dir(&from)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".c") || name.ends_with(".h") {
            std::fs::copy(e.path(), to.join(&name))?;
        }
    }
    std::fs::write(to.join("Kbuild"), kbuild(&makefile)?)?;
    Ok(())
}

/// netdevsim's Makefile with `obj-$(CONFIG_NETDEVSIM) += netdevsim.o` made `obj-m := netdevsim.o`.
pub fn kbuild(makefile: &str) -> Result<String> {
    let line = "obj-$(CONFIG_NETDEVSIM) += netdevsim.o";
    if !makefile.lines().any(|l| l.trim() == line) {
        bail!("netdevsim's Makefile has no `{line}` line: has its build changed?");
    }
    Ok(makefile
        .lines()
        .map(|l| {
            if l.trim() == line {
                "obj-m := netdevsim.o"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// dpkg-deb → the inner tarball → only PATTERNS, in one stream (the source tarball is never
/// written out). tar's "Not found in archive" for a pattern a kernel lacks is expected.
fn unpack(deb: &Path, into: &Path) -> Result<()> {
    let script = r#"set -o pipefail 2>/dev/null
deb=$1; into=$2; shift 2
dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './usr/src/linux-source-*.tar.*' |
    tar -xJ -C "$into" --wildcards "$@" 2>"$into/.tar-errors"
rc=$?
if [ $rc -ne 0 ] && grep -v 'Not found in archive\|Exiting with failure status' "$into/.tar-errors" >&2; then exit 1; fi
exit 0"#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg("unpack")
        .arg(deb)
        .arg(into)
        .args(PATTERNS);
    crate::process::run(&mut cmd).with_context(|| format!("unpacking {}", deb.display()))
}

fn find_selftests(unpacked: &Path) -> Result<PathBuf> {
    for e in std::fs::read_dir(unpacked)?.flatten() {
        let p = e.path().join(SELFTESTS);
        if p.is_dir() {
            return Ok(p);
        }
    }
    bail!(
        "no {SELFTESTS} in the source package (unpacked in {})",
        unpacked.display()
    )
}

/// netcons*.sh under drivers/net, relative to the selftests root, sorted.
fn test_scripts(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("drivers/net")];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = rel.join(&name);
            if e.file_type()?.is_dir() {
                stack.push(r);
            } else if name.starts_with("netcons") && name.ends_with(".sh") {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn tests_in(root: &Path) -> Result<Vec<String>> {
    Ok(test_scripts(root)?
        .into_iter()
        .map(|p| p.display().to_string())
        .collect())
}

/// The scripts and every file they `source`, transitively, relative to `root`. A sourced
/// file that is not there is an error naming it: a kernel that needs more must be seen.
fn closure(root: &Path, scripts: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut keep = BTreeSet::new();
    let mut queue: Vec<PathBuf> = scripts.to_vec();
    while let Some(rel) = queue.pop() {
        if !keep.insert(rel.clone()) {
            continue;
        }
        let text = std::fs::read_to_string(root.join(&rel))
            .with_context(|| format!("reading {}", rel.display()))?;
        let dir = rel.parent().unwrap_or(Path::new(""));
        for arg in sourced(&text) {
            let target = normalize(&dir.join(&arg))
                .ok_or_else(|| anyhow!("{} sources {arg}, outside the selftests", rel.display()))?;
            if !root.join(&target).is_file() {
                bail!(
                    "{} sources {} ({}), which was not unpacked: add it to the patterns in {}",
                    rel.display(),
                    arg,
                    target.display(),
                    file!()
                );
            }
            queue.push(target);
        }
    }
    Ok(keep)
}

/// The paths a script sources, relative to its own directory: `source "${SCRIPTDIR}"/../x.sh`,
/// `. "$net_dir/lib/sh/defer.sh"` (the scripts set every such variable to their own
/// directory, `dirname "$(readlink -e "${BASH_SOURCE[0]}")"`).
pub fn sourced(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix("source ").or_else(|| l.strip_prefix(". ")) else {
            continue;
        };
        let word: String = rest
            .split_whitespace()
            .next()
            .unwrap_or("")
            .replace('"', "");
        // A leading $VAR or ${VAR}: the script's directory.
        let Some(after) = word.strip_prefix('$') else {
            continue;
        };
        let after = match after.strip_prefix('{') {
            Some(a) => a.split_once('}').map(|(_, r)| r).unwrap_or(""),
            None => after.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_'),
        };
        if let Some(p) = after.strip_prefix('/') {
            out.push(p.to_string());
        }
    }
    out
}

/// `a/b/../c` → `a/c`; None when it climbs above the root.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netdevsim_built_as_a_module_whatever_the_config() {
        let k = kbuild("# x\nobj-$(CONFIG_NETDEVSIM) += netdevsim.o\n\nnetdevsim-objs := a.o\n")
            .unwrap();
        assert_eq!(k, "# x\nobj-m := netdevsim.o\n\nnetdevsim-objs := a.o\n");
        assert!(kbuild("obj-y += netdevsim.o\n").is_err());
    }

    #[test]
    fn series_of_debian_releases() {
        assert_eq!(series("6.12.118+deb12-amd64").unwrap(), "6.12");
        assert_eq!(series("7.3.4+deb13-amd64").unwrap(), "7.3");
        assert_eq!(series("6.1.0-41-amd64").unwrap(), "6.1");
        assert!(series("amd64").is_err());
    }

    #[test]
    fn sourced_files_of_both_layouts() {
        // 6.12's netcons_basic.sh, 7.3's lib_netcons.sh and net/lib.sh.
        let t = "source \"${SCRIPTDIR}\"/../../net/lib.sh\nsource \"${SCRIPTDIR}\"/../../net/net_helper.sh\n\
                 \tsource \"${LIBDIR}\"/../../../../net/lib.sh\nsource \"$net_dir/lib/sh/defer.sh\"\n\
                 # source nothing\necho source x\n";
        assert_eq!(
            sourced(t),
            vec![
                "../../net/lib.sh",
                "../../net/net_helper.sh",
                "../../../../net/lib.sh",
                "lib/sh/defer.sh"
            ]
        );
    }

    #[test]
    fn closure_follows_sources_and_refuses_a_missing_one() {
        let d = std::env::temp_dir().join(format!("npt-selftests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let w = |rel: &str, text: &str| {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "drivers/net/netconsole/netcons_basic.sh",
            "source \"${SCRIPTDIR}\"/../lib/sh/lib_netcons.sh\n",
        );
        w(
            "drivers/net/lib/sh/lib_netcons.sh",
            "source \"${LIBDIR}\"/../../../../net/lib.sh\n",
        );
        w("net/lib.sh", "source \"$net_dir/lib/sh/defer.sh\"\n");
        w("net/lib/sh/defer.sh", "true\n");
        w("net/unrelated.sh", "true\n");
        let scripts = test_scripts(&d).unwrap();
        assert_eq!(
            scripts,
            vec![PathBuf::from("drivers/net/netconsole/netcons_basic.sh")]
        );
        let keep: Vec<String> = closure(&d, &scripts)
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            keep,
            vec![
                "drivers/net/lib/sh/lib_netcons.sh",
                "drivers/net/netconsole/netcons_basic.sh",
                "net/lib/sh/defer.sh",
                "net/lib.sh"
            ]
        );
        std::fs::remove_file(d.join("net/lib/sh/defer.sh")).unwrap();
        let err = closure(&d, &scripts).unwrap_err().to_string();
        assert!(err.contains("net/lib/sh/defer.sh"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
