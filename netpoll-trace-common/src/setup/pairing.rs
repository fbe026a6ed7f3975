//! Pairs a set-up's return with its entry. Entries are parked per thread at their
//! nesting depth; the parked entry keeps the function, the `struct netpoll *` and the
//! entry time, and both decisions here check them, so a missed return (kretprobe
//! instances exhausted under nesting, a skipped fexit) costs the records of the calls
//! it concerns, counted in `LOSSES`, and never shifts later returns onto the wrong
//! entry nor leaves a thread's later set-ups nested under a call that has ended.
//! Pure and loop-free: the programs call it (4.14 refuses backward jumps), and the
//! tests below drive it through the sequences that go wrong.

use crate::{MAX_DEPTH, function};

/// An entry parked longer than this when its thread enters again is left over (its
/// return was missed). Set-ups take milliseconds; a parent's age when its nested
/// call enters is its rtnl wait plus at most netpoll_setup's 4 s carrier wait. The
/// structural rules in `on_enter` catch most leftovers without any wait.
pub const STALE_NS: u64 = 30_000_000_000;

/// How many parked entries a return looks at, newest first: a return whose
/// callee's return was missed finds its own entry one below, and so on.
pub const WALK: u32 = 3;

/// What the pairing needs of a parked entry. A level whose entry could not be
/// parked is `Frame::NONE` (function 0), not an `Option`: a `None`'s payload is
/// undefined bytes, and the verifier refuses a program that copies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// One of `function::*`.
    pub function: u32,
    /// The `struct netpoll *` argument.
    pub netpoll: u64,
    /// Entry time (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
}

impl Frame {
    /// No entry parked at that level (no function has id 0).
    pub const NONE: Self = Self {
        function: 0,
        netpoll: 0,
        ts_ns: 0,
    };

    pub const fn is_none(&self) -> bool {
        self.function == 0
    }
}

/// What to do with a thread's parked entries before a new entry is parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enter {
    /// Park it on top: it is nested in the call below.
    Push,
    /// The parked entries are left over from calls whose returns were missed:
    /// drop them all (`loss::ORPHANED_ENTRY`) and park the new one at depth 0.
    Flush,
}

/// A new entry of `function(netpoll)` at `now_ns` on a thread with `depth` parked
/// levels, the newest `top` (`Frame::NONE`: a level whose entry could not be parked).
#[inline(always)]
pub fn on_enter(depth: u32, top: Frame, function: u32, netpoll: u64, now_ns: u64) -> Enter {
    if depth == 0 {
        return Enter::Push;
    }
    // An outer set-up is called only from outside any set-up (netconsole, configfs).
    if function::is_outer_setup(function) || depth >= MAX_DEPTH {
        return Enter::Flush;
    }
    if top.is_none() {
        return Enter::Push;
    }
    if now_ns.saturating_sub(top.ts_ns) > STALE_NS {
        return Enter::Flush;
    }
    // netpoll_setup calls __netpoll_setup with its own netpoll; a device's
    // ndo_netpoll_setup (bond, bridge, vlan, team, macvlan, dsa) gives each lower
    // device's __netpoll_setup a netpoll of its own.
    // An outer entry's netpoll is 0 when netconsole's target layout was unknown.
    let nested = if function::is_outer_setup(top.function) {
        top.netpoll == netpoll || top.netpoll == 0
    } else {
        top.netpoll != netpoll
    };
    if nested { Enter::Push } else { Enter::Flush }
}

/// Where a return pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// With the entry `dropped` levels below the newest; the `dropped` newer
    /// entries missed their returns (`loss::MISSED_RETURN`). The entry may be a
    /// level whose entry could not be parked: then there is nothing to send.
    Pair { dropped: u32 },
    /// With none of the newest `WALK` entries (`loss::UNPAIRED_RETURN`): the
    /// parked entries stay for their own returns.
    Unpaired,
}

/// A return of `function` on a thread with `depth` parked levels; `frames` are the
/// newest `WALK` of them, newest first (`Frame::NONE`: not parked). `netpoll` is
/// the argument where the probe sees it (fexit), None where it cannot (kretprobe).
#[inline(always)]
pub fn on_exit(
    depth: u32,
    frames: [Frame; WALK as usize],
    function: u32,
    netpoll: Option<u64>,
) -> Exit {
    // Written out, not a loop (4.14 refuses backward jumps).
    if let Some(e) = pairs(0, depth, frames[0], function, netpoll) {
        return e;
    }
    if let Some(e) = pairs(1, depth, frames[1], function, netpoll) {
        return e;
    }
    if let Some(e) = pairs(2, depth, frames[2], function, netpoll) {
        return e;
    }
    Exit::Unpaired
}

