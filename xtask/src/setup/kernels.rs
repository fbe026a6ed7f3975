//! The lab's kernels: one table of their facts, fetching each into the cache (image, modules,
//! headers) and finding a fetched one again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cache;
use crate::setup::{apt, headers, modules};

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
    Spec {
        label: "5.10",
        suite: "bullseye",
        metapackage: "linux-image-amd64",
    },
    Spec {
        label: "6.1",
        suite: "bookworm",
        metapackage: "linux-image-amd64",
    },
    Spec {
        label: "6.12",
        suite: "bookworm",
        metapackage: "linux-image-6.12-amd64",
    },
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
    clap::builder::PossibleValuesParser::new(
        KERNELS.iter().map(|k| k.label).chain(extra.iter().copied()),
    )
}

pub fn spec(label: &str) -> Result<&'static Spec> {
    KERNELS.iter().find(|k| k.label == label).ok_or_else(|| {
        anyhow!(
            "unknown kernel {label:?}: choose one of {}",
            labels().join(", ")
        )
    })
}

/// A kernel unpacked in the cache.
pub struct Kernel {
    pub label: &'static str,
    /// `uname -r`, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub root: PathBuf,
    /// The exact Debian packages it was unpacked from: (name, version), image first.
    pub packages: Vec<(String, String)>,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
    pub fn headers_dir(&self) -> PathBuf {
        self.root
            .join("usr/src")
            .join(format!("linux-headers-{}", self.release))
    }
    /// `linux-image-6.1.0-48-amd64 6.1.172-1`: the image package, what reports print.
    pub fn image_package(&self) -> String {
        self.packages
            .first()
            .map(|(n, v)| format!("{n} {v}"))
            .unwrap_or_else(|| format!("linux-image-{} (version not recorded)", self.release))
    }
}

fn tree(cache_dir: &Path, spec: &Spec) -> PathBuf {
    cache_dir.join("kernels").join(spec.label)
}

/// The kernel `spec` from the cache, or an error saying to run setup.
pub fn load(cache_dir: &Path, spec: &'static Spec) -> Result<Kernel> {
    let dir = tree(cache_dir, spec);
    let stamp = cache::stamp(&dir).ok_or_else(|| {
        anyhow!(
            "kernel {} is not in the cache ({}): run `cargo xtask setup`",
            spec.label,
            dir.display()
        )
    })?;
    let release = stamp
        .lines()
        .find_map(|l| l.strip_prefix("release="))
        .ok_or_else(|| {
            anyhow!(
                "{} has no release line: delete it and run `cargo xtask setup`",
                dir.display()
            )
        })?;
    Ok(Kernel {
        label: spec.label,
        release: release.to_string(),
        root: dir.join("root"),
        packages: stamp_packages(&stamp),
    })
}

/// The packages a stamp records: `packages=name=version ...`, or (stamps written before
/// that line existed) the `.deb` file names `name_version_arch.deb` of its `debs=` line.
/// The image package comes first.
pub fn stamp_packages(stamp: &str) -> Vec<(String, String)> {
    let mut pkgs: Vec<(String, String)> =
        match stamp.lines().find_map(|l| l.strip_prefix("packages=")) {
            Some(line) => line
                .split_whitespace()
                .filter_map(|p| {
                    p.split_once('=')
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                })
                .collect(),
            None => stamp
                .lines()
                .find_map(|l| l.strip_prefix("debs="))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|f| {
                    let mut parts = f.strip_suffix(".deb")?.splitn(3, '_');
                    // apt-get download escapes an epoch's colon as %3a.
                    Some((parts.next()?.to_string(), parts.next()?.replace("%3a", ":")))
                })
                .collect(),
        };
    pkgs.sort_by_key(|(n, _)| !n.starts_with("linux-image-"));
    pkgs
}

/// What the suite's (fresh) lists say `spec` is today: the exact packages, image first.
pub struct Resolved {
    pub release: String,
    pub packages: Vec<(String, String)>,
}

