//! Lab scenarios: shell scripts in lab/scenarios/NAME.sh whose leading comment lines declare
//! what they need and what they check:
//!
//! ```text
//! # kernels: 6.12               (a restriction; default and usual: every lab kernel)
//! # nics: virtio e1000          (default: virtio; one QEMU NIC each, eth0, eth1, ...)
//! # modules: bonding            (loaded modules beyond the always-present set)
//! # files: lab/x.ko lab/y:/bin/y  (extra files; SRC[:GUEST_PATH], {kernel} expands to the label)
//! # timeout: 180                (seconds for the script, guest-side)
//! # needs: dist                 (build artefacts to carry: dist = `cargo xtask dist`'s tarball
//! #                              and .deb, as /dist/netpoll-trace.tar.gz and /dist/netpoll-trace.deb)
//! # checks: a b c               (each must be reported as pass or skip)
//! # variants: legacy            (also run the scenario so: VARIANTS, reported as NAME+legacy)
//! # cpus: 1                     (vCPUs; default 2. Polling with interrupts off needs 1)
//! # cmdline: e1000.TxDescriptors=48  (more kernel command-line words)
//! # ends: panic                 (the scenario ends by panicking the kernel: lib.sh's npt_panic)
//! ```
//!
//! Any other `# word:` line in the header is an error, so a typo cannot silently drop a check.
//! `# kernels:` only restricts: listing every kernel is an error, since such a list would
//! silently leave out the next kernel added to kernels::KERNELS.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::lab::qemu::Nic;

pub const DEFAULT_TIMEOUT_SECS: u64 = 180;

/// A second run of a scenario with the tool's defaults changed through its environment
/// (lab/init exports `env` and NPT_VARIANT=name before the script runs), so the script
/// is unchanged and every check must pass again.
#[derive(Debug, PartialEq, Eq)]
pub struct Variant {
    pub name: &'static str,
    pub env: &'static [(&'static str, &'static str)],
    /// The kernels a plain `NAME` runs this variant on (what its facts need, within CI's
    /// time); `NAME+VARIANT` runs it on any kernel asked for.
    pub kernels: &'static [&'static str],
}

pub const VARIANTS: [Variant; 1] = [Variant {
    // The legacy eBPF object (loads on 4.14) on kprobes: what old kernels run.
    name: "legacy",
    env: &[
        ("NETPOLL_TRACE_OBJECT", "legacy"),
        ("NETPOLL_TRACE_ATTACH", "kprobe"),
    ],
    // Its own code is kernel-independent; what differs is what kprobes find: the oldest
    // lab kernel (closest to the 4.x it exists for) and the newest (netconsole's own
    // functions in the module, armed; static __netpoll_cleanup as on 6.18).
    kernels: &["5.10", "7.3"],
}];

fn variant(name: &str) -> Result<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name).ok_or_else(|| {
        let known: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        anyhow::anyhow!("unknown variant {name:?}: known are {}", known.join(", "))
    })
}

#[derive(Debug, PartialEq)]
pub struct Header {
    /// None: every lab kernel.
    pub kernels: Option<Vec<String>>,
    pub nics: Vec<Nic>,
    pub modules: Vec<String>,
    pub files: Vec<FileSpec>,
    pub timeout_secs: u64,
    pub checks: Vec<String>,
    pub needs: Vec<Need>,
    /// Runs beyond the plain one.
    pub variants: Vec<&'static Variant>,
    pub cpus: u32,
    /// More words for the kernel command line.
    pub cmdline: Vec<String>,
    pub ending: Ending,
}

/// How a guest's scenario ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It returns, and lab/init reports its exit status and dmesg, then powers off.
    Exit,
    /// It panics the kernel (lib.sh's `npt_panic`), after printing dmesg and `NPT-PANIC`.
    Panic,
}

pub const DEFAULT_CPUS: u32 = 2;

