//! Groups set-up records into attempts: one outermost call (depth 0) and the nested
//! calls it made into lower devices (a bond's slaves, a vlan's real device), which
//! run on the same thread inside its time window. Nested calls may use a different
//! `struct netpoll` (bonding allocates one per slave), so the thread and the time
//! window pair them, not the pointer. Pure.

use super::event::SetupRecord;

#[derive(Debug, Clone)]
pub struct Attempt {
    pub root: SetupRecord,
    /// Nested calls in entry order.
    pub nested: Vec<SetupRecord>,
}

impl Attempt {
    pub fn failed(&self) -> bool {
        self.root.failed()
    }

    /// Every record, outermost first.
    pub fn records(&self) -> impl Iterator<Item = &SetupRecord> {
        std::iter::once(&self.root).chain(self.nested.iter())
    }

    /// The innermost failed call: the culprit. A nested call that failed inside a
    /// parent that then succeeded does not count (the parent recovered).
    pub fn culprit(&self) -> Option<&SetupRecord> {
        if !self.failed() {
            return None;
        }
        self.records()
            .filter(|r| r.failed())
            .max_by_key(|r| r.depth)
    }

    /// Device names from the outermost device to the culprit's (deduplicated:
    /// netpoll_setup and its __netpoll_setup name the same device).
    pub fn chain(&self) -> Vec<String> {
        let last_depth = self.culprit().map_or(u32::MAX, |c| c.depth);
        let mut chain: Vec<String> = Vec::new();
        for r in self.records() {
            if r.depth > last_depth {
                continue;
            }
            // Along a failed attempt, follow only failed calls below the root.
            if self.failed() && r.depth > 0 && !r.failed() {
                continue;
            }
            if let Some(d) = &r.dev
                && chain.last() != Some(d)
            {
                chain.push(d.clone());
            }
        }
        chain
    }
}

/// Groups records (any order) into attempts. A record whose parent was not seen
/// (e.g. the tracer attached mid-call) becomes an attempt of its own.
pub fn group(mut records: Vec<SetupRecord>) -> Vec<Attempt> {
    records.sort_by_key(|r| (r.ts_ns, r.depth));
    let mut attempts: Vec<Attempt> = Vec::new();
    for r in records {
        let parent = attempts.iter_mut().rev().find(|a| {
            r.depth > a.root.depth
                && r.pid == a.root.pid
                && r.ts_ns >= a.root.ts_ns
                && r.ts_ns <= a.root.ts_ns.saturating_add(a.root.duration_ns)
        });
        match parent {
            Some(a) => a.nested.push(r),
            None => attempts.push(Attempt {
                root: r,
                nested: Vec::new(),
            }),
        }
    }
    attempts
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::model::event::SetupFn;

    /// A record for tests: `f` is the function, times in ns.
    pub fn rec(f: SetupFn, dev: &str, depth: u32, ts: u64, dur: u64, ret: i32) -> SetupRecord {
        SetupRecord {
            kind: "setup",
            seq: None,
            resolved_at: None,
            ts_ns: ts,
            function: f,
            netpoll: Some("netconsole".into()),
            dev: Some(dev.into()),
            remote: None,
            ifindex: None,
            ret,
            errno: crate::model::errno::Errno::from_ret(ret)
                .and_then(crate::model::errno::Errno::name),
            depth,
            duration_ns: dur,
            pid: 100,
            comm: Some("modprobe".into()),
            driver: None,
            driver_version: None,
            kernel: None,
            ops_symbol: None,
            ops_module: None,
            has_poll_controller: Some(false),
            has_netpoll_setup: Some(false),
            netpoll_disabled: Some(false),
            ops_addr: None,
            netpoll_addr: 0xffff_8880_0000_1000,
        }
    }

    use SetupFn::{InnerNetpollSetup as Inner, NetpollSetup as Outer};

    #[test]
    fn bond_with_two_slaves_is_one_attempt_with_both_in_order() {
        let records = vec![
            rec(Inner, "eth1", 2, 1_300, 50, 0),
            rec(Outer, "bond0", 0, 1_000, 1_000, 0),
            rec(Inner, "bond0", 1, 1_100, 800, 0),
            rec(Inner, "eth0", 2, 1_200, 50, 0),
        ];
        let a = group(records);
        assert_eq!(a.len(), 1);
        let devs: Vec<_> = a[0].nested.iter().map(|r| r.dev.clone().unwrap()).collect();
        assert_eq!(devs, ["bond0", "eth0", "eth1"]);
        assert!(!a[0].failed());
        assert_eq!(a[0].culprit(), None);
        assert_eq!(a[0].chain(), ["bond0", "eth0", "eth1"]);
    }

    #[test]
    fn the_innermost_failure_is_the_culprit_and_ends_the_chain() {
        let a = group(vec![
            rec(Outer, "vlan0", 0, 1_000, 1_000, -524),
            rec(Inner, "vlan0", 1, 1_100, 800, -524),
            rec(Inner, "nk0", 2, 1_200, 50, -524),
        ]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].culprit().unwrap().dev.as_deref(), Some("nk0"));
        assert_eq!(a[0].chain(), ["vlan0", "nk0"]);
    }

    #[test]
    fn separate_calls_and_other_threads_are_separate_attempts() {
        let mut other = rec(Inner, "eth9", 1, 1_100, 10, 0);
        other.pid = 7;
        let a = group(vec![
            rec(Outer, "d0", 0, 1_000, 100, -89),
            rec(Outer, "d0", 0, 5_000, 100, -89),
            other,
        ]);
        assert_eq!(a.len(), 3);
        assert!(a.iter().filter(|a| a.failed()).count() == 2);
    }
}
