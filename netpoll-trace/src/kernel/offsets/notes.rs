//! The running kernel's ELF notes as /sys/kernel/notes holds them (pure): its GNU
//! build-id, which names the vmlinux and so its BTF (`facts::Identity`).

/// The GNU build-id (lowercase hex) among ELF notes as /sys/kernel/notes holds them:
/// each a header of three native-endian u32 (name size, descriptor size, type), then
/// the name and the descriptor, each padded to 4 bytes. None when there is none, or the
/// notes are cut short.
pub fn gnu_build_id(notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    let u32_at = |at: usize| -> Option<u32> {
        let b = notes.get(at..at.checked_add(4)?)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    };
    let mut at = 0;
    while at < notes.len() {
        let namesz = u32_at(at)? as usize;
        let descsz = u32_at(at + 4)? as usize;
        let kind = u32_at(at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(pad(namesz)?)?;
        let end = desc_at.checked_add(pad(descsz)?)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One note as the kernel lays them out (native endian, name and descriptor padded).
    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32).to_ne_bytes());
        n.extend((desc.len() as u32).to_ne_bytes());
        n.extend(kind.to_ne_bytes());
        n.extend(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn the_build_id_is_found_among_other_notes() {
        let id = [
            0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        ];
        // As on x86: Xen's notes (an odd-sized name), Linux's, then GNU's build-id.
        let mut notes = note(b"Xen\0", 6, b"linux\0");
        notes.extend(note(b"Linux\0", 6, b"6.12\0"));
        notes.extend(note(b"GNU\0", 1, &[0; 16])); // ABI tag: another GNU note
        notes.extend(note(b"GNU\0", 3, &id));
        assert_eq!(
            gnu_build_id(&notes).as_deref(),
            Some("deadbeef0123456789abcdef")
        );
        // None: absent, or the notes cut short anywhere inside the build-id's note.
        assert_eq!(gnu_build_id(&note(b"Xen\0", 6, b"x")), None);
        assert_eq!(gnu_build_id(&[]), None);
        let whole = notes.len();
        for cut in [whole - 1, whole - 12, whole - 20, whole - 26] {
            assert_eq!(gnu_build_id(&notes[..cut]), None, "cut at {cut}");
        }
        // A header claiming more than there is: no panic, no overflow.
        let mut huge = vec![0xff; 12];
        huge.extend(b"GNU\0");
        assert_eq!(gnu_build_id(&huge), None);
    }
}
