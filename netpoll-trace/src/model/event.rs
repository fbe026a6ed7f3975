//! Decoding of `SetupEvent`s from the perf buffer into records: the one place
//! that turns the kernel's bytes into typed, JSON-ready values (pure).

use anyhow::{Result, ensure};
use netpoll_trace_common::{SetupEvent, event_flags as ef, function};
use serde::{Deserialize, Serialize};

use super::errno::Errno;

/// Which set-up function a record describes, with its stable name.
#[allow(clippy::enum_variant_names, reason = "the kernel's function names")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupFn {
    #[serde(rename = "netpoll_setup")]
    NetpollSetup,
    #[serde(rename = "__netpoll_setup")]
    InnerNetpollSetup,
    /// netconsole's own outer set-up (7.3+, where vmlinux has no netpoll_setup).
    #[serde(rename = "netcons_netpoll_setup")]
    NetconsNetpollSetup,
}

impl SetupFn {
    pub const ALL: [Self; 3] = [
        Self::NetpollSetup,
        Self::InnerNetpollSetup,
        Self::NetconsNetpollSetup,
    ];

    /// The function's id in events and counters (`netpoll_trace_common::function`).
    pub fn id(self) -> u32 {
        match self {
            Self::NetpollSetup => function::NETPOLL_SETUP,
            Self::InnerNetpollSetup => function::INNER_NETPOLL_SETUP,
            Self::NetconsNetpollSetup => function::NETCONS_NETPOLL_SETUP,
        }
    }

    /// The outer set-up (its caller's own netpoll, the device looked up by name):
    /// netpoll_setup, or netconsole's own where the kernel moved it there.
    pub fn is_outer(self) -> bool {
        function::is_outer_setup(self.id())
    }

    /// The set-up function an id names; None for other ids.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.id() == id)
    }

    /// The kernel symbol (without its module), which is also the stable name in JSON.
    pub fn as_str(self) -> &'static str {
        function::without_module(function::symbol(self.id()).unwrap_or("?"))
    }
}

/// Reassembles a sample (possibly split across the ring's end) into an event.
pub fn decode(head: &[u8], tail: &[u8]) -> Result<SetupEvent> {
    decode_as(head, tail)
}

/// A shared event type that any bytes of its size are a valid value of: `#[repr(C)]`
/// plain data with explicit padding (`netpoll_trace_common`), decoded without the BPF
/// library.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self`.
pub unsafe trait Plain: Copy {}

// SAFETY: each is `#[repr(C)]`, fixed-width integers and byte arrays with explicit
// padding (the same types are `aya::Pod` in the common crate).
unsafe impl Plain for SetupEvent {}
unsafe impl Plain for netpoll_trace_common::PollEvent {}
unsafe impl Plain for netpoll_trace_common::SendEvent {}

