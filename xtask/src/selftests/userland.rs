//! What the kernel's netconsole selftests need besides busybox: bash, socat, iproute2's `ip`,
//! udevadm (the scripts skip without it), GNU tools, jq for the `receive` shim; Debian's
//! packages of the kernel's own suite (a backports suite's base), with their dependency
//! closure, unpacked into the cache; for the guest, each binary, the shared objects it loads
//! (resolved by the suite's own loader against the unpacked tree) and that loader, as the
//! benchmark packs bpftrace (bench/bpftrace.rs).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::bench::bpftrace;
use crate::cache;
use crate::setup::apt;

/// (package, [(binary, name in the guest)]): each binary is looked for in the tree's bin and
/// sbin directories. The scripts are written for a Debian system: GNU `readlink -e`,
/// `mktemp -u TEMPLATE`, `pkill -f`, `find -delete`, which busybox lacks or spells otherwise.
pub const TOOLS: &[(&str, &[(&str, &str)])] = &[
    ("bash", &[("bash", "bash")]),
    ("socat", &[("socat", "socat")]),
    ("iproute2", &[("ip", "ip")]),
    ("udev", &[("udevadm", "udevadm")]),
    // The receive shim's JSON to netconsole's wire format; the guest driver's counts.
    ("jq", &[("jq", "jq")]),
    (
        "coreutils",
        &[
            ("basename", "basename"),
            ("cat", "cat"),
            ("cut", "cut"),
            ("date", "date"),
            ("dirname", "dirname"),
            ("echo", "echo"),
            ("env", "env"),
            ("head", "head"),
            ("id", "id"),
            ("ln", "ln"),
            ("ls", "ls"),
            ("mkdir", "mkdir"),
            ("mkfifo", "mkfifo"),
            ("mktemp", "mktemp"),
            ("printf", "printf"),
            ("readlink", "readlink"),
            ("rm", "rm"),
            ("rmdir", "rmdir"),
            ("seq", "seq"),
            ("sleep", "sleep"),
            ("sort", "sort"),
            ("tail", "tail"),
            ("tee", "tee"),
            ("timeout", "timeout"),
            ("tr", "tr"),
            ("uniq", "uniq"),
            ("wc", "wc"),
        ],
    ),
    ("findutils", &[("find", "find"), ("xargs", "xargs")]),
    ("grep", &[("grep", "grep")]),
    ("sed", &[("sed", "sed")]),
    ("mawk", &[("mawk", "awk")]),
    ("procps", &[("pkill", "pkill"), ("pgrep", "pgrep")]),
    ("util-linux", &[("taskset", "taskset")]),
    ("kmod", &[("kmod", "modinfo")]),
];

/// The suite whose userland goes with a kernel's: a backports suite's base.
pub fn base_suite(suite: &str) -> &str {
    suite.strip_suffix("-backports").unwrap_or(suite)
}

fn tree(cache_dir: &Path, suite: &str) -> PathBuf {
    cache_dir.join("guest").join(format!("selftests-{suite}"))
}

/// The unpacked tree for `suite` (fetched unless there) and the guest's files:
/// (host path, guest path) with binaries under `/opt/selftests/bin`.
pub fn ensure(cache_dir: &Path, suite: &str) -> Result<Vec<(PathBuf, String)>> {
    let dir = tree(cache_dir, suite);
    let root = dir.join("root");
    if cache::stamp(&dir).is_none() {
        println!(
            "selftests: userland for the guests from {suite} ({})",
            names().join(" ")
        );
        let apt = apt::Apt::for_suite(cache_dir, suite)?;
        let pin = format!("/{suite}");
        let mut packages = Vec::new();
        for (pkg, _) in TOOLS {
            for p in bpftrace::closure(&apt, pkg, &pin)? {
                if !packages.contains(&p) {
                    packages.push(p);
                }
            }
        }
        packages.sort();
        let pinned: Vec<String> = packages.iter().map(|p| format!("{p}{pin}")).collect();
        cache::remove_dir(&dir)?;
        let debs = dir.join("debs");
        apt.download(&pinned, &debs)?;
        apt::unpack_all(&debs, &root)?;
        cache::remove_dir(&debs)?;
        guest_files(&root)
            .with_context(|| format!("resolving the selftests' userland ({suite})"))?;
        cache::write_stamp(&dir, &format!("{}\n", packages.join(" ")))?;
    }
    guest_files(&root)
}

fn names() -> Vec<&'static str> {
    TOOLS.iter().map(|(p, _)| *p).collect()
}

fn find_binary(root: &Path, name: &str) -> Result<PathBuf> {
    for d in ["usr/bin", "bin", "usr/sbin", "sbin"] {
        let p = root.join(d).join(name);
        // Merged-/usr trees hold links; the file itself is what is packed.
        if let Ok(real) = std::fs::canonicalize(&p)
            && real.starts_with(root)
            && real.is_file()
        {
            return Ok(real);
        }
        if p.is_file() && !p.is_symlink() {
            return Ok(p);
        }
    }
    bail!("no {name} in {}", root.display())
}

fn guest_files(root: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (_, binaries) in TOOLS {
        for (file, name) in *binaries {
            let bin = find_binary(root, file)?;
            for (host, guest) in bpftrace::binary_with_libraries(root, &bin)? {
                let guest = if host == bin {
                    format!("opt/selftests/bin/{name}")
                } else {
                    guest
                };
                if !files.iter().any(|(_, g)| *g == guest) {
                    files.push((host, guest));
                }
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backports_take_their_base_suites_userland() {
        assert_eq!(base_suite("trixie-backports"), "trixie");
        assert_eq!(base_suite("bookworm"), "bookworm");
    }
}
