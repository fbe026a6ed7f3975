//! The flight recorder's contents as contract objects (`recorder`, `counter`): built
//! from what `kernel::recorder` read (pure).

use std::path::PathBuf;

use netpoll_trace_common::{CounterKey, loss};
use serde::{Serialize, ser::SerializeMap as _};

use super::{errno::Errno, event::{SetupFn, cstr}};

/// The recorder's own line: what it holds and what it lost.
#[derive(Debug, Clone, Serialize)]
pub struct RecorderLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub pin_dir: PathBuf,
    pub schema: u32,
    pub ring_size: u32,
    /// Events ever recorded (the next sequence number).
    pub recorded: u64,
    pub kept: u64,
    pub overwritten: u64,
    /// Events that got no sequence number, and counter updates dropped (also in
    /// `lost`, kept for readers of the first contract).
    pub unrecorded: u64,
    pub counters_full: u64,
    /// Everything the programs could not keep, per kind.
    pub lost: Losses,
    pub missing_seqs: Vec<u64>,
    /// Programs whose links are pinned: recording continues without a process.
    pub pinned_links: Vec<String>,
    pub memlock_bytes: u64,
    /// When the pins were created (CLOCK_MONOTONIC), for people.
    #[serde(skip)]
    pub created_ns: u64,
    /// The oldest and newest sequence numbers kept.
    #[serde(skip)]
    pub kept_seqs: Option<(u64, u64)>,
}

/// What the programs could not keep, per `loss::*` slot (summed over CPUs); in JSON
/// an object from each kind's name (`loss::NAMES`) to its count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses(pub [u64; loss::SLOTS as usize]);

impl Losses {
    pub fn get(&self, slot: u32) -> u64 {
        self.0.get(slot as usize).copied().unwrap_or(0)
    }

    /// Each kind by name, in slot order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        loss::NAMES.iter().copied().zip(self.0.iter().copied())
    }

    /// The kinds that cost set-up records their pairing: entries dropped, unpaired
    /// or missed returns, flushed leftovers; by name.
    pub fn pairing_kinds(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        const PAIRING: [u32; 4] = [loss::ENTRY_DROPPED, loss::UNPAIRED_RETURN, loss::MISSED_RETURN, loss::ORPHANED_ENTRY];
        PAIRING.into_iter().map(|s| (loss::NAMES[s as usize], self.get(s)))
    }

    /// Set-up records lost to pairing, all kinds.
    pub fn pairing(&self) -> u64 {
        self.pairing_kinds().map(|(_, n)| n).sum()
    }
}

impl Serialize for Losses {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, n) in self.named() {
            m.serialize_entry(name, &n)?;
        }
        m.end()
    }
}

/// Calls of one function on one device with one result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CounterLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    #[serde(rename = "fn")]
    pub function: Option<SetupFn>,
    pub ret: i32,
    pub errno: Option<&'static str>,
    pub count: u64,
}

pub fn counter_line(k: &CounterKey, count: u64, now: u64) -> CounterLine {
    CounterLine {
        kind: "counter",
        ts_ns: now,
        dev: cstr(&k.dev_name),
        function: SetupFn::from_id(k.function),
        ret: k.ret,
        errno: Errno::from_ret(k.ret).and_then(Errno::name),
        count,
    }
}

/// Counter lines sorted by device, function and result.
pub fn counter_lines(counters: &[(CounterKey, u64)], now: u64) -> Vec<CounterLine> {
    let mut lines: Vec<CounterLine> = counters.iter().map(|(k, n)| counter_line(k, *n, now)).collect();
    lines.sort_by(|a, b| {
        (&a.dev, a.function.map(SetupFn::as_str), a.ret).cmp(&(&b.dev, b.function.map(SetupFn::as_str), b.ret))
    });
    lines
}

#[cfg(test)]
pub mod tests {
    use netpoll_trace_common::function;

    use super::*;

    pub fn key(dev: &str, f: u32, ret: i32) -> CounterKey {
        let mut k = CounterKey { dev_name: [0; 16], function: f, ret };
        k.dev_name[..dev.len()].copy_from_slice(dev.as_bytes());
        k
    }

    #[test]
    fn losses_are_named_per_kind_in_json() {
        let mut slots = [0; loss::SLOTS as usize];
        slots[loss::MISSED_RETURN as usize] = 2;
        slots[loss::ORPHANED_ENTRY as usize] = 1;
        slots[loss::UNRECORDED as usize] = 5;
        let l = Losses(slots);
        assert_eq!(l.pairing(), 3);
        let v = serde_json::to_value(l).unwrap();
        assert_eq!(v["missed_return"], 2);
        assert_eq!(v["orphaned_entry"], 1);
        assert_eq!(v["unrecorded"], 5);
        assert_eq!(v["entry_dropped"], 0);
        assert_eq!(v.as_object().unwrap().len(), loss::SLOTS as usize);
    }

    #[test]
    fn counter_lines_name_function_and_errno() {
        let c = counter_line(&key("nosuch0", function::NETPOLL_SETUP, -19), 3, 5);
        assert_eq!(c.dev.as_deref(), Some("nosuch0"));
        assert_eq!(c.function, Some(SetupFn::NetpollSetup));
        assert_eq!(c.errno, Some("ENODEV"));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "counter");
        assert_eq!(v["fn"], "netpoll_setup");
        assert_eq!(v["count"], 3);
        assert_eq!(crate::model::schema::check_line(&v.to_string()).unwrap(), "counter");
    }
}
