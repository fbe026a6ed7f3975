use super::{patching::*, reenabling::*, shared::*, *};
use std::time::Duration;

use crate::model::{
    correlate::Attempt,
    diagnosis::Diagnosis,
    event::SetupRecord,
    remediation::{Action, Evidence, Outcome},
    send::SendSummary,
    target::{Change, TargetEvent, TargetState},
};

/// The outermost set-up record of a diagnosed failure (netconsole's, no remote known).
fn root_of(d: &Diagnosis) -> SetupRecord {
    rec(
        SetupFn::NetpollSetup,
        d.dev.as_deref().unwrap_or("eth0"),
        0,
        d.ts_ns,
        10,
        d.ret,
    )
}
use crate::model::{
    config::{PolicyAction, TargetStopped},
    correlate::tests::rec,
    diagnosis::Cause,
    event::SetupFn,
    policy::tests::diag_at as diag,
};

fn cfg() -> AgentConfig {
    AgentConfig {
        allowed_drivers: vec!["virtio_net".into()],
        missing_poll_controller: PolicyAction::Patch,
        max_attempts: 3,
        backoff: Duration::from_secs(2),
        verify_timeout: Duration::from_secs(10),
        ..AgentConfig::default()
    }
}

/// The failing eth0 as its event saw it.
fn virtio() -> Identity {
    Identity {
        ifindex: Some(2),
        driver: Some("virtio_net".into()),
    }
}

fn actions(notes: &[Note]) -> Vec<(Action, Outcome)> {
    notes.iter().map(|n| (n.action, n.result)).collect()
}

#[test]
fn patch_retry_verify_fixes_an_allowed_driver() {
    let d = diag(Cause::MissingPollController, 100);
    let (mut r, next) = Patching::begin(
        &root_of(&d),
        &d,
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    assert_eq!(next, PatchingStep::Patch);
    assert_eq!(
        r.patched(PatchOutcome::Patched {
            detail: "ops a -> b".into(),
            found: virtio()
        }),
        PatchingStep::Retry {
            attempt: 1,
            after: Duration::ZERO
        }
    );
    assert_eq!(
        r.retried(Ok("wrote 1 to enabled".into())),
        PatchingStep::Verify {
            attempt: 1,
            within: Duration::from_secs(10)
        }
    );
    assert_eq!(
        r.verified(Verified::Succeeded(200)),
        PatchingStep::Done(Handled::Fixed)
    );
    let notes = r.take_notes();
    assert_eq!(
        actions(&notes),
        [
            (Action::Decide, Outcome::Ok),
            (Action::Patch, Outcome::Ok),
            (Action::Retry, Outcome::Ok),
            (Action::Verify, Outcome::Ok)
        ]
    );
    assert_eq!(
        notes[0].detail,
        "driver virtio_net is allowed: patch, then retry"
    );
    assert_eq!(notes[2].attempt, Some(1));
    assert_eq!(notes[3].detail, "netpoll set-up on eth0 succeeded");
    // A set-up proves the set-up, nothing more; the other steps prove nothing.
    assert_eq!(notes[3].proved, [Evidence::Setup]);
    assert!(notes[..3].iter().all(|n| n.proved.is_empty()));
}

#[test]
fn other_causes_and_drivers_outside_the_allowlist_are_reported() {
    let (mut r, next) = Patching::begin(
        &root_of(&diag(Cause::NetpollDisabled, 1)),
        &diag(Cause::NetpollDisabled, 1),
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    assert_eq!(next, PatchingStep::Done(Handled::Unfixed));
    assert_eq!(
        actions(&r.take_notes()),
        [(Action::Decide, Outcome::Reported)]
    );
    let (mut r, next) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 1)),
        &diag(Cause::MissingPollController, 1),
        &Identity {
            driver: Some("ena".into()),
            ..virtio()
        },
        &cfg(),
        false,
        &Successes::default(),
    );
    assert_eq!(next, PatchingStep::Done(Handled::Unfixed));
    assert!(r.take_notes()[0].detail.contains("not in allowed_drivers"));
}

#[test]
fn a_dry_run_journals_what_it_would_do_and_changes_nothing() {
    let (mut r, next) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 1)),
        &diag(Cause::MissingPollController, 1),
        &virtio(),
        &cfg(),
        true,
        &Successes::default(),
    );
    assert_eq!(next, PatchingStep::Done(Handled::Unfixed));
    let notes = r.take_notes();
    assert_eq!(
        actions(&notes),
        [
            (Action::Decide, Outcome::Ok),
            (Action::Patch, Outcome::DryRun),
            (Action::Retry, Outcome::DryRun)
        ]
    );
    assert_eq!(
        notes[1].detail,
        "would patch eth0 with the default module path"
    );
}

/// A record of netconsole's set-up of the target sending to `remote` on `dev`.
fn target_rec(dev: &str, remote: &str, ts: u64, ret: i32) -> SetupRecord {
    let mut r = rec(SetupFn::NetpollSetup, dev, 0, ts, 10, ret);
    r.remote = Some(remote.into());
    r
}

