//! The flight recorder's pins under bpffs: which maps make a recorder, checking a
//! pin directory before anything trusts it, and `reset`. `lock` keeps two live
//! recorders apart; `snapshot` reads what a dump shows. The programs fill the maps
//! (netpoll-trace-ebpf); `object` creates or reuses the pins.

mod lock;
pub mod pins;
pub mod snapshot;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{Array, Map, MapData, MapType};
use netpoll_trace_common::{
    Config, CpuCounterKey, CpuDev, PollStats, RECORDER_SCHEMA, RecorderMeta, SendStats, SetupEvent,
    maps,
};

pub use lock::Lock;

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
    MapSpec {
        name,
        kind,
        key_size: key_size as u32,
        value_size: value_size as u32,
    }
}

/// Every map the recorder pins. The perf arrays and CONFIG are pinned too, so a
/// process that restarts on pinned links reads the events of the programs already
/// running, and hands them its configuration.
pub const MAPS: [MapSpec; 10] = [
    spec(maps::META, MapType::Array, 4, size_of::<RecorderMeta>()),
    spec(maps::RING, MapType::Hash, 8, size_of::<SetupEvent>()),
    spec(maps::COUNTERS, MapType::Hash, size_of::<CpuCounterKey>(), 8),
    spec(maps::LOSSES, MapType::Array, 4, 8),
    spec(
        maps::POLL_STATS,
        MapType::Hash,
        size_of::<CpuDev>(),
        size_of::<PollStats>(),
    ),
    spec(maps::CONFIG, MapType::Array, 4, size_of::<Config>()),
    spec(maps::SETUP_EVENTS, MapType::PerfEventArray, 4, 4),
    spec(maps::POLL_EVENTS, MapType::PerfEventArray, 4, 4),
    spec(
        maps::SEND_STATS,
        MapType::Hash,
        size_of::<CpuDev>(),
        size_of::<SendStats>(),
    ),
    spec(maps::SEND_EVENTS, MapType::PerfEventArray, 4, 4),
];

/// Whether a pin directory entry is one of ours: a map of `MAPS` or a pinned link.
fn is_ours(name: &str) -> bool {
    name.starts_with(LINK_PREFIX) || MAPS.iter().any(|m| m.name == name)
}

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
    let Some(parent) = dir.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
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
        bail!(
            "cannot stat {}: {}",
            probe.display(),
            std::io::Error::last_os_error()
        );
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
    let fix = format!(
        "remove it with `netpoll-trace reset --pin-dir {}` or choose another --pin-dir",
        dir.display()
    );
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => bail!("reading pin directory {}: {e}", dir.display()),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(Found::Absent);
    }
    names.sort();
    if let Some(v) = schema_of_name(dir).filter(|v| *v != RECORDER_SCHEMA) {
        bail!(
            "{} holds a schema v{v} recorder; this netpoll-trace reads v{RECORDER_SCHEMA}: use the matching netpoll-trace, or {fix}",
            dir.display()
        );
    }
    let foreign: Vec<&String> = names.iter().filter(|n| !is_ours(n)).collect();
    if !foreign.is_empty() {
        bail!(
            "{} is not a netpoll-trace recorder: it holds {}; choose another --pin-dir (netpoll-trace never removes pins it did not make)",
            dir.display(),
            list(&foreign)
        );
    }
    let mut ring_entries = None;
    for m in &MAPS {
        let path = dir.join(m.name);
        // The pin's fdinfo, not BPF_OBJ_GET_INFO_BY_FD: that came in 4.13 (`pins`).
        let info = pins::obj_get(&path)
            .and_then(|fd| pins::shape(std::os::fd::AsFd::as_fd(&fd)))
            .map_err(|_| {
                anyhow!(
                    "{} is an incomplete recorder: {} is missing or not a map; {fix}",
                    dir.display(),
                    m.name
                )
            })?;
        // None: 4.4, no map fdinfo; only "a map" is known (`pins`).
        let Some(info) = info else { continue };
        if info.map_type != m.kind as u32
            || info.key_size != m.key_size
            || info.value_size != m.value_size
        {
            bail!(
                "{} is not a v{RECORDER_SCHEMA} recorder: {} is a map of type {} with {}-byte keys and {}-byte values, expected {:?} ({}) with {} and {}; {fix}",
                dir.display(),
                m.name,
                info.map_type,
                info.key_size,
                info.value_size,
                m.kind,
                m.kind as u32,
                m.key_size,
                m.value_size
            );
        }
        if m.name == maps::RING {
            ring_entries = Some(info.max_entries);
        }
    }
    let bytes = read_meta(dir)?;
    // Unknown RING size (4.4): the header's own is taken, and not checked.
    let ring_entries = ring_entries.unwrap_or_else(|| {
        let at = std::mem::offset_of!(RecorderMeta, ring_size);
        u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    });
    let meta = parse_meta(&bytes, ring_entries)
        .map_err(|why| anyhow!("{} {why}; {fix}", dir.display()))?;
    let links = names
        .iter()
        .filter_map(|n| n.strip_prefix(LINK_PREFIX))
        .map(str::to_string)
        .collect();
    Ok(Found::Recorder(Inspection { meta, links }))
}