impl Resolved {
    pub fn names(&self) -> Vec<String> {
        self.packages.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// Resolves `spec`'s metapackage to the exact image, headers and kbuild packages, with versions.
pub fn resolve(apt: &apt::Apt, spec: &Spec) -> Result<Resolved> {
    let image = apt
        .depends(spec.metapackage)?
        .into_iter()
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| {
            anyhow!(
                "{} ({}) depends on no linux-image-* package",
                spec.metapackage,
                spec.suite
            )
        })?;
    let release = image.trim_start_matches("linux-image-").to_string();
    let headers_pkg = format!("linux-headers-{release}");
    let mut names = vec![image.clone(), headers_pkg.clone()];
    names.extend(
        apt.depends(&headers_pkg)?
            .into_iter()
            .filter(|p| p.starts_with("linux-headers-") || p.starts_with("linux-kbuild-")),
    );
    names.dedup();
    let packages = names
        .into_iter()
        .map(|n| apt.version(&n).map(|v| (n, v)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Resolved { release, packages })
}

/// `name version, name version`: how setup and the reports name packages.
pub fn describe(packages: &[(String, String)]) -> String {
    packages
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes sure `spec` is in the cache; returns it and whether it had to be fetched. A cached
/// kernel stays unless `refresh`, which moves it to the suite's newest point release.
pub fn ensure(cache_dir: &Path, spec: &'static Spec, refresh: bool) -> Result<(Kernel, bool)> {
    let cached = match load(cache_dir, spec).ok() {
        Some(kernel) if !refresh => return Ok((kernel, false)),
        other => other,
    };
    let apt = apt::Apt::for_suite(cache_dir, spec.suite)?;
    let resolved = resolve(&apt, spec)?;
    if let Some(kernel) = cached {
        if kernel.packages == resolved.packages {
            println!(
                "setup: kernel {} is the newest point release ({})",
                spec.label, kernel.release
            );
            return Ok((kernel, false));
        }
        println!(
            "setup: kernel {}: {} -> {} (--refresh)",
            spec.label,
            kernel.image_package(),
            describe(&resolved.packages[..1])
        );
    }
    let started = Instant::now();
    let dir = tree(cache_dir, spec);
    println!(
        "setup: kernel {} ({} {})",
        spec.label, spec.suite, spec.metapackage
    );
    let release = resolved.release.clone();
    println!(
        "  resolved {} -> {}",
        spec.metapackage,
        describe(&resolved.packages)
    );

    cache::remove_dir(&dir)?;
    let debs = dir.join("debs");
    apt.download(&resolved.names(), &debs)?;
    let root = dir.join("root");
    println!("  unpacking {} packages", resolved.packages.len());
    apt::unpack_all(&debs, &root)?;
    let kernel = Kernel {
        label: spec.label,
        release: release.clone(),
        root,
        packages: resolved.packages.clone(),
    };
    if !kernel.vmlinuz().is_file() {
        bail!(
            "{} holds no {}: has Debian changed its layout?",
            resolved.packages[0].0,
            kernel.vmlinuz().display()
        );
    }
    let count = modules::decompress(&kernel.modules_dir())?;
    println!("  {count} modules decompressed; running depmod");
    modules::depmod(&kernel.root, &release)?;
    headers::fix_up(&kernel.root, &kernel.headers_dir())
        .context("making the kernel headers usable from the cache")?;
    let step = crate::progress::Step::start(format!(
        "setup: kernel {}: building a test module against the headers",
        spec.label
    ));
    headers::verify(&kernel.headers_dir(), &dir)
        .with_context(|| format!("kernel {} headers", spec.label))?;
    step.done("built");
    let mut files: Vec<String> = std::fs::read_dir(&debs)
        .with_context(|| format!("listing {}", debs.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    cache::remove_dir(&debs)?;
    let packages: Vec<String> = resolved
        .packages
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    cache::write_stamp(
        &dir,
        &format!(
            "release={release}\ndebs={}\npackages={}\n",
            files.join(" "),
            packages.join(" ")
        ),
    )?;
    println!(
        "setup: kernel {} ready: {release} in {:.0}s",
        spec.label,
        started.elapsed().as_secs_f64()
    );
    Ok((kernel, true))
}

/// What a fresh machine would get: every lab kernel resolved against private apt lists
/// fetched into `dir` (empty at first), nothing downloaded but the lists; each package is
/// located on the mirror (`apt-get --print-uris download`). Prints one line per kernel with
/// its exact packages, and how that compares with the cache. Ok(false) when one does not
/// resolve.
pub fn resolve_fresh(dir: &Path, cache_dir: &Path) -> Result<bool> {
    cache::remove_dir(dir)?;
    let mut ok = true;
    for spec in KERNELS {
        let result = apt::Apt::private(&dir.join(spec.suite), spec.suite).and_then(|apt| {
            let r = resolve(&apt, spec)?;
            let uris = apt.uris(&r.names())?;
            if uris.len() != r.packages.len() {
                bail!(
                    "the mirror offers {} of the {} packages: {uris:?}",
                    uris.len(),
                    r.packages.len()
                );
            }
            Ok(r)
        });
        match result {
            Ok(r) => {
                let cached = match load(cache_dir, spec) {
                    Ok(k) if k.packages == r.packages => {
                        "the cached kernel is the same".to_string()
                    }
                    Ok(k) => format!(
                        "cached: {} (`cargo xtask setup --refresh` moves to it)",
                        k.image_package()
                    ),
                    Err(_) => "not cached yet".to_string(),
                };
                println!(
                    "resolve: kernel {} ({} {}): {}; {cached}",
                    spec.label,
                    spec.suite,
                    spec.metapackage,
                    describe(&r.packages)
                );
            }
            Err(e) => {
                println!(
                    "resolve: kernel {} ({} {}): FAIL {e:#}",
                    spec.label, spec.suite, spec.metapackage
                );
                ok = false;
            }
        }
    }
    Ok(ok)
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
        assert_eq!(
            suites.len(),
            KERNELS
                .iter()
                .map(|k| k.suite)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
        assert_eq!(NEWEST, KERNELS.last().unwrap().label);
    }

    #[test]
    fn stamps_name_their_packages_image_first() {
        let new = "release=6.1.0-48-amd64\ndebs=x.deb\npackages=linux-headers-6.1.0-48-amd64=6.1.172-1 linux-image-6.1.0-48-amd64=6.1.172-1\n";
        assert_eq!(
            stamp_packages(new),
            [
                (
                    "linux-image-6.1.0-48-amd64".to_string(),
                    "6.1.172-1".to_string()
                ),
                ("linux-headers-6.1.0-48-amd64".into(), "6.1.172-1".into())
            ]
        );
        // A stamp from before the packages line: read from the .deb names.
        let old = "release=6.12.117+deb12-amd64\ndebs=linux-headers-6.12.117+deb12-amd64_6.12.117-1~deb12u1_amd64.deb \
                   linux-image-6.12.117+deb12-amd64_6.12.117-1~deb12u1_amd64.deb foo_1%3a2.0_all.deb\n";
        let p = stamp_packages(old);
        assert_eq!(
            p[0],
            (
                "linux-image-6.12.117+deb12-amd64".to_string(),
                "6.12.117-1~deb12u1".to_string()
            )
        );
        assert!(
            p.contains(&("foo".to_string(), "1:2.0".to_string())),
            "{p:?}"
        );
    }
}
