//! `netpoll-trace generate completions|man DIR` (hidden): shell completions and man
//! pages from the clap definitions themselves, so packages never drift from the CLI.
//! `cargo xtask dist` runs it on the built binary.
//!
//! The pages are in section 8 (a root-only tool, like bpftrace(8)); clap_mangen renders
//! what clap knows, and this file adds EXIT STATUS, FILES, EXAMPLES and SEE ALSO, plus
//! netpoll-trace-agent.toml(5) for the agent's configuration.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::args::{Cli, GenerateKind};
use crate::model::diagnosis::Cause;

mod tables;
use tables::{CONFIG_KEYS, FILES, pinned};

/// The shells packages ship completions for, with where each file goes under a prefix.
pub const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "share/bash-completion/completions"),
    (Shell::Zsh, "share/zsh/site-functions"),
    (Shell::Fish, "share/fish/vendor_completions.d"),
];

/// The tool's manual section: it needs root (CAP_BPF, CAP_SYS_MODULE), as bpftrace(8) does.
pub const SECTION: &str = "8";
/// The configuration file's page: `netpoll-trace-agent.toml.5`.
pub const CONFIG_PAGE: &str = "netpoll-trace-agent.toml";

/// Exit statuses, in order; which ones a page lists depends on the command.
const EXIT_OK: (&str, &str) = ("0", "Success.");
const EXIT_RUNTIME: (&str, &str) = (
    "1",
    "A runtime error; the message on standard error names the cause and the fix.",
);
const EXIT_USAGE: (&str, &str) = ("2", "A usage error (bad option, or options that conflict).");
const EXIT_UNSUPPORTED: (&str, &str) = (
    "4",
    "This kernel cannot be traced (no kprobes, no BPF, or no netpoll).",
);

/// Per page: extra exit statuses and examples (command line, what it does).
struct Extra {
    exits: &'static [(&'static str, &'static str)],
    examples: &'static [(&'static str, &'static str)],
}

fn extra(sub: Option<&str>) -> Extra {
    match sub {
        None => Extra {
            exits: &[
                (
                    "3",
                    "watch saw a netpoll set-up fail (and COMMAND, if given, exited 0: a silent failure); agent --once did not fix the failure.",
                ),
                (
                    "COMMAND's",
                    "watch -- COMMAND exits with COMMAND's own status when it is not 0.",
                ),
                (
                    "126",
                    "watch -- COMMAND: COMMAND was found but cannot be executed.",
                ),
                ("127", "watch -- COMMAND: COMMAND was not found."),
            ],
            examples: &[
                (
                    "netpoll-trace check",
                    "What this kernel supports, and what to do about what is missing.",
                ),
                (
                    "netpoll-trace watch -- modprobe netconsole netconsole=@/eth0,6666@192.0.2.1/",
                    "Trace netconsole's set-up and diagnose a refusal.",
                ),
                (
                    "systemctl enable --now netpoll-trace-agent",
                    "Run the agent as a service, configured in /etc/netpoll-trace/agent.toml.",
                ),
            ],
        },
        Some("watch") => Extra {
            exits: &[
                (
                    "3",
                    "A netpoll set-up failed and COMMAND, if given, exited 0 (the 6.x silent failure).",
                ),
                ("COMMAND's", "COMMAND failed: its own exit status."),
                ("126", "COMMAND was found but cannot be executed."),
                ("127", "COMMAND was not found."),
            ],
            examples: &[
                (
                    "netpoll-trace watch -- modprobe netconsole netconsole=@/eth0,6666@192.0.2.1/",
                    "Trace one netconsole load.",
                ),
                (
                    "netpoll-trace watch --for 30s --dev eth0",
                    "Watch for 30 seconds while a configfs target is enabled.",
                ),
                (
                    "netpoll-trace watch --json --record run.jsonl -- modprobe netconsole",
                    "JSON lines on stdout and in a file for dump --from.",
                ),
            ],
        },
        Some("agent") => Extra {
            exits: &[("3", "With --once: the failure was not fixed.")],
            examples: &[
                (
                    "netpoll-trace agent --config /etc/netpoll-trace/agent.toml",
                    "Run in the foreground with the packaged configuration.",
                ),
                (
                    "netpoll-trace agent --dry-run --once",
                    "Decide and journal the next failure, change nothing, exit.",
                ),
                (
                    "netpoll-trace agent --metrics-addr 127.0.0.1:9632",
                    "Serve Prometheus metrics on loopback.",
                ),
            ],
        },
        Some("dump") => Extra {
            exits: &[],
            examples: &[
                (
                    "netpoll-trace dump",
                    "Print the flight recorder with diagnoses.",
                ),
                (
                    "netpoll-trace dump --from /var/log/netpoll-trace/journal.jsonl",
                    "Read the agent's journal instead.",
                ),
            ],
        },
        Some("reset") => Extra {
            exits: &[],
            examples: &[("netpoll-trace reset", "Remove the flight recorder.")],
        },
        Some("patch") => Extra {
            exits: &[],
            examples: &[
                (
                    "netpoll-trace patch ens5",
                    "Give ens5 a NAPI-scheduling ndo_poll_controller (module from /usr/lib/netpoll-trace).",
                ),
                (
                    "netpoll-trace patch ens5 --json",
                    "The same, reported as one JSON object.",
                ),
            ],
        },
        Some("unpatch") => Extra {
            exits: &[],
            examples: &[
                (
                    "netpoll-trace unpatch ens5",
                    "Restore ens5's ops; unload the module when nothing is patched.",
                ),
                (
                    "netpoll-trace unpatch ens5 --force",
                    "Restore while netconsole is bound to ens5 (its output may stall).",
                ),
            ],
        },
        Some("receive") => Extra {
            exits: &[],
            examples: &[
                (
                    "netpoll-trace receive",
                    "Print what netconsole sends to this host's UDP port 6666.",
                ),
                (
                    "netpoll-trace receive --listen 10.0.0.5:6666 --json --output netconsole.jsonl",
                    "JSON lines on stdout and in a file; a per-sender summary (messages, sequence gaps) at the end.",
                ),
            ],
        },
        Some("status") => Extra {
            exits: &[],
            examples: &[(
                "netpoll-trace status --json",
                "The patched devices, as JSON.",
            )],
        },
        Some("offsets") => Extra {
            exits: &[],
            examples: &[(
                "netpoll-trace offsets --btf 4.14.0-1.btf.tar.xz",
                "The offsets BTFHub's archive gives.",
            )],
        },
        Some("check") => Extra {
            exits: &[],
            examples: &[(
                "netpoll-trace check --json",
                "The same report as one JSON object.",
            )],
        },
        Some(_) => Extra {
            exits: &[],
            examples: &[],
        },
    }
}