/// Reassembles a sample into any shared event type.
pub fn decode_as<T: Plain>(head: &[u8], tail: &[u8]) -> Result<T> {
    let size = std::mem::size_of::<T>();
    ensure!(
        head.len() + tail.len() >= size,
        "short sample: {} bytes, want {size}",
        head.len() + tail.len()
    );
    let mut buf = vec![0u8; size];
    let from_head = head.len().min(size);
    buf[..from_head].copy_from_slice(&head[..from_head]);
    buf[from_head..].copy_from_slice(&tail[..size - from_head]);
    // SAFETY: T is Plain (repr(C) plain data, every bit pattern valid), the buffer
    // has its exact size, and read_unaligned does not need alignment.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// C string in a fixed buffer, or None when empty or not valid UTF-8.
pub fn cstr(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = std::str::from_utf8(&bytes[..end]).ok()?;
    (!s.is_empty()).then(|| s.to_string())
}

/// `<ip>:<port>` of a netpoll's IPv4 remote, when the programs read it.
pub fn remote_of(ev: &SetupEvent) -> Option<String> {
    (ev.flags & ef::REMOTE != 0).then(|| {
        let [a, b, c, d] = ev.remote_ip;
        format!("{a}.{b}.{c}.{d}:{}", ev.remote_port)
    })
}

/// The device an event names: the device's own name, else the name the netpoll asked for.
pub fn dev_of(ev: &SetupEvent) -> Option<String> {
    let has = |bit: u32| ev.flags & bit != 0;
    let name = if has(ef::DEV_NAME) {
        cstr(&ev.dev_name)
    } else {
        None
    };
    name.or_else(|| {
        if has(ef::NP_DEV_NAME) {
            cstr(&ev.np_dev_name)
        } else {
            None
        }
    })
}

/// One set-up call, as the JSON `setup` object of docs/contract.md section 4 (the
/// enrichment fields are filled in by `enrich`). Unknown values are None (null).
/// Read back from JSON lines by `dump --from` (see `from_json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SetupRecord {
    #[serde(rename = "type", skip_deserializing, default = "setup_kind")]
    pub kind: &'static str,
    /// The flight recorder's sequence number (dumps only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seq: Option<u64>,
    /// "dump" when names, driver and ops symbol were resolved at dump time, not
    /// when the event was recorded (dumps only).
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub resolved_at: Option<&'static str>,
    pub ts_ns: u64,
    #[serde(rename = "fn")]
    pub function: SetupFn,
    /// Owner of the netpoll (netpoll.name), e.g. "netconsole".
    pub netpoll: Option<String>,
    /// The device's name, or for `netpoll_setup` the name asked for.
    pub dev: Option<String>,
    /// Where the netpoll sends (`<ip>:<port>`, IPv4), when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remote: Option<String>,
    pub ifindex: Option<i32>,
    pub ret: i32,
    /// Derived from `ret` (also when read back from JSON).
    #[serde(skip_deserializing)]
    pub errno: Option<&'static str>,
    pub depth: u32,
    pub duration_ns: u64,
    pub pid: u32,
    pub comm: Option<String>,
    pub driver: Option<String>,
    /// The driver's own version string (ethtool), when it reports one.
    pub driver_version: Option<String>,
    /// Release of the kernel that made the call.
    pub kernel: Option<String>,
    pub ops_symbol: Option<String>,
    pub ops_module: Option<String>,
    pub has_poll_controller: Option<bool>,
    pub has_netpoll_setup: Option<bool>,
    pub netpoll_disabled: Option<bool>,
    /// Raw pointers, for correlation and enrichment; not part of the JSON contract.
    #[serde(skip)]
    pub ops_addr: Option<u64>,
    #[serde(skip)]
    pub netpoll_addr: u64,
}

fn setup_kind() -> &'static str {
    "setup"
}

impl SetupRecord {
    pub fn from_event(ev: &SetupEvent) -> Option<Self> {
        let function = SetupFn::from_id(ev.function)?;
        let has = |bit: u32| ev.flags & bit != 0;
        let dev = dev_of(ev);
        let ops_known = has(ef::OPS);
        Some(Self {
            kind: "setup",
            seq: None,
            resolved_at: None,
            ts_ns: ev.ts_ns,
            function,
            netpoll: if has(ef::OWNER) {
                cstr(&ev.owner)
            } else {
                None
            },
            dev,
            remote: remote_of(ev),
            ifindex: has(ef::IFINDEX).then_some(ev.ifindex),
            ret: ev.ret,
            errno: Errno::from_ret(ev.ret).and_then(Errno::name),
            depth: ev.depth,
            duration_ns: ev.duration_ns,
            pid: (ev.pid_tgid >> 32) as u32,
            comm: cstr(&ev.comm),
            driver: None,
            driver_version: None,
            kernel: None,
            ops_symbol: None,
            ops_module: None,
            has_poll_controller: ops_known.then_some(ev.poll_controller != 0),
            has_netpoll_setup: ops_known.then_some(ev.netpoll_setup_op != 0),
            netpoll_disabled: has(ef::PRIV_FLAGS).then_some(has(ef::NETPOLL_DISABLED)),
            ops_addr: (ops_known && ev.ops != 0).then_some(ev.ops),
            netpoll_addr: ev.netpoll,
        })
    }

    pub fn failed(&self) -> bool {
        self.ret < 0
    }

