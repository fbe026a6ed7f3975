//! Lookups by name: each a walk over every type record (100k+ in the kernel's BTF, ~10 ms
//! a walk under TCG), so many names are looked up in one walk and each answer is kept.

use super::{Btf, format::*, u32_at};

impl Btf {
    /// Which of `wanted` the string at `off` is, without finding its end first: the byte
    /// just past each candidate's length must be the terminator, which rejects almost
    /// every other name at once (walks over 100k+ types under TCG are start-up's cost).
    pub(super) fn which_name(&self, off: u32, wanted: &[&str]) -> Option<usize> {
        let Some(local) = off.checked_sub(self.base.strings_len) else {
            let name = self.base.name(off);
            return wanted.iter().position(|w| w.as_bytes() == name);
        };
        let rest = self.data[self.strings.clone()].get(local as usize..)?;
        wanted.iter().position(|w| {
            let w = w.as_bytes();
            rest.get(w.len()) == Some(&0) && &rest[..w.len()] == w
        })
    }

    /// The first struct (not a forward declaration) named `name`, by type id; each name
    /// looked for once (`find_structs`).
    pub(super) fn struct_by_name(&self, name: &str) -> Option<usize> {
        self.find_structs(&[name]);
        self.structs.get(name)
    }

    /// Looks up in one walk over the types every one of `names` not looked up yet: the
    /// first struct or union (not a forward declaration) of that name, or none.
    pub fn find_structs(&self, names: &[&str]) {
        self.structs.fill(names, |wanted, found| {
            let b = self.type_bytes();
            for (id, off, kind, vlen) in self.records() {
                if (kind == KIND_STRUCT || kind == KIND_UNION)
                    && vlen > 0
                    && let Some(i) = self.which_name(u32_at(b, off).unwrap_or(0), wanted)
                {
                    found[i].get_or_insert(id);
                }
            }
        });
    }

    /// Value of the enum constant `name` in any enum (the first one found); each name
    /// looked for once (`find_constants`).
    pub fn enum_value(&self, name: &str) -> Option<i64> {
        self.find_constants(&[name]);
        self.constants.get(name)
    }

    /// Looks up in one walk over the enums every one of `names` not looked up yet.
    pub fn find_constants(&self, names: &[&str]) {
        self.constants.fill(names, |wanted, found| {
            let b = self.type_bytes();
            for (id, start, kind, vlen) in self.records() {
                if kind != KIND_ENUM && kind != KIND_ENUM64 {
                    continue;
                }
                let Some(h) = self.head(id) else { continue };
                let (stride, value): (usize, &dyn Fn(usize) -> i64) = match kind {
                    KIND_ENUM => (8, &|at| {
                        let raw = u32_at(b, at + 4).unwrap_or(0);
                        // kind_flag set: signed values.
                        if h.kind_flag {
                            raw as i32 as i64
                        } else {
                            raw as i64
                        }
                    }),
                    KIND_ENUM64 => (12, &|at| {
                        let lo = u32_at(b, at + 4).unwrap_or(0) as u64;
                        let hi = u32_at(b, at + 8).unwrap_or(0) as u64;
                        ((hi << 32) | lo) as i64
                    }),
                    _ => continue,
                };
                for i in 0..vlen {
                    let at = start + 12 + stride * i;
                    let Ok(name_off) = u32_at(b, at) else { break };
                    if let Some(j) = self.which_name(name_off, wanted) {
                        found[j].get_or_insert_with(|| value(at));
                    }
                }
            }
        });
    }
}