/// #24: two configfs targets on eth0 failed; fixing the first marked eth0 fixed and
/// the second was "superseded" and never enabled. Each target is its own decision.
#[test]
fn a_success_of_one_target_does_not_supersede_another_on_the_same_device() {
    let mut ok = Successes::default();
    ok.note(&Attempt {
        root: target_rec("eth0", "10.0.0.1:6666", 500, 0),
        nested: vec![],
    });
    let d = diag(Cause::MissingPollController, 100);
    let other = target_rec("eth0", "10.0.0.2:6666", 100, -524);
    let (_, next) = Patching::begin(&other, &d, &virtio(), &cfg(), false, &ok);
    assert_eq!(next, PatchingStep::Patch, "the other target still fails");
    let same = target_rec("eth0", "10.0.0.1:6666", 100, -524);
    let (_, next) = Patching::begin(&same, &d, &virtio(), &cfg(), false, &ok);
    assert_eq!(
        next,
        PatchingStep::Done(Handled::Fixed),
        "that one was set up since"
    );
    // Verifying the second target's retry: the first one's set-up says nothing.
    let t = TargetOf::of(&other).unwrap();
    let first_ok = Output::Attempt(
        Box::new(Attempt {
            root: target_rec("eth0", "10.0.0.1:6666", 900, 0),
            nested: vec![],
        }),
        None,
    );
    assert_eq!(verification(&first_ok, "eth0", Some(&t), 0), None);
    let second_ok = Output::Attempt(
        Box::new(Attempt {
            root: target_rec("eth0", "10.0.0.2:6666", 901, 0),
            nested: vec![],
        }),
        None,
    );
    assert_eq!(
        verification(&second_ok, "eth0", Some(&t), 0),
        Some(Verified::Succeeded(901))
    );
}

/// #24: a vlan target (dev_name eth0.100) whose lower device eth0 failed: the patch
/// goes to eth0, the retry to the target named by its own device and remote.
#[test]
fn a_vlan_target_is_retried_by_its_own_device_and_remote() {
    let root = target_rec("eth0.100", "10.0.0.9:514", 100, -524);
    let mut d = diag(Cause::MissingPollController, 100);
    d.dev = Some("eth0".into());
    d.chain = vec!["eth0.100".into(), "eth0".into()];
    let (r, next) = Patching::begin(&root, &d, &virtio(), &cfg(), false, &Successes::default());
    assert_eq!(next, PatchingStep::Patch);
    assert_eq!(r.dev, "eth0");
    let t = r.target.unwrap();
    assert_eq!(
        (t.dev.as_deref(), t.remote.as_deref()),
        (Some("eth0.100"), Some("10.0.0.9:514"))
    );
}

#[test]
fn a_later_success_supersedes_an_older_failure() {
    let mut ok = Successes::default();
    ok.note(&Attempt {
        root: rec(SetupFn::NetpollSetup, "eth0", 0, 500, 10, 0),
        nested: vec![],
    });
    let (mut r, next) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 100)),
        &diag(Cause::MissingPollController, 100),
        &virtio(),
        &cfg(),
        false,
        &ok,
    );
    assert_eq!(next, PatchingStep::Done(Handled::Fixed));
    assert_eq!(
        actions(&r.take_notes()),
        [(Action::Decide, Outcome::Superseded)]
    );
    // A success before the failure does not.
    let (_, next) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 900)),
        &diag(Cause::MissingPollController, 900),
        &virtio(),
        &cfg(),
        false,
        &ok,
    );
    assert_eq!(next, PatchingStep::Patch);
}

#[test]
fn retries_back_off_doubling_until_the_attempts_run_out() {
    let (mut r, _) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 1)),
        &diag(Cause::MissingPollController, 1),
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    assert_eq!(
        r.patched(PatchOutcome::AlreadyPatched { found: virtio() }),
        PatchingStep::Retry {
            attempt: 1,
            after: Duration::ZERO
        }
    );
    assert_eq!(
        r.retried(Err("no target".into())),
        PatchingStep::Retry {
            attempt: 2,
            after: Duration::from_secs(2)
        }
    );
    assert!(matches!(
        r.retried(Ok("ran".into())),
        PatchingStep::Verify { attempt: 2, .. }
    ));
    assert_eq!(
        r.verified(Verified::Failed("missing_poll_controller".into())),
        PatchingStep::Retry {
            attempt: 3,
            after: Duration::from_secs(4)
        }
    );
    assert!(matches!(
        r.retried(Ok("ran".into())),
        PatchingStep::Verify { attempt: 3, .. }
    ));
    assert_eq!(
        r.verified(Verified::TimedOut),
        PatchingStep::Done(Handled::Unfixed)
    );
    let notes = r.take_notes();
    assert_eq!(notes[1].detail, "already patched");
    assert_eq!(
        notes.last().unwrap().detail,
        "no set-up on eth0 seen within 10s"
    );
    assert_eq!(
        notes.iter().filter(|n| n.action == Action::Retry).count(),
        3
    );
}

