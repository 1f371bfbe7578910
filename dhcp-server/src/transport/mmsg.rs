//! `recvmmsg` / `sendmmsg`: several datagrams per system call. The crate's only `unsafe`
//! code, confined to the two calls and the zeroing of the C headers they take.
//!
//! Audit notes, for every call:
//! - the `mmsghdr`s, `iovec`s, addresses and control buffers are built on this function's
//!   stack or point into buffers owned by `&mut self`, and live until the call returns; no
//!   pointer is kept afterwards;
//! - every length handed to the kernel is the length of the memory it points to;
//! - the kernel's results are read back through safe slices, bounded by those lengths
//!   (control messages are parsed by hand from bytes, with bounds checks).
//!
//! Neither call ever waits (`MSG_DONTWAIT`): a receive takes what is queued, one datagram or
//! [`BATCH`], and returns.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::ptr;

use super::{CMSG_DATA, CMSG_SPACE, Received, WORD, align, pktinfo};

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;
/// The largest UDP payload over IPv4: no datagram is ever truncated.
pub(crate) const MAX_DATAGRAM: usize = 65_507;
/// `BATCH` as the C type `recvmmsg` takes.
// The assertion proves the cast lossless; `try_from` is not usable in a const.
#[allow(clippy::cast_possible_truncation)]
const VLEN: libc::c_uint = {
    assert!(BATCH <= 1024);
    BATCH as libc::c_uint
};
/// Room for the `IP_PKTINFO` control message (32 bytes on 64-bit Linux) and then some.
const CONTROL: usize = 64;

/// A control buffer aligned like a `cmsghdr` (its first field is a `size_t`).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL]);

/// `AF_INET` as the type of `sin_family`.
// As above: the assertion proves the cast lossless.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const AF_INET: libc::sa_family_t = {
    assert!(libc::AF_INET >= 0 && libc::AF_INET <= 0xffff);
    libc::AF_INET as libc::sa_family_t
};

const _: () = {
    assert!(CMSG_SPACE <= CONTROL);
    assert!(std::mem::align_of::<libc::cmsghdr>() <= 8);
};

/// `BATCH` slots of [`MAX_DATAGRAM`] bytes. The memory is zeroed lazily by the allocator
/// (`calloc`): only pages the kernel writes into become resident.
fn slots() -> Box<[u8]> {
    vec![0u8; BATCH * MAX_DATAGRAM].into_boxed_slice()
}

/// Receive buffers for up to [`BATCH`] datagrams, reused for every call.
pub(crate) struct RecvBatch {
    bufs: Box<[u8]>,
    control: Box<[Control; BATCH]>,
    meta: [Received; BATCH],
    len: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    pub(crate) fn new() -> Self {
        Self {
            bufs: slots(),
            control: Box::new([Control([0; CONTROL]); BATCH]),
            meta: [Received::EMPTY; BATCH],
            len: 0,
        }
    }

    /// The `i`th datagram of the last receive and its metadata.
    pub(crate) fn get(&self, i: usize) -> (&[u8], &Received) {
        let meta = &self.meta[i];
        let start = i * MAX_DATAGRAM;
        (&self.bufs[start..start + meta.len], meta)
    }

    /// Receives what is queued, up to `max` (at most [`BATCH`]) datagrams, without waiting.
    /// Returns how many (at least one); `WouldBlock` when nothing is queued.
    ///
    /// Fewer than `max` means the queue was empty when the call returned: with
    /// `MSG_DONTWAIT` and no timeout, `recvmmsg` stops early only then (a socket error after
    /// the first datagram would also stop it, but an unconnected UDP socket without
    /// `IP_RECVERR` never holds one).
    pub(crate) fn recv(&mut self, socket: &impl AsRawFd, max: usize) -> io::Result<usize> {
        let vlen = libc::c_uint::try_from(max.clamp(1, BATCH)).unwrap_or(VLEN);
        let base = self.bufs.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: `sockaddr_in` is a C struct of integers: all zeroes is a valid value.
        let mut names: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: `mmsghdr` is a C struct of integers and raw pointers: all zeroes (null
        // pointers, zero lengths) is a valid value.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, v) in iov.iter_mut().enumerate() {
            v.iov_base = base.wrapping_add(i * MAX_DATAGRAM).cast();
            v.iov_len = MAX_DATAGRAM;
        }
        let iov_ptr = iov.as_mut_ptr();
        let names_ptr = names.as_mut_ptr();
        for (i, h) in hdrs.iter_mut().enumerate() {
            let m = &mut h.msg_hdr;
            m.msg_name = names_ptr.wrapping_add(i).cast();
            m.msg_namelen = socklen::<libc::sockaddr_in>();
            m.msg_iov = iov_ptr.wrapping_add(i);
            m.msg_iovlen = 1;
            m.msg_control = control.wrapping_add(i).cast();
            m.msg_controllen = CONTROL as _;
        }
        // SAFETY: every header points at memory that outlives the call: `iov` and `names` on
        // this stack frame, the datagram slots and control buffers owned by `self` (borrowed
        // mutably for the whole function, not touched through any other path until the call
        // returns). Each length (`iov_len`, `msg_namelen`, `msg_controllen`) is the size of
        // the memory it describes, and `vlen` is the length of `hdrs`.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            let m = &h.msg_hdr;
            let name = &names[i];
            let src = if m.msg_namelen as usize >= size_of::<libc::sockaddr_in>()
                && name.sin_family == AF_INET
            {
                SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                    u16::from_be(name.sin_port),
                )
            } else {
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
            };
            let control_len = m.msg_controllen.min(CONTROL);
            let (ifindex, dst) = packet_info(&self.control[i].0[..control_len]);
            self.meta[i] = Received {
                len: (h.msg_len as usize).min(MAX_DATAGRAM),
                src,
                ifindex,
                dst,
                truncated: m.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        self.len = n;
        Ok(n)
    }
}

