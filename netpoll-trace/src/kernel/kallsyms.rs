//! /proc/kallsyms: which kernel functions exist, and which symbol (and module) an
//! address belongs to.

use std::io::BufRead;

/// A parsed symbol table. Addresses are zero when kptr_restrict hides them.
///
/// Compact on purpose: a Debian kernel lists 120,000+ symbols and the long-running agent
/// keeps a table for enrichment. One string holds every name; entries are 16 bytes. (The
/// earlier map of owned Strings, kept twice, cost several MiB of the agent's idle RSS.)
#[derive(Default)]
pub struct Kallsyms {
    /// Every kept name, back to back.
    names: String,
    /// Module names, each once; `Sym::module` is 1 + an index here, 0 for vmlinux.
    modules: Vec<String>,
    /// Sorted by name (first occurrence kept): `contains`.
    by_name: Vec<Sym>,
    /// Sorted by address, non-zero addresses only: `symbol_at`.
    by_addr: Vec<Sym>,
}

#[derive(Clone, Copy)]
struct Sym {
    addr: u64,
    name_off: u32,
    name_len: u16,
    module: u16,
}

/// Which of `names` /proc/kallsyms-format `text` lists, without storing the table
/// (the kernel has well over 100,000 symbols; start-up only needs a few).
pub fn present(text: impl BufRead, names: &[&str]) -> Vec<bool> {
    let mut found = vec![false; names.len()];
    for line in text.lines().map_while(Result::ok) {
        let mut fields = line.split_whitespace().skip(2);
        let Some(name) = fields.next() else { continue };
        // A module's symbol is `name [module]`; asked for as `module:name`.
        let module = fields
            .next()
            .and_then(|m| m.strip_prefix('[')?.strip_suffix(']'));
        for (i, n) in names.iter().enumerate() {
            // A bare name is vmlinux's: 7.3's netconsole has a local netpoll_send_udp
            // of its own, with another first argument.
            let hit = match n.split_once(':') {
                Some((m, f)) => module == Some(m) && f == name,
                None => module.is_none() && *n == name,
            };
            found[i] |= hit;
        }
    }
    found
}

fn open() -> std::io::Result<std::io::BufReader<std::fs::File>> {
    Ok(std::io::BufReader::with_capacity(
        64 * 1024,
        std::fs::File::open("/proc/kallsyms")?,
    ))
}

/// Which of `names` the running kernel has (read as a stream: nothing of it is kept).
pub fn functions_present(names: &[&str]) -> std::io::Result<Vec<bool>> {
    Ok(present(open()?, names))
}

impl Kallsyms {
    #[cfg(test)]
    pub fn parse(text: &str) -> Self {
        Self::parse_kinds(text.as_bytes(), |_| true)
    }

