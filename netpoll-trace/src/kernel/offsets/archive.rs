//! The BTF in a `--btf FILE`: a raw BTF file (a copy of /sys/kernel/btf/vmlinux, `pahole
//! -J`'s output, BTFHub's `<release>.btf`), or BTFHub's archive as published
//! (`<distro>/<version>/<arch>/<release>.btf.tar.xz`: an xz-compressed tar holding
//! `<release>.btf`), or the same tar uncompressed. Every size is bounded, so a hostile or
//! broken file cannot make us allocate without limit.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

/// The largest file we read (an archive, or a raw BTF). A whole vmlinux BTF is 4-10 MiB.
pub const MAX_FILE: u64 = 64 << 20;
/// The most an archive may decompress to.
pub const MAX_UNPACKED: usize = 256 << 20;

const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const BTF_MAGIC: &[u8] = &[0x9f, 0xeb];

/// BTF bytes, and the archive member they came from (None for a raw file).
pub struct BtfBytes {
    pub data: Vec<u8>,
    pub member: Option<String>,
}

/// Reads `path` as raw BTF or a (compressed) tar of one; `release` is the running
/// kernel's, to pick the member BTFHub names after it.
pub fn read(path: &Path, release: Option<&str>) -> Result<BtfBytes> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow!("reading BTF from {}: {e}", path.display()))?;
    let mut data = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow!("reading BTF from {}: {e}", path.display()))?;
    if data.len() as u64 > MAX_FILE {
        bail!(
            "{} is larger than {} MiB: not a BTF file or BTFHub archive",
            path.display(),
            MAX_FILE >> 20
        );
    }
    from_bytes(data, release).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// Whether `path` is raw BTF (not an archive), by the magic `from_bytes` tells them by.
pub fn is_raw_btf(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == BTF_MAGIC)
}

/// `read` without the file: what the bytes are, and the BTF in them.
pub fn from_bytes(data: Vec<u8>, release: Option<&str>) -> Result<BtfBytes> {
    if data.starts_with(BTF_MAGIC) {
        return Ok(BtfBytes { data, member: None });
    }
    let tar = if data.starts_with(XZ_MAGIC) {
        unxz(&data, MAX_UNPACKED)?
    } else if is_tar(&data) {
        data
    } else if data.starts_with(b"\x7fELF") {
        bail!(
            "an ELF file, not BTF: extract its BTF with `objcopy -O binary --only-section=.BTF FILE vmlinux.btf`"
        );
    } else {
        bail!("neither BTF nor a BTFHub archive (.btf, .btf.tar.xz or .tar)");
    };
    let members = tar_members(&tar)?;
    let (name, range) = select_member(&members, release)?;
    let data = tar[range].to_vec();
    if !data.starts_with(BTF_MAGIC) {
        bail!("archive member {name} is not BTF");
    }
    Ok(BtfBytes {
        data,
        member: Some(name),
    })
}

/// The largest LZMA2 dictionary we accept (xz -9 uses 64 MiB; BTFHub's default 8 MiB).
const MAX_DICT_KB: u32 = 64 << 10;

/// Decompresses an xz stream into at most `cap` bytes, streaming (never more than the
/// output and one bounded dictionary in memory), verifying the stream's checks. Also
/// reads xz-compressed kernel modules (`module_btf`).
pub fn unxz(data: &[u8], cap: usize) -> Result<Vec<u8>> {
    let reader = lzma_rust2::XzReader::new_mem_limit(data, false, MAX_DICT_KB);
    let mut out = Vec::new();
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("corrupt or unsupported xz data: {e}"))?;
    if out.len() > cap {
        bail!("xz data decompresses to more than {} MiB", cap >> 20);
    }
    Ok(out)
}

fn is_tar(data: &[u8]) -> bool {
    data.len() >= 512 && &data[257..262] == b"ustar"
}

/// A tar member: its name and where its content is in the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub range: std::ops::Range<usize>,
}

fn octal(field: &[u8]) -> Result<usize> {
    let text =
        std::str::from_utf8(field).map_err(|_| anyhow!("tar header has a non-ASCII size"))?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Ok(0);
    }
    usize::from_str_radix(text, 8).map_err(|_| anyhow!("tar header size `{text}` is not octal"))
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The regular files of a tar (ustar, GNU or pax; long names and pax records skipped).
pub fn tar_members(tar: &[u8]) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= tar.len() {
        let h = &tar[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        if h[124] & 0x80 != 0 {
            bail!("tar member larger than 8 GiB: not a BTFHub archive");
        }
        let size = octal(&h[124..136])?;
        let start = off + 512;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= tar.len())
            .ok_or_else(|| anyhow!("tar truncated"))?;
        let mut name = cstr(&h[0..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if matches!(h[156], b'0' | 0) {
            out.push(Member {
                name,
                range: start..end,
            });
        }
        off = start + size.div_ceil(512) * 512;
    }
    Ok(out)
}

/// The member holding this kernel's BTF: `<release>.btf` when there is one; else the
/// only `.btf` member, unless its name is another kernel release's (BTFHub names each
/// file after `uname -r`: using another kernel's BTF would be a guess).
pub fn select_member(
    members: &[Member],
    release: Option<&str>,
) -> Result<(String, std::ops::Range<usize>)> {
    let base = |m: &Member| m.name.rsplit('/').next().unwrap_or(&m.name).to_string();
    let btfs: Vec<&Member> = members
        .iter()
        .filter(|m| base(m).ends_with(".btf"))
        .collect();
    if let Some(rel) = release
        && let Some(m) = btfs.iter().find(|m| base(m) == format!("{rel}.btf"))
    {
        return Ok((m.name.clone(), m.range.clone()));
    }
    match btfs.as_slice() {
        [] => bail!(
            "the archive holds no .btf file (members: {})",
            list(members)
        ),
        [m] => {
            let stem = base(m).trim_end_matches(".btf").to_string();
            if let Some(rel) = release
                && looks_like_release(&stem)
            {
                bail!(
                    "the archive holds BTF for kernel {stem}, this kernel is {rel}: use BTFHub's {rel}.btf.tar.xz"
                );
            }
            Ok((m.name.clone(), m.range.clone()))
        }
        _ => bail!(
            "the archive holds several .btf files and none for this kernel ({}): {}",
            release.unwrap_or("release unknown"),
            list(members)
        ),
    }
}

/// `5.4.0-1045-aws`, `4.14.186-146.268.amzn2.x86_64`: a digit, a dot, a digit first.
fn looks_like_release(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && b[0].is_ascii_digit()
        && s.split('.')
            .nth(1)
            .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_digit()))
}

