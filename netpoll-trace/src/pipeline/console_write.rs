//! What the console write's probe checks and when it runs: the netpolls of the targets
//! this process saw enabled go to `NC_TARGETS`, and the probe (an on-demand program,
//! `watch` only) is attached while one of their devices is down, as rtnetlink tells.
//! A device that goes down is seen within a wake-up and an attach (a few ms): messages
//! netconsole skips before that go uncounted, the price of not running the probe for
//! every message while all is well.

use tokio::io::unix::AsyncFd;

use crate::{
    kernel::{attach::Loaded, console_targets, link_events::LinkEvents},
    model::{
        console_gate::{ConsoleGate, GateChange, GateReport},
        output::Output,
        target::Lifecycle,
    },
};

#[derive(Default)]
pub(super) struct ConsoleWrite {
    /// The targets changed: the netpolls and devices to watch are due.
    targets_due: bool,
    /// Link changes, once the on-demand probe is there to follow them with.
    events: Option<AsyncFd<LinkEvents>>,
    /// The socket could not be opened: the probe was attached for good.
    unwatchable: bool,
    /// The socket has messages to read.
    readable: bool,
    gate: ConsoleGate,
}

impl ConsoleWrite {
    /// The targets changed (or the object came back with the console write).
    pub(super) fn targets_changed(&mut self) {
        self.targets_due = true;
    }

    /// Waits until a link message is there to read; never, without a socket.
    /// Cancel-safe (only waits for readiness).
    pub(super) async fn readable(&mut self) {
        match &self.events {
            Some(fd) => {
                if let Ok(mut g) = fd.readable().await {
                    // `sync` reads until the socket would block.
                    g.clear_ready();
                }
                self.readable = true;
            }
            None => std::future::pending().await,
        }
    }

    /// Brings the kernel's side up to date with the targets and the devices: the
    /// netpolls the probe checks, and whether it is attached.
    pub(super) fn sync(&mut self, loaded: &mut Loaded, targets: &Lifecycle) -> Vec<Output> {
        let slots = netpoll_trace_common::NC_TARGET_SLOTS as usize;
        let mut ask = false;
        if std::mem::take(&mut self.targets_due) {
            if let Err(e) =
                console_targets::watch_targets(&mut loaded.ebpf, &targets.watched(slots))
            {
                log::debug!("updating the targets the console write checks: {e:#}");
            }
            ask = self.gate.watch(&targets.watched_devices(slots)) == GateChange::Ask;
        }
        let Some(attached) = loaded.on_demand_attached() else {
            return Vec::new();
        };
        if self.unwatchable {
            return Vec::new();
        }
        if self.events.is_none() {
            let opened = LinkEvents::open().and_then(|ev| {
                // SAFETY: LinkEvents owns its socket, which moves into the AsyncFd.
                unsafe { AsyncFd::register(ev) }.map_err(std::io::Error::from)
            });
            match opened {
                Ok(fd) => self.events = Some(fd),
                Err(e) => {
                    self.unwatchable = true;
                    let msg = format!(
                        "cannot follow network devices through rtnetlink ({e}): netconsole's console write is traced for good"
                    );
                    return vec![Output::Warning(msg), self.set(loaded, true)];
                }
            }
            ask = true;
        }
        let mut links = Vec::new();
        if let Some(fd) = self.events.as_mut() {
            let ev = fd.get_mut();
            if std::mem::take(&mut self.readable)
                && let Err(e) = ev.read(&mut links)
            {
                // ENOBUFS: messages were lost; a dump tells the present again.
                log::debug!("reading link messages: {e}");
                ask = true;
            }
            if ask && let Err(e) = ev.request_dump() {
                log::debug!("asking for the devices' state: {e}");
            }
        }
        for l in &links {
            self.gate.link(&l.name, l.up, l.gone);
        }
        if self.gate.wanted() == attached {
            return Vec::new();
        }
        vec![self.set(loaded, self.gate.wanted())]
    }

    fn set(&self, loaded: &mut Loaded, on: bool) -> Output {
        let function = loaded.on_demand_function().unwrap_or("the console write");
        let (ms, error) = match loaded.set_on_demand(on) {
            Ok(ms) => (ms.unwrap_or(0.0), None),
            Err(e) => (0.0, Some(format!("{e:#}"))),
        };
        Output::ConsoleWrite(GateReport {
            traced: on,
            function,
            down: self.gate.down().iter().map(|d| d.to_string()).collect(),
            ms,
            error,
        })
    }
}
