//! Resolves the struct offsets the eBPF programs need into the shared `Config`. Rust eBPF
//! cannot emit CO-RE relocations, so this is where one object learns every kernel's
//! layout, never by guessing. The sources, in order (an explicit flag is used as given):
//! 1. `--btf FILE`, else the kernel's own BTF (/sys/kernel/btf/vmlinux); a file may be raw
//!    BTF or BTFHub's `<release>.btf.tar.xz` (`archive`);
//! 2. `--offsets FILE`, else `netpoll_offsets.o` where the patch module is: the offsets the
//!    compiler computed from the running kernel's headers (`headers`);
//! 3. none: reduced mode (return codes only), and a message naming what to provide.
//!
//! What start-up asks of the kernel's own BTF (function presence, the functions' type ids,
//! the offsets) is gathered once per run (`facts`) and kept between runs (`cache`): a later
//! run hashes the BTF and, when the identity matches, parses nothing.

pub mod archive;
mod asked;
pub mod btf;
pub mod cache;
pub mod facts;
pub mod headers;
mod identity;
pub mod layout;
pub mod netconsole_target;
mod notes;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Result, anyhow};
use netpoll_trace_common::Config;

pub use self::layout::fields;
use super::{
    btf::{Btf, FunctionIndex, bytes},
    profile::stage,
};

/// Where the running kernel publishes its BTF.
pub use crate::kernel::btf::bytes::SYSFS_VMLINUX;

/// What kind of source gave the offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// /sys/kernel/btf/vmlinux.
    KernelBtf,
    /// A raw BTF file (`--btf`).
    BtfFile,
    /// BTFHub's archive (`--btf`).
    BtfArchive,
    /// `netpoll_offsets.o`, built from the kernel's headers.
    Headers,
}

impl SourceKind {
    /// The stable name (`offsets --json`'s `source`).
    pub fn name(self) -> &'static str {
        match self {
            Self::KernelBtf => "kernel_btf",
            Self::BtfFile => "btf_file",
            Self::BtfArchive => "btf_archive",
            Self::Headers => "headers",
        }
    }
}

/// The source that gave the offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    pub path: PathBuf,
    /// The archive member used, the release the headers were for, or for the kernel's
    /// BTF "cached facts, PATH" when its facts came from the cache.
    pub detail: Option<String>,
}

impl std::fmt::Display for Source {
    /// The path, and for an archive or the headers what in it was used.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        match (self.kind, &self.detail) {
            (SourceKind::BtfArchive, Some(m)) => write!(f, " (BTFHub archive, {m})"),
            (SourceKind::Headers, Some(r)) => write!(f, " (built from the kernel headers of {r})"),
            (SourceKind::KernelBtf, Some(d)) => write!(f, " ({d})"),
            _ => Ok(()),
        }
    }
}

/// Offsets found, and the fields that could not be resolved (reported to the user).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub config: Config,
    /// Each unresolved item, as "struct.member" or a constant name.
    pub missing: Vec<&'static str>,
    /// Where the offsets came from, or None in reduced mode.
    pub source: Option<Source>,
    /// Sources tried and passed over, each with why (one line each).
    pub notes: Vec<String>,
    /// The cache file the kernel's BTF facts came from, when they did.
    pub cached: Option<PathBuf>,
}

impl Resolved {
    /// No source at all: return codes only.
    pub fn reduced(notes: Vec<String>) -> Self {
        Self {
            config: Config::default(),
            missing: vec!["any struct offset"],
            source: None,
            notes,
            cached: None,
        }
    }

    /// A line for the user naming what will be unknown (and, in reduced mode, what to provide).
    pub fn describe_missing(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let mut line = format!(
            "could not resolve {}; those fields will be reported as null",
            self.missing.join(", ")
        );
        if self.source.is_none() {
            line.push_str(&format!(
                ": {}",
                reduced_hint(super::host::release().unwrap_or("$(uname -r)"))
            ));
        }
        Some(line)
    }
}

