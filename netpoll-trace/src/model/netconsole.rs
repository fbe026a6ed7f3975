//! What netconsole puts on the wire, decoded, and per-sender accounting of it: the
//! plain format (the message text) and the extended one
//! (Documentation/networking/netconsole.rst): `[release,]level,seq,ts_us,cont[,ncfrag=off/len];text`,
//! dictionary lines after the text, long messages split into fragments. Sequence
//! numbers are the kernel's printk ring's, so a gap is a message the kernel wrote and
//! the receiver never got.

use std::collections::BTreeMap;

use serde::Serialize;

/// One datagram, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Plain netconsole: text only.
    Plain(String),
    /// Extended netconsole: a whole message or one fragment of it.
    Extended(Header, String),
}

/// The extended header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The kernel release, when the target has `release` enabled.
    pub release: Option<String>,
    pub level: u8,
    pub seq: u64,
    pub ts_us: u64,
    /// `c`: continues the previous record.
    pub cont: bool,
    /// (offset, total length) of this fragment's text in the whole message.
    pub frag: Option<(usize, usize)>,
}

/// Decodes a datagram. Anything that does not parse as an extended header is plain
/// text (a plain target sends arbitrary console text).
pub fn decode(bytes: &[u8]) -> Packet {
    let text = String::from_utf8_lossy(bytes);
    match text
        .split_once(';')
        .and_then(|(h, rest)| parse_header(h).map(|h| (h, rest)))
    {
        Some((h, rest)) => Packet::Extended(h, rest.to_string()),
        None => Packet::Plain(text.into_owned()),
    }
}

fn parse_header(h: &str) -> Option<Header> {
    let fields: Vec<&str> = h.split(',').collect();
    // The release, when present, is the one field before the level that is not a number.
    let (release, rest) = match fields.first()?.parse::<u8>() {
        Ok(_) => (None, &fields[..]),
        Err(_) => (Some(fields[0].to_string()), &fields[1..]),
    };
    let [level, seq, ts, cont, extra @ ..] = rest else {
        return None;
    };
    let cont = match *cont {
        "-" => false,
        "c" => true,
        _ => return None,
    };
    let mut frag = None;
    for e in extra {
        let (k, v) = e.split_once('=')?;
        if k == "ncfrag" {
            let (off, len) = v.split_once('/')?;
            frag = Some((off.parse().ok()?, len.parse().ok()?));
        }
    }
    Some(Header {
        release,
        level: level.parse().ok()?,
        seq: seq.parse().ok()?,
        ts_us: ts.parse().ok()?,
        cont,
        frag,
    })
}

/// A message as received: whole, or reassembled from its fragments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub from: String,
    pub seq: Option<u64>,
    pub level: Option<u8>,
    pub ts_us: Option<u64>,
    pub release: Option<String>,
    pub text: String,
}

/// Per-sender counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SenderStats {
    pub messages: u64,
    /// Extended messages whose sequence number skipped ahead: the number of messages
    /// skipped (lost between the kernel and here).
    pub gaps: u64,
    /// Sequence numbers at or below one already seen (duplicates, reordering, or the
    /// sender rebooted); not counted as gaps.
    pub out_of_order: u64,
    /// Fragmented messages never completed (evicted, or still open at the end).
    pub incomplete: u64,
    /// Fragments that cannot be part of a message (a total over `MAX_MESSAGE`, or a piece
    /// outside its total): dropped.
    pub malformed: u64,
    pub last_seq: Option<u64>,
}

/// Most messages being reassembled per sender; a sender sending only first fragments
/// cannot grow the receiver without bound.
const MAX_OPEN: usize = 64;
/// Longest message reassembled. netconsole's own are far shorter (a printk record's text
/// is at most 1 KiB, plus its dictionary or userdata); a larger total is a bad fragment.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Most bytes of unfinished messages kept per sender; the oldest go first.
pub const MAX_OPEN_BYTES: usize = 16 * 1024;
/// Most senders (source `ip:port`, which anyone can forge) tracked at once; the one heard
/// from least recently is forgotten. With the limits above, what fragments can hold is
/// bounded by MAX_SENDERS x MAX_OPEN_BYTES (16 MiB).
pub const MAX_SENDERS: usize = 1024;

