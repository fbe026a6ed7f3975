//! docs/contract.md section 4 and the schema the code checks (`model::schema`) must agree:
//! the same `type`s, and for each the same required ("yes") and "one of" fields. The
//! contract is what users read; the schema is what `schema-check` and the lab enforce. A
//! field added to one and not the other fails here, naming the type, the field and the
//! side that lacks it.

use std::collections::{BTreeMap, BTreeSet};

use netpoll_trace::schema::{COMMON, ONE_OF, REQUIRED};

const CONTRACT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/contract.md");
/// The section holding the field tables.
const SECTION: &str = "## 4. JSON lines";
/// The table of the fields every object has (the other tables are one per `type`).
const COMMON_HEADING: &str = "### Every object";

/// One table's fields by how the contract marks them.
#[derive(Debug, Default, PartialEq)]
struct Fields {
    required: BTreeSet<String>,
    one_of: BTreeSet<String>,
    optional: BTreeSet<String>,
}

/// The section's tables: `None` for the common table, `Some(type)` for the others.
/// Errors: a row that does not parse, a field listed twice, a heading without a table.
fn parse(text: &str) -> Result<BTreeMap<Option<String>, Fields>, Vec<String>> {
    let mut errors = Vec::new();
    let Some(start) = text.lines().position(|l| l.starts_with(SECTION)) else {
        return Err(vec![format!("no heading `{SECTION}`")]);
    };
    let mut tables: BTreeMap<Option<String>, Fields> = BTreeMap::new();
    let mut current: Option<Option<String>> = None;
    for (n, line) in text.lines().enumerate().skip(start + 1) {
        let at = n + 1;
        if line.starts_with("## ") {
            break;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            let key = if heading == &COMMON_HEADING[4..] {
                None
            } else if let Some(kind) = heading.strip_prefix('`').and_then(|h| h.strip_suffix('`')) {
                Some(kind.to_string())
            } else {
                errors.push(format!(
                    "line {at}: heading `{line}` is neither `{COMMON_HEADING}` nor a `type`"
                ));
                current = None;
                continue;
            };
            if tables.contains_key(&key) {
                errors.push(format!("line {at}: `{line}` appears twice"));
            }
            tables.insert(key.clone(), Fields::default());
            current = Some(key);
            continue;
        }
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let Some(key) = &current else {
            errors.push(format!("line {at}: a field row under no type heading"));
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(field), Some(mark)) = (cells[0].strip_suffix('`'), cells.get(1)) else {
            errors.push(format!("line {at}: not `| `field` | mark | ... |`"));
            continue;
        };
        let fields = tables.get_mut(key).expect("inserted at its heading");
        let set = match *mark {
            "yes" => &mut fields.required,
            "one of" => &mut fields.one_of,
            "no" => &mut fields.optional,
            other => {
                errors.push(format!(
                    "line {at}: `{field}` is marked `{other}`, not yes, no or one of"
                ));
                continue;
            }
        };
        if !set.insert(field.to_string()) {
            errors.push(format!("line {at}: `{field}` is listed twice"));
        }
    }
    for (key, f) in &tables {
        if f.required.is_empty() && f.one_of.is_empty() && f.optional.is_empty() {
            errors.push(format!("{} has no field table", name(key)));
        }
    }
    if errors.is_empty() {
        Ok(tables)
    } else {
        Err(errors)
    }
}

fn name(key: &Option<String>) -> String {
    key.as_ref()
        .map_or(COMMON_HEADING.to_string(), |k| format!("type `{k}`"))
}

fn set(fields: &[&str]) -> BTreeSet<String> {
    fields.iter().map(|f| f.to_string()).collect()
}

/// The fields one side marks `what` and the other does not.
fn diff(
    what: &str,
    key: &Option<String>,
    doc: &BTreeSet<String>,
    code: &BTreeSet<String>,
) -> Vec<String> {
    let side = |f: &String, has: &str, lacks: &str| {
        format!("{}: `{f}` is {what} in {has} but not in {lacks}", name(key))
    };
    doc.difference(code)
        .map(|f| side(f, "docs/contract.md", "model/schema.rs"))
        .chain(
            code.difference(doc)
                .map(|f| side(f, "model/schema.rs", "docs/contract.md")),
        )
        .collect()
}