#[inline(always)]
fn pairs(i: u32, depth: u32, f: Frame, function: u32, netpoll: Option<u64>) -> Option<Exit> {
    if i >= depth {
        return None;
    }
    // A level without an entry: the call that returns is most likely the one
    // whose entry could not be parked.
    if f.is_none() || (f.function == function && netpoll.is_none_or(|np| np == f.netpoll)) {
        return Some(Exit::Pair { dropped: i });
    }
    None
}

#[cfg(test)]
mod tests {
    //! A thread's parked entries driven through `pairing` as the programs drive it
    //! (netpoll-trace-ebpf's try_enter/try_exit), in the sequences that go wrong.
    extern crate std;
    use std::vec::Vec;

    use crate::{
        function::{INNER_NETPOLL_SETUP as INNER, NETPOLL_SETUP as OUTER},
        loss,
        pairing::{self, Enter, Exit, Frame, WALK},
    };

    const MS: u64 = 1_000_000;

    /// A sent record: function, netpoll, depth.
    type Rec = (u32, u64, u32);

    #[derive(Default)]
    struct Thread {
        /// Parked levels, oldest first; NONE where the entry could not be parked.
        levels: Vec<Frame>,
        sent: Vec<Rec>,
        losses: [u64; loss::SLOTS as usize],
    }

    impl Thread {
        fn enter(&mut self, f: u32, np: u64, now: u64) {
            self.enter_parked(f, np, now, true)
        }

        /// `parked`: false when INFLIGHT refuses the entry (map full).
        fn enter_parked(&mut self, f: u32, np: u64, now: u64, parked: bool) {
            let depth = self.levels.len() as u32;
            let top = self.levels.last().copied().unwrap_or(Frame::NONE);
            if pairing::on_enter(depth, top, f, np, now) == Enter::Flush {
                self.losses[loss::ORPHANED_ENTRY as usize] +=
                    self.levels.iter().filter(|f| !f.is_none()).count() as u64;
                self.levels.clear();
            }
            if !parked {
                self.losses[loss::ENTRY_DROPPED as usize] += 1;
            }
            self.levels.push(if parked {
                Frame {
                    function: f,
                    netpoll: np,
                    ts_ns: now,
                }
            } else {
                Frame::NONE
            });
        }

        /// A return; `np` where the probe sees it (fexit).
        fn exit(&mut self, f: u32, np: Option<u64>) {
            let depth = self.levels.len() as u32;
            let frame = |i: u32| {
                if i < depth {
                    self.levels[(depth - 1 - i) as usize]
                } else {
                    Frame::NONE
                }
            };
            let frames: [Frame; WALK as usize] = [frame(0), frame(1), frame(2)];
            match pairing::on_exit(depth, frames, f, np) {
                Exit::Unpaired => self.losses[loss::UNPAIRED_RETURN as usize] += 1,
                Exit::Pair { dropped } => {
                    for _ in 0..dropped {
                        if self.levels.pop().is_some_and(|f| !f.is_none()) {
                            self.losses[loss::MISSED_RETURN as usize] += 1;
                        }
                    }
                    let level = self.levels.len() as u32 - 1;
                    if let Some(e) = self.levels.pop().filter(|f| !f.is_none()) {
                        self.sent.push((e.function, e.netpoll, level));
                    }
                }
            }
        }

        fn lost(&self, slot: u32) -> u64 {
            self.losses[slot as usize]
        }
    }

    #[test]
    fn a_skipped_return_costs_its_own_record_and_the_caller_still_pairs() {
        for np in [Some(1), None] {
            let mut t = Thread::default();
            t.enter(OUTER, 1, 0);
            t.enter(INNER, 1, MS);
            // __netpoll_setup's return is never seen.
            t.exit(OUTER, np);
            assert_eq!(t.sent, [(OUTER, 1, 0)], "fexit netpoll {np:?}");
            assert_eq!(t.lost(loss::MISSED_RETURN), 1);
            assert!(t.levels.is_empty(), "nothing stays parked");
        }
    }

    #[test]
    fn after_a_missed_return_the_threads_next_setup_is_outermost_again() {
        let mut t = Thread::default();
        t.enter(OUTER, 1, 0);
        t.enter(INNER, 1, MS);
        t.exit(INNER, None);
        // netpoll_setup's own return is never seen; the same thread sets up again.
        t.enter(OUTER, 2, 2 * MS);
        t.enter(INNER, 2, 3 * MS);
        t.exit(INNER, Some(2));
        t.exit(OUTER, Some(2));
        assert_eq!(t.sent, [(INNER, 1, 1), (INNER, 2, 1), (OUTER, 2, 0)]);
        assert_eq!(t.lost(loss::ORPHANED_ENTRY), 1);
        assert!(t.levels.is_empty());
    }

