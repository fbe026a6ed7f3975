//! `netpoll-trace offsets`: the struct offsets the probes would use, and their source.

use crate::cli::outln;
use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value, json};

use crate::{
    cli::exit::Exit,
    kernel::{host, offsets},
};

pub fn run(json: bool, btf: Option<&Path>, object: Option<&Path>) -> Result<Exit> {
    let mut r = offsets::resolve_sources(btf, object)?;
    // 7.3+: struct netpoll lost the target's addresses; netconsole's target has them
    // (module BTF), and where its functions take the target, its np is needed too.
    if r.source.is_some()
        && r.config.flags & netpoll_trace_common::config_flags::NP_REMOTE == 0
        && let Some(note) = offsets::netconsole_target::resolve(&mut r, btf)
    {
        r.notes.push(note);
    }
    let fields = offsets::fields(&r.config);
    let hint = r
        .source
        .is_none()
        .then(|| offsets::reduced_hint(host::release().unwrap_or("$(uname -r)")));
    if json {
        outln!(
            "{}",
            serde_json::to_string(&report(&r, &fields, hint.as_deref()))?
        );
    } else {
        for n in &r.notes {
            outln!("note: {n}");
        }
        match &r.source {
            Some(s) => outln!("offsets from {s}"),
            None => outln!(
                "offsets from nowhere: reduced mode ({})",
                hint.as_deref().unwrap_or_default()
            ),
        }
        for (name, value) in &fields {
            outln!(
                "  {name:<36} {}",
                value.map_or("unknown".to_string(), |v| v.to_string())
            );
        }
        if let Some(line) = r.describe_missing().filter(|_| r.source.is_some()) {
            outln!("{line}");
        }
    }
    Ok(if r.missing.is_empty() {
        Exit::Ok
    } else {
        Exit::Runtime
    })
}

/// The JSON object: `source` (kernel_btf, btf_file, btf_archive, headers, or null), `path`,
/// `detail` (archive member, the release the headers were for, or "cached facts, PATH"),
/// `cached` (whether the kernel's BTF facts came from the cache), `kernel`, `offsets`
/// (each name with its value or null), `missing`, `notes`, and `hint` in reduced mode.
fn report(r: &offsets::Resolved, fields: &[(&str, Option<u64>)], hint: Option<&str>) -> Value {
    let values: Map<String, Value> = fields
        .iter()
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    json!({
        "source": r.source.as_ref().map(|s| s.kind.name()),
        "path": r.source.as_ref().map(|s| s.path.display().to_string()),
        "detail": r.source.as_ref().and_then(|s| s.detail.clone()),
        "cached": r.cached.is_some(),
        "kernel": host::release(),
        "offsets": values,
        "missing": r.missing,
        "notes": r.notes,
        "hint": hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::offsets::{Resolved, Source, SourceKind};

    #[test]
    fn json_names_the_source_and_every_offset() {
        let mut r = Resolved::default();
        r.config.flags = netpoll_trace_common::config_flags::DEV_NAME;
        r.config.dev_name = 264;
        r.missing = vec!["net_device.ifindex"];
        r.source = Some(Source {
            kind: SourceKind::Headers,
            path: "/o.o".into(),
            detail: Some("6.1.0".into()),
        });
        let v = report(&r, &offsets::fields(&r.config), None);
        assert_eq!(v["source"], "headers");
        assert_eq!(v["path"], "/o.o");
        assert_eq!(v["detail"], "6.1.0");
        assert_eq!(v["offsets"]["net_device.name"], 264);
        assert_eq!(v["offsets"]["net_device.ifindex"], Value::Null);
        assert_eq!(v["offsets"].as_object().unwrap().len(), 21);
        assert_eq!(v["missing"][0], "net_device.ifindex");
        assert_eq!(v["cached"], false);
        let reduced = report(&Resolved::reduced(vec![]), &[], Some("provide one of"));
        assert_eq!(
            (reduced["source"].clone(), reduced["hint"].clone()),
            (Value::Null, json!("provide one of"))
        );
    }
}
