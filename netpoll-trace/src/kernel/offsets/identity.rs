//! Which BTF a set of facts was read from (pure): the kernel release, the BTF's size and
//! the kernel's build-id, or where there is none a hash of the whole BTF.

use serde::{Deserialize, Serialize};

/// Which BTF the facts were read from. Recomputed on every run and compared whole before
/// anything cached is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The kernel's release (`uname -r`).
    pub release: String,
    /// The BTF's size in bytes.
    pub size: u64,
    /// The running kernel's GNU build-id (hex), from /sys/kernel/notes. The BTF is a
    /// section of that vmlinux and the linker hashed every section into the id, so it
    /// names the BTF too: read in microseconds, where hashing the 5-6 MiB took 25-35 ms
    /// of every start-up under TCG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// `IdentityHasher` over the whole BTF: only where the kernel tells no build-id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<u64>,
}

impl Identity {
    /// The identity of `data`, a whole BTF, on kernel `release`, by its hash.
    pub fn of_bytes(release: &str, data: &[u8]) -> Self {
        let mut h = IdentityHasher::default();
        h.update(data);
        h.finish(release)
    }

    /// The identity of a BTF of `size` bytes in the kernel with `build_id`.
    pub fn of_build(release: &str, size: u64, build_id: String) -> Self {
        Self {
            release: release.to_string(),
            size,
            build_id: Some(build_id),
            hash: None,
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A 64-bit hash of a file fed in pieces of any size (the cache reads 64 KiB at a time):
/// FNV-1a over 64-bit little-endian words, the last word zero-padded, each step
/// `h = (h ^ word) * FNV_PRIME; h ^= h >> 32` (the fold carries a word's high bits into
/// the low half, which a multiplication alone never does), starting from FNV's offset
/// basis, and the byte count mixed in last the same way. Defined here, not std's
/// `DefaultHasher`, whose algorithm may change between Rust releases and would silently
/// turn every cache into a miss, or worse, not. Not a defence against an attacker: the
/// cache is root's, in a directory only root can write.
#[derive(Debug, Clone)]
pub struct IdentityHasher {
    state: u64,
    /// Bytes of a word not yet complete.
    pending: [u8; 8],
    pending_len: usize,
    size: u64,
}

impl Default for IdentityHasher {
    fn default() -> Self {
        Self {
            state: FNV_OFFSET,
            pending: [0; 8],
            pending_len: 0,
            size: 0,
        }
    }
}

impl IdentityHasher {
    fn word(&mut self, w: u64) {
        self.state = (self.state ^ w).wrapping_mul(FNV_PRIME);
        self.state ^= self.state >> 32;
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        if self.pending_len > 0 {
            let take = (8 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.pending_len = 0;
        }
        let (words, rest) = data.as_chunks::<8>();
        for w in words {
            self.word(u64::from_le_bytes(*w));
        }
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The identity of everything fed, on kernel `release`.
    pub fn finish(mut self, release: &str) -> Identity {
        if self.pending_len > 0 {
            self.pending[self.pending_len..].fill(0);
            self.word(u64::from_le_bytes(self.pending));
        }
        let size = self.size;
        self.word(size);
        Identity {
            release: release.to_string(),
            size,
            build_id: None,
            hash: Some(self.state),
        }
    }
}
