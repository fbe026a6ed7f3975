//! A section of a 64-bit little-endian ELF file by name: a kernel module's `.BTF`, or a
//! vmlinux's. Every offset and size is checked against the file, so a broken file is an
//! error, never a panic or an allocation it asks for.

use anyhow::{Context as _, Result, bail, ensure};

const SHT_NOBITS: u32 = 8;
/// `e_shstrndx` when the real index is elsewhere (extended numbering, 65280+ sections).
const SHN_XINDEX: u16 = 0xffff;

fn bytes(data: &[u8], off: u64, len: u64) -> Result<&[u8]> {
    let start = usize::try_from(off).ok();
    let end = off.checked_add(len).and_then(|e| usize::try_from(e).ok());
    match (start, end) {
        (Some(s), Some(e)) if e <= data.len() => Ok(&data[s..e]),
        _ => bail!("ELF truncated (bytes {off}+{len} past its end)"),
    }
}

fn u16_at(b: &[u8], off: u64) -> Result<u16> {
    let s = bytes(b, off, 2)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: u64) -> Result<u32> {
    let s = bytes(b, off, 4)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: u64) -> Result<u64> {
    let s = bytes(b, off, 8)?;
    Ok(u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

/// A section header: name offset, type, file offset, size.
struct Header {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
}

/// The section headers of `data`, and the section name string table.
fn headers(data: &[u8]) -> Result<(Vec<Header>, &[u8])> {
    ensure!(data.starts_with(b"\x7fELF"), "not an ELF file");
    ensure!(
        data.get(4..6) == Some(&[2, 1]),
        "not a 64-bit little-endian ELF file"
    );
    let shoff = u64_at(data, 0x28)?;
    let shentsize = u16_at(data, 0x3a)? as u64;
    let shnum = u16_at(data, 0x3c)?;
    let shstrndx = u16_at(data, 0x3e)?;
    ensure!(shentsize >= 64, "ELF section headers of {shentsize} bytes");
    // Past 65279 sections the counts move to section 0: no module has that many.
    ensure!(
        shnum != 0 && shstrndx != SHN_XINDEX,
        "ELF with extended section numbering (not a kernel module)"
    );
    let table = bytes(data, shoff, shentsize * shnum as u64).context("ELF section headers")?;
    let headers = (0..shnum as u64)
        .map(|i| {
            let at = i * shentsize;
            Ok(Header {
                name: u32_at(table, at)?,
                kind: u32_at(table, at + 4)?,
                offset: u64_at(table, at + 0x18)?,
                size: u64_at(table, at + 0x20)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let names = headers
        .get(shstrndx as usize)
        .context("ELF section name table index past the sections")?;
    let names = bytes(data, names.offset, names.size).context("ELF section name table")?;
    Ok((headers, names))
}

fn name_at(names: &[u8], off: u32) -> &[u8] {
    let rest = names.get(off as usize..).unwrap_or(&[]);
    &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
}

/// The bytes of section `name` in ELF file `data`; None when there is no such section.
pub fn section<'a>(data: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    let (headers, names) = headers(data)?;
    let Some(h) = headers
        .iter()
        .find(|h| name_at(names, h.name) == name.as_bytes())
    else {
        return Ok(None);
    };
    ensure!(
        h.kind != SHT_NOBITS,
        "ELF section {name} has no bytes in the file"
    );
    bytes(data, h.offset, h.size)
        .with_context(|| format!("ELF section {name}"))
        .map(Some)
}

/// Builds small ELF files for tests: named sections with their bytes.
#[cfg(test)]
pub mod testing {
    pub fn elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut names = vec![0u8];
        let mut body = Vec::new();
        // (name offset, file offset, size) of each section after the null one.
        let mut placed = Vec::new();
        let all = sections.iter().copied().chain([(".shstrtab", &[][..])]);
        for (name, content) in all {
            let n = names.len() as u32;
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            placed.push((n, 64 + body.len(), content.len()));
            body.extend_from_slice(content);
        }
        // .shstrtab's bytes are known only now: it is the last section.
        let last = placed.len() - 1;
        placed[last] = (placed[last].0, 64 + body.len(), names.len());
        body.extend_from_slice(&names);
        let shoff = 64 + body.len();
        let mut e = vec![0u8; 64];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x10] = 1; // ET_REL, as a module
        e[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        e[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        e[0x3c..0x3e].copy_from_slice(&(placed.len() as u16 + 1).to_le_bytes());
        e[0x3e..0x40].copy_from_slice(&(placed.len() as u16).to_le_bytes());
        e.extend_from_slice(&body);
        e.extend_from_slice(&[0u8; 64]);
        for (i, (n, off, size)) in placed.iter().enumerate() {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&n.to_le_bytes());
            let kind: u32 = if i == last { 3 } else { 1 };
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(*off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(*size as u64).to_le_bytes());
            e.extend_from_slice(&h);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::testing::elf;
    use super::*;

    #[test]
    fn finds_a_section_by_name() {
        let f = elf(&[
            (".text", b"code"),
            (".BTF", b"btf bytes"),
            (".BTF.base", b""),
        ]);
        assert_eq!(section(&f, ".BTF").unwrap(), Some(&b"btf bytes"[..]));
        assert_eq!(section(&f, ".text").unwrap(), Some(&b"code"[..]));
        assert_eq!(section(&f, ".BTF.base").unwrap(), Some(&b""[..]));
        assert_eq!(section(&f, ".BT").unwrap(), None);
        assert_eq!(section(&f, ".data").unwrap(), None);
    }

    #[test]
    fn broken_files_are_errors_naming_the_problem() {
        let err = |d: &[u8]| format!("{:#}", section(d, ".BTF").err().unwrap());
        assert!(err(b"hello").contains("not an ELF file"));
        let f = elf(&[(".BTF", b"btf bytes")]);
        let mut be = f.clone();
        be[5] = 2;
        assert!(err(&be).contains("64-bit little-endian"));
        // Section headers cut off.
        assert!(err(&f[..f.len() - 10]).contains("ELF section headers"));
        // A section whose bytes lie past the end of the file.
        let mut past = f.clone();
        let h = past.len() - 2 * 64; // .BTF's header
        past[h + 0x20..h + 0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            err(&past).contains("ELF section .BTF: ELF truncated"),
            "{}",
            err(&past)
        );
        // A name table index past the sections.
        let mut idx = f.clone();
        idx[0x3e] = 9;
        assert!(err(&idx).contains("name table index"));
        let mut nobits = f.clone();
        nobits[h + 4] = 8;
        assert!(err(&nobits).contains("no bytes in the file"));
        let mut tiny = f;
        tiny[0x3a] = 8;
        assert!(err(&tiny).contains("section headers of 8 bytes"));
    }
}
