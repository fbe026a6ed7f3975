//! Userspace enrichment of set-up records: driver (sysfs) and the ops table's
//! symbol and module (kallsyms).

use std::path::Path;

use crate::{event::SetupRecord, kallsyms::Kallsyms};

pub struct Enricher {
    /// The data-symbol table, while a helper thread still reads it.
    loading: Option<std::thread::JoinHandle<Option<Kallsyms>>>,
    kallsyms: Option<Kallsyms>,
    kernel: Option<String>,
}

impl Enricher {
    /// Starts reading kallsyms on a helper thread: formatting 120,000+ lines is the
    /// kernel's slowest file to read (seconds under emulation) and only the first set-up
    /// record needs it, so start-up no longer waits for it before saying "ready".
    pub fn new() -> Self {
        let loading = std::thread::Builder::new()
            .name("kallsyms".into())
            .spawn(|| {
                let ks = Kallsyms::read_data().ok().filter(Kallsyms::has_addresses);
                // This thread's malloc arena holds what the parse freed; an idle agent may
                // never reach the join below, so return it now.
                crate::loader::release_freed_memory();
                crate::loader::stage("enrichment's data symbols read (kallsyms, helper thread)");
                ks
            })
            .ok();
        // No thread (resource limits): read here, as before.
        let kallsyms = match loading {
            Some(_) => None,
            None => Kallsyms::read_data().ok().filter(Kallsyms::has_addresses),
        };
        Self {
            loading,
            kallsyms,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        }
    }

    pub fn enrich(&mut self, r: &mut SetupRecord) {
        if r.ops_addr.is_some()
            && let Some(h) = self.loading.take()
        {
            self.kallsyms = h.join().ok().flatten();
            crate::loader::release_freed_memory();
        }
        if let (Some(ks), Some(addr)) = (&self.kallsyms, r.ops_addr)
            && let Some((name, module)) = ks.symbol_at(addr)
        {
            r.ops_symbol = Some(name.to_string());
            r.ops_module = module.map(str::to_string);
        }
        r.kernel = self.kernel.clone();
        if let Some(dev) = &r.dev {
            (r.driver, r.driver_version) = match crate::ethtool::driver_info(dev) {
                Some((driver, version)) => (Some(driver), version),
                None => (sysfs_driver(dev), None),
            };
        }
        // Neither ethtool nor sysfs knew: the module owning the ops, if any.
        if r.driver.is_none() {
            r.driver = r.ops_module.clone();
        }
    }
}

/// The driver of a device when ethtool could not say: the bound driver in
/// /sys/class/net/DEV/device/driver, else uevent's DEVTYPE.
fn sysfs_driver(dev: &str) -> Option<String> {
    if dev.contains('/') || dev.contains("..") {
        return None;
    }
    let base = Path::new("/sys/class/net").join(dev);
    if let Ok(target) = std::fs::read_link(base.join("device/driver")) {
        return target.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    let uevent = std::fs::read_to_string(base.join("uevent")).ok()?;
    uevent.lines().find_map(|l| l.strip_prefix("DEVTYPE=").map(str::to_string))
}
