//! The flight recorder's ring bookkeeping (pure).

/// The ring's bookkeeping: how many events were ever recorded, how many it kept,
/// how many were overwritten and which sequence numbers are missing.
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
        // Saturating: the keys are whatever the pinned map holds.
        let head = seqs
            .last()
            .map_or(next_seq, |&s| next_seq.max(s.saturating_add(1)));
        let window_start = head.saturating_sub(ring_size as u64);
        let missing: Vec<u64> = (window_start..head)
            .filter(|s| seqs.binary_search(s).is_err())
            .take(64)
            .collect();
        Self {
            recorded: head,
            kept: seqs.len() as u64,
            overwritten: window_start,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_account_of_an_unfilled_ring() {
        let a = RingAccount::new(3, 8, &[0, 1, 2]);
        assert_eq!(
            a,
            RingAccount {
                recorded: 3,
                kept: 3,
                overwritten: 0,
                missing: vec![]
            }
        );
    }

    #[test]
    fn ring_account_after_wrap_around() {
        let seqs: Vec<u64> = (12..20).collect();
        let a = RingAccount::new(20, 8, &seqs);
        assert_eq!(
            a,
            RingAccount {
                recorded: 20,
                kept: 8,
                overwritten: 12,
                missing: vec![]
            }
        );
    }

    /// Fuzzing (recorder_meta target): a ring key of u64::MAX (any value a corrupt or
    /// foreign pin holds) overflowed `s + 1` (a debug build panicked; release wrapped to a
    /// head of 0 and reported nothing recorded).
    #[test]
    fn a_sequence_number_at_the_top_of_u64_is_no_overflow() {
        let a = RingAccount::new(0, 8, &[3, u64::MAX]);
        assert_eq!(a.recorded, u64::MAX);
        assert_eq!(a.kept, 2);
        assert_eq!(a.overwritten, u64::MAX - 8);
        assert_eq!(a.missing.len(), 8);
    }

    #[test]
    fn ring_account_shows_gaps_and_a_lagging_head() {
        // next_seq lags (a racing writer stored an older value); 15 was never written.
        let a = RingAccount::new(17, 8, &[12, 13, 14, 16, 17, 18, 19]);
        assert_eq!(a.recorded, 20);
        assert_eq!(a.overwritten, 12);
        assert_eq!(a.missing, vec![15]);
    }
}
