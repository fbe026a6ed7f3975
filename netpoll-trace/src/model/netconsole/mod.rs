//! What netconsole puts on the wire, decoded, and per-sender accounting of it: the
//! plain format (the message text) and the extended one
//! (Documentation/networking/netconsole.rst): `[release,]level,seq,ts_us,cont[,ncfrag=off/len];text`,
//! then, each on its own line as ` KEY=VALUE`, the kernel's dictionary (`SUBSYSTEM=`,
//! `DEVICE=`), the target's userdata, and its sysdata (`cpu=`, `taskname=`, `release=`,
//! `msgid=`, in that order, 6.14 on); long messages split into fragments. Sequence numbers
//! are the kernel's printk ring's, so a gap is a message the kernel wrote and the receiver
//! never got (or one never handed to the console: printk's rate limit, the console log
//! level); `msgid` counts only what netconsole sent to the target, so where a sender has
//! it, its gaps are the messages lost on the way.

use core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

mod format;
mod open;
mod window;

pub use format::*;
use open::{OPEN_OVERHEAD, Open, PART_OVERHEAD, Placed};
use window::{Move, Step, Window};

/// A message as received: whole, or reassembled from its fragments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub from: SocketAddr,
    pub seq: Option<u64>,
    pub level: Option<u8>,
    pub ts_us: Option<u64>,
    /// The kernel release: the header's (`r` targets) or sysdata's `release=`.
    pub release: Option<String>,
    /// Where `release` came from: `header` or `sysdata` (null without one).
    pub release_in: Option<&'static str>,
    /// sysdata: netconsole's message id, the CPU and the task that wrote it.
    pub msgid: Option<u32>,
    pub cpu: Option<u32>,
    pub taskname: Option<String>,
    /// The message text, without the lines after it.
    pub text: String,
    /// The kernel's dictionary (`SUBSYSTEM`, `DEVICE`).
    pub dict: BTreeMap<String, String>,
    /// The target's userdata.
    pub userdata: BTreeMap<String, String>,
}

impl Message {
    fn plain(from: SocketAddr, text: String) -> Message {
        Message {
            kind: "netconsole",
            from,
            seq: None,
            level: None,
            ts_us: None,
            release: None,
            release_in: None,
            msgid: None,
            cpu: None,
            taskname: None,
            text,
            dict: BTreeMap::new(),
            userdata: BTreeMap::new(),
        }
    }

    fn extended(from: SocketAddr, h: Header, body: String) -> Message {
        let (text, f) = split_body(body);
        Message {
            kind: "netconsole",
            from,
            seq: Some(h.seq),
            level: Some(h.level),
            ts_us: Some(h.ts_us),
            release_in: match (&h.release, &f.release) {
                (Some(_), _) => Some("header"),
                (None, Some(_)) => Some("sysdata"),
                (None, None) => None,
            },
            release: h.release.or(f.release),
            msgid: f.msgid,
            cpu: f.cpu,
            taskname: f.taskname,
            text,
            dict: f.dict,
            userdata: f.userdata,
        }
    }
}

/// Per-sender counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SenderStats {
    pub messages: u64,
    /// Messages lost before they got here, as the numbers skipped: by `msgid` where the
    /// sender has it (messages netconsole sent), else by the kernel's sequence number
    /// (which also skips records never handed to the console). A number that arrives late,
    /// within REORDER_WINDOW of the highest, takes its gap back.
    pub gaps: u64,
    /// Numbers at or below one already seen (duplicates, reordering, or the sender
    /// rebooted: a step back of REORDER_WINDOW or more, after which gaps count from the
    /// new numbers); not counted as gaps.
    pub out_of_order: u64,
    /// Fragmented messages never completed (evicted, dropped to stay within
    /// MAX_OPEN_BYTES, or still open at the end).
    pub incomplete: u64,
    /// Fragments that cannot be part of a message (empty, a total over `MAX_MESSAGE` or
    /// other than the message's first fragment gave, a piece outside its total or
    /// overlapping one already held): dropped.
    pub malformed: u64,
    pub last_seq: Option<u64>,
    pub last_msgid: Option<u32>,
}

impl SenderStats {
    /// Adds another's counts (one sender seen by two workers).
    pub fn add(&mut self, o: &SenderStats) {
        self.messages = self.messages.saturating_add(o.messages);
        self.gaps = self.gaps.saturating_add(o.gaps);
        self.out_of_order = self.out_of_order.saturating_add(o.out_of_order);
        self.incomplete = self.incomplete.saturating_add(o.incomplete);
        self.malformed = self.malformed.saturating_add(o.malformed);
        self.last_seq = self.last_seq.max(o.last_seq);
        self.last_msgid = self.last_msgid.max(o.last_msgid);
    }
}