    /// Keeps only symbols whose kind letter passes `keep`.
    fn parse_kinds(text: impl BufRead, keep: impl Fn(char) -> bool) -> Self {
        let mut ks = Self::default();
        let mut all = Vec::new();
        for line in text.lines().map_while(Result::ok) {
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !kind.chars().next().is_some_and(&keep) {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            let (Ok(name_off), Ok(name_len)) =
                (u32::try_from(ks.names.len()), u16::try_from(name.len()))
            else {
                continue;
            };
            let module = match parts
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']'))
            {
                None => 0,
                // Symbols of one module are listed together: the last one is the usual hit.
                Some(m) => match ks.modules.iter().rposition(|known| known == m) {
                    Some(i) => i + 1,
                    None => {
                        ks.modules.push(m.to_string());
                        ks.modules.len()
                    }
                },
            };
            let Ok(module) = u16::try_from(module) else {
                continue;
            };
            ks.names.push_str(name);
            all.push(Sym {
                addr,
                name_off,
                name_len,
                module,
            });
        }
        ks.names.shrink_to_fit();
        ks.by_addr = all.iter().copied().filter(|s| s.addr != 0).collect();
        ks.by_addr.sort_by_key(|s| s.addr);
        // Stable: the first of equal names stays first, as before.
        all.sort_by(|a, b| ks.name(a).cmp(ks.name(b)));
        all.dedup_by(|b, a| ks.name(a) == ks.name(b));
        all.shrink_to_fit();
        ks.by_name = all;
        ks
    }

    fn name(&self, s: &Sym) -> &str {
        &self.names[s.name_off as usize..s.name_off as usize + s.name_len as usize]
    }

    fn module(&self, s: &Sym) -> Option<&str> {
        s.module
            .checked_sub(1)
            .and_then(|i| self.modules.get(i as usize))
            .map(String::as_str)
    }

    pub fn read() -> std::io::Result<Self> {
        Ok(Self::parse_kinds(open()?, |_| true))
    }

    /// Data objects only (an ops table is read-only or initialised data): what the
    /// long-running enrichment needs, at a fraction of the memory.
    pub fn read_data() -> std::io::Result<Self> {
        Ok(Self::parse_kinds(open()?, |k| {
            matches!(k, 'r' | 'R' | 'd' | 'D')
        }))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name
            .binary_search_by(|s| self.name(s).cmp(name))
            .is_ok()
    }

    /// True when addresses are visible (root with kptr_restrict permitting).
    pub fn has_addresses(&self) -> bool {
        !self.by_addr.is_empty()
    }

    /// The symbol an address points into: exact symbol starts only, since a data
    /// object such as an ops table is always referenced by its start.
    pub fn symbol_at(&self, addr: u64) -> Option<(&str, Option<&str>)> {
        // Aliases share an address: the first listed wins (stable sort), as before.
        let i = self.by_addr.partition_point(|s| s.addr < addr);
        let s = self.by_addr.get(i).filter(|s| s.addr == addr)?;
        Some((self.name(s), self.module(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81a00000 T netpoll_setup
ffffffff81a00100 T __netpoll_setup
ffffffffc0123000 r virtnet_netdev\t[virtio_net]
0000000000000000 t hidden_symbol
";

    #[test]
    fn finds_functions_and_ops_tables_with_modules() {
        let ks = Kallsyms::parse(SAMPLE);
        assert!(ks.contains("__netpoll_setup"));
        assert!(ks.contains("hidden_symbol"));
        assert!(!ks.contains("netpoll_poll_dev"));
        assert_eq!(
            ks.symbol_at(0xffffffffc0123000),
            Some(("virtnet_netdev", Some("virtio_net")))
        );
        assert_eq!(
            ks.symbol_at(0xffffffff81a00000),
            Some(("netpoll_setup", None))
        );
        assert_eq!(ks.symbol_at(0xffffffffc0123008), None);
        assert!(ks.has_addresses());
        assert!(!Kallsyms::parse("0000000000000000 T foo\n").has_addresses());
        let data = Kallsyms::parse_kinds(SAMPLE.as_bytes(), |k| matches!(k, 'r' | 'R' | 'd' | 'D'));
        assert!(data.contains("virtnet_netdev") && !data.contains("netpoll_setup"));
        assert_eq!(
            present(SAMPLE.as_bytes(), &["__netpoll_setup", "netpoll_poll_dev"]),
            [true, false]
        );
    }

    /// 7.3: netconsole's own (local) netpoll_send_udp is not vmlinux's.
    #[test]
    fn a_bare_name_is_vmlinuxs_and_a_module_name_its_modules() {
        let text = "ffffffffc0100000 t netpoll_send_udp\t[netconsole]\nffffffff81a00100 T __netpoll_setup\n";
        assert_eq!(
            present(
                text.as_bytes(),
                &[
                    "netpoll_send_udp",
                    "netconsole:netpoll_send_udp",
                    "__netpoll_setup"
                ]
            ),
            [false, true, true]
        );
    }

    #[test]
    fn aliases_keep_the_first_listed_and_modules_are_shared() {
        let ks = Kallsyms::parse(
            "ffffffffc0001000 r a_ops\t[m1]\nffffffffc0001000 r alias_ops\t[m1]\n\
             ffffffffc0002000 d b_ops\t[m2]\nffffffffc0003000 d c_ops\t[m1]\n0000000000000000 T a_ops\n",
        );
        assert_eq!(
            ks.symbol_at(0xffffffffc0001000),
            Some(("a_ops", Some("m1")))
        );
        assert_eq!(
            ks.symbol_at(0xffffffffc0003000),
            Some(("c_ops", Some("m1")))
        );
        assert_eq!(
            ks.symbol_at(0xffffffffc0002000),
            Some(("b_ops", Some("m2")))
        );
        assert_eq!(ks.modules.len(), 2);
        assert!(ks.contains("a_ops") && ks.contains("alias_ops") && !ks.contains("d_ops"));
    }
}
