//! The agent's journal entries: one `remediation` object per decision and action
//! (docs/contract.md section 4).

use serde::Serialize;

use super::ready::Ready;

use super::diagnosis::Cause;

/// Which step of a remediation an entry records (the journal's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Decide,
    Patch,
    Retry,
    Verify,
    /// Undoing a patch that hit another device than the one that failed.
    Unpatch,
    /// Waiting for the device of a stopped target to come back (by name).
    WaitDevice,
    /// Re-enabling a stopped target (configfs `enabled`, else `retry.command`).
    Reenable,
    /// Checking that a re-enabled target sends: its device's `sent` grows after a marker
    /// line written to the kernel log.
    VerifySend,
    Stop,
}

impl Action {
    #[cfg(test)]
    pub const ALL: [Self; 10] = [
        Self::Start,
        Self::Decide,
        Self::Patch,
        Self::Retry,
        Self::Verify,
        Self::Unpatch,
        Self::WaitDevice,
        Self::Reenable,
        Self::VerifySend,
        Self::Stop,
    ];

    /// The journal's code (exhaustive: a new action cannot go unnamed).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Decide => "decide",
            Self::Patch => "patch",
            Self::Retry => "retry",
            Self::Verify => "verify",
            Self::Unpatch => "unpatch",
            Self::WaitDevice => "wait_device",
            Self::Reenable => "reenable",
            Self::VerifySend => "verify_send",
            Self::Stop => "stop",
        }
    }
}

/// How a step ended (the journal's `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    /// Decided not to act (report only), with the reason in `detail`.
    Reported,
    /// --dry-run: what would have been done.
    DryRun,
    /// An older failure already fixed by a later successful set-up.
    Superseded,
    /// The retry command ran past `retry.timeout` (its process group was killed), or a
    /// stopped target's device did not come back within `device_wait`, or no send
    /// statistics came to check that a re-enabled target sends.
    TimedOut,
    /// The retry command was killed because the agent is stopping.
    Killed,
    /// The device patched by name is not the one that failed (renamed, re-created):
    /// `detail` names both.
    WrongDevice,
}

impl Outcome {
    #[cfg(test)]
    pub const ALL: [Self; 8] = [
        Self::Ok,
        Self::Failed,
        Self::Reported,
        Self::DryRun,
        Self::Superseded,
        Self::TimedOut,
        Self::Killed,
        Self::WrongDevice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Reported => "reported",
            Self::DryRun => "dry_run",
            Self::Superseded => "superseded",
            Self::TimedOut => "timed_out",
            Self::Killed => "killed",
            Self::WrongDevice => "wrong_device",
        }
    }
}

/// What a verification can show about a remediated target (the journal's `proved` and
/// `not_proved`). A set-up proves netpoll accepted the device; a marker line that left
/// proves the device sends with interrupts on; neither proves what netconsole is for,
/// delivery with interrupts off (a panic: only the TX polling netpoll does then, which on
/// kernels before 4.19 the patch's NAPI-scheduling hook provides), which only a panic seen at
/// a receiver shows: the lab's panic scenarios, never the agent on a live host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    Setup,
    Send,
    DeliveryInterruptsOff,
}

impl Evidence {
    pub const ALL: [Self; 3] = [Self::Setup, Self::Send, Self::DeliveryInterruptsOff];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Send => "send",
            Self::DeliveryInterruptsOff => "delivery_interrupts_off",
        }
    }

    /// What `proved` leaves unproven, in `ALL`'s order.
    pub fn not_proved(proved: &[Evidence]) -> Vec<Evidence> {
        Self::ALL
            .into_iter()
            .filter(|e| !proved.contains(e))
            .collect()
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remediation {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    pub action: Action,
    pub result: Outcome,
    pub detail: String,
    pub cause: Option<Cause>,
    pub attempt: Option<u32>,
    /// A successful verification's evidence; null on every other entry.
    pub proved: Option<Vec<Evidence>>,
    /// What that verification could not show; null where `proved` is.
    pub not_proved: Option<Vec<Evidence>>,
    /// On the agent's `start` entry only: what the tracer attached (absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_meet_the_remediation_contract() {
        let e = Remediation {
            kind: "remediation",
            ts_ns: 5,
            dev: Some("eth0".into()),
            action: Action::Patch,
            result: Outcome::DryRun,
            detail: "would patch".into(),
            cause: Some(Cause::MissingPollController),
            attempt: None,
            proved: None,
            not_proved: None,
            ready: None,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            crate::model::schema::check_line(&line).unwrap(),
            "remediation"
        );
        assert!(
            line.contains(r#""action":"patch","result":"dry_run""#),
            "{line}"
        );
        assert!(
            line.contains(r#""cause":"missing_poll_controller","attempt":null"#),
            "{line}"
        );
    }

    #[test]
    fn only_the_start_entry_carries_the_ready_object() {
        use crate::model::ready::{OffsetsSource, Ready};
        let mut e = Remediation {
            kind: "remediation",
            ts_ns: 1,
            dev: None,
            action: Action::Start,
            result: Outcome::Ok,
            detail: "ready: ...".into(),
            cause: None,
            attempt: None,
            proved: None,
            not_proved: None,
            ready: None,
        };
        assert!(!serde_json::to_string(&e).unwrap().contains("ready\":"));
        e.ready = Some(Ready {
            method: "fentry",
            kprobes_via: None,
            functions: vec!["netpoll_setup"],
            reused_pins: false,
            attach_ms: 1.5,
            object: "modern",
            offsets: Some(OffsetsSource {
                kind: "kernel_btf",
                path: "/sys/kernel/btf/vmlinux".into(),
                detail: None,
            }),
            recorder: None,
        });
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            crate::model::schema::check_line(&line).unwrap(),
            "remediation"
        );
        assert!(
            line.ends_with(r#""ready":{"method":"fentry","kprobes_via":null,"functions":["netpoll_setup"],"reused_pins":false,"attach_ms":1.5,"object":"modern","offsets":{"kind":"kernel_btf","path":"/sys/kernel/btf/vmlinux","detail":null},"recorder":null}}"#),
            "{line}"
        );
    }

    #[test]
    fn codes_are_the_json_codes() {
        for a in Action::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for e in Evidence::ALL {
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
    }

    #[test]
    fn a_verified_set_up_never_claims_delivery_with_interrupts_off() {
        assert_eq!(
            Evidence::not_proved(&[Evidence::Setup]),
            vec![Evidence::Send, Evidence::DeliveryInterruptsOff]
        );
        assert_eq!(
            Evidence::not_proved(&[Evidence::Setup, Evidence::Send]),
            vec![Evidence::DeliveryInterruptsOff]
        );
    }
}
