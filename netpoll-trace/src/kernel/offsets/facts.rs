//! The facts start-up needs from the kernel's BTF, small enough to cache: which traced
//! functions exist, their type ids for fentry (`FunctionIndex`), and every answer
//! `layout::resolve` asked of the BTF. Pure: the cache document's encoding and
//! validation against an `identity::Identity`, and the `Layout`s that record and replay
//! answers (`cache` does the file I/O).
//!
//! A struct layout is never copied into the document: it holds only the questions
//! `layout::resolve` asked and the BTF's answers, and a hit builds the `Config` by running
//! `layout::resolve` again over them. A question the document does not hold is a miss.

use std::cell::{Cell, RefCell};

use anyhow::{Result, bail, ensure};
use netpoll_trace_common::Config;
use serde::{Deserialize, Serialize};

use super::{
    asked::Asked,
    layout::{self, Layout},
};
use crate::kernel::btf::{Btf, FunctionIndex};

pub use super::identity::{Identity, IdentityHasher};

/// The document's schema: bump it when what is recorded, or how, changes.
pub const SCHEMA: u32 = 3;

/// The largest document read; ours is about 2 KiB.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// At most this many functions, member and constant answers: `layout::resolve` asks about twenty.
const MAX_ENTRIES: usize = 64;

/// At most this long: a kernel identifier, or a release.
const MAX_NAME: usize = 128;

/// One answer of `Layout::member`: the member's byte offset and shift, or None.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAnswer {
    #[serde(rename = "struct")]
    pub struct_name: String,
    pub member: String,
    /// `[offset, shift]`, or null when the BTF has no such member.
    pub at: Option<(u32, u32)>,
}

/// One answer of `Layout::constant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantAnswer {
    pub name: String,
    pub value: Option<u64>,
}

/// Every answer a `Layout` gave, in the order asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    pub members: Vec<MemberAnswer>,
    pub constants: Vec<ConstantAnswer>,
}

/// A `Layout` that asks `inner` and writes down each question and answer.
pub struct Recording<'a> {
    inner: &'a dyn Layout,
    answers: RefCell<Answers>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a dyn Layout) -> Self {
        Self {
            inner,
            answers: RefCell::default(),
        }
    }

    pub fn into_answers(self) -> Answers {
        self.answers.into_inner()
    }
}

impl Layout for Recording<'_> {
    fn member(&self, struct_name: &str, member: &str) -> Option<(u32, u32)> {
        let at = self.inner.member(struct_name, member);
        let mut a = self.answers.borrow_mut();
        if !a
            .members
            .iter()
            .any(|m| m.struct_name == struct_name && m.member == member)
        {
            a.members.push(MemberAnswer {
                struct_name: struct_name.into(),
                member: member.into(),
                at,
            });
        }
        at
    }

    fn constant(&self, name: &str) -> Option<u64> {
        let value = self.inner.constant(name);
        let mut a = self.answers.borrow_mut();
        if !a.constants.iter().any(|c| c.name == name) {
            a.constants.push(ConstantAnswer {
                name: name.into(),
                value,
            });
        }
        value
    }
}

/// A `Layout` over recorded answers. A question with no recorded answer is not guessed:
/// it answers None and marks the replay as missed, and the caller treats the whole
/// document as a miss.
pub struct Replay<'a> {
    answers: &'a Answers,
    missed: Cell<bool>,
}

impl<'a> Replay<'a> {
    pub fn new(answers: &'a Answers) -> Self {
        Self {
            answers,
            missed: Cell::new(false),
        }
    }

    /// Whether a question had no recorded answer.
    pub fn missed(&self) -> bool {
        self.missed.get()
    }
}

impl Layout for Replay<'_> {
    fn member(&self, struct_name: &str, member: &str) -> Option<(u32, u32)> {
        let found = self
            .answers
            .members
            .iter()
            .find(|m| m.struct_name == struct_name && m.member == member);
        if found.is_none() {
            self.missed.set(true);
        }
        found.and_then(|m| m.at)
    }

    fn constant(&self, name: &str) -> Option<u64> {
        let found = self.answers.constants.iter().find(|c| c.name == name);
        if found.is_none() {
            self.missed.set(true);
        }
        found.and_then(|c| c.value)
    }
}

/// What the kernel's BTF told us, for one set of function names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Each function asked about, and whether the BTF describes it.
    pub functions: Vec<(String, bool)>,
    /// Their type ids (the present ones), and the BTF's type count.
    pub index: FunctionIndex,
    /// What `layout::resolve` asked of the BTF, and its answers.
    pub layout: Answers,
}

