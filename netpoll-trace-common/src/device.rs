//! What the programs read of the kernel's structs (a device, a netpoll, the current
//! task): the lengths of the strings kept, which reads succeeded (`event_flags`), and
//! the two ways the programs tidy a name (`clear_after_nul`, `select_name`).

use crate::opaque::{mask, nonzero};

/// Length of `net_device.name` and `netpoll.dev_name` (IFNAMSIZ).
pub const IFNAMSIZ: usize = 16;
/// Bytes kept of `netpoll.name` (the owner, e.g. "netconsole").
pub const OWNER_LEN: usize = 16;
/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;

/// Bits of `SetupEvent::flags`: what the program could read. A field whose bit is
/// clear is unknown and userspace reports it as null, never as zero.
pub mod event_flags {
    /// `dev_name` holds `net_device.name`.
    pub const DEV_NAME: u32 = 1 << 0;
    /// `ifindex` holds `net_device.ifindex`.
    pub const IFINDEX: u32 = 1 << 1;
    /// `ops`, `poll_controller` and `netpoll_setup_op` were read.
    pub const OPS: u32 = 1 << 2;
    /// The IFF_DISABLE_NETPOLL bit was read (its value is `NETPOLL_DISABLED`).
    pub const PRIV_FLAGS: u32 = 1 << 3;
    /// IFF_DISABLE_NETPOLL is set on the device.
    pub const NETPOLL_DISABLED: u32 = 1 << 4;
    /// `np_dev_name` holds `netpoll.dev_name` (the name the user asked for).
    pub const NP_DEV_NAME: u32 = 1 << 5;
    /// `owner` holds the string `netpoll.name` points to.
    pub const OWNER: u32 = 1 << 6;
    /// `remote_ip` (IPv4), `remote_port` and `local_port` hold the netpoll's addresses.
    pub const REMOTE: u32 = 1 << 7;
}

/// A 16-byte name as two little-endian words (the programs run little-endian).
#[inline(always)]
fn words(s: &[u8; 16]) -> (u64, u64) {
    let w = |o: usize| {
        u64::from_le_bytes([
            s[o],
            s[o + 1],
            s[o + 2],
            s[o + 3],
            s[o + 4],
            s[o + 5],
            s[o + 6],
            s[o + 7],
        ])
    };
    (w(0), w(8))
}

#[inline(always)]
fn from_words(lo: u64, hi: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lo.to_le_bytes());
    out[8..].copy_from_slice(&hi.to_le_bytes());
    out
}

/// The bits of the bytes of `w` below its first NUL (all of them when it has none):
/// `(w - 0x01..) & !w & 0x80..` flags every zero byte, and no byte below the first
/// one, whose flag is then the lowest set bit.
#[inline(always)]
fn below_first_nul(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let zeros = w.wrapping_sub(ONES) & !w & (ONES << 7);
    let first = zeros & zeros.wrapping_neg();
    (first >> 7).wrapping_sub(1)
}

/// Zeroes every byte after the first NUL (a renamed device keeps old bytes after its
/// name's NUL: strscpy does not pad). Without a branch: a branch per byte left the
/// verifier a state per position of the NUL (5.10: a set-up return's counter key was
/// walked 28 times).
#[inline(always)]
pub fn clear_after_nul(s: &mut [u8; 16]) {
    let (lo, hi) = words(s);
    let keep_lo = below_first_nul(lo);
    // The high word counts only when the low one has no NUL.
    let keep_hi = below_first_nul(hi) & mask(nonzero(!keep_lo) ^ 1);
    *s = from_words(lo & keep_lo, hi & keep_hi);
}

/// `a` where `use_a` is 1, `b` where `use_b` is 1, zeroes where neither; never both.
/// Chosen by masks, not branches: each branch was another path through the rest of the
/// program.
#[inline(always)]
pub fn select_name(a: &[u8; 16], use_a: u64, b: &[u8; 16], use_b: u64) -> [u8; 16] {
    let (ma, mb) = (mask(use_a), mask(use_b));
    let (alo, ahi) = words(a);
    let (blo, bhi) = words(b);
    from_words((alo & ma) | (blo & mb), (ahi & ma) | (bhi & mb))
}

/// 1 when `owner` is netconsole's ("netconsole" and its NUL), else 0: two word
/// compares folded into one sign bit, not eleven byte compares (each a branch in BPF).
#[inline(always)]
pub fn is_netconsole(owner: &[u8; OWNER_LEN]) -> u64 {
    const _: () = assert!(OWNER_LEN >= 11);
    const LO: u64 = u64::from_le_bytes(*b"netconso");
    const HI: u64 = u64::from_le_bytes([b'l', b'e', 0, 0, 0, 0, 0, 0]);
    let (lo, hi) = words(owner);
    nonzero((lo ^ LO) | ((hi & 0xff_ffff) ^ HI)) ^ 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &[u8]) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..s.len()].copy_from_slice(s);
        n
    }

    /// The plain definition, byte by byte.
    fn cleared(mut s: [u8; 16]) -> [u8; 16] {
        if let Some(nul) = s.iter().position(|&b| b == 0) {
            s[nul..].fill(0);
        }
        s
    }

    #[test]
    fn clears_after_the_first_nul_only() {
        let mut s = *b"eth0\0ld_name_xyz";
        clear_after_nul(&mut s);
        assert_eq!(s, name(b"eth0"));
        let mut full = *b"abcdefghijklmnop";
        clear_after_nul(&mut full);
        assert_eq!(&full, b"abcdefghijklmnop");
        // Every position of the NUL, with stale bytes (some 0x01, some 0x80: the
        // borrow cases) after it.
        for nul in 0..16 {
            for fill in [0x01u8, 0x80, 0xff, b'x'] {
                let mut s = [b'a'; 16];
                s[nul] = 0;
                for b in &mut s[nul + 1..] {
                    *b = fill;
                }
                let want = cleared(s);
                clear_after_nul(&mut s);
                assert_eq!(s, want, "NUL at {nul}, fill {fill:#x}");
            }
        }
        // Against the plain definition over a spread of byte strings (xorshift).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut s = [0u8; 16];
            for b in &mut s {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // One byte in eight is a NUL.
                *b = if x.is_multiple_of(8) {
                    0
                } else {
                    (x >> 8) as u8
                };
            }
            let want = cleared(s);
            clear_after_nul(&mut s);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn knows_netconsole_by_its_name_and_nul() {
        assert_eq!(is_netconsole(&name(b"netconsole")), 1);
        // Bytes after the NUL do not matter; one more letter, one less or another does.
        assert_eq!(is_netconsole(b"netconsole\0xxxxx"), 1);
        assert_eq!(is_netconsole(&name(b"netconsoles")), 0);
        assert_eq!(is_netconsole(&name(b"netconsol")), 0);
        assert_eq!(is_netconsole(&name(b"netconsolf")), 0);
        assert_eq!(is_netconsole(&name(b"Netconsole")), 0);
        assert_eq!(is_netconsole(&name(b"bond")), 0);
        assert_eq!(is_netconsole(&[0; 16]), 0);
    }

    #[test]
    fn selects_either_name_or_none() {
        let (a, b) = (name(b"ens5"), name(b"bond0"));
        assert_eq!(select_name(&a, 1, &b, 0), a);
        assert_eq!(select_name(&a, 0, &b, 1), b);
        assert_eq!(select_name(&a, 0, &b, 0), [0; 16]);
    }
}