#[test]
fn backoff_doubles_up_to_a_cap() {
    let cfg = AgentConfig {
        max_attempts: 20,
        ..cfg()
    };
    let (mut r, _) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 1)),
        &diag(Cause::MissingPollController, 1),
        &virtio(),
        &cfg,
        false,
        &Successes::default(),
    );
    let mut next = r.patched(PatchOutcome::AlreadyPatched { found: virtio() });
    let mut waits = Vec::new();
    while let PatchingStep::Retry { after, .. } = next {
        waits.push(after.as_secs());
        next = r.retried(Err("no target".into()));
    }
    assert_eq!(waits.len(), 20);
    assert_eq!(waits[..10], [0, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
    assert!(waits[10..].iter().all(|w| *w == 600), "{waits:?}");
    // A configured backoff above the cap stays as configured.
    let cfg = AgentConfig {
        backoff: Duration::from_secs(900),
        ..cfg
    };
    let (mut r, _) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 1)),
        &diag(Cause::MissingPollController, 1),
        &virtio(),
        &cfg,
        false,
        &Successes::default(),
    );
    r.patched(PatchOutcome::AlreadyPatched { found: virtio() });
    assert_eq!(
        r.retried(Err("x".into())),
        PatchingStep::Retry {
            attempt: 2,
            after: Duration::from_secs(900)
        }
    );
    assert_eq!(
        r.retried(Err("x".into())),
        PatchingStep::Retry {
            attempt: 3,
            after: Duration::from_secs(900)
        }
    );
}

#[test]
fn a_failed_patch_ends_without_retrying() {
    let (mut r, _) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 1)),
        &diag(Cause::MissingPollController, 1),
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    assert_eq!(
        r.patched(PatchOutcome::Failed("eth0: refused".into())),
        PatchingStep::Done(Handled::Unfixed)
    );
    assert_eq!(
        actions(&r.take_notes())[1],
        (Action::Patch, Outcome::Failed)
    );
}

#[test]
fn the_first_set_up_on_the_device_verifies() {
    let ok = Output::Attempt(
        Box::new(Attempt {
            root: rec(SetupFn::NetpollSetup, "eth0", 0, 7, 1, 0),
            nested: vec![],
        }),
        None,
    );
    let other = Output::Attempt(
        Box::new(Attempt {
            root: rec(SetupFn::NetpollSetup, "eth1", 0, 8, 1, 0),
            nested: vec![],
        }),
        None,
    );
    assert_eq!(
        verification(&ok, "eth0", None, 0),
        Some(Verified::Succeeded(7))
    );
    assert_eq!(
        verification(&ok, "eth0", None, 7),
        Some(Verified::Succeeded(7))
    );
    assert_eq!(verification(&other, "eth0", None, 0), None);
    assert_eq!(verification(&Output::Lost(1), "eth0", None, 0), None);
    let failed = Output::Attempt(
        Box::new(Attempt {
            root: rec(SetupFn::NetpollSetup, "eth0", 0, 9, 1, -524),
            nested: vec![],
        }),
        Some(Box::new(diag(Cause::MissingPollController, 9))),
    );
    assert_eq!(
        verification(&failed, "eth0", None, 0),
        Some(Verified::Failed("missing_poll_controller".into()))
    );
    // A failure from before the retry (seen on 4.14: busybox modprobe's second try of
    // the trigger arrived while the agent verified) is not the retry's result.
    assert_eq!(verification(&failed, "eth0", None, 10), None);
}

fn stop(event: Change, cause: &'static str) -> TargetEvent {
    TargetEvent {
        kind: "target",
        ts_ns: 1_000,
        target: "netconsole@10.0.2.2:6666".into(),
        event,
        cause,
        owner: Some("netconsole".into()),
        dev: Some("eth1.100".into()),
        remote: Some("10.0.2.2:6666".into()),
        pid: 7,
        comm: Some("ip".into()),
        netpoll_addr: 0x1000,
    }
}

fn reenabling() -> AgentConfig {
    AgentConfig {
        target_stopped: TargetStopped::Reenable,
        device_wait: Duration::from_secs(30),
        ..cfg()
    }
}

fn sent(dev: &str, ifindex: i32, sent: u64) -> SendSummary {
    let mut s = crate::model::send::summarize(&[], 0);
    s.dev = Some(dev.into());
    s.ifindex = Some(ifindex);
    s.sent = sent;
    s
}