/// What to provide when no source exists, for kernel `release`.
pub fn reduced_hint(release: &str) -> String {
    format!(
        "provide one of: the kernel's BTF (CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux); --btf FILE (e.g. BTFHub's {release}.btf.tar.xz); \
         or the offsets from this kernel's headers: build netpoll-patch against them (make -C /lib/modules/{release}/build M=$PWD/netpoll-patch) \
         and install netpoll_offsets.o into /lib/modules/{release}/extra/ (or install the netpoll-patch-dkms package) or pass --offsets FILE"
    )
}

/// One way to get offsets, as `plan` orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    BtfFile(PathBuf),
    KernelBtf,
    Object(PathBuf),
}

/// The sources to try in order, each with whether its failure is fatal (an explicit
/// flag's) or passed over with a note (a source found on its own). Pure.
pub fn plan(
    btf: Option<&Path>,
    object: Option<&Path>,
    kernel_btf: bool,
    found_objects: &[PathBuf],
) -> Vec<(Step, bool)> {
    if let Some(p) = btf {
        return vec![(Step::BtfFile(p.to_path_buf()), true)];
    }
    if let Some(p) = object {
        return vec![(Step::Object(p.to_path_buf()), true)];
    }
    let mut steps = Vec::new();
    if kernel_btf {
        steps.push((Step::KernelBtf, false));
    }
    steps.extend(
        found_objects
            .iter()
            .map(|p| (Step::Object(p.clone()), false)),
    );
    steps
}

/// Resolves the offsets from the first source that works (see the module's doc).
pub fn resolve_sources(btf: Option<&Path>, object: Option<&Path>) -> Result<Resolved> {
    let release = super::host::release();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let found: Vec<PathBuf> =
        headers::default_paths(release.unwrap_or_default(), exe_dir.as_deref())
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
    let mut notes = Vec::new();
    for (step, fatal) in plan(btf, object, Path::new(SYSFS_VMLINUX).exists(), &found) {
        match try_step(&step, release) {
            Ok(r) => return Ok(Resolved { notes, ..r }),
            Err(e) if fatal => return Err(e),
            Err(e) => notes.push(format!("offsets: passed over {e:#}")),
        }
    }
    Ok(Resolved::reduced(notes))
}

fn try_step(step: &Step, release: Option<&str>) -> Result<Resolved> {
    let (layout, source): (Box<dyn layout::Layout>, Source) = match step {
        Step::KernelBtf => {
            let k = kernel_facts(&[])?;
            stage("struct offsets resolved (kernel BTF facts)");
            let (config, missing) = k.resolved;
            let detail = k
                .cached
                .as_ref()
                .map(|p| format!("cached facts, {}", p.display()));
            let source = Source {
                kind: SourceKind::KernelBtf,
                path: SYSFS_VMLINUX.into(),
                detail,
            };
            return Ok(Resolved {
                config,
                missing,
                source: Some(source),
                notes: Vec::new(),
                cached: k.cached,
            });
        }
        Step::BtfFile(p) => {
            let (btf, member) = btf::read_file(p, release)?;
            stage("struct offsets' BTF read and parsed");
            let kind = if member.is_some() {
                SourceKind::BtfArchive
            } else {
                SourceKind::BtfFile
            };
            (
                Box::new(btf),
                Source {
                    kind,
                    path: p.clone(),
                    detail: member,
                },
            )
        }
        Step::Object(p) => {
            let o = headers::read(p, release)?;
            let rel = o.release.clone();
            (
                Box::new(o),
                Source {
                    kind: SourceKind::Headers,
                    path: p.clone(),
                    detail: Some(rel),
                },
            )
        }
    };
    let (config, missing) = layout::resolve(layout.as_ref());
    Ok(Resolved {
        config,
        missing,
        source: Some(source),
        notes: Vec::new(),
        cached: None,
    })
}

/// Whether the kernel's BTF facts may be read from and written to the cache. The command
/// line clears it (`--no-cache`) before anything asks the kernel's BTF: presence is asked
/// from several commands' paths that carry no options.
static USE_CACHE: AtomicBool = AtomicBool::new(true);

/// Uses the cache of the kernel's BTF facts (the default), or not (`--no-cache`).
pub fn use_cache(on: bool) {
    USE_CACHE.store(on, Ordering::Relaxed);
}

