//! [`DhcpSocket`]: the server's UDP socket, bound by the caller with [`DhcpSocket::bind`].
//!
//! One socket on `0.0.0.0:67` (a socket bound to a unicast address would not see limited
//! broadcasts), pinned to one interface with `SO_BINDTODEVICE`, `SO_BROADCAST` so replies can
//! go to 255.255.255.255, and `IP_PKTINFO` to learn each request's interface and destination
//! and to choose the reply's interface and source address. Neither `SO_REUSEADDR` nor
//! `SO_REUSEPORT`: on Linux either would let a second server bind the same port and silently
//! split the traffic; without them the second bind fails with [`Error::AddressInUse`].
//!
//! Needs no capability beyond binding a port below 1024 (`CAP_NET_BIND_SERVICE`, or the
//! namespaced sysctl `net.ipv4.ip_unprivileged_port_start`); `SO_BINDTODEVICE` needs none on
//! Linux 5.7 and later.
//!
//! Datagrams are received and sent in batches with `recvmmsg`/`sendmmsg` (the private `mmsg`
//! module, the crate's only `unsafe` code): a receive takes whatever is queued, one datagram
//! or up to 32, never waiting for more, so batching costs no latency; a single reply goes out
//! with a plain `sendmsg`. Everything else is safe code: socket2 and nix for the socket
//! options, tokio's `UdpSocket` for readiness; the one control message we send
//! (`IP_PKTINFO`) is laid out by hand below, because nix's `sendmsg` allocates its control
//! buffer on every call.

use std::io::{self, IoSlice};
use std::mem::{offset_of, size_of};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, MsgHdr, Protocol, SockAddr, SockRef, Socket, Type};

mod mmsg;

pub(crate) use mmsg::{BATCH, Outgoing, RecvBatch, SendBatch};

use crate::engine::Target;
use crate::error::Error;

