//! The crate's one-way layers (ARCHITECTURE.md), checked from the source: every file
//! belongs to a layer, each layer imports only the layers below it, and no module
//! depends on another that depends back on it (no import cycle). Run on the crate's
//! own `src/`; the unit tests below prove each rule fails on a tree that breaks it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The layers, and the layers each may import (itself included).
const LAYERS: &[(&str, &[&str])] = &[
    ("kernel", &["kernel"]),
    ("model", &["model"]),
    ("pipeline", &["kernel", "model", "pipeline"]),
    ("sinks", &["model", "sinks"]),
    ("cli", &["kernel", "model", "pipeline", "sinks", "cli"]),
];

/// Files outside every layer: the entry points (the binary's, the library's, and the
/// fuzz targets' facade, which reaches each layer's parsers as `cli` does).
const ROOT_FILES: &[&str] = &["main.rs", "lib.rs", "fuzz.rs"];

/// Macros exported at the crate root, by the layer that defines them.
const MACROS: &[(&str, &str)] = &[("status", "sinks")];

/// A module path (`kernel::attach::kprobe`) for a file under `src/`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments and string literals (a path in a doc comment or a
/// message is not an import).
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // A raw string's hashes are not handled: the crate's raw strings are test data.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n'); lifetimes ('a) are left alone.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The source before its unit tests (`#[cfg(test)] mod tests`), which may reach
/// further than the code (test helpers of other modules) without making a cycle.
fn without_tests(code: &str) -> &str {
    code.find("#[cfg(test)]\nmod tests")
        .or_else(|| code.find("#[cfg(test)]\npub mod tests"))
        .map_or(code, |i| &code[..i])
}

/// Every path the code names through `crate::`, `super::` or `self::` (brace groups
/// expanded, one level of nesting is enough here), plus `child::` for modules the file
/// declares, as absolute module paths.
fn referenced_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| {
            let l = l
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            l.strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
                .map(str::to_string)
        })
        .collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let text: String = chars.iter().collect();
    let mut i = 0;
    while i < chars.len() {
        // A path starts at an identifier not preceded by `::` or an identifier character.
        let starts =
            ident(chars[i]) && (i == 0 || (!ident(chars[i - 1]) && !text[..i].ends_with("::")));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && ident(chars[j]) {
            j += 1;
        }
        let head: String = chars[i..j].iter().collect();
        let is_root =
            matches!(head.as_str(), "crate" | "super" | "self") || children.contains(&head);
        if !is_root || !text[j..].starts_with("::") {
            i = j;
            continue;
        }
        // Read the path, expanding one brace group.
        let (mut k, mut prefix) = (i, Vec::new());
        loop {
            let mut e = k;
            while e < chars.len() && ident(chars[e]) {
                e += 1;
            }
            prefix.push(chars[k..e].iter().collect::<String>());
            if text[e..].starts_with("::{") {
                let close = brace_end(&chars, e + 2);
                let inner: String = chars[e + 3..close].iter().collect();
                for item in split_top(&inner) {
                    let mut p = prefix.clone();
                    p.extend(
                        item.split("::")
                            .map(|s| s.trim().trim_start_matches('{').to_string())
                            .filter(|s| !s.is_empty()),
                    );
                    out.push(resolve(&p, module, &children));
                }
                k = close + 1;
                break;
            } else if text[e..].starts_with("::") && e + 2 < chars.len() && ident(chars[e + 2]) {
                k = e + 2;
            } else {
                out.push(resolve(&prefix, module, &children));
                k = e;
                break;
            }
        }
        i = k.max(i + 1);
    }
    out
}

fn brace_end(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    chars.len() - 1
}

/// Splits a brace group's items at top-level commas.
fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    // `a::{b, c}` inside a group: keep the group's head, enough for module resolution.
    out.into_iter()
        .map(|s| s.split("::{").next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// An absolute path for `path` as written in `module`.
fn resolve(path: &[String], module: &[String], children: &[String]) -> Vec<String> {
    let mut abs: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("self") => {
            abs = module.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            abs = module.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                abs.pop();
                rest = &rest[1..];
            }
        }
        Some(c) if children.iter().any(|x| x == c) => abs = module.to_vec(),
        _ => {}
    }
    abs.extend(rest.iter().filter(|s| s.as_str() != "self").cloned());
    abs
}

