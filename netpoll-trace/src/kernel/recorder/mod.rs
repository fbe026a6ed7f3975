//! The flight recorder's pins under bpffs: which maps make a recorder, checking a
//! pin directory before anything trusts it, the lock that keeps two live
//! recorders apart, reading a snapshot, and `reset`. The programs fill the maps
//! (netpoll-trace-ebpf); `loader` creates or reuses the pins; `dump` renders.

use std::{
    fs::File,
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{Array, HashMap, Map, MapData, MapInfo, MapType, PerCpuArray, PerCpuHashMap};
use netpoll_trace_common::{
    Config, CounterKey, PollStats, RECORDER_SCHEMA, RecorderMeta, SetupEvent, loss,
};

use crate::poll::{self, PollSummary};

/// Where the recorders of every schema version live.
pub const PIN_ROOT: &str = "/sys/fs/bpf/netpoll-trace";

/// This version's pin directory.
pub fn default_dir() -> PathBuf {
    Path::new(PIN_ROOT).join(format!("v{RECORDER_SCHEMA}"))
}

/// Prefix of a pinned link's file name; the rest is the program's name.
pub const LINK_PREFIX: &str = "link_";

/// A map of the recorder: its name in the eBPF object (and pin file) and shape.
pub struct MapSpec {
    pub name: &'static str,
    kind: MapType,
    key_size: u32,
    value_size: u32,
}

const fn spec(name: &'static str, kind: MapType, key_size: usize, value_size: usize) -> MapSpec {
    MapSpec { name, kind, key_size: key_size as u32, value_size: value_size as u32 }
}

/// Every map the recorder pins. The perf arrays and CONFIG are pinned too, so a
/// process that restarts on pinned links reads the events of the programs already
/// running, and hands them its configuration.
pub const MAPS: [MapSpec; 8] = [
    spec("META", MapType::Array, 4, size_of::<RecorderMeta>()),
    spec("RING", MapType::Hash, 8, size_of::<SetupEvent>()),
    spec("COUNTERS", MapType::PerCpuHash, size_of::<CounterKey>(), 8),
    spec("LOSSES", MapType::PerCpuArray, 4, 8),
    spec("POLL_STATS", MapType::PerCpuHash, 8, size_of::<PollStats>()),
    spec("CONFIG", MapType::Array, 4, size_of::<Config>()),
    spec("SETUP_EVENTS", MapType::PerfEventArray, 4, 4),
    spec("POLL_EVENTS", MapType::PerfEventArray, 4, 4),
];

/// What a pin directory holds.
#[derive(Debug)]
pub enum Found {
    /// Nothing (or an empty directory): a recorder can be created there.
    Absent,
    Recorder(Inspection),
}

#[derive(Debug)]
pub struct Inspection {
    pub meta: RecorderMeta,
    /// Programs whose links are pinned: recording goes on without any process.
    pub links: Vec<String>,
}

/// The schema a directory named `v<N>` claims, if it is named so.
fn schema_of_name(dir: &Path) -> Option<u32> {
    dir.file_name()?.to_str()?.strip_prefix('v')?.parse().ok()
}

/// Recorders of other schema versions next to `dir` (reported, never reused).
pub fn other_versions(dir: &Path) -> Vec<PathBuf> {
    let Some(parent) = dir.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != dir && schema_of_name(p).is_some_and(|v| v != RECORDER_SCHEMA))
        .collect();
    out.sort();
    out
}

/// Fails unless `dir` is (or would be created) on a bpffs mount.
pub fn require_bpffs(dir: &Path) -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let mut probe = dir;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("pin directory {} contains a NUL byte", dir.display()))?;
    // SAFETY: statfs fills a zeroed struct for a valid C path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!("cannot stat {}: {}", probe.display(), std::io::Error::last_os_error());
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        bail!(
            "{} is not on a BPF filesystem, so nothing can be pinned there; mount one with `mount -t bpf bpf /sys/fs/bpf` or pass --pin-dir under a bpffs mount",
            dir.display()
        );
    }
    Ok(())
}