    /// 7.3+: netconsole's own set-up is the outer call; its netpoll is 0 when the
    /// target's layout was unknown, and `__netpoll_setup` still nests in it.
    #[test]
    fn netconsoles_own_setup_is_an_outer_call() {
        use crate::function::NETCONS_NETPOLL_SETUP as NC;
        for outer_np in [5, 0] {
            let mut t = Thread::default();
            t.enter(NC, outer_np, 0);
            t.enter(INNER, 5, MS);
            t.exit(INNER, Some(5));
            t.exit(NC, None);
            assert_eq!(
                t.sent,
                [(INNER, 5, 1), (NC, outer_np, 0)],
                "outer np {outer_np}"
            );
            assert_eq!(t.lost(loss::ORPHANED_ENTRY), 0);
        }
        // A second outer call on the thread flushes a leftover, as netpoll_setup does.
        let mut t = Thread::default();
        t.enter(NC, 5, 0);
        t.enter(NC, 6, MS);
        t.exit(NC, None);
        assert_eq!(t.sent, [(NC, 6, 0)]);
        assert_eq!(t.lost(loss::ORPHANED_ENTRY), 1);
    }

    #[test]
    fn a_reused_thread_id_drops_a_stale_leftover() {
        let mut t = Thread::default();
        // A bond slave's __netpoll_setup whose return was missed, long ago.
        t.enter(INNER, 7, 0);
        // A new thread with the same id sets a device up directly (bond_enslave).
        t.enter(INNER, 9, pairing::STALE_NS + 1);
        t.exit(INNER, None);
        assert_eq!(t.sent, [(INNER, 9, 0)]);
        assert_eq!(t.lost(loss::ORPHANED_ENTRY), 1);
    }

    #[test]
    fn a_nested_call_reusing_its_parents_netpoll_is_a_leftover() {
        let mut t = Thread::default();
        t.enter(INNER, 7, 0);
        t.enter(INNER, 7, MS);
        t.exit(INNER, Some(7));
        assert_eq!(t.sent, [(INNER, 7, 0)]);
        // And netpoll_setup's __netpoll_setup must carry netpoll_setup's netpoll.
        let mut t = Thread::default();
        t.enter(OUTER, 1, 0);
        t.enter(INNER, 2, MS);
        assert_eq!(t.lost(loss::ORPHANED_ENTRY), 1);
        assert_eq!(t.levels.len(), 1);
    }

    #[test]
    fn a_bonds_nesting_pairs_every_call() {
        let mut t = Thread::default();
        t.enter(OUTER, 1, 0);
        t.enter(INNER, 1, MS);
        t.enter(INNER, 2, 2 * MS);
        t.exit(INNER, None);
        t.enter(INNER, 3, 3 * MS);
        t.exit(INNER, None);
        t.exit(INNER, None);
        t.exit(OUTER, None);
        assert_eq!(
            t.sent,
            [(INNER, 2, 2), (INNER, 3, 2), (INNER, 1, 1), (OUTER, 1, 0)]
        );
        assert_eq!(t.losses, [0; loss::SLOTS as usize]);
    }

    #[test]
    fn a_slaves_missed_return_under_fexit_drops_only_the_slave() {
        let mut t = Thread::default();
        t.enter(OUTER, 1, 0);
        t.enter(INNER, 1, MS);
        t.enter(INNER, 2, 2 * MS);
        // The slave's fexit is skipped; the bond's and netpoll_setup's are seen.
        t.exit(INNER, Some(1));
        t.exit(OUTER, Some(1));
        assert_eq!(t.sent, [(INNER, 1, 1), (OUTER, 1, 0)]);
        assert_eq!(t.lost(loss::MISSED_RETURN), 1);
    }

    #[test]
    fn an_entry_that_could_not_be_parked_keeps_its_level() {
        let mut t = Thread::default();
        t.enter(OUTER, 1, 0);
        t.enter(INNER, 1, MS);
        t.enter_parked(INNER, 2, 2 * MS, false);
        t.exit(INNER, None);
        t.exit(INNER, None);
        t.exit(OUTER, None);
        assert_eq!(t.sent, [(INNER, 1, 1), (OUTER, 1, 0)]);
        assert_eq!(t.lost(loss::ENTRY_DROPPED), 1);
        assert!(t.levels.is_empty());
    }

    #[test]
    fn a_return_without_an_entry_leaves_the_parked_ones_alone() {
        let mut t = Thread::default();
        // Attached while netpoll_setup ran: its __netpoll_setup is seen whole.
        t.enter(INNER, 1, 0);
        t.exit(INNER, Some(1));
        t.exit(OUTER, Some(1));
        assert_eq!(t.sent, [(INNER, 1, 0)]);
        assert_eq!(t.lost(loss::UNPAIRED_RETURN), 1);
        // A return matching none of the parked entries takes none of them.
        let mut t = Thread::default();
        t.enter(OUTER, 1, 0);
        t.exit(INNER, Some(5));
        t.exit(OUTER, Some(1));
        assert_eq!(t.sent, [(OUTER, 1, 0)]);
        assert_eq!(t.lost(loss::UNPAIRED_RETURN), 1);
    }
}
