//! The BTF format's constants and record lengths (Documentation/bpf/btf.rst), shared by
//! the reader and the base reader.

use anyhow::{Result, bail};

pub const MAGIC: u16 = 0xeb9f;

// Type kinds (BTF_KIND_*).
pub const KIND_INT: u32 = 1;
pub const KIND_PTR: u32 = 2;
pub const KIND_TYPEDEF: u32 = 8;
pub const KIND_VOLATILE: u32 = 9;
pub const KIND_CONST: u32 = 10;
pub const KIND_RESTRICT: u32 = 11;
pub const KIND_ARRAY: u32 = 3;
pub const KIND_STRUCT: u32 = 4;
pub const KIND_UNION: u32 = 5;
pub const KIND_ENUM: u32 = 6;
pub const KIND_FUNC: u32 = 12;
pub const KIND_FUNC_PROTO: u32 = 13;
pub const KIND_VAR: u32 = 14;
pub const KIND_DATASEC: u32 = 15;
pub const KIND_DECL_TAG: u32 = 17;
pub const KIND_ENUM64: u32 = 19;

/// The bytes of trailing data after a type's 12-byte head; an error for a kind we do not
/// know (its length would be a guess).
pub fn trailing_len(kind: u32, vlen: usize, at: usize) -> Result<usize> {
    Ok(match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        // FUNC, PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FLOAT, TYPE_TAG: none.
        KIND_FUNC | 2 | 7..=11 | 16 | 18 => 0,
        other => bail!("unknown BTF kind {other} at type {at}"),
    })
}