/// The kernel's BTF facts for this run, and what they resolve to.
#[derive(Clone)]
struct KernelFacts {
    facts: facts::Facts,
    /// `layout::resolve` over the facts' answers.
    resolved: (Config, Vec<&'static str>),
    /// The cache file they came from; None when parsed in this run.
    cached: Option<PathBuf>,
}

/// The facts gathered this run (the kernel's BTF cannot change while it runs).
static KERNEL_FACTS: std::sync::Mutex<Option<KernelFacts>> = std::sync::Mutex::new(None);

/// Facts parsed this run that the cache does not hold yet, with their BTF's identity:
/// written by `write_cache` once start-up is over, not on the way to `ready` (the store
/// took 28-33 ms of every lab kernel's first ready under TCG), and it is for the next run.
static UNWRITTEN: std::sync::Mutex<Option<(facts::Identity, facts::Facts)>> =
    std::sync::Mutex::new(None);

/// Writes the facts this run parsed to the cache, once; nothing when they came from it
/// (or `--no-cache`). A failure costs only the next run's parse, so it is said at debug.
pub fn write_cache() {
    let Some((identity, facts)) = UNWRITTEN.lock().ok().and_then(|mut slot| slot.take()) else {
        return;
    };
    match cache::store(Path::new(cache::DIR), &identity, &facts) {
        Ok(p) => {
            stage("cache written");
            log::debug!("wrote the kernel's BTF facts to {}", p.display());
        }
        Err(e) => log::debug!("kernel BTF facts not cached: {e:#}"),
    }
}

/// The running kernel's type ids of the functions last asked about (`functions_present`),
/// for fentry (see `btf::function_index_btf`).
static FUNCTION_INDEX: std::sync::Mutex<Option<FunctionIndex>> = std::sync::Mutex::new(None);

/// The kernel's BTF facts about (at least) `names`: this run's, else the cache's when
/// its identity is the live BTF's and it answers everything, else parsed now (and cached).
fn kernel_facts(names: &[&str]) -> Result<KernelFacts> {
    if let Some(k) = KERNEL_FACTS.lock().ok().and_then(|slot| slot.clone())
        && k.facts.present(names).is_some()
    {
        return Ok(k);
    }
    let k = gather(names)?;
    if let Ok(mut slot) = KERNEL_FACTS.lock() {
        *slot = Some(k.clone());
    }
    Ok(k)
}

fn gather(names: &[&str]) -> Result<KernelFacts> {
    let path = Path::new(SYSFS_VMLINUX);
    let dir = Path::new(cache::DIR);
    let release = super::host::release().filter(|_| USE_CACHE.load(Ordering::Relaxed));
    if let Some(release) = release {
        let live = || {
            let id = cache::live_identity(path, release);
            stage("BTF identity read");
            id
        };
        match cache::load(dir, live) {
            Ok(f) => match (f.present(names), f.resolve()) {
                (Some(_), Some(resolved)) => {
                    stage("facts from cache");
                    return Ok(KernelFacts {
                        facts: f,
                        resolved,
                        cached: Some(cache::path_in(dir)),
                    });
                }
                _ => log::debug!(
                    "{}: does not answer everything asked; parsing the BTF",
                    cache::path_in(dir).display()
                ),
            },
            Err(e) => log::debug!("kernel BTF facts not from the cache: {e:#}"),
        }
    }
    // On this thread with the next stage: the lab's cache scenario measures between them.
    stage("kernel BTF: opening");
    let data = bytes::read(path).map_err(|e| anyhow!("reading {SYSFS_VMLINUX}: {e}"))?;
    stage(if data.is_mapped() {
        "kernel BTF mapped"
    } else {
        "kernel BTF read"
    });
    // The kernel's build-id, else the identity of the very bytes parsed, not of an
    // earlier read; taken before the parse keeps them (no second copy of the 5-6 MiB at
    // the start-up peak).
    let identity = release.and_then(|r| {
        cache::identity(r, data.len() as u64, || {
            Ok(facts::Identity::of_bytes(r, &data))
        })
        .ok()
    });
    let btf =
        Btf::from_bytes(data).map_err(|e| anyhow!("parsing BTF in {SYSFS_VMLINUX}: {e:#}"))?;
    stage("kernel BTF parsed");
    let facts = facts::Facts::gather(&btf, names);
    stage("facts gathered from the BTF");
    drop(btf);
    stage("kernel BTF freed");
    let resolved = facts
        .resolve()
        .ok_or_else(|| anyhow!("the recorded layout does not replay (a bug)"))?;
    if let Some(identity) = identity
        && let Ok(mut slot) = UNWRITTEN.lock()
    {
        *slot = Some((identity, facts.clone()));
    }
    Ok(KernelFacts {
        facts,
        resolved,
        cached: None,
    })
}

/// Which of `names` the kernel's BTF describes as functions; None without a readable BTF.
/// Keeps the facts for the next `resolve_sources`, and the functions' type ids for
/// `take_function_index`.
pub fn functions_present(names: &[&str]) -> Option<Vec<bool>> {
    let k = kernel_facts(names)
        .map_err(|e| log::debug!("function presence from BTF: {e:#}"))
        .ok()?;
    if let Ok(mut slot) = FUNCTION_INDEX.lock() {
        *slot = Some(k.facts.index.clone());
    }
    k.facts.present(names)
}

/// The type ids `functions_present` found in the running kernel's BTF, once.
pub fn take_function_index() -> Option<FunctionIndex> {
    FUNCTION_INDEX.lock().ok().and_then(|mut slot| slot.take())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn explicit_flags_are_used_as_given_and_are_fatal() {
        let found = [p("/lib/modules/r/extra/netpoll_offsets.o")];
        assert_eq!(
            plan(Some(&p("/b.btf")), None, true, &found),
            vec![(Step::BtfFile(p("/b.btf")), true)]
        );
        assert_eq!(
            plan(None, Some(&p("/o.o")), true, &found),
            vec![(Step::Object(p("/o.o")), true)]
        );
    }

    #[test]
    fn otherwise_kernel_btf_then_each_object_found_then_nothing() {
        let found = [p("/a/netpoll_offsets.o"), p("/b/netpoll_offsets.o")];
        assert_eq!(
            plan(None, None, true, &found),
            vec![
                (Step::KernelBtf, false),
                (Step::Object(found[0].clone()), false),
                (Step::Object(found[1].clone()), false)
            ]
        );
        assert_eq!(
            plan(None, None, false, &found[1..]),
            vec![(Step::Object(found[1].clone()), false)]
        );
        assert!(plan(None, None, false, &[]).is_empty());
    }

    #[test]
    fn reduced_mode_names_all_three_sources() {
        let r = Resolved::reduced(vec![]);
        let line = r.describe_missing().unwrap();
        assert!(
            line.starts_with("could not resolve") && line.contains("reported as null"),
            "{line}"
        );
        for want in [
            "/sys/kernel/btf/vmlinux",
            "--btf FILE",
            ".btf.tar.xz",
            "M=$PWD/netpoll-patch",
            "--offsets FILE",
        ] {
            assert!(line.contains(want), "{want} not in {line}");
        }
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_source_shows_its_path_first() {
        let s = Source {
            kind: SourceKind::Headers,
            path: p("/x/netpoll_offsets.o"),
            detail: Some("6.1.0".into()),
        };
        assert_eq!(
            s.to_string(),
            "/x/netpoll_offsets.o (built from the kernel headers of 6.1.0)"
        );
        let s = Source {
            kind: SourceKind::KernelBtf,
            path: p(SYSFS_VMLINUX),
            detail: None,
        };
        assert_eq!(s.to_string(), SYSFS_VMLINUX);
    }

    #[test]
    fn an_explicit_file_that_fails_is_an_error_naming_it() {
        let e = resolve_sources(None, Some(Path::new("/nonexistent/netpoll_offsets.o")))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/netpoll_offsets.o"));
        let e = resolve_sources(Some(Path::new("/nonexistent/vmlinux.btf")), None)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/vmlinux.btf"));
    }
}
