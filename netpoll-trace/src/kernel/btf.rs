//! A minimal reader of the kernel's BTF (the type section of /sys/kernel/btf/vmlinux):
//! just enough to find struct members (through anonymous structs and unions, and
//! bitfields) and enum constants. Format: Documentation/bpf/btf.rst.
//!
//! A module's BTF (/sys/kernel/btf/<module>, a .ko's `.BTF`) is split BTF: its type ids
//! and string offsets continue its base's (vmlinux). It is parsed with only what it needs
//! of the base ([`base::read`]): the base's type count and the strings it names.

pub mod base;
pub mod bytes;
mod format;
mod memo;
mod names;

pub use base::Base;

use anyhow::{Context as _, Result, bail, ensure};

use format::*;

/// Parsed BTF: the file's bytes as read or mapped, and where each type's record starts (index =
/// type id; id 0 is `void`). Members, enum values and names are decoded from the bytes
/// when asked: the kernel's BTF has 100k+ types, and a decoded copy of them all cost more
/// memory (tens of MiB at start-up) and time than the few lookups start-up makes.
pub struct Btf {
    data: bytes::Bytes,
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// Byte offset (within the type section) of each type's record; [0] is a placeholder.
    offsets: Vec<u32>,
    /// For split BTF, the base's type count and strings; for a base BTF, none.
    base: Base,
    /// `struct_by_name`'s answers so far: start-up asks a few structs' members dozens of
    /// times, and each unanswered name is a walk over every type (under TCG ~10 ms a walk
    /// of the kernel's 100k+ types; a name-keyed index of every struct would cost more
    /// memory at the start-up peak than the handful of names asked).
    structs: memo::Memo<usize>,
    /// `enum_value`'s answers so far, for the same reason.
    constants: memo::Memo<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

/// Where a member sits inside its outermost struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLocation {
    pub bit_offset: u32,
    /// 0 when the member is not a bitfield.
    pub bitfield_size: u32,
}

impl MemberLocation {
    pub fn byte_offset(&self) -> u32 {
        self.bit_offset / 8
    }
}

fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    let s = b.get(off..off + 2).context("BTF truncated")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    let s = b.get(off..off + 4).context("BTF truncated")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A type record's head: name offset, kind, vlen, kind_flag, and its size/type word.
#[derive(Debug, Clone, Copy)]
struct Head {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
}

impl Btf {
    /// Parses a copy of `data` (tests, fuzzing, small blobs); `from_vec` keeps the bytes given.
    pub fn parse(data: &[u8]) -> Result<Self> {
        Self::from_vec(data.to_vec())
    }

    /// Parses the BTF in `data`, keeping it (`from_bytes`).
    pub fn from_vec(data: Vec<u8>) -> Result<Self> {
        Self::from_bytes(data.into())
    }

    /// Parses the BTF in `data`, read or mapped, keeping it: every type record is walked
    /// and bounds-checked once here, so the lookups afterwards cannot run past the section.
    pub fn from_bytes(data: bytes::Bytes) -> Result<Self> {
        ensure!(data.len() >= 24, "BTF too short ({} bytes)", data.len());
        let magic = u16_at(&data, 0)?;
        if magic == MAGIC.swap_bytes() {
            bail!("BTF is big-endian; only little-endian kernels are supported");
        }
        ensure!(magic == MAGIC, "not BTF (magic {magic:#06x})");
        let hdr_len = u32_at(&data, 4)? as usize;
        let section = |off: usize, len: usize, what: &str| -> Result<std::ops::Range<usize>> {
            let start = hdr_len
                .checked_add(off)
                .with_context(|| format!("BTF {what} section out of bounds"))?;
            let end = start
                .checked_add(len)
                .with_context(|| format!("BTF {what} section out of bounds"))?;
            ensure!(end <= data.len(), "BTF {what} section out of bounds");
            Ok(start..end)
        };
        let types = section(
            u32_at(&data, 8)? as usize,
            u32_at(&data, 12)? as usize,
            "type",
        )?;
        let strings = section(
            u32_at(&data, 16)? as usize,
            u32_at(&data, 20)? as usize,
            "string",
        )?;
        let offsets = index_types(&data[types.clone()])?;
        Ok(Self {
            data,
            types,
            strings,
            offsets,
            base: Base::none(),
            structs: Default::default(),
            constants: Default::default(),
        })
    }