/// Text for roff: backslashes and hyphens escaped, a leading control character neutralised.
fn esc(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// `.TP` items: a bold tag, then its text.
fn items(out: &mut String, heading: &str, rows: &[(&str, &str)]) {
    let _ = writeln!(out, ".SH \"{heading}\"");
    for (tag, text) in rows {
        let _ = writeln!(out, ".TP\n.B {}\n{}", esc(&pinned(tag)), esc(text));
    }
}

/// The sections clap cannot know of, for `sub` (None: the tool's own page); `pages` are
/// every command page's name, for SEE ALSO.
fn trailer(sub: Option<&str>, pages: &[String]) -> String {
    let extra = extra(sub);
    let mut out = String::new();
    let mut exits = vec![EXIT_OK, EXIT_RUNTIME, EXIT_USAGE];
    exits.extend(extra.exits.iter().copied().filter(|(c, _)| *c == "3"));
    if matches!(sub, None | Some("check" | "watch" | "agent")) {
        exits.push(EXIT_UNSUPPORTED);
    }
    exits.extend(extra.exits.iter().copied().filter(|(c, _)| *c != "3"));
    items(&mut out, "EXIT STATUS", &exits);
    items(&mut out, "FILES", FILES);
    let _ = writeln!(out, ".SH EXAMPLES");
    for (cmd, what) in extra.examples {
        let _ = writeln!(out, ".PP\n{}\n.RS\n.B {}\n.RE", esc(what), esc(cmd));
    }
    let this = sub.map_or_else(
        || "netpoll-trace".to_string(),
        |s| format!("netpoll-trace-{s}"),
    );
    let mut see: Vec<String> = pages
        .iter()
        .filter(|p| **p != this)
        .map(|p| format!("{p}({SECTION})"))
        .collect();
    see.extend([
        format!("{CONFIG_PAGE}(5)"),
        "bpftrace(8)".into(),
        "systemctl(1)".into(),
    ]);
    let _ = writeln!(out, ".SH \"SEE ALSO\"\n{}", esc(&see.join(", ")));
    out
}

/// netpoll-trace-agent.toml(5).
fn config_page(source: &str) -> String {
    let mut out = format!(".TH \"{CONFIG_PAGE}\" 5 \"\" \"{source}\" \"netpoll-trace manual\"\n");
    let _ = writeln!(
        out,
        ".SH NAME\n{} \\- configuration of the netpoll\\-trace agent",
        esc(CONFIG_PAGE)
    );
    let _ = writeln!(out, ".SH SYNOPSIS\n.B /etc/netpoll-trace/agent.toml");
    let _ = writeln!(
        out,
        ".SH DESCRIPTION\n{}",
        esc(
            "netpoll-trace agent reads this TOML file, or the one --config FILE names; without either it runs on \
             the built-in defaults and says so once. Every key is optional; an unknown key, \
             a value out of range or a policy that cannot work is refused at start with a message naming the key. \
             Without a [policy] table the agent only reports."
        )
    );
    let _ = writeln!(out, ".SH KEYS");
    for (key, kind, default, meaning) in CONFIG_KEYS {
        let _ = writeln!(
            out,
            ".TP\n.B {}\n{} ({}; default {}).",
            esc(key),
            esc(meaning),
            esc(kind),
            esc(&pinned(default))
        );
    }
    let causes: Vec<&str> = Cause::ALL.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(
        out,
        ".PP\n{}",
        esc(&format!("CAUSE is one of: {}.", causes.join(", ")))
    );
    items(&mut out, "FILES", &FILES[..2]);
    let _ = writeln!(
        out,
        ".SH EXAMPLES\n.nf\n{}\n.fi",
        esc(
            "journal = \"/var/log/netpoll-trace/journal.jsonl\"\nallowed_drivers = [\"ena\"]\n\n[policy]\nmissing_poll_controller = \"patch\"\n\n[retry]\nmethod = \"auto\""
        )
    );
    let _ = writeln!(
        out,
        ".SH \"SEE ALSO\"\nnetpoll\\-trace\\-agent({SECTION}), netpoll\\-trace({SECTION})"
    );
    out
}

/// Writes the files into `dir`; returns their paths.
pub fn run(kind: GenerateKind, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut written = Vec::new();
    match kind {
        GenerateKind::Completions => {
            for (shell, _) in SHELLS {
                let p = clap_complete::generate_to(*shell, &mut cmd, &name, dir).with_context(
                    || format!("writing {shell} completions into {}", dir.display()),
                )?;
                written.push(p);
            }
        }
        GenerateKind::Man => {
            // One page for the tool and one per visible subcommand (netpoll-trace-watch.8, ...),
            // each footed with the tool's name and version (subcommands have no version).
            let source = format!("{name} {}", env!("CARGO_PKG_VERSION"));
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            let subs: Vec<clap::Command> = cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .cloned()
                .collect();
            let pages: Vec<String> = std::iter::once(name.clone())
                .chain(subs.iter().map(|s| format!("{name}-{}", s.get_name())))
                .collect();
            let tool = (None, cmd.clone());
            for (sub, c) in std::iter::once(tool).chain(
                subs.into_iter()
                    .map(|s| (Some(s.get_name().to_string()), s)),
            ) {
                let man = clap_mangen::Man::new(c.clone())
                    .section(SECTION)
                    .source(source.clone())
                    .manual("netpoll-trace manual");
                let path = dir.join(man.get_filename());
                std::fs::write(&path, render(&man, &c, sub.as_deref(), &pages)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                written.push(path);
            }
            let path = dir.join(format!("{CONFIG_PAGE}.5"));
            std::fs::write(&path, config_page(&source))
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// clap_mangen's sections, the after-help text as NOTES, then ours.
fn render(
    man: &clap_mangen::Man,
    cmd: &clap::Command,
    sub: Option<&str>,
    pages: &[String],
) -> Result<String> {
    let mut buf: Vec<u8> = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut buf)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        let mut notes = Vec::new();
        man.render_extra_section(&mut notes)?;
        buf.extend(
            String::from_utf8_lossy(&notes)
                .replacen(".SH EXTRA", ".SH NOTES", 1)
                .into_bytes(),
        );
    }
    let mut page = String::from_utf8(buf).context("clap_mangen wrote non-UTF-8")?;
    page.push_str(&trailer(sub, pages));
    if cmd.get_version().is_some() {
        let mut v = Vec::new();
        man.render_version_section(&mut v)?;
        page.push_str(&String::from_utf8_lossy(&v));
    }
    Ok(page)
}

/// The keys `AgentConfig::parse` accepts at the top level and in `table` (None: top level),
/// read from the parser's own refusal of an unknown key.
#[cfg(test)]
fn parser_keys(table: Option<&str>) -> Vec<String> {
    let text = match table {
        None => "zz_unknown = 1\n".to_string(),
        Some(t) => format!("[{t}]\nzz_unknown = 1\n"),
    };
    let err = crate::model::config::AgentConfig::parse(&text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // serde: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`".
    let list = err
        .split("zz_unknown`, expected")
        .nth(1)
        .unwrap_or_default();
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section_names(page: &str) -> Vec<String> {
        page.lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .map(|s| s.trim_matches('"').to_string())
            .collect()
    }

    #[test]
    fn completions_and_pages_name_the_commands() {
        let dir = std::env::temp_dir().join(format!("npt-generate-{}", std::process::id()));
        let files = run(GenerateKind::Completions, &dir.join("c")).unwrap();
        assert_eq!(files.len(), SHELLS.len());
        let bash = std::fs::read_to_string(dir.join("c").join("netpoll-trace.bash")).unwrap();
        assert!(
            bash.contains("--metrics-addr") && bash.contains("--log-format"),
            "bash completion lacks flags"
        );
        let pages = run(GenerateKind::Man, &dir.join("m")).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "netpoll-trace.8",
            "netpoll-trace-agent.8",
            "netpoll-trace-watch.8",
            "netpoll-trace-check.8",
            "netpoll-trace-agent.toml.5",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        // Root-only tool: nothing in section 1.
        assert!(!names.iter().any(|n| n.ends_with(".1")), "{names:?}");
        // Hidden commands stay out of the manual.
        assert!(
            !names
                .iter()
                .any(|n| n.contains("generate") || n.contains("schema")),
            "{names:?}"
        );
        let agent = std::fs::read_to_string(dir.join("m").join("netpoll-trace-agent.8")).unwrap();
        assert!(
            agent.contains(".TH netpoll-trace-agent 8"),
            "not a section 8 page:\n{agent}"
        );
        assert!(
            agent.contains("metrics\\-addr"),
            "agent page lacks --metrics-addr"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_command_page_has_exit_status_files_and_examples() {
        let dir =
            std::env::temp_dir().join(format!("npt-generate-sections-{}", std::process::id()));
        for page in run(GenerateKind::Man, &dir).unwrap() {
            let text = std::fs::read_to_string(&page).unwrap();
            let name = page.file_name().unwrap().to_string_lossy().into_owned();
            let sections = section_names(&text);
            for want in [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "FILES",
                "EXAMPLES",
                "SEE ALSO",
            ] {
                assert!(
                    sections.iter().any(|s| s == want),
                    "{name} lacks {want}: {sections:?}"
                );
            }
            if name.ends_with(".5") {
                assert!(sections.iter().any(|s| s == "KEYS"), "{name}: {sections:?}");
                continue;
            }
            assert!(
                sections.iter().any(|s| s == "EXIT STATUS"),
                "{name} lacks EXIT STATUS: {sections:?}"
            );
            assert!(
                !sections.iter().any(|s| s == "EXTRA"),
                "{name}: after-help belongs under NOTES"
            );
            // Every page lists the files, and has at least one example command.
            for (file, _) in FILES {
                assert!(text.contains(&esc(&pinned(file))), "{name} lacks {file}");
            }
            // The recorder's directory as the code pins it, not a schema version typed here.
            let pins = crate::kernel::recorder::default_dir().display().to_string();
            assert!(text.contains(&esc(&pins)), "{name} lacks {pins}");
            let examples = text.split(".SH EXAMPLES").nth(1).unwrap_or_default();
            assert!(
                examples.contains(".B netpoll\\-trace") || examples.contains(".B systemctl"),
                "{name}: no example"
            );
        }
        let tool = std::fs::read_to_string(dir.join("netpoll-trace.8")).unwrap();
        let exits = tool
            .split(".SH \"EXIT STATUS\"")
            .nth(1)
            .unwrap()
            .split(".SH")
            .next()
            .unwrap();
        for code in ["0", "1", "2", "3", "4", "126", "127", "COMMAND's"] {
            assert!(
                exits.contains(&format!(".B {code}\n")),
                "tool page lacks exit status {code}:\n{exits}"
            );
        }
        let watch = std::fs::read_to_string(dir.join("netpoll-trace-watch.8")).unwrap();
        assert!(
            watch.contains(".B 127\n") && watch.contains(".B 126\n"),
            "watch page lacks 126/127"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_configuration_page_documents_every_key_the_parser_accepts() {
        let top = parser_keys(None);
        let retry = parser_keys(Some("retry"));
        assert!(
            top.contains(&"journal".to_string()) && retry.contains(&"method".to_string()),
            "{top:?} {retry:?}"
        );
        let documented: Vec<&str> = CONFIG_KEYS.iter().map(|k| k.0).collect();
        for key in &top {
            // A table is documented through its keys (policy.CAUSE, retry.method).
            let ok = documented
                .iter()
                .any(|d| d == key || d.starts_with(&format!("{key}.")));
            assert!(ok, "config key `{key}` is not in {CONFIG_PAGE}(5)");
        }
        for key in &retry {
            assert!(
                documented.contains(&format!("retry.{key}").as_str()),
                "retry.{key} is not in {CONFIG_PAGE}(5)"
            );
        }
        // And nothing documented that the parser refuses.
        for d in documented {
            let head = d.split('.').next().unwrap();
            assert!(
                top.iter().any(|k| k == head),
                "{CONFIG_PAGE}(5) documents `{d}`, which the parser refuses"
            );
        }
        let page = config_page("netpoll-trace 0");
        for c in Cause::ALL {
            assert!(
                page.contains(&esc(c.as_str())),
                "page lacks cause {}",
                c.as_str()
            );
        }
    }
}
