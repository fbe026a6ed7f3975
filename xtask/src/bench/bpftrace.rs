//! bpftrace for the benchmark guests: Debian's package and its library closure, downloaded
//! per userland suite of the lab kernels (kernels::userland_suites: a backports kernel's
//! base release) and unpacked into the cache; at bench
//! time the binary, the shared objects it loads (resolved by the suite's own dynamic loader,
//! `ld.so --list`, against the unpacked tree) and that loader are packed where a Debian
//! system keeps them, so the unmodified binary runs in the otherwise static guest.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::setup::apt;
use crate::{cache, process};

const MULTIARCH: &str = "x86_64-linux-gnu";
const LOADER: &str = "ld-linux-x86-64.so.2";

fn tree(cache_dir: &Path, suite: &str) -> PathBuf {
    cache_dir.join("guest").join(format!("bpftrace-{suite}"))
}

/// The unpacked tree (its `root/`) for `suite`, or an error saying to run setup.
pub fn root(cache_dir: &Path, suite: &str) -> Result<PathBuf> {
    let dir = tree(cache_dir, suite);
    if cache::stamp(&dir).is_none() {
        bail!(
            "bpftrace for {suite} is not in the cache ({}): run `cargo xtask setup`",
            dir.display()
        );
    }
    Ok(dir.join("root"))
}

/// Downloads and unpacks bpftrace with its dependency closure for every suite a lab kernel
/// comes from, unless present; returns what it fetched.
pub fn ensure(cache_dir: &Path) -> Result<Vec<String>> {
    let mut fetched = Vec::new();
    for suite in &crate::setup::kernels::userland_suites() {
        if root(cache_dir, suite).is_ok() {
            continue;
        }
        println!("setup: bpftrace for {suite} (benchmark comparison)");
        let apt = apt::Apt::for_suite(cache_dir, suite)?;
        // Name the suite's own versions (`pkg/suite`), whatever else apt might see.
        let pin = format!("/{suite}");
        let packages = closure(&apt, "bpftrace", &pin)?;
        println!("  {} packages: {}", packages.len(), packages.join(" "));
        let pinned: Vec<String> = packages.iter().map(|p| format!("{p}{pin}")).collect();
        let dir = tree(cache_dir, suite);
        cache::remove_dir(&dir)?;
        let debs = dir.join("debs");
        apt.download(&pinned, &debs)?;
        let root = dir.join("root");
        apt::unpack_all(&debs, &root)?;
        if !root.join("usr/bin/bpftrace").is_file() {
            bail!("bpftrace ({suite}) holds no /usr/bin/bpftrace: has Debian changed its layout?");
        }
        // Fails now, not in the guest, when a library is missing from the closure.
        let files = guest_files(&root)
            .with_context(|| format!("resolving bpftrace's libraries ({suite})"))?;
        cache::remove_dir(&debs)?;
        cache::write_stamp(&dir, &format!("{}\n", packages.join(" ")))?;
        println!(
            "  bpftrace ({suite}) ready: {} files for the guest",
            files.len()
        );
        fetched.push(format!("bpftrace ({suite})"));
    }
    Ok(fetched)
}

/// `pkg` and everything it depends on, recursively (alternatives included, virtual packages
/// left out), sorted; `pin` (`/suite` or empty) is appended to every name asked about.
pub(crate) fn closure(apt: &apt::Apt, pkg: &str, pin: &str) -> Result<Vec<String>> {
    let mut seen = BTreeSet::from([pkg.to_string()]);
    let mut queue = VecDeque::from([pkg.to_string()]);
    while let Some(p) = queue.pop_front() {
        for dep in apt.depends(&format!("{p}{pin}"))? {
            if seen.insert(dep.clone()) {
                queue.push_back(dep);
            }
        }
    }
    Ok(seen.into_iter().collect())
}

/// (host path, guest path) of bpftrace, every shared object it loads and the dynamic loader,
/// resolved against the unpacked tree `root`.
pub fn guest_files(root: &Path) -> Result<Vec<(PathBuf, String)>> {
    binary_with_libraries(root, &root.join("usr/bin/bpftrace"))
}

/// (host path, guest path) of `binary` (packed at its place in the tree), every shared
/// object it loads and the dynamic loader, resolved against the unpacked tree `root`.
pub fn binary_with_libraries(root: &Path, binary: &Path) -> Result<Vec<(PathBuf, String)>> {
    let loader = find_in_tree(root, LOADER)?;
    // systemd's private directory: trixie's udevadm finds libsystemd-shared there by RUNPATH
    // (packed, like every library, where the guest's loader looks by default).
    let lib_dirs = [
        format!("lib/{MULTIARCH}"),
        format!("usr/lib/{MULTIARCH}"),
        format!("usr/lib/{MULTIARCH}/systemd"),
    ];
    let library_path = lib_dirs
        .iter()
        .map(|d| root.join(d).display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let out = process::output(
        Command::new(&loader)
            .arg("--library-path")
            .arg(&library_path)
            .arg("--list")
            .arg(binary),
    )?;
    let in_tree = binary
        .strip_prefix(root)
        .with_context(|| format!("{} is outside {}", binary.display(), root.display()))?
        .display()
        .to_string();
    let mut files = vec![
        (binary.to_path_buf(), in_tree),
        (loader, format!("lib64/{LOADER}")),
    ];
    for (soname, path) in parse_list(&out)? {
        let path = PathBuf::from(path);
        if !path.starts_with(root) {
            bail!(
                "{soname} resolved outside the unpacked tree ({}): the package closure lacks it",
                path.display()
            );
        }
        files.push((path, format!("lib/{MULTIARCH}/{soname}")));
    }
    Ok(files)
}

/// The loader, whichever of the multiarch directories holds it, with relative symlinks
/// resolved inside the tree (bookworm's /lib64 link is absolute and would leave it).
fn find_in_tree(root: &Path, name: &str) -> Result<PathBuf> {
    for dir in [format!("lib/{MULTIARCH}"), format!("usr/lib/{MULTIARCH}")] {
        let mut p = root.join(&dir).join(name);
        for _ in 0..8 {
            match std::fs::read_link(&p) {
                Ok(target) if target.is_relative() => p = p.parent().unwrap_or(root).join(target),
                Ok(target) => p = root.join(target.strip_prefix("/").unwrap_or(&target)),
                Err(_) => break,
            }
        }
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(anyhow!("no {name} in {}", root.display()))
}

/// `soname => path` pairs from `ld.so --list`; an unresolved library is an error.
fn parse_list(out: &str) -> Result<Vec<(String, String)>> {
    let mut libs = Vec::new();
    for line in out.lines().map(str::trim) {
        let Some((soname, rest)) = line.split_once(" => ") else {
            continue;
        };
        let path = rest.split(" (").next().unwrap_or("").trim();
        if path.is_empty() || path == "not found" {
            bail!("{soname} not found");
        }
        libs.push((soname.to_string(), path.to_string()));
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_output_parsed_and_missing_library_refused() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibbcc.so.0 => /c/root/usr/lib/x86_64-linux-gnu/libbcc.so.0 (0x7f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_list(out).unwrap(),
            vec![(
                "libbcc.so.0".to_string(),
                "/c/root/usr/lib/x86_64-linux-gnu/libbcc.so.0".to_string()
            )]
        );
        assert!(parse_list("\tlibz3.so.4 => not found\n").is_err());
    }
}