/// What the caller decides about the socket: interface, address, ports.
///
/// ```
/// use dhcp_server::SocketConfig;
///
/// let production = SocketConfig::new().interface("eth1");
/// assert_eq!(production.bind_address().to_string(), "0.0.0.0:67");
///
/// // Tests: unprivileged ports on loopback.
/// let test = SocketConfig::new().bind_addr("127.0.0.1:0".parse()?).client_port(6800);
/// assert_eq!(test.client_port_number(), 6800);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    interface: Option<String>,
    bind: SocketAddrV4,
    client_port: u16,
    relay_port: u16,
    broadcast: Ipv4Addr,
    recv_buffer: Option<usize>,
    udp_checksum: bool,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SocketConfig {
    /// `0.0.0.0:67`, no interface binding, replies to client port 68 and relay port 67,
    /// broadcasts to 255.255.255.255.
    ///
    /// ```
    /// assert_eq!(dhcp_server::SocketConfig::new().relay_port_number(), 67);
    /// ```
    pub fn new() -> Self {
        Self {
            interface: None,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67),
            client_port: 68,
            relay_port: 67,
            broadcast: Ipv4Addr::BROADCAST,
            recv_buffer: None,
            udp_checksum: true,
        }
    }
    /// Bind to this interface (`SO_BINDTODEVICE`): receive only its traffic, send out of it.
    ///
    /// ```
    /// let c = dhcp_server::SocketConfig::new().interface("eth1");
    /// assert_eq!(c.interface_name(), Some("eth1"));
    /// ```
    #[must_use]
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interface = Some(name.into());
        self
    }
    /// The local address and port (default `0.0.0.0:67`; port 0 picks a free one).
    ///
    /// ```
    /// let c = dhcp_server::SocketConfig::new().bind_addr("127.0.0.1:0".parse()?);
    /// assert_eq!(c.bind_address().port(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn bind_addr(mut self, addr: SocketAddrV4) -> Self {
        self.bind = addr;
        self
    }
    /// The port replies to clients go to (default 68).
    ///
    /// ```
    /// assert_eq!(dhcp_server::SocketConfig::new().client_port(1068).client_port_number(), 1068);
    /// ```
    #[must_use]
    pub fn client_port(mut self, port: u16) -> Self {
        self.client_port = port;
        self
    }
    /// The port replies to relay agents go to (default 67).
    ///
    /// ```
    /// assert_eq!(dhcp_server::SocketConfig::new().relay_port(1067).relay_port_number(), 1067);
    /// ```
    #[must_use]
    pub fn relay_port(mut self, port: u16) -> Self {
        self.relay_port = port;
        self
    }
    /// Where broadcast replies go (default 255.255.255.255).
    ///
    /// ```
    /// let c = dhcp_server::SocketConfig::new().broadcast_addr("10.0.0.255".parse()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn broadcast_addr(mut self, addr: Ipv4Addr) -> Self {
        self.broadcast = addr;
        self
    }
    /// `SO_RCVBUF` in bytes, to ride out boot storms (the kernel doubles it and caps it at
    /// `net.core.rmem_max`).
    ///
    /// ```
    /// let c = dhcp_server::SocketConfig::new().recv_buffer_size(4 << 20);
    /// ```
    #[must_use]
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }
    /// Whether replies carry a UDP checksum (default: yes). `false` sets `SO_NO_CHECK`: replies
    /// go out with checksum 0, which IPv4 receivers accept as "no checksum".
    ///
    /// This is the fix for the checksum-offload trap without extra privileges: with TX checksum
    /// offload on (the default on veth and tap devices) a UDP socket's packets leave with a
    /// partial checksum that the kernel never fills in on a virtual path, and clients that read
    /// replies on a packet socket and verify the checksum without looking at
    /// `TP_STATUS_CSUMNOTREADY` (old ISC dhclient builds, old busybox) drop every reply.
    /// Alternatives need `CAP_NET_ADMIN`: `ethtool -K <if> tx off` on the server's interface, or
    /// an iptables `CHECKSUM --checksum-fill` rule. Debian 12's dhclient 4.4.3-P1, busybox 1.35
    /// udhcpc and dhcpcd 9.4 accept partial checksums, so the default keeps checksums.
    ///
    /// ```
    /// let c = dhcp_server::SocketConfig::new().udp_checksum(false);
    /// ```
    #[must_use]
    pub fn udp_checksum(mut self, on: bool) -> Self {
        self.udp_checksum = on;
        self
    }
    /// The configured interface.
    ///
    /// ```
    /// assert_eq!(dhcp_server::SocketConfig::new().interface_name(), None);
    /// ```
    pub fn interface_name(&self) -> Option<&str> {
        self.interface.as_deref()
    }
    /// The configured local address.
    ///
    /// ```
    /// assert_eq!(dhcp_server::SocketConfig::new().bind_address().port(), 67);
    /// ```
    pub fn bind_address(&self) -> SocketAddrV4 {
        self.bind
    }
    /// The configured client port.
    ///
    /// ```
    /// assert_eq!(dhcp_server::SocketConfig::new().client_port_number(), 68);
    /// ```
    pub fn client_port_number(&self) -> u16 {
        self.client_port
    }
    /// The configured relay port.
    ///
    /// ```
    /// assert_eq!(dhcp_server::SocketConfig::new().relay_port_number(), 67);
    /// ```
    pub fn relay_port_number(&self) -> u16 {
        self.relay_port
    }
}

/// A bound DHCP server socket, ready for [`Server::run`](crate::Server::run).
///
/// ```
/// use dhcp_server::{DhcpSocket, Error, SocketConfig};
///
/// let config = SocketConfig::new().bind_addr("127.0.0.1:0".parse()?);
/// let socket = DhcpSocket::bind(&config)?;
/// let addr = socket.local_addr();
/// assert_ne!(addr.port(), 0);
///
/// // A second server on the same address and port fails loudly.
/// let err = DhcpSocket::bind(&config.bind_addr(addr)).unwrap_err();
/// assert!(matches!(err, Error::AddressInUse { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DhcpSocket {
    socket: Socket,
    interface: Option<String>,
    local: SocketAddrV4,
    client_port: u16,
    relay_port: u16,
    broadcast: Ipv4Addr,
}

