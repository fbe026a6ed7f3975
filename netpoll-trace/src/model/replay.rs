//! Target events replayed from what a flight recorder kept (pure): `dump` shows them
//! among the attempts, `status` takes the state they leave.

use super::{
    output::Output,
    target::{Lifecycle, Teardown},
};

/// Recorded attempts (in order) with the target events their set-ups and the recorded
/// tear-downs make, each tear-down placed by time before the first attempt after it.
pub fn targets(attempts: Vec<Output>, mut teardowns: Vec<Teardown>) -> Vec<Output> {
    teardowns.sort_by_key(|t| t.ts_ns);
    let mut teardowns = teardowns.into_iter().peekable();
    let mut life = Lifecycle::default();
    let mut out = Vec::new();
    for o in attempts {
        if let Output::Attempt(a, _) = &o {
            while let Some(t) = teardowns.next_if(|t| t.ts_ns < a.root.ts_ns) {
                out.extend(life.on_teardown(&t).map(Output::Target));
            }
            let enabled = life.on_setup(&a.root);
            out.push(o);
            out.extend(enabled.map(Output::Target));
        } else {
            out.push(o);
        }
    }
    for t in teardowns {
        out.extend(life.on_teardown(&t).map(Output::Target));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::target::{
        StopCause,
        tests::{setup, teardown},
    };

    #[test]
    fn a_replay_places_tear_downs_between_the_set_ups_by_time() {
        let attempt = |ts: u64| {
            let mut r = setup(0);
            r.ts_ns = ts;
            Output::Attempt(
                Box::new(crate::model::correlate::group(vec![r]).remove(0)),
                None,
            )
        };
        let mut early = teardown(StopCause::DeviceUnregistered);
        early.ts_ns = 50;
        let mut late = teardown(StopCause::Disabled);
        late.ts_ns = 500;
        let out = targets(vec![attempt(10), attempt(100)], vec![late, early]);
        let kinds: Vec<String> = out
            .iter()
            .map(|o| match o {
                Output::Attempt(..) => "attempt".to_string(),
                Output::Target(t) => t.event.as_str().to_string(),
                _ => "other".to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "attempt",
                "enabled",
                "stopped",
                "attempt",
                "re_enabled",
                "disabled"
            ]
        );
    }
}