/// A build artefact a scenario carries into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `cargo xtask dist`'s tarball and Debian package.
    Dist,
}

impl Need {
    fn parse(word: &str) -> Result<Need> {
        match word {
            "dist" => Ok(Need::Dist),
            other => bail!("unknown need {other:?}: known is dist"),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct FileSpec {
    /// Relative to the workspace root, `{kernel}` not yet expanded.
    pub source: String,
    /// Absolute path in the guest.
    pub guest: String,
}

impl Header {
    pub fn runs_on(&self, label: &str) -> bool {
        self.kernels
            .as_ref()
            .is_none_or(|ks| ks.iter().any(|k| k == label))
    }
}

pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub header: Header,
    /// What to run: None the plain scenario, Some a variant. `NAME` runs the plain one and
    /// the header's variants (each on its `kernels`), `NAME+VARIANT` that variant only.
    pub runs: Vec<Option<&'static Variant>>,
    /// Loaded as `NAME+VARIANT`: the variant runs on every kernel asked for.
    pub explicit: bool,
}

impl Scenario {
    /// Whether `run` is for `kernel`: a variant of a plain `NAME` only on its kernels.
    pub fn run_on(&self, run: Option<&Variant>, kernel: &str) -> bool {
        match run {
            Some(v) if !self.explicit => v.kernels.contains(&kernel),
            _ => true,
        }
    }

    /// How a run is reported and its files are named: `NAME` or `NAME+VARIANT`.
    pub fn run_name(&self, v: Option<&Variant>) -> String {
        match v {
            Some(v) => format!("{}+{}", self.name, v.name),
            None => self.name.clone(),
        }
    }
}

pub fn dir(root: &Path) -> PathBuf {
    root.join("lab").join("scenarios")
}

/// Names of every scenario in lab/scenarios, sorted.
pub fn all_names(root: &Path) -> Result<Vec<String>> {
    let dir = dir(root);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".sh")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    Ok(names)
}

pub fn load(root: &Path, name: &str) -> Result<Scenario> {
    let (name, only) = match name.split_once('+') {
        Some((n, v)) => (n, Some(variant(v)?)),
        None => (name, None),
    };
    let path = dir(root).join(format!("{name}.sh"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading scenario {name} ({}): see lab/scenarios for the ones there are",
            path.display()
        )
    })?;
    let header =
        parse_header(&text).with_context(|| format!("in the header of {}", path.display()))?;
    let runs = match only {
        Some(v) => vec![Some(v)],
        None => std::iter::once(None)
            .chain(header.variants.iter().map(|v| Some(*v)))
            .collect(),
    };
    Ok(Scenario {
        name: name.to_string(),
        path,
        header,
        runs,
        explicit: only.is_some(),
    })
}

