//! Entry points for the fuzz targets (`netpoll-trace/fuzz/`, `cargo xtask fuzz`): each
//! hands untrusted bytes to one parser as the tool does, and then uses what came out as
//! the tool does. Every input must end in Ok or an error: never a panic, a hang or an
//! allocation a length field asked for. Not an API: the targets are its only callers.

use crate::{
    kernel::{
        btf::{self, Btf},
        module_btf,
        offsets::{archive, layout},
        recorder,
        targets::TARGETS,
    },
    model::{
        config::AgentConfig, correlate, diagnosis, kernel_log::KernelLog, recorder as recorded,
        ring::RingAccount,
    },
    sinks::metrics::http,
};

/// The functions the tool looks up in the kernel's BTF (fentry attach, `check`).
const FUNCTIONS: &[&str] = &["netpoll_setup", "__netpoll_setup", "netpoll_poll_dev"];

/// The agent's configuration file (`agent --config`).
pub fn config(text: &str) {
    let _ = AgentConfig::parse(text);
}

/// A `dump --from` file: each line as its reader checks and decodes it, then the set-ups
/// grouped and diagnosed, as `cli::commands::dump::from_file` does.
pub fn json_lines(text: &str) {
    let mut records = Vec::new();
    let mut log = KernelLog::unbounded();
    // The reader `dump --from` uses, with its line cap; it stops at the first bad line.
    for line in recorded::read_lines(text.as_bytes(), recorded::MAX_LINE) {
        match line {
            Ok(recorded::RecordedLine::Setup(r)) => records.push(*r),
            Ok(recorded::RecordedLine::Diagnosis {
                kernel_message: Some(m),
            }) => log.push(m, 0),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for attempt in correlate::group(records) {
        let _ = diagnosis::diagnose(&attempt, &diagnosis::Context::default(), &mut log);
    }
}

/// A raw BTF (`/sys/kernel/btf/vmlinux`, `--btf FILE`): parsed, every offset resolved,
/// and the functions fentry needs indexed and rebuilt into the stand-in aya is handed.
pub fn btf(data: &[u8]) {
    let Ok(btf) = Btf::parse(data) else { return };
    let _ = layout::resolve(&btf);
    for f in FUNCTIONS {
        std::hint::black_box(btf.has_function(f));
    }
    let index = btf.function_index(FUNCTIONS);
    // The stand-in must answer aya's lookup by name with the ids the index holds.
    let small = btf::function_index_btf(&index);
    for (name, id, _) in &index.funcs {
        let found = small
            .id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func)
            .ok();
        assert_eq!(found, Some(*id), "function_index_btf lost {name}'s type id");
    }
}

/// A `--btf FILE` that is not raw BTF: BTFHub's `.btf.tar.xz`, or a tar; the BTF found
/// in it goes on as `btf` does.
pub fn btf_archive(data: &[u8]) {
    if let Ok(bytes) = archive::from_bytes(data.to_vec(), Some("6.1.0-test-amd64")) {
        btf(&bytes.data);
    }
}

/// A module's file where the module is not loaded (`netconsole.ko`, 7.3+): its ELF
/// sections read, its `.BTF` split over a base BTF, then looked up as start-up does. The
/// input's first two bytes (little-endian) are the module file's length; the rest after
/// it is the base.
pub fn module_btf(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (file, base) = rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()));
    let Ok(raw) = module_btf::module_elf_btf(file) else {
        return;
    };
    let path = std::path::Path::new("netconsole.ko");
    let source = module_btf::Source::File(path.into());
    let Ok(m) = module_btf::split(raw, &mut std::io::Cursor::new(base), path, source) else {
        return;
    };
    // The module functions the targets table looks up, as start-up does.
    for t in TARGETS.iter().filter(|t| t.module.is_some()) {
        let f = netpoll_trace_common::function::without_module(t.symbol);
        std::hint::black_box((m.has_function(f), m.first_param_struct(f)));
    }
    std::hint::black_box(module_btf::netconsole_target(&m));
}

/// A request head the `/metrics` endpoint read from a client.
pub fn http_request(buf: &[u8]) {
    let _ = http::parse_request(buf);
}

/// The flight recorder's pinned header (`META`), then the ring bookkeeping a dump does
/// with it: the input is the header's bytes, RING's capacity, then sequence numbers.
pub fn recorder_meta(data: &[u8]) {
    const META: usize = size_of::<netpoll_trace_common::RecorderMeta>();
    let Some((head, rest)) = data.split_at_checked(META) else {
        return;
    };
    let Some((cap, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let Ok(meta) = recorder::parse_meta(head, u32::from_ne_bytes(*cap)) else {
        return;
    };
    let mut seqs: Vec<u64> = rest
        .as_chunks::<8>()
        .0
        .iter()
        .map(|c| u64::from_ne_bytes(*c))
        .collect();
    seqs.sort_unstable();
    let _ = RingAccount::new(meta.next_seq, meta.ring_size, &seqs);
}

/// Datagrams from the network (`receive`): the input is cut into datagrams at each 0xff
/// byte, and the byte before each names one of 4 senders; every bound the receiver keeps
/// must hold after every datagram.
pub fn netconsole(data: &[u8]) {
    let mut r = crate::model::netconsole::Receiver::default();
    for chunk in data.split(|b| *b == 0xff) {
        let (from, bytes) = match chunk.split_first() {
            Some((s, rest)) => (std::net::SocketAddr::from(([10, 0, 0, s % 4], 6666)), rest),
            None => continue,
        };
        if let Some(m) = r.take(from, bytes) {
            let _ = crate::model::netconsole::printable(&m.text);
            let _ = serde_json::to_string(&m);
        }
        assert!(r.within_bounds(), "a receiver bound broke after {bytes:?}");
    }
    let _ = r.summary();
}