/// One reply waiting in a [`SendBatch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing {
    pub(crate) len: usize,
    pub(crate) to: SocketAddrV4,
    pub(crate) ifindex: u32,
    pub(crate) source: Ipv4Addr,
}

/// Reply buffers for up to [`BATCH`] datagrams, reused for every call.
pub(crate) struct SendBatch {
    bufs: Box<[u8]>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").finish_non_exhaustive()
    }
}

impl SendBatch {
    pub(crate) fn new() -> Self {
        Self { bufs: slots() }
    }

    /// The buffer a reply for slot `i` is encoded into.
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * MAX_DATAGRAM;
        &mut self.bufs[start..start + MAX_DATAGRAM]
    }

    /// The encoded reply of slot `i`.
    pub(crate) fn slot(&self, i: usize, len: usize) -> &[u8] {
        let start = i * MAX_DATAGRAM;
        &self.bufs[start..start + len.min(MAX_DATAGRAM)]
    }

    /// Sends the replies `out[first..]` (slot `first + k` holds `out[first + k]`) with one
    /// `sendmmsg`, without waiting. Returns how many went out (at least one); an error is the
    /// error of `out[first]`, and nothing was sent.
    pub(crate) fn send(
        &mut self,
        socket: &impl AsRawFd,
        out: &[Outgoing],
        first: usize,
    ) -> io::Result<usize> {
        let todo = out.get(first..).unwrap_or_default();
        let count = todo.len().min(BATCH);
        if count == 0 {
            return Ok(0);
        }
        let base = self.bufs.as_mut_ptr();
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: all zeroes is a valid `sockaddr_in` (integers only).
        let mut names: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
        let mut control = [Control([0; CONTROL]); BATCH];
        // SAFETY: all zeroes is a valid `mmsghdr` (integers and null pointers).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (k, o) in todo.iter().take(count).enumerate() {
            iov[k].iov_base = base.wrapping_add((first + k) * MAX_DATAGRAM).cast();
            iov[k].iov_len = o.len.min(MAX_DATAGRAM);
            names[k].sin_family = AF_INET;
            names[k].sin_port = o.to.port().to_be();
            names[k].sin_addr.s_addr = u32::from(*o.to.ip()).to_be();
            control[k].0[..CMSG_SPACE].copy_from_slice(&pktinfo(o.ifindex, o.source));
        }
        let iov_ptr = iov.as_mut_ptr();
        let names_ptr = names.as_mut_ptr();
        let control_ptr = control.as_mut_ptr();
        for (k, h) in hdrs.iter_mut().enumerate().take(count) {
            let m = &mut h.msg_hdr;
            m.msg_name = names_ptr.wrapping_add(k).cast();
            m.msg_namelen = socklen::<libc::sockaddr_in>();
            m.msg_iov = iov_ptr.wrapping_add(k);
            m.msg_iovlen = 1;
            m.msg_control = control_ptr.wrapping_add(k).cast();
            m.msg_controllen = CMSG_SPACE as _;
        }
        // SAFETY: the first `count` headers point at `iov`, `names` and `control` on this
        // stack frame and at reply slots owned by `self` (borrowed mutably for the whole
        // function; `first + count <= BATCH` because `out` never holds more than `BATCH`
        // replies, and `wrapping_add` stays inside `bufs` for the same reason). Every length
        // is the size of what it describes (a reply never exceeds its slot); `vlen` is
        // `count <= BATCH`.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                libc::c_uint::try_from(count).unwrap_or(VLEN),
                libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).expect("a sockaddr's size fits socklen_t")
}