/// #23 item 5: where the kernel resumes targets itself (7.3+), the agent waits for the
/// device and the kernel's set-up, reports them, and never re-enables.
#[test]
fn where_the_kernel_resumes_targets_the_agent_only_waits_and_reports() {
    let e = stop(Change::Stopped, "device_unregistered");
    let (mut r, next) =
        Reenabling::begin(&e, None, &reenabling(), false, Resume::ByKernel).unwrap();
    assert!(matches!(next, ReenablingStep::AwaitDevice { .. }));
    let back = DeviceBack::Present {
        ifindex: Some(9),
        waited: Duration::from_millis(300),
    };
    assert_eq!(
        r.device_back(back.clone(), Duration::from_secs(30)),
        ReenablingStep::VerifySetup {
            attempt: 0,
            within: Duration::from_secs(10)
        }
    );
    assert_eq!(
        r.setup_verified(Verified::Succeeded(2_000)),
        ReenablingStep::VerifySend {
            within: Duration::from_secs(10)
        }
    );
    assert_eq!(
        r.send_verified(SendCheck::Grew { from: 4, to: 6 }),
        ReenablingStep::Done(Handled::Fixed)
    );
    let notes = r.take_notes();
    assert!(
        !actions(&notes).iter().any(|(a, _)| *a == Action::Reenable),
        "{notes:?}"
    );
    assert!(
        notes[0].detail.contains("resumes it itself"),
        "{}",
        notes[0].detail
    );
    assert_eq!(
        notes[2].detail,
        "netconsole@10.0.2.2:6666 resumed by the kernel on eth1.100"
    );
    // The kernel did not resume it: reported, never retried by the agent.
    let (mut r, _) = Reenabling::begin(&e, None, &reenabling(), false, Resume::ByKernel).unwrap();
    r.device_back(back, Duration::from_secs(30));
    assert_eq!(
        r.setup_verified(Verified::TimedOut),
        ReenablingStep::Done(Handled::Unfixed)
    );
    let notes = r.take_notes();
    assert!(!actions(&notes).iter().any(|(a, _)| *a == Action::Reenable));
    assert!(notes.last().unwrap().detail.contains("did not resume"));
    // Resumed while the agent waited for the device: proved, then its sends checked.
    let (mut r, _) = Reenabling::begin(&e, None, &reenabling(), false, Resume::ByKernel).unwrap();
    assert_eq!(
        r.device_back(DeviceBack::TargetUp, Duration::from_secs(30)),
        ReenablingStep::VerifySend {
            within: Duration::from_secs(10)
        }
    );
    // A resume is a change that needs nothing.
    assert!(
        Reenabling::begin(
            &stop(Change::Resumed, "netconsole_resume"),
            None,
            &reenabling(),
            false,
            Resume::ByKernel
        )
        .is_none()
    );
}

#[test]
fn a_stopped_target_is_waited_for_reenabled_and_verified() {
    let e = stop(Change::Stopped, "device_unregistered");
    let (mut r, next) = Reenabling::begin(&e, None, &reenabling(), false, Resume::ByAgent).unwrap();
    assert_eq!(
        next,
        ReenablingStep::AwaitDevice {
            dev: "eth1.100".into(),
            within: Duration::from_secs(30)
        }
    );
    let back = DeviceBack::Present {
        ifindex: Some(9),
        waited: Duration::from_millis(3200),
    };
    assert_eq!(
        r.device_back(back, Duration::from_secs(30)),
        ReenablingStep::Reenable {
            attempt: 1,
            after: Duration::ZERO
        }
    );
    assert_eq!(r.ifindex, Some(9));
    assert_eq!(
        r.reenabled(Ok("wrote 1 to t1/enabled".into())),
        ReenablingStep::VerifySetup {
            attempt: 1,
            within: Duration::from_secs(10)
        }
    );
    assert_eq!(
        r.setup_verified(Verified::Succeeded(2_000)),
        ReenablingStep::VerifySend {
            within: Duration::from_secs(10)
        }
    );
    assert_eq!(
        r.send_verified(SendCheck::Grew { from: 4, to: 6 }),
        ReenablingStep::Done(Handled::Fixed)
    );
    let notes = r.take_notes();
    assert_eq!(
        actions(&notes),
        [
            (Action::Decide, Outcome::Ok),
            (Action::WaitDevice, Outcome::Ok),
            (Action::Reenable, Outcome::Ok),
            (Action::Verify, Outcome::Ok),
            (Action::VerifySend, Outcome::Ok)
        ]
    );
    assert_eq!(notes[3].proved, [Evidence::Setup]);
    assert_eq!(notes[4].proved, [Evidence::Setup, Evidence::Send]);
    assert_eq!(
        notes[0].detail,
        "target netconsole@10.0.2.2:6666 on eth1.100 stopped (device_unregistered): re-enable it once eth1.100 is back"
    );
    assert_eq!(notes[1].detail, "eth1.100 is back (ifindex 9) after 3.2s");
    assert_eq!(
        notes[3].detail,
        "netconsole@10.0.2.2:6666 set up again on eth1.100"
    );
    assert_eq!(
        notes[4].detail,
        "eth1.100 sent 2 skb(s) after the marker (4 -> 6)"
    );
    assert_eq!((notes[2].attempt, notes[4].attempt), (Some(1), Some(1)));
    // A device event (joined a master) is reported only: on 6.12 a target disabled by
    // its owner is torn down from netconsole's notifier and looks the same.
    let (mut r, next) = Reenabling::begin(
        &stop(Change::Stopped, "device_event"),
        None,
        &reenabling(),
        false,
        Resume::ByAgent,
    )
    .unwrap();
    assert_eq!(next, ReenablingStep::Done(Handled::Unfixed));
    let n = r.take_notes().pop().unwrap();
    assert_eq!((n.action, n.result), (Action::Decide, Outcome::Reported));
    assert!(
        n.detail
            .contains("only a target whose device unregistered is re-enabled"),
        "{}",
        n.detail
    );
}