pub fn parse_header(text: &str) -> Result<Header> {
    let mut header = Header {
        kernels: None,
        nics: vec![Nic::Virtio],
        modules: Vec::new(),
        files: Vec::new(),
        timeout_secs: DEFAULT_TIMEOUT_SECS,
        checks: Vec::new(),
        needs: Vec::new(),
        variants: Vec::new(),
        cpus: DEFAULT_CPUS,
        cmdline: Vec::new(),
        ending: Ending::Exit,
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("#!") || line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
        {
            continue;
        }
        let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        match key {
            "kernels" => {
                for k in &words {
                    crate::setup::kernels::spec(k)?;
                }
                if crate::setup::kernels::KERNELS
                    .iter()
                    .all(|k| words.iter().any(|w| w == k.label))
                {
                    bail!(
                        "`# kernels:` lists every lab kernel: leave the line out (no restriction)"
                    );
                }
                header.kernels = Some(words);
            }
            "nics" => header.nics = words.iter().map(|w| Nic::parse(w)).collect::<Result<_>>()?,
            "modules" => header.modules.extend(words),
            "files" => header
                .files
                .extend(words.iter().map(|w| FileSpec::parse(w))),
            "timeout" => {
                header.timeout_secs =
                    value
                        .trim()
                        .trim_end_matches('s')
                        .parse()
                        .with_context(|| {
                            format!("timeout {:?} is not a number of seconds", value.trim())
                        })?
            }
            "checks" => header.checks.extend(words),
            "needs" => {
                header.needs = words
                    .iter()
                    .map(|w| Need::parse(w))
                    .collect::<Result<_>>()?
            }
            "variants" => {
                header.variants = words.iter().map(|w| variant(w)).collect::<Result<_>>()?
            }
            "cpus" => {
                header.cpus = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&n: &u32| (1..=8).contains(&n))
                    .with_context(|| {
                        format!("cpus {:?} is not a number from 1 to 8", value.trim())
                    })?
            }
            "cmdline" => header.cmdline.extend(words),
            "ends" => {
                header.ending = match value.trim() {
                    "panic" => Ending::Panic,
                    "exit" => Ending::Exit,
                    other => bail!("ends {other:?}: known are exit and panic"),
                }
            }
            other => bail!(
                "unknown header key {other:?}: known are kernels, nics, modules, files, timeout, checks, needs, variants, cpus, cmdline, ends"
            ),
        }
    }
    if header.nics.is_empty() {
        bail!("`# nics:` lists no NIC: leave the line out for one virtio NIC");
    }
    if header.nics.iter().filter(|n| **n == Nic::E1000Host).count() > 1 {
        bail!("`# nics:` lists e1000-host twice: the lab runner has one receiver per guest");
    }
    Ok(header)
}

impl FileSpec {
    fn parse(word: &str) -> FileSpec {
        match word.split_once(':') {
            Some((source, guest)) => FileSpec {
                source: source.to_string(),
                guest: guest.to_string(),
            },
            None => FileSpec {
                source: word.to_string(),
                guest: format!("/{}", word.trim_start_matches('/')),
            },
        }
    }

    /// The host path for `kernel`.
    pub fn source_for(&self, root: &Path, kernel: &str) -> PathBuf {
        root.join(self.source.replace("{kernel}", kernel))
    }