/// Checks everything in `dir` before it is read or reused: an incomplete,
/// foreign or other-version directory is an error that says what is wrong.
pub fn inspect(dir: &Path) -> Result<Found> {
    let fix = format!("remove it with `netpoll-trace reset --pin-dir {}` or choose another --pin-dir", dir.display());
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => bail!("reading pin directory {}: {e}", dir.display()),
    };
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    if names.is_empty() {
        return Ok(Found::Absent);
    }
    names.sort();
    if let Some(v) = schema_of_name(dir).filter(|v| *v != RECORDER_SCHEMA) {
        bail!("{} holds a schema v{v} recorder; this netpoll-trace reads v{RECORDER_SCHEMA}: use the matching netpoll-trace, or {fix}", dir.display());
    }
    let foreign: Vec<&String> =
        names.iter().filter(|n| !n.starts_with(LINK_PREFIX) && !MAPS.iter().any(|m| m.name == n.as_str())).collect();
    if !foreign.is_empty() {
        bail!(
            "{} is not a netpoll-trace recorder: it holds {}; choose another --pin-dir (netpoll-trace never removes pins it did not make)",
            dir.display(),
            list(&foreign)
        );
    }
    let mut ring_entries = 0;
    for m in &MAPS {
        let path = dir.join(m.name);
        let info = MapInfo::from_pin(&path)
            .map_err(|_| anyhow!("{} is an incomplete recorder: {} is missing or not a map; {fix}", dir.display(), m.name))?;
        let kind = info.map_type().ok();
        if kind != Some(m.kind) || info.key_size() != m.key_size || info.value_size() != m.value_size {
            bail!(
                "{} is not a v{RECORDER_SCHEMA} recorder: {} is a {:?} map with {}-byte keys and {}-byte values, expected {:?} with {} and {}; {fix}",
                dir.display(),
                m.name,
                kind,
                info.key_size(),
                info.value_size(),
                m.kind,
                m.key_size,
                m.value_size
            );
        }
        if m.name == "RING" {
            ring_entries = info.max_entries();
        }
    }
    let meta = read_meta(dir)?;
    if meta.schema != RECORDER_SCHEMA {
        bail!("{} is not a v{RECORDER_SCHEMA} recorder: its header says schema {}; {fix}", dir.display(), meta.schema);
    }
    if meta.ring_size != ring_entries {
        bail!("{} is corrupt: header ring size {} but RING holds {}; {fix}", dir.display(), meta.ring_size, ring_entries);
    }
    let links = names.iter().filter_map(|n| n.strip_prefix(LINK_PREFIX)).map(str::to_string).collect();
    Ok(Found::Recorder(Inspection { meta, links }))
}

fn list(items: &[&String]) -> String {
    let shown: Vec<&str> = items.iter().take(4).map(|s| s.as_str()).collect();
    let more = if items.len() > 4 { format!(" and {} more", items.len() - 4) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

fn open(dir: &Path, name: &str) -> Result<Map> {
    let data = MapData::from_pin(dir.join(name)).with_context(|| format!("opening pinned map {}", dir.join(name).display()))?;
    Map::from_map_data(data).with_context(|| format!("pinned map {name}"))
}

fn read_meta(dir: &Path) -> Result<RecorderMeta> {
    let meta: Array<_, RecorderMeta> = Array::try_from(open(dir, "META")?)?;
    meta.get(&0, 0).context("reading the recorder header")
}

/// Writes the header of freshly created pins (the programs record only once it is set).
pub fn init_meta(map: &mut Map, ring_size: u32, now_ns: u64) -> Result<()> {
    let mut meta: Array<_, RecorderMeta> = Array::try_from(map)?;
    if meta.get(&0, 0)?.schema == 0 {
        let m = RecorderMeta { schema: RECORDER_SCHEMA, ring_size, next_seq: 0, created_ns: now_ns };
        meta.set(0, m, 0).context("writing the recorder header")?;
    }
    Ok(())
}

/// Keeps a second live recorder off the same pins (its probes would count every
/// set-up twice, and it would steal the first one's events). Held while the
/// recorder runs; the kernel drops it when the process dies, even by SIGKILL.
pub struct Lock {
    _file: File,
}

fn lock_path(dir: &Path) -> PathBuf {
    let name: String =
        dir.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    Path::new("/run/netpoll-trace").join(format!("{name}.lock"))
}

impl Lock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = lock_path(dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another netpoll-trace ({}) is recording into {}; stop it first (a second one would count every set-up twice)",
                holder.trim().strip_prefix("pid ").map_or("pid unknown".to_string(), |p| format!("pid {p}")),
                dir.display()
            );
        }
        let _ = file.set_len(0);
        let _ = std::io::Write::write_all(&mut &file, format!("pid {}\n", std::process::id()).as_bytes());
        Ok(Self { _file: file })
    }
}