/// One received datagram's metadata.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) src: SocketAddrV4,
    pub(crate) ifindex: u32,
    pub(crate) dst: Ipv4Addr,
    /// Longer than the receive buffer (`MSG_TRUNC`): only a prefix was kept.
    pub(crate) truncated: bool,
}

impl Received {
    pub(crate) const EMPTY: Self = Self {
        len: 0,
        src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        ifindex: 0,
        dst: Ipv4Addr::UNSPECIFIED,
        truncated: false,
    };
}

impl DhcpSocket {
    /// Creates, configures and binds the socket (non-blocking).
    ///
    /// # Errors
    /// [`Error::AddressInUse`] when another socket holds the port (on that interface),
    /// [`Error::PermissionDenied`] without the right to bind the port,
    /// [`Error::NoSuchInterface`] for an unknown interface, [`Error::Socket`] otherwise.
    ///
    /// ```
    /// use dhcp_server::{DhcpSocket, Error, SocketConfig};
    /// let err = DhcpSocket::bind(&SocketConfig::new().interface("no-such-if0").bind_addr("127.0.0.1:0".parse()?));
    /// assert!(matches!(err, Err(Error::NoSuchInterface { .. } | Error::Socket { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind(config: &SocketConfig) -> Result<Self, Error> {
        let interface = config.interface.clone();
        let fail = |operation: &str, source: io::Error| Error::Socket {
            operation: operation.to_owned(),
            interface: interface.clone(),
            source,
        };
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| fail("create a UDP socket", e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| fail("set O_NONBLOCK", e))?;
        if let Some(name) = &interface {
            socket.bind_device(Some(name.as_bytes())).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENODEV) {
                    Error::NoSuchInterface {
                        interface: name.clone(),
                        source: e,
                    }
                } else {
                    fail("set SO_BINDTODEVICE", e)
                }
            })?;
        }
        socket
            .set_broadcast(true)
            .map_err(|e| fail("set SO_BROADCAST", e))?;
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
            .map_err(|e| fail("set IP_PKTINFO", e.into()))?;
        if !config.udp_checksum {
            setsockopt(&socket, opt::NoCheck, &true)
                .map_err(|e| fail("set SO_NO_CHECK", e.into()))?;
        }
        if let Some(bytes) = config.recv_buffer {
            socket
                .set_recv_buffer_size(bytes)
                .map_err(|e| fail("set SO_RCVBUF", e))?;
        }
        let addr = config.bind;
        socket
            .bind(&SockAddr::from(addr))
            .map_err(|source| match source.kind() {
                io::ErrorKind::AddrInUse => Error::AddressInUse {
                    addr,
                    interface: interface.clone(),
                    source,
                },
                io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                    addr,
                    interface: interface.clone(),
                    source,
                },
                _ => fail(&format!("bind {addr}"), source),
            })?;
        let local = socket
            .local_addr()
            .map_err(|e| fail("read the local address", e))?
            .as_socket_ipv4()
            .unwrap_or(addr);
        Ok(Self {
            socket,
            interface,
            local,
            client_port: config.client_port,
            relay_port: config.relay_port,
            broadcast: config.broadcast,
        })
    }

    /// The bound address and port.
    ///
    /// ```
    /// # let s = dhcp_server::DhcpSocket::bind(&dhcp_server::SocketConfig::new().bind_addr("127.0.0.1:0".parse()?))?;
    /// assert!(s.local_addr().ip().is_loopback());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The interface the socket is bound to.
    ///
    /// ```
    /// # let s = dhcp_server::DhcpSocket::bind(&dhcp_server::SocketConfig::new().bind_addr("127.0.0.1:0".parse()?))?;
    /// assert_eq!(s.interface(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    /// The address and port a reply for `target` goes to.
    ///
    /// ```
    /// use dhcp_server::{DhcpSocket, SocketConfig, Target};
    /// let s = DhcpSocket::bind(&SocketConfig::new().bind_addr("127.0.0.1:0".parse()?))?;
    /// assert_eq!(s.destination(Target::Broadcast).to_string(), "255.255.255.255:68");
    /// assert_eq!(s.destination(Target::Relay("10.0.0.2".parse()?)).to_string(), "10.0.0.2:67");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn destination(&self, target: Target) -> SocketAddrV4 {
        Destinations {
            client_port: self.client_port,
            relay_port: self.relay_port,
            broadcast: self.broadcast,
        }
        .of(target)
    }

    /// Hands the socket to tokio (safe registration through `tokio::net::UdpSocket`; tokio's
    /// `AsyncFd` needs `unsafe` since 1.54) with the destination mapping.
    pub(crate) fn into_tokio(self) -> io::Result<(tokio::net::UdpSocket, Destinations)> {
        let std: std::net::UdpSocket = self.socket.into();
        let destinations = Destinations {
            client_port: self.client_port,
            relay_port: self.relay_port,
            broadcast: self.broadcast,
        };
        Ok((tokio::net::UdpSocket::from_std(std)?, destinations))
    }
}