/// Most messages being reassembled per sender; a sender sending only first fragments
/// cannot grow the receiver without bound.
const MAX_OPEN: usize = 64;
/// Longest message reassembled. netconsole's own are far shorter (a printk record's text
/// is at most 1 KiB, plus its dictionary or userdata); a larger total is a bad fragment.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Most a sender's unfinished messages may cost (`Open::cost`: their bytes and what
/// holding them takes besides); the oldest go first, and one that alone costs more is
/// dropped. Above MAX_MESSAGE so that one in netconsole's 1,000-byte datagrams fits.
pub const MAX_OPEN_BYTES: usize = 20 * 1024;
const _: () = assert!(
    MAX_MESSAGE + MAX_MESSAGE.div_ceil(900) * PART_OVERHEAD + 64 + OPEN_OVERHEAD <= MAX_OPEN_BYTES
);
/// Most senders (source `ip:port`, which anyone can forge) tracked at once by one
/// receiver; the ones heard from least recently are forgotten. With the limits above,
/// what fragments can hold is bounded by MAX_SENDERS x MAX_OPEN_BYTES (20 MiB) for one
/// worker, and by `worker_share` x workers x MAX_OPEN_BYTES over all of `receive`'s.
pub const MAX_SENDERS: usize = 1024;

/// Senders one of `workers` receivers tracks: an even share of MAX_SENDERS and a quarter
/// more, and 16 (at most MAX_SENDERS). The kernel hashes senders to the workers' sockets
/// (SO_REUSEPORT) unevenly: with the bare even share, 1,024 senders over 2 workers
/// overflowed one of them, which forgot and re-learnt senders all along and lost their
/// gaps (netconsblaster, 2 workers: "forgot 33824 sender(s)"; one socket got ~560). All
/// workers together keep 1.25 x MAX_SENDERS + 16 per worker (2 workers: 1,312, 25.6 MiB
/// of fragments at most).
pub fn worker_share(workers: usize) -> usize {
    let even = MAX_SENDERS.div_ceil(workers.max(1));
    (even + even / 4 + 16).min(MAX_SENDERS)
}

/// Reassembles fragments and accounts per sender, within the bounds above.
#[derive(Debug)]
pub struct Receiver {
    senders: HashMap<SocketAddr, Sender>,
    /// Most senders tracked (MAX_SENDERS, or a worker's share of it).
    max_senders: usize,
    /// A clock of datagrams, for "heard from least recently".
    tick: u64,
    /// Senders forgotten to make room, and what they had counted.
    forgotten: Forgotten,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new(MAX_SENDERS)
    }
}

/// What the receiver no longer tracks per sender: each time a sender was forgotten (one
/// forgotten twice counts twice) and what it had counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    pub senders: u64,
    pub messages: u64,
    pub gaps: u64,
    /// Its incomplete messages, those still open when it was forgotten included.
    pub incomplete: u64,
}

impl Forgotten {
    /// Adds another's counts (another worker's).
    pub fn add(&mut self, o: &Forgotten) {
        self.senders = self.senders.saturating_add(o.senders);
        self.messages = self.messages.saturating_add(o.messages);
        self.gaps = self.gaps.saturating_add(o.gaps);
        self.incomplete = self.incomplete.saturating_add(o.incomplete);
    }
}

#[derive(Debug, Default)]
struct Sender {
    stats: SenderStats,
    /// The kernel's sequence numbers seen since the sender (re)started.
    seq: Option<Window>,
    /// msgid, unwrapped past its 2^32 wrap, likewise.
    msgid: Option<Window>,
    /// seq -> the message being reassembled.
    open: BTreeMap<u64, Open>,
    /// What `open` costs (kept, not summed again per datagram).
    open_bytes: usize,
    last_heard: u64,
}

impl Receiver {
    /// A receiver that tracks at most `max_senders` senders (at least one).
    pub fn new(max_senders: usize) -> Receiver {
        Receiver {
            senders: HashMap::new(),
            max_senders: max_senders.max(1),
            tick: 0,
            forgotten: Forgotten::default(),
        }
    }

    /// Takes one datagram from `from`; returns the message it completes, if any.
    pub fn take(&mut self, from: SocketAddr, bytes: &[u8]) -> Option<Message> {
        self.tick = self.tick.saturating_add(1);
        if !self.senders.contains_key(&from) && self.senders.len() >= self.max_senders {
            self.forget_least_recent();
        }
        let s = self.senders.entry(from).or_default();
        s.last_heard = self.tick;
        match decode(bytes) {
            Packet::Plain(text) => {
                s.stats.messages = s.stats.messages.saturating_add(1);
                Some(Message::plain(from, text))
            }
            Packet::Extended(h, body) => {
                let (h, body) = match h.frag {
                    None => (h, decode_text(body)),
                    Some((off, len)) => s.fragment(h, off, len, body)?,
                };
                let m = Message::extended(from, h, body);
                s.account(m.seq.unwrap_or_default(), m.msgid);
                Some(m)
            }
        }
    }

