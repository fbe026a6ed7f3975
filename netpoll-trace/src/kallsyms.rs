//! /proc/kallsyms: which kernel functions exist, and which symbol (and module) an
//! address belongs to.

use std::collections::HashMap;

/// A parsed symbol table. Addresses are zero when kptr_restrict hides them.
#[derive(Default)]
pub struct Kallsyms {
    /// name -> (address, module)
    by_name: HashMap<String, (u64, Option<String>)>,
    /// Sorted by address: (address, name, module); only non-zero addresses.
    by_addr: Vec<(u64, String, Option<String>)>,
}

/// Which of `names` /proc/kallsyms-format `text` lists, without storing the table
/// (the kernel has well over 100,000 symbols; start-up only needs a few).
pub fn present(text: &str, names: &[&str]) -> Vec<bool> {
    let mut found = vec![false; names.len()];
    for line in text.lines() {
        if let Some(name) = line.split_whitespace().nth(2)
            && let Some(i) = names.iter().position(|n| *n == name)
        {
            found[i] = true;
        }
    }
    found
}

/// Which of `names` the running kernel has.
pub fn functions_present(names: &[&str]) -> std::io::Result<Vec<bool>> {
    Ok(present(&std::fs::read_to_string("/proc/kallsyms")?, names))
}

impl Kallsyms {
    pub fn parse(text: &str) -> Self {
        Self::parse_kinds(text, |_| true)
    }

    /// Keeps only symbols whose kind letter passes `keep`.
    fn parse_kinds(text: &str, keep: impl Fn(char) -> bool) -> Self {
        let mut ks = Self::default();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !kind.chars().next().is_some_and(&keep) {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            let module = parts
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
            if addr != 0 {
                ks.by_addr.push((addr, name.to_string(), module.clone()));
            }
            ks.by_name.entry(name.to_string()).or_insert((addr, module));
        }
        ks.by_addr.sort_by_key(|e| e.0);
        ks
    }

    pub fn read() -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string("/proc/kallsyms")?))
    }

    /// Data objects only (an ops table is read-only or initialised data): what the
    /// long-running enrichment needs, at a fraction of the memory.
    pub fn read_data() -> std::io::Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms")?;
        Ok(Self::parse_kinds(&text, |k| matches!(k, 'r' | 'R' | 'd' | 'D')))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// True when addresses are visible (root with kptr_restrict permitting).
    pub fn has_addresses(&self) -> bool {
        !self.by_addr.is_empty()
    }

    /// The symbol an address points into: exact symbol starts only, since a data
    /// object such as an ops table is always referenced by its start.
    pub fn symbol_at(&self, addr: u64) -> Option<(&str, Option<&str>)> {
        let i = self.by_addr.binary_search_by_key(&addr, |e| e.0).ok()?;
        let (_, name, module) = &self.by_addr[i];
        Some((name.as_str(), module.as_deref()))
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
        assert_eq!(ks.symbol_at(0xffffffffc0123000), Some(("virtnet_netdev", Some("virtio_net"))));
        assert_eq!(ks.symbol_at(0xffffffff81a00000), Some(("netpoll_setup", None)));
        assert_eq!(ks.symbol_at(0xffffffffc0123008), None);
        assert!(ks.has_addresses());
        assert!(!Kallsyms::parse("0000000000000000 T foo\n").has_addresses());
        let data = Kallsyms::parse_kinds(SAMPLE, |k| matches!(k, 'r' | 'R' | 'd' | 'D'));
        assert!(data.contains("virtnet_netdev") && !data.contains("netpoll_setup"));
        assert_eq!(present(SAMPLE, &["__netpoll_setup", "netpoll_poll_dev"]), [true, false]);
    }
}
