//! A fragmented message being reassembled: its parts as raw bytes (a character may be
//! split between two), what holding them costs, and the message once whole.

use super::format::{Header, decode_text};

/// What a held part costs besides its bytes: its slot in `parts` (grown by doubling, so
/// up to half of it empty) and its own allocation's header and rounding.
pub(super) const PART_OVERHEAD: usize = 2 * size_of::<(usize, Box<[u8]>)>() + 32;
/// What an open message costs besides its parts and release: its entry in the sender's
/// map (whose nodes may be under half full) and its allocations' headers.
pub(super) const OPEN_OVERHEAD: usize = 3 * size_of::<(u64, Open)>() + 64;
// A MAX_MESSAGE message from a kernel (at least 900 bytes of text a datagram, a release
// of at most 64) fits the budget alone.

#[derive(Debug)]
pub(super) struct Open {
    /// The header of the first fragment seen.
    pub(super) first: Header,
    /// The message's length, as the first fragment seen gave it.
    pub(super) total: usize,
    /// Bytes so far by offset, in order; none empty, none overlapping another, all
    /// within `total` (so the message is whole when `have` reaches `total`).
    pub(super) parts: Vec<(usize, Box<[u8]>)>,
    /// Bytes in `parts`.
    pub(super) have: usize,
}

/// What became of a fragment of a message already open.
pub(super) enum Placed {
    New,
    /// The very bytes of a part already held (sent twice).
    Again,
    Overlap,
}

impl Open {
    /// What holding this takes on the heap, at most.
    pub(super) fn cost(&self) -> usize {
        self.have
            .saturating_add(self.parts.len().saturating_mul(PART_OVERHEAD))
            .saturating_add(self.first.release.as_ref().map_or(0, String::len))
            .saturating_add(OPEN_OVERHEAD)
    }

    /// Holds `bytes` at `off` (within `total`, not empty: checked before).
    pub(super) fn place(&mut self, off: usize, bytes: &[u8]) -> Placed {
        let i = match self.parts.binary_search_by_key(&off, |(o, _)| *o) {
            Ok(i) if *self.parts[i].1 == *bytes => return Placed::Again,
            Ok(_) => return Placed::Overlap,
            Err(i) => i,
        };
        let after_previous = i
            .checked_sub(1)
            .and_then(|p| self.parts.get(p))
            .is_none_or(|(o, b)| o.saturating_add(b.len()) <= off);
        let before_next = self
            .parts
            .get(i)
            .is_none_or(|(o, _)| off.saturating_add(bytes.len()) <= *o);
        if !(after_previous && before_next) {
            return Placed::Overlap;
        }
        self.parts.insert(i, (off, bytes.into()));
        self.have = self.have.saturating_add(bytes.len());
        Placed::New
    }

    /// Whether what it holds is what the fields say (the fuzz target's invariant).
    pub(super) fn consistent(&self) -> bool {
        let mut at = 0;
        for (off, b) in &self.parts {
            if *off < at || b.is_empty() {
                return false;
            }
            at = off.saturating_add(b.len());
        }
        at <= self.total
            && self.have < self.total
            && self.have == self.parts.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// The first header and the whole text, decoded now that no character is split.
    pub(super) fn into_message(self) -> (Header, String) {
        let mut bytes = Vec::with_capacity(self.total);
        for (_, b) in &self.parts {
            bytes.extend_from_slice(b);
        }
        let text = String::from_utf8(bytes).unwrap_or_else(|e| decode_text(e.as_bytes()));
        (self.first, text)
    }
}
