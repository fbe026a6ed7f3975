//! A counter's numbers (seq, msgid) per sender: gaps, late arrivals taking theirs back,
//! repeats, and restarts.

/// How far behind the highest number seen a late one still fills its gap; further back
/// is the sender restarting its numbers (a reboot).
pub(super) const REORDER_WINDOW: u64 = u64::BITS as u64;
/// Where a number stands against the highest of its counter.
#[derive(Debug, Clone, Copy)]
pub(super) enum Move {
    Ahead(u64),
    Back(u64),
}

/// What a number is to its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The first, or ahead of the highest: how many numbers it skipped.
    Ahead(u64),
    /// Late, within the window, not seen before: a gap filled.
    Filled,
    /// Seen before, or before the counter's start.
    Again,
    /// Further back than the window: the sender restarted.
    Restart,
}

/// A counter's highest number and which of the REORDER_WINDOW before it came.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) high: u64,
    /// Bit i: `high - i` came (or is before the start: not a gap).
    pub(super) seen: u64,
}

impl Window {
    pub(super) fn starting_at(n: u64) -> Window {
        Window {
            high: n,
            seen: u64::MAX,
        }
    }

    pub(super) fn step(&mut self, m: Move) -> Step {
        match m {
            Move::Ahead(d) => {
                let kept = u32::try_from(d)
                    .ok()
                    .and_then(|d| self.seen.checked_shl(d))
                    .unwrap_or(0);
                self.seen = kept | 1;
                self.high = self.high.saturating_add(d);
                Step::Ahead(d.saturating_sub(1))
            }
            Move::Back(b) if b >= REORDER_WINDOW => Step::Restart,
            Move::Back(b) => {
                let bit = 1u64 << b;
                if self.seen & bit != 0 {
                    Step::Again
                } else {
                    self.seen |= bit;
                    Step::Filled
                }
            }
        }
    }

    /// Steps a counter to `n`, or starts it there.
    pub(super) fn track(
        w: &mut Option<Window>,
        n: u64,
        moved: impl FnOnce(&Window) -> Move,
    ) -> Step {
        match w {
            Some(w) => w.step(moved(w)),
            None => {
                *w = Some(Window::starting_at(n));
                Step::Ahead(0)
            }
        }
    }
}