    /// Forgets the senders heard from least recently: a 32nd of the bound at once (at
    /// least one), so a flood of new senders costs a sort per 32 of them, not a scan each.
    fn forget_least_recent(&mut self) {
        let n = (self.max_senders / 32).max(1);
        let mut by_age: Vec<(u64, SocketAddr)> = self
            .senders
            .iter()
            .map(|(k, s)| (s.last_heard, *k))
            .collect();
        let n = n.min(by_age.len());
        if n == 0 {
            return;
        }
        by_age.select_nth_unstable(n - 1);
        for (_, key) in &by_age[..n] {
            if let Some(s) = self.senders.remove(key) {
                self.forgotten.add(&Forgotten {
                    senders: 1,
                    messages: s.stats.messages,
                    gaps: s.stats.gaps,
                    incomplete: s.stats.incomplete.saturating_add(s.open.len() as u64),
                });
            }
        }
    }

    /// Per-sender counts; messages still being reassembled count as incomplete.
    pub fn summary(&self) -> BTreeMap<SocketAddr, SenderStats> {
        self.senders
            .iter()
            .map(|(k, s)| {
                let mut st = s.stats.clone();
                st.incomplete = st.incomplete.saturating_add(s.open.len() as u64);
                (*k, st)
            })
            .collect()
    }

    /// The senders forgotten to stay within the bound.
    pub fn forgotten(&self) -> &Forgotten {
        &self.forgotten
    }

    /// Whether every bound above holds, with each sender's cost true to what it holds
    /// (the fuzz target's invariant).
    pub fn within_bounds(&self) -> bool {
        self.senders.len() <= self.max_senders
            && self.senders.values().all(|s| {
                s.open.len() <= MAX_OPEN
                    && s.open_bytes <= MAX_OPEN_BYTES
                    && s.open_bytes == s.open.values().map(Open::cost).sum::<usize>()
                    && s.open
                        .values()
                        .all(|o| o.total <= MAX_MESSAGE && o.consistent())
            })
    }
}

impl SenderStats {
    /// The gaps, said for what they can mean: by msgid they are messages netconsole sent
    /// that never arrived; by the kernel's sequence number they may also be records the
    /// console never got (below its log level, or rate-limited), which are no loss.
    pub fn gaps_phrase(&self) -> String {
        if self.last_msgid.is_some() {
            format!("{} gap(s) in msgid (messages lost)", self.gaps)
        } else {
            format!(
                "{} gap(s) in the kernel's sequence numbers (not received: lost, or never handed to the console, by its log level or rate limit)",
                self.gaps
            )
        }
    }
}

impl Sender {
    /// Counts a whole message: gaps by `msgid` where it has one (it wraps at 2^32: a
    /// step of more than half of that is backwards), else by `seq`. A step back beyond
    /// the window on either is a restart: both start again from this message.
    fn account(&mut self, seq: u64, msgid: Option<u32>) {
        self.stats.messages = self.stats.messages.saturating_add(1);
        let by_seq = Window::track(&mut self.seq, seq, |w| {
            if seq > w.high {
                Move::Ahead(seq - w.high)
            } else {
                Move::Back(w.high - seq)
            }
        });
        let by_msgid = msgid.map(|id| {
            Window::track(&mut self.msgid, u64::from(id), |w| {
                // The wire's 32 bits of the unwrapped highest.
                let last = w.high as u32;
                match id.wrapping_sub(last) {
                    step if step != 0 && step <= u32::MAX / 2 => Move::Ahead(u64::from(step)),
                    _ => Move::Back(u64::from(last.wrapping_sub(id))),
                }
            })
        });
        let step = if by_seq == Step::Restart || by_msgid == Some(Step::Restart) {
            self.seq = Some(Window::starting_at(seq));
            self.msgid = msgid.map(|id| Window::starting_at(u64::from(id)));
            Step::Restart
        } else {
            by_msgid.unwrap_or(by_seq)
        };
        let st = &mut self.stats;
        match step {
            Step::Ahead(skipped) => st.gaps = st.gaps.saturating_add(skipped),
            Step::Filled => {
                st.gaps = st.gaps.saturating_sub(1);
                st.out_of_order = st.out_of_order.saturating_add(1);
            }
            Step::Again | Step::Restart => st.out_of_order = st.out_of_order.saturating_add(1),
        }
        st.last_seq = self.seq.map(|w| w.high);
        st.last_msgid = self.msgid.map(|w| w.high as u32);
    }

    /// One fragment (`bytes` at `off` of a message `total` long); the message's first
    /// header and whole text once every byte of it is there.
    fn fragment(
        &mut self,
        h: Header,
        off: usize,
        total: usize,
        bytes: &[u8],
    ) -> Option<(Header, String)> {
        let within = off.checked_add(bytes.len()).is_some_and(|end| end <= total);
        // An empty piece would be held at no byte cost: none is ever sent.
        if bytes.is_empty() || total > MAX_MESSAGE || !within {
            return self.malformed();
        }
        let seq = h.seq;
        let Some(open) = self.open.get_mut(&seq) else {
            if bytes.len() == total {
                // Whole in one piece: nothing to hold.
                return Some((h, decode_text(bytes)));
            }
            if self.open.len() >= MAX_OPEN {
                self.evict_oldest();
            }
            let open = Open {
                first: h,
                total,
                parts: vec![(off, bytes.into())],
                have: bytes.len(),
            };
            self.open_bytes = self.open_bytes.saturating_add(open.cost());
            self.open.insert(seq, open);
            self.fit(seq);
            return None;
        };
        if open.total != total {
            return self.malformed();
        }
        let before = open.cost();
        match open.place(off, bytes) {
            Placed::New => {}
            Placed::Again => return None,
            Placed::Overlap => return self.malformed(),
        }
        let (after, whole) = (open.cost(), open.have == open.total);
        self.open_bytes = self.open_bytes.saturating_sub(before).saturating_add(after);
        if whole {
            let open = self.open.remove(&seq)?;
            self.open_bytes = self.open_bytes.saturating_sub(after);
            return Some(open.into_message());
        }
        self.fit(seq);
        None
    }