/// What `reset` removed.
pub struct ResetReport {
    pub links: usize,
    pub maps: usize,
}

/// Detaches pinned links (removing a link's pin drops the kernel's last reference
/// to it) and removes the map pins and the directory. Refuses a foreign directory
/// and a recorder that is running.
pub fn reset(dir: &Path) -> Result<Option<ResetReport>> {
    let found = match inspect(dir) {
        Ok(f) => f,
        // Half-made pins of ours (e.g. a missing map) may go; anything foreign stays.
        Err(e) if only_ours(dir) => {
            log::info!("resetting an incomplete recorder: {e:#}");
            Found::Recorder(Inspection { meta: RecorderMeta::default(), links: Vec::new() })
        }
        Err(e) => return Err(e),
    };
    if matches!(found, Found::Absent) {
        if dir.exists() {
            std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        return Ok(None);
    }
    let _lock = Lock::acquire(dir)?;
    let mut report = ResetReport { links: 0, maps: 0 };
    let mut names: Vec<String> =
        std::fs::read_dir(dir)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    // Links first: the programs stop writing before their maps go.
    names.sort_by_key(|n| !n.starts_with(LINK_PREFIX));
    for n in &names {
        std::fs::remove_file(dir.join(n)).with_context(|| format!("removing {}", dir.join(n).display()))?;
        if n.starts_with(LINK_PREFIX) { report.links += 1 } else { report.maps += 1 }
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    if let Some(parent) = dir.parent().filter(|p| *p == Path::new(PIN_ROOT)) {
        let _ = std::fs::remove_dir(parent); // only when empty
    }
    Ok(Some(report))
}

fn only_ours(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(LINK_PREFIX) || MAPS.iter().any(|m| m.name == n)
        })
    })
}

/// Everything a dump shows, read from the pins without attaching anything.
pub struct Snapshot {
    pub meta: RecorderMeta,
    /// Ring entries by sequence number, oldest first.
    pub events: Vec<(u64, SetupEvent)>,
    /// Per-key totals over all CPUs.
    pub counters: Vec<(CounterKey, u64)>,
    pub unrecorded: u64,
    pub counters_full: u64,
    pub polls: Vec<PollSummary>,
    pub links: Vec<String>,
    /// Kernel memory the pinned maps take (their fdinfo `memlock`).
    pub memlock_bytes: u64,
}

pub fn read(dir: &Path, now_ns: u64) -> Result<Snapshot> {
    let Found::Recorder(insp) = inspect(dir)? else {
        bail!(
            "no flight recorder at {} (nothing pinned); start one with `netpoll-trace agent` or `netpoll-trace watch --persist`",
            dir.display()
        );
    };
    let mut memlock_bytes = 0;
    let mut maps = std::collections::HashMap::new();
    for m in &MAPS {
        let map = open(dir, m.name)?;
        memlock_bytes += memlock_of(&map).unwrap_or(0);
        maps.insert(m.name, map);
    }
    let take = |maps: &mut std::collections::HashMap<&str, Map>, n: &str| maps.remove(n).ok_or_else(|| anyhow!("{n} not opened"));

    let ring: HashMap<_, u64, SetupEvent> = HashMap::try_from(take(&mut maps, "RING")?)?;
    let mut events: Vec<(u64, SetupEvent)> = ring.iter().collect::<Result<_, _>>().context("reading RING")?;
    events.sort_by_key(|(seq, _)| *seq);

    let counters_map: PerCpuHashMap<_, CounterKey, u64> = PerCpuHashMap::try_from(take(&mut maps, "COUNTERS")?)?;
    let mut counters = Vec::new();
    for entry in counters_map.iter() {
        let (k, per_cpu) = entry.context("reading COUNTERS")?;
        counters.push((k, per_cpu.iter().sum()));
    }
    let losses: PerCpuArray<_, u64> = PerCpuArray::try_from(take(&mut maps, "LOSSES")?)?;
    let loss_total = |i: u32| -> Result<u64> { Ok(losses.get(&i, 0).context("reading LOSSES")?.iter().sum()) };

    let stats: PerCpuHashMap<_, u64, PollStats> = PerCpuHashMap::try_from(take(&mut maps, "POLL_STATS")?)?;
    let mut polls = Vec::new();
    for entry in stats.iter() {
        let (_dev, values) = entry.context("reading POLL_STATS")?;
        polls.push(poll::summarize(&values, now_ns));
    }
    polls.sort_by(|a, b| a.dev.cmp(&b.dev));
    Ok(Snapshot {
        meta: insp.meta,
        events,
        counters,
        unrecorded: loss_total(loss::UNRECORDED)?,
        counters_full: loss_total(loss::COUNTERS_FULL)?,
        polls,
        links: insp.links,
        memlock_bytes,
    })
}