impl Facts {
    /// Asks `btf` everything: whether each of `names` is a function, their type ids, and
    /// what `layout::resolve` needs.
    pub fn gather(btf: &Btf, names: &[&str]) -> Self {
        // One walk over the FUNCs for every name (`has_function` would walk once per name).
        let index = btf.function_index(names);
        let functions = names
            .iter()
            .map(|n| (n.to_string(), index.funcs.iter().any(|(f, _, _)| f == n)))
            .collect();
        // Every struct and constant `resolve` will ask, found in one walk each.
        let asked = Asked::by_resolve();
        let structs = asked.structs();
        let constants = asked.constants();
        btf.find_structs(&structs.iter().map(String::as_str).collect::<Vec<_>>());
        btf.find_constants(&constants.iter().map(String::as_str).collect::<Vec<_>>());
        let recording = Recording::new(btf);
        layout::resolve(&recording);
        Self {
            functions,
            index,
            layout: recording.into_answers(),
        }
    }

    /// Whether each of `names` is a function; None when one was never asked about.
    pub fn present(&self, names: &[&str]) -> Option<Vec<bool>> {
        names
            .iter()
            .map(|n| self.functions.iter().find(|(f, _)| f == n).map(|&(_, p)| p))
            .collect()
    }

    /// The `Config` `layout::resolve` builds from the recorded answers, and what it could
    /// not resolve; None when it asked something not recorded (a miss).
    pub fn resolve(&self) -> Option<(Config, Vec<&'static str>)> {
        let replay = Replay::new(&self.layout);
        let resolved = layout::resolve(&replay);
        (!replay.missed()).then_some(resolved)
    }
}

/// The document as stored (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    schema: u32,
    identity: Identity,
    functions: Vec<FunctionDoc>,
    type_count: u32,
    layout: Answers,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionDoc {
    name: String,
    present: bool,
    /// The FUNC's type id and its prototype's, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    type_id: Option<(u32, u32)>,
}

/// Only the schema, read first so that another version is named as such.
#[derive(Deserialize)]
struct Head {
    schema: u32,
}

/// The document for `facts` read from the BTF with `identity`.
pub fn encode(identity: &Identity, facts: &Facts) -> Vec<u8> {
    let functions = facts
        .functions
        .iter()
        .map(|(name, present)| FunctionDoc {
            name: name.clone(),
            present: *present,
            type_id: facts
                .index
                .funcs
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|&(_, id, proto)| (id, proto)),
        })
        .collect();
    let doc = Document {
        schema: SCHEMA,
        identity: identity.clone(),
        functions,
        type_count: facts.index.type_count,
        layout: facts.layout.clone(),
    };
    // A document of strings and integers always serializes.
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The facts in `bytes`, when it is a well-formed document of this schema for exactly
/// the BTF `live` identifies; else why not (one line).
pub fn decode(bytes: &[u8], live: &Identity) -> Result<Facts> {
    ensure!(
        bytes.len() <= MAX_DOCUMENT,
        "larger than {MAX_DOCUMENT} bytes"
    );
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("not a cache document: {e}"))?;
    ensure!(
        head.schema == SCHEMA,
        "schema {} (this build writes {SCHEMA})",
        head.schema
    );
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("malformed: {e}"))?;
    if doc.identity != *live {
        bail!(
            "made for another BTF ({:?}; the running kernel's is {:?})",
            doc.identity,
            live
        );
    }
    validate(&doc)?;
    let functions = doc
        .functions
        .iter()
        .map(|f| (f.name.clone(), f.present))
        .collect();
    let mut funcs: Vec<_> = doc
        .functions
        .iter()
        .filter_map(|f| f.type_id.map(|(id, proto)| (f.name.clone(), id, proto)))
        .collect();
    // In type id order, as `Btf::function_index` lists them.
    funcs.sort_by_key(|&(_, id, _)| id);
    Ok(Facts {
        functions,
        index: FunctionIndex {
            type_count: doc.type_count,
            funcs,
        },
        layout: doc.layout,
    })
}

