//! An eBPF ELF object as the check sees it (sections, symbols, relocations), read through
//! the `object` crate, and the per-object rules: e_flags, global data, BTF-defined maps, map
//! types, kprobe helpers, relocations only to maps; each program through `program`.

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use object::LittleEndian;
use object::elf;
use object::read::elf::{FileHeader as _, Rel as _, SectionHeader as _, Sym as _};

use super::program::{ProgramCheck, check_program_for, decode};
use super::{
    Floor, HELPERS_4_14, KPROBE_HELPERS_4_14, LAST_MAP_TYPE_4_4, MAP_TYPE_RINGBUF, MAP_TYPES_4_14,
    MAPS_SECTION, helper_name, map_type_name,
};

/// The parts of an ELF object the check reads.
#[derive(Debug, Default)]
pub struct Object {
    pub e_flags: u32,
    pub sections: Vec<Section>,
    pub symbols: Vec<Symbol>,
    pub relocs: Vec<Reloc>,
}

#[derive(Debug, Default)]
pub struct Section {
    pub name: String,
    pub executable: bool,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct Symbol {
    pub name: String,
    /// Section index (0: undefined).
    pub section: usize,
    pub value: u64,
    pub size: u64,
    pub is_func: bool,
}

/// A relocation in section `target` at `offset`, naming symbol `symbol`.
#[derive(Debug)]
pub struct Reloc {
    pub target: usize,
    pub offset: u64,
    pub symbol: usize,
}

/// Parses a little-endian ELF64 BPF object (what bpfel-unknown-none produces) through the
/// `object` crate: sections, the symbol table and SHT_REL relocations are all the check reads.
pub fn parse(b: &[u8]) -> Result<Object> {
    match object::FileKind::parse(b) {
        Ok(object::FileKind::Elf64) => {}
        Ok(object::FileKind::Elf32) => bail!("not a little-endian 64-bit ELF (bpfel)"),
        _ => bail!("not an ELF file"),
    }
    let not_bpfel = || anyhow!("not a little-endian 64-bit ELF (bpfel)");
    let header = elf::FileHeader64::<LittleEndian>::parse(b).map_err(|_| not_bpfel())?;
    let e = header.endian().map_err(|_| not_bpfel())?;
    ensure!(
        header.e_machine(e) == elf::EM_BPF,
        "not a BPF object (e_machine {})",
        header.e_machine(e).0
    );
    let sections = header
        .sections(e, b)
        .context("reading the section headers")?;
    let mut obj = Object {
        e_flags: header.e_flags(e).0,
        ..Default::default()
    };
    for (n, s) in sections.enumerate() {
        let data = s
            .data(e, b)
            .map_err(|_| anyhow!("section {} lies outside the file", n.0))?;
        obj.sections.push(Section {
            name: sections
                .section_name(e, s)
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default(),
            executable: s.sh_flags(e).0 & elf::SHF_EXECINSTR.0 != 0,
            data: data.to_vec(),
        });
    }
    // The first SHT_SYMTAB, with its null symbol: relocations index symbols from 0.
    let symbols = sections
        .symbols(e, b, elf::SHT_SYMTAB)
        .context("reading the symbol table")?;
    for sym in symbols.iter() {
        obj.symbols.push(Symbol {
            name: sym
                .name(e, symbols.strings())
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default(),
            section: usize::from(sym.st_shndx(e).0),
            value: sym.st_value(e),
            size: sym.st_size(e),
            is_func: sym.st_type() == elf::STT_FUNC,
        });
    }
    for (n, s) in sections.enumerate() {
        let Some((rels, _symtab)) = s
            .rel(e, b)
            .with_context(|| format!("reading relocation section {}", n.0))?
        else {
            continue;
        };
        for rel in rels {
            obj.relocs.push(Reloc {
                target: s.sh_info(e) as usize,
                offset: rel.r_offset(e),
                symbol: rel.r_sym(e) as usize,
            });
        }
    }
    Ok(obj)
}

/// One program of the object and its check.
#[derive(Debug)]
pub struct ProgramReport {
    pub section: String,
    pub name: String,
    pub check: ProgramCheck,
}

#[derive(Debug, Default)]
pub struct Report {
    pub programs: Vec<ProgramReport>,
    /// (map name, map type)
    pub maps: Vec<(String, u32)>,
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.programs.iter().all(|p| p.check.problems.is_empty())
    }
}

fn is_global_data(name: &str) -> bool {
    [".data", ".rodata", ".bss"]
        .iter()
        .any(|g| name == *g || name.starts_with(&format!("{g}.")))
}

