//! Enrichment's I/O adapters: what the kernel's records do not carry, looked up on the
//! host: the driver and its version (ethtool, else sysfs, else the ops' module), the
//! ops table's symbol and module (kallsyms), the kernel release, and the interfaces
//! that exist (for the diagnosis' name suggestions and slave checks).

use crate::{
    kernel::{ethtool, host, kallsyms::Kallsyms, profile},
    model::{diagnosis::Context, event::SetupRecord},
};

pub struct Enricher {
    kallsyms: Option<Kallsyms>,
    /// The data-symbol table while its helper thread still reads it.
    pending: Option<tokio::sync::oneshot::Receiver<Option<Kallsyms>>>,
}

/// The table enrichment needs (data symbols with visible addresses), with the memory its
/// parse freed handed back (on a helper thread that is that thread's own malloc arena).
fn read_symbols() -> Option<Kallsyms> {
    let ks = Kallsyms::read_data().ok().filter(Kallsyms::has_addresses);
    profile::release_freed_memory();
    profile::stage("enrichment's data symbols read (kallsyms)");
    ks
}

impl Enricher {
    /// Starts reading the data symbols on a helper thread. Formatting /proc/kallsyms
    /// (120,000+ lines) is the kernel's slowest read here, about a second under TCG, and
    /// nothing before "ready" needs it: it starts once the probes are attached, and the
    /// first record waits for it (`ready`) while the readers go on queueing events (a
    /// blocking join there once lost 478 events of a burst on 5.10).
    pub fn start() -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("kallsyms".into()).spawn(move || {
            let _ = tx.send(read_symbols());
        });
        match spawned {
            Ok(_) => Self { kallsyms: None, pending: Some(rx) },
            // No thread could start: read here.
            Err(_) => Self { kallsyms: read_symbols(), pending: None },
        }
    }

    /// Reads the data symbols here and now (dump: nothing to overlap).
    pub fn read_now() -> Self {
        Self { kallsyms: read_symbols(), pending: None }
    }

    /// True while the symbol table is still being read.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Waits for the symbol table. Cancel-safe: the helper's answer stays in `pending`
    /// until it arrives.
    pub async fn ready(&mut self) {
        if let Some(rx) = self.pending.as_mut() {
            self.kallsyms = rx.await.ok().flatten();
            self.pending = None;
        }
    }

    pub fn enrich(&self, r: &mut SetupRecord) {
        if let (Some(ks), Some(addr)) = (&self.kallsyms, r.ops_addr)
            && let Some((name, module)) = ks.symbol_at(addr)
        {
            r.ops_symbol = Some(name.to_string());
            r.ops_module = module.map(str::to_string);
        }
        r.kernel = host::release().map(str::to_string);
        if let Some(dev) = &r.dev {
            (r.driver, r.driver_version) = match ethtool::driver_info(dev) {
                Some((driver, version)) => (Some(driver), version),
                None => (host::sysfs_driver(dev), None),
            };
        }
        // Neither ethtool nor sysfs knew: the module owning the ops, if any.
        if r.driver.is_none() {
            r.driver = r.ops_module.clone();
        }
    }
}

/// Interfaces and their masters, for name suggestions and slave diagnoses.
pub fn host_context() -> Context {
    let (interfaces, masters) = host::interfaces();
    Context { interfaces, masters }
}
