//! The lab's kernels: one table of their facts, fetching each into the cache (image, modules,
//! headers) and finding a fetched one again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{apt, cache, headers, modules};

/// One lab kernel, as Debian ships it.
pub struct Spec {
    /// What users type (`--kernel 6.1`) and scenarios name (`# kernels: 6.1`).
    pub label: &'static str,
    /// The Debian suite it comes from; a suite other than the host's gets a private apt setup.
    pub suite: &'static str,
    /// The metapackage that depends on the exact image package.
    pub metapackage: &'static str,
}

/// Every lab kernel. Adding one is a row here: `cargo xtask setup` fetches it (and bpftrace
/// for its suite), `cargo xtask lab` and `cargo xtask bench` run on it, and every scenario
/// without a `# kernels:` restriction runs on it. Scenarios branch on what they measure in
/// the guest (lib.sh's npt_has), never on the label.
pub const KERNELS: &[Spec] = &[
    Spec { label: "5.10", suite: "bullseye", metapackage: "linux-image-amd64" },
    Spec { label: "6.1", suite: "bookworm", metapackage: "linux-image-amd64" },
    Spec { label: "6.12", suite: "bookworm", metapackage: "linux-image-6.12-amd64" },
];

/// The Debian suites the lab kernels come from, each once, in table order.
pub fn suites() -> Vec<&'static str> {
    let mut suites: Vec<&'static str> = Vec::new();
    for k in KERNELS {
        if !suites.contains(&k.suite) {
            suites.push(k.suite);
        }
    }
    suites
}

/// Labels of every lab kernel, for messages and help.
pub fn labels() -> Vec<&'static str> {
    KERNELS.iter().map(|k| k.label).collect()
}

/// The table's last (newest) kernel: the default where one kernel is enough.
pub const NEWEST: &str = KERNELS[KERNELS.len() - 1].label;

/// clap's parser for `--kernel`: a label from the table (the help lists them), or `all`
/// when `all` is true.
pub fn label_parser(all: bool) -> clap::builder::PossibleValuesParser {
    let extra: &[&'static str] = if all { &["all"] } else { &[] };
    clap::builder::PossibleValuesParser::new(KERNELS.iter().map(|k| k.label).chain(extra.iter().copied()))
}

pub fn spec(label: &str) -> Result<&'static Spec> {
    KERNELS.iter().find(|k| k.label == label).ok_or_else(|| {
        anyhow!("unknown kernel {label:?}: choose one of {}", labels().join(", "))
    })
}

/// A kernel unpacked in the cache.
pub struct Kernel {
    pub label: &'static str,
    /// `uname -r`, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub root: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join("boot").join(format!("vmlinuz-{}", self.release))
    }
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
    pub fn headers_dir(&self) -> PathBuf {
        self.root.join("usr/src").join(format!("linux-headers-{}", self.release))
    }
}

fn tree(cache_dir: &Path, spec: &Spec) -> PathBuf {
    cache_dir.join("kernels").join(spec.label)
}

/// The kernel `spec` from the cache, or an error saying to run setup.
pub fn load(cache_dir: &Path, spec: &'static Spec) -> Result<Kernel> {
    let dir = tree(cache_dir, spec);
    let stamp = cache::stamp(&dir)
        .ok_or_else(|| anyhow!("kernel {} is not in the cache ({}): run `cargo xtask setup`", spec.label, dir.display()))?;
    let release = stamp
        .lines()
        .find_map(|l| l.strip_prefix("release="))
        .ok_or_else(|| anyhow!("{} has no release line: delete it and run `cargo xtask setup`", dir.display()))?;
    Ok(Kernel { label: spec.label, release: release.to_string(), root: dir.join("root") })
}

/// Makes sure `spec` is in the cache; returns it and whether it had to be fetched.
pub fn ensure(cache_dir: &Path, spec: &'static Spec, host_suite: &str) -> Result<(Kernel, bool)> {
    if let Ok(kernel) = load(cache_dir, spec) {
        return Ok((kernel, false));
    }
    let started = Instant::now();
    let dir = tree(cache_dir, spec);
    println!("setup: kernel {} ({} {})", spec.label, spec.suite, spec.metapackage);
    let apt = if spec.suite == host_suite {
        apt::Apt::host()
    } else {
        apt::Apt::private(&cache_dir.join("apt").join(spec.suite), spec.suite)?
    };
    let image = apt
        .depends(spec.metapackage)?
        .into_iter()
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| anyhow!("{} ({}) depends on no linux-image-* package", spec.metapackage, spec.suite))?;
    let release = image.trim_start_matches("linux-image-").to_string();
    let headers_pkg = format!("linux-headers-{release}");
    let mut packages = vec![image.clone(), headers_pkg.clone()];
    packages.extend(
        apt.depends(&headers_pkg)?
            .into_iter()
            .filter(|p| p.starts_with("linux-headers-") || p.starts_with("linux-kbuild-")),
    );
    packages.dedup();
    println!("  resolved {} -> {}", spec.metapackage, packages.join(" "));

    cache::remove_dir(&dir)?;
    let debs = dir.join("debs");
    apt.download(&packages, &debs)?;
    let root = dir.join("root");
    println!("  unpacking {} packages", packages.len());
    apt::unpack_all(&debs, &root)?;
    let kernel = Kernel { label: spec.label, release: release.clone(), root };
    if !kernel.vmlinuz().is_file() {
        bail!("{image} holds no {}: has Debian changed its layout?", kernel.vmlinuz().display());
    }
    let count = modules::decompress(&kernel.modules_dir())?;
    println!("  {count} modules decompressed; running depmod");
    modules::depmod(&kernel.root, &release)?;
    headers::fix_up(&kernel.root, &kernel.headers_dir()).context("making the kernel headers usable from the cache")?;
    println!("  building a test module against the headers");
    headers::verify(&kernel.headers_dir(), &dir).with_context(|| format!("kernel {} headers", spec.label))?;
    let mut files: Vec<String> = std::fs::read_dir(&debs)
        .with_context(|| format!("listing {}", debs.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    cache::remove_dir(&debs)?;
    cache::write_stamp(&dir, &format!("release={release}\ndebs={}\n", files.join(" ")))?;
    println!("setup: kernel {} ready: {release} in {:.0}s", spec.label, started.elapsed().as_secs_f64());
    Ok((kernel, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_suites_cover_every_kernel() {
        let labels = labels();
        for (i, l) in labels.iter().enumerate() {
            assert!(!labels[i + 1..].contains(l), "label {l} twice");
        }
        let suites = suites();
        assert!(KERNELS.iter().all(|k| suites.contains(&k.suite)));
        assert_eq!(suites.len(), KERNELS.iter().map(|k| k.suite).collect::<std::collections::BTreeSet<_>>().len());
        assert_eq!(NEWEST, KERNELS.last().unwrap().label);
    }
}