/// Each difference between the contract's tables and the schema, one line each.
fn compare(
    tables: &BTreeMap<Option<String>, Fields>,
    common: &[&str],
    required: &[(&str, &[&str])],
    one_of: &[(&str, &[&str])],
) -> Vec<String> {
    let mut out = Vec::new();
    let lookup = |table: &[(&str, &[&str])], kind: &str| {
        set(table
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[][..], |(_, f)| *f))
    };
    for (key, f) in tables {
        match key {
            None => out.extend(diff("common (\"yes\")", key, &f.required, &set(common))),
            Some(kind) if !required.iter().any(|(k, _)| k == kind) => out.push(format!(
                "type `{kind}` has a table in docs/contract.md but is not in model/schema.rs"
            )),
            Some(kind) => {
                out.extend(diff(
                    "required (\"yes\")",
                    key,
                    &f.required,
                    &lookup(required, kind),
                ));
                out.extend(diff("\"one of\"", key, &f.one_of, &lookup(one_of, kind)));
            }
        }
    }
    if !tables.contains_key(&None) {
        out.push(format!("docs/contract.md has no `{COMMON_HEADING}` table"));
    }
    for (kind, _) in required.iter().chain(one_of) {
        if !tables.contains_key(&Some(kind.to_string())) {
            out.push(format!(
                "type `{kind}` is in model/schema.rs but has no table in docs/contract.md"
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_contract_and_the_schema_agree() {
    let text =
        std::fs::read_to_string(CONTRACT).unwrap_or_else(|e| panic!("reading {CONTRACT}: {e}"));
    let tables = parse(&text).unwrap_or_else(|e| panic!("{CONTRACT}:\n{}", e.join("\n")));
    let problems = compare(&tables, COMMON, REQUIRED, ONE_OF);
    assert!(
        problems.is_empty(),
        "docs/contract.md section 4 and model/schema.rs disagree (change both together):\n{}",
        problems.join("\n")
    );
}

const SAMPLE: &str = "\
## 4. JSON lines

### Every object

| field | required | meaning |
| --- | --- | --- |
| `type` | yes | |
| `ts_ns` | yes | |

### `poll`

| field | required | meaning |
| --- | --- | --- |
| `dev` | yes | |
| `count` | yes | a | b |
| `histogram` | one of | |
| `duration_ns` | one of | |
| `ifindex` | no | |

## 5. Other output

### `not_a_type_here`
| `x` | yes | |
";

#[test]
fn the_sample_parses_and_agrees() {
    let tables = parse(SAMPLE).unwrap();
    assert_eq!(tables.len(), 2, "{tables:?}");
    let poll = &tables[&Some("poll".to_string())];
    assert_eq!(poll.required, set(&["dev", "count"]));
    assert_eq!(poll.one_of, set(&["histogram", "duration_ns"]));
    assert_eq!(poll.optional, set(&["ifindex"]));
    let problems = compare(
        &tables,
        &["type", "ts_ns"],
        &[("poll", &["dev", "count"])],
        &[("poll", &["histogram", "duration_ns"])],
    );
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn each_disagreement_is_named() {
    let tables = parse(SAMPLE).unwrap();
    // The schema requires `ifindex`, lacks `count`, knows another type, no "one of".
    let problems = compare(
        &tables,
        &["type", "ts_ns"],
        &[("poll", &["dev", "ifindex"]), ("send", &["dev"])],
        &[],
    );
    assert_eq!(
        problems,
        [
            "type `poll`: `count` is required (\"yes\") in docs/contract.md but not in model/schema.rs",
            "type `poll`: `duration_ns` is \"one of\" in docs/contract.md but not in model/schema.rs",
            "type `poll`: `histogram` is \"one of\" in docs/contract.md but not in model/schema.rs",
            "type `poll`: `ifindex` is required (\"yes\") in model/schema.rs but not in docs/contract.md",
            "type `send` is in model/schema.rs but has no table in docs/contract.md",
        ]
    );
}

#[test]
fn a_malformed_table_is_an_error() {
    let bad = SAMPLE.replace("| `ifindex` | no |", "| `ifindex` | maybe |");
    let e = parse(&bad).unwrap_err();
    assert!(e[0].contains("`ifindex` is marked `maybe`"), "{e:?}");
    let twice = SAMPLE.replace("| `ifindex` | no |", "| `dev` | yes |");
    let e = parse(&twice).unwrap_err();
    assert!(e[0].contains("`dev` is listed twice"), "{e:?}");
    assert!(parse("# no section\n").is_err());
}