    fn malformed<T>(&mut self) -> Option<T> {
        self.stats.malformed = self.stats.malformed.saturating_add(1);
        None
    }

    /// Brings the cost back within MAX_OPEN_BYTES after `seq` grew: the oldest others go
    /// first, then `seq` itself if it alone costs more, so the bound always holds.
    fn fit(&mut self, seq: u64) {
        while self.open_bytes > MAX_OPEN_BYTES {
            let Some(&victim) = self
                .open
                .keys()
                .find(|&&k| k != seq)
                .or_else(|| self.open.keys().next())
            else {
                break;
            };
            self.evict(victim);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(&seq) = self.open.keys().next() {
            self.evict(seq);
        }
    }

    fn evict(&mut self, seq: u64) {
        if let Some(o) = self.open.remove(&seq) {
            self.open_bytes = self.open_bytes.saturating_sub(o.cost());
            self.stats.incomplete = self.stats.incomplete.saturating_add(1);
        }
    }
}

/// Text from the network made safe for a terminal: control characters (escape
/// sequences included) shown as `\xNN`, tabs kept.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender's address, by a short name (a..z: ports 1..26 on 10.0.0.1).
    fn at(name: &str) -> SocketAddr {
        let port = u16::from(name.as_bytes()[0] - b'a' + 1);
        SocketAddr::from(([10, 0, 0, 1], port))
    }

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
        assert_eq!(text, b"netconsole: network logging started\n");
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

    /// 12 arrives late: out of order, and no longer a gap (13 still is).
    #[test]
    fn gaps_count_the_messages_skipped_per_sender() {
        let mut r = Receiver::default();
        for seq in [10, 11, 14, 15] {
            r.take(at("a"), format!("6,{seq},1,-;m").as_bytes());
        }
        r.take(at("b"), b"6,100,1,-;m");
        r.take(at("a"), b"6,12,1,-;late");
        let s = r.summary();
        assert_eq!(
            (
                s[&at("a")].messages,
                s[&at("a")].gaps,
                s[&at("a")].out_of_order,
                s[&at("a")].last_seq
            ),
            (5, 1, 1, Some(15))
        );
        assert_eq!((s[&at("b")].messages, s[&at("b")].gaps), (1, 0));
    }

    #[test]
    fn fragments_are_reassembled_in_any_order() {
        let mut r = Receiver::default();
        assert!(r.take(at("a"), b"6,7,5,-,ncfrag=5/10;world").is_none());
        let m = r.take(at("a"), b"6,7,5,-,ncfrag=0/10;hello").unwrap();
        assert_eq!((m.text.as_str(), m.seq), ("helloworld", Some(7)));
        assert_eq!(r.summary()[&at("a")].messages, 1);
        // The longest message, in a kernel's datagrams (1,000 bytes with the header),
        // backwards: it fits the bound alone.
        let body = "y".repeat(MAX_MESSAGE);
        let head = |off: usize| format!("6.18.15+deb13-amd64,6,8,1,-,ncfrag={off}/{MAX_MESSAGE};");
        let chunk = 1000 - head(MAX_MESSAGE).len();
        let offsets: Vec<usize> = (0..MAX_MESSAGE).step_by(chunk).collect();
        let mut m = None;
        for &off in offsets.iter().rev() {
            let end = (off + chunk).min(MAX_MESSAGE);
            assert!(m.is_none());
            m = r.take(
                at("a"),
                format!("{}{}", head(off), &body[off..end]).as_bytes(),
            );
            assert!(r.within_bounds());
        }
        assert_eq!(m.map(|m| m.text.len()), Some(MAX_MESSAGE));
        assert_eq!(r.summary()[&at("a")].incomplete, 0);
    }

    #[test]
    fn endless_first_fragments_stay_bounded() {
        let mut r = Receiver::default();
        for seq in 0..1000 {
            r.take(at("a"), format!("6,{seq},1,-,ncfrag=0/100;x").as_bytes());
        }
        let s = &r.summary()[&at("a")];
        assert_eq!(s.incomplete, 1000);
        assert!(r.senders[&at("a")].open.len() <= MAX_OPEN);
    }