#[test]
fn a_stop_is_only_reported_by_default() {
    let (mut r, next) = Reenabling::begin(
        &stop(Change::Stopped, "device_unregistered"),
        None,
        &cfg(),
        false,
        Resume::ByAgent,
    )
    .unwrap();
    assert_eq!(next, ReenablingStep::Done(Handled::Unfixed));
    let notes = r.take_notes();
    assert_eq!(actions(&notes), [(Action::Decide, Outcome::Reported)]);
    assert!(
        notes[0]
            .detail
            .ends_with("policy.target_stopped is \"report\""),
        "{}",
        notes[0].detail
    );
    // Disables and enables are none of the reporting agent's business.
    assert!(
        Reenabling::begin(
            &stop(Change::Disabled, "disabled"),
            None,
            &cfg(),
            false,
            Resume::ByAgent
        )
        .is_none()
    );
    assert!(
        Reenabling::begin(
            &stop(Change::ReEnabled, "netpoll_setup"),
            None,
            &reenabling(),
            false,
            Resume::ByAgent
        )
        .is_none()
    );
    // A dry run says what it would do.
    let (mut r, next) = Reenabling::begin(
        &stop(Change::Stopped, "device_unregistered"),
        None,
        &reenabling(),
        true,
        Resume::ByAgent,
    )
    .unwrap();
    assert_eq!(next, ReenablingStep::Done(Handled::Unfixed));
    assert_eq!(
        actions(&r.take_notes()),
        [
            (Action::Decide, Outcome::Ok),
            (Action::WaitDevice, Outcome::DryRun),
            (Action::Reenable, Outcome::DryRun)
        ]
    );
}

#[test]
fn a_device_that_never_returns_times_out() {
    let (mut r, _) = Reenabling::begin(
        &stop(Change::Stopped, "device_unregistered"),
        None,
        &reenabling(),
        false,
        Resume::ByAgent,
    )
    .unwrap();
    assert_eq!(
        r.device_back(DeviceBack::TimedOut, Duration::from_secs(30)),
        ReenablingStep::Done(Handled::Unfixed)
    );
    let n = r.take_notes().pop().unwrap();
    assert_eq!(
        (n.action, n.result),
        (Action::WaitDevice, Outcome::TimedOut)
    );
    assert_eq!(
        n.detail,
        "eth1.100 did not come back within 30s: netconsole@10.0.2.2:6666 left stopped"
    );
    // Set up again by someone else while the agent waited: nothing left to do.
    let (mut r, _) = Reenabling::begin(
        &stop(Change::Stopped, "device_unregistered"),
        None,
        &reenabling(),
        false,
        Resume::ByAgent,
    )
    .unwrap();
    assert_eq!(
        r.device_back(DeviceBack::TargetUp, Duration::from_secs(30)),
        ReenablingStep::Done(Handled::Fixed)
    );
    assert_eq!(
        actions(&r.take_notes())[1],
        (Action::WaitDevice, Outcome::Superseded)
    );
}

#[test]
fn a_target_disabled_by_its_owner_is_never_reenabled() {
    let (mut r, next) = Reenabling::begin(
        &stop(Change::Disabled, "disabled"),
        None,
        &reenabling(),
        false,
        Resume::ByAgent,
    )
    .unwrap();
    assert_eq!(next, ReenablingStep::Done(Handled::Fixed));
    let notes = r.take_notes();
    assert_eq!(actions(&notes), [(Action::Decide, Outcome::Reported)]);
    assert_eq!(
        notes[0].detail,
        "target netconsole@10.0.2.2:6666 on eth1.100 disabled (disabled): disabled by its owner, left disabled"
    );
}

#[test]
fn a_stop_already_followed_by_a_set_up_is_superseded() {
    let e = stop(Change::Stopped, "device_unregistered");
    let up = |since_ns, last| TargetState {
        target: e.target.clone(),
        dev: e.dev.clone(),
        remote: e.remote.clone(),
        last,
        cause: "netpoll_setup",
        since_ns,
        netpoll_addr: 0x1000,
        netpolls_up: Vec::new(),
    };
    let (mut r, next) = Reenabling::begin(
        &e,
        Some(&up(2_000, Change::ReEnabled)),
        &reenabling(),
        false,
        Resume::ByAgent,
    )
    .unwrap();
    assert_eq!(next, ReenablingStep::Done(Handled::Fixed));
    assert_eq!(
        actions(&r.take_notes()),
        [(Action::Decide, Outcome::Superseded)]
    );
    // Still down, or up only before the stop: waited for.
    for s in [up(2_000, Change::Stopped), up(500, Change::Enabled)] {
        let (_, next) =
            Reenabling::begin(&e, Some(&s), &reenabling(), false, Resume::ByAgent).unwrap();
        assert!(matches!(next, ReenablingStep::AwaitDevice { .. }), "{s:?}");
    }
}

