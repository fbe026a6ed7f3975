//! `status`' per-target health (pure): each netconsole target (configfs's dynamic
//! ones, and every target the flight recorder saw set up or torn down) with its
//! device's delivery since the recorder was created.

use serde::Serialize;

use super::{
    send::{DropReason, SendSummary},
    target::TargetState,
};

/// A dynamic target as configfs shows it (the kernel layer reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dynamic {
    pub name: String,
    pub dev: Option<String>,
    pub remote: Option<String>,
    pub enabled: Option<bool>,
    /// The kernel's own failed-send count (configfs `transmit_errors`, where it has one).
    pub transmit_errors: Option<u64>,
}

/// One target's health, as `status --json` prints it under `targets`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetHealth {
    /// The lifecycle label (`netconsole@<remote>`).
    pub target: String,
    /// The configfs item, for a dynamic target.
    pub configfs: Option<String>,
    pub dev: Option<String>,
    pub remote: Option<String>,
    /// configfs's `enabled`, else whether its last recorded change left it up.
    pub enabled: Option<bool>,
    /// The last recorded change (`enabled`, `stopped`, ...) and its cause.
    pub last_change: Option<&'static str>,
    pub last_cause: Option<&'static str>,
    /// The device's messages and drops since the recorder was created (null: no
    /// recorder, or the device sent nothing).
    pub messages: Option<u64>,
    pub sent: Option<u64>,
    pub deferred: Option<u64>,
    pub dropped: Option<u64>,
    pub last_drop_ns: Option<u64>,
    pub last_drop_reason: Option<DropReason>,
    /// The kernel's own count of this target's failed sends (configfs `transmit_errors`),
    /// beside the tool's drops; null where the kernel keeps none or it is no configfs item.
    pub transmit_errors: Option<u64>,
}

/// Joins configfs's targets, the recorder's lifecycle states and the send summaries:
/// a recorded target and a configfs item are one target when device and remote agree.
pub fn health(
    dynamic: &[Dynamic],
    recorded: &[TargetState],
    sends: &[SendSummary],
) -> Vec<TargetHealth> {
    let mut out: Vec<TargetHealth> = Vec::new();
    for s in recorded {
        out.push(TargetHealth {
            target: s.target.clone(),
            configfs: None,
            dev: s.dev.clone(),
            remote: s.remote.clone(),
            enabled: Some(s.up()),
            last_change: Some(s.last.as_str()),
            last_cause: Some(s.cause),
            messages: None,
            sent: None,
            deferred: None,
            dropped: None,
            last_drop_ns: None,
            last_drop_reason: None,
            transmit_errors: None,
        });
    }
    for d in dynamic {
        let same = |h: &TargetHealth| {
            h.configfs.is_none() && h.dev == d.dev && h.remote.is_some() && h.remote == d.remote
        };
        match out.iter_mut().find(|h| same(h)) {
            Some(h) => {
                h.configfs = Some(d.name.clone());
                h.enabled = d.enabled.or(h.enabled);
                h.transmit_errors = d.transmit_errors;
            }
            None => out.push(TargetHealth {
                target: format!("netconsole@{}", d.remote.as_deref().unwrap_or("?")),
                configfs: Some(d.name.clone()),
                dev: d.dev.clone(),
                remote: d.remote.clone(),
                enabled: d.enabled,
                last_change: None,
                last_cause: None,
                messages: None,
                sent: None,
                deferred: None,
                dropped: None,
                last_drop_ns: None,
                last_drop_reason: None,
                transmit_errors: d.transmit_errors,
            }),
        }
    }
    for h in &mut out {
        if let Some(s) = sends.iter().find(|s| s.dev.is_some() && s.dev == h.dev) {
            h.messages = Some(s.messages);
            h.sent = Some(s.sent);
            h.deferred = Some(s.deferred);
            h.dropped = Some(s.dropped);
            h.last_drop_ns = s.last_drop_ns;
            h.last_drop_reason = s.last_drop_reason;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::target::Change;

    #[test]
    fn a_recorded_target_and_its_configfs_item_are_one_with_its_devices_counts() {
        let recorded = [TargetState {
            target: "netconsole@10.0.2.2:6666".into(),
            dev: Some("eth1".into()),
            remote: Some("10.0.2.2:6666".into()),
            last: Change::Stopped,
            cause: "device_unregistered",
            since_ns: 5,
            netpoll_addr: 1,
            netpolls_up: Vec::new(),
        }];
        let dynamic = [
            Dynamic {
                name: "t1".into(),
                dev: Some("eth1".into()),
                remote: Some("10.0.2.2:6666".into()),
                enabled: Some(false),
                transmit_errors: Some(4),
            },
            Dynamic {
                name: "t2".into(),
                dev: Some("eth0".into()),
                remote: Some("10.0.2.2:6667".into()),
                enabled: Some(true),
                transmit_errors: None,
            },
        ];
        let mut send = crate::model::send::summarize(&[], 9);
        send.dev = Some("eth1".into());
        send.messages = 12;
        send.dropped = 2;
        send.last_drop_ns = Some(8);
        send.last_drop_reason = Some(DropReason::NotRunning);
        let h = health(&dynamic, &recorded, &[send]);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].configfs.as_deref(), Some("t1"));
        assert_eq!(
            (h[0].enabled, h[0].last_change, h[0].last_cause),
            (Some(false), Some("stopped"), Some("device_unregistered"))
        );
        assert_eq!(
            (h[0].messages, h[0].dropped, h[0].last_drop_reason),
            (Some(12), Some(2), Some(DropReason::NotRunning))
        );
        assert_eq!(
            (h[1].target.as_str(), h[1].messages),
            ("netconsole@10.0.2.2:6667", None)
        );
        // The kernel's own failed-send count beside the tool's drops (7.x configfs).
        assert_eq!(
            (h[0].transmit_errors, h[1].transmit_errors),
            (Some(4), None)
        );
        let v = serde_json::to_value(&h[0]).unwrap();
        assert_eq!(v["last_drop_reason"], "not_running");
        assert_eq!(v["transmit_errors"], 4);
    }
}
