//! The guest's `NPT-SELFTEST TEST MODE RESULT key=value...` lines, and the table per
//! kernel made of them: each test bare / with watch / with the legacy object / with the
//! agent / with receive, the referees' numbers beside the tool's.

use std::collections::BTreeMap;

/// `netcons_basic` from `drivers/net/netconsole/netcons_basic.sh`.
pub fn test_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".sh").unwrap_or(base)
}

/// Seconds one run of a test may take under TCG (the guest's timeout is their sum over
/// the modes): torture writes 1,500 lines and toggles targets; the others take a few seconds
/// plus their listeners' 2-3 s per round.
pub fn budget_secs(path: &str) -> u64 {
    match test_name(path) {
        "netcons_torture" => 300,
        "netcons_basic" | "netcons_sysdata" => 90,
        _ => 60,
    }
}

#[derive(Debug, PartialEq)]
pub struct Row {
    pub test: String,
    pub mode: String,
    pub result: String,
    pub fields: BTreeMap<String, String>,
}

/// The NPT-CHECK verdicts of a console log: `TEST_MODE` -> (`pass`/`fail`/`skip`, detail).
pub fn checks(console: &str) -> BTreeMap<String, (String, String)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("NPT-CHECK ")? + "NPT-CHECK ".len()..];
            let mut words = rest.splitn(3, ' ');
            let name = words.next()?.to_string();
            let status = words.next()?.to_string();
            Some((name, (status, words.next().unwrap_or("").to_string())))
        })
        .collect()
}

/// Every NPT-SELFTEST line of a console log, in order.
pub fn parse(console: &str) -> Vec<Row> {
    console
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("NPT-SELFTEST ")? + "NPT-SELFTEST ".len()..];
            let mut words = rest.split_whitespace();
            let test = words.next()?.to_string();
            let mode = words.next()?.to_string();
            let result = words.next()?.to_string();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Row {
                test,
                mode,
                result,
                fields,
            })
        })
        .collect()
}

/// A markdown table: one row per test, one column per mode (the test's result; after it the
/// check on the tool when that did not pass), then the numbers.
pub fn render(
    label: &str,
    package: &str,
    release: &str,
    rows: &[Row],
    checks: &BTreeMap<String, (String, String)>,
    modes: &[&str],
) -> String {
    let mut tests: Vec<&str> = Vec::new();
    for r in rows {
        if !tests.contains(&r.test.as_str()) {
            tests.push(&r.test);
        }
    }
    let mut out = format!("### {label}: {release}, tests from {package}\n\n| test | bare |");
    for m in modes {
        out.push_str(&format!(" {} |", m.replace('_', " ")));
    }
    out.push_str(" kernel (referees) | tool |\n|---|---|");
    for _ in modes {
        out.push_str("---|");
    }
    out.push_str("---|---|\n");
    // The last row of a test and mode: a retry's.
    let get = |t: &str, m: &str| rows.iter().rev().find(|r| r.test == t && r.mode == m);
    for t in &tests {
        out.push_str(&format!("| {t} |"));
        for m in std::iter::once(&"bare").chain(modes.iter()) {
            let mut cell = match get(t, m) {
                None => "-".to_string(),
                Some(r) if r.fields.get("attempt").is_some_and(|a| a != "1") => {
                    format!("{} (2nd try)", r.result)
                }
                Some(r) => r.result.clone(),
            };
            match checks.get(&format!("{t}_{m}")).map(|(s, _)| s.as_str()) {
                Some("fail") => cell.push_str(", **check failed**"),
                Some("skip") if get(t, m).is_some() => cell = "n/a".into(),
                _ => {}
            }
            out.push_str(&format!(" {cell} |"));
        }
        out.push_str(&format!(
            " {} | {} |\n",
            referees(get(t, "bare")),
            tool(rows, t)
        ));
    }
    out
}

fn referees(r: Option<&Row>) -> String {
    let Some(r) = r else { return "-".into() };
    let f = |k: &str| r.fields.get(k).map_or("?", String::as_str);
    format!(
        "writes to /dev/kmsg {}, netpoll_send_udp {}, failures logged {}, stops/resumes logged {}/{}, targets {}",
        f("kmsg_writes"),
        f("send_hits"),
        f("kernel_failures"),
        f("kernel_stops"),
        f("kernel_resumes"),
        f("targets").trim_end_matches(',')
    )
}

fn tool(rows: &[Row], test: &str) -> String {
    let mut parts = Vec::new();
    for r in rows
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            r.test == test
                && !rows[i + 1..]
                    .iter()
                    .any(|l| l.test == r.test && l.mode == r.mode)
        })
        .map(|(_, r)| r)
    {
        let f = |k: &str| r.fields.get(k).map_or("?", String::as_str);
        match r.mode.as_str() {
            "watch" | "watch_legacy" => parts.push(format!(
                "{}: messages {} (kprobe {}), targets {} (resumed {}), diagnoses {}",
                r.mode.replace('_', " "),
                f("tool_messages"),
                f("send_hits"),
                f("tool_targets").trim_end_matches(','),
                f("tool_resumed"),
                f("tool_diagnoses")
            )),
            "agent" => parts.push(format!("agent: journal {}", f("journal"))),
            "receive" if f("received") == "no_listener" => {}
            "receive" => parts.push(format!(
                "receive: {} message(s), fields {}",
                f("received"),
                f("fields").trim_end_matches(',')
            )),
            _ => {}
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[  9.1] x\nNPT-SELFTEST netcons_basic bare pass rc=0 kmsg_writes=1 send_hits=12 kernel_failures=0 targets=up,down,\n\
        NPT-SELFTEST netcons_basic watch pass rc=0 kmsg_writes=1 send_hits=12 kernel_failures=0 targets=up,down, tool_rc=0 tool_targets=up,down, tool_resumed=0 tool_messages=12 tool_diagnoses=0\n\
        NPT-SELFTEST netcons_basic receive fail rc=1 kmsg_writes=1 send_hits=12 kernel_failures=0 targets=up,down, received=0\n\
        NPT-SELFTEST netcons_basic agent fail attempt=1 rc=1\nNPT-SELFTEST netcons_basic agent pass attempt=2 rc=0 journal=start:ok*1,stop:ok*1\n";

    #[test]
    fn lines_parsed_with_their_numbers() {
        let rows = parse(LOG);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[1].mode, "watch");
        assert_eq!(rows[1].fields["tool_messages"], "12");
        assert_eq!(rows[2].result, "fail");
    }

    #[test]
    fn table_has_a_cell_per_mode_and_the_numbers() {
        let checks = checks(
            "NPT-CHECK netcons_basic_receive fail the test passed but receive printed no message\n",
        );
        assert_eq!(checks["netcons_basic_receive"].0, "fail");
        let t = render(
            "6.12",
            "linux-source-6.12 1",
            "6.12.1",
            &parse(LOG),
            &checks,
            &["watch", "agent", "receive"],
        );
        assert!(
            t.contains("| netcons_basic | pass | pass | pass (2nd try) | fail, **check failed** |"),
            "{t}"
        );
        assert!(t.contains("netpoll_send_udp 12"), "{t}");
        assert!(
            t.contains("watch: messages 12 (kprobe 12), targets up,down (resumed 0), diagnoses 0"),
            "{t}"
        );
    }

    #[test]
    fn names_and_budgets() {
        assert_eq!(
            test_name("drivers/net/netconsole/netcons_torture.sh"),
            "netcons_torture"
        );
        assert_eq!(budget_secs("drivers/net/netcons_basic.sh"), 90);
    }
}