fn list(items: &[&String]) -> String {
    let shown: Vec<&str> = items.iter().take(4).map(|s| s.as_str()).collect();
    let more = if items.len() > 4 {
        format!(" and {} more", items.len() - 4)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    if !pins::info_by_fd_supported() {
        // Before 4.13: the legacy object's own map of that name (created, never used by a
        // program) becomes the pinned one; its max_entries may differ (RING's).
        let mut loader = aya::EbpfLoader::new();
        crate::kernel::embedded::size_cpu_maps(&mut loader);
        let mut ebpf = loader
            .load(crate::kernel::embedded::ObjectKind::Legacy.bytes())
            .context("creating the legacy object's maps to read pins through")?;
        let map = ebpf
            .take_map(name)
            .ok_or_else(|| anyhow!("the legacy object has no {name} map"))?;
        pins::adopt(&map, &path, true)
            .with_context(|| format!("opening pinned map {}", path.display()))?;
        return Ok(map);
    }
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("pinned map {name}"))
}

/// The header's bytes as pinned (decoded by `parse_meta`, which the fuzzer reaches).
fn read_meta(dir: &Path) -> Result<[u8; size_of::<RecorderMeta>()]> {
    let meta: Array<_, [u8; size_of::<RecorderMeta>()]> = Array::try_from(open(dir, maps::META)?)?;
    meta.get(&0, 0).context("reading the recorder header")
}

/// The recorder header from META's bytes (whoever could write the pins wrote them),
/// checked before anything trusts it: this schema, and the ring size RING really has.
/// The error completes "<dir> ...".
pub fn parse_meta(bytes: &[u8], ring_entries: u32) -> Result<RecorderMeta, String> {
    if bytes.len() != size_of::<RecorderMeta>() {
        return Err(format!(
            "is corrupt: its header is {} bytes, expected {}",
            bytes.len(),
            size_of::<RecorderMeta>()
        ));
    }
    // SAFETY: the length is checked; RecorderMeta is repr(C) integers, valid for any bits.
    let meta = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RecorderMeta>()) };
    if meta.schema != RECORDER_SCHEMA {
        return Err(format!(
            "is not a v{RECORDER_SCHEMA} recorder: its header says schema {}",
            meta.schema
        ));
    }
    if meta.ring_size != ring_entries {
        return Err(format!(
            "is corrupt: header ring size {} but RING holds {ring_entries}",
            meta.ring_size
        ));
    }
    Ok(meta)
}

