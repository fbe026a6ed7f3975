//! `opaque`: a value LLVM cannot see through, for code the BPF verifier walks.

/// `v` through memory. LLVM cannot see through a volatile read, so it cannot turn
/// arithmetic on the result back into the compare and select it stands for (a select is
/// a branch in BPF, and the verifier walks both sides), nor fold a mask into a range it
/// already knows (4.14's verifier tracks only the mask).
#[inline(always)]
pub fn opaque<T: Copy>(v: T) -> T {
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&v) }
}
