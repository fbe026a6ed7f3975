//! netconsole's wire format: a datagram's header (plain or extended, fragments) and the
//! lines after an extended message's text (the kernel's dictionary, the target's userdata
//! and sysdata), decoded (see the module above for the format).

use std::collections::BTreeMap;

/// One datagram, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Plain netconsole: text only.
    Plain(String),
    /// Extended netconsole: a whole message's body (text and ` KEY=VALUE` lines) or one
    /// fragment of it, as sent: a fragment may end inside a character, so the body is
    /// decoded only once whole (`decode_text`).
    Extended(Header, &'a [u8]),
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
pub fn decode(bytes: &[u8]) -> Packet<'_> {
    // The header is ASCII: parse it from the bytes.
    if let Some(semi) = bytes.iter().position(|&b| b == b';')
        && let Ok(h) = std::str::from_utf8(&bytes[..semi])
        && let Some(h) = parse_header(h)
    {
        return Packet::Extended(h, &bytes[semi + 1..]);
    }
    Packet::Plain(decode_text(bytes))
}

/// A whole message's bytes as text (invalid UTF-8 replaced), decoded once.
pub fn decode_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_header(h: &str) -> Option<Header> {
    let mut fields = h.split(',');
    let first = fields.next()?;
    // The release, when present, is the one field before the level that is not a number.
    let (release, level) = match first.parse::<u8>() {
        Ok(level) => (None, level),
        Err(_) => (Some(first.to_string()), fields.next()?.parse().ok()?),
    };
    let seq = fields.next()?.parse().ok()?;
    let ts_us = fields.next()?.parse().ok()?;
    let cont = match fields.next()? {
        "-" => false,
        "c" => true,
        _ => return None,
    };
    let mut frag = None;
    for e in fields {
        let (k, v) = e.split_once('=')?;
        if k == "ncfrag" {
            let (off, len) = v.split_once('/')?;
            frag = Some((off.parse().ok()?, len.parse().ok()?));
        }
    }
    Some(Header {
        release,
        level,
        seq,
        ts_us,
        cont,
        frag,
    })
}

/// What follows an extended message's text, one ` KEY=VALUE` line each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// The kernel's own (`SUBSYSTEM=`, `DEVICE=`: dev_printk's).
    pub dict: BTreeMap<String, String>,
    /// The target's userdata (configfs `userdata/<key>/value`).
    pub userdata: BTreeMap<String, String>,
    /// sysdata `cpu=`: the CPU that wrote the message.
    pub cpu: Option<u32>,
    /// sysdata `taskname=`: the task running there.
    pub taskname: Option<String>,
    /// sysdata `release=`.
    pub release: Option<String>,
    /// sysdata `msgid=`: netconsole's per-target count of messages sent (wraps at 2^32).
    pub msgid: Option<u32>,
}

/// The kernel's dictionary keys (printk's dev_printk_info), first after the text.
const DICT_KEYS: [&str; 2] = ["SUBSYSTEM", "DEVICE"];
/// sysdata's keys, last and in this order (netconsole's prepare_sysdata).
const SYSDATA_KEYS: [&str; 4] = ["cpu", "taskname", "release", "msgid"];

/// Splits an extended message's body into its text and the ` KEY=VALUE` lines after it:
/// the text ends at the first newline (the kernel escapes newlines in the text itself),
/// then come the kernel's dictionary, the userdata, and the sysdata. sysdata is read from
/// the end, in its fixed order; a userdata key that is also a sysdata key (`cpu`) is
/// userdata unless it stands where the kernel's own would. A line not of that form stays
/// in the text.
pub fn split_body(mut body: String) -> (String, Fields) {
    let mut fields = Fields::default();
    let Some(nl) = body.find('\n') else {
        return (body, fields);
    };
    if nl + 1 == body.len() {
        body.truncate(nl);
        return (body, fields);
    }
    let mut text = body[..nl].to_string();
    let lines: Vec<&str> = body[nl + 1..]
        .strip_suffix('\n')
        .unwrap_or(&body[nl + 1..])
        .split('\n')
        .collect();
    let pairs: Vec<Option<(&str, &str)>> = lines
        .iter()
        .map(|l| l.strip_prefix(' ').and_then(|kv| kv.split_once('=')))
        .collect();
    // sysdata: from the end, each key earlier in SYSDATA_KEYS than the one after it.
    let mut end = pairs.len();
    let mut allowed = SYSDATA_KEYS.len();
    while end > 0 {
        let Some((k, v)) = pairs[end - 1] else { break };
        let Some(i) = SYSDATA_KEYS[..allowed].iter().position(|s| *s == k) else {
            break;
        };
        let ok = match i {
            0 => v.parse().map(|c| fields.cpu = Some(c)).is_ok(),
            1 => {
                fields.taskname = Some(v.to_string());
                true
            }
            2 => {
                fields.release = Some(v.to_string());
                true
            }
            _ => v.parse().map(|m| fields.msgid = Some(m)).is_ok(),
        };
        if !ok {
            break;
        }
        allowed = i;
        end -= 1;
    }
    let mut in_dict = true;
    for (line, pair) in lines[..end].iter().zip(&pairs[..end]) {
        match pair {
            Some((k, v)) if in_dict && DICT_KEYS.contains(k) => {
                fields.dict.insert(k.to_string(), v.to_string());
            }
            Some((k, v)) => {
                in_dict = false;
                fields.userdata.insert(k.to_string(), v.to_string());
            }
            None => {
                text.push('\n');
                text.push_str(line);
            }
        }
    }
    (text, fields)
}
