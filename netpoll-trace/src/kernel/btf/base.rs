//! What a module's split BTF needs of its base (vmlinux) BTF: the base's type count (the
//! module's first type id) and the few base strings the module's types name. The base is
//! streamed, never held: the kernel's is 5-6 MiB, of which a module names a few KiB.

use std::io::{BufRead as _, BufReader, Read, Seek, SeekFrom};

use anyhow::{Context as _, Result, bail, ensure};

use super::format::{MAGIC, trailing_len};

/// The base of a split BTF, as far as its lookups need it.
#[derive(Debug, Default)]
pub struct Base {
    /// Type ids in the base, void included: the split BTF's first type id.
    pub(super) type_count: u32,
    /// The base's string section's length: split string offsets from here are the split's own.
    pub(super) strings_len: u32,
    /// (offset, start in `blob`, length) of each kept string, by offset.
    index: Vec<(u32, u32, u32)>,
    pub(super) blob: Vec<u8>,
}

impl Base {
    /// No base: the BTF is vmlinux's own (ids from 1, every string its own).
    pub(super) fn none() -> Self {
        Self {
            type_count: 1,
            ..Self::default()
        }
    }

    /// The kept base string at `off`; empty for one not kept.
    pub(super) fn name(&self, off: u32) -> &[u8] {
        match self.index.binary_search_by_key(&off, |e| e.0) {
            Ok(i) => {
                let (_, start, len) = self.index[i];
                &self.blob[start as usize..(start + len) as usize]
            }
            Err(_) => &[],
        }
    }
}

fn u32_of(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the base BTF that starts at byte `start` of `r` (0 for /sys/kernel/btf/vmlinux,
/// the `.BTF` section's offset in a vmlinux ELF), keeping of its strings only those at
/// `wanted` (`Btf::name_offsets`); an error when one is not a string's start. Reads the type section's record heads to count
/// them and the string section up to the last wanted string, through one 64 KiB buffer.
pub fn read<R: Read + Seek>(r: &mut R, start: u64, wanted: &[u32]) -> Result<Base> {
    let mut r = BufReader::with_capacity(64 << 10, r);
    r.seek(SeekFrom::Start(start))
        .context("base BTF: cannot seek to it")?;
    let mut hdr = [0u8; 24];
    r.read_exact(&mut hdr)
        .context("base BTF truncated (header)")?;
    let magic = u16::from_le_bytes([hdr[0], hdr[1]]);
    ensure!(magic == MAGIC, "base is not BTF (magic {magic:#06x})");
    let hdr_len = u32_of(&hdr, 4) as u64;
    ensure!(hdr_len >= 24, "base BTF header too short ({hdr_len} bytes)");
    let (type_off, type_len) = (u32_of(&hdr, 8) as u64, u32_of(&hdr, 12) as u64);
    let (str_off, str_len) = (u32_of(&hdr, 16) as u64, u32_of(&hdr, 20));

    r.seek(SeekFrom::Start(start + hdr_len + type_off))
        .context("base BTF: cannot seek to its types")?;
    let (mut pos, mut count) = (0u64, 1u32);
    let mut head = [0u8; 12];
    while pos < type_len {
        r.read_exact(&mut head)
            .context("base BTF truncated (types)")?;
        let info = u32_of(&head, 4);
        let trailing = trailing_len(
            (info >> 24) & 0x1f,
            (info & 0xffff) as usize,
            count as usize,
        )
        .context("base BTF")? as u64;
        pos += 12 + trailing;
        ensure!(pos <= type_len, "base BTF truncated (type {count})");
        r.seek_relative(trailing as i64)
            .context("base BTF: cannot skip a type")?;
        count = count
            .checked_add(1)
            .context("base BTF has too many types")?;
    }

    r.seek(SeekFrom::Start(start + hdr_len + str_off))
        .context("base BTF: cannot seek to its strings")?;
    let mut base = Base {
        type_count: count,
        strings_len: str_len,
        ..Base::default()
    };
    // Where the reader is in the string section: past the last string kept.
    let mut at = 0u32;
    let mut wanted: Vec<u32> = wanted.iter().copied().filter(|&o| o < str_len).collect();
    wanted.sort_unstable();
    wanted.dedup();
    for off in wanted {
        // pahole dedups whole strings: each name starts a string. One that does not means
        // the split BTF was built over another base, whose names would be wrong ones.
        let starts_string = match off.checked_sub(at) {
            Some(0) => true,
            Some(gap) => {
                // Skipping by seeking: a gap past the buffer costs one refill, never a re-read.
                r.seek_relative(gap as i64 - 1)
                    .context("base BTF: cannot skip to a string")?;
                let mut before = [0u8];
                r.read_exact(&mut before)
                    .context("base BTF truncated (strings)")?;
                before[0] == 0
            }
            None => false,
        };
        ensure!(
            starts_string,
            "base BTF has no string at offset {off}: the split BTF was built over another kernel's BTF"
        );
        let begin = base.blob.len();
        (&mut r)
            .take((str_len - off) as u64)
            .read_until(0, &mut base.blob)
            .context("base BTF truncated (strings)")?;
        if base.blob.pop() != Some(0) {
            bail!("base BTF string at offset {off} is not terminated");
        }
        let len = (base.blob.len() - begin) as u32;
        at = off + len + 1;
        base.index.push((off, begin as u32, len));
    }
    base.blob.shrink_to_fit();
    Ok(base)
}