    #[test]
    fn a_fragment_outside_its_total_or_an_absurd_total_is_dropped_not_kept() {
        let mut r = Receiver::default();
        // The kernel never sends a total this large; keeping it would hold memory forever.
        assert!(r.take(at("a"), b"6,1,1,-,ncfrag=0/4294967295;x").is_none());
        assert!(r.take(at("a"), b"6,2,1,-,ncfrag=8/10;abcdef").is_none());
        assert!(r.take(at("a"), b"6,3,1,-,ncfrag=0/0;").is_none());
        assert!(r.senders[&at("a")].open.is_empty());
        assert_eq!(r.summary()[&at("a")].malformed, 3);
    }

    #[test]
    fn overlapping_or_repeated_fragments_do_not_complete_a_message_early() {
        let mut r = Receiver::default();
        assert!(r.take(at("a"), b"6,7,5,-,ncfrag=0/10;hello").is_none());
        assert!(r.take(at("a"), b"6,7,5,-,ncfrag=0/10;hello").is_none());
        // 2..7 overlaps 0..5: dropped as malformed, not held.
        assert!(r.take(at("a"), b"6,7,5,-,ncfrag=2/10;llowo").is_none());
        assert_eq!(r.senders[&at("a")].open[&7].have, 5);
        assert_eq!(r.summary()[&at("a")].malformed, 1);
        let m = r.take(at("a"), b"6,7,5,-,ncfrag=5/10;world");
        assert_eq!(m.map(|m| m.text), Some("helloworld".to_string()));
        assert!(r.within_bounds());
    }

    #[test]
    fn open_bytes_per_sender_stay_bounded() {
        let mut r = Receiver::default();
        let piece = "x".repeat(1000);
        for seq in 0..200u64 {
            r.take(
                at("a"),
                format!("6,{seq},1,-,ncfrag=0/{MAX_MESSAGE};{piece}").as_bytes(),
            );
            assert!(r.senders[&at("a")].open_bytes <= MAX_OPEN_BYTES);
        }
        let held: usize = r.senders[&at("a")].open.values().map(Open::cost).sum();
        assert_eq!(held, r.senders[&at("a")].open_bytes);
        assert!(r.within_bounds());
    }

    #[test]
    fn a_workers_share_holds_an_uneven_hash_of_max_senders() {
        assert_eq!(worker_share(1), MAX_SENDERS);
        // 1,024 senders hashed over 2 sockets: one got ~560 in the netconsblaster run.
        assert!(worker_share(2) >= 600, "{}", worker_share(2));
        for w in 1..=256 {
            assert!(
                worker_share(w) * w <= MAX_SENDERS * 5 / 4 + 18 * w,
                "{w} workers"
            );
            assert!(worker_share(w) >= MAX_SENDERS.div_ceil(w), "{w} workers");
        }
        assert_eq!(worker_share(0), MAX_SENDERS);
    }

    #[test]
    fn senders_are_bounded_and_the_least_recent_is_forgotten() {
        let mut r = Receiver::default();
        let keep = SocketAddr::from(([10, 0, 0, 2], 1));
        r.take(keep, b"6,1,1,-;first");
        let others = MAX_SENDERS as u16 + 10;
        for port in 0..others {
            r.take(SocketAddr::from(([10, 0, 0, 1], port)), b"6,1,1,-;m");
            if port % 100 == 0 {
                r.take(keep, b"6,2,1,-;still here");
            }
            assert!(r.senders.len() <= MAX_SENDERS);
        }
        assert!(r.senders.contains_key(&keep), "heard from recently: kept");
        // The first ports were heard from least recently: they went first.
        assert!(
            !r.senders
                .contains_key(&SocketAddr::from(([10, 0, 0, 1], 0)))
        );
        let forgotten = r.forgotten().senders;
        assert_eq!(forgotten + r.senders.len() as u64, u64::from(others) + 1);
        assert!(forgotten >= 11, "{forgotten}");
        assert_eq!(r.forgotten().messages, forgotten, "one message each");
    }

    #[test]
    fn a_receiver_can_be_held_to_a_smaller_share_of_senders() {
        let mut r = Receiver::new(10);
        for port in 0..100 {
            r.take(SocketAddr::from(([10, 0, 0, 1], port)), b"m");
            assert!(r.within_bounds());
        }
        assert_eq!(r.forgotten().senders, 90);
    }

