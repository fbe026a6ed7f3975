//! The lab's kernels: one table of their facts, fetching each into the cache (image, modules,
//! headers) and finding a fetched one again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::setup::{apt, buildroot, headers, modules};
use crate::{cache, process};

/// One lab kernel, as Debian ships it.
pub struct Spec {
    /// What users type (`--kernel 6.1`) and scenarios name (`# kernels: 6.1`).
    pub label: &'static str,
    /// The Debian suite it comes from; a suite other than the host's gets a private apt setup.
    pub suite: &'static str,
    /// Which image package: a metapackage's, or the newest of a series.
    pub image: Image,
    /// None: the kernel is in `all` (`cargo xtask test`, `lab`'s and `bench`'s default).
    /// Some(why): it runs only when named (`--kernel LABEL`), for this reason.
    pub opt_in: Option<&'static str>,
    /// None: its modules build with the host's gcc and make. Some(suite): its headers need a
    /// newer compiler and glibc than the host's (6.18's and 7.x's kbuild want gcc 14 and glibc
    /// 2.38), so they build inside that suite's toolchain root (setup/buildroot.rs), which
    /// setup fetches only for such a kernel.
    pub build_root: Option<&'static str>,
    /// How a guest that panics on purpose (`# ends: panic`) ends.
    pub panic: PanicEnd,
}

/// How a lab kernel's image package is chosen from its suite's lists.
pub enum Image {
    /// The exact image a metapackage depends on (`linux-image-amd64`).
    Metapackage(&'static str),
    /// The newest `linux-image-SERIES.N+debNN-amd64` (Debian has no metapackage for an
    /// older series in backports: 6.18 beside the newest 7.x).
    Series(&'static str),
}

impl Image {
    /// How setup and resolve-kernels name it.
    pub fn describe(&self) -> String {
        match self {
            Image::Metapackage(m) => m.to_string(),
            Image::Series(s) => format!("linux-image-{s}.N+debNN-amd64 (newest N)"),
        }
    }
}

/// How the lab ends a guest whose scenario panics the kernel on purpose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PanicEnd {
    /// `panic=-1` with QEMU's `-no-reboot`: the kernel reboots at once and QEMU exits. Its
    /// netconsole is a legacy console, written synchronously before that.
    Reboot,
    /// `panic=0`: the kernel stops after `---[ end Kernel panic`, and the runner ends QEMU on
    /// that line. From 7.x netconsole is an nbcon console marked unsafe for atomic printing
    /// (CON_NBCON_ATOMIC_UNSAFE), which panic() flushes only at its very end, after the
    /// reboot branch: with `panic=-1` (or any timeout) not one line of the panic reaches a
    /// receiver (measured on 7.3.4; 6.18 is still legacy).
    Halt,
}

impl PanicEnd {
    /// The kernel command-line word for a scenario that panics on purpose.
    pub fn cmdline(self) -> &'static str {
        match self {
            PanicEnd::Reboot => "panic=-1",
            PanicEnd::Halt => "panic=0",
        }
    }

    /// The console line after which the guest is done.
    pub fn last_line(self) -> &'static str {
        match self {
            PanicEnd::Reboot => "Kernel panic - not syncing",
            PanicEnd::Halt => "---[ end Kernel panic",
        }
    }
}

/// Every lab kernel. Adding one is a row here: `cargo xtask setup` fetches it (and bpftrace
/// for its suite), `cargo xtask lab` and `cargo xtask bench` run on it, and every scenario
/// without a `# kernels:` restriction runs on it. Scenarios branch on what they measure in
/// the guest (lib.sh's npt_has), never on the label.
pub const KERNELS: &[Spec] = &[
    Spec {
        label: "5.10",
        suite: "bullseye",
        image: Image::Metapackage("linux-image-amd64"),
        opt_in: None,
        build_root: None,
        panic: PanicEnd::Reboot,
    },
    Spec {
        label: "6.1",
        suite: "bookworm",
        image: Image::Metapackage("linux-image-amd64"),
        opt_in: None,
        build_root: None,
        panic: PanicEnd::Reboot,
    },
    Spec {
        label: "6.12",
        suite: "bookworm",
        image: Image::Metapackage("linux-image-6.12-amd64"),
        opt_in: None,
        build_root: None,
        panic: PanicEnd::Reboot,
    },
    // The LTS after 6.12. trixie-backports indexes its image but not its headers: those
    // come from the mirror's pool, checked against the image's own BTF (see resolve).
    Spec {
        label: "6.18",
        suite: "trixie-backports",
        image: Image::Series("6.18"),
        opt_in: None,
        build_root: Some("trixie"),
        panic: PanicEnd::Reboot,
    },
    // The newest kernel: split packages (image -> binary, modules, base), netconsole owns
    // netpoll's set-up and UDP send, struct netpoll lost the target's addresses.
    Spec {
        label: "7.3",
        suite: "trixie-backports",
        image: Image::Metapackage("linux-image-amd64"),
        opt_in: None,
        build_root: Some("trixie"),
        panic: PanicEnd::Halt,
    },
];

