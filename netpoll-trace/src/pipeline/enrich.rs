//! Enrichment's I/O adapters: what the kernel's records do not carry, looked up on the
//! host: the driver and its version (ethtool, else sysfs, else the ops' module), the
//! ops table's symbol and module (kallsyms), the kernel release, and the interfaces
//! that exist (for the diagnosis' name suggestions and slave checks).

use std::{sync::Mutex, thread::JoinHandle};

use crate::{
    kernel::{ethtool, host, kallsyms::Kallsyms, profile},
    model::{diagnosis::Context, event::SetupRecord},
};

pub struct Enricher {
    kallsyms: Option<Kallsyms>,
}

/// The data-symbol table being read by `prefetch_symbols`' helper thread.
static PREFETCH: Mutex<Option<JoinHandle<Option<Kallsyms>>>> = Mutex::new(None);

/// The table enrichment needs (data symbols with visible addresses), with the memory its
/// parse freed handed back (on a helper thread that is that thread's own malloc arena).
fn read_symbols() -> Option<Kallsyms> {
    let ks = Kallsyms::read_data().ok().filter(Kallsyms::has_addresses);
    profile::release_freed_memory();
    profile::stage("enrichment's data symbols read (kallsyms)");
    ks
}

/// Starts reading the data symbols on a helper thread, for the `Enricher::new` that
/// follows. Formatting /proc/kallsyms (120,000+ lines) is the kernel's slowest read here,
/// about a second under TCG; on a helper thread it overlaps the BTF parse and program
/// loading instead of adding to them. `Enricher::new` still waits for it, so the table is
/// complete before "ready", as before: a set-up burst right after "ready" must not find
/// the event loop blocked on the read (measured: 478 events lost on 5.10 when the join
/// was left to the first record).
pub fn prefetch_symbols() {
    let handle = std::thread::Builder::new().name("kallsyms".into()).spawn(read_symbols).ok();
    if let Ok(mut slot) = PREFETCH.lock() {
        *slot = handle;
    }
}

impl Enricher {
    pub fn new() -> Self {
        let prefetched = PREFETCH.lock().ok().and_then(|mut slot| slot.take());
        let kallsyms = match prefetched {
            Some(handle) => handle.join().ok().flatten(),
            // Not prefetched (or no thread could start): read here.
            None => read_symbols(),
        };
        Self { kallsyms }
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
