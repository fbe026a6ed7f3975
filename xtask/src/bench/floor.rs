//! The benchmark's libbpf reference loader ("the floor"): lab/bench/floor.bpf.c compiled by
//! clang into a BPF object, embedded into lab/bench/floor.c, which is linked static against
//! Debian's libbpf.a, libelf.a and libz.a (host packages from `cargo xtask setup`). The
//! guest gets one file, /bin/floor. Built into target/lab/bench, again only when a source
//! is newer than the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context as _, Result, bail};

use crate::{build, cache, process};

/// Where Debian keeps the x86_64 kernel UAPI headers (<asm/ptrace.h>, <asm/types.h>):
/// clang's BPF target does not search the multiarch directory by itself.
const MULTIARCH_INCLUDE: &str = "/usr/include/x86_64-linux-gnu";

/// Builds the floor loader unless up to date; (host path, guest path).
pub fn build(root: &Path) -> Result<(PathBuf, String)> {
    let src = root.join("lab/bench");
    let sources = [
        src.join("floor.bpf.c"),
        src.join("floor.c"),
        src.join("floor.h"),
    ];
    let out_dir = root.join("target/lab/bench");
    cache::create_dir(&out_dir)?;
    let object = out_dir.join("floor.bpf.o");
    let binary = out_dir.join("floor");
    if !stale(&binary, &sources)? {
        return Ok((binary, "bin/floor".into()));
    }
    println!(
        "build: {} (libbpf reference loader)",
        src.join("floor.c").display()
    );
    process::run(
        Command::new("clang")
            .args([
                "-target",
                "bpf",
                "-O2",
                "-g",
                "-Wall",
                "-Werror",
                "-D__TARGET_ARCH_x86",
            ])
            .arg(format!("-I{MULTIARCH_INCLUDE}"))
            .arg("-I")
            .arg(&src)
            .arg("-c")
            .arg(&sources[0])
            .arg("-o")
            .arg(&object),
    )
    .with_context(|| {
        format!(
            "compiling {} (is clang installed? run `cargo xtask setup`)",
            sources[0].display()
        )
    })?;
    process::run(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(incbin_define(&object)?)
            .arg("-I")
            .arg(&src)
            .arg("-o")
            .arg(&binary)
            .arg(&sources[1])
            // Order matters for static archives: libbpf needs libelf, which needs libz.
            .args(["-lbpf", "-lelf", "-lz"]),
    )
    .with_context(|| {
        format!(
            "building {} against libbpf.a, libelf.a, libz.a (libbpf-dev, libelf-dev, zlib1g-dev: run `cargo xtask setup`)",
            sources[1].display()
        )
    })?;
    build::check_static(&binary)?;
    Ok((binary, "bin/floor".into()))
}

/// True when `out` is missing or older than any of `inputs`.
fn stale(out: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return Ok(true);
    };
    let mut newest = SystemTime::UNIX_EPOCH;
    for i in inputs {
        let t = std::fs::metadata(i)
            .and_then(|m| m.modified())
            .with_context(|| format!("reading {}", i.display()))?;
        newest = newest.max(t);
    }
    Ok(built < newest)
}

/// `-DFLOOR_BPF_OBJ="<path>"`: the object floor.c embeds with `.incbin`, whose string
/// cannot hold a quote, a backslash or a newline.
fn incbin_define(object: &Path) -> Result<String> {
    let path = object
        .to_str()
        .with_context(|| format!("{} is not UTF-8", object.display()))?;
    if path.contains(['"', '\\', '\n']) {
        bail!(
            "{path}: the BPF object's path cannot be embedded with .incbin (quote, backslash or newline)"
        );
    }
    Ok(format!("-DFLOOR_BPF_OBJ=\"{path}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incbin_path_is_quoted_and_odd_paths_refused() {
        assert_eq!(
            incbin_define(Path::new("/w/target/floor.bpf.o")).unwrap(),
            "-DFLOOR_BPF_OBJ=\"/w/target/floor.bpf.o\""
        );
        assert!(incbin_define(Path::new("/w/a\"b/floor.bpf.o")).is_err());
        assert!(incbin_define(Path::new("/w/a\\b/floor.bpf.o")).is_err());
    }

    #[test]
    fn missing_or_older_output_is_stale() {
        let dir = std::env::temp_dir().join(format!("npt-floor-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, out) = (dir.join("a.c"), dir.join("a"));
        std::fs::write(&src, "x").unwrap();
        assert!(stale(&out, std::slice::from_ref(&src)).unwrap());
        std::fs::write(&out, "y").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&out)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!stale(&out, std::slice::from_ref(&src)).unwrap());
        std::fs::File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(later + std::time::Duration::from_secs(1))
            .unwrap();
        assert!(stale(&out, std::slice::from_ref(&src)).unwrap());
        assert!(stale(&out, &[dir.join("missing.c")]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
