//! netconsole's delivery through netpoll: per-CPU send statistics summed into one
//! summary per device, and single drops and slow sends (pure).

use netpoll_trace_common::{
    POLL_BUCKETS, SendEvent, SendStats, event_flags as ef, send_drop, send_event,
};
use serde::{Serialize, Serializer, ser::SerializeMap};

use super::{
    event::cstr,
    poll::{Bucket, buckets},
};

/// Why a message was not handed to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    NoSkb,
    NoNpinfo,
    NotRunning,
    NotPresent,
}

impl DropReason {
    pub const ALL: [Self; send_drop::SLOTS] = [
        Self::NoSkb,
        Self::NoNpinfo,
        Self::NotRunning,
        Self::NotPresent,
    ];

    /// The programs' `send_drop` slot.
    pub fn slot(self) -> u32 {
        match self {
            Self::NoSkb => send_drop::NO_SKB,
            Self::NoNpinfo => send_drop::NO_NPINFO,
            Self::NotRunning => send_drop::NOT_RUNNING,
            Self::NotPresent => send_drop::NOT_PRESENT,
        }
    }

    pub fn from_slot(slot: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.slot() == slot)
    }

    /// The name in JSON and the metrics' `result` label.
    pub fn as_str(self) -> &'static str {
        send_drop::NAMES[self.slot() as usize]
    }

    /// What it means, for the terminal.
    pub fn explain(self) -> &'static str {
        match self {
            Self::NoSkb => "no skb: netpoll's pool and the allocator were empty",
            Self::NoNpinfo => "the device has no netpoll state (torn down under the sender)",
            Self::NotRunning => "the device is not running (down)",
            Self::NotPresent => "the device is not present (detached or being removed)",
        }
    }
}

impl Serialize for DropReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Drops per reason, every reason listed (zeros too), as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DroppedBy(pub [u64; send_drop::SLOTS]);

impl DroppedBy {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.slot() as usize]
    }
}

impl Serialize for DroppedBy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(send_drop::SLOTS))?;
        for r in DropReason::ALL {
            m.serialize_entry(r.as_str(), &self.get(r))?;
        }
        m.end()
    }
}

/// The JSON `send` object: a device's send path since the programs were loaded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SendSummary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    pub ifindex: Option<i32>,
    /// netpoll_send_udp calls (netconsole messages and fragments) and their bytes.
    pub messages: u64,
    pub bytes: u64,
    /// Handed to the driver.
    pub sent: u64,
    /// Queued to netpoll's own queue for its worker.
    pub deferred: u64,
    /// Every drop, and per reason.
    pub dropped: u64,
    pub dropped_by: DroppedBy,
    /// Time in the skb transmit (its retry loop spins with interrupts off).
    pub total_ns: u64,
    pub max_ns: u64,
    /// Non-empty buckets only, ascending.
    pub histogram: Vec<Bucket>,
    /// The last drop (CLOCK_MONOTONIC) and why; null when none.
    pub last_drop_ns: Option<u64>,
    pub last_drop_reason: Option<DropReason>,
}

impl SendSummary {
    /// Skb transmits timed (sent and deferred; drops are decided before the transmit).
    pub fn transmits(&self) -> u64 {
        self.sent + self.deferred
    }
}

/// Sums one device's per-CPU values; identity from whichever CPU named it.
pub fn summarize(per_cpu: &[SendStats], now_ns: u64) -> SendSummary {
    let mut hist = [0u64; POLL_BUCKETS];
    let mut s = SendSummary {
        kind: "send",
        ts_ns: now_ns,
        dev: None,
        ifindex: None,
        messages: 0,
        bytes: 0,
        sent: 0,
        deferred: 0,
        dropped: 0,
        dropped_by: DroppedBy::default(),
        total_ns: 0,
        max_ns: 0,
        histogram: Vec::new(),
        last_drop_ns: None,
        last_drop_reason: None,
    };
    for c in per_cpu {
        if c.last_drop_ns != 0 && s.last_drop_ns.is_none_or(|t| c.last_drop_ns > t) {
            s.last_drop_ns = Some(c.last_drop_ns);
            s.last_drop_reason = DropReason::from_slot(c.last_drop_reason);
        }
        s.messages += c.messages;
        s.bytes += c.bytes;
        s.sent += c.sent;
        s.deferred += c.deferred;
        for (d, v) in s.dropped_by.0.iter_mut().zip(c.dropped) {
            *d += v;
        }
        s.total_ns += c.total_ns;
        s.max_ns = s.max_ns.max(c.max_ns);
        for (h, v) in hist.iter_mut().zip(c.hist.iter()) {
            *h += v;
        }
        if s.dev.is_none() && c.flags & ef::DEV_NAME != 0 {
            s.dev = cstr(&c.name);
        }
        if s.ifindex.is_none() && c.flags & ef::IFINDEX != 0 {
            s.ifindex = Some(c.ifindex);
        }
    }
    s.dropped = s.dropped_by.total();
    s.histogram = buckets(&hist);
    s
}

/// One summary per device, sorted by device name.
pub fn summarize_all(per_device: &[Vec<SendStats>], now_ns: u64) -> Vec<SendSummary> {
    let mut out: Vec<SendSummary> = per_device
        .iter()
        .map(|cpus| summarize(cpus, now_ns))
        .collect();
    out.sort_by(|a, b| a.dev.cmp(&b.dev));
    out
}