    /// A `setup` JSON line as written by `watch --json`/`--record` or a dump.
    pub fn from_json(v: serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut r: Self = serde_json::from_value(v)?;
        r.errno = Errno::from_ret(r.ret).and_then(Errno::name);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(ev: &SetupEvent) -> Vec<u8> {
        // SAFETY: plain repr(C) data viewed as bytes.
        unsafe {
            std::slice::from_raw_parts(
                (ev as *const SetupEvent).cast::<u8>(),
                size_of::<SetupEvent>(),
            )
        }
        .to_vec()
    }

    fn name16(s: &str) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..s.len()].copy_from_slice(s.as_bytes());
        b
    }

    fn inner_eth0() -> SetupEvent {
        let mut ev = SetupEvent::ZERO;
        ev.function = function::INNER_NETPOLL_SETUP;
        ev.ret = -524;
        ev.pid_tgid = (1234u64 << 32) | 1234;
        ev.dev_name = name16("eth0");
        ev.np_dev_name = name16("eth0");
        ev.owner = name16("netconsole");
        ev.comm = name16("modprobe");
        ev.ifindex = 2;
        ev.ops = 0xffff_ffff_c012_3000;
        ev.netpoll_setup_op = 0;
        ev.poll_controller = 0;
        ev.flags =
            ef::DEV_NAME | ef::IFINDEX | ef::OPS | ef::PRIV_FLAGS | ef::OWNER | ef::NP_DEV_NAME;
        ev
    }

    #[test]
    fn decodes_a_sample_split_across_the_ring_end() {
        let b = bytes(&inner_eth0());
        for split in [0, 1, 7, 100, b.len()] {
            let ev = decode(&b[..split], &b[split..]).unwrap();
            assert_eq!(ev.ret, -524);
            assert_eq!(ev.dev_name, name16("eth0"));
        }
        assert!(decode(&b[..10], &[]).is_err());
    }

    #[test]
    fn record_names_errno_and_keeps_unknowns_null() {
        let r = SetupRecord::from_event(&inner_eth0()).unwrap();
        assert_eq!(r.function, SetupFn::InnerNetpollSetup);
        assert_eq!(r.errno, Some("ENOTSUPP"));
        assert_eq!(r.dev.as_deref(), Some("eth0"));
        assert_eq!(r.netpoll.as_deref(), Some("netconsole"));
        assert_eq!(r.pid, 1234);
        assert_eq!(r.has_poll_controller, Some(false));
        assert_eq!(r.netpoll_disabled, Some(false));
        assert!(r.failed());

        let mut reduced = inner_eth0();
        reduced.flags = 0;
        let r = SetupRecord::from_event(&reduced).unwrap();
        assert_eq!(r.dev, None);
        assert_eq!(r.has_poll_controller, None);
        assert_eq!(r.netpoll_disabled, None);
        assert_eq!(r.ifindex, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["dev"].is_null() && json["has_poll_controller"].is_null());
        assert_eq!(json["fn"], "__netpoll_setup");
        assert_eq!(json["type"], "setup");
    }

    #[test]
    fn outer_call_without_device_uses_the_requested_name() {
        let mut ev = inner_eth0();
        ev.function = function::NETPOLL_SETUP;
        ev.flags = ef::NP_DEV_NAME | ef::OWNER;
        ev.np_dev_name = name16("d0");
        ev.ret = -89;
        let r = SetupRecord::from_event(&ev).unwrap();
        assert_eq!(r.dev.as_deref(), Some("d0"));
        assert_eq!(r.errno, Some("EDESTADDRREQ"));
        let mut bad = ev;
        bad.function = 99;
        assert!(SetupRecord::from_event(&bad).is_none());
    }

    #[test]
    fn a_json_line_reads_back_into_the_same_record() {
        let mut r = SetupRecord::from_event(&inner_eth0()).unwrap();
        r.driver = Some("virtio_net".into());
        r.ops_addr = None;
        r.netpoll_addr = 0;
        let line = serde_json::to_string(&r).unwrap();
        let back = SetupRecord::from_json(serde_json::from_str(&line).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.errno, Some("ENOTSUPP"));
        let mut seq = r.clone();
        seq.seq = Some(7);
        assert!(serde_json::to_string(&seq).unwrap().contains(r#""seq":7"#));
        assert!(!line.contains("seq"), "{line}");
    }

    #[test]
    fn function_names_are_the_kernel_symbols_and_match_serde() {
        for f in SetupFn::ALL {
            assert_eq!(SetupFn::from_id(f.id()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        assert_eq!(SetupFn::from_id(function::NETPOLL_POLL_DEV), None);
    }
}
