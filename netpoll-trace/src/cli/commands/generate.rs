//! `netpoll-trace generate completions|man DIR` (hidden): shell completions and man
//! pages from the clap definitions themselves, so packages never drift from the CLI.
//! `cargo xtask dist` runs it on the built binary.

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::args::{Cli, GenerateKind};

/// The shells packages ship completions for, with where each file goes under a prefix.
pub const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "share/bash-completion/completions"),
    (Shell::Zsh, "share/zsh/site-functions"),
    (Shell::Fish, "share/fish/vendor_completions.d"),
];

/// Writes the files into `dir`; returns their paths.
pub fn run(kind: GenerateKind, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut written = Vec::new();
    match kind {
        GenerateKind::Completions => {
            for (shell, _) in SHELLS {
                let p = clap_complete::generate_to(*shell, &mut cmd, &name, dir)
                    .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
                written.push(p);
            }
        }
        GenerateKind::Man => {
            // One page for the tool and one per visible subcommand (netpoll-trace-watch.1, ...),
            // each footed with the tool's name and version (subcommands have no version).
            let source = format!("{name} {}", env!("CARGO_PKG_VERSION"));
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            let subs: Vec<clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
            for c in std::iter::once(cmd).chain(subs) {
                let page = clap_mangen::Man::new(c).source(source.clone()).manual("netpoll-trace manual");
                let p = page.generate_to(dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
                written.push(p);
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_and_pages_name_the_commands() {
        let dir = std::env::temp_dir().join(format!("npt-generate-{}", std::process::id()));
        let files = run(GenerateKind::Completions, &dir.join("c")).unwrap();
        assert_eq!(files.len(), SHELLS.len());
        let bash = std::fs::read_to_string(dir.join("c").join("netpoll-trace.bash")).unwrap();
        assert!(bash.contains("--metrics-addr") && bash.contains("--log-format"), "bash completion lacks flags");
        let pages = run(GenerateKind::Man, &dir.join("m")).unwrap();
        let names: Vec<String> = pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for want in ["netpoll-trace.1", "netpoll-trace-agent.1", "netpoll-trace-watch.1", "netpoll-trace-check.1"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        // Hidden commands stay out of the manual.
        assert!(!names.iter().any(|n| n.contains("generate") || n.contains("schema")), "{names:?}");
        let agent = std::fs::read_to_string(dir.join("m").join("netpoll-trace-agent.1")).unwrap();
        assert!(agent.starts_with(".ie") || agent.contains(".TH"), "not roff");
        assert!(agent.contains("metrics\\-addr"), "agent page lacks --metrics-addr");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
