//! Kernel modules of a lab kernel: decompressing them (busybox cannot load compressed modules),
//! indexing them with depmod, and resolving the closure a guest needs from modules.dep.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::process;

/// Decompresses every `.ko.xz` / `.ko.zst` under `dir` in place; returns how many.
pub fn decompress(dir: &Path) -> Result<usize> {
    let mut xz = Vec::new();
    let mut zst = Vec::new();
    collect(dir, &mut xz, &mut zst)?;
    let total = xz.len() + zst.len();
    let mut done = 0;
    for chunk in xz.chunks(400) {
        process::run(Command::new("xz").args(["-d", "-f", "-q"]).args(chunk))
            .context("decompressing .ko.xz modules")?;
        done += chunk.len();
        counter(done, total);
    }
    for chunk in zst.chunks(400) {
        process::run(
            Command::new("zstd")
                .args(["-d", "-f", "-q", "--rm"])
                .args(chunk),
        )
        .context("decompressing .ko.zst modules")?;
        done += chunk.len();
        counter(done, total);
    }
    if total > 0 && crate::progress::live() {
        println!();
    }
    Ok(total)
}

/// A live count on a terminal; nothing in a log (the caller prints the total).
fn counter(done: usize, total: usize) {
    if crate::progress::live() {
        print!("\r  decompressed {done}/{total} modules");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
}

fn collect(dir: &Path, xz: &mut Vec<PathBuf>, zst: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(&path, xz, zst)?;
        } else if kind.is_file() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".ko.xz") {
                xz.push(path);
            } else if name.ends_with(".ko.zst") {
                zst.push(path);
            }
        }
    }
    Ok(())
}

/// Rebuilds modules.dep and friends for `release` under `root` (a tree with lib/modules/).
pub fn depmod(root: &Path, release: &str) -> Result<()> {
    process::run(Command::new("depmod").arg("-b").arg(root).arg(release))
        .with_context(|| format!("indexing the modules of {release} with depmod"))
}

/// The module name of a module file: basename without `.ko[.xz|.zst]`, `-` spelled `_`.
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    normalize(base)
}

/// Module names treat `-` and `_` alike; `_` is the canonical spelling.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// What a kernel has as loadable modules (from modules.dep) and built in (modules.builtin).
#[derive(Debug, Default)]
pub struct Index {
    /// name -> (path relative to lib/modules/<release>, names of direct dependencies)
    loadable: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl Index {
    pub fn load(modules_dir: &Path) -> Result<Index> {
        let read = |f: &str| {
            let p = modules_dir.join(f);
            std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "reading {}: is the kernel unpacked? run `cargo xtask setup`",
                    p.display()
                )
            })
        };
        Ok(Index::parse(
            &read("modules.dep")?,
            &read("modules.builtin").unwrap_or_default(),
        ))
    }

    pub fn parse(modules_dep: &str, modules_builtin: &str) -> Index {
        let mut index = Index::default();
        for line in modules_dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let deps = deps.split_whitespace().map(name_of).collect();
            index
                .loadable
                .insert(name_of(path), (path.trim().to_string(), deps));
        }
        index.builtin = modules_builtin
            .lines()
            .filter(|l| !l.is_empty())
            .map(name_of)
            .collect();
        index
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.loadable.contains_key(&normalize(name)) || self.is_builtin(name)
    }

    /// Paths (relative to lib/modules/<release>) of `names` and everything they depend on.
    /// Built-in names need nothing; an unknown name is an error.
    pub fn closure<S: AsRef<str>>(&self, names: &[S]) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<String> = names.iter().map(|n| normalize(n.as_ref())).collect();
        let mut seen = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            match self.loadable.get(&name) {
                Some((path, deps)) => {
                    out.insert(path.clone());
                    todo.extend(deps.iter().cloned());
                }
                None if self.builtin.contains(&name) => {}
                None => bail!("module {name} is neither loadable nor built into this kernel"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
        kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
        kernel/net/core/failover.ko:\n\
        kernel/drivers/net/dummy.ko:\n\
        kernel/net/8021q/8021q.ko: kernel/net/802/garp.ko\n\
        kernel/net/802/garp.ko:\n";

    #[test]
    fn names_from_paths() {
        assert_eq!(name_of("kernel/drivers/net/virtio_net.ko"), "virtio_net");
        assert_eq!(name_of("kernel/sound/snd-dummy.ko.xz"), "snd_dummy");
    }

    #[test]
    fn closure_follows_dependencies_and_skips_builtins() {
        let index = Index::parse(DEP, "kernel/drivers/virtio/virtio_pci.ko\n");
        let got = index
            .closure(&["virtio_net", "virtio-pci", "dummy"])
            .unwrap();
        let want: BTreeSet<String> = [
            "kernel/drivers/net/virtio_net.ko",
            "kernel/drivers/net/net_failover.ko",
            "kernel/net/core/failover.ko",
            "kernel/drivers/net/dummy.ko",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
        assert!(index.is_builtin("virtio_pci"));
        assert!(index.has("8021q"));
    }

    #[test]
    fn unknown_module_is_an_error() {
        let index = Index::parse(DEP, "");
        let err = index.closure(&["netkit"]).unwrap_err().to_string();
        assert!(err.contains("netkit"), "{err}");
    }
}
