//! `cargo xtask setup`: everything the project needs on a fresh machine of this kind,
//! idempotently (a second run only checks).
//!
//! Its parts: `apt` (Debian packages through private per-suite lists), `toolchain` (the
//! pinned stable, nightly, bpf-linker, the fuzz nightly), `kernels` (the lab's kernel table
//! and fetching each), `headers` and `modules` (making a fetched kernel's headers and
//! modules usable from the cache), `buildroot` (a newer suite's compiler for kernels whose
//! headers the host's cannot build), `guest` (busybox for the guests).

pub mod apt;
pub mod buildroot;
pub mod guest;
pub mod headers;
pub mod kernels;
pub mod modules;
pub mod toolchain;

use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::checks::fuzz;
use crate::{bench, cache};

/// Host tools: QEMU and cpio for the lab, kmod for depmod, xz/zstd for modules, what
/// building kernel modules needs, and what the benchmark's libbpf floor loader needs.
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "cpio",
    "kmod",
    "xz-utils",
    "zstd",
    "gcc",
    "make",
    "bc",
    "flex",
    "bison",
    "libelf-dev",
    // pahole: 6.12's kbuild generates BTF for modules.
    "dwarves",
    // `cargo xtask dist`: tarball and dpkg-deb (essential on Debian; named so a trimmed
    // image gets them too).
    "tar",
    "gzip",
    "dpkg",
    // `cargo xtask debcheck`: strip for the packaged binary, unshare for the maintainer
    // scripts' systemd run, lintian for the package.
    "binutils",
    "util-linux",
    "lintian",
    // `cargo xtask bench`: the libbpf reference loader (lab/bench/floor.*): clang for its
    // BPF object, and the static archives it links (libbpf.a, libelf.a above, libz.a).
    "clang",
    "libbpf-dev",
    "zlib1g-dev",
    // `cargo xtask debcheck`: the DKMS package built against the lab kernels' headers.
    "dkms",
    // `cargo xtask dist` and `rpmcheck`: rpmbuild, `rpm --root`, rpmlint.
    "rpm",
    "rpmlint",
];

/// Setup's log: apt's, rustup's and cargo install's output, one run's worth (the terminal
/// gets one line per step).
pub fn log_path() -> Result<std::path::PathBuf> {
    Ok(cache::dir()?.join("setup.log"))
}

/// `refresh`: move cached kernels to their suite's newest point release (`setup --refresh`);
/// without it a cached kernel stays.
pub fn run(refresh: bool) -> Result<()> {
    let started = Instant::now();
    let cache_dir = cache::dir()?;
    cache::create_dir(&cache_dir)?;
    let log = log_path()?;
    // One run's log: started afresh (created by this user, not through a planted link).
    let _ = std::fs::remove_file(&log);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&log)
        .with_context(|| format!("creating {}", log.display()))?;
    println!(
        "setup: cache in {}, log in {}",
        cache_dir.display(),
        log.display()
    );
    let mut changed = Vec::new();

    changed.extend(apt::install_host(HOST_PACKAGES, &log)?);
    changed.extend(toolchain::ensure(&cache_dir).context("setting up the Rust toolchains")?);
    if fuzz::ensure_cargo_fuzz()? {
        changed.push(format!("cargo-fuzz {}", fuzz::CARGO_FUZZ_VERSION));
    }
    if guest::ensure(&cache_dir)? {
        changed.push("busybox-static".into());
    }
    // Only where a kernel's headers need a newer toolchain than the host's.
    for suite in kernels::build_roots() {
        if buildroot::ensure(&cache_dir, suite)
            .with_context(|| format!("setting up the {suite} toolchain root"))?
        {
            changed.push(format!("{suite} toolchain root"));
        }
    }
    let mut lab = Vec::new();
    for spec in kernels::KERNELS {
        let (kernel, fetched) = kernels::ensure(&cache_dir, spec, refresh)
            .with_context(|| format!("setting up lab kernel {}", spec.label))?;
        if fetched {
            changed.push(format!("kernel {}", spec.label));
        }
        lab.push(kernel);
    }
    // The benchmark's comparison tracer (guest-side only; never installed on the host).
    changed.extend(
        bench::bpftrace::ensure(&cache_dir).context("fetching bpftrace for the benchmark")?,
    );
    // The exact packages the lab runs, whichever way they got here.
    for k in &lab {
        println!(
            "setup: lab kernel {:<5} {}",
            k.label,
            kernels::describe(&k.packages)
        );
    }
    let secs = started.elapsed().as_secs_f64();
    if changed.is_empty() {
        println!("setup: everything present ({secs:.1}s)");
    } else {
        println!(
            "setup: done in {secs:.0}s; installed: {}",
            changed.join(", ")
        );
    }
    Ok(())
}

/// What `cargo xtask fuzz` alone needs (no lab kernels): the toolchains (netpoll-trace's
/// build makes its eBPF objects with nightly and bpf-linker) and cargo-fuzz.
pub fn for_fuzzing() -> Result<()> {
    let cache_dir = cache::dir()?;
    cache::create_dir(&cache_dir)?;
    let mut changed = toolchain::ensure(&cache_dir).context("setting up the Rust toolchains")?;
    if fuzz::ensure_cargo_fuzz()? {
        changed.push(format!("cargo-fuzz {}", fuzz::CARGO_FUZZ_VERSION));
    }
    if !changed.is_empty() {
        println!("setup: installed {}", changed.join(", "));
    }
    Ok(())
}