/// The interface index and destination address of an `IP_PKTINFO` control message, parsed
/// from the raw control buffer; `(0, 0.0.0.0)` when there is none.
fn packet_info(control: &[u8]) -> (u32, Ipv4Addr) {
    let word = |b: &[u8]| -> Option<usize> { Some(usize::from_ne_bytes(b.try_into().ok()?)) };
    let int = |b: &[u8]| -> Option<i32> { Some(i32::from_ne_bytes(b.try_into().ok()?)) };
    let mut rest = control;
    while rest.len() >= CMSG_DATA {
        let (Some(len), Some(level), Some(kind)) = (
            word(&rest[..WORD]),
            int(&rest[WORD..WORD + 4]),
            int(&rest[WORD + 4..WORD + 8]),
        ) else {
            break;
        };
        if len < CMSG_DATA || len > rest.len() {
            break;
        }
        let data = &rest[CMSG_DATA..len];
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO && data.len() >= 12 {
            // `in_pktinfo`: ifindex (int), spec_dst, addr (the destination), network order.
            let ifindex = int(&data[..4]).and_then(|i| u32::try_from(i).ok());
            let dst: [u8; 4] = data[8..12].try_into().unwrap_or([0; 4]);
            return (ifindex.unwrap_or(0), Ipv4Addr::from(dst));
        }
        rest = rest.get(align(len)..).unwrap_or_default();
    }
    (0, Ipv4Addr::UNSPECIFIED)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    #[test]
    fn packet_info_reads_what_pktinfo_writes() {
        let c = pktinfo(7, Ipv4Addr::new(10, 0, 0, 1));
        // pktinfo() fills spec_dst (the source); the kernel fills addr on receive. Write an
        // address there as the kernel would.
        let mut c = c.to_vec();
        c[CMSG_DATA + 8..CMSG_DATA + 12].copy_from_slice(&[10, 0, 0, 9]);
        assert_eq!(packet_info(&c), (7, Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(packet_info(&c[..10]), (0, Ipv4Addr::UNSPECIFIED));
        assert_eq!(packet_info(&[]), (0, Ipv4Addr::UNSPECIFIED));
        // A length field that overruns the buffer is not trusted.
        let mut bad = c.clone();
        bad[..WORD].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(packet_info(&bad), (0, Ipv4Addr::UNSPECIFIED));
    }

    fn bound() -> (super::super::DhcpSocket, SocketAddrV4) {
        let s = super::super::DhcpSocket::bind(
            &super::super::SocketConfig::new().bind_addr("127.0.0.1:0".parse().unwrap()),
        )
        .unwrap();
        let addr = s.local_addr();
        (s, addr)
    }

    #[test]
    fn one_call_receives_every_queued_datagram_and_one_sends_them_all() {
        let (server, addr) = bound();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(peer_addr) = peer.local_addr().unwrap() else {
            unreachable!()
        };
        let mut rx = RecvBatch::new();
        assert_eq!(
            rx.recv(&server, BATCH).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..40u8 {
            peer.send_to(&[i; 300], addr).unwrap();
        }
        // Loopback delivers synchronously: all 40 are queued.
        assert_eq!(rx.recv(&server, 1).unwrap(), 1);
        assert_eq!(rx.get(0).0[0], 0);
        assert_eq!(rx.recv(&server, BATCH).unwrap(), BATCH);
        for i in 0..BATCH {
            let (bytes, meta) = rx.get(i);
            assert_eq!(bytes, &[u8::try_from(i + 1).unwrap(); 300][..]);
            assert_eq!(meta.src, peer_addr);
            assert_eq!(meta.dst, Ipv4Addr::LOCALHOST);
            assert_ne!(meta.ifindex, 0);
            assert!(!meta.truncated);
        }
        assert_eq!(rx.recv(&server, BATCH).unwrap(), 40 - 1 - BATCH);
        assert_eq!(rx.get(0).0[0], 33);

        let mut tx = SendBatch::new();
        let mut out = Vec::new();
        for i in 0..5 {
            tx.slot_mut(i)[..3].copy_from_slice(&[b'r', b'e', b'0' + u8::try_from(i).unwrap()]);
            out.push(Outgoing {
                len: 3,
                to: peer_addr,
                ifindex: 0,
                source: Ipv4Addr::LOCALHOST,
            });
        }
        assert_eq!(tx.send(&server, &out, 2).unwrap(), 3);
        let mut buf = [0u8; 8];
        for expected in [b"re2", b"re3", b"re4"] {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], expected);
            assert_eq!(from, std::net::SocketAddr::V4(addr));
        }
        assert_eq!(tx.send(&server, &out, 5).unwrap(), 0);
    }

    #[test]
    fn an_unroutable_first_reply_is_an_error_and_the_rest_can_follow() {
        let (server, _) = bound();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(peer_addr) = peer.local_addr().unwrap() else {
            unreachable!()
        };
        let mut tx = SendBatch::new();
        let out = [
            // Source 10.255.255.254 is not an address of this host: EINVAL.
            Outgoing {
                len: 1,
                to: peer_addr,
                ifindex: 0,
                source: Ipv4Addr::new(10, 255, 255, 254),
            },
            Outgoing {
                len: 1,
                to: peer_addr,
                ifindex: 0,
                source: Ipv4Addr::LOCALHOST,
            },
        ];
        assert!(tx.send(&server, &out, 0).is_err());
        assert_eq!(tx.send(&server, &out, 1).unwrap(), 1);
    }
}
