//! Sinks that shape what reaches other sinks: `--dev` filtering and the counts an
//! exit status depends on.

use crate::model::output::{Output, Sink};

/// Passes on only outputs about the wanted devices (`watch --dev`); outputs about no
/// device (losses, warnings) always pass.
pub struct DeviceFilter<S> {
    devices: Vec<String>,
    inner: S,
}

impl<S: Sink> DeviceFilter<S> {
    /// No devices: everything passes.
    pub fn new(devices: Vec<String>, inner: S) -> Self {
        Self { devices, inner }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn wanted(&self, dev: Option<&str>) -> bool {
        self.devices.is_empty() || dev.is_some_and(|d| self.devices.iter().any(|w| w == d))
    }
}

impl<S: Sink> Sink for DeviceFilter<S> {
    fn emit(&mut self, out: &Output) {
        if let Output::PollStats { stats, last } = out {
            let stats = stats
                .iter()
                .filter(|s| self.wanted(s.dev.as_deref()))
                .cloned()
                .collect();
            return self.inner.emit(&Output::PollStats { stats, last: *last });
        }
        let devices = out.devices();
        if devices.is_empty() || devices.iter().any(|d| self.wanted(*d)) {
            self.inner.emit(out);
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.inner.finish()
    }
}

/// Counts the failed set-ups it sees (diagnosed attempts).
#[derive(Debug, Default)]
pub struct Failures {
    pub count: usize,
}

impl Sink for Failures {
    fn emit(&mut self, out: &Output) {
        if let Output::Attempt(_, Some(_)) = out {
            self.count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        correlate::{Attempt, tests::rec},
        event::SetupFn,
        poll::SlowPoll,
    };

    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Sink for Seen {
        fn emit(&mut self, out: &Output) {
            self.0.push(match out {
                Output::Attempt(a, _) => a.root.dev.clone().unwrap_or_default(),
                Output::PollStats { stats, .. } => format!("polls {}", stats.len()),
                Output::SlowPoll(p) => format!("slow {:?}", p.dev),
                other => format!("{other:?}"),
            });
        }
    }

    fn attempt(dev: &str) -> Output {
        Output::Attempt(
            Box::new(Attempt {
                root: rec(SetupFn::NetpollSetup, dev, 0, 1, 1, 0),
                nested: vec![],
            }),
            None,
        )
    }

    #[test]
    fn only_wanted_devices_pass_and_deviceless_outputs_always_do() {
        let mut f = DeviceFilter::new(vec!["eth0".into()], Seen::default());
        f.emit(&attempt("eth0"));
        f.emit(&attempt("eth1"));
        f.emit(&Output::SlowPoll(SlowPoll {
            kind: "poll",
            ts_ns: 1,
            dev: None,
            ifindex: None,
            count: 1,
            duration_ns: 5,
        }));
        f.emit(&Output::Lost(2));
        f.emit(&Output::PollStats {
            stats: vec![],
            last: true,
        });
        assert_eq!(f.inner.0, ["eth0", "Lost(2)", "polls 0"]);
        let mut all = DeviceFilter::new(vec![], Seen::default());
        all.emit(&attempt("eth1"));
        assert_eq!(all.inner.0, ["eth1"]);
    }
}
