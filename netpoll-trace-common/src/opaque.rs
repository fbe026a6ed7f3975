//! Arithmetic that stays arithmetic in BPF: `opaque` (a value LLVM cannot see through),
//! and the 0/1 and all-ones masks built on it, for code the verifier walks.

/// `v` through memory. LLVM cannot see through a volatile read, so it cannot turn
/// arithmetic on the result back into the compare and select it stands for (a select is
/// a branch in BPF, and the verifier walks both sides), nor fold a mask into a range it
/// already knows (4.14's verifier tracks only the mask).
#[inline(always)]
pub fn opaque<T: Copy>(v: T) -> T {
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&v) }
}

/// 1 when `x` is not 0, else 0, without a compare: the sign bit of `x | -x` (set exactly
/// when x != 0), through `opaque` so that LLVM cannot make it a compare again.
#[inline(always)]
pub fn nonzero(x: u64) -> u64 {
    opaque(x | x.wrapping_neg()) >> 63
}

/// All ones for 1, zero for 0, through `opaque`: LLVM makes `x & -(0/1)` a select (a
/// branch in BPF) when it can see the 0/1.
#[inline(always)]
pub fn mask(bit: u64) -> u64 {
    opaque(bit.wrapping_neg())
}