struct Crate {
    /// Module path -> (file, code without comments and strings).
    modules: BTreeMap<Vec<String>, (PathBuf, String)>,
    /// File -> its source as written.
    sources: BTreeMap<PathBuf, String>,
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let sources: BTreeMap<PathBuf, String> = files
            .into_iter()
            .map(|f| {
                let rel = f.strip_prefix(src).unwrap().to_path_buf();
                (rel, std::fs::read_to_string(&f).unwrap())
            })
            .collect();
        let modules = sources
            .iter()
            .map(|(rel, text)| (module_of(rel), (rel.clone(), code_only(text))))
            .collect();
        Self { modules, sources }
    }

    /// The module a path names: its longest prefix that is a module of the crate.
    fn module_named(&self, path: &[String]) -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.modules.contains_key(p))
    }

    /// Every rule broken, one line each.
    fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (module, (file, code)) in &self.modules {
            let layer = module.first().map(String::as_str);
            let allowed = match LAYERS.iter().find(|(l, _)| Some(*l) == layer) {
                Some((_, allowed)) => *allowed,
                None if ROOT_FILES.iter().any(|f| Path::new(f) == file) => continue,
                None => {
                    out.push(format!(
                        "{}: in no layer (move it under one of {:?})",
                        file.display(),
                        LAYERS.iter().map(|l| l.0).collect::<Vec<_>>()
                    ));
                    continue;
                }
            };
            let mut check = |target_layer: &str, what: &str| {
                if !allowed.contains(&target_layer) {
                    out.push(format!(
                        "{}: layer {} uses {what} of layer {target_layer}",
                        file.display(),
                        layer.unwrap_or("?")
                    ));
                }
            };
            for path in referenced_paths(code, module) {
                if let Some(target) = self.module_named(&path)
                    && let Some(l) = target.first()
                    && LAYERS.iter().any(|(x, _)| x == l)
                {
                    check(l, &target.join("::"));
                }
            }
            for (mac, l) in MACROS {
                if code.contains(&format!("crate::{mac}!")) {
                    check(l, &format!("the macro {mac}!"));
                }
            }
            for path in referenced_paths(without_tests(code), module) {
                if let Some(target) = self.module_named(&path)
                    && &target != module
                {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
        for cycle in cycles(&edges) {
            out.push(format!(
                "import cycle: {}",
                cycle
                    .iter()
                    .map(|m| m.join("::"))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ));
        }
        out
    }
}

/// Where the system may be reached (files, processes, sockets), by path prefix under
/// `src/`, and why: the kernel layer (the system's own interfaces), the sinks (the
/// journal file, the metrics endpoint, stdout, systemd's socket), the entry points, and
/// the commands whose job is the operator's own file, command or socket.
const EFFECTS_ALLOWED: &[(&str, &str)] = &[
    ("kernel/", "the system's interfaces"),
    (
        "sinks/",
        "the journal, the metrics endpoint, stdout, systemd",
    ),
    ("main.rs", "the binary's entry"),
    ("lib.rs", "the library's entry (the exit code)"),
    ("fuzz.rs", "the fuzz targets' facade"),
    (
        "cli/mod.rs",
        "the CLI's entry: exit codes, the files named by flags",
    ),
    (
        "cli/commands/dump.rs",
        "reads the recording the operator names (--from)",
    ),
    (
        "cli/commands/generate/",
        "writes pages into the directory the operator names",
    ),
    (
        "cli/commands/receive.rs",
        "binds the UDP socket the operator names (--listen)",
    ),
    (
        "cli/commands/receive/",
        "the receive workers' sockets on the address the operator names (--listen)",
    ),
    (
        "cli/commands/watch.rs",
        "runs the COMMAND the operator names",
    ),
];

/// Paths that reach the system (as written, or after a `use` group is expanded).
/// Addresses are values: `core::net::SocketAddr` is the same type without the sockets.
const EFFECT_PATHS: &[&str] = &[
    "std::fs",
    "std::process",
    "std::net",
    "std::os::unix::fs",
    "std::os::unix::net",
    "std::os::unix::process",
    "tokio::fs",
    "tokio::process",
    "tokio::net",
    "libc::open",
    "libc::socket",
    "libc::bind",
    "libc::connect",
    "libc::kill",
    "libc::fork",
    "libc::exec",
];

/// Calls that reach the file system through a type or a path's own methods.
const EFFECT_CALLS: &[&str] = &[
    "File::open(",
    "File::create(",
    "OpenOptions::new(",
    "Command::new(",
    ".exists()",
    ".read_dir()",
    ".symlink_metadata()",
    ".canonicalize()",
];

/// What the model may not name at all, beyond the effects: the BPF library.
const MODEL_FORBIDDEN: &[&str] = &["aya"];

/// Kernel-facing path prefixes, allowed in string literals only under `kernel/`.
const KERNEL_PATHS: &[&str] = &["/sys", "/proc", "/dev"];

/// The most lines of code a file may have before its unit tests.
const MAX_CODE_LINES: usize = 500;

/// Every `std::`, `tokio::`, `libc::` or `aya::` path the code names, `use` groups
/// expanded (`std::{fs, io::Read}` is `std::fs` and `std::io::Read`).
fn external_paths(code: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = code.chars().collect();
    let text: String = chars.iter().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts =
            ident(chars[i]) && (i == 0 || (!ident(chars[i - 1]) && !text[..i].ends_with("::")));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && ident(chars[j]) {
            j += 1;
        }
        let head: String = chars[i..j].iter().collect();
        if !matches!(head.as_str(), "std" | "tokio" | "libc" | "aya") {
            i = j;
            continue;
        }
        // The path's extent: identifiers, `::` and balanced brace groups.
        let mut k = j;
        loop {
            if text[k..].starts_with("::{") {
                k = brace_end(&chars, k + 2) + 1;
                break;
            } else if text[k..].starts_with("::") {
                k += 2;
                while k < chars.len() && ident(chars[k]) {
                    k += 1;
                }
            } else {
                break;
            }
        }
        let path: String = chars[i..k].iter().collect();
        out.extend(flatten(&path));
        i = k.max(j);
    }
    out
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn flatten(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.split_whitespace().collect()];
    };
    let close = path.rfind('}').unwrap_or(path.len());
    let head = &path[..open];
    let (mut items, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in path[open + 1..close].chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .flat_map(|i| flatten(&format!("{head}{}", i.trim_start_matches("self"))))
        .map(|p| p.trim_end_matches("::").to_string())
        .collect()
}

