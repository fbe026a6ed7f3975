//! Why a netpoll set-up failed and what to do about it (docs/contract.md section 2). Pure:
//! the evidence is the recorded calls, the kernel's own log lines and a few facts
//! about the host's interfaces; every rule is unit-tested, including evidence as a
//! pre-4.19 kernel produces it, which we cannot boot here.

use std::fmt;

use serde::Serialize;

use super::{correlate::Attempt, errno::Errno, event::SetupFn, kernel_log::KernelLog};

macro_rules! stable_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[allow(dead_code, reason = "every stable code exists, even those no rule emits yet")]
        pub enum $name {
            $(#[serde(rename = $s)] $variant,)*
        }

        impl $name {
            /// The stable code used in JSON and configuration.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $s,)*
                }
            }

            #[allow(dead_code, reason = "used by configuration parsing and tests")]
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some(Self::$variant),)*
                    _ => None,
                }
            }

            #[allow(dead_code, reason = "used by configuration parsing and tests")]
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stable_enum!(
    /// Why netpoll refused a device.
    Cause {
        MissingPollController = "missing_poll_controller",
        NetpollDisabled = "netpoll_disabled",
        NoSuchDevice = "no_such_device",
        SlaveDevice = "slave_device",
        NoIpAddress = "no_ip_address",
        OpenFailed = "open_failed",
        OutOfMemory = "out_of_memory",
        LowerDeviceFailed = "lower_device_failed",
        Unknown = "unknown",
    }
);

stable_enum!(
    /// What an operator (or the agent) can do, in the order they should try.
    Remedy {
        RuntimePatch = "runtime_patch",
        UpgradeKernel = "upgrade_kernel",
        RebuildDriverWithPollController = "rebuild_driver_with_poll_controller",
        UseMasterDevice = "use_master_device",
        UseOtherDevice = "use_other_device",
        SetLocalIp = "set_local_ip",
        WaitForAddress = "wait_for_address",
        CheckInterfaceName = "check_interface_name",
        NoneNeeded = "none_needed",
    }
);

/// Facts about the host the rules use, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Network interfaces that exist now (for name suggestions).
    pub interfaces: Vec<String>,
    /// A device's master (bond/bridge/team), by device name.
    pub masters: Vec<(String, String)>,
}