/// Reassembles fragments and accounts per sender, within the bounds above.
#[derive(Debug, Default)]
pub struct Receiver {
    senders: BTreeMap<String, Sender>,
    /// A clock of datagrams, for "heard from least recently".
    tick: u64,
    /// Senders forgotten to make room, and what they had counted.
    forgotten: Forgotten,
}

/// What the receiver no longer tracks per sender.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    pub senders: u64,
    pub messages: u64,
}

#[derive(Debug, Default)]
struct Sender {
    stats: SenderStats,
    /// seq -> the message being reassembled.
    open: BTreeMap<u64, Open>,
    /// Bytes held by `open`.
    open_bytes: usize,
    last_heard: u64,
}

#[derive(Debug)]
struct Open {
    /// The header of the first fragment seen.
    first: Header,
    /// Text so far by offset.
    parts: BTreeMap<usize, String>,
    /// Bytes in `parts` (kept, not summed again per datagram).
    have: usize,
}

impl Receiver {
    /// Takes one datagram from `from`; returns the messages it completes.
    pub fn take(&mut self, from: &str, bytes: &[u8]) -> Vec<Message> {
        self.tick += 1;
        if !self.senders.contains_key(from) && self.senders.len() >= MAX_SENDERS {
            self.forget_one();
        }
        let s = self.senders.entry(from.to_string()).or_default();
        s.last_heard = self.tick;
        let message = |h: Option<&Header>, text: String| Message {
            kind: "netconsole",
            from: from.to_string(),
            seq: h.map(|h| h.seq),
            level: h.map(|h| h.level),
            ts_us: h.map(|h| h.ts_us),
            release: h.and_then(|h| h.release.clone()),
            text,
        };
        match decode(bytes) {
            Packet::Plain(text) => {
                s.stats.messages += 1;
                vec![message(None, text)]
            }
            Packet::Extended(h, text) => {
                let Some((off, len)) = h.frag else {
                    s.account(h.seq);
                    return vec![message(Some(&h), text)];
                };
                match s.fragment(h, off, len, text) {
                    Some((first, whole)) => {
                        s.account(first.seq);
                        vec![message(Some(&first), whole)]
                    }
                    None => Vec::new(),
                }
            }
        }
    }

    /// Forgets the sender heard from least recently.
    fn forget_one(&mut self) {
        let Some(key) = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.last_heard)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        if let Some(s) = self.senders.remove(&key) {
            self.forgotten.senders += 1;
            self.forgotten.messages += s.stats.messages;
        }
    }

    /// Per-sender counts; messages still being reassembled count as incomplete.
    pub fn summary(&self) -> BTreeMap<String, SenderStats> {
        self.senders
            .iter()
            .map(|(k, s)| {
                let mut st = s.stats.clone();
                st.incomplete += s.open.len() as u64;
                (k.clone(), st)
            })
            .collect()
    }

    /// The senders forgotten to stay within MAX_SENDERS.
    pub fn forgotten(&self) -> &Forgotten {
        &self.forgotten
    }

    /// Whether every bound above holds, with each sender's byte count true to what it holds
    /// (the fuzz target's invariant).
    pub fn within_bounds(&self) -> bool {
        self.senders.len() <= MAX_SENDERS
            && self.senders.values().all(|s| {
                s.open.len() <= MAX_OPEN
                    && s.open_bytes <= MAX_OPEN_BYTES
                    && s.open_bytes == s.open.values().map(|o| o.have).sum::<usize>()
                    && s.open
                        .values()
                        .all(|o| o.have == o.parts.values().map(String::len).sum::<usize>())
            })
    }
}

impl Sender {
    fn account(&mut self, seq: u64) {
        self.stats.messages += 1;
        match self.stats.last_seq {
            Some(last) if seq > last => {
                self.stats.gaps += seq - last - 1;
                self.stats.last_seq = Some(seq);
            }
            Some(_) => self.stats.out_of_order += 1,
            None => self.stats.last_seq = Some(seq),
        }
    }