    /// The datagrams of Documentation/networking/netconsole.rst's examples, byte for byte:
    /// userdata, then sysdata (taskname, release, cpu, msgid), each a ` KEY=VALUE` line.
    #[test]
    fn userdata_and_sysdata_lines_become_fields() {
        let mut r = Receiver::default();
        let m = r
            .take(
                at("a"),
                b"12,607,22085407756,-;This is a message\n foo=bar\n qux=baz\n",
            )
            .unwrap();
        assert_eq!(m.text, "This is a message");
        assert_eq!(
            m.userdata,
            BTreeMap::from([("foo".into(), "bar".into()), ("qux".into(), "baz".into())])
        );
        assert_eq!((m.cpu, m.msgid, m.release.as_deref()), (None, None, None));

        let m = r
            .take(
                at("b"),
                b"12,607,22085407756,-;This is a message\n taskname=echo\n",
            )
            .unwrap();
        assert_eq!(m.taskname.as_deref(), Some("echo"));
        assert!(m.userdata.is_empty());

        let m = r
            .take(
                at("c"),
                b"12,607,22085407756,-;This is a message\n release=6.14.0-rc6-01219-g3c027fbd941d\n",
            )
            .unwrap();
        assert_eq!(m.release.as_deref(), Some("6.14.0-rc6-01219-g3c027fbd941d"));
        assert_eq!(
            m.release_in,
            Some("sysdata"),
            "#29: where release came from"
        );
        let m = r
            .take(
                at("c2"),
                b"6.14.0,12,608,22085407756,-;A message
",
            )
            .unwrap();
        assert_eq!(
            (m.release.as_deref(), m.release_in),
            (Some("6.14.0"), Some("header"))
        );

        // A user's `cpu` key and the kernel's: the kernel's is the last.
        let m = r
            .take(
                at("d"),
                b"12,607,22085407756,-;This is a message\n cpu=1\n cpu=42\n",
            )
            .unwrap();
        assert_eq!(m.cpu, Some(42));
        assert_eq!(m.userdata, BTreeMap::from([("cpu".into(), "1".into())]));

        let m = r
            .take(at("e"), b"13,434,54928466,-;This is message #1\n msgid=1\n")
            .unwrap();
        assert_eq!(
            (m.seq, m.msgid, m.text.as_str()),
            (Some(434), Some(1), "This is message #1")
        );
    }