/// The string literals of a source (comments skipped), in order.
fn literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push(String::from_utf8_lossy(&b[start..i.min(b.len())]).into_owned());
            i += 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether a literal is a kernel-facing path (`"/sys/class/net"`, `"/proc/{pid}/stat"`);
/// a message that mentions one (`"reading /proc/mounts"`) is prose, not a path.
fn kernel_path(lit: &str) -> Option<&'static str> {
    KERNEL_PATHS.iter().copied().find(|p| {
        lit.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            && !lit.contains(char::is_whitespace)
    })
}

/// The file's code before its first `#[cfg(test)]`.
fn code_before_tests(src: &str) -> &str {
    src.find("#[cfg(test)]").map_or(src, |i| &src[..i])
}

impl Crate {
    /// Every effect outside the places allowed to have one, every BPF-library name in the
    /// model, every kernel path outside the kernel layer, and every file too long; one
    /// line each. Unit tests (`#[cfg(test)] mod tests`) are not looked at.
    fn effects(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (file, (_, code)) in self.modules.values().map(|(f, c)| (f, (f, c))) {
            let name = file.to_string_lossy().replace('\\', "/");
            // A module of unit tests in a file of its own (`#[cfg(test)] mod tests;`).
            if file.file_name().is_some_and(|f| f == "tests.rs") {
                continue;
            }
            let code = without_tests(code);
            let in_model = name.starts_with("model/");
            let allowed = EFFECTS_ALLOWED.iter().any(|(p, _)| name.starts_with(p)) && !in_model;
            let mut named = BTreeSet::new();
            for path in external_paths(code) {
                if !allowed
                    && let Some(e) = EFFECT_PATHS
                        .iter()
                        .find(|e| path == **e || path.starts_with(&format!("{e}::")))
                {
                    named.insert(format!("{name}: reaches the system through {e} ({path})"));
                }
                if in_model
                    && let Some(f) = MODEL_FORBIDDEN
                        .iter()
                        .find(|f| path == **f || path.starts_with(&format!("{f}::")))
                {
                    named.insert(format!("{name}: the model names {f} ({path})"));
                }
            }
            if !allowed {
                for call in EFFECT_CALLS {
                    // `TrustedFile::open(` is not `File::open(`.
                    let called = code.match_indices(call).any(|(at, _)| {
                        call.starts_with('.')
                            || !code[..at]
                                .chars()
                                .next_back()
                                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                    if called {
                        named.insert(format!(
                            "{name}: reaches the system through {}",
                            call.trim_end_matches('(')
                        ));
                    }
                }
            }
            out.extend(named);
            let src = &self.sources[file];
            if !name.starts_with("kernel/") {
                let mut paths = BTreeSet::new();
                for lit in literals(without_tests(src)) {
                    if kernel_path(&lit).is_some() {
                        paths.insert(lit);
                    }
                }
                for lit in paths {
                    out.push(format!("{name}: kernel path \"{lit}\" outside kernel/"));
                }
            }
            let lines = code_before_tests(src).lines().count();
            if lines > MAX_CODE_LINES {
                out.push(format!(
                    "{name}: {lines} lines of code before its tests (at most {MAX_CODE_LINES})"
                ));
            }
        }
        out
    }
}

/// Every cycle's modules (one per strongly connected component of two or more).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    let nodes: BTreeSet<&Vec<String>> = edges.keys().chain(edges.values().flatten()).collect();
    let reach = |from: &Vec<String>| -> BTreeSet<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let mut done: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut out = Vec::new();
    for n in nodes {
        if done.contains(n) {
            continue;
        }
        let r = reach(n);
        if !r.contains(n) {
            continue;
        }
        let component: Vec<Vec<String>> =
            r.iter().filter(|m| reach(m).contains(n)).cloned().collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
}

/// The crate's own `src/`, or another tree's (`NPT_LAYERS_SRC`, e.g. an older commit's).
#[test]
fn the_crate_keeps_its_layers_and_has_no_import_cycle() {
    let src = std::env::var_os("NPT_LAYERS_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from,
    );
    let krate = Crate::read(&src);
    assert!(
        krate.modules.len() > 10,
        "read only {} modules",
        krate.modules.len()
    );
    let v = krate.violations();
    assert!(v.is_empty(), "{}", v.join("\n"));
}

/// Effects where the layers say: the crate's own `src/` (or `NPT_LAYERS_SRC`).
#[test]
fn effects_stay_in_the_kernel_layer_the_sinks_and_the_entry() {
    let src = std::env::var_os("NPT_LAYERS_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from,
    );
    let v = Crate::read(&src).effects();
    assert!(v.is_empty(), "{}", v.join("\n"));
}

/// A throwaway tree under the target directory.
fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn an_upward_import_is_named() {
    let dir = tree(
        "layers-upward",
        &[
            ("main.rs", "mod kernel;\nmod cli;\n"),
            ("kernel/mod.rs", "pub mod load;\n"),
            (
                "kernel/load.rs",
                "use crate::cli::args::AttachArg; // a clap type below the CLI\n",
            ),
            ("cli/mod.rs", "pub mod args;\n"),
            ("cli/args.rs", "pub enum AttachArg {}\n"),
        ],
    );
    let v = Crate::read(&dir).violations();
    assert_eq!(
        v,
        ["kernel/load.rs: layer kernel uses cli::args of layer cli"],
        "{v:?}"
    );
}

#[test]
fn a_pure_model_may_not_reach_the_kernel_or_print_status_lines() {
    let dir = tree(
        "layers-model",
        &[
            ("main.rs", ""),
            ("kernel/mod.rs", "pub fn release() {}\n"),
            (
                "model/mod.rs",
                "fn f() { crate::kernel::release(); crate::status!(Warn, \"x\"); }\n",
            ),
            ("sinks/mod.rs", ""),
        ],
    );
    let v = Crate::read(&dir).violations();
    assert!(
        v.iter()
            .any(|l| l.contains("model/mod.rs: layer model uses kernel")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|l| l.contains("uses the macro status! of layer sinks")),
        "{v:?}"
    );
}

#[test]
fn a_cycle_inside_a_layer_and_a_file_outside_the_layers_are_named() {
    let dir = tree(
        "layers-cycle",
        &[
            ("main.rs", ""),
            ("loader.rs", "// the old flat layout\n"),
            ("kernel/mod.rs", "pub mod a;\npub mod b;\n"),
            ("kernel/a.rs", "use super::b::B;\npub struct A;\n"),
            (
                "kernel/b.rs",
                "use super::{a::A};\npub struct B;\n#[cfg(test)]\nmod tests {}\n",
            ),
        ],
    );
    let v = Crate::read(&dir).violations();
    assert!(v.iter().any(|l| l == "loader.rs: in no layer (move it under one of [\"kernel\", \"model\", \"pipeline\", \"sinks\", \"cli\"])"), "{v:?}");
    assert!(
        v.iter()
            .any(|l| l == "import cycle: kernel::a -> kernel::b"),
        "{v:?}"
    );
}

#[test]
fn comments_strings_and_test_helpers_make_no_cycle() {
    let dir = tree(
        "layers-tests",
        &[
            ("main.rs", ""),
            ("model/mod.rs", "pub mod a;\npub mod b;\n"),
            (
                "model/a.rs",
                "// crate::model::b is mentioned here only\nconst S: &str = \"crate::model::b\";\n#[cfg(test)]\nmod tests { use crate::model::b::tests::h; }\n",
            ),
            (
                "model/b.rs",
                "use super::a::S;\n#[cfg(test)]\npub mod tests { pub fn h() {} }\n",
            ),
        ],
    );
    assert_eq!(Crate::read(&dir).violations(), Vec::<String>::new());
}

#[test]
fn an_effect_outside_the_kernel_layer_is_named_even_through_a_use_group() {
    let dir = tree(
        "layers-effects",
        &[
            ("main.rs", "fn main() { std::process::exit(0) }\n"),
            (
                "cli/commands/agent.rs",
                "use std::{io::Write, fs::{self, OpenOptions}};\nfn f() { tokio::process::Command::new(\"x\"); }\n#[cfg(test)]\nmod tests { fn t() { std::fs::read(\"/proc/1/stat\"); } }\n",
            ),
            (
                "kernel/host.rs",
                "fn f() -> bool { std::path::Path::new(\"/sys/class/net\").exists() }\n",
            ),
            (
                "pipeline/mod.rs",
                "fn f(p: &std::path::Path) -> bool { p.exists() }\n",
            ),
            (
                "sinks/journal.rs",
                "use std::fs::File;\nfn f() { File::create(\"j\"); }\n",
            ),
            (
                "cli/commands/patch.rs",
                "fn f() { TrustedFile::open(\"m\"); }\n",
            ),
        ],
    );
    let v = Crate::read(&dir).effects();
    assert_eq!(
        v,
        [
            "cli/commands/agent.rs: reaches the system through Command::new",
            "cli/commands/agent.rs: reaches the system through std::fs (std::fs)",
            "cli/commands/agent.rs: reaches the system through std::fs (std::fs::OpenOptions)",
            "cli/commands/agent.rs: reaches the system through tokio::process (tokio::process::Command::new)",
            "pipeline/mod.rs: reaches the system through .exists()",
        ],
        "{v:?}"
    );
}

#[test]
fn the_model_names_neither_effects_nor_aya_and_kernel_paths_stay_in_the_kernel() {
    let dir = tree(
        "layers-model-pure",
        &[
            ("main.rs", ""),
            (
                "model/event.rs",
                "// the model once read /sys itself\nuse core::net::SocketAddr;\npub fn d<T: aya::Pod>() {}\nfn c() { let _ = std::net::UdpSocket::bind(\"0:0\"); }\n",
            ),
            (
                "model/check.rs",
                "const M: &str = \"/sys/kernel/btf/vmlinux unreadable\";\nconst N: &str = \"/devices\";\n",
            ),
            (
                "cli/commands/check.rs",
                "fn f() { let _ = (\"/proc/{pid}/stat\", \"/dev\"); }\n",
            ),
            (
                "kernel/btf.rs",
                "pub const P: &str = \"/sys/kernel/btf/vmlinux\";\n",
            ),
        ],
    );
    let v = Crate::read(&dir).effects();
    assert_eq!(
        v,
        [
            "cli/commands/check.rs: kernel path \"/dev\" outside kernel/",
            "cli/commands/check.rs: kernel path \"/proc/{pid}/stat\" outside kernel/",
            "model/event.rs: reaches the system through std::net (std::net::UdpSocket::bind)",
            "model/event.rs: the model names aya (aya::Pod)",
        ],
        "{v:?}"
    );
}

#[test]
fn a_file_past_the_line_limit_is_named_and_its_tests_do_not_count() {
    let long = "fn f() {}\n".repeat(MAX_CODE_LINES + 1);
    let tested = format!(
        "{}#[cfg(test)]\nmod tests {{\n{long}}}\n",
        "fn f() {}\n".repeat(MAX_CODE_LINES)
    );
    let dir = tree(
        "layers-long",
        &[
            ("main.rs", ""),
            ("model/a.rs", &long),
            ("model/b.rs", &tested),
        ],
    );
    assert_eq!(
        Crate::read(&dir).effects(),
        ["model/a.rs: 501 lines of code before its tests (at most 500)"]
    );
}