    /// One fragment (`text` at `off` of a message `len` long); the message's first header
    /// and whole text once every byte of it is there.
    fn fragment(
        &mut self,
        h: Header,
        off: usize,
        len: usize,
        text: String,
    ) -> Option<(Header, String)> {
        if len == 0 || len > MAX_MESSAGE || off.checked_add(text.len()).is_none_or(|end| end > len)
        {
            self.stats.malformed += 1;
            return None;
        }
        let seq = h.seq;
        if !self.open.contains_key(&seq) && self.open.len() >= MAX_OPEN {
            self.evict_oldest();
        }
        let open = self.open.entry(seq).or_insert_with(|| Open {
            first: h,
            parts: BTreeMap::new(),
            have: 0,
        });
        let added = text.len();
        if let Some(old) = open.parts.insert(off, text) {
            open.have -= old.len();
            self.open_bytes -= old.len();
        }
        open.have += added;
        self.open_bytes += added;
        // Room for this message: the oldest others go (len <= MAX_OPEN_BYTES, so this
        // one alone always fits).
        while self.open_bytes > MAX_OPEN_BYTES && self.open.keys().next() != Some(&seq) {
            self.evict_oldest();
        }
        while self.open_bytes > MAX_OPEN_BYTES && self.open.len() > 1 {
            let newest = *self.open.keys().next_back()?;
            if newest == seq {
                break;
            }
            self.evict(newest);
        }
        let open = self.open.get(&seq)?;
        if open.have < len || !covers(&open.parts, len) {
            return None;
        }
        let open = self.open.remove(&seq)?;
        self.open_bytes -= open.have;
        Some((open.first, open.parts.into_values().collect()))
    }

    fn evict_oldest(&mut self) {
        if let Some(&seq) = self.open.keys().next() {
            self.evict(seq);
        }
    }

    fn evict(&mut self, seq: u64) {
        if let Some(o) = self.open.remove(&seq) {
            self.open_bytes -= o.have;
            self.stats.incomplete += 1;
        }
    }
}

/// Whether `parts` (text by offset) cover 0..len exactly, end to end.
fn covers(parts: &BTreeMap<usize, String>, len: usize) -> bool {
    let mut at = 0;
    for (&off, text) in parts {
        if off != at {
            return false;
        }
        at += text.len();
    }
    at == len
}

