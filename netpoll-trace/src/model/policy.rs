//! The agent's decision for one diagnosis (pure): patch and retry only when the
//! evidence says the ops lack ndo_poll_controller (of the device itself, or of the lower
//! device that made a vlan's or bridge's set-up fail), the policy says patch, and the
//! driver is on the allowlist; otherwise report, saying why.

use super::{
    config::{AgentConfig, PolicyAction},
    diagnosis::{Cause, Diagnosis, Remedy},
};

/// Whether the evidence calls for patching the failing device: its ops lack the hook, or
/// a stacked device's lower device failed for that (the root cause's remedies, which a
/// lower device's failure keeps, lead with the runtime patch only then).
fn patch_fixes(d: &Diagnosis) -> bool {
    d.cause == Cause::MissingPollController
        || (d.cause == Cause::LowerDeviceFailed
            && d.remedies.first() == Some(&Remedy::RuntimePatch))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Patch this device, then retry the target.
    PatchAndRetry { dev: String },
    /// Change nothing; the reason goes to the journal.
    Report { reason: String },
}

pub fn decide(d: &Diagnosis, driver: Option<&str>, cfg: &AgentConfig) -> Decision {
    let remedies: Vec<&str> = d.remedies.iter().map(|r| r.as_str()).collect();
    let report = |why: String| Decision::Report {
        reason: format!("{why}; remedies: {}", remedies.join(", ")),
    };
    if !patch_fixes(d) {
        return report(format!("cause {} is not fixed by patching", d.cause));
    }
    let Some(dev) = d.failing_device().map(str::to_string) else {
        return report("no device name in the evidence".into());
    };
    if cfg.missing_poll_controller != PolicyAction::Patch {
        return report("policy.missing_poll_controller is \"report\"".into());
    }
    match driver {
        Some(drv) if cfg.allowed_drivers.iter().any(|a| a == drv) => {
            Decision::PatchAndRetry { dev }
        }
        Some(drv) => report(format!(
            "driver {drv} of {dev} is not in allowed_drivers (a patched device's ops no longer match its driver's table)"
        )),
        None => report(format!(
            "the driver of {dev} is unknown, so it cannot be checked against allowed_drivers"
        )),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A diagnosis of eth0 (the device that failed) with `cause`, for tests.
    pub fn diag(cause: Cause) -> Diagnosis {
        diag_at(cause, 1)
    }

    /// The same, for a set-up that started at `ts_ns`.
    pub fn diag_at(cause: Cause, ts_ns: u64) -> Diagnosis {
        Diagnosis {
            kind: "diagnosis",
            ts_ns,
            dev: Some("eth0".into()),
            cause,
            remedies: vec![Remedy::RuntimePatch, Remedy::UpgradeKernel],
            chain: vec!["eth0".into()],
            explanation: String::new(),
            kernel_message: None,
            netpoll: Some("netconsole".into()),
            errno: Some("ENOTSUPP"),
            ret: -524,
        }
    }

    fn patching() -> AgentConfig {
        AgentConfig {
            allowed_drivers: vec!["virtio_net".into()],
            missing_poll_controller: PolicyAction::Patch,
            ..AgentConfig::default()
        }
    }

    #[test]
    fn patches_only_allowlisted_drivers_for_a_missing_poll_controller() {
        let d = diag(Cause::MissingPollController);
        assert_eq!(
            decide(&d, Some("virtio_net"), &patching()),
            Decision::PatchAndRetry { dev: "eth0".into() }
        );
        let Decision::Report { reason } = decide(&d, Some("ena"), &patching()) else {
            panic!()
        };
        assert!(reason.contains("not in allowed_drivers"), "{reason}");
        assert!(matches!(
            decide(&d, None, &patching()),
            Decision::Report { .. }
        ));
        assert!(matches!(
            decide(&d, Some("virtio_net"), &AgentConfig::default()),
            Decision::Report { .. }
        ));
    }

    #[test]
    fn never_patches_other_causes() {
        for c in Cause::ALL
            .iter()
            .filter(|c| **c != Cause::MissingPollController)
        {
            let mut d = diag(*c);
            // A lower device's failure is patched only for a missing hook (below).
            if *c == Cause::LowerDeviceFailed {
                d.remedies = vec![Remedy::UseOtherDevice];
            }
            let Decision::Report { reason } = decide(&d, Some("virtio_net"), &patching()) else {
                panic!("{c} must not be patched")
            };
            assert!(reason.contains("not fixed by patching"));
        }
    }

    /// #24: a vlan's target failed because its lower device (eth0) has no hook: the
    /// lower device is patched (then the vlan's target retried), as for eth0's own.
    #[test]
    fn a_lower_device_without_the_hook_is_patched() {
        let mut d = diag(Cause::LowerDeviceFailed);
        d.dev = Some("eth0.100".into());
        d.chain = vec!["eth0.100".into(), "eth0".into()];
        assert_eq!(
            decide(&d, Some("virtio_net"), &patching()),
            Decision::PatchAndRetry { dev: "eth0".into() }
        );
    }
}