/// A kernel identifier: what the BTF's names of functions, structs, members and constants are.
fn identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn validate(doc: &Document) -> Result<()> {
    let a = &doc.layout;
    ensure!(
        doc.functions.len() <= MAX_ENTRIES
            && a.members.len() <= MAX_ENTRIES
            && a.constants.len() <= MAX_ENTRIES,
        "more than {MAX_ENTRIES} entries in a list"
    );
    for (i, f) in doc.functions.iter().enumerate() {
        ensure!(
            identifier(&f.name),
            "function name {:?} is not an identifier",
            f.name
        );
        ensure!(
            !doc.functions[..i].iter().any(|g| g.name == f.name),
            "function {} listed twice",
            f.name
        );
        // Present in the BTF exactly when it has a FUNC type id (`Btf::function_index`).
        match f.type_id {
            Some((id, proto)) => ensure!(
                f.present && id > 0 && id < doc.type_count && proto < doc.type_count,
                "function {}: type ids {id}/{proto} impossible with {} types (or listed as absent)",
                f.name,
                doc.type_count
            ),
            None => ensure!(!f.present, "function {} present without a type id", f.name),
        }
    }
    for (i, m) in a.members.iter().enumerate() {
        ensure!(
            identifier(&m.struct_name) && identifier(&m.member),
            "member {:?}.{:?} is not an identifier",
            m.struct_name,
            m.member
        );
        ensure!(
            !a.members[..i]
                .iter()
                .any(|n| n.struct_name == m.struct_name && n.member == m.member),
            "member {}.{} listed twice",
            m.struct_name,
            m.member
        );
        // The BTF's `Layout` shifts only within the member's first byte.
        ensure!(
            m.at.is_none_or(|(_, shift)| shift < 8),
            "member {}.{}: shift past a byte",
            m.struct_name,
            m.member
        );
    }
    for (i, c) in a.constants.iter().enumerate() {
        ensure!(
            identifier(&c.name),
            "constant {:?} is not an identifier",
            c.name
        );
        ensure!(
            !a.constants[..i].iter().any(|d| d.name == c.name),
            "constant {} listed twice",
            c.name
        );
    }
    ensure!(
        !doc.identity.release.is_empty() && doc.identity.release.len() <= MAX_NAME,
        "bad release"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernel::{btf::testing::Builder, offsets::btf::tests::kernel_into};

    const NAMES: [&str; 3] = ["netpoll_setup", "__netpoll_setup", "netpoll_poll_dev"];

    /// A lab-shaped kernel BTF with two of the three traced functions.
    fn blob(bitfield: bool) -> Vec<u8> {
        let mut b = Builder::new();
        kernel_into(&mut b, bitfield);
        let int = b.int("int", 4);
        b.func("netpoll_setup", int);
        b.func("__netpoll_setup", int);
        b.finish()
    }

    fn id(data: &[u8]) -> Identity {
        Identity::of_bytes("6.12.9-amd64", data)
    }

    #[test]
    fn the_hash_is_pinned_and_does_not_depend_on_how_the_file_is_read() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = id(&data);
        // Pinned: a change of algorithm must be a new SCHEMA, never a silent change.
        assert_eq!(whole.hash, Some(0x7d71_a8c9_9d36_6c5b), "{:?}", whole.hash);
        // The documented steps, by hand: one zero-padded word, then the size.
        let step = |h: u64, w: u64| {
            let h = (h ^ w).wrapping_mul(0x100_0000_01b3);
            h ^ (h >> 32)
        };
        assert_eq!(
            Identity::of_bytes("r", b"abc").hash,
            Some(step(step(0xcbf2_9ce4_8422_2325, 0x0063_6261), 3))
        );
        assert_eq!(whole.size, 1000);
        for piece in [1, 3, 7, 8, 9, 64, 999] {
            let mut h = IdentityHasher::default();
            for c in data.chunks(piece) {
                h.update(c);
            }
            assert_eq!(h.finish("6.12.9-amd64"), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn any_changed_byte_size_or_release_changes_the_identity() {
        let data = blob(true);
        let base = id(&data);
        for i in [0, 1, 7, 8, data.len() / 2, data.len() - 1] {
            for bit in [0, 7] {
                let mut d = data.clone();
                d[i] ^= 1 << bit;
                assert_ne!(id(&d).hash, base.hash, "byte {i} bit {bit}");
            }
        }
        let mut longer = data.clone();
        longer.push(0);
        assert_ne!(id(&longer), base);
        assert_ne!(id(&longer).hash, base.hash, "a trailing zero byte");
        assert_ne!(Identity::of_bytes("6.12.10-amd64", &data), base);
    }

    #[test]
    fn a_build_id_identity_never_matches_a_hashed_one() {
        let data = blob(true);
        let hashed = id(&data);
        let built = Identity::of_build("6.12.9-amd64", data.len() as u64, "ab12".into());
        assert_ne!(built, hashed);
        assert_ne!(
            built,
            Identity::of_build("6.12.9-amd64", data.len() as u64, "ab13".into())
        );
        assert_ne!(built, Identity::of_build("6.12.9-amd64", 1, "ab12".into()));
        // The stored document says which it is; a hashed one has no build_id field.
        let facts = Facts::gather(&Btf::parse(&data).unwrap(), &["netpoll_setup"]);
        let doc = String::from_utf8(encode(&built, &facts)).unwrap();
        assert!(
            doc.contains("\"build_id\": \"ab12\"") && !doc.contains("\"hash\""),
            "{doc}"
        );
        assert_eq!(decode(doc.as_bytes(), &built).unwrap(), facts);
        assert!(decode(doc.as_bytes(), &hashed).is_err());
    }

    #[test]
    fn recorded_answers_replay_to_the_same_config_as_the_btf() {
        for bitfield in [false, true] {
            let data = blob(bitfield);
            let btf = Btf::parse(&data).unwrap();
            let direct = layout::resolve(&btf);
            let facts = Facts::gather(&btf, &NAMES);
            assert_eq!(facts.resolve(), Some(direct.clone()));
            assert_eq!(facts.layout.members.len(), 19);
            assert_eq!(facts.layout.constants.len(), 3);
            assert_eq!(facts.present(&NAMES), Some(vec![true, true, false]));
            assert_eq!(facts.index, btf.function_index(&NAMES));
            // Through the document too.
            let back = decode(&encode(&id(&data), &facts), &id(&data)).unwrap();
            assert_eq!(back, facts);
            assert_eq!(back.resolve(), Some(direct));
        }
    }

    #[test]
    fn a_question_not_recorded_is_a_miss_not_a_none() {
        let btf = Btf::parse(&blob(false)).unwrap();
        let mut facts = Facts::gather(&btf, &NAMES);
        assert_eq!(facts.present(&["netpoll_setup", "other_function"]), None);
        let replay = Replay::new(&facts.layout);
        assert_eq!(Layout::member(&replay, "net_device", "mtu"), None);
        assert!(replay.missed());
        facts.layout.members.retain(|m| m.member != "ifindex");
        assert_eq!(facts.resolve(), None);
        let mut facts = Facts::gather(&btf, &NAMES);
        facts.layout.constants.clear();
        assert_eq!(facts.resolve(), None);
        // An answer "absent" is an answer.
        let mut facts = Facts::gather(&btf, &NAMES);
        facts.layout.members[0].at = None;
        assert!(
            facts
                .resolve()
                .is_some_and(|(_, missing)| missing == ["net_device.name"])
        );
    }

    #[test]
    fn another_identity_or_schema_is_refused() {
        let data = blob(true);
        let facts = Facts::gather(&Btf::parse(&data).unwrap(), &NAMES);
        let doc = encode(&id(&data), &facts);
        assert!(decode(&doc, &id(&data)).is_ok());
        let mut changed = data.clone();
        changed[40] ^= 1;
        let e = decode(&doc, &id(&changed)).unwrap_err().to_string();
        assert!(e.contains("another BTF"), "{e}");
        assert!(decode(&doc, &Identity::of_bytes("6.1.0-1-amd64", &data)).is_err());
        let mut size = id(&data);
        size.size += 1;
        assert!(decode(&doc, &size).is_err());
        let other =
            String::from_utf8(doc.clone())
                .unwrap()
                .replacen("\"schema\": 3", "\"schema\": 2", 1);
        let e = decode(other.as_bytes(), &id(&data))
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema 2"), "{e}");
    }

    #[test]
    fn oversized_garbled_or_inconsistent_documents_are_refused() {
        let data = blob(false);
        let live = id(&data);
        let facts = Facts::gather(&Btf::parse(&data).unwrap(), &NAMES);
        let doc = String::from_utf8(encode(&live, &facts)).unwrap();
        let mut big = doc.clone().into_bytes();
        big.resize(MAX_DOCUMENT + 1, b' ');
        assert!(
            decode(&big, &live)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
        for bad in [&doc[..doc.len() / 2], "", "[]", "\u{0}\u{1}"] {
            assert!(decode(bad.as_bytes(), &live).is_err(), "{bad:?}");
        }
        let tc = format!("\"type_count\": {}", facts.index.type_count);
        let edits: [(&str, &str); 7] = [
            // An unknown key.
            ("\"schema\": 3,", "\"schema\": 3, \"extra\": 0,"),
            // A function present without a type id, and one with a type id listed absent.
            ("\"present\": false", "\"present\": true"),
            ("\"present\": true", "\"present\": false"),
            // Not an identifier.
            ("\"member\": \"name\"", "\"member\": \"na me\""),
            // A shift past a byte.
            ("264,\n          0", "264,\n          9"),
            // A duplicate answer.
            ("\"member\": \"ifindex\"", "\"member\": \"name\""),
            // A type id past the type count.
            (&tc, "\"type_count\": 2"),
        ];
        for (from, to) in edits {
            assert!(
                doc.contains(from),
                "the test's edit {from:?} does not apply to:\n{doc}"
            );
            let edited = doc.replacen(from, to, 1);
            assert!(
                decode(edited.as_bytes(), &live).is_err(),
                "accepted after {from:?} -> {to:?}"
            );
        }
    }
}