/// The JSON `send_drop` object: one message dropped.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SendDrop {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    pub ifindex: Option<i32>,
    pub reason: DropReason,
}

/// The JSON `slow_send` object: one skb transmit at least `--slow-send` long.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlowSend {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    pub ifindex: Option<i32>,
    pub duration_ns: u64,
}

/// A single send-path event.
#[derive(Debug, Clone, PartialEq)]
pub enum SendNotice {
    Drop(SendDrop),
    Slow(SlowSend),
}

impl SendNotice {
    pub fn dev(&self) -> Option<&str> {
        match self {
            Self::Drop(d) => d.dev.as_deref(),
            Self::Slow(s) => s.dev.as_deref(),
        }
    }
}

/// Decodes a `SendEvent`; None for a kind or reason this build does not know.
pub fn notice(ev: &SendEvent) -> Option<SendNotice> {
    let dev = if ev.flags & ef::DEV_NAME != 0 {
        cstr(&ev.name)
    } else {
        None
    };
    let ifindex = (ev.flags & ef::IFINDEX != 0).then_some(ev.ifindex);
    match ev.kind {
        send_event::DROP => Some(SendNotice::Drop(SendDrop {
            kind: "send_drop",
            ts_ns: ev.ts_ns,
            dev,
            ifindex,
            reason: DropReason::from_slot(ev.reason)?,
        })),
        send_event::SLOW => Some(SendNotice::Slow(SlowSend {
            kind: "slow_send",
            ts_ns: ev.ts_ns,
            dev,
            ifindex,
            duration_ns: ev.duration_ns,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(named: bool) -> SendStats {
        let mut s = SendStats {
            messages: 10,
            bytes: 800,
            sent: 7,
            deferred: 2,
            dropped: [1, 0, 0, 0],
            total_ns: 9000,
            max_ns: 3000,
            hist: [0; POLL_BUCKETS],
            last_drop_ns: 0,
            last_drop_reason: 0,
            ifindex: 2,
            flags: 0,
            _pad: 0,
            name: [0; 16],
        };
        s.hist[10] = 9;
        if named {
            s.flags = ef::DEV_NAME | ef::IFINDEX;
            s.name[..4].copy_from_slice(b"eth0");
        }
        s
    }

    #[test]
    fn sums_cpus_and_every_message_has_one_outcome() {
        let mut b = stats(true);
        b.dropped = [0, 0, 4, 0];
        b.last_drop_ns = 77;
        b.last_drop_reason = send_drop::NOT_RUNNING;
        b.messages = 4;
        b.sent = 0;
        b.deferred = 0;
        let s = summarize(&[stats(false), b], 5);
        assert_eq!((s.messages, s.sent, s.deferred, s.dropped), (14, 7, 2, 5));
        assert_eq!(
            s.sent + s.deferred + s.dropped,
            s.messages,
            "one outcome per message"
        );
        assert_eq!(s.dropped_by.get(DropReason::NotRunning), 4);
        assert_eq!(
            (s.last_drop_ns, s.last_drop_reason),
            (Some(77), Some(DropReason::NotRunning))
        );
        assert_eq!(s.dev.as_deref(), Some("eth0"));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["type"], "send");
        assert_eq!(v["dropped_by"]["no_skb"], 1);
        assert_eq!(v["dropped_by"]["not_present"], 0);
        assert_eq!(v["histogram"][0]["le_ns"], 2048);
        assert_eq!(
            crate::model::schema::check_line(&v.to_string()).unwrap(),
            "send"
        );
    }

    #[test]
    fn drop_and_slow_events_decode_and_meet_the_contract() {
        let mut ev = SendEvent {
            ts_ns: 1,
            duration_ns: 2_000_000,
            dev: 9,
            ifindex: 3,
            flags: ef::DEV_NAME | ef::IFINDEX,
            name: *b"eth1\0\0\0\0\0\0\0\0\0\0\0\0",
            kind: send_event::DROP,
            reason: send_drop::NOT_RUNNING,
        };
        let Some(SendNotice::Drop(d)) = notice(&ev) else {
            panic!()
        };
        let line = serde_json::to_string(&d).unwrap();
        assert!(
            line.contains(r#""reason":"not_running""#) && line.contains(r#""dev":"eth1""#),
            "{line}"
        );
        assert_eq!(
            crate::model::schema::check_line(&line).unwrap(),
            "send_drop"
        );
        ev.kind = send_event::SLOW;
        let Some(SendNotice::Slow(s)) = notice(&ev) else {
            panic!()
        };
        assert_eq!(
            crate::model::schema::check_line(&serde_json::to_string(&s).unwrap()).unwrap(),
            "slow_send"
        );
        ev.kind = 9;
        assert_eq!(notice(&ev), None);
        ev.kind = send_event::DROP;
        ev.reason = 7;
        assert_eq!(notice(&ev), None);
    }

    #[test]
    fn reason_names_come_from_the_shared_table() {
        for r in DropReason::ALL {
            assert_eq!(DropReason::from_slot(r.slot()), Some(r));
        }
        assert_eq!(DropReason::NoSkb.as_str(), "no_skb");
    }
}