#[test]
fn failed_reenables_back_off_until_the_attempts_run_out() {
    let (mut r, _) = Reenabling::begin(
        &stop(Change::Stopped, "device_unregistered"),
        None,
        &reenabling(),
        false,
        Resume::ByAgent,
    )
    .unwrap();
    r.device_back(
        DeviceBack::Present {
            ifindex: None,
            waited: Duration::ZERO,
        },
        Duration::from_secs(30),
    );
    assert_eq!(
        r.reenabled(Err("no target".into())),
        ReenablingStep::Reenable {
            attempt: 2,
            after: Duration::from_secs(2)
        }
    );
    assert!(matches!(
        r.reenabled(Ok("x".into())),
        ReenablingStep::VerifySetup { attempt: 2, .. }
    ));
    assert_eq!(
        r.setup_verified(Verified::Failed("no_ip_address".into())),
        ReenablingStep::Reenable {
            attempt: 3,
            after: Duration::from_secs(4)
        }
    );
    assert_eq!(
        r.reenable_timed_out(
            "modprobe netconsole",
            Duration::from_secs(5),
            KilledBy::Term
        ),
        ReenablingStep::Done(Handled::Unfixed)
    );
    let notes = r.take_notes();
    let last = notes.last().unwrap();
    assert_eq!(
        (last.action, last.result, last.attempt),
        (Action::Reenable, Outcome::TimedOut, Some(3))
    );
    assert_eq!(
        notes[notes.len() - 2].detail,
        "set-up of netconsole@10.0.2.2:6666 on eth1.100 failed: no_ip_address"
    );
    // A target that sends nothing after its set-up is not fixed; an unmade check
    // leaves the set-up's verdict.
    for (check, handled, outcome) in [
        (
            SendCheck::Flat { sent: 4 },
            Handled::Unfixed,
            Outcome::Failed,
        ),
        (SendCheck::NoStats, Handled::Fixed, Outcome::TimedOut),
        (
            SendCheck::Marker("EPERM".into()),
            Handled::Fixed,
            Outcome::Failed,
        ),
    ] {
        let (mut r, _) = Reenabling::begin(
            &stop(Change::Stopped, "device_unregistered"),
            None,
            &reenabling(),
            false,
            Resume::ByAgent,
        )
        .unwrap();
        assert_eq!(
            r.send_verified(check.clone()),
            ReenablingStep::Done(handled),
            "{check:?}"
        );
        assert_eq!(actions(&r.take_notes())[1], (Action::VerifySend, outcome));
    }
}

#[test]
fn the_target_s_next_enable_verifies_a_reenable() {
    let label = "netconsole@10.0.2.2:6666";
    let up = Output::Target(TargetEvent {
        ts_ns: 3_000,
        event: Change::ReEnabled,
        cause: "netpoll_setup",
        ..stop(Change::Stopped, "")
    });
    assert_eq!(
        target_verification(&up, label, "eth1.100", 2_000),
        Some(Verified::Succeeded(3_000))
    );
    assert_eq!(
        target_verification(&up, label, "eth1.100", 4_000),
        None,
        "before the re-enable"
    );
    assert_eq!(
        target_verification(&up, "netconsole@10.0.2.3:6666", "eth1.100", 0),
        None,
        "another target"
    );
    assert!(target_up(&up, label, 1_000) && !target_up(&up, label, 5_000));
    let down = Output::Target(stop(Change::Stopped, "device_unregistered"));
    assert_eq!(target_verification(&down, label, "eth1.100", 0), None);
    let failed = Output::Attempt(
        Box::new(Attempt {
            root: rec(SetupFn::NetpollSetup, "eth1.100", 0, 9, 1, -99),
            nested: vec![],
        }),
        Some(Box::new(diag(Cause::NoIpAddress, 9))),
    );
    assert_eq!(
        target_verification(&failed, label, "eth1.100", 0),
        Some(Verified::Failed("no_ip_address".into()))
    );
    // A success is verified by the target's event, which follows the attempt.
    let ok = Output::Attempt(
        Box::new(Attempt {
            root: rec(SetupFn::NetpollSetup, "eth1.100", 0, 9, 1, 0),
            nested: vec![],
        }),
        None,
    );
    assert_eq!(target_verification(&ok, label, "eth1.100", 0), None);
}