    /// Makes this BTF (a module's) split BTF over `base`: its type ids start at the
    /// base's type count, and its string offsets past the base's string section.
    pub fn split_over(mut self, base: Base) -> Self {
        self.base = base;
        // Names read through the base may now match: nothing looked up before counts.
        self.structs = Default::default();
        self.constants = Default::default();
        self
    }

    /// Every string offset the type records name, sorted, once each: type, member and
    /// enum constant names (parameter names are never looked up). What `base::read`
    /// must keep of a base's strings for this BTF.
    pub fn name_offsets(&self) -> Vec<u32> {
        let b = self.type_bytes();
        let word = |at: usize| u32_at(b, at).unwrap_or(0);
        let mut out = Vec::new();
        for id in self.ids() {
            let (Some(h), Some(at)) = (self.head(id), self.record(id)) else {
                continue;
            };
            out.push(h.name_off);
            let stride = match h.kind {
                KIND_STRUCT | KIND_UNION | KIND_ENUM64 => 12,
                KIND_ENUM => 8,
                _ => continue,
            };
            out.extend((0..h.vlen).map(|i| word(at + 12 + stride * i)));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The type ids this BTF holds: from 1, or for split BTF from the base's type count.
    fn ids(&self) -> std::ops::Range<usize> {
        let first = self.base.type_count as usize;
        first..first + self.offsets.len() - 1
    }

    /// Where type `id`'s record starts in the type section (None for void, a base type
    /// of split BTF, or an id past the end).
    fn record(&self, id: usize) -> Option<usize> {
        let local = id.checked_sub(self.base.type_count as usize)? + 1;
        Some(*self.offsets.get(local)? as usize)
    }

    fn type_bytes(&self) -> &[u8] {
        &self.data[self.types.clone()]
    }

    /// The number of type ids, id 0 (void) and a split BTF's base types included.
    fn type_count(&self) -> usize {
        self.ids().end
    }

    /// Every type record: (type id, where its record starts, its kind, its vlen). The walk
    /// the lookups by name make; reads one word a type (bounds checked by index_types).
    fn records(&self) -> impl Iterator<Item = (usize, usize, u32, usize)> + '_ {
        let b = self.type_bytes();
        self.ids().zip(&self.offsets[1..]).map(move |(id, &off)| {
            let off = off as usize;
            let info = u32_at(b, off + 4).unwrap_or(0);
            (id, off, (info >> 24) & 0x1f, (info & 0xffff) as usize)
        })
    }

    /// The head of type `id` (None for void, a base type of split BTF, or an id past the end).
    fn head(&self, id: usize) -> Option<Head> {
        let off = self.record(id)?;
        let b = self.type_bytes();
        // Bounds were checked by index_types.
        let info = u32_at(b, off + 4).ok()?;
        Some(Head {
            name_off: u32_at(b, off).ok()?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: u32_at(b, off + 8).ok()?,
        })
    }

    /// The members of composite type `id` (None when `id` is not a struct or union).
    fn members(&self, id: usize) -> Option<impl Iterator<Item = Member> + '_> {
        let h = self.head(id)?;
        if h.kind != KIND_STRUCT && h.kind != KIND_UNION {
            return None;
        }
        let start = self.record(id)? + 12;
        let b = self.type_bytes();
        Some((0..h.vlen).map(move |i| {
            let at = start + 12 * i;
            let word = |o: usize| u32_at(b, at + o).unwrap_or(0);
            let raw = word(8);
            let (bit_offset, bitfield_size) = if h.kind_flag {
                (raw & 0x00ff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            Member {
                name_off: word(0),
                type_id: word(4),
                bit_offset,
                bitfield_size,
            }
        }))
    }

    /// The string at `off`: split BTF's offsets below the base's string section's length
    /// are base strings (empty when `base::read` was not asked for them).
    fn name(&self, off: u32) -> &[u8] {
        let Some(off) = off.checked_sub(self.base.strings_len) else {
            return self.base.name(off);
        };
        let strings = &self.data[self.strings.clone()];
        let rest = strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The size in bytes of struct (or union) `name`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        Some(self.head(self.struct_by_name(name)?)?.size_or_type)
    }

    /// Location of `member` in `struct_name`, looking into anonymous structs and unions
    /// (6.12 wraps `priv_flags` in a `struct_group`).
    pub fn member(&self, struct_name: &str, member: &str) -> Option<MemberLocation> {
        let id = self.struct_by_name(struct_name)?;
        self.find_member(
            id,
            member.as_bytes(),
            0,
            0,
            &mut std::collections::HashMap::new(),
        )
    }

    /// `searched`: anonymous types already searched, by the shallowest depth they were
    /// searched at. A type that did not hold the member once will not the next time, so
    /// each is searched once (again only from higher up, where the depth limit cuts less):
    /// a corrupt BTF's loops or shared anonymous types cannot make the search exponential.
    fn find_member(
        &self,
        id: usize,
        want: &[u8],
        base: u32,
        depth: u32,
        searched: &mut std::collections::HashMap<u32, u32>,
    ) -> Option<MemberLocation> {
        if depth > 8 {
            return None;
        }
        for m in self.members(id)? {
            if m.name_off != 0 && self.name(m.name_off) == want {
                // Past u32's bits is a corrupt BTF: not found, rather than a wrapped offset.
                let bit_offset = base.checked_add(m.bit_offset)?;
                return Some(MemberLocation {
                    bit_offset,
                    bitfield_size: m.bitfield_size,
                });
            }
        }
        for m in self.members(id)?.filter(|m| m.name_off == 0) {
            if searched.get(&m.type_id).is_some_and(|&d| d <= depth) {
                continue;
            }
            searched.insert(m.type_id, depth);
            if let Some(base) = base.checked_add(m.bit_offset)
                && let Some(found) =
                    self.find_member(m.type_id as usize, want, base, depth + 1, searched)
            {
                return Some(found);
            }
        }
        None
    }

    /// The FUNC types: (type id, name offset, prototype id).
    fn funcs(&self) -> impl Iterator<Item = (usize, u32, u32)> + '_ {
        let b = self.type_bytes();
        self.records()
            .filter(|&(_, _, kind, _)| kind == KIND_FUNC)
            .map(move |(id, off, _, _)| {
                let word = |at| u32_at(b, off + at).unwrap_or(0);
                (id, word(0), word(8))
            })
    }

    /// True when the BTF describes a function `name` (the kernel's BTF lists the
    /// functions of its symbol table, so this answers "is it in kallsyms" for vmlinux
    /// functions without reading kallsyms).
    pub fn has_function(&self, name: &str) -> bool {
        self.funcs()
            .any(|(_, name_off, _)| self.name(name_off) == name.as_bytes())
    }

    /// The struct that function `name`'s first parameter points to, through typedefs and
    /// qualifiers; None when it is not a pointer to a struct this BTF holds (a split BTF
    /// holds only its module's own types: a `struct netpoll *` of vmlinux answers None).
    pub fn first_param_struct(&self, name: &str) -> Option<String> {
        let (_, _, proto) = self
            .funcs()
            .find(|(_, n, _)| self.name(*n) == name.as_bytes())?;
        let h = self.head(proto as usize)?;
        if h.kind != KIND_FUNC_PROTO || h.vlen == 0 {
            return None;
        }
        // The first btf_param after the head: name_off, type.
        let at = self.record(proto as usize)? + 12;
        let mut ty = u32_at(self.type_bytes(), at + 4).ok()? as usize;
        let mut through_pointer = false;
        for _ in 0..8 {
            let h = self.head(ty)?;
            match h.kind {
                KIND_PTR if !through_pointer => through_pointer = true,
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT => {}
                KIND_STRUCT if through_pointer => {
                    return std::str::from_utf8(self.name(h.name_off))
                        .ok()
                        .map(str::to_string);
                }
                _ => return None,
            }
            ty = h.size_or_type as usize;
        }
        None
    }

    /// What `function_index_btf` needs to stand in for this BTF when looking up `names`.
    pub fn function_index(&self, names: &[&str]) -> FunctionIndex {
        let mut funcs: Vec<(String, u32, u32)> = Vec::new();
        for (id, name_off, proto) in self.funcs() {
            // Compared in place, not decoded: tens of thousands of FUNCs, a handful asked.
            let Some(name) = self.which_name(name_off, names).map(|i| names[i]) else {
                continue;
            };
            // The first FUNC of a name, as aya's lookup by name finds it.
            if !funcs.iter().any(|(n, _, _)| n == name) {
                funcs.push((name.to_string(), id as u32, proto));
            }
        }
        FunctionIndex {
            type_count: self.type_count() as u32,
            funcs,
        }
    }
}

/// Where each type's record starts in the type section `b` (index = type id), every
/// record's trailing data checked to lie within `b`.
fn index_types(b: &[u8]) -> Result<Vec<u32>> {
    ensure!(b.len() <= u32::MAX as usize, "BTF type section too large");
    // A type is at least 12 bytes: a cheap upper bound that allocates once.
    let mut offsets = Vec::with_capacity(1 + b.len() / 12);
    offsets.push(0); // id 0: void
    let mut off = 0usize;
    while off < b.len() {
        let info = u32_at(b, off + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let end = off + 12 + trailing_len(kind, vlen, offsets.len())?;
        ensure!(end <= b.len(), "BTF truncated");
        offsets.push(off as u32);
        off = end;
    }
    offsets.shrink_to_fit();
    Ok(offsets)
}

/// The type count of a BTF and some of its functions: (name, type id, prototype id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionIndex {
    /// Including id 0 (void).
    pub type_count: u32,
    pub funcs: Vec<(String, u32, u32)>,
}

/// An `aya::Btf` with the same type ids as the BTF `index` came from, up to the last
/// indexed function: only the indexed functions are real, every id before them is an
/// empty placeholder. aya's `FEntry::load` needs a parsed `aya::Btf` only to look the
/// function's type id up by name; built in memory (no bytes to encode and parse again),
/// this costs one 72-byte entry per id instead of aya's full parse of the kernel's BTF
/// (measured under TCG on 6.12: 220-560 ms and the start-up memory peak).
pub fn function_index_btf(index: &FunctionIndex) -> aya::Btf {
    use aya_obj::btf::{BtfType, Func, FuncLinkage};
    let mut btf = aya::Btf::new();
    let last = index
        .funcs
        .iter()
        .map(|(_, id, _)| *id)
        .max()
        .unwrap_or(0)
        .min(index.type_count.saturating_sub(1));
    for id in 1..=last {
        // The first FUNC of a name is the one aya's lookup finds; later duplicates stay placeholders.
        let t = match index.funcs.iter().find(|(_, fid, _)| *fid == id) {
            Some((name, _, proto)) => {
                let name_off = btf.add_string(name);
                BtfType::Func(Func::new(name_off, *proto, FuncLinkage::Global))
            }
            None => BtfType::Unknown,
        };
        btf.add_type(t);
    }
    btf
}

/// Builds BTF blobs for tests: the layouts of our lab kernels, written by hand
/// from their real shapes (plain field, anonymous group, bitfield).
#[cfg(test)]
pub mod testing {
    #[derive(Default)]
    pub struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        /// For split BTF: the base's strings (a name found there is named there, as
        /// pahole does), whose length starts this BTF's own string offsets.
        base_strings: Vec<u8>,
    }

