//! A toolchain root for kernels whose headers the host cannot build against: 6.18's and 7.x's
//! kbuild wants gcc 14 (`-fmin-function-alignment`) and its modpost, objtool and
//! resolve_btfids want glibc 2.38, newer than a bookworm host's. The root is that suite's
//! own compiler, make, pahole and a shell, from Debian packages unpacked without root
//! (private apt, `dpkg-deb -x`, no maintainer scripts); builds run inside it through an
//! unprivileged user and mount namespace and chroot (`command`), the host untouched.
//! Setup fetches one only for a kernel that names it (kernels.rs `build_root`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cache;
use crate::setup::apt;

/// What building out-of-tree modules needs: the compiler Debian's trixie kernels are built
/// with (their headers' .kernelvariables name `gcc-14`), make, kbuild's libraries (libelf,
/// libssl, zlib), pahole for module BTF, and a shell with the tools kbuild's recipes call.
const PACKAGES: &[&str] = &[
    "gcc-14",
    "make",
    "libelf1t64",
    "libssl3t64",
    "zlib1g",
    "pahole",
    "base-files",
    "dash",
    "bash",
    "coreutils",
    "sed",
    "grep",
    "mawk",
    "findutils",
    "diffutils",
    "xz-utils",
    "kmod",
];

fn tree(cache_dir: &Path, suite: &str) -> PathBuf {
    cache_dir.join("buildroot").join(suite)
}

/// Where the root for `suite` is (or will be).
pub fn root(cache_dir: &Path, suite: &str) -> PathBuf {
    tree(cache_dir, suite).join("root")
}

/// Makes sure the root for `suite` is in the cache; true when it had to be made.
pub fn ensure(cache_dir: &Path, suite: &str) -> Result<bool> {
    let dir = tree(cache_dir, suite);
    if cache::stamp(&dir).is_some() {
        return Ok(false);
    }
    if !namespaces_work() {
        bail!(
            "building modules for the {suite} kernels needs unprivileged user namespaces \
             (`unshare -r -m true` failed): enable them (sysctl user.max_user_namespaces > 0)"
        );
    }
    let started = std::time::Instant::now();
    println!("setup: {suite} toolchain root (gcc, make, pahole) for building modules");
    cache::remove_dir(&dir)?;
    let apt = apt::Apt::for_suite(cache_dir, suite)?;
    let debs = dir.join("debs");
    apt.download_closure(PACKAGES, &debs)?;
    let root = dir.join("root");
    apt::unpack_all(&debs, &root)?;
    let links = alternatives(&root)?;
    for (link, target) in &links {
        let path = root.join(link);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path)
            .with_context(|| format!("linking {} -> {target}", path.display()))?;
    }
    for d in ["dev", "proc", "tmp"] {
        cache::create_dir(&root.join(d))?;
    }
    let count = std::fs::read_dir(&debs).map(|d| d.count()).unwrap_or(0);
    cache::remove_dir(&debs)?;
    // Proves the root runs: its compiler, through the same path builds take.
    let out = crate::process::output(command(&root, &[], "gcc").arg("--version"))
        .with_context(|| format!("running gcc inside {}", root.display()))?;
    let version = out.lines().next().unwrap_or_default().to_string();
    cache::write_stamp(&dir, &format!("suite={suite}\ngcc={version}\n"))?;
    println!(
        "setup: {suite} toolchain root ready: {count} packages, {version}, in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// The links maintainer scripts would have made that kbuild needs: `awk`, and `gcc`/`cc`
/// for the newest versioned compiler in usr/bin.
fn alternatives(root: &Path) -> Result<Vec<(String, String)>> {
    let bin = root.join("usr/bin");
    let names: Vec<String> = std::fs::read_dir(&bin)
        .with_context(|| format!("listing {}", bin.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    plan_links(&names)
}

/// From the names in usr/bin: (link, target) pairs for `awk` and `gcc`/`cc`.
pub fn plan_links(names: &[String]) -> Result<Vec<(String, String)>> {
    let gcc = names
        .iter()
        .filter_map(|n| {
            let v: u32 = n.strip_prefix("x86_64-linux-gnu-gcc-")?.parse().ok()?;
            Some((v, n))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, n)| n.clone());
    let Some(gcc) = gcc else {
        bail!("the toolchain root has no x86_64-linux-gnu-gcc-NN in usr/bin");
    };
    let mut links = vec![
        ("usr/bin/gcc".to_string(), gcc.clone()),
        ("usr/bin/cc".to_string(), gcc),
    ];
    if !names.iter().any(|n| n == "awk") && names.iter().any(|n| n == "mawk") {
        links.push(("usr/bin/awk".into(), "mawk".into()));
    }
    Ok(links)
}

/// True when this host lets an ordinary process make a user and mount namespace.
fn namespaces_work() -> bool {
    crate::process::succeeds(Command::new("unshare").args(["-r", "-m", "true"]))
}

/// What runs inside the root: mounts /dev, /proc, a fresh /tmp and each of `binds` at its own
/// path, then execs the program with a clean environment.
const ENTER: &str = r#"set -e
root=$1; shift
for d in dev proc; do mount --rbind "/$d" "$root/$d"; done
mount -t tmpfs tmpfs "$root/tmp"
while [ "$1" != -- ]; do mkdir -p "$root$1"; mount --rbind "$1" "$root$1"; shift; done
shift
exec chroot "$root" /usr/bin/env -i PATH=/usr/bin:/usr/sbin HOME=/tmp LANG=C.UTF-8 "$@"
"#;

/// `program` (found on the root's PATH) run inside `root`, ready for its arguments, with
/// each of `binds` (absolute host directories) visible at the same path, so paths in
/// arguments need no translation. An unprivileged user and mount namespace (`unshare -r
/// -m`): the mounts are the namespace's own and vanish with it; as root it is the same.
pub fn command(root: &Path, binds: &[&Path], program: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-r",
        "-m",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        ENTER,
    ])
    .arg("sh")
    .arg(root);
    for b in binds {
        cmd.arg(b);
    }
    cmd.arg("--").arg(program);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcc_and_cc_name_the_newest_versioned_compiler_and_awk_is_mawk() {
        let names: Vec<String> = [
            "x86_64-linux-gnu-gcc-13",
            "x86_64-linux-gnu-gcc-14",
            "x86_64-linux-gnu-gcc-ar-14",
            "mawk",
            "make",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let links = plan_links(&names).unwrap();
        assert_eq!(
            links,
            [
                (
                    "usr/bin/gcc".to_string(),
                    "x86_64-linux-gnu-gcc-14".to_string()
                ),
                ("usr/bin/cc".into(), "x86_64-linux-gnu-gcc-14".into()),
                ("usr/bin/awk".into(), "mawk".into()),
            ]
        );
        assert!(plan_links(&["make".to_string()]).is_err());
    }

    #[test]
    fn binds_come_before_the_program_and_its_arguments() {
        let mut cmd = command(
            Path::new("/r"),
            &[Path::new("/a"), Path::new("/b c")],
            "make",
        );
        cmd.arg("-C").arg("/a/h");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = args.iter().position(|a| a == "sh").unwrap();
        assert_eq!(
            args[at..],
            ["sh", "/r", "/a", "/b c", "--", "make", "-C", "/a/h"]
        );
        assert_eq!(cmd.get_program(), "unshare");
    }
}