#[test]
fn sends_are_seen_by_the_growth_of_the_device_s_counters() {
    let mut w = SendWatch::new("eth1.100");
    assert!(!w.ready());
    assert_eq!(w.flat(), SendCheck::NoStats);
    // Before the marker: the old device's counters (ifindex 5) and another device.
    assert_eq!(
        w.observe(&[sent("eth1.100", 5, 40), sent("eth0", 2, 7)]),
        None
    );
    assert!(w.ready());
    assert_eq!(
        w.observe(&[sent("eth1.100", 5, 40), sent("eth0", 2, 9)]),
        None,
        "another device sent"
    );
    assert_eq!(w.flat(), SendCheck::Flat { sent: 40 });
    // The re-created device's entry is new: counted from 0.
    assert_eq!(
        w.observe(&[sent("eth1.100", 5, 40), sent("eth1.100", 9, 2)]),
        Some(SendCheck::Grew { from: 0, to: 2 })
    );
    let mut w = SendWatch::new("eth1.100");
    w.observe(&[sent("eth1.100", 9, 3)]);
    assert_eq!(
        w.observe(&[sent("eth1.100", 9, 5)]),
        Some(SendCheck::Grew { from: 3, to: 5 })
    );
}

#[test]
fn the_marker_is_urgent_enough_for_the_consoles() {
    assert_eq!(marker_level("7\t4\t1\t7\n"), Some(5));
    // `quiet`: only levels 0 to 3 reach a console.
    assert_eq!(marker_level("4\t4\t1\t7\n"), Some(3));
    assert_eq!(marker_level("2 4 1 7"), Some(1));
    assert_eq!(marker_level("1\t4\t1\t7"), None);
    assert_eq!(
        marker_level(""),
        Some(5),
        "unreadable: the kernel's default console level lets a notice through"
    );
}

#[test]
fn the_backlog_keeps_target_stops_for_the_agent() {
    let mut b = Backlog::default();
    b.push(Output::Target(stop(Change::Enabled, "netpoll_setup")));
    assert!(b.is_empty());
    b.push(Output::Target(stop(Change::Stopped, "device_unregistered")));
    b.push(Output::Target(stop(Change::Disabled, "disabled")));
    assert!(matches!(b.pop(), Some(Output::Target(t)) if t.event == Change::Stopped));
    assert!(matches!(b.pop(), Some(Output::Target(t)) if t.event == Change::Disabled));
}

#[test]
fn needs_follow_the_mode_and_the_policy() {
    // The default policy reports everything: it can never load a module.
    let report = AgentConfig::default();
    assert_eq!(
        needs(&report, false, false, Resume::ByAgent),
        [Need::ReadKernelLog]
    );
    let patch = cfg();
    assert_eq!(patch.missing_poll_controller, PolicyAction::Patch);
    assert_eq!(
        needs(&patch, true, false, Resume::ByAgent),
        [Need::ReadKernelLog]
    );
    assert_eq!(
        needs(&patch, false, false, Resume::ByAgent),
        [Need::LoadModules, Need::ReadKernelLog]
    );
    assert_eq!(
        needs(&patch, true, true, Resume::ByAgent),
        [Need::ReadKernelLog, Need::ReadBpfMaps]
    );
    // A re-enable may fall back to retry.command (which reloads netconsole) unless it
    // only writes configfs.
    let mut reenable = AgentConfig {
        target_stopped: TargetStopped::Reenable,
        retry_command: vec!["/sbin/modprobe".into(), "netconsole".into()],
        ..AgentConfig::default()
    };
    assert_eq!(
        needs(&reenable, false, true, Resume::ByAgent),
        [Need::LoadModules, Need::ReadKernelLog, Need::ReadBpfMaps]
    );
    reenable.retry_method = RetryMethod::Configfs;
    assert_eq!(
        needs(&reenable, false, true, Resume::ByAgent),
        [Need::ReadKernelLog, Need::ReadBpfMaps]
    );
}

#[test]
fn a_reenable_without_a_retry_command_cannot_load_modules() {
    // auto falls back to retry.command only when there is one: none, nothing to load with.
    let reenable = AgentConfig {
        target_stopped: TargetStopped::Reenable,
        ..AgentConfig::default()
    };
    assert!(reenable.retry_command.is_empty());
    assert_eq!(
        needs(&reenable, false, false, Resume::ByAgent),
        [Need::ReadKernelLog]
    );
}

#[test]
fn a_reenable_where_the_kernel_resumes_targets_cannot_load_modules() {
    // 7.3+: the agent waits for the kernel's resume and never retries.
    let mut reenable = AgentConfig {
        target_stopped: TargetStopped::Reenable,
        retry_command: vec!["/sbin/modprobe".into(), "netconsole".into()],
        ..AgentConfig::default()
    };
    assert_eq!(
        needs(&reenable, false, false, Resume::ByKernel),
        [Need::ReadKernelLog]
    );
    // The patch still loads a module.
    reenable.missing_poll_controller = PolicyAction::Patch;
    assert_eq!(
        needs(&reenable, false, false, Resume::ByKernel),
        [Need::LoadModules, Need::ReadKernelLog]
    );
}