impl Context {
    fn master_of(&self, dev: &str) -> Option<&str> {
        self.masters
            .iter()
            .find(|(d, _)| d == dev)
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diagnosis {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    pub cause: Cause,
    pub remedies: Vec<Remedy>,
    /// Outermost device -> the device that failed.
    pub chain: Vec<String>,
    pub explanation: String,
    /// The kernel's own log line for this failure, when it logged one.
    pub kernel_message: Option<String>,
    /// Owner of the netpoll (e.g. netconsole).
    pub netpoll: Option<String>,
    pub errno: Option<&'static str>,
    pub ret: i32,
}

/// Diagnoses a failed attempt; None when it succeeded.
/// `log` supplies the kernel's own line for the failure, consumed in order.
pub fn diagnose(attempt: &Attempt, ctx: &Context, log: &mut KernelLog) -> Option<Diagnosis> {
    let culprit = attempt.culprit()?;
    let errno = Errno::from_ret(culprit.ret);
    let dev = culprit.dev.clone().or_else(|| attempt.root.dev.clone());
    let dev_name = dev.as_deref().unwrap_or("the device");
    let kernel_message = dev.as_deref().and_then(|d| log.take_failure_for(d));
    let chain = attempt.chain();
    let outer_dev = chain.first().cloned();
    let nested_failure = chain.len() > 1;

    let (cause, remedies, mut explanation) = match (culprit.function, errno) {
        (f, Some(Errno::Enodev)) if f.is_outer() => {
            let suggestion = suggest(dev_name, &ctx.interfaces);
            (
                Cause::NoSuchDevice,
                vec![Remedy::CheckInterfaceName, Remedy::UseOtherDevice],
                format!(
                    "there is no network interface named {dev_name}. {suggestion}Fix the interface \
                     name in the netconsole target (netconsole=...@/IFACE,... or configfs dev_name)."
                ),
            )
        }
        (f, Some(Errno::Ebusy)) if f.is_outer() => {
            let master = ctx.master_of(dev_name);
            let target = master.map_or("its master device".to_string(), |m| {
                format!("its master {m}")
            });
            (
                Cause::SlaveDevice,
                vec![Remedy::UseMasterDevice],
                format!(
                    "{dev_name} is enslaved to a bond, bridge or team, and netpoll refuses slaves \
                     (their traffic belongs to the master). Point netconsole at {target}; netpoll \
                     then reaches the slaves itself."
                ),
            )
        }
        (f, Some(Errno::Edestaddrreq)) if f.is_outer() => (
            Cause::NoIpAddress,
            vec![Remedy::SetLocalIp, Remedy::WaitForAddress],
            format!(
                "{dev_name} has no IPv4 address and the target gives no local address, so netpoll \
                 has no source address to send from. Give the target a local address \
                 (netconsole=6665@LOCAL_IP/{dev_name},...), or load netconsole after the interface \
                 got its address (e.g. after DHCP)."
            ),
        ),
        (_, Some(Errno::Enomem)) => (
            Cause::OutOfMemory,
            vec![],
            format!(
                "the kernel ran out of memory while setting up netpoll on {dev_name}; retry once memory is available."
            ),
        ),
        (SetupFn::InnerNetpollSetup, Some(Errno::Enotsupp))
            if culprit.netpoll_disabled == Some(true) =>
        {
            (
                Cause::NetpollDisabled,
                vec![Remedy::UseOtherDevice],
                format!(
                    "{dev_name} has IFF_DISABLE_NETPOLL set: its driver declares that netpoll cannot \
                 work on it (netkit, some virtual and offload devices), whatever the kernel \
                 version. Nothing can be patched; send netconsole through another interface."
                ),
            )
        }
        (SetupFn::InnerNetpollSetup, Some(Errno::Enotsupp))
            if culprit.has_poll_controller == Some(false)
                && culprit.netpoll_disabled == Some(false) =>
        {
            let driver = culprit
                .driver
                .as_deref()
                .map_or(String::new(), |d| format!(" (driver {d})"));
            (
                Cause::MissingPollController,
                vec![
                    Remedy::RuntimePatch,
                    Remedy::UpgradeKernel,
                    Remedy::RebuildDriverWithPollController,
                ],
                format!(
                    "{dev_name}{driver} has no ndo_poll_controller, and this kernel's netpoll still \
                     requires one (the requirement was dropped in 4.19, when NAPI drivers such as \
                     ena, virtio_net and ixgbe removed their hooks). Stopgap: `netpoll-trace patch \
                     {dev_name}` installs a hook that schedules the device's NAPI contexts, as the \
                     drivers' own hooks did: set-up passes the check, and this kernel's netpoll, \
                     which polls only scheduled contexts, reaps TX completions even with \
                     interrupts off (a panic). Real fix: a kernel >= 4.19."
                ),
            )
        }
        (f, Some(_)) if f.is_outer() && culprit.dev.is_some() && nested_failure_free(attempt) => (
            Cause::OpenFailed,
            vec![Remedy::UseOtherDevice],
            format!(
                "netpoll could not bring {dev_name} up ({}); check `ip link show {dev_name}` and the \
                 driver's messages in dmesg.",
                errno.map_or("unknown error".into(), |e| e.to_string())
            ),
        ),
        _ => (
            Cause::Unknown,
            vec![],
            format!(
                "set-up of {dev_name} failed with {} ({}) and the evidence matches no known cause.",
                errno.map_or(culprit.ret.to_string(), |e| e.to_string()),
                errno.map_or("unknown error", |e| e.description())
            ),
        ),
    };

    // A lower device failing makes the outer device fail: say so, and keep the
    // root cause's remedies (patching the outer device would help nothing).
    let (cause, remedies) = if nested_failure && culprit.depth > 0 {
        let outer = outer_dev.as_deref().unwrap_or("the outer device");
        explanation = format!(
            "{outer} failed because its lower device {dev_name} failed ({}): {explanation}",
            cause.as_str()
        );
        (Cause::LowerDeviceFailed, remedies)
    } else {
        (cause, remedies)
    };
    if let Some(msg) = &kernel_message {
        explanation.push_str(&format!(" The kernel said: \"{msg}\"."));
    }
    Some(Diagnosis {
        kind: "diagnosis",
        ts_ns: attempt.root.ts_ns,
        dev: outer_dev.or(dev),
        cause,
        remedies,
        chain,
        explanation,
        kernel_message,
        netpoll: attempt.root.netpoll.clone(),
        errno: errno.and_then(Errno::name),
        ret: culprit.ret,
    })
}

/// netpoll_setup failed on its own (no nested call failed): its failure is in its
/// own body, e.g. opening the device.
fn nested_failure_free(attempt: &Attempt) -> bool {
    attempt.nested.iter().all(|r| !r.failed())
}

/// "Did you mean ...?" from the interfaces that exist, closest first.
fn suggest(wanted: &str, interfaces: &[String]) -> String {
    let mut candidates: Vec<&String> = interfaces.iter().filter(|i| i.as_str() != "lo").collect();
    if candidates.is_empty() {
        return String::new();
    }
    candidates.sort_by_key(|c| (edit_distance(wanted, c), c.as_str()));
    let list: Vec<&str> = candidates.iter().take(4).map(|s| s.as_str()).collect();
    format!("Existing interfaces: {}. ", list.join(", "))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Diagnosis {
    /// The device that failed: the end of the chain (a lower device when one failed
    /// under the outer one), else the device named. What the agent patches and the
    /// metrics count.
    pub fn failing_device(&self) -> Option<&str> {
        self.chain.last().or(self.dev.as_ref()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        correlate::{group, tests::rec},
        event::SetupFn::{InnerNetpollSetup as Inner, NetpollSetup as Outer},
        kernel_log::KernelLog,
    };

    fn log(lines: &[&str]) -> KernelLog {
        let mut l = KernelLog::default();
        for t in lines {
            l.push(t.to_string(), 0);
        }
        l
    }

    fn one(
        records: Vec<crate::model::event::SetupRecord>,
        ctx: &Context,
        lines: &[&str],
    ) -> Diagnosis {
        let attempts = group(records);
        assert_eq!(attempts.len(), 1);
        diagnose(&attempts[0], ctx, &mut log(lines)).expect("a failure")
    }

    #[test]
    fn kernel_4_4_evidence_is_a_missing_poll_controller_with_patch_and_upgrade() {
        // What a 4.4 kernel produces for ena 2.x: -ENOTSUPP from __netpoll_setup,
        // no ndo_poll_controller, IFF_DISABLE_NETPOLL clear.
        let mut inner = rec(Inner, "ens5", 1, 1_100, 100, -524);
        inner.driver = Some("ena".into());
        let d = one(
            vec![rec(Outer, "ens5", 0, 1_000, 1_000, -524), inner],
            &Context::default(),
            &["netpoll: netconsole: ens5 doesn't support polling, aborting"],
        );
        assert_eq!(d.cause, Cause::MissingPollController);
        assert_eq!(
            d.remedies[..2],
            [Remedy::RuntimePatch, Remedy::UpgradeKernel]
        );
        assert_eq!(d.errno, Some("ENOTSUPP"));
        assert_eq!(
            d.kernel_message.as_deref(),
            Some("netpoll: netconsole: ens5 doesn't support polling, aborting")
        );
        assert!(d.explanation.contains("4.19") && d.explanation.contains("driver ena"));
        assert_eq!(d.chain, ["ens5"]);
    }

    #[test]
    fn netkit_is_netpoll_disabled_and_never_offers_a_patch() {
        let mut inner = rec(Inner, "nk0", 1, 1_100, 100, -524);
        inner.netpoll_disabled = Some(true);
        let d = one(
            vec![rec(Outer, "nk0", 0, 1_000, 1_000, -524), inner],
            &Context::default(),
            &[],
        );
        assert_eq!(d.cause, Cause::NetpollDisabled);
        assert!(!d.remedies.contains(&Remedy::RuntimePatch));
        assert_eq!(d.remedies, [Remedy::UseOtherDevice]);
        assert_eq!(d.kernel_message, None);
    }

    #[test]
    fn unknown_evidence_is_not_guessed_as_missing_poll_controller() {
        // ENOTSUPP but the ops could not be read: not enough evidence to patch.
        let mut inner = rec(Inner, "eth0", 1, 1_100, 100, -524);
        inner.has_poll_controller = None;
        inner.netpoll_disabled = None;
        let d = one(
            vec![rec(Outer, "eth0", 0, 1_000, 1_000, -524), inner],
            &Context::default(),
            &[],
        );
        assert_eq!(d.cause, Cause::Unknown);
        assert!(d.remedies.is_empty());
    }

    #[test]
    fn missing_name_suggests_the_real_interfaces() {
        let ctx = Context {
            interfaces: vec!["lo".into(), "ens5".into(), "docker0".into()],
            ..Default::default()
        };
        let d = one(
            vec![rec(Outer, "eth0", 0, 1_000, 100, -19)],
            &ctx,
            &["netpoll: netconsole: eth0 doesn't exist, aborting"],
        );
        assert_eq!(d.cause, Cause::NoSuchDevice);
        assert_eq!(
            d.remedies,
            [Remedy::CheckInterfaceName, Remedy::UseOtherDevice]
        );
        assert!(
            d.explanation
                .contains("Existing interfaces: ens5, docker0."),
            "{}",
            d.explanation
        );
        assert!(!d.explanation.contains("lo,"));
        assert!(d.kernel_message.is_some());
    }

    #[test]
    fn slave_names_its_master() {
        let ctx = Context {
            masters: vec![("eth1".into(), "bond0".into())],
            ..Default::default()
        };
        let d = one(vec![rec(Outer, "eth1", 0, 1_000, 100, -16)], &ctx, &[]);
        assert_eq!(d.cause, Cause::SlaveDevice);
        assert_eq!(d.remedies, [Remedy::UseMasterDevice]);
        assert!(d.explanation.contains("its master bond0"));
    }

    #[test]
    fn no_address_open_failure_and_oom() {
        let d = one(
            vec![rec(Outer, "d0", 0, 1_000, 100, -89)],
            &Context::default(),
            &[],
        );
        assert_eq!(d.cause, Cause::NoIpAddress);
        assert_eq!(d.remedies, [Remedy::SetLocalIp, Remedy::WaitForAddress]);
        let d = one(
            vec![rec(Outer, "eth3", 0, 1_000, 100, -100)],
            &Context::default(),
            &[],
        );
        assert_eq!(d.cause, Cause::OpenFailed);
        let d = one(
            vec![
                rec(Outer, "eth0", 0, 1_000, 1_000, -12),
                rec(Inner, "eth0", 1, 1_100, 10, -12),
            ],
            &Context::default(),
            &[],
        );
        assert_eq!(d.cause, Cause::OutOfMemory);
    }

    #[test]
    fn vlan_on_netkit_is_a_lower_device_failure_with_the_chain() {
        let mut lower = rec(Inner, "nk0", 2, 1_200, 50, -524);
        lower.netpoll_disabled = Some(true);
        lower.netpoll = None;
        let d = one(
            vec![
                rec(Outer, "vlan0", 0, 1_000, 1_000, -524),
                rec(Inner, "vlan0", 1, 1_100, 800, -524),
                lower,
            ],
            &Context::default(),
            &["netpoll: (null): nk0 doesn't support polling, aborting"],
        );
        assert_eq!(d.cause, Cause::LowerDeviceFailed);
        assert_eq!(d.chain, ["vlan0", "nk0"]);
        assert_eq!(d.dev.as_deref(), Some("vlan0"));
        assert_eq!(d.failing_device(), Some("nk0"));
        assert_eq!(d.remedies, [Remedy::UseOtherDevice]);
        assert!(d.explanation.contains("netpoll_disabled"));
        assert_eq!(
            d.kernel_message.as_deref(),
            Some("netpoll: (null): nk0 doesn't support polling, aborting")
        );
    }

    #[test]
    fn success_has_no_diagnosis_and_each_kernel_line_is_quoted_once() {
        let a = group(vec![rec(Outer, "eth0", 0, 1_000, 100, 0)]);
        assert!(diagnose(&a[0], &Context::default(), &mut KernelLog::default()).is_none());
        let a = group(vec![
            rec(Outer, "d0", 0, 1_000, 100, -89),
            rec(Outer, "d0", 0, 5_000, 100, -89),
        ]);
        let mut l = log(&[
            "netpoll: netconsole: no IP address for d0, aborting",
            "netpoll: netconsole: eth7 doesn't exist, aborting",
        ]);
        let first = diagnose(&a[0], &Context::default(), &mut l).unwrap();
        let second = diagnose(&a[1], &Context::default(), &mut l).unwrap();
        assert!(first.kernel_message.is_some());
        assert_eq!(second.kernel_message, None, "a line is never quoted twice");
    }

    #[test]
    fn every_code_round_trips() {
        for c in Cause::ALL {
            assert_eq!(Cause::parse(c.as_str()), Some(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for r in Remedy::ALL {
            assert_eq!(Remedy::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Cause::ALL.len(), 9);
        assert_eq!(Remedy::ALL.len(), 9);
    }
}