    /// What a 6.x kernel sends for a driver's message with every sysdata field and a
    /// userdata entry: the text, dev_printk's dictionary, userdata, then sysdata in
    /// prepare_sysdata's order; and with `release` prepended to the header.
    #[test]
    fn the_dictionary_userdata_and_every_sysdata_field_in_kernel_order() {
        let mut r = Receiver::default();
        let m = r
            .take(
                at("a"),
                b"6.18.15+deb13-amd64,6,1203,9501234,-;e1000 0000:00:03.0 eth0: NIC Link is Up\n \
SUBSYSTEM=pci\n DEVICE=+pci:0000:00:03.0\n rack=b12\n \
cpu=1\n taskname=kworker/1:2\n release=6.18.15+deb13-amd64\n msgid=77\n",
            )
            .unwrap();
        assert_eq!(m.text, "e1000 0000:00:03.0 eth0: NIC Link is Up");
        assert_eq!(
            m.dict,
            BTreeMap::from([
                ("SUBSYSTEM".into(), "pci".into()),
                ("DEVICE".into(), "+pci:0000:00:03.0".into())
            ])
        );
        assert_eq!(m.userdata, BTreeMap::from([("rack".into(), "b12".into())]));
        assert_eq!(
            (m.cpu, m.taskname.as_deref(), m.msgid, m.release.as_deref()),
            (
                Some(1),
                Some("kworker/1:2"),
                Some(77),
                Some("6.18.15+deb13-amd64")
            )
        );
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["msgid"], 77);
        assert_eq!(json["cpu"], 1);
        assert_eq!(json["taskname"], "kworker/1:2");
        assert_eq!(json["userdata"]["rack"], "b12");
        assert_eq!(json["dict"]["DEVICE"], "+pci:0000:00:03.0");
        assert_eq!(json["from"], "10.0.0.1:1");
    }

    /// netconsole splits the body, userdata and sysdata together when they pass 1000
    /// bytes (send_fragmented_body): the fields come out of the reassembled message.
    #[test]
    fn fields_split_across_fragments_are_reassembled() {
        let mut r = Receiver::default();
        let body = format!("{}\n cpu=0\n msgid=5\n", "x".repeat(990));
        let (a, b) = body.split_at(980);
        let len = body.len();
        assert!(
            r.take(at("a"), format!("4,9,1,-,ncfrag=0/{len};{a}").as_bytes())
                .is_none()
        );
        let m = r
            .take(at("a"), format!("4,9,1,-,ncfrag=980/{len};{b}").as_bytes())
            .unwrap();
        assert_eq!((m.text.len(), m.cpu, m.msgid), (990, Some(0), Some(5)));
    }

    #[test]
    fn lines_not_of_the_key_value_form_stay_in_the_text() {
        let (text, f) = split_body("first\nsecond line\n k=v\n".to_string());
        assert_eq!(text, "first\nsecond line");
        assert_eq!(f.userdata, BTreeMap::from([("k".into(), "v".into())]));
        // sysdata out of the kernel's order is userdata; a cpu that is not a number too.
        let (_, f) = split_body("t\n msgid=3\n cpu=1\n".to_string());
        assert_eq!((f.msgid, f.cpu), (None, Some(1)));
        assert_eq!(f.userdata, BTreeMap::from([("msgid".into(), "3".into())]));
        let (_, f) = split_body("t\n cpu=x\n".to_string());
        assert_eq!(f.cpu, None);
        assert_eq!(f.userdata["cpu"], "x");
    }

    /// msgid counts only what netconsole sent, so where it is there it, not seq, says what
    /// was lost: seq jumps over records the console never got (printk's rate limit).
    /// The netcons_fragmented_msg selftest's case: records below the console level skip
    /// sequence numbers without any loss; only msgid gaps are losses.
    #[test]
    fn sequence_gaps_are_not_called_lost() {
        let by_seq = SenderStats {
            gaps: 10,
            ..SenderStats::default()
        };
        let p = by_seq.gaps_phrase();
        assert!(
            p.contains("not received") && p.contains("log level") && !p.contains("lost ("),
            "{p}"
        );
        let by_msgid = SenderStats {
            gaps: 1,
            last_msgid: Some(7),
            ..SenderStats::default()
        };
        assert_eq!(by_msgid.gaps_phrase(), "1 gap(s) in msgid (messages lost)");
    }

    #[test]
    fn gaps_by_msgid_where_present_seq_elsewhere() {
        let mut r = Receiver::default();
        for (seq, id) in [(10, 1), (15, 2), (16, 5), (20, 6)] {
            r.take(at("a"), format!("6,{seq},1,-;m\n msgid={id}\n").as_bytes());
        }
        let s = &r.summary()[&at("a")];
        assert_eq!(
            (s.messages, s.gaps, s.last_msgid, s.last_seq),
            (4, 2, Some(6), Some(20))
        );
        // A late one and a repeated one are out of order; the late one is no longer a gap.
        r.take(at("a"), b"6,17,1,-;m\n msgid=4\n");
        r.take(at("a"), b"6,20,1,-;m\n msgid=6\n");
        let s = &r.summary()[&at("a")];
        assert_eq!((s.gaps, s.out_of_order), (1, 2));
        // The 32-bit counter wraps: no gap, and the next step counts.
        let mut r = Receiver::default();
        for (seq, id) in [(1, u32::MAX - 1), (2, u32::MAX), (3, 0), (4, 2)] {
            r.take(at("b"), format!("6,{seq},1,-;m\n msgid={id}\n").as_bytes());
        }
        let s = &r.summary()[&at("b")];
        assert_eq!((s.gaps, s.out_of_order, s.last_msgid), (1, 0, Some(2)));
    }

    /// Pieces stored by offset could overlap: 4,000 bytes at offsets 0, 1, 2, ... of one
    /// message held megabytes under a 16 KiB bound.
    #[test]
    fn overlapping_fragments_are_malformed_and_hold_nothing() {
        let mut r = Receiver::default();
        let piece = "x".repeat(4000);
        for off in 0..100 {
            r.take(
                at("a"),
                format!("6,1,1,-,ncfrag={off}/16384;{piece}").as_bytes(),
            );
            assert!(r.within_bounds(), "after offset {off}");
        }
        let held: usize = r.senders[&at("a")].open.values().map(|o| o.have).sum();
        assert_eq!(held, 4000);
        assert_eq!(r.summary()[&at("a")].malformed, 99);
        // The same piece again is a duplicate, not malformed.
        r.take(
            at("a"),
            format!("6,1,1,-,ncfrag=0/16384;{piece}").as_bytes(),
        );
        assert_eq!(r.summary()[&at("a")].malformed, 99);
    }

    /// Empty fragments added nothing to the byte count but were stored: 8 messages of
    /// 16,385 of them held 8.5 MB.
    #[test]
    fn empty_fragments_are_malformed_and_not_stored() {
        let mut r = Receiver::default();
        for seq in 0..8 {
            for off in 0..100 {
                r.take(
                    at("a"),
                    format!("6,{seq},1,-,ncfrag={off}/16384;").as_bytes(),
                );
            }
        }
        assert!(r.senders[&at("a")].open.is_empty());
        assert_eq!(r.summary()[&at("a")].malformed, 800);
    }

    /// What an open message holds beyond its bytes (the header's release, a part's own
    /// allocation) counts against the bound: 1-byte pieces and 3,000-byte releases.
    #[test]
    fn what_an_open_message_holds_besides_its_bytes_is_bounded() {
        let mut r = Receiver::default();
        let release = "r".repeat(3000);
        for seq in 0..64 {
            r.take(
                at("a"),
                format!("{release},6,{seq},1,-,ncfrag=0/100;x").as_bytes(),
            );
        }
        let releases: usize = r.senders[&at("a")]
            .open
            .values()
            .map(|o| o.first.release.as_ref().map_or(0, String::len))
            .sum();
        assert!(
            releases <= MAX_OPEN_BYTES,
            "{releases} bytes of release kept"
        );
        // One message alone: 1-byte pieces far apart never complete it, and it cannot
        // hold more than the bound (the bytes are few, the pieces many).
        let mut r = Receiver::default();
        for off in (0..MAX_MESSAGE).step_by(2) {
            r.take(
                at("a"),
                format!("6,1,1,-,ncfrag={off}/{MAX_MESSAGE};x").as_bytes(),
            );
            assert!(r.within_bounds());
        }
        let parts: usize = r.senders[&at("a")]
            .open
            .values()
            .map(|o| o.parts.len())
            .sum();
        assert!(parts <= MAX_OPEN_BYTES / 64, "{parts} pieces kept");
        assert!(r.summary()[&at("a")].incomplete >= 1);
    }

    /// A kernel splits inside a multibyte character (taskname, userdata values are not
    /// escaped): the bytes are put together, then decoded.
    #[test]
    fn a_character_split_across_fragments_is_whole() {
        let mut r = Receiver::default();
        assert!(r.take(at("a"), b"6,3,1,-,ncfrag=0/4;a\xC3").is_none());
        let m = r.take(at("a"), b"6,3,1,-,ncfrag=2/4;\xA9b");
        assert_eq!(m.map(|m| m.text), Some("a\u{e9}b".to_string()));
        assert_eq!(r.summary()[&at("a")].malformed, 0);
    }

    #[test]
    fn a_fragment_with_another_total_is_malformed() {
        let mut r = Receiver::default();
        assert!(r.take(at("a"), b"6,7,5,-,ncfrag=0/10;hello").is_none());
        assert!(r.take(at("a"), b"6,7,5,-,ncfrag=5/7;wo").is_none());
        assert_eq!(r.summary()[&at("a")].malformed, 1);
        let m = r.take(at("a"), b"6,7,5,-,ncfrag=5/10;world").unwrap();
        assert_eq!(m.text, "helloworld");
    }

    /// seq 0, msgid 1 and 10, then seq 2^64-1: the gaps wrapped (a debug build panicked).
    #[test]
    fn gap_counts_saturate() {
        let mut r = Receiver::default();
        r.take(at("a"), b"6,0,1,-;m");
        r.take(at("a"), b"6,1,1,-;m\n msgid=1\n");
        r.take(at("a"), b"6,2,1,-;m\n msgid=10\n");
        r.take(at("a"), b"6,18446744073709551615,1,-;m");
        assert_eq!(r.summary()[&at("a")].gaps, u64::MAX);
        let mut a = SenderStats {
            gaps: u64::MAX,
            ..SenderStats::default()
        };
        a.add(&a.clone());
        assert_eq!(a.gaps, u64::MAX);
    }

    /// A sender rebooted: its numbers start again low. The step back is out of order once,
    /// and what is lost after it is counted from there.
    #[test]
    fn a_restarted_sender_counts_gaps_from_its_new_numbers() {
        let mut r = Receiver::default();
        for seq in [1000, 1001, 1002, 0, 1, 5, 9, 20] {
            r.take(at("a"), format!("6,{seq},1,-;m").as_bytes());
        }
        let s = &r.summary()[&at("a")];
        assert_eq!((s.gaps, s.out_of_order, s.last_seq), (16, 1, Some(20)));
        // By msgid: the msgid baseline restarts with it.
        let mut r = Receiver::default();
        for (seq, id) in [(1000, 500), (1001, 501), (0, 0), (1, 2)] {
            r.take(at("b"), format!("6,{seq},1,-;m\n msgid={id}\n").as_bytes());
        }
        let s = &r.summary()[&at("b")];
        assert_eq!((s.gaps, s.out_of_order, s.last_msgid), (1, 1, Some(2)));
    }

    /// Reordered, nothing lost: a late number takes its gap back; a repeat is only out of
    /// order.
    #[test]
    fn a_late_arrival_takes_its_gap_back() {
        let mut r = Receiver::default();
        for seq in [10, 11, 14, 12, 13, 13] {
            r.take(at("a"), format!("6,{seq},1,-;m").as_bytes());
        }
        let s = &r.summary()[&at("a")];
        assert_eq!((s.gaps, s.out_of_order), (0, 3));
        let mut r = Receiver::default();
        for (seq, id) in [(1, u32::MAX - 1), (2, 1), (3, u32::MAX), (4, 0)] {
            r.take(at("b"), format!("6,{seq},1,-;m\n msgid={id}\n").as_bytes());
        }
        let s = &r.summary()[&at("b")];
        assert_eq!((s.gaps, s.out_of_order, s.last_msgid), (0, 2, Some(1)));
    }

    /// A sender forgotten to make room takes its gaps and unfinished messages with it:
    /// they are counted as forgotten, not lost from the totals.
    #[test]
    fn a_forgotten_sender_keeps_its_gaps_and_incomplete_messages_counted() {
        let mut r = Receiver::new(1);
        r.take(at("a"), b"6,1,1,-;m");
        r.take(at("a"), b"6,5,1,-;m");
        r.take(at("a"), b"6,6,1,-,ncfrag=0/10;hello");
        r.take(at("b"), b"6,1,1,-;m");
        let f = serde_json::to_value(r.forgotten()).unwrap();
        assert_eq!(
            (&f["senders"], &f["messages"], &f["gaps"], &f["incomplete"]),
            (&1.into(), &2.into(), &3.into(), &1.into())
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[2Jb\tc\r"), "a\\x1b[2Jb\tc\\x0d");
    }
}