#[test]
fn a_device_renamed_and_recreated_before_the_patch_is_unpatched() {
    let d = diag(Cause::MissingPollController, 100);
    // The name now stands for a new device (a new ifindex; here a dummy).
    let new = Identity {
        ifindex: Some(9),
        driver: Some("dummy".into()),
    };
    let (mut r, _) = Patching::begin(
        &root_of(&d),
        &d,
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    assert_eq!(
        r.patched(PatchOutcome::Patched {
            detail: "ops a -> b".into(),
            found: new.clone()
        }),
        PatchingStep::Unpatch
    );
    assert_eq!(
        r.unpatched(Ok("restored ops a".into())),
        PatchingStep::Done(Handled::Unfixed)
    );
    let notes = r.take_notes();
    assert_eq!(
        actions(&notes),
        [
            (Action::Decide, Outcome::Ok),
            (Action::Patch, Outcome::WrongDevice),
            (Action::Unpatch, Outcome::Ok)
        ]
    );
    assert_eq!(
        notes[1].detail,
        "eth0 is now ifindex 9, driver dummy but the failure was on ifindex 2, driver virtio_net: renamed or \
         re-created since, not the device that failed; unpatching it"
    );
    // Same driver, new ifindex: still another device.
    let (mut r, _) = Patching::begin(
        &root_of(&d),
        &d,
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    let found = Identity {
        ifindex: Some(3),
        ..virtio()
    };
    assert_eq!(
        r.patched(PatchOutcome::Patched {
            detail: String::new(),
            found: found.clone()
        }),
        PatchingStep::Unpatch
    );
    // Patched by someone else before: reported, never undone by the agent.
    let (mut r, _) = Patching::begin(
        &root_of(&d),
        &d,
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    assert_eq!(
        r.patched(PatchOutcome::AlreadyPatched { found }),
        PatchingStep::Done(Handled::Unfixed)
    );
    assert!(
        r.take_notes()[1]
            .detail
            .ends_with("it was already patched, left as it is")
    );
}

#[test]
fn identities_match_on_every_fact_both_sides_know() {
    let unknown = Identity::default();
    assert!(virtio().matches(&virtio()));
    assert!(unknown.matches(&virtio()) && virtio().matches(&unknown));
    assert!(!virtio().matches(&Identity {
        ifindex: Some(3),
        ..virtio()
    }));
    assert!(!virtio().matches(&Identity {
        driver: Some("dummy".into()),
        ..virtio()
    }));
    assert!(
        Identity {
            ifindex: None,
            ..virtio()
        }
        .matches(&Identity {
            ifindex: Some(7),
            ..virtio()
        })
    );
    assert_eq!(unknown.to_string(), "ifindex ?, driver ?");
}

#[test]
fn a_retry_command_past_its_timeout_is_a_failed_attempt_and_journaled() {
    let (mut r, _) = Patching::begin(
        &root_of(&diag(Cause::MissingPollController, 1)),
        &diag(Cause::MissingPollController, 1),
        &virtio(),
        &cfg(),
        false,
        &Successes::default(),
    );
    r.patched(PatchOutcome::AlreadyPatched { found: virtio() });
    let next = r.retry_timed_out("sleep 100", Duration::from_secs(3), KilledBy::Kill);
    assert_eq!(
        next,
        PatchingStep::Retry {
            attempt: 2,
            after: Duration::from_secs(2)
        }
    );
    let n = r.take_notes().pop().unwrap();
    assert_eq!(
        (n.action, n.result, n.attempt),
        (Action::Retry, Outcome::TimedOut, Some(1))
    );
    assert_eq!(
        n.detail,
        "sleep 100 ran past retry.timeout (3s): killed its process group (SIGKILL)"
    );
    let n = killed_on_stop("sleep 100", KilledBy::Term, 2);
    assert_eq!(
        (n.action, n.result, n.attempt),
        (Action::Retry, Outcome::Killed, Some(2))
    );
    assert!(n.detail.contains("(SIGTERM)"), "{}", n.detail);
}

#[test]
fn the_backlog_keeps_the_newest_attempts_and_counts_the_rest() {
    let attempt = |ts| {
        Output::Attempt(
            Box::new(Attempt {
                root: rec(SetupFn::NetpollSetup, "eth0", 0, ts, 1, 0),
                nested: vec![],
            }),
            None,
        )
    };
    let mut b = Backlog::default();
    b.push(Output::Lost(3));
    b.push(Output::Warning("x".into()));
    assert!(b.is_empty());
    for ts in 0..(MAX_BACKLOG as u64 + 10) {
        b.push(attempt(ts));
    }
    assert_eq!(b.take_dropped(), 10);
    assert_eq!(b.take_dropped(), 0);
    let Some(Output::Attempt(first, _)) = b.pop() else {
        panic!("an attempt")
    };
    assert_eq!(first.root.ts_ns, 10);
    let mut n = 1;
    while b.pop().is_some() {
        n += 1;
    }
    assert_eq!(n, MAX_BACKLOG);
}