/// Writes the header of freshly created pins (the programs record only once it is set).
pub fn init_meta(map: &mut Map, ring_size: u32, now_ns: u64) -> Result<()> {
    let mut meta: Array<_, RecorderMeta> = Array::try_from(map)?;
    if meta.get(&0, 0)?.schema == 0 {
        let m = RecorderMeta {
            schema: RECORDER_SCHEMA,
            ring_size,
            next_seq: 0,
            created_ns: now_ns,
        };
        meta.set(0, &m, 0).context("writing the recorder header")?;
    }
    Ok(())
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
    if !dir.exists() {
        return Ok(None);
    }
    // Before anything is read: a live recorder's pins are never removed, whichever way
    // the directory is spelled here.
    let _lock = Lock::for_reset(dir)?;
    let found = match inspect(dir) {
        Ok(f) => f,
        // Half-made pins of ours (e.g. a missing map) may go; anything foreign stays.
        Err(e) if only_ours(dir) => {
            log::info!("resetting an incomplete recorder: {e:#}");
            Found::Recorder(Inspection {
                meta: RecorderMeta::default(),
                links: Vec::new(),
            })
        }
        Err(e) => return Err(e),
    };
    if matches!(found, Found::Absent) {
        std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
        return Ok(None);
    }
    let mut report = ResetReport { links: 0, maps: 0 };
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Links first: the programs stop writing before their maps go.
    names.sort_by_key(|n| !n.starts_with(LINK_PREFIX));
    for n in &names {
        std::fs::remove_file(dir.join(n))
            .with_context(|| format!("removing {}", dir.join(n).display()))?;
        if n.starts_with(LINK_PREFIX) {
            report.links += 1
        } else {
            report.maps += 1
        }
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    if let Some(parent) = dir.parent().filter(|p| *p == Path::new(PIN_ROOT)) {
        let _ = std::fs::remove_dir(parent); // only when empty
    }
    Ok(Some(report))
}

/// Detaches the pinned probe links of another schema version's recorder at `dir` (its
/// programs would otherwise keep running beside this version's), leaving its maps; how
/// many. Refused, like a reset, while a process records into it.
pub fn detach_links(dir: &Path) -> Result<usize> {
    let _lock = Lock::for_reset(dir)?;
    let mut n = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(LINK_PREFIX) {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Every recorder under `root` (each schema version's directory), for a package's
/// removal: what `reset` does to one, to all; (dir, report) for each that was there.
pub fn reset_all(root: &Path) -> Result<Vec<(PathBuf, ResetReport)>> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(Vec::new());
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| schema_of_name(p).is_some())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs {
        if let Some(r) = reset(&d)? {
            out.push((d, r));
        }
    }
    Ok(out)
}

fn only_ours(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|e| is_ours(&e.file_name().to_string_lossy()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_read_from_the_directory_name() {
        assert_eq!(
            schema_of_name(Path::new("/sys/fs/bpf/netpoll-trace/v2")),
            Some(2)
        );
        assert_eq!(schema_of_name(Path::new("/sys/fs/bpf/x")), None);
        assert!(default_dir().ends_with(format!("v{RECORDER_SCHEMA}")));
    }

    #[test]
    fn map_specs_name_each_map_once() {
        let mut names: Vec<&str> = MAPS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MAPS.len());
        assert!(MAPS.iter().all(|m| maps::ALL.contains(&m.name)));
        let link = format!(
            "{LINK_PREFIX}{}",
            netpoll_trace_common::programs::POLL_DEV_FEXIT
        );
        assert!(is_ours(&link) && is_ours(maps::RING) && !is_ours("FOREIGN"));
    }

    fn meta_bytes(m: RecorderMeta) -> Vec<u8> {
        // SAFETY: plain repr(C) data viewed as bytes.
        unsafe {
            std::slice::from_raw_parts(
                (&m as *const RecorderMeta).cast::<u8>(),
                size_of::<RecorderMeta>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn the_header_is_checked_before_it_is_trusted() {
        let good = RecorderMeta {
            schema: RECORDER_SCHEMA,
            ring_size: 8,
            next_seq: 20,
            created_ns: 7,
        };
        assert_eq!(parse_meta(&meta_bytes(good), 8), Ok(good));
        let e = parse_meta(&meta_bytes(good), 16).unwrap_err();
        assert_eq!(e, "is corrupt: header ring size 8 but RING holds 16");
        let e = parse_meta(
            &meta_bytes(RecorderMeta {
                schema: RECORDER_SCHEMA + 1,
                ..good
            }),
            8,
        )
        .unwrap_err();
        assert!(
            e.contains(&format!("says schema {}", RECORDER_SCHEMA + 1)),
            "{e}"
        );
        assert!(
            parse_meta(&meta_bytes(good)[..23], 8)
                .unwrap_err()
                .contains("23 bytes")
        );
    }
}
