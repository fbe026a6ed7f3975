//! Where downloads and unpacked trees live (outside the source tree), and the stamps that say
//! a cached tree is complete.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};

/// Name of the file written last into a cached tree; its presence means the tree is complete.
const STAMP: &str = ".complete";

/// The cache directory: `$NPT_CACHE_DIR`, else `$XDG_CACHE_HOME/netpoll-trace`, else
/// `~/.cache/netpoll-trace`.
pub fn dir() -> Result<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    resolve(env("NPT_CACHE_DIR"), env("XDG_CACHE_HOME"), env("HOME"))
        .ok_or_else(|| anyhow!("cannot place the cache: set NPT_CACHE_DIR (or HOME)"))
}

fn resolve(npt: Option<PathBuf>, xdg: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    npt.or_else(|| xdg.map(|x| x.join("netpoll-trace")))
        .or_else(|| home.map(|h| h.join(".cache").join("netpoll-trace")))
}

/// The stamp's contents when `tree` is complete, else None.
pub fn stamp(tree: &Path) -> Option<String> {
    std::fs::read_to_string(tree.join(STAMP)).ok()
}

/// Marks `tree` complete; call it after everything else in the tree is written.
pub fn write_stamp(tree: &Path, contents: &str) -> Result<()> {
    let path = tree.join(STAMP);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Creates `dir` (and parents), naming it on failure.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Removes `dir` if it exists.
pub fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The workspace root (the directory holding the root Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_cache_dir_wins() {
        let got = resolve(Some("/a".into()), Some("/x".into()), Some("/h".into()));
        assert_eq!(got, Some(PathBuf::from("/a")));
    }

    #[test]
    fn xdg_then_home() {
        assert_eq!(
            resolve(None, Some("/x".into()), Some("/h".into())),
            Some("/x/netpoll-trace".into())
        );
        assert_eq!(
            resolve(None, None, Some("/h".into())),
            Some("/h/.cache/netpoll-trace".into())
        );
        assert_eq!(resolve(None, None, None), None);
    }
}