/// Text from the network made safe for a terminal: control characters (escape
/// sequences included) shown as `\xNN`, tabs kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plain_and_extended_packets() {
        assert_eq!(
            decode(b"hello world\n"),
            Packet::Plain("hello world\n".into())
        );
        let Packet::Extended(h, text) =
            decode(b"6,416,1758426,-;netconsole: network logging started\n")
        else {
            panic!("not extended")
        };
        assert_eq!(
            (h.level, h.seq, h.ts_us, h.cont, h.release, h.frag),
            (6, 416, 1758426, false, None, None)
        );
        assert_eq!(text, "netconsole: network logging started\n");
        let Packet::Extended(h, _) = decode(b"6.1.0-48-amd64,4,17,99,c;x") else {
            panic!("not extended")
        };
        assert_eq!(
            (h.release.as_deref(), h.level, h.seq, h.cont),
            (Some("6.1.0-48-amd64"), 4, 17, true)
        );
        let Packet::Extended(h, _) = decode(b"6,9,1,-,ncfrag=0/31;first") else {
            panic!("not extended")
        };
        assert_eq!(h.frag, Some((0, 31)));
        // Text that merely contains a semicolon is plain.
        assert!(matches!(decode(b"a;b"), Packet::Plain(_)));
        assert!(matches!(decode(b"6,x,1,-;y"), Packet::Plain(_)));
    }

    #[test]
    fn gaps_count_the_messages_skipped_per_sender() {
        let mut r = Receiver::default();
        for seq in [10, 11, 14, 15] {
            r.take("a", format!("6,{seq},1,-;m").as_bytes());
        }
        r.take("b", b"6,100,1,-;m");
        r.take("a", b"6,12,1,-;late");
        let s = r.summary();
        assert_eq!(
            (
                s["a"].messages,
                s["a"].gaps,
                s["a"].out_of_order,
                s["a"].last_seq
            ),
            (5, 2, 1, Some(15))
        );
        assert_eq!((s["b"].messages, s["b"].gaps), (1, 0));
    }

    #[test]
    fn fragments_are_reassembled_in_any_order() {
        let mut r = Receiver::default();
        assert!(r.take("a", b"6,7,5,-,ncfrag=5/10;world").is_empty());
        let m = r.take("a", b"6,7,5,-,ncfrag=0/10;hello");
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].text.as_str(), m[0].seq), ("helloworld", Some(7)));
        assert_eq!(r.summary()["a"].messages, 1);
    }

    #[test]
    fn endless_first_fragments_stay_bounded() {
        let mut r = Receiver::default();
        for seq in 0..1000 {
            r.take("a", format!("6,{seq},1,-,ncfrag=0/100;x").as_bytes());
        }
        let s = &r.summary()["a"];
        assert_eq!(s.incomplete, 1000);
        assert!(r.senders["a"].open.len() <= MAX_OPEN);
    }

    #[test]
    fn a_fragment_outside_its_total_or_an_absurd_total_is_dropped_not_kept() {
        let mut r = Receiver::default();
        // The kernel never sends a total this large; keeping it would hold memory forever.
        assert!(r.take("a", b"6,1,1,-,ncfrag=0/4294967295;x").is_empty());
        assert!(r.take("a", b"6,2,1,-,ncfrag=8/10;abcdef").is_empty());
        assert!(r.take("a", b"6,3,1,-,ncfrag=0/0;").is_empty());
        assert!(r.senders["a"].open.is_empty());
        assert_eq!(r.summary()["a"].malformed, 3);
    }

    #[test]
    fn overlapping_or_repeated_fragments_do_not_complete_a_message_early() {
        let mut r = Receiver::default();
        assert!(r.take("a", b"6,7,5,-,ncfrag=0/10;hello").is_empty());
        assert!(r.take("a", b"6,7,5,-,ncfrag=0/10;hello").is_empty());
        assert!(r.take("a", b"6,7,5,-,ncfrag=2/10;llowo").is_empty());
        assert_eq!(r.senders["a"].open_bytes, 10);
        let m = r.take("a", b"6,7,5,-,ncfrag=5/10;world");
        assert_eq!(m.len(), 0, "{m:?}: 0..5, 2..7 and 5..10 are not end to end");
        assert!(r.senders["a"].open_bytes <= MAX_OPEN_BYTES);
    }

    #[test]
    fn open_bytes_per_sender_stay_bounded() {
        let mut r = Receiver::default();
        let piece = "x".repeat(1000);
        for seq in 0..200u64 {
            r.take(
                "a",
                format!("6,{seq},1,-,ncfrag=0/{MAX_MESSAGE};{piece}").as_bytes(),
            );
            assert!(r.senders["a"].open_bytes <= MAX_OPEN_BYTES);
        }
        let held: usize = r.senders["a"].open.values().map(|o| o.have).sum();
        assert_eq!(held, r.senders["a"].open_bytes);
    }

    #[test]
    fn senders_are_bounded_and_the_least_recent_is_forgotten() {
        let mut r = Receiver::default();
        r.take("keep", b"6,1,1,-;first");
        for port in 0..(MAX_SENDERS as u32 + 10) {
            r.take(&format!("10.0.0.1:{port}"), b"6,1,1,-;m");
            if port % 100 == 0 {
                r.take("keep", b"6,2,1,-;still here");
            }
        }
        assert_eq!(r.senders.len(), MAX_SENDERS);
        assert!(r.senders.contains_key("keep"), "heard from recently: kept");
        assert_eq!(r.forgotten().senders, 11);
        assert_eq!(r.forgotten().messages, 11);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[2Jb\tc\r"), "a\\x1b[2Jb\tc\\x0d");
    }
}
