//! Network devices going up and down, from rtnetlink (RTMGRP_LINK): what tells the
//! pipeline when netconsole's console write needs its probe (a known target's device is
//! down). A dump of every device answers `request_dump`; both come as RTM_NEWLINK.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd},
};

/// One device's state, as a link message tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub name: String,
    /// Up (IFF_UP) and running (IFF_RUNNING: operationally up, its carrier on).
    pub up: bool,
    /// Unregistered (RTM_DELLINK).
    pub gone: bool,
}

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTMGRP_LINK: u32 = 1;
const IFLA_IFNAME: u16 = 3;
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `struct nlmsghdr` and `struct ifinfomsg`.
const NLMSG_HDR: usize = 16;
const IFINFO: usize = 16;

/// A non-blocking rtnetlink socket subscribed to link changes.
pub struct LinkEvents {
    fd: OwnedFd,
    seq: u32,
}

impl LinkEvents {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl with the family and groups set.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: bind(2) with that address and its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, seq: 0 })
    }

    /// Asks the kernel for every device's state (answered through `read`).
    pub fn request_dump(&mut self) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = [0u8; NLMSG_HDR + IFINFO];
        req[0..4].copy_from_slice(&((NLMSG_HDR + IFINFO) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        req[NLMSG_HDR] = libc::AF_UNSPEC as u8;
        // SAFETY: send(2) of a buffer we own.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// What has arrived, until the socket would block. An overrun socket (ENOBUFS: link
    /// messages were lost) is reported as such: the caller asks for a dump again.
    pub fn read(&mut self, out: &mut Vec<LinkState>) -> io::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: recv(2) into a buffer we own, of its size.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if n == 0 {
                return Ok(());
            }
            parse(&buf[..n as usize], out);
        }
    }
}

impl AsFd for LinkEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The link messages in one datagram (anything else, and anything malformed, skipped).
pub fn parse(mut buf: &[u8], out: &mut Vec<LinkState>) {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    while buf.len() >= NLMSG_HDR {
        let len = u32_at(buf, 0) as usize;
        if len < NLMSG_HDR || len > buf.len() {
            return;
        }
        let (msg, rest) = buf.split_at(len);
        buf = rest.get(align4(len) - len..).unwrap_or(&[]);
        let kind = u16_at(msg, 4);
        if (kind != RTM_NEWLINK && kind != RTM_DELLINK) || msg.len() < NLMSG_HDR + IFINFO {
            continue;
        }
        let flags = u32_at(msg, NLMSG_HDR + 8);
        let mut attrs = &msg[NLMSG_HDR + IFINFO..];
        let mut name = None;
        while attrs.len() >= 4 {
            let alen = u16_at(attrs, 0) as usize;
            if alen < 4 || alen > attrs.len() {
                break;
            }
            if u16_at(attrs, 2) == IFLA_IFNAME {
                let v = &attrs[4..alen];
                let v = v.split(|&b| b == 0).next().unwrap_or(v);
                name = Some(String::from_utf8_lossy(v).into_owned());
            }
            attrs = attrs.get(align4(alen)..).unwrap_or(&[]);
        }
        if let Some(name) = name {
            out.push(LinkState {
                name,
                up: flags & IFF_UP != 0 && flags & IFF_RUNNING != 0,
                gone: kind == RTM_DELLINK,
            });
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link message as the kernel writes it: header, ifinfomsg, then attributes
    /// (IFLA_MTU before the name, as on a real dump).
    fn link(kind: u16, flags: u32, name: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        let mut attr = |t: u16, v: &[u8]| {
            attrs.extend(((4 + v.len()) as u16).to_ne_bytes());
            attrs.extend(t.to_ne_bytes());
            attrs.extend(v);
            attrs.resize(align4(attrs.len()), 0);
        };
        attr(4, &1500u32.to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        attr(IFLA_IFNAME, &n);
        let len = NLMSG_HDR + IFINFO + attrs.len();
        let mut m = Vec::new();
        m.extend((len as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend([0u8; 8]);
        m.extend([0u8; 4]); // family, pad, type
        m.extend(7i32.to_ne_bytes());
        m.extend(flags.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(attrs);
        m
    }

    #[test]
    fn link_messages_say_which_device_is_up() {
        let mut buf = link(RTM_NEWLINK, IFF_UP | IFF_RUNNING | 0x1000, "eth0");
        buf.extend(link(RTM_NEWLINK, IFF_UP, "vl100")); // up, no carrier
        buf.extend(link(RTM_NEWLINK, 0, "abc")); // name of 3 + NUL: no padding
        buf.extend(link(RTM_DELLINK, 0, "vl1"));
        let mut done = link(3, 0, "x"); // NLMSG_DONE
        done.truncate(NLMSG_HDR + 4);
        done[0..4].copy_from_slice(&((NLMSG_HDR + 4) as u32).to_ne_bytes());
        buf.extend(done);
        let mut out = Vec::new();
        parse(&buf, &mut out);
        let got: Vec<(&str, bool, bool)> = out
            .iter()
            .map(|l| (l.name.as_str(), l.up, l.gone))
            .collect();
        assert_eq!(
            got,
            [
                ("eth0", true, false),
                ("vl100", false, false),
                ("abc", false, false),
                ("vl1", false, true)
            ]
        );
    }

    #[test]
    fn malformed_messages_end_the_datagram_without_a_panic() {
        let good = link(RTM_NEWLINK, IFF_UP | IFF_RUNNING, "eth0");
        for cut in 0..good.len() {
            let mut out = Vec::new();
            parse(&good[..cut], &mut out);
            assert!(out.is_empty(), "{cut}");
        }
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&4u32.to_ne_bytes()); // shorter than a header
        let mut out = Vec::new();
        parse(&bad, &mut out);
        assert!(out.is_empty());
        // An attribute longer than its message.
        let mut bad = good.clone();
        let at = NLMSG_HDR + IFINFO;
        bad[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
        parse(&bad, &mut out);
        assert!(out.is_empty());
    }
}
