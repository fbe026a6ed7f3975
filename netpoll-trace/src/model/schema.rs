//! The JSON-lines contract (docs/contract.md section 4) as data: the fields every object
//! of each `type` must carry. Our own output is checked against it in the lab
//! (`netpoll-trace schema-check FILE`), and tests/contract.rs checks this table against
//! the contract's, so neither can drift silently.

use anyhow::{Result, bail};
use serde_json::Value;

use super::event::SetupFn;

/// Fields every object has.
pub const COMMON: &[&str] = &["type", "ts_ns"];

/// Each `type` and the fields every object of it carries (the contract's "yes" rows).
pub const REQUIRED: &[(&str, &[&str])] = &[
    (
        "setup",
        &[
            "fn",
            "netpoll",
            "dev",
            "ifindex",
            "ret",
            "errno",
            "depth",
            "duration_ns",
            "pid",
            "comm",
            "driver",
            "ops_symbol",
            "ops_module",
            "has_poll_controller",
            "has_netpoll_setup",
            "netpoll_disabled",
        ],
    ),
    ("poll", &["dev", "count"]),
    (
        "send",
        &[
            "dev",
            "messages",
            "sent",
            "deferred",
            "dropped",
            "dropped_by",
            "histogram",
        ],
    ),
    ("send_drop", &["dev", "reason"]),
    ("slow_send", &["dev", "duration_ns"]),
    ("target", &["target", "event", "cause", "dev", "remote"]),
    (
        "diagnosis",
        &[
            "dev",
            "cause",
            "remedies",
            "chain",
            "explanation",
            "kernel_message",
        ],
    ),
    ("remediation", &["dev", "action", "result", "detail"]),
    (
        "attached",
        &[
            "functions",
            "skipped",
            "deferred",
            "attach_ms",
            "after_ready_ms",
            "error",
        ],
    ),
    // Flight recorder dumps (extensions of the contract).
    ("counter", &["dev", "fn", "ret", "errno", "count"]),
    (
        "recorder",
        &[
            "pin_dir",
            "schema",
            "ring_size",
            "recorded",
            "kept",
            "overwritten",
            "unrecorded",
            "missing_seqs",
        ],
    ),
];

/// Types whose objects carry at least one of these fields (the contract's "one of" rows):
/// a `poll` object is a device's statistics or one slow call.
pub const ONE_OF: &[(&str, &[&str])] = &[("poll", &["histogram", "duration_ns"])];

/// Checks one line; the error names the line's type and the missing field.
pub fn check_line(line: &str) -> Result<&'static str> {
    let v: Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("not JSON ({e})"))?;
    let Some(obj) = v.as_object() else {
        bail!("not a JSON object")
    };
    for f in COMMON {
        if !obj.contains_key(*f) {
            bail!("missing field `{f}`");
        }
    }
    let kind = obj["type"].as_str().unwrap_or_default();
    let Some(&(kind, fields)) = REQUIRED.iter().find(|(k, _)| *k == kind) else {
        bail!("unknown type `{kind}`")
    };
    for f in fields {
        if !obj.contains_key(*f) {
            bail!("{kind} object without field `{f}`");
        }
    }
    for (_, any) in ONE_OF.iter().filter(|(k, _)| *k == kind) {
        if !any.iter().any(|f| obj.contains_key(*f)) {
            let named: Vec<String> = any.iter().map(|f| format!("`{f}`")).collect();
            bail!("{kind} object with none of {}", named.join(", "));
        }
    }
    if kind == "setup"
        && !SetupFn::ALL
            .iter()
            .any(|f| obj["fn"].as_str() == Some(f.as_str()))
    {
        bail!("setup object with unknown fn {}", obj["fn"]);
    }
    Ok(kind)
}

/// Checks every non-empty line of `text`; returns how many objects of each type.
pub fn check_text(text: &str) -> Result<Vec<(&'static str, usize)>> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let kind = check_line(line).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    if counts.is_empty() {
        bail!("no JSON objects");
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::correlate::tests::rec;

    #[test]
    fn our_setup_and_diagnosis_objects_satisfy_the_contract() {
        let r = rec(SetupFn::NetpollSetup, "d0", 0, 1, 1, -89);
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(check_line(&line).unwrap(), "setup");
        let attempt = &crate::model::correlate::group(vec![r])[0];
        let d = crate::model::diagnosis::diagnose(
            attempt,
            &Default::default(),
            &mut Default::default(),
        )
        .unwrap();
        assert_eq!(
            check_line(&serde_json::to_string(&d).unwrap()).unwrap(),
            "diagnosis"
        );
    }

    #[test]
    fn a_missing_field_or_unknown_type_is_named() {
        let e = check_line(r#"{"type":"setup","ts_ns":1,"fn":"netpoll_setup"}"#).unwrap_err();
        assert!(e.to_string().contains("`netpoll`"), "{e}");
        let e = check_line(r#"{"type":"bogus","ts_ns":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown type"));
        let e = check_line(r#"{"type":"poll","ts_ns":1,"dev":"eth0","count":3}"#).unwrap_err();
        assert!(e.to_string().contains("histogram"));
        assert!(check_text("").is_err());
        let e = check_text(
            "{\"type\":\"poll\",\"ts_ns\":1,\"dev\":null,\"count\":0,\"histogram\":[]}\nnope\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("line 2"), "{e}");
    }
}
