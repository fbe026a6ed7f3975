//! When netconsole's console write needs its probe (pure). The probe counts what
//! netconsole skips because a target's device is down; while every known target's
//! device is up it would only cost a program run per message, so it is attached only
//! while one is down or not running (no carrier; a detached device loses it too), from
//! rtnetlink's word.

use std::collections::BTreeMap;

/// The devices of the targets the console write checks, and what is known of each.
#[derive(Debug, Default)]
pub struct ConsoleGate {
    /// Device name: down (true), up (false), or not heard of yet (absent).
    devices: BTreeMap<String, Option<bool>>,
}

/// What the gate asks of the caller after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateChange {
    /// The device list changed: ask for every device's state (a dump).
    Ask,
    /// Nothing to do.
    None,
}

impl ConsoleGate {
    /// The targets' devices now (the ones the console write checks). A device new to
    /// the list is unknown until a dump says: `Ask`.
    pub fn watch(&mut self, devices: &[String]) -> GateChange {
        let before: Vec<&String> = self.devices.keys().collect();
        let mut now: Vec<&String> = devices.iter().collect();
        now.sort();
        now.dedup();
        if before == now {
            return GateChange::None;
        }
        let mut next = BTreeMap::new();
        for d in now {
            next.insert(d.clone(), self.devices.get(d).copied().flatten());
        }
        self.devices = next;
        if self.devices.values().any(Option::is_none) {
            GateChange::Ask
        } else {
            GateChange::None
        }
    }

    /// A link message about `name` (others are not kept).
    pub fn link(&mut self, name: &str, up: bool, gone: bool) {
        if let Some(state) = self.devices.get_mut(name) {
            // A device gone is down until its target is torn down (netconsole skips it).
            *state = Some(gone || !up);
        }
    }

    /// The probe is wanted: a watched device is down. One not heard of yet is taken
    /// for up: a target is watched from the set-up the tool saw succeed, which opened its
    /// device, and the dump asked for then says within a wake-up (attaching meanwhile
    /// would only detach again).
    pub fn wanted(&self) -> bool {
        self.devices.values().any(|s| *s == Some(true))
    }

    /// The watched devices that are down, for the report.
    pub fn down(&self) -> Vec<&str> {
        self.devices
            .iter()
            .filter(|(_, s)| **s == Some(true))
            .map(|(d, _)| d.as_str())
            .collect()
    }
}

/// The console write's probe attached or detached (a line on stderr).
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    /// Attached now (else detached).
    pub traced: bool,
    /// The function (`netconsole:write_msg`, ...).
    pub function: &'static str,
    /// The watched devices down that made it attach (none when it is attached for good:
    /// rtnetlink could not be followed).
    pub down: Vec<String>,
    /// How long the attach or detach took.
    pub ms: f64,
    /// It failed: the probe stays as it was.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn attached_only_while_a_watched_device_is_down() {
        let mut g = ConsoleGate::default();
        // No known target: nothing to count.
        assert!(!g.wanted());
        // A target on vl100: taken for up (its set-up opened it) until the dump answers.
        assert_eq!(g.watch(&names(&["vl100"])), GateChange::Ask);
        assert!(!g.wanted());
        g.link("vl100", false, false);
        assert!(g.wanted(), "the dump says it is down");
        g.link("eth0", false, false); // not watched: ignored
        g.link("vl100", true, false);
        assert!(!g.wanted());
        // The same list again: nothing asked.
        assert_eq!(g.watch(&names(&["vl100", "vl100"])), GateChange::None);
        g.link("eth0", false, false);
        assert!(!g.wanted(), "eth0 carries no target");
        g.link("vl100", false, false);
        assert!(g.wanted());
        assert_eq!(g.down(), ["vl100"]);
        g.link("vl100", true, false);
        assert!(!g.wanted());
        // Unregistered: down until its target goes (then the list drops it).
        g.link("vl100", true, true);
        assert!(g.wanted());
        assert_eq!(g.watch(&[]), GateChange::None);
        assert!(!g.wanted());
    }

    #[test]
    fn a_device_keeps_what_is_known_of_it_when_the_list_grows() {
        let mut g = ConsoleGate::default();
        g.watch(&names(&["eth0"]));
        g.link("eth0", true, false);
        g.link("eth0", false, false);
        assert_eq!(g.watch(&names(&["eth0", "vl100"])), GateChange::Ask);
        assert_eq!(
            g.down(),
            ["eth0"],
            "eth0 is still known down; vl100 not heard of"
        );
        g.link("vl100", true, false);
        g.link("eth0", true, false);
        assert!(!g.wanted());
        assert_eq!(g.watch(&names(&["vl100"])), GateChange::None);
        assert!(!g.wanted());
    }
}
