//! `receive`'s sockets: one per worker on the same address (SO_REUSEPORT; the kernel's
//! default hash of the 4-tuple sends each sender to one socket, so one sender's datagrams
//! stay in order on one worker, with no BPF), a large receive buffer, and datagrams read in
//! batches (recvmmsg) into fixed slots.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _},
    time::Duration,
};

/// Datagrams read per system call at most.
pub const BATCH: usize = 64;
/// Bytes kept of a datagram. netconsole's are at most 1000 (MAX_PRINT_CHUNK); a longer
/// one is cut here and counted (`truncated`).
pub const SLOT: usize = 4096;
/// The receive buffer asked for per socket: ~12,000 small datagrams, 60 ms of a
/// 200,000 messages/s flood with the worker away.
pub const RCVBUF: usize = 16 << 20;
/// How long a worker waits for a datagram before it looks whether it should stop.
const WAKE: Duration = Duration::from_millis(100);

/// The group of sockets, bound.
pub struct Group {
    pub sockets: Vec<UdpSocket>,
    /// The receive buffer each got (bytes the kernel accounts, as SO_RCVBUF reads back:
    /// twice what was granted).
    pub rcvbuf: usize,
    /// The system's cap on a buffer set without privilege (net.core.rmem_max).
    pub rmem_max: Option<usize>,
}

/// How a socket shares its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Share {
    /// Alone: a taken port is refused, and nobody can bind it while we hold it.
    No,
    /// With our own workers (SO_REUSEPORT: the kernel admits only sockets of the same
    /// user to the group).
    Workers,
    /// With any later listener, which then gets the datagrams (SO_REUSEADDR: the kernel
    /// checks no user, so any local user could take them): `--reuse-addr` only.
    Anyone,
}

/// `n` sockets on `addr`. With more than one, the address must be free for a socket of
/// our own first (so joining another process's SO_REUSEPORT group, which would share the
/// senders with it, is refused as a taken address is); port 0 picks one for all. With
/// one, `share_addr` lets a second listener bind the port too.
pub fn bind(addr: SocketAddr, n: usize, share_addr: bool) -> io::Result<Group> {
    let mut sockets = Vec::with_capacity(n);
    let mut at = addr;
    if n > 1 && addr.port() != 0 {
        drop(socket(addr, Share::No)?);
    }
    let share = match (n > 1, share_addr) {
        (true, _) => Share::Workers,
        (false, true) => Share::Anyone,
        (false, false) => Share::No,
    };
    for _ in 0..n.max(1) {
        let s = socket(at, share)?;
        at = s.local_addr()?;
        sockets.push(s);
    }
    let rcvbuf = sockets
        .iter()
        .map(|s| set_rcvbuf(s, RCVBUF))
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .min()
        .unwrap_or(0);
    let rmem_max = crate::kernel::host::rmem_max();
    Ok(Group {
        sockets,
        rcvbuf,
        rmem_max,
    })
}

fn socket(addr: SocketAddr, share: Share) -> io::Result<UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the descriptor is owned by the UdpSocket at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket nobody else owns.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    match share {
        Share::No => {}
        Share::Workers => setsockopt(&sock, libc::SO_REUSEPORT, 1)?,
        // As socat binds: the kernel's netcons_fragmented_msg selftest starts a second
        // listener while the first runs, and the newest gets the datagrams.
        Share::Anyone => setsockopt(&sock, libc::SO_REUSEADDR, 1)?,
    }
    let (storage, len) = to_raw(addr);
    // SAFETY: storage holds a sockaddr of len bytes.
    if unsafe { libc::bind(fd, (&raw const storage).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    sock.set_read_timeout(Some(WAKE))?;
    Ok(sock)
}

fn setsockopt(sock: &UdpSocket, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: an int option, passed by pointer and size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt_int(sock: &UdpSocket, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int option, read into value.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Asks for `bytes` of receive buffer: past net.core.rmem_max when privileged
/// (SO_RCVBUFFORCE, CAP_NET_ADMIN), else as much as rmem_max allows; returns what the
/// socket got.
fn set_rcvbuf(sock: &UdpSocket, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(sock, libc::SO_RCVBUFFORCE, want).is_err() {
        setsockopt(sock, libc::SO_RCVBUF, want)?;
    }
    Ok(usize::try_from(getsockopt_int(sock, libc::SO_RCVBUF)?).unwrap_or(0))
}

/// Datagrams the kernel dropped at this socket (its receive buffer was full), from
/// SO_MEMINFO (Linux 4.6); None where that is missing.
pub fn drops(sock: &UdpSocket) -> Option<u64> {
    // SK_MEMINFO_VARS is 9 on 4.6+, more on later kernels; the drops are index 8.
    const SO_MEMINFO: libc::c_int = 55;
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; 16];
    let mut len = size_of::<[u32; 16]>() as libc::socklen_t;
    // SAFETY: the kernel writes at most len bytes into info.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (r == 0 && len as usize > SK_MEMINFO_DROPS * size_of::<u32>())
        .then(|| u64::from(info[SK_MEMINFO_DROPS]))
}

/// Wakes a worker blocked on this socket (it reads no more datagrams).
pub fn wake(sock: &UdpSocket) {
    // SAFETY: shutdown(2) on a descriptor we own; on an unconnected UDP socket it answers
    // ENOTCONN but still marks the socket shut and wakes its readers.
    unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RD) };
}