/// The `memlock` line of a map fd's fdinfo (bytes the kernel charges for it).
fn memlock_of(map: &Map) -> Option<u64> {
    let fd = match map {
        Map::Array(d) | Map::HashMap(d) | Map::PerCpuArray(d) | Map::PerCpuHashMap(d) | Map::PerfEventArray(d) => d.fd(),
        _ => return None,
    };
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
    text.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse().ok())
}

/// The ring's bookkeeping: how many events were ever recorded, how many it kept,
/// how many were overwritten and which sequence numbers are missing. Pure.
#[derive(Debug, PartialEq, Eq)]
pub struct RingAccount {
    pub recorded: u64,
    pub kept: u64,
    pub overwritten: u64,
    /// Numbers inside the kept window that hold no event (lost, never silently).
    pub missing: Vec<u64>,
}

impl RingAccount {
    /// `seqs` sorted ascending. `next_seq` may lag a racing writer by a few, so
    /// the newest kept number counts too.
    pub fn new(next_seq: u64, ring_size: u32, seqs: &[u64]) -> Self {
        let head = seqs.last().map_or(next_seq, |&s| next_seq.max(s + 1));
        let window_start = head.saturating_sub(ring_size as u64);
        let missing: Vec<u64> =
            (window_start..head).filter(|s| seqs.binary_search(s).is_err()).take(64).collect();
        Self { recorded: head, kept: seqs.len() as u64, overwritten: window_start, missing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_account_of_an_unfilled_ring() {
        let a = RingAccount::new(3, 8, &[0, 1, 2]);
        assert_eq!(a, RingAccount { recorded: 3, kept: 3, overwritten: 0, missing: vec![] });
    }

    #[test]
    fn ring_account_after_wrap_around() {
        let seqs: Vec<u64> = (12..20).collect();
        let a = RingAccount::new(20, 8, &seqs);
        assert_eq!(a, RingAccount { recorded: 20, kept: 8, overwritten: 12, missing: vec![] });
    }

    #[test]
    fn ring_account_shows_gaps_and_a_lagging_head() {
        // next_seq lags (a racing writer stored an older value); 15 was never written.
        let a = RingAccount::new(17, 8, &[12, 13, 14, 16, 17, 18, 19]);
        assert_eq!(a.recorded, 20);
        assert_eq!(a.overwritten, 12);
        assert_eq!(a.missing, vec![15]);
    }

    #[test]
    fn schema_is_read_from_the_directory_name() {
        assert_eq!(schema_of_name(Path::new("/sys/fs/bpf/netpoll-trace/v2")), Some(2));
        assert_eq!(schema_of_name(Path::new("/sys/fs/bpf/x")), None);
        assert!(default_dir().ends_with(format!("v{RECORDER_SCHEMA}")));
    }

    #[test]
    fn lock_paths_differ_per_directory_and_stay_flat() {
        let a = lock_path(Path::new("/sys/fs/bpf/netpoll-trace/v1"));
        let b = lock_path(Path::new("/sys/fs/bpf/other"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/run/netpoll-trace")));
    }

    #[test]
    fn map_specs_name_each_map_once() {
        let mut names: Vec<&str> = MAPS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MAPS.len());
    }
}