/// Maps a [`Target`] to an address and port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destinations {
    client_port: u16,
    relay_port: u16,
    broadcast: Ipv4Addr,
}

impl Destinations {
    pub(crate) fn of(self, target: Target) -> SocketAddrV4 {
        match target {
            Target::Relay(a) => SocketAddrV4::new(a, self.relay_port),
            Target::Unicast(a) => SocketAddrV4::new(a, self.client_port),
            Target::Broadcast => SocketAddrV4::new(self.broadcast, self.client_port),
        }
    }
}

/// Sends `data` to `to` out of interface `ifindex` (0: routing decides) with source address
/// `source` (0.0.0.0: the kernel picks).
pub(crate) fn send(
    socket: &impl AsFd,
    data: &[u8],
    to: SocketAddrV4,
    ifindex: u32,
    source: Ipv4Addr,
) -> io::Result<usize> {
    let control = pktinfo(ifindex, source);
    let addr = SockAddr::from(SocketAddr::V4(to));
    let bufs = [IoSlice::new(data)];
    let msg = MsgHdr::new()
        .with_addr(&addr)
        .with_buffers(&bufs)
        .with_control(&control);
    SockRef::from(socket).sendmsg(&msg, 0)
}

impl AsRawFd for DhcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for DhcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

mod opt {
    //! Socket options nix has no wrapper for, declared with nix's own macro so the FFI call
    //! stays in nix's audited code.
    use nix::{setsockopt_impl, sockopt_impl};

    /// `SO_NO_CHECK` from `asm-generic/socket.h` (11 on every architecture Rust targets); the
    /// libc crate exports it for few targets.
    const SO_NO_CHECK: libc::c_int = 11;

    sockopt_impl!(
        /// `SO_NO_CHECK`: send UDP datagrams without a checksum (see
        /// [`SocketConfig::udp_checksum`](super::SocketConfig::udp_checksum)).
        NoCheck,
        SetOnly,
        libc::SOL_SOCKET,
        SO_NO_CHECK,
        bool
    );
}