/// The slots one recvmmsg fills.
pub struct Batch {
    bufs: Box<[[u8; SLOT]]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    /// Datagrams in the slots after the last `recv`.
    n: usize,
}

// SAFETY: the raw pointers in iovecs and headers point into the batch's own boxes, which
// move with it.
unsafe impl Send for Batch {}

impl Default for Batch {
    fn default() -> Self {
        let mut b = Batch {
            bufs: vec![[0u8; SLOT]; BATCH].into_boxed_slice(),
            // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            iovecs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            headers: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            n: 0,
        };
        for i in 0..BATCH {
            b.iovecs[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            b.iovecs[i].iov_len = SLOT;
        }
        b
    }
}

impl Batch {
    /// Waits for datagrams, then takes every one waiting, up to BATCH. Ok(0) after a
    /// `wake`; WouldBlock (or TimedOut) when none came in a while.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        for i in 0..BATCH {
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: BATCH headers, each pointing at its own slot and address storage.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            self.n = 0;
            return Err(io::Error::last_os_error());
        }
        self.n = r as usize;
        Ok(self.n)
    }

    /// Datagram `i` of the last `recv`: its sender, bytes, and whether it was cut.
    pub fn get(&self, i: usize) -> (Option<SocketAddr>, &[u8], bool) {
        let h = &self.headers[i];
        let len = (h.msg_len as usize).min(SLOT);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (from_raw(&self.addrs[i]), &self.bufs[i][..len], truncated)
    }
}

fn to_raw(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_raw(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(sin.sin_addr.s_addr).into(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_round_trip_through_sockaddr() {
        for a in ["10.1.2.3:6666", "[fe80::1%2]:514", "[::1]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(from_raw(&to_raw(a).0), Some(a));
        }
    }

    /// #29: with --reuse-addr a second single-socket listener on the same port binds (as
    /// socat's), while a worker group still refuses a port someone holds. Without it the
    /// port is ours alone: SO_REUSEADDR checks no user, so any local user could bind the
    /// port beside us and take the datagrams.
    #[test]
    fn a_second_listener_binds_only_where_asked_and_workers_never_share() {
        let alone = bind("127.0.0.1:0".parse().unwrap(), 1, false).unwrap();
        let at = alone.sockets[0].local_addr().unwrap();
        assert!(
            bind(at, 1, true).is_err(),
            "a second listener beside one alone"
        );
        drop(alone);
        let first = bind("127.0.0.1:0".parse().unwrap(), 1, true).unwrap();
        let at = first.sockets[0].local_addr().unwrap();
        let second = bind(at, 1, true);
        assert!(second.is_ok(), "{:?}", second.err());
        assert!(bind(at, 1, false).is_err());
        assert!(bind(at, 2, false).is_err());
    }

    #[test]
    fn a_batch_reads_every_waiting_datagram_in_one_call() {
        let g = bind("127.0.0.1:0".parse().unwrap(), 1, false).unwrap();
        let to = g.sockets[0].local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..10u8 {
            tx.send_to(&[b'a' + i; 3], to).unwrap();
        }
        tx.send_to(&vec![b'x'; SLOT + 10], to).unwrap();
        let mut b = Batch::default();
        assert_eq!(b.recv(&g.sockets[0]).unwrap(), 11);
        let (from, bytes, cut) = b.get(3);
        assert_eq!(
            (from, bytes, cut),
            (Some(tx.local_addr().unwrap()), &b"ddd"[..], false)
        );
        let (_, bytes, cut) = b.get(10);
        assert_eq!((bytes.len(), cut), (SLOT, true));
        assert_eq!(drops(&g.sockets[0]), Some(0));
    }

    #[test]
    fn a_group_shares_one_port_and_refuses_a_taken_one() {
        let g = bind("127.0.0.1:0".parse().unwrap(), 3, false).unwrap();
        let at = g.sockets[0].local_addr().unwrap();
        assert!(g.sockets.iter().all(|s| s.local_addr().unwrap() == at));
        assert!(g.rcvbuf > 0);
        // Another group on the same address would share its senders: refused.
        assert!(bind(at, 2, false).is_err());
        assert!(bind(at, 1, false).is_err());
        assert!(bind(at, 1, true).is_err());
    }
}