fn list(members: &[Member]) -> String {
    let names: Vec<&str> = members.iter().take(5).map(|m| m.name.as_str()).collect();
    let more = if members.len() > 5 {
        format!(" and {} more", members.len() - 5)
    } else {
        String::new()
    };
    if names.is_empty() {
        "none".to_string()
    } else {
        format!("{}{more}", names.join(", "))
    }
}

/// Builds tars and xz archives for tests.
#[cfg(test)]
pub mod testing {
    pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000644");
            h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| b as u32).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    pub fn xz(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut w =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6)).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{tar, xz};
    use super::*;

    const BTF: &[u8] = b"\x9f\xeb\x01\x00 pretend btf";

    fn names(r: Result<BtfBytes>) -> Result<(Option<String>, Vec<u8>)> {
        r.map(|b| (b.member, b.data))
    }

    #[test]
    fn raw_btf_passes_through() {
        assert_eq!(
            names(from_bytes(BTF.to_vec(), Some("6.1.0"))).unwrap(),
            (None, BTF.to_vec())
        );
    }

    #[test]
    fn btfhub_archive_yields_the_release_member() {
        let t = tar(&[("4.14.186-146.268.amzn2.x86_64.btf", BTF)]);
        for archive in [xz(&t), t.clone()] {
            let (member, data) =
                names(from_bytes(archive, Some("4.14.186-146.268.amzn2.x86_64"))).unwrap();
            assert_eq!(member.as_deref(), Some("4.14.186-146.268.amzn2.x86_64.btf"));
            assert_eq!(data, BTF);
        }
    }

    #[test]
    fn another_kernels_archive_is_refused_naming_both() {
        let t = xz(&tar(&[("5.4.0-1045-aws.btf", BTF)]));
        let e = format!("{:#}", from_bytes(t, Some("5.4.0-1046-aws")).err().unwrap());
        assert!(
            e.contains("5.4.0-1045-aws") && e.contains("this kernel is 5.4.0-1046-aws"),
            "{e}"
        );
        // A generic name is taken: nothing says it is for another kernel.
        let t = tar(&[("vmlinux.btf", BTF)]);
        assert_eq!(
            names(from_bytes(t, Some("5.4.0-1046-aws")))
                .unwrap()
                .0
                .as_deref(),
            Some("vmlinux.btf")
        );
    }

    #[test]
    fn member_selection_prefers_the_release_among_several() {
        let t = tar(&[
            ("README", b"x"),
            ("a/6.1.0-1.btf", b"\x9f\xeb one"),
            ("a/6.1.0-2.btf", BTF),
        ]);
        let members = tar_members(&t).unwrap();
        assert_eq!(members.len(), 3);
        let (name, range) = select_member(&members, Some("6.1.0-2")).unwrap();
        assert_eq!((name.as_str(), &t[range]), ("a/6.1.0-2.btf", BTF));
        let e = select_member(&members, Some("6.1.0-3"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("several .btf files") && e.contains("a/6.1.0-1.btf"),
            "{e}"
        );
        let e = select_member(&members[..1], None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no .btf file") && e.contains("README"), "{e}");
    }

    #[test]
    fn garbage_truncation_and_non_btf_members_are_errors() {
        assert!(
            from_bytes(b"hello".to_vec(), None)
                .err()
                .unwrap()
                .to_string()
                .contains("neither BTF")
        );
        let mut t = tar(&[("6.1.0-1.btf", &[0x9f; 2000])]);
        t.truncate(1200);
        assert!(
            from_bytes(t, None)
                .err()
                .unwrap()
                .to_string()
                .contains("truncated")
        );
        let t = tar(&[("x.btf", b"not btf")]);
        assert!(
            from_bytes(t, None)
                .err()
                .unwrap()
                .to_string()
                .contains("not BTF")
        );
        let mut x = xz(&tar(&[("x.btf", BTF)]));
        let n = x.len();
        x[n / 2] ^= 0xff;
        assert!(from_bytes(x, None).is_err());
    }

    #[test]
    fn decompression_is_bounded() {
        let big = vec![0u8; 256 << 10];
        let e = unxz(&xz(&big), 64 << 10).err().unwrap().to_string();
        assert!(e.contains("more than"), "{e}");
        assert_eq!(unxz(&xz(&big), 256 << 10).unwrap().len(), 256 << 10);
    }

    #[test]
    fn an_oversized_file_is_refused_before_parsing() {
        let p = std::env::temp_dir().join(format!("npt-big-{}.btf", std::process::id()));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(MAX_FILE + 1).unwrap();
        let e = read(&p, None).err().unwrap().to_string();
        std::fs::remove_file(&p).unwrap();
        assert!(e.contains("larger than"), "{e}");
    }
}
