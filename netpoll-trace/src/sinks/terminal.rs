//! Renders set-up records for people (one line each) and machines (JSON lines).

use crate::event::SetupRecord;

/// One terminal line; nested calls are indented by depth so a bond's slaves sit
/// under it.
pub fn human_line(r: &SetupRecord, since_ns: u64) -> String {
    let rel = r.ts_ns.saturating_sub(since_ns) as f64 / 1e9;
    let indent = "  ".repeat(r.depth.min(8) as usize);
    let result = match r.errno {
        _ if r.ret == 0 => "ok".to_string(),
        Some(name) => format!("-{name}"),
        None => r.ret.to_string(),
    };
    let mut line = format!(
        "+{rel:8.3}s {indent}{:<16} {:<10} {:<16} {:<14}",
        r.function.as_str(),
        r.netpoll.as_deref().unwrap_or("?"),
        r.dev.as_deref().unwrap_or("?"),
        result,
    );
    if let Some(d) = &r.driver {
        line.push_str(&format!(" driver={d}"));
    }
    if let Some(sym) = &r.ops_symbol {
        match &r.ops_module {
            Some(m) => line.push_str(&format!(" ops={sym}[{m}]")),
            None => line.push_str(&format!(" ops={sym}")),
        }
    }
    if let Some(pc) = r.has_poll_controller {
        line.push_str(if pc { " poll_controller=yes" } else { " poll_controller=no" });
    }
    if r.netpoll_disabled == Some(true) {
        line.push_str(" IFF_DISABLE_NETPOLL");
    }
    line.push_str(&format!(
        " ({}[{}], {}us)",
        r.comm.as_deref().unwrap_or("?"),
        r.pid,
        r.duration_ns / 1000
    ));
    line.trim_end().to_string()
}

pub fn json_line(r: &SetupRecord) -> String {
    // Serialising a struct of plain fields cannot fail.
    serde_json::to_string(r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SetupFn;

    fn rec() -> SetupRecord {
        SetupRecord {
            kind: "setup",
            seq: None,
            resolved_at: None,
            ts_ns: 1_500_000_000,
            function: SetupFn::InnerNetpollSetup,
            netpoll: Some("netconsole".into()),
            dev: Some("eth0".into()),
            ifindex: Some(2),
            ret: -524,
            errno: Some("ENOTSUPP"),
            depth: 1,
            duration_ns: 42_000,
            pid: 77,
            comm: Some("modprobe".into()),
            driver: Some("virtio_net".into()),
            driver_version: Some("1.0.0".into()),
            kernel: Some("6.1.0-test".into()),
            ops_symbol: Some("virtnet_netdev".into()),
            ops_module: Some("virtio_net".into()),
            has_poll_controller: Some(false),
            has_netpoll_setup: Some(false),
            netpoll_disabled: Some(true),
            ops_addr: None,
            netpoll_addr: 0,
        }
    }

    #[test]
    fn human_line_shows_errno_symbolically_and_the_device_facts() {
        let l = human_line(&rec(), 1_000_000_000);
        assert!(l.starts_with("+   0.500s   __netpoll_setup"), "{l}");
        for want in ["-ENOTSUPP", "eth0", "driver=virtio_net", "ops=virtnet_netdev[virtio_net]", "poll_controller=no", "IFF_DISABLE_NETPOLL", "modprobe[77], 42us"] {
            assert!(l.contains(want), "{want} missing in {l}");
        }
    }

    #[test]
    fn json_has_the_contract_fields() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&rec())).unwrap();
        for k in ["type", "ts_ns", "fn", "netpoll", "dev", "ifindex", "ret", "errno", "depth", "duration_ns", "pid", "comm", "driver", "ops_symbol", "ops_module", "has_poll_controller", "has_netpoll_setup", "netpoll_disabled"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["errno"], "ENOTSUPP");
        assert!(v.get("ops_addr").is_none());
    }
}