/// The per-object rules, and the per-program ones on every program (4.9's floor).
#[cfg(test)]
pub fn check(obj: &Object) -> Report {
    check_for(obj, Floor::K4_9)
}

/// `check` held to `floor`'s rules.
pub fn check_for(obj: &Object, floor: Floor) -> Report {
    let mut r = Report::default();
    if obj.e_flags != 0 {
        r.problems.push(format!(
            "ELF e_flags {:#x}: LLVM writes 0 for every BPF CPU; unknown ABI",
            obj.e_flags
        ));
    }
    for s in &obj.sections {
        if is_global_data(&s.name) {
            r.problems
                .push(format!("section {}: global data (Linux 5.2)", s.name));
        } else if s.name == ".maps" {
            r.problems
                .push("section .maps: BTF-defined maps (need kernel BTF, after 4.14)".into());
        }
    }
    let maps = obj.sections.iter().position(|s| s.name == MAPS_SECTION);
    for sym in obj
        .symbols
        .iter()
        .filter(|s| Some(s.section) == maps && !s.name.is_empty())
    {
        let data = &obj.sections[sym.section].data;
        let Some(kind) = data.get(sym.value as usize..sym.value as usize + 4) else {
            r.problems
                .push(format!("map {}: definition outside its section", sym.name));
            continue;
        };
        let kind = u32::from_le_bytes(kind.try_into().expect("4 bytes"));
        if kind == MAP_TYPE_RINGBUF {
            r.problems
                .push(format!("map {}: ring buffer (Linux 5.8)", sym.name));
        } else if kind == 0 || kind as usize >= MAP_TYPES_4_14.len() {
            r.problems
                .push(format!("map {}: type {kind} is not in 4.14", sym.name));
        } else if floor == Floor::K4_4 && kind > LAST_MAP_TYPE_4_4 {
            r.problems.push(format!(
                "map {}: {} is not in 4.4 (per-CPU maps: 4.6)",
                sym.name,
                map_type_name(kind)
            ));
        }
        r.maps.push((sym.name.clone(), kind));
    }
    for (idx, sec) in obj.sections.iter().enumerate() {
        // .text holds functions for bpf-to-bpf calls, not programs; a call to one is
        // reported where it is made.
        if !sec.executable || sec.name == ".text" {
            continue;
        }
        for sym in obj.symbols.iter().filter(|s| s.section == idx && s.is_func) {
            let (start, end) = (sym.value as usize, (sym.value + sym.size) as usize);
            let Some(code) = sec.data.get(start..end) else {
                r.problems
                    .push(format!("program {}: outside its section", sym.name));
                continue;
            };
            let mut check = check_program_for(&decode(code), floor);
            if sec.name.starts_with("kprobe") || sec.name.starts_with("kretprobe") {
                for &h in &check.helpers {
                    let name = helper_name(h);
                    if HELPERS_4_14.contains(&name.as_str())
                        && !KPROBE_HELPERS_4_14.contains(&name.as_str())
                    {
                        check.problems.push(format!(
                            "helper {name}: 4.14 does not offer it to kprobe programs"
                        ));
                    }
                }
            }
            for rel in obj
                .relocs
                .iter()
                .filter(|rel| rel.target == idx && (start..end).contains(&(rel.offset as usize)))
            {
                let insn = (rel.offset as usize - start) / 8;
                match obj.symbols.get(rel.symbol) {
                    Some(t) if maps.is_some() && Some(t.section) == maps => {}
                    Some(t) => {
                        let place = obj
                            .sections
                            .get(t.section)
                            .map_or("undefined", |s| s.name.as_str());
                        let place = if t.section == 0 { "undefined" } else { place };
                        // An unnamed symbol is a section's own: a call into .text, say.
                        let name = if t.name.is_empty() {
                            "a local function"
                        } else {
                            t.name.as_str()
                        };
                        check.problems.push(format!(
                            "insn {insn}: relocation to {name} in {place}, not a map"
                        ));
                    }
                    None => check
                        .problems
                        .push(format!("insn {insn}: relocation to a missing symbol")),
                }
            }
            r.programs.push(ProgramReport {
                section: sec.name.clone(),
                name: sym.name.clone(),
                check,
            });
        }
    }
    if r.programs.is_empty() {
        r.problems.push("no programs found".into());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::bpfcheck::program::Insn;

    const MOV_R0_0: Insn = Insn::new(0xb7, 0, 0, 0, 0);
    const EXIT: Insn = Insn::new(0x95, 0, 0, 0, 0);

    fn call(src: u8, imm: i32) -> Insn {
        Insn::new(0x85, 0, src, 0, imm)
    }

    fn encode(insns: &[Insn]) -> Vec<u8> {
        let mut code = Vec::new();
        for i in insns {
            code.extend([i.code, i.dst | i.src << 4]);
            code.extend(i.off.to_le_bytes());
            code.extend(i.imm.to_le_bytes());
        }
        code
    }

    /// An object with one kprobe program loading map `M` (of `map_type`) through a
    /// relocation to `reloc_to`'s section, plus `extra` sections.
    fn object(map_type: u32, reloc_to: &str, extra: &[&str]) -> Object {
        let code = encode(&[
            Insn::new(0x18, 1, 0, 0, 0),
            Insn::new(0, 0, 0, 0, 0),
            MOV_R0_0,
            EXIT,
        ]);
        let mut map = map_type.to_le_bytes().to_vec();
        map.resize(28, 0);
        let mut sections = vec![
            Section::default(),
            Section {
                name: "kprobe".into(),
                executable: true,
                data: code,
            },
            Section {
                name: "maps".into(),
                executable: false,
                data: map,
            },
        ];
        for name in extra {
            sections.push(Section {
                name: name.to_string(),
                executable: false,
                data: vec![0; 8],
            });
        }
        let mut symbols = vec![
            Symbol {
                name: "prog".into(),
                section: 1,
                value: 0,
                size: 32,
                is_func: true,
            },
            Symbol {
                name: "M".into(),
                section: 2,
                value: 0,
                size: 28,
                is_func: false,
            },
        ];
        if reloc_to != "maps" {
            let target = sections
                .iter()
                .position(|s| s.name == reloc_to)
                .expect("section");
            symbols.push(Symbol {
                name: "target".into(),
                section: target,
                value: 0,
                size: 8,
                is_func: false,
            });
        }
        let symbol = symbols.len() - 1;
        Object {
            e_flags: 0,
            sections,
            symbols,
            relocs: vec![Reloc {
                target: 1,
                offset: 0,
                symbol,
            }],
        }
    }

    #[test]
    fn maps_of_4_14_types_pass_a_ring_buffer_fails() {
        let r = check(&object(1, "maps", &[]));
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.maps, vec![("M".to_string(), 1)]);
        let r = check(&object(MAP_TYPE_RINGBUF, "maps", &[]));
        assert!(
            !r.ok() && r.problems.iter().any(|p| p.contains("ring buffer")),
            "{r:?}"
        );
    }

    #[test]
    fn per_cpu_maps_pass_the_4_9_floor_and_fail_4_4s() {
        // A per-CPU array (6).
        assert!(check(&object(6, "maps", &[])).ok());
        let r = check_for(&object(6, "maps", &[]), Floor::K4_4);
        assert!(r.problems.iter().any(|p| p.contains("not in 4.4")), "{r:?}");
    }

    #[test]
    fn global_data_sections_and_relocations_to_them_fail() {
        for section in [".rodata", ".data", ".bss", ".rodata.str1.1"] {
            let r = check(&object(1, "maps", &[section]));
            assert!(
                r.problems.iter().any(|p| p.contains("global data")),
                "{section}: {r:?}"
            );
        }
        let r = check(&object(1, ".rodata", &[".rodata"]));
        let prog = &r.programs[0].check.problems;
        assert!(
            prog.iter()
                .any(|p| p.contains("relocation to target in .rodata")),
            "{r:?}"
        );
    }

    #[test]
    fn kprobes_may_call_only_the_tracing_helpers() {
        let mut o = object(1, "maps", &[]);
        // r0 = 0; call 9 (skb_store_bytes: a 4.14 helper, for socket programs); exit
        o.sections[1].data = encode(&[MOV_R0_0, call(0, 9), EXIT]);
        o.symbols[0].size = 24;
        o.relocs.clear();
        let r = check(&o);
        let p = &r.programs[0].check.problems;
        assert!(
            p.len() == 1 && p[0].contains("skb_store_bytes: 4.14 does not offer it to kprobe"),
            "{r:?}"
        );
        o.sections[1].name = "socket".into();
        assert!(check(&o).ok(), "{:?}", check(&o));
    }

    #[test]
    fn nonzero_e_flags_fail() {
        let mut o = object(1, "maps", &[]);
        o.e_flags = 1;
        assert!(!check(&o).ok());
    }

    /// One section of a test ELF: name, sh_type, sh_flags, contents, sh_link, sh_info.
    type RawSection<'a> = (&'a str, u32, u64, Vec<u8>, u32, u32);

    const SHT_PROGBITS: u32 = 1;
    const SHT_SYMTAB: u32 = 2;
    const SHT_STRTAB: u32 = 3;
    const SHT_REL: u32 = 9;
    const SHF_EXECINSTR: u64 = 4;

    /// A little-endian ELF64 for BPF, written byte by byte as LLVM lays one out: the null
    /// section, `sections` (indexes 1..), then the section name table.
    fn elf(sections: &[RawSection]) -> Vec<u8> {
        let mut shstr = vec![0u8];
        let mut names = Vec::new();
        for s in sections {
            names.push(shstr.len() as u32);
            shstr.extend(s.0.as_bytes());
            shstr.push(0);
        }
        let shstr_name = shstr.len() as u32;
        shstr.extend(b".shstrtab\0");
        let mut b = vec![0u8; 64];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        b[18..20].copy_from_slice(&247u16.to_le_bytes()); // EM_BPF
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        let align = |b: &mut Vec<u8>| b.resize(b.len().next_multiple_of(8), 0);
        let mut offsets = Vec::new();
        for s in sections {
            align(&mut b);
            offsets.push(b.len());
            b.extend(&s.3);
        }
        let shstr_off = b.len();
        b.extend(&shstr);
        align(&mut b);
        let shoff = b.len();
        let n = sections.len() as u16;
        b[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60..62].copy_from_slice(&(n + 2).to_le_bytes());
        b[62..64].copy_from_slice(&(n + 1).to_le_bytes());
        let header =
            |name: u32, kind: u32, flags: u64, off: usize, size: usize, link: u32, info: u32| {
                let mut h = vec![0u8; 64];
                h[0..4].copy_from_slice(&name.to_le_bytes());
                h[4..8].copy_from_slice(&kind.to_le_bytes());
                h[8..16].copy_from_slice(&flags.to_le_bytes());
                h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
                h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
                h[40..44].copy_from_slice(&link.to_le_bytes());
                h[44..48].copy_from_slice(&info.to_le_bytes());
                let entsize: u64 = match kind {
                    SHT_SYMTAB => 24,
                    SHT_REL => 16,
                    _ => 0,
                };
                h[56..64].copy_from_slice(&entsize.to_le_bytes());
                h
            };
        b.extend(header(0, 0, 0, 0, 0, 0, 0));
        for (i, s) in sections.iter().enumerate() {
            b.extend(header(names[i], s.1, s.2, offsets[i], s.3.len(), s.4, s.5));
        }
        b.extend(header(
            shstr_name,
            SHT_STRTAB,
            0,
            shstr_off,
            shstr.len(),
            0,
            0,
        ));
        b
    }

    /// An Elf64_Sym: name offset, type (binding global), section, value, size.
    fn sym(name: u32, kind: u8, section: u16, value: u64, size: u64) -> Vec<u8> {
        let mut s = name.to_le_bytes().to_vec();
        s.extend([0x10 | kind, 0]);
        s.extend(section.to_le_bytes());
        s.extend(value.to_le_bytes());
        s.extend(size.to_le_bytes());
        s
    }

    /// The bytes of what `object` builds: a kprobe program loading map `M` (of `map_type`)
    /// through a relocation to `reloc_to`'s section (maps or .rodata); with `.rodata` as an
    /// extra section when the relocation goes there.
    fn object_elf(map_type: u32, reloc_to: &str) -> Vec<u8> {
        let code = encode(&[
            Insn::new(0x18, 1, 0, 0, 0),
            Insn::new(0, 0, 0, 0, 0),
            MOV_R0_0,
            EXIT,
        ]);
        let mut map = map_type.to_le_bytes().to_vec();
        map.resize(28, 0);
        // Indexes: 1 kprobe, 2 maps, 3 .symtab, 4 .strtab, 5 .relkprobe, 6 .rodata.
        let strtab = b"\0prog\0M\0target\0".to_vec();
        let mut symtab = sym(0, 0, 0, 0, 0);
        symtab.extend(sym(1, 2, 1, 0, 32)); // prog: STT_FUNC in kprobe
        symtab.extend(sym(6, 1, 2, 0, 28)); // M: STT_OBJECT in maps
        symtab.extend(sym(8, 1, 6, 0, 8)); // target: STT_OBJECT in .rodata
        let symbol: u64 = if reloc_to == "maps" { 2 } else { 3 };
        let mut rel = 0u64.to_le_bytes().to_vec();
        rel.extend((symbol << 32 | 1).to_le_bytes()); // R_BPF_64_64
        elf(&[
            ("kprobe", SHT_PROGBITS, SHF_EXECINSTR | 2, code, 0, 0),
            ("maps", SHT_PROGBITS, 3, map, 0, 0),
            (".symtab", SHT_SYMTAB, 0, symtab, 4, 1),
            (".strtab", SHT_STRTAB, 0, strtab, 0, 0),
            (".relkprobe", SHT_REL, 0, rel, 3, 1),
            (".rodata", SHT_PROGBITS, 2, vec![0; 8], 0, 0),
        ])
    }

    #[test]
    fn parses_a_minimal_elf() {
        // A null section, "kprobe" with one exit, and the section name table.
        let code = encode(&[EXIT]);
        let b = elf(&[("kprobe", SHT_PROGBITS, SHF_EXECINSTR, code, 0, 0)]);
        let o = parse(&b).expect("parses");
        assert_eq!(o.sections.len(), 3);
        assert_eq!(o.sections[1].name, "kprobe");
        assert!(o.sections[1].executable);
        assert!(!o.sections[2].executable);
        assert_eq!(decode(&o.sections[1].data), vec![EXIT]);
        assert!(o.symbols.is_empty() && o.relocs.is_empty());
    }

    #[test]
    fn parses_symbols_and_relocations() {
        let o = parse(&object_elf(1, "maps")).expect("parses");
        // The null symbol stays: relocations index symbols from 0.
        let names: Vec<_> = o.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["", "prog", "M", "target"]);
        let prog = &o.symbols[1];
        assert_eq!(
            (prog.section, prog.value, prog.size, prog.is_func),
            (1, 0, 32, true)
        );
        assert!(!o.symbols[2].is_func);
        assert_eq!(o.relocs.len(), 1);
        let rel = &o.relocs[0];
        assert_eq!((rel.target, rel.offset, rel.symbol), (1, 0, 2));
        assert_eq!(o.sections[2].name, "maps");
    }

    #[test]
    fn parsed_objects_give_the_verdicts_of_the_model() {
        // What `object` builds in memory, read from bytes: same verdicts.
        let r = check(&parse(&object_elf(1, "maps")).expect("parses"));
        // .rodata is there in every one of these: global data.
        assert_eq!(r.problems, ["section .rodata: global data (Linux 5.2)"]);
        assert!(r.programs[0].check.problems.is_empty(), "{r:?}");
        assert_eq!(r.maps, vec![("M".to_string(), 1)]);
        let r = check(&parse(&object_elf(MAP_TYPE_RINGBUF, "maps")).expect("parses"));
        assert!(
            r.problems.iter().any(|p| p.contains("ring buffer")),
            "{r:?}"
        );
        let r = check_for(&parse(&object_elf(5, "maps")).expect("parses"), Floor::K4_4);
        assert!(
            r.problems
                .iter()
                .any(|p| p == "map M: percpu_hash is not in 4.4 (per-CPU maps: 4.6)"),
            "{r:?}"
        );
        let r = check(&parse(&object_elf(1, ".rodata")).expect("parses"));
        assert_eq!(
            r.programs[0].check.problems,
            ["insn 0: relocation to target in .rodata, not a map"]
        );
    }

    #[test]
    fn what_is_not_a_bpfel_object_is_refused_with_a_reason() {
        let good = object_elf(1, "maps");
        let err = |b: &[u8]| format!("{:#}", parse(b).expect_err("refused"));
        assert_eq!(err(b"#!/bin/sh\n"), "not an ELF file");
        let mut x86 = good.clone();
        x86[18] = 62;
        assert_eq!(err(&x86), "not a BPF object (e_machine 62)");
        let mut elf32 = good.clone();
        elf32[4] = 1;
        assert_eq!(err(&elf32), "not a little-endian 64-bit ELF (bpfel)");
        let mut big = good.clone();
        big[5] = 2;
        assert_eq!(err(&big), "not a little-endian 64-bit ELF (bpfel)");
        // The kprobe section's size (header 1, sh_size at 32) beyond the end of the file.
        let mut outside = good.clone();
        let shoff = u64::from_le_bytes(good[40..48].try_into().expect("8 bytes")) as usize;
        outside[shoff + 64 + 32..shoff + 64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(err(&outside), "section 1 lies outside the file");
        let mut truncated = good;
        truncated.truncate(shoff + 10);
        assert!(parse(&truncated).is_err());
    }
}
