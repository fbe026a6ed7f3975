//! A writer for the "newc" cpio format the kernel unpacks as an initramfs. Archives may be
//! concatenated; later entries overwrite earlier ones.

use std::collections::BTreeSet;
use std::io::{self, Write};

/// Writes entries in newc format, creating missing parent directories on the way.
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            next_ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    /// A directory (and its parents), mode 0755.
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.dirs.insert(path.to_string());
        self.entry(path, S_IFDIR | 0o755, 0, b"")
    }

    /// A regular file with `mode`'s permission bits.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let path = self.parents(path)?;
        self.entry(&path, S_IFREG | (mode & 0o7777), 0, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let path = self.parents(path)?;
        self.entry(&path, S_IFLNK | 0o777, 0, target.as_bytes())
    }

    /// A character device node (e.g. /dev/console, 5:1), which needs no privileges to archive.
    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) -> io::Result<()> {
        let path = self.parents(path)?;
        self.entry(&path, S_IFCHR | 0o600, (major << 8) | minor, b"")
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 0, b"")?;
        Ok(self.out)
    }

    fn parents(&mut self, path: &str) -> io::Result<String> {
        let path = path.trim_start_matches('/').to_string();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        Ok(path)
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) -> io::Result<()> {
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino
        };
        self.next_ino += 1;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let filesize = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is over 4 GiB"))
        })?;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so archives are reproducible
            filesize,
            0, // devmajor
            0, // devminor
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(110 + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, written: usize) -> io::Result<()> {
        let n = (4 - written % 4) % 4;
        self.out.write_all(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(f: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        f(&mut w).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn file_entry_layout() {
        let a = archive(|w| w.file("init", 0o755, b"#!/bin/sh\n"));
        let text = String::from_utf8_lossy(&a);
        assert!(text.starts_with("070701"));
        // mode 0100755, filesize 10, namesize 5 ("init\0")
        assert_eq!(&text[14..22], "000081ED");
        assert_eq!(&text[54..62], "0000000A");
        assert_eq!(&text[94..102], "00000005");
        assert_eq!(&a[110..115], b"init\0");
        // header + name = 115 -> padded to 116, then the data
        assert_eq!(&a[116..126], b"#!/bin/sh\n");
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn parents_come_first_and_once() {
        let a = archive(|w| {
            w.file("/lib/modules/x/a.ko", 0o644, b"a")?;
            w.file("/lib/modules/x/b.ko", 0o644, b"b")
        });
        let text = String::from_utf8_lossy(&a);
        let lib = text.find("lib\0").unwrap();
        let modules = text.find("lib/modules\0").unwrap();
        let file = text.find("lib/modules/x/a.ko\0").unwrap();
        assert!(lib < modules && modules < file);
        assert_eq!(text.matches("lib/modules/x\0").count(), 1);
    }

    #[test]
    fn device_node_numbers() {
        let a = archive(|w| w.char_device("dev/console", 5, 1));
        let text = String::from_utf8_lossy(&a);
        let at = text.find("dev/console\0").unwrap() - 110;
        let header = &text[at..at + 110];
        assert_eq!(&header[14..22], "00002180");
        assert_eq!(&header[78..86], "00000005");
        assert_eq!(&header[86..94], "00000001");
    }
}
