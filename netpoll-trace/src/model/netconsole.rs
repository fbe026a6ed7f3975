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
    pub last_seq: Option<u64>,
}

/// Most messages being reassembled per sender; a sender sending only first fragments
/// cannot grow the receiver without bound.
const MAX_OPEN: usize = 64;

/// Reassembles fragments and accounts per sender.
#[derive(Debug, Default)]
pub struct Receiver {
    senders: BTreeMap<String, Sender>,
}

#[derive(Debug, Default)]
struct Sender {
    stats: SenderStats,
    /// seq -> (header of the first fragment seen, text so far by offset).
    open: BTreeMap<u64, (Header, BTreeMap<usize, String>)>,
}

impl Receiver {
    /// Takes one datagram from `from`; returns the messages it completes.
    pub fn take(&mut self, from: &str, bytes: &[u8]) -> Vec<Message> {
        let s = self.senders.entry(from.to_string()).or_default();
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
                let seq = h.seq;
                if !s.open.contains_key(&seq) && s.open.len() >= MAX_OPEN {
                    s.open.pop_first();
                    s.stats.incomplete += 1;
                }
                let (first, parts) = s
                    .open
                    .entry(seq)
                    .or_insert_with(|| (h.clone(), BTreeMap::new()));
                parts.insert(off, text);
                let have: usize = parts.values().map(String::len).sum();
                if have < len {
                    return Vec::new();
                }
                let first = first.clone();
                let whole: String = s
                    .open
                    .remove(&seq)
                    .map(|(_, p)| p.into_values().collect())
                    .unwrap_or_default();
                s.account(seq);
                vec![message(Some(&first), whole)]
            }
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
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[2Jb\tc\r"), "a\\x1b[2Jb\tc\\x0d");
    }
}
