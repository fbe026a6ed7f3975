//! Builds the eBPF programs (nightly, bpf-linker) and leaves both objects in OUT_DIR,
//! where the loader embeds them: the binary is one self-contained file.
//! - `netpoll-trace-ebpf`: the modern object (fentry and kprobes, aya-log; 5.8+);
//! - `netpoll-trace-ebpf-legacy`: the legacy object (kprobes only; loads on 4.14).
use std::{
    env,
    ffi::OsString,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

const EBPF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../netpoll-trace-ebpf");

/// One eBPF object: a binary of the eBPF crate, its features and what its kernels need
/// beyond the flags every object gets (see `build_object`).
struct Object {
    bin: &'static str,
    features: &'static str,
    flags: &'static [&'static str],
}

const OBJECTS: [Object; 2] = [
    Object {
        bin: "netpoll-trace-ebpf",
        features: "log",
        flags: &[],
    },
    Object {
        bin: "netpoll-trace-ebpf-legacy",
        features: "legacy",
        // v1 is what 4.9 and 4.14 accept (v2's JLT/JLE/JSLT/JSLE came in 4.14, v3's
        // JMP32 class in 5.1); rustc's "generic" means v1 today, pinned so that a new
        // default in rustc or LLVM cannot move it. No memcmp/bcmp of bpf-linker's own
        // for calls: 4.14 has no bpf-to-bpf calls (core's memcpy/memset stay in .text,
        // uncalled; `cargo xtask bpfcheck` fails a call).
        flags: &["-Ctarget-cpu=v1", "-Clink-arg=--disable-memory-builtins"],
    },
];

fn main() -> anyhow::Result<()> {
    // cargo reruns us when the eBPF crate's library changes (a build-dependency); this
    // covers its binaries' sources too.
    println!("cargo:rerun-if-changed={EBPF_DIR}");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if skipped() {
        println!("cargo:warning=AYA_BUILD_SKIP is set; skipping the eBPF build");
        return Ok(());
    }
    let out_dir = out_dir()?;
    for object in &OBJECTS {
        build_object(object)?;
        strip_debug(&out_dir.join(object.bin))?;
    }
    Ok(())
}

/// aya-build's switch for building no eBPF object, kept under its name (what aya projects
/// set): it holds for both objects and their stripping.
fn skipped() -> bool {
    env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn out_dir() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(
        env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?,
    ))
}

/// Removes the DWARF sections (`.debug_*` and their relocations) from a built object,
/// keeping `.BTF` and `.BTF.ext`, which bpf-linker made from them and which are all the
/// kernel and aya use, and the relocations of `.BTF.ext` (a linker's, used by neither:
/// its records name sections and instruction offsets). aya parses every section of the
/// object it is handed and collects each one's relocations: the modern object's 2.2 MB
/// (1.8 MB of them DWARF) took 2.2 ms to parse natively and 2.4 MiB of heap, without
/// DWARF 0.47 MB 0.45 ms, without `.rel.BTF.ext` too 0.34 MB 0.26 ms (under TCG on
/// 6.12, 47 -> 30 ms); at start-up every byte read is also a resident page of the binary.
fn strip_debug(path: &std::path::Path) -> anyhow::Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut elf = object::build::elf::Builder::read(&*data)
        .map_err(|e| anyhow!("parsing {}: {e}", path.display()))?;
    let is_debug = |name: &[u8]| name.starts_with(b".debug");
    let mut debug = Vec::new();
    let mut btf_ext = None;
    for s in elf.sections.iter_mut() {
        if is_debug(&s.name) {
            s.delete = true;
            debug.push(s.id());
        }
        if &*s.name == b".BTF.ext" {
            btf_ext = Some(s.id());
        }
    }
    for s in elf.sections.iter_mut() {
        if s.sh_info_section
            .is_some_and(|t| debug.contains(&t) || Some(t) == btf_ext)
        {
            s.delete = true;
        }
    }
    elf.delete_orphans();
    // LLVM names sections in .strtab, beside the symbols; the writer wants a table of
    // its own for them.
    if !elf
        .sections
        .iter()
        .any(|s| matches!(s.data, object::build::elf::SectionData::SectionString))
    {
        let s = elf.sections.add();
        s.name = (&b".shstrtab"[..]).into();
        s.sh_type = object::elf::SHT_STRTAB;
        s.data = object::build::elf::SectionData::SectionString;
    }
    let mut out = Vec::new();
    elf.write(&mut out)
        .map_err(|e| anyhow!("writing {} without DWARF: {e}", path.display()))?;
    std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))
}

/// Builds `object` as aya-build 0.2.0 would (which sets every rustflag itself, the same
/// for every object), plus what neither object may go without:
/// `--disable-expand-memcpy-in-order`: bpf-linker's default leaves a memset to a call of
/// core's memset, a byte loop the verifier walks once per byte at every call (6.12: 336
/// of __netpoll_setup's entry's 10,639 verified instructions were one such loop, run for
/// a 152-byte event zeroed on the stack) and 4.14 cannot call at all; without it LLVM
/// writes the stores inline.
///
/// Each object has its own target directory: different rustflags would otherwise rebuild
/// the other's dependencies (core) on every build.
fn build_object(object: &Object) -> anyhow::Result<()> {
    let out_dir = out_dir()?;
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("unsupported endian {other}"),
    };
    // The architecture whose pt_regs the kprobes read (aya-build's riscv fix-up aside:
    // we build for x86_64 only).
    let arch = env::var("CARGO_CFG_TARGET_ARCH")?;
    let target_dir = out_dir.join("aya-build").join("target").join(object.bin);
    let mut rustflags = OsString::new();
    let common = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
        "-Clink-arg=--disable-expand-memcpy-in-order".into(),
    ];
    let own = object.flags.iter().map(|f| f.to_string());
    for (i, flag) in common.into_iter().chain(own).enumerate() {
        if i > 0 {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        "netpoll-trace-ebpf",
        "--bin",
        object.bin,
    ])
    .args([
        "--no-default-features",
        "--features",
        object.features,
        "--release",
        "--target",
        target,
    ])
    .args(["-Z", "build-std=core", "--target-dir"])
    .arg(&target_dir)
    .current_dir(EBPF_DIR)
    // The user-space release profile (whole-program LTO, one codegen unit: a smaller
    // binary) is not the objects': theirs stays what the verifier's figures were measured
    // on, cargo's release defaults, also against a [profile.release] in a user's or a
    // parent directory's .cargo/config.toml (`--config` wins over both, and over the
    // CARGO_PROFILE_* removed below). The eBPF package's own override in Cargo.toml
    // (debug info, one codegen unit) still applies.
    .args([
        "--config",
        "profile.release.lto=false",
        "--config",
        "profile.release.codegen-units=16",
        "--config",
        "profile.release.opt-level=3",
        "--config",
        "profile.release.debug-assertions=false",
        "--config",
        "profile.release.overflow-checks=false",
    ])
    .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
    // As aya-build: the outer build's compiler must not leak into the nightly one.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    // Our stdout is cargo's directive channel; compiler output goes to stderr.
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_PROFILE_") {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!(
            "building the eBPF object {} failed ({status}): {cmd:?}",
            object.bin
        );
    }
    let built = target_dir.join(target).join("release").join(object.bin);
    let dst = out_dir.join(object.bin);
    std::fs::copy(&built, &dst)
        .with_context(|| format!("copying {} to {}", built.display(), dst.display()))?;
    Ok(())
}