/// The kernels `all` means: every row without an opt-in reason, in table order.
pub fn all() -> Vec<&'static Spec> {
    KERNELS.iter().filter(|k| k.opt_in.is_none()).collect()
}

/// Labels of every lab kernel, for messages and help.
pub fn labels() -> Vec<&'static str> {
    KERNELS.iter().map(|k| k.label).collect()
}

/// The newest kernel in `all`: the default where one kernel is enough (demo, the quick bench).
pub const NEWEST: &str = newest_in_all();

const fn newest_in_all() -> &'static str {
    let mut i = KERNELS.len();
    while i > 0 {
        i -= 1;
        if KERNELS[i].opt_in.is_none() {
            return KERNELS[i].label;
        }
    }
    panic!("every lab kernel is opt-in: `all` would be empty")
}

/// clap's parser for `--kernel`: a label from the table (the help lists them), or `all`
/// when `all` is true.
pub fn label_parser(all: bool) -> clap::builder::PossibleValuesParser {
    let extra: &[&'static str] = if all { &["all"] } else { &[] };
    clap::builder::PossibleValuesParser::new(
        KERNELS.iter().map(|k| k.label).chain(extra.iter().copied()),
    )
}

/// The kernels `--kernel` values name: `all` (or nothing) is `all()`, a label its row, an
/// opt-in one included; each once, in the order given.
pub fn choose(labels: &[String]) -> Result<Vec<&'static Spec>> {
    let mut out: Vec<&'static Spec> = Vec::new();
    let wanted: Vec<&str> = match labels.is_empty() {
        true => vec!["all"],
        false => labels.iter().map(String::as_str).collect(),
    };
    for l in wanted {
        let specs = match l {
            "all" => all(),
            l => vec![spec(l)?],
        };
        for s in specs {
            if !out.iter().any(|o| o.label == s.label) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The suite whose userland goes with a kernel's suite (a backports kernel runs on its base
/// release): where bpftrace for the guests and the toolchain root come from.
pub fn userland(suite: &str) -> &str {
    suite.strip_suffix("-backports").unwrap_or(suite)
}

/// The userland suites of the lab kernels, each once, in table order.
pub fn userland_suites() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in KERNELS {
        let u = userland(k.suite);
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

/// The toolchain roots the lab kernels need, each once.
pub fn build_roots() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in KERNELS {
        if let Some(r) = k.build_root
            && !out.contains(&r)
        {
            out.push(r);
        }
    }
    out
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
    pub spec: &'static Spec,
    /// `uname -r`, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub root: PathBuf,
    /// The exact Debian packages it was unpacked from: (name, version), image first.
    pub packages: Vec<(String, String)>,
    /// The toolchain root its modules build in (`spec.build_root`), None: the host's.
    pub build_root: Option<PathBuf>,
}

impl Kernel {
    /// The bootable image: /boot/vmlinuz-RELEASE, or (Debian's linux-binary packages from
    /// 7.2 on) /usr/lib/modules/RELEASE/vmlinuz.
    pub fn vmlinuz(&self) -> PathBuf {
        find_vmlinuz(&self.root, &self.release)
    }
    /// lib/modules/RELEASE: a real directory (bullseye, bookworm) or, for merged-/usr
    /// packages (trixie on), reached through the `lib -> usr/lib` link setup makes.
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
    /// `make`, ready for arguments, that builds against this kernel's headers: the host's, or
    /// inside the kernel's toolchain root with `extra` directories (a build directory)
    /// visible at their own paths beside the kernel tree.
    pub fn make(&self, extra: &[&Path]) -> std::process::Command {
        match &self.build_root {
            None => std::process::Command::new("make"),
            Some(root) => {
                let tree = self.root.parent().unwrap_or(&self.root);
                let mut binds = vec![tree];
                binds.extend_from_slice(extra);
                buildroot::command(root, &binds, "make")
            }
        }
    }
}

/// Where an unpacked kernel keeps its image: /boot first, else /usr/lib/modules/RELEASE
/// (the layout of Debian's linux-binary packages from 7.2; 7.1's still used /boot). What
/// exists decides, never the version; the /boot path when neither does (for the message).
pub fn find_vmlinuz(root: &Path, release: &str) -> PathBuf {
    let boot = root.join("boot").join(format!("vmlinuz-{release}"));
    let usr = root.join("usr/lib/modules").join(release).join("vmlinuz");
    if !boot.is_file() && usr.is_file() {
        usr
    } else {
        boot
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
        spec,
        release: release.to_string(),
        root: dir.join("root"),
        packages: stamp_packages(&stamp),
        build_root: spec
            .build_root
            .map(|suite| buildroot::root(cache_dir, suite)),
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
    /// Those of `packages` that no index lists (6.18's headers in trixie-backports): fetched
    /// by file name from `pool_dir` on the mirror, and trusted only once their vmlinux's BTF
    /// equals the signed image's.
    pub from_pool: Vec<String>,
    /// The mirror directory they are in, e.g. `pool/main/l/linux`.
    pub pool_dir: String,
}

impl Resolved {
    /// The packages apt fetches (and verifies against the signed indexes).
    pub fn names(&self) -> Vec<String> {
        self.packages
            .iter()
            .filter(|(n, _)| !self.from_pool.contains(n))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The pool's file names of `from_pool`, as Debian names them (no epoch).
    pub fn pool_files(&self) -> Vec<String> {
        self.packages
            .iter()
            .filter(|(n, _)| self.from_pool.contains(n))
            .map(|(n, v)| {
                let arch = if n.ends_with("-common") {
                    "all"
                } else {
                    "amd64"
                };
                let v = v.split_once(':').map_or(v.as_str(), |(_, v)| v);
                format!("{n}_{v}_{arch}.deb")
            })
            .collect()
    }
}

/// The Debian source package that builds the headers and kbuild packages (the image comes
/// from linux-signed-amd64).
const HEADERS_SOURCE: &str = "linux";

/// Resolves `spec`'s image to the exact image, its split parts, headers and kbuild packages,
/// with versions.
pub fn resolve(apt: &apt::Apt, spec: &Spec) -> Result<Resolved> {
    let image = match spec.image {
        Image::Metapackage(meta) => apt
            .depends(meta)?
            .into_iter()
            .find(|p| p.starts_with("linux-image-"))
            .ok_or_else(|| {
                anyhow!(
                    "{meta} ({}) depends on no linux-image-* package",
                    spec.suite
                )
            })?,
        Image::Series(series) => {
            let names = apt.pkgnames(&format!("linux-image-{series}."))?;
            newest_in_series(&names, series).ok_or_else(|| {
                anyhow!(
                    "{} lists no linux-image-{series}.N+debNN-amd64 (it has: {})",
                    spec.suite,
                    names.join(" ")
                )
            })?
        }
    };
    let release = image.trim_start_matches("linux-image-").to_string();
    let version = apt.version(&image)?;
    let mut packages = vec![(image.clone(), version.clone())];
    // 7.x: the image is a small package; vmlinuz, the modules and System.map/config/
    // modules.builtin come in the parts it depends on. A part the index does not know is
    // left out (6.18's image names a linux-base-6.18.15+deb13-amd64 no index has; its image
    // holds all of that itself).
    for part in split_parts(&release, &apt.depends(&image)?) {
        if let Ok(v) = apt.version(&part) {
            packages.push((part, v));
        }
    }
    let headers_pkg = format!("linux-headers-{release}");
    let mut from_pool = Vec::new();
    let mut pool_dir = String::new();
    match apt.version(&headers_pkg) {
        Ok(v) => {
            packages.push((headers_pkg.clone(), v));
            for dep in apt.depends(&headers_pkg)? {
                if (dep.starts_with("linux-headers-") || dep.starts_with("linux-kbuild-"))
                    && !packages.iter().any(|(n, _)| *n == dep)
                {
                    let v = apt.version(&dep)?;
                    packages.push((dep, v));
                }
            }
        }
        Err(_) => {
            // Not indexed: the same version's packages from the source's pool directory.
            pool_dir = pool_dir_of(&apt.field(&image, "Filename")?, HEADERS_SOURCE)?;
            for name in pool_headers(&release) {
                from_pool.push(name.clone());
                packages.push((name, version.clone()));
            }
        }
    }
    Ok(Resolved {
        release,
        packages,
        from_pool,
        pool_dir,
    })
}

/// The newest `linux-image-SERIES.N+debNN-amd64` among `names` (by N); the -cloud, -rt,
/// -dbg and -unsigned variants do not count.
pub fn newest_in_series(names: &[String], series: &str) -> Option<String> {
    let prefix = format!("linux-image-{series}.");
    names
        .iter()
        .filter_map(|n| {
            let rest = n.strip_prefix(&prefix)?;
            let (point, abi) = rest.split_once('+')?;
            let point: u32 = point.parse().ok()?;
            let deb = abi.strip_prefix("deb")?.strip_suffix("-amd64")?;
            (!deb.is_empty() && deb.chars().all(|c| c.is_ascii_digit())).then_some((point, n))
        })
        .max_by_key(|(point, _)| *point)
        .map(|(_, n)| n.clone())
}

/// Of an image's dependencies, the packages that carry the kernel's own parts (Debian's
/// split from 6.19 on): `linux-binary-`, `linux-modules-`, `linux-base-RELEASE`.
pub fn split_parts(release: &str, depends: &[String]) -> Vec<String> {
    let wanted = ["linux-binary", "linux-modules", "linux-base"].map(|p| format!("{p}-{release}"));
    let mut out: Vec<String> = Vec::new();
    for d in depends {
        if wanted.contains(d) && !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// The headers packages of `release` as the source package names them: the flavour's
/// headers, the common headers and kbuild (ABI = the release without `-amd64`).
pub fn pool_headers(release: &str) -> Vec<String> {
    let abi = release.strip_suffix("-amd64").unwrap_or(release);
    vec![
        format!("linux-headers-{release}"),
        format!("linux-headers-{abi}-common"),
        format!("linux-kbuild-{abi}"),
    ]
}

/// The pool directory of `source` in the component of a package whose `Filename` is
/// `filename` (`pool/main/l/linux-signed-amd64/x.deb`, linux -> `pool/main/l/linux`):
/// Debian's layout, lib* sources under four letters.
pub fn pool_dir_of(filename: &str, source: &str) -> Result<String> {
    let mut parts = filename.split('/');
    let (Some("pool"), Some(component)) = (parts.next(), parts.next()) else {
        bail!("{filename:?} is not a pool path");
    };
    let letter = if source.starts_with("lib") && source.len() > 3 {
        &source[..4]
    } else {
        &source[..1]
    };
    Ok(format!("pool/{component}/{letter}/{source}"))
}

/// The `.BTF` section of an ELF image, if any.
fn btf_section(elf: &[u8]) -> Option<Vec<u8>> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(elf).ok()?;
    Some(file.section_by_name(".BTF")?.data().ok()?.to_vec())
}

/// Headers from the pool are in no signed index: accept them only when the BTF in their
/// vmlinux is the BTF of the (signed, indexed) image's own vmlinux, byte for byte.
fn check_pool_headers(kernel: &Kernel) -> Result<()> {
    let image = std::fs::read(kernel.vmlinuz())
        .with_context(|| format!("reading {}", kernel.vmlinuz().display()))?;
    let vmlinux = crate::build::kmod::decompress_vmlinux(&image)
        .with_context(|| format!("no vmlinux in {}", kernel.vmlinuz().display()))?;
    let path = kernel.headers_dir().join("vmlinux");
    let headers = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    same_btf(&vmlinux, &headers).with_context(|| {
        format!(
            "refusing the pool's headers: {} against {}",
            path.display(),
            kernel.vmlinuz().display()
        )
    })
}

/// Ok when both ELF images carry the same, non-empty `.BTF` section.
fn same_btf(image_vmlinux: &[u8], headers_vmlinux: &[u8]) -> Result<()> {
    let want =
        btf_section(image_vmlinux).ok_or_else(|| anyhow!("the image's vmlinux has no .BTF"))?;
    match btf_section(headers_vmlinux) {
        Some(got) if got == want && !got.is_empty() => Ok(()),
        Some(_) => bail!("the headers' vmlinux carries other BTF than the image's"),
        None => bail!("the headers' vmlinux has no .BTF"),
    }
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
        spec.label,
        spec.suite,
        spec.image.describe()
    );
    let release = resolved.release.clone();
    println!(
        "  resolved {} -> {}",
        spec.image.describe(),
        describe(&resolved.packages)
    );

    cache::remove_dir(&dir)?;
    let debs = dir.join("debs");
    apt.download(&resolved.names(), &debs)?;
    if !resolved.from_pool.is_empty() {
        println!(
            "  headers: {} is in no {} index; fetching {} from the mirror's {} (unsigned: \
             checked against the image's BTF once unpacked)",
            resolved.from_pool[0],
            spec.suite,
            resolved.from_pool.join(", "),
            resolved.pool_dir
        );
        apt.download_from_pool(&resolved.pool_dir, &resolved.pool_files(), &debs)?;
    }
    let root = dir.join("root");
    println!("  unpacking {} packages", resolved.packages.len());
    apt::unpack_all(&debs, &root)?;
    merge_usr(&root)?;
    let kernel = Kernel {
        label: spec.label,
        spec,
        release: release.clone(),
        root,
        packages: resolved.packages.clone(),
        build_root: spec
            .build_root
            .map(|suite| buildroot::root(cache_dir, suite)),
    };
    if !kernel.vmlinuz().is_file() {
        bail!(
            "{} holds no {} (nor usr/lib/modules/{release}/vmlinuz): has Debian changed its layout?",
            describe(&resolved.packages),
            kernel.vmlinuz().display()
        );
    }
    if !resolved.from_pool.is_empty() {
        check_pool_headers(&kernel)?;
        println!("  headers from the pool: their vmlinux BTF is the image's");
    }
    let count = modules::decompress(&kernel.modules_dir())?;
    println!("  {count} modules decompressed; running depmod");
    modules::depmod(&kernel.root, &release)?;
    let exists = |program: &str| match &kernel.build_root {
        None => process::on_path(program),
        Some(r) => r.join("usr/bin").join(program).exists(),
    };
    headers::fix_up(&kernel.root, &kernel.headers_dir(), exists)
        .context("making the kernel headers usable from the cache")?;
    let step = crate::progress::Step::start(format!(
        "setup: kernel {}: building a test module against the headers",
        spec.label
    ));
    headers::verify(&kernel, &dir).with_context(|| format!("kernel {} headers", spec.label))?;
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

/// Packages for merged-/usr systems (trixie on) put the modules under usr/lib/modules only;
/// depmod and the rest of the lab look in lib/modules, so `lib` becomes the link such a
/// system has (`lib -> usr/lib`).
pub fn merge_usr(root: &Path) -> Result<()> {
    let lib = root.join("lib");
    if root.join("lib/modules").exists() || !root.join("usr/lib/modules").is_dir() {
        return Ok(());
    }
    let (link, target) = match std::fs::symlink_metadata(&lib) {
        Err(_) => (lib, "usr/lib"),
        Ok(_) => (lib.join("modules"), "../usr/lib/modules"),
    };
    std::os::unix::fs::symlink(target, &link)
        .with_context(|| format!("linking {} -> {target}", link.display()))
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
            if uris.len() != r.names().len() {
                bail!(
                    "the mirror offers {} of the {} indexed packages: {uris:?}",
                    uris.len(),
                    r.names().len()
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
                let pool = match r.from_pool.is_empty() {
                    true => String::new(),
                    false => format!(
                        " ({} in no index: from the mirror's {})",
                        r.from_pool.join(", "),
                        r.pool_dir
                    ),
                };
                let opt_in = match spec.opt_in {
                    Some(_) => "; opt-in, not in `all`",
                    None => "",
                };
                println!(
                    "resolve: kernel {} ({} {}): {}{pool}; {cached}{opt_in}",
                    spec.label,
                    spec.suite,
                    spec.image.describe(),
                    describe(&r.packages)
                );
            }
            Err(e) => {
                println!(
                    "resolve: kernel {} ({} {}): FAIL {e:#}",
                    spec.label,
                    spec.suite,
                    spec.image.describe()
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
        let suites = userland_suites();
        assert!(KERNELS.iter().all(|k| suites.contains(&userland(k.suite))));
        assert_eq!(
            suites.len(),
            KERNELS
                .iter()
                .map(|k| userland(k.suite))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
        assert_eq!(userland("trixie-backports"), "trixie");
        assert_eq!(NEWEST, all().last().unwrap().label);
    }

    #[test]
    fn all_is_every_kernel_without_an_opt_in_and_names_each_once() {
        let opt: Vec<&str> = KERNELS
            .iter()
            .filter(|k| k.opt_in.is_some())
            .map(|k| k.label)
            .collect();
        assert!(opt.is_empty(), "{opt:?}");
        let all_labels: Vec<&str> = all().iter().map(|k| k.label).collect();
        assert!(all_labels.contains(&"7.3"), "{all_labels:?}");
        let chosen: Vec<&str> = choose(&["all".into(), "7.3".into(), "6.1".into()])
            .unwrap()
            .iter()
            .map(|k| k.label)
            .collect();
        assert_eq!(chosen, all_labels, "7.3 and 6.1 not twice");
        assert_eq!(choose(&[]).unwrap().len(), all_labels.len());
        assert!(choose(&["4.4".into()]).is_err());
        // Only 7.x halts on panic; only kernels built in a toolchain root need one.
        assert_eq!(spec("7.3").unwrap().panic, PanicEnd::Halt);
        assert_eq!(spec("6.18").unwrap().panic, PanicEnd::Reboot);
        assert_eq!(build_roots(), ["trixie"]);
        assert_eq!(PanicEnd::Halt.cmdline(), "panic=0");
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_series_resolves_to_its_newest_point_release_of_the_plain_flavour() {
        let names = strings(&[
            "linux-image-6.18.12+deb13-amd64",
            "linux-image-6.18.15+deb13-cloud-amd64",
            "linux-image-6.18.15+deb13-rt-amd64",
            "linux-image-6.18.15+deb13-amd64-unsigned",
            "linux-image-6.18.15+deb13-amd64-dbg",
            "linux-image-6.18.5+deb13-amd64",
            "linux-image-6.18.9+deb13-amd64",
            "linux-image-6.180.1+deb13-amd64",
        ]);
        // 12 > 9 > 5 as numbers, not as text; the variants of .15 do not count.
        assert_eq!(
            newest_in_series(&names, "6.18").as_deref(),
            Some("linux-image-6.18.12+deb13-amd64")
        );
        assert_eq!(newest_in_series(&names, "6.19"), None);
    }

    #[test]
    fn the_split_parts_of_a_7x_image_and_none_of_its_other_depends() {
        let rel = "7.3.4+deb13-amd64";
        // `apt-cache depends linux-image-7.3.4+deb13-amd64`, parsed.
        let deps = strings(&[
            "dracut",
            "initramfs-tools",
            "linux-base-7.3.4+deb13-amd64",
            "linux-binary-7.3.4+deb13-amd64",
            "linux-modules-7.3.4+deb13-amd64",
            "linux-base",
            "linux-modules-7.2.13+deb14-amd64",
        ]);
        assert_eq!(
            split_parts(rel, &deps),
            [
                "linux-base-7.3.4+deb13-amd64",
                "linux-binary-7.3.4+deb13-amd64",
                "linux-modules-7.3.4+deb13-amd64"
            ]
        );
        // 6.18's monolithic image: kmod and a linux-base-RELEASE (which no index has).
        let deps618 = strings(&["dracut", "kmod", "linux-base-6.18.15+deb13-amd64"]);
        assert_eq!(
            split_parts("6.18.15+deb13-amd64", &deps618),
            ["linux-base-6.18.15+deb13-amd64"]
        );
    }

    #[test]
    fn headers_from_the_pool_are_named_as_the_source_builds_them() {
        let release = "6.18.15+deb13-amd64";
        let v = "6.18.15-1~bpo13+1".to_string();
        let mut packages = vec![(format!("linux-image-{release}"), v.clone())];
        packages.extend(pool_headers(release).into_iter().map(|n| (n, v.clone())));
        let r = Resolved {
            release: release.into(),
            from_pool: pool_headers(release),
            packages,
            pool_dir: pool_dir_of(
                "pool/main/l/linux-signed-amd64/linux-image-6.18.15+deb13-amd64_6.18.15-1~bpo13+1_amd64.deb",
                HEADERS_SOURCE,
            )
            .unwrap(),
        };
        assert_eq!(r.pool_dir, "pool/main/l/linux");
        assert_eq!(r.names(), [format!("linux-image-{release}")]);
        assert_eq!(
            r.pool_files(),
            [
                "linux-headers-6.18.15+deb13-amd64_6.18.15-1~bpo13+1_amd64.deb",
                "linux-headers-6.18.15+deb13-common_6.18.15-1~bpo13+1_all.deb",
                "linux-kbuild-6.18.15+deb13_6.18.15-1~bpo13+1_amd64.deb"
            ]
        );
        assert_eq!(
            pool_dir_of("pool/contrib/x/y.deb", "libbpf").unwrap(),
            "pool/contrib/libb/libbpf"
        );
        assert!(pool_dir_of("dists/x.deb", "linux").is_err());
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("npt-kernels-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A small ELF object (the host's gcc) with `btf` as its .BTF section (objcopy).
    fn elf_with_btf(dir: &Path, name: &str, btf: &[u8]) -> Vec<u8> {
        use std::process::Command;
        let obj = dir.join(format!("{name}.o"));
        let sec = dir.join(format!("{name}.btf"));
        std::fs::write(&sec, btf).unwrap();
        let ok = Command::new("gcc")
            .args(["-c", "-x", "c", "/dev/null", "-o"])
            .arg(&obj)
            .status()
            .unwrap();
        assert!(ok.success());
        if !btf.is_empty() {
            let ok = Command::new("objcopy")
                .arg(format!("--add-section=.BTF={}", sec.display()))
                .arg(&obj)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        std::fs::read(&obj).unwrap()
    }

    #[test]
    fn pool_headers_are_kept_only_with_the_image_own_btf() {
        let dir = scratch("btf");
        let image = elf_with_btf(&dir, "image", b"\x9f\xeb\x01\x00 the kernel's types");
        let same = elf_with_btf(&dir, "same", b"\x9f\xeb\x01\x00 the kernel's types");
        let other = elf_with_btf(&dir, "other", b"\x9f\xeb\x01\x00 another kernel");
        let none = elf_with_btf(&dir, "none", b"");
        assert!(same_btf(&image, &same).is_ok());
        let err = same_btf(&image, &other).unwrap_err().to_string();
        assert!(err.contains("other BTF"), "{err}");
        assert!(same_btf(&image, &none).is_err());
        assert!(same_btf(&none, &same).is_err());
        assert!(same_btf(&image, b"not an ELF").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vmlinuz_is_found_in_boot_or_beside_the_modules() {
        let rel = "7.3.4+deb13-amd64";
        let root = scratch("vmlinuz");
        // Neither: the /boot path (what the error names).
        assert_eq!(
            find_vmlinuz(&root, rel),
            root.join("boot/vmlinuz-7.3.4+deb13-amd64")
        );
        let usr = root.join("usr/lib/modules").join(rel);
        std::fs::create_dir_all(&usr).unwrap();
        std::fs::write(usr.join("vmlinuz"), "MZ").unwrap();
        assert_eq!(find_vmlinuz(&root, rel), usr.join("vmlinuz"));
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join("boot").join(format!("vmlinuz-{rel}")), "MZ").unwrap();
        assert_eq!(
            find_vmlinuz(&root, rel),
            root.join("boot/vmlinuz-7.3.4+deb13-amd64")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn merged_usr_modules_are_reached_through_lib() {
        let root = scratch("merge");
        std::fs::create_dir_all(root.join("usr/lib/modules/7.3.4+deb13-amd64")).unwrap();
        merge_usr(&root).unwrap();
        assert!(root.join("lib/modules/7.3.4+deb13-amd64").is_dir());
        assert_eq!(
            std::fs::read_link(root.join("lib")).unwrap(),
            PathBuf::from("usr/lib")
        );
        merge_usr(&root).unwrap(); // again: nothing to do
        // A tree with a real lib/ (firmware, say) gets lib/modules linked instead.
        let other = scratch("merge-lib");
        std::fs::create_dir_all(other.join("usr/lib/modules/x")).unwrap();
        std::fs::create_dir_all(other.join("lib/firmware")).unwrap();
        merge_usr(&other).unwrap();
        assert!(other.join("lib/modules/x").is_dir());
        // bookworm: modules in lib/modules already; nothing changes.
        let old = scratch("merge-old");
        std::fs::create_dir_all(old.join("lib/modules/6.1.0-56-amd64")).unwrap();
        merge_usr(&old).unwrap();
        assert!(
            !std::fs::symlink_metadata(old.join("lib"))
                .unwrap()
                .is_symlink()
        );
        for d in [root, other, old] {
            std::fs::remove_dir_all(d).unwrap();
        }
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