    pub fn guest_for(&self, kernel: &str) -> String {
        self.guest.replace("{kernel}", kernel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_header() {
        let text = "#!/bin/sh\n# nics: e1000-host\n# cpus: 1\n# cmdline: e1000.TxDescriptors=48 x=1\n# ends: panic\n";
        let h = parse_header(text).unwrap();
        assert_eq!(h.nics, vec![Nic::E1000Host]);
        assert_eq!(h.cpus, 1);
        assert_eq!(h.cmdline, vec!["e1000.TxDescriptors=48", "x=1"]);
        assert_eq!(h.ending, Ending::Panic);
        assert!(parse_header("# cpus: 0\n").is_err());
        assert!(parse_header("# ends: reboot\n").is_err());
        assert!(parse_header("# nics: e1000-host e1000-host\n").is_err());
        let plain = parse_header("#!/bin/sh\n").unwrap();
        assert_eq!((plain.cpus, plain.ending), (DEFAULT_CPUS, Ending::Exit));
    }

    #[test]
    fn defaults_without_header() {
        let h = parse_header("#!/bin/sh\n. /lib.sh\n# checks: not-in-header\n").unwrap();
        assert_eq!(h.kernels, None);
        assert_eq!(h.nics, vec![Nic::Virtio]);
        assert_eq!(h.timeout_secs, DEFAULT_TIMEOUT_SECS);
        assert!(h.checks.is_empty());
        assert!(h.runs_on("5.10"));
    }

    #[test]
    fn full_header() {
        let text = "#!/bin/sh\n# Bonding over two NICs.\n# kernels: 6.1 6.12\n# nics: virtio e1000\n\
                    # modules: bonding\n# files: target/kmod/{kernel}/p.ko:/p.ko lab/tool\n\
                    # timeout: 90\n# checks: a b\n# checks: c\n\n. /lib.sh\n";
        let h = parse_header(text).unwrap();
        assert_eq!(h.kernels, Some(vec!["6.1".into(), "6.12".into()]));
        assert!(!h.runs_on("5.10"));
        assert_eq!(h.nics, vec![Nic::Virtio, Nic::E1000]);
        assert_eq!(h.modules, vec!["bonding"]);
        assert_eq!(h.timeout_secs, 90);
        assert_eq!(h.checks, vec!["a", "b", "c"]);
        assert_eq!(h.files[0].guest_for("6.1"), "/p.ko");
        assert_eq!(
            h.files[0].source_for(Path::new("/r"), "6.1"),
            PathBuf::from("/r/target/kmod/6.1/p.ko")
        );
        assert_eq!(h.files[1].guest, "/lab/tool");
    }

    #[test]
    fn typo_in_a_key_is_an_error() {
        let err = parse_header("# check: a\n").unwrap_err().to_string();
        assert!(err.contains("check"), "{err}");
    }

    #[test]
    fn needs_name_known_artefacts() {
        assert_eq!(
            parse_header("# needs: dist\n").unwrap().needs,
            vec![Need::Dist]
        );
        assert!(
            parse_header("# needs: dsit\n")
                .unwrap_err()
                .to_string()
                .contains("dsit")
        );
    }

    #[test]
    fn kernels_is_only_a_restriction() {
        let all = crate::setup::kernels::labels().join(" ");
        let err = parse_header(&format!("# kernels: {all}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("every lab kernel"), "{err}");
    }

    #[test]
    fn every_scenario_header_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let names = all_names(root).unwrap();
        assert!(!names.is_empty());
        for name in names {
            let sc = load(root, &name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(!sc.header.checks.is_empty(), "{name} declares no checks");
        }
    }

    /// Every variant's kernels are lab kernels, and a plain name runs the variant only
    /// there while NAME+VARIANT runs it anywhere.
    #[test]
    fn a_variant_runs_on_its_kernels_unless_named() {
        for v in &VARIANTS {
            assert!(!v.kernels.is_empty());
            for k in v.kernels {
                crate::setup::kernels::spec(k).unwrap();
            }
        }
        let plain = Scenario {
            name: "x".into(),
            path: PathBuf::new(),
            header: parse_header("# variants: legacy\n").unwrap(),
            runs: vec![None, Some(&VARIANTS[0])],
            explicit: false,
        };
        assert!(plain.run_on(None, "6.12"));
        assert!(!plain.run_on(Some(&VARIANTS[0]), "6.12"));
        assert!(plain.run_on(Some(&VARIANTS[0]), "5.10"));
        let named = Scenario {
            explicit: true,
            ..plain
        };
        assert!(named.run_on(Some(&VARIANTS[0]), "6.12"));
    }

    #[test]
    fn variants_are_known_runs_of_their_own() {
        let h = parse_header("# variants: legacy\n").unwrap();
        assert_eq!(h.variants, vec![&VARIANTS[0]]);
        assert!(
            VARIANTS[0]
                .env
                .contains(&("NETPOLL_TRACE_OBJECT", "legacy"))
        );
        assert!(
            parse_header("# variants: legacyy\n")
                .unwrap_err()
                .to_string()
                .contains("legacyy")
        );
        assert!(parse_header("# checks: a\n").unwrap().variants.is_empty());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let sc = load(root, "smoke+legacy").unwrap();
        assert_eq!(sc.runs, vec![Some(&VARIANTS[0])]);
        assert_eq!(sc.run_name(sc.runs[0]), "smoke+legacy");
        assert!(load(root, "smoke+nope").is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse_header("# kernels: 4.19\n").is_err());
        assert!(parse_header("# nics: rtl8139\n").is_err());
        assert!(parse_header("# timeout: soon\n").is_err());
    }
}