// The layout of one `IP_PKTINFO` control message, computed as the CMSG_* macros do: a
// `cmsghdr` (length as a `size_t`, then level and type as `int`s), padded to `size_t`
// alignment, then an `in_pktinfo`. The assertions make any platform where this does not hold
// fail to compile instead of sending garbage.
pub(crate) const WORD: usize = size_of::<usize>();
pub(crate) const fn align(n: usize) -> usize {
    (n + WORD - 1) & !(WORD - 1)
}
pub(crate) const CMSG_DATA: usize = align(size_of::<libc::cmsghdr>());
const PKTINFO_LEN: usize = size_of::<libc::in_pktinfo>();
const CMSG_LEN: usize = CMSG_DATA + PKTINFO_LEN;
pub(crate) const CMSG_SPACE: usize = CMSG_DATA + align(PKTINFO_LEN);
const _: () = {
    assert!(offset_of!(libc::cmsghdr, cmsg_level) == WORD);
    assert!(offset_of!(libc::cmsghdr, cmsg_type) == WORD + 4);
    assert!(PKTINFO_LEN == 12);
    assert!(offset_of!(libc::in_pktinfo, ipi_spec_dst) == 4);
    assert!(offset_of!(libc::in_pktinfo, ipi_addr) == 8);
};

/// An `IP_PKTINFO` control message choosing the outgoing interface and source address.
pub(crate) fn pktinfo(ifindex: u32, source: Ipv4Addr) -> [u8; CMSG_SPACE] {
    let mut c = [0u8; CMSG_SPACE];
    c[..WORD].copy_from_slice(&CMSG_LEN.to_ne_bytes());
    c[WORD..WORD + 4].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
    c[WORD + 4..WORD + 8].copy_from_slice(&libc::IP_PKTINFO.to_ne_bytes());
    let ifindex = libc::c_int::try_from(ifindex).unwrap_or(0);
    c[CMSG_DATA..CMSG_DATA + 4].copy_from_slice(&ifindex.to_ne_bytes());
    // `in_addr` holds the address in network byte order: its octets, in order.
    c[CMSG_DATA + 4..CMSG_DATA + 8].copy_from_slice(&source.octets());
    c
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    fn loopback() -> DhcpSocket {
        DhcpSocket::bind(&SocketConfig::new().bind_addr("127.0.0.1:0".parse().unwrap())).unwrap()
    }

    #[test]
    fn pktinfo_sets_the_source_address_and_is_received_back() {
        let server = loopback();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(to) = peer.local_addr().unwrap() else {
            unreachable!()
        };
        // 127.0.0.9 is local (all of 127/8 is), so the kernel accepts it as a source.
        let source: Ipv4Addr = "127.0.0.9".parse().unwrap();
        send(&server, b"hello", to, 1, source).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from.ip(), std::net::IpAddr::V4(source));

        // And the other way: destination and interface come back from IP_PKTINFO.
        peer.send_to(b"ping", SocketAddr::V4(server.local_addr()))
            .unwrap();
        let mut batch = RecvBatch::new();
        loop {
            match batch.recv(&server, BATCH) {
                Ok(n) => break assert_eq!(n, 1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let (bytes, rx) = batch.get(0);
        assert_eq!(bytes, b"ping");
        assert_eq!(rx.dst, Ipv4Addr::LOCALHOST);
        assert_eq!(rx.src, to);
        assert_ne!(rx.ifindex, 0);
    }

    #[test]
    fn a_second_socket_on_the_same_port_is_refused() {
        let first = loopback();
        let err = DhcpSocket::bind(&SocketConfig::new().bind_addr(first.local_addr())).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::AddressInUse { .. }), "{err:?}");
        assert!(text.contains(&first.local_addr().to_string()), "{text}");
    }

    #[test]
    fn destinations_use_the_configured_ports() {
        let s = DhcpSocket::bind(
            &SocketConfig::new()
                .bind_addr("127.0.0.1:0".parse().unwrap())
                .client_port(1068)
                .relay_port(1067)
                .broadcast_addr("127.255.255.255".parse().unwrap()),
        )
        .unwrap();
        let a: Ipv4Addr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            s.destination(Target::Unicast(a)),
            SocketAddrV4::new(a, 1068)
        );
        assert_eq!(s.destination(Target::Relay(a)), SocketAddrV4::new(a, 1067));
        assert_eq!(
            s.destination(Target::Broadcast).to_string(),
            "127.255.255.255:1068"
        );
    }
}