    pub struct M<'a> {
        pub name: &'a str,
        pub type_id: u32,
        pub bit_offset: u32,
        pub bitfield_size: u32,
    }

    impl Builder {
        pub fn new() -> Self {
            Self {
                types: vec![],
                strings: vec![0],
                next_id: 1,
                base_strings: vec![],
            }
        }
        /// A module's split BTF over `base`: its type ids and strings continue the base's.
        pub fn split(base: &Builder) -> Self {
            Self {
                types: vec![],
                strings: vec![],
                next_id: base.next_id,
                base_strings: base.strings.clone(),
            }
        }
        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let mut at = 0;
            for b in self.base_strings.split(|&c| c == 0) {
                if b == s.as_bytes() {
                    return at;
                }
                at += b.len() as u32 + 1;
            }
            let off = (self.base_strings.len() + self.strings.len()) as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn head(&mut self, name: &str, kind: u32, vlen: usize, kflag: bool, size: u32) -> u32 {
            let n = self.str(name);
            let info = (kind << 24) | vlen as u32 | if kflag { 1 << 31 } else { 0 };
            for v in [n, info, size] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }
        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.head(name, 1, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }
        pub fn ptr(&mut self, to: u32) -> u32 {
            self.head("", 2, 0, false, to)
        }
        pub fn composite(&mut self, name: &str, union: bool, size: u32, members: &[M]) -> u32 {
            let kflag = members.iter().any(|m| m.bitfield_size != 0);
            let names: Vec<u32> = members.iter().map(|m| self.str(m.name)).collect();
            let id = self.head(name, if union { 5 } else { 4 }, members.len(), kflag, size);
            for (m, n) in members.iter().zip(names) {
                let off = if kflag {
                    (m.bitfield_size << 24) | m.bit_offset
                } else {
                    m.bit_offset
                };
                for v in [n, m.type_id, off] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }
        pub fn enum64(&mut self, name: &str, values: &[(&str, u64)]) -> u32 {
            let names: Vec<u32> = values.iter().map(|(n, _)| self.str(n)).collect();
            let id = self.head(name, 19, values.len(), false, 8);
            for ((_, v), n) in values.iter().zip(names) {
                for w in [n, *v as u32, (*v >> 32) as u32] {
                    self.types.extend_from_slice(&w.to_le_bytes());
                }
            }
            id
        }
        pub fn func(&mut self, name: &str, proto: u32) -> u32 {
            self.head(name, 12, 0, false, proto)
        }
        /// A FUNC_PROTO returning `ret` with unnamed `params`.
        pub fn proto(&mut self, ret: u32, params: &[u32]) -> u32 {
            let id = self.head("", 13, params.len(), false, ret);
            for p in params {
                for w in [0, *p] {
                    self.types.extend_from_slice(&w.to_le_bytes());
                }
            }
            id
        }
        /// A CONST of `to`.
        pub fn konst(&mut self, to: u32) -> u32 {
            self.head("", 10, 0, false, to)
        }
        pub fn enum32(&mut self, name: &str, values: &[(&str, u32)]) -> u32 {
            let names: Vec<u32> = values.iter().map(|(n, _)| self.str(n)).collect();
            let id = self.head(name, 6, values.len(), false, 4);
            for ((_, v), n) in values.iter().zip(names) {
                for w in [n, *v] {
                    self.types.extend_from_slice(&w.to_le_bytes());
                }
            }
            id
        }
        pub fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.push(1);
            out.push(0);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Builder, M};
    use super::*;

    #[test]
    fn finds_plain_nested_and_bitfield_members() {
        let mut b = Builder::new();
        let int = b.int("unsigned int", 4);
        let inner = b.composite(
            "",
            false,
            8,
            &[M {
                name: "priv_flags",
                type_id: int,
                bit_offset: 0,
                bitfield_size: 32,
            }],
        );
        let group = b.composite(
            "",
            true,
            8,
            &[M {
                name: "",
                type_id: inner,
                bit_offset: 0,
                bitfield_size: 0,
            }],
        );
        b.composite(
            "net_device",
            false,
            2048,
            &[
                M {
                    name: "",
                    type_id: group,
                    bit_offset: 0,
                    bitfield_size: 0,
                },
                M {
                    name: "netdev_ops",
                    type_id: int,
                    bit_offset: 64,
                    bitfield_size: 0,
                },
                M {
                    name: "name",
                    type_id: int,
                    bit_offset: 3 * 64,
                    bitfield_size: 0,
                },
            ],
        );
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(
            btf.member("net_device", "priv_flags"),
            Some(MemberLocation {
                bit_offset: 0,
                bitfield_size: 32
            })
        );
        assert_eq!(btf.member("net_device", "name").unwrap().byte_offset(), 24);
        assert_eq!(
            btf.member("net_device", "netdev_ops")
                .unwrap()
                .byte_offset(),
            8
        );
        assert_eq!(btf.member("net_device", "nope"), None);
        assert_eq!(btf.member("no_such_struct", "name"), None);
    }

    #[test]
    fn reads_enum_and_enum64_constants() {
        let mut b = Builder::new();
        b.enum32(
            "netdev_priv_flags",
            &[("IFF_802_1Q_VLAN", 1), ("IFF_DISABLE_NETPOLL", 1 << 12)],
        );
        b.enum64("other", &[("BIG", 1 << 40)]);
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(btf.enum_value("IFF_DISABLE_NETPOLL"), Some(4096));
        assert_eq!(btf.enum_value("BIG"), Some(1 << 40));
        assert_eq!(btf.enum_value("MISSING"), None);
    }

    /// One walk for many names answers as a walk per name would: the first complete
    /// struct of a name (not a forward declaration, not a later duplicate), the first
    /// enum constant of a name, none for what is absent; and a name asked again is not
    /// looked up again (a second walk would find the same, so the memo is checked by
    /// what it holds).
    #[test]
    fn batched_lookups_answer_as_single_ones() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let m = |name, bit_offset| M {
            name,
            type_id: int,
            bit_offset,
            bitfield_size: 0,
        };
        b.composite("netpoll", false, 0, &[]); // a forward declaration
        b.composite("netpoll", false, 16, &[m("dev", 64)]);
        b.composite("netpoll", false, 32, &[m("dev", 128)]);
        b.composite("net_device", false, 8, &[m("name", 0)]);
        b.enum32("a", &[("X", 1), ("Y", 2)]);
        b.enum32("b", &[("X", 3)]);
        b.enum64("c", &[("BIG", 1 << 40)]);
        let bytes = b.finish();
        let single = Btf::parse(&bytes).unwrap();
        let batched = Btf::parse(&bytes).unwrap();
        batched.find_structs(&["netpoll", "net_device", "absent", "netpoll"]);
        batched.find_constants(&["X", "BIG", "ABSENT"]);
        assert_eq!(batched.structs.len(), 3);
        assert_eq!(batched.constants.len(), 3);
        for (s, mem) in [("netpoll", "dev"), ("net_device", "name"), ("absent", "x")] {
            assert_eq!(batched.member(s, mem), single.member(s, mem), "{s}.{mem}");
        }
        assert_eq!(batched.member("netpoll", "dev").unwrap().byte_offset(), 8);
        assert_eq!(batched.struct_size("netpoll"), Some(16));
        for c in ["X", "Y", "BIG", "ABSENT"] {
            assert_eq!(batched.enum_value(c), single.enum_value(c), "{c}");
        }
        assert_eq!(batched.enum_value("X"), Some(1));
        // Nothing new was walked for: the names asked before are answered from the memo.
        assert_eq!(batched.structs.len(), 3);
        assert_eq!(batched.constants.len(), 4, "Y was new");
    }

    #[test]
    fn finds_functions_by_name() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.func("netpoll_setup", int);
        b.composite("__netpoll_setup", false, 4, &[]);
        let btf = Btf::parse(&b.finish()).unwrap();
        assert!(btf.has_function("netpoll_setup"));
        // A struct of that name is not a function.
        assert!(!btf.has_function("__netpoll_setup"));
        assert!(!btf.has_function("netpoll_poll_dev"));
    }

    #[test]
    fn function_index_btf_keeps_type_ids() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.composite(
            "net_device",
            false,
            8,
            &[M {
                name: "name",
                type_id: int,
                bit_offset: 0,
                bitfield_size: 0,
            }],
        );
        let f1 = b.func("netpoll_setup", int);
        b.enum32("e", &[("A", 1)]);
        let f2 = b.func("__netpoll_setup", int);
        b.func("netpoll_setup", int); // a later duplicate: lookups find the first
        b.func("other", int);
        let btf = Btf::parse(&b.finish()).unwrap();
        let index = btf.function_index(&["netpoll_setup", "__netpoll_setup", "netpoll_poll_dev"]);
        assert_eq!(index.type_count, 8);
        assert_eq!(
            index.funcs,
            vec![
                ("netpoll_setup".to_string(), f1, int),
                ("__netpoll_setup".to_string(), f2, int)
            ]
        );
        // Same ids, found by aya's own lookup by name.
        let small = function_index_btf(&index);
        let id_of = |n: &str| {
            small
                .id_by_type_name_kind(n, aya_obj::btf::BtfKind::Func)
                .ok()
        };
        assert_eq!(id_of("netpoll_setup"), Some(f1));
        assert_eq!(id_of("__netpoll_setup"), Some(f2));
        assert_eq!(id_of("other"), None);
    }

    /// Found reading the parser for its fuzz target: an anonymous member's offset plus its
    /// inner member's overflowed u32 (a debug build panicked; release wrapped to a wrong offset).
    #[test]
    fn a_member_offset_past_u32_is_not_found_not_a_panic() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let inner = b.composite(
            "",
            false,
            8,
            &[M {
                name: "ifindex",
                type_id: int,
                bit_offset: 64,
                bitfield_size: 0,
            }],
        );
        b.composite(
            "net_device",
            false,
            8,
            &[M {
                name: "",
                type_id: inner,
                bit_offset: u32::MAX - 8,
                bitfield_size: 0,
            }],
        );
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(btf.member("net_device", "ifindex"), None);
    }

    /// Found with the one above: a struct whose anonymous members are the struct itself was
    /// searched once per path (fan-out to the depth limit: 12^8 visits, minutes); each
    /// anonymous type is now searched once per lookup.
    #[test]
    fn anonymous_members_that_loop_are_searched_once() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let me = int + 1;
        let anon: Vec<M> = (0..12)
            .map(|i| M {
                name: "",
                type_id: me,
                bit_offset: i * 32,
                bitfield_size: 0,
            })
            .collect();
        assert_eq!(b.composite("net_device", false, 64, &anon), me);
        let btf = Btf::parse(&b.finish()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(btf.member("net_device", "ifindex")).unwrap());
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)),
            Ok(None),
            "the lookup did not finish in 5 s"
        );
    }

    /// A kind we do not know has trailing data of unknown length: refused, not skipped
    /// by a guess; a member naming a type past the end is simply not followed.
    #[test]
    fn unknown_kinds_are_refused_and_dangling_members_not_followed() {
        let mut b = Builder::new();
        b.composite(
            "net_device",
            false,
            8,
            &[M {
                name: "",
                type_id: 999,
                bit_offset: 0,
                bitfield_size: 0,
            }],
        );
        let btf = Btf::parse(&b.finish()).unwrap();
        assert_eq!(btf.member("net_device", "ifindex"), None);
        let mut blob = Builder::new();
        blob.int("int", 4);
        let mut bytes = blob.finish();
        // The int's info word: kind 1 -> 31.
        bytes[24 + 7] = 31;
        let e = Btf::parse(&bytes).err().unwrap();
        assert!(format!("{e:#}").contains("unknown BTF kind 31"), "{e:#}");
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(Btf::parse(b"hello world, this is not btf").is_err());
        let mut b = Builder::new();
        b.int("int", 4);
        let mut blob = b.finish();
        blob.truncate(blob.len() - 3);
        assert!(Btf::parse(&blob).is_err());
    }

    /// A base (vmlinux) and a module's split BTF over it, shaped like netconsole's: the
    /// module's struct has members of base and module types, names in both string sections.
    fn base_and_module() -> (Vec<u8>, Vec<u8>) {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let netpoll = b.composite(
            "netpoll",
            false,
            144,
            &[M {
                name: "dev",
                type_id: int,
                bit_offset: 0,
                bitfield_size: 0,
            }],
        );
        let ipv6 = b.composite(
            "in6_addr",
            false,
            16,
            &[M {
                name: "state",
                type_id: int,
                bit_offset: 0,
                bitfield_size: 0,
            }],
        );
        b.func("netpoll_send_udp", int);
        b.enum32("base_enum", &[("BASE_CONST", 7)]);
        let mut m = Builder::split(&b);
        let state = m.enum32(
            "target_state",
            &[
                ("STATE_DISABLED", 0),
                ("STATE_ENABLED", 1),
                ("STATE_DEACTIVATED", 2),
            ],
        );
        let anon = m.composite(
            "",
            false,
            4,
            &[M {
                name: "remote_port",
                type_id: int,
                bit_offset: 16,
                bitfield_size: 0,
            }],
        );
        let plain = |name, type_id, bit_offset| M {
            name,
            type_id,
            bit_offset,
            bitfield_size: 0,
        };
        let nt = m.composite(
            "netconsole_target",
            false,
            2528,
            &[
                plain("state", state, 1344 * 8),
                plain("np", netpoll, 1352 * 8),
                plain("", anon, 1424 * 8),
                // An anonymous member of a base type: not searched (its records are not here).
                plain("", ipv6, 1500 * 8),
            ],
        );
        m.func("netcons_netpoll_setup", int);
        // 7.3's netpoll_send_udp takes the target; a kernel whose module took the
        // netpoll (a base type) would take `struct netpoll *`.
        let nt_ptr = m.ptr(nt);
        let takes_nt = m.proto(int, &[nt_ptr, int]);
        m.func("module_send_udp", takes_nt);
        let const_nt = m.konst(nt);
        let const_nt_ptr = m.ptr(const_nt);
        let takes_const_nt = m.proto(int, &[const_nt_ptr]);
        m.func("reads_target", takes_const_nt);
        let np_ptr = m.ptr(netpoll);
        let takes_np = m.proto(int, &[np_ptr, int]);
        m.func("takes_netpoll", takes_np);
        let no_params = m.proto(int, &[]);
        m.func("takes_nothing", no_params);
        (b.finish(), m.finish())
    }

    fn split(base: &[u8], module: &[u8]) -> Btf {
        let btf = Btf::parse(module).unwrap();
        let wanted = btf.name_offsets();
        let base = base::read(&mut std::io::Cursor::new(base), 0, &wanted).unwrap();
        btf.split_over(base)
    }

    /// Which struct a module function's first parameter points to: the module's own
    /// (through const), never a base type's (not held), nothing without parameters.
    #[test]
    fn a_module_functions_first_parameter_is_read_through_qualifiers() {
        let (base, module) = base_and_module();
        let btf = split(&base, &module);
        let first = |f| btf.first_param_struct(f);
        assert_eq!(
            first("module_send_udp").as_deref(),
            Some("netconsole_target")
        );
        assert_eq!(first("reads_target").as_deref(), Some("netconsole_target"));
        assert_eq!(first("takes_netpoll"), None);
        assert_eq!(first("takes_nothing"), None);
        assert_eq!(
            first("netcons_netpoll_setup"),
            None,
            "its proto is not a FUNC_PROTO here"
        );
        assert_eq!(first("absent"), None);
    }

    #[test]
    fn split_btf_continues_its_base_ids_and_strings() {
        let (base, module) = base_and_module();
        let btf = split(&base, &module);
        assert_eq!(btf.struct_size("netconsole_target"), Some(2528));
        let at = |m| btf.member("netconsole_target", m).map(|l| l.byte_offset());
        // "state" and "np"... "state" is a base string, "np" the module's own.
        assert_eq!(at("state"), Some(1344));
        assert_eq!(at("np"), Some(1352));
        assert_eq!(at("remote_port"), Some(1426));
        assert_eq!(at("dev"), None);
        assert_eq!(btf.enum_value("STATE_DEACTIVATED"), Some(2));
        assert_eq!(btf.enum_value("STATE_DISABLED"), Some(0));
        assert!(btf.has_function("netcons_netpoll_setup"));
        // The base's own types are not the module's.
        assert!(!btf.has_function("netpoll_send_udp"));
        assert_eq!(btf.enum_value("BASE_CONST"), None);
        assert_eq!(btf.struct_size("netpoll"), None);
        // Ids continue the base's: 5 base types + void, then the module's 16.
        assert_eq!(btf.type_count(), 6 + 16);
        let index = btf.function_index(&["netcons_netpoll_setup"]);
        assert_eq!(index.funcs[0].1, 9);
    }

    #[test]
    fn a_split_btf_read_alone_or_over_a_wrong_base_finds_nothing_not_a_panic() {
        let (_, module) = base_and_module();
        let alone = Btf::parse(&module).unwrap();
        // Its members name base types and strings it does not have.
        let _ = alone.member("netconsole_target", "np");
        // Over another base: refused (names inside its strings), or names not found.
        let mut other = Builder::new();
        other.int("long long unsigned int", 8);
        let other = other.finish();
        let wanted = alone.name_offsets();
        if let Ok(base) = base::read(&mut std::io::Cursor::new(&other), 0, &wanted) {
            let btf = alone.split_over(base);
            assert_eq!(btf.member("netconsole_target", "state"), None);
            let _ = btf.enum_value("STATE_DEACTIVATED");
        }
    }

    #[test]
    fn base_reading_keeps_only_the_wanted_strings() {
        let (base, _) = base_and_module();
        // A base inside a larger file (a vmlinux ELF's .BTF section).
        let mut file = vec![0xaa; 100];
        file.extend_from_slice(&base);
        let all = Btf::parse(&base).unwrap();
        let name_of = |s| all.head(all.struct_by_name(s).unwrap()).unwrap().name_off;
        let (netpoll, in6) = (name_of("netpoll"), name_of("in6_addr"));
        let read = |wanted: &[u32]| base::read(&mut std::io::Cursor::new(&file), 100, wanted);
        let got = read(&[in6, netpoll, 9999]).unwrap();
        assert_eq!(got.type_count, 6);
        assert_eq!(got.name(netpoll), b"netpoll");
        assert_eq!(got.name(in6), b"in6_addr");
        assert_eq!(got.name(netpoll + 8), b"");
        assert_eq!(got.blob.len(), "netpollin6_addr".len());
        // A name inside another string: the split BTF is another base's.
        for wanted in [&[netpoll + 3][..], &[netpoll, netpoll + 3]] {
            let e = format!("{:#}", read(wanted).err().unwrap());
            assert!(
                e.contains(&format!("no string at offset {}", netpoll + 3)),
                "{e}"
            );
        }
    }

    #[test]
    fn a_broken_base_is_an_error_naming_the_problem() {
        let (base, _) = base_and_module();
        let all = Btf::parse(&base).unwrap().name_offsets();
        let read = |b: &[u8]| {
            base::read(&mut std::io::Cursor::new(b), 0, &all)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(read(&base[..10]).contains("truncated (header)"));
        assert!(read(&base[..40]).contains("truncated (types)"));
        assert!(read(b"not btf at all, not at all").contains("not BTF"));
        let mut unterminated = base.clone();
        unterminated.pop();
        assert!(
            read(&unterminated).contains("offset 60 is not terminated"),
            "{}",
            read(&unterminated)
        );
    }
}
