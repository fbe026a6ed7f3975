//! Enrichment's I/O adapters: what the kernel's records do not carry, looked up on the
//! host: the driver and its version (ethtool, else sysfs, else the ops' module), the
//! ops table's symbol and module (kallsyms), the kernel release, and the interfaces
//! that exist (for the diagnosis' name suggestions and slave checks).

use crate::{
    kernel::{ethtool, host, kallsyms::Kallsyms, profile},
    model::{diagnosis::Context, event::SetupRecord},
};

/// The data-symbol table, read once a record first needs it.
enum Symbols {
    Unread,
    /// Being read by a helper thread.
    Reading(tokio::sync::oneshot::Receiver<Option<Kallsyms>>),
    /// None: kallsyms unreadable or its addresses hidden.
    Read(Option<Kallsyms>),
}

pub struct Enricher {
    symbols: Symbols,
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
    /// Reads the data symbols once a record first carries an ops address (`enrich`), on
    /// a helper thread. Formatting /proc/kallsyms (120,000+ lines) is the kernel's slowest
    /// read here, about a second under TCG, and its table is most of an idle tracer's
    /// heap: a host whose netconsole never fails never pays for it. Records are reported
    /// only after `ready` (the readers go on queueing meanwhile: a blocking read on the
    /// event loop once lost 478 events of a burst on 5.10).
    pub fn lazy() -> Self {
        Self {
            symbols: Symbols::Unread,
        }
    }

    /// Reads the data symbols here and now (dump: nothing to overlap).
    pub fn read_now() -> Self {
        Self {
            symbols: Symbols::Read(read_symbols()),
        }
    }

    /// True while the symbol table is being read.
    pub fn is_pending(&self) -> bool {
        matches!(self.symbols, Symbols::Reading(_))
    }

    /// Waits for the symbol table being read, if it is. Cancel-safe: the helper's answer
    /// stays in the receiver until it arrives.
    pub async fn ready(&mut self) {
        if let Symbols::Reading(rx) = &mut self.symbols {
            let ks = rx.await.ok().flatten();
            self.symbols = Symbols::Read(ks);
        }
    }

    fn start_reading(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("kallsyms".into())
            .spawn(move || {
                let _ = tx.send(read_symbols());
            });
        self.symbols = match spawned {
            Ok(_) => Symbols::Reading(rx),
            // No thread could start: read here.
            Err(_) => Symbols::Read(read_symbols()),
        };
    }

    /// What must be looked up while the record is fresh (the device may go away): the
    /// driver and the kernel release. Starts reading the symbols a record needs.
    pub fn enrich(&mut self, r: &mut SetupRecord) {
        r.kernel = host::release().map(str::to_string);
        if let Some(dev) = &r.dev {
            (r.driver, r.driver_version) = match ethtool::driver_info(dev) {
                Some((driver, version)) => (Some(driver), version),
                None => (host::sysfs_driver(dev), None),
            };
        }
        if r.ops_addr.is_some() && matches!(self.symbols, Symbols::Unread) {
            self.start_reading();
        }
        self.symbolize(r);
    }

    /// The ops table's symbol and module, once the table is read (again at report time
    /// for records that arrived while it was being read); with no driver known, the
    /// module owning the ops stands for it.
    pub fn symbolize(&self, r: &mut SetupRecord) {
        let Symbols::Read(Some(ks)) = &self.symbols else {
            return;
        };
        if r.ops_symbol.is_none()
            && let Some(addr) = r.ops_addr
            && let Some((name, module)) = ks.symbol_at(addr)
        {
            r.ops_symbol = Some(name.to_string());
            r.ops_module = module.map(str::to_string);
        }
        if r.driver.is_none() {
            r.driver = r.ops_module.clone();
        }
    }
}

/// Interfaces and their masters, for name suggestions and slave diagnoses.
pub fn host_context() -> Context {
    let (interfaces, masters) = host::interfaces();
    Context {
        interfaces,
        masters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{correlate::tests::rec, event::SetupFn};

    fn record(ops_addr: Option<u64>) -> SetupRecord {
        let mut r = rec(
            SetupFn::InnerNetpollSetup,
            "npt-no-such-dev0",
            1,
            1,
            1,
            -524,
        );
        r.ops_addr = ops_addr;
        r
    }

    /// A tracer that never sees an ops address never reads kallsyms (nor keeps its table).
    #[test]
    fn no_ops_address_reads_no_symbols() {
        let mut e = Enricher::lazy();
        e.enrich(&mut record(None));
        assert!(matches!(e.symbols, Symbols::Unread));
    }

    /// The first ops address starts the read; records are symbolized once it is in, at
    /// report time, and with no driver known the module owning the ops stands for it.
    #[test]
    fn symbols_fill_in_once_read() {
        let mut e = Enricher::lazy();
        let mut r = record(Some(0xffff_ffff_c000_1000));
        e.enrich(&mut r);
        assert!(
            e.is_pending() || matches!(e.symbols, Symbols::Read(_)),
            "the read did not start"
        );
        assert_eq!(r.ops_symbol, None);
        e.symbols = Symbols::Read(Some(Kallsyms::parse(
            "ffffffffc0001000 r virtnet_netdev\t[virtio_net]\n",
        )));
        e.symbolize(&mut r);
        assert_eq!(r.ops_symbol.as_deref(), Some("virtnet_netdev"));
        assert_eq!(
            (r.ops_module.as_deref(), r.driver.as_deref()),
            (Some("virtio_net"), Some("virtio_net"))
        );
    }
}
