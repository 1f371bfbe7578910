//! [`Server`]: the receive → decide → send loop around the engine.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ConfigHandle;
use crate::engine::{Context, Target, decide};
use crate::error::Error;
use crate::event::{Event, EventKind, IgnoreReason};
use crate::hwaddr::HwAddr;
use crate::leases::LeaseSource;
use crate::metrics::Metrics;
use crate::reply::EncodeError;
use crate::request::{MessageType, Request};
use crate::transport::{self, DhcpSocket, Received};

/// Datagrams handled per readiness event before the loop looks at the shutdown token again.
const BUDGET: usize = 64;
/// The largest UDP payload over IPv4: nothing is ever truncated.
const MAX_DATAGRAM: usize = 65_507;

/// A reply ready to go.
struct Outgoing {
    len: usize,
    target: Target,
    ifindex: u32,
    source: Ipv4Addr,
    message_type: MessageType,
}

/// A DHCPv4 server: one task, one socket, one lease source.
///
/// The loop receives a datagram, reads the current [`Config`](crate::Config) (lock-free),
/// calls [`decide`], encodes the reply into a reused buffer and sends it; no task per packet,
/// no lock, and no allocation on the common path. Each handled request produces an
/// [`Event`], counted in [`Metrics`] and offered to the event channel, if any, without ever
/// waiting: when the channel is full the event is dropped and counted.
///
/// ```
/// use dhcp_server::{Config, ConfigHandle, DhcpSocket, Lease, Server, SocketConfig, StaticLeases};
/// use tokio_util::sync::CancellationToken;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let config = ConfigHandle::new(
///     Config::builder("127.0.0.1".parse()?, "127.0.0.0/8".parse()?).build()?,
/// );
/// let leases = StaticLeases::new();
/// leases.insert("02:00:00:00:00:01".parse()?, Lease::new("127.0.0.50".parse()?));
///
/// // The caller binds (here an unprivileged loopback port) and owns shutdown.
/// let socket = DhcpSocket::bind(&SocketConfig::new().bind_addr("127.0.0.1:0".parse()?))?;
/// let (events, mut rx) = tokio::sync::mpsc::channel(1024);
/// let shutdown = CancellationToken::new();
/// let server = Server::new(config.clone(), leases.clone()).with_events(events);
/// let task = tokio::spawn(server.run(socket, shutdown.clone()));
///
/// // ... the agent swaps `config` and `leases` whenever its pool changes ...
/// shutdown.cancel();
/// task.await??;
/// assert!(rx.try_recv().is_err()); // nobody asked anything
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
#[derive(Debug)]
pub struct Server<L> {
    config: ConfigHandle,
    leases: L,
    events: Option<mpsc::Sender<Event>>,
    metrics: Metrics,
}

impl<L: LeaseSource> Server<L> {
    /// A server answering from `config` and `leases`, with counters registered against the
    /// recorder installed now (see [`with_metrics`](Self::with_metrics)).
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// let server = dhcp_server::Server::new(dhcp_server::ConfigHandle::new(c), dhcp_server::StaticLeases::new());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(config: ConfigHandle, leases: L) -> Self {
        Self {
            config,
            leases,
            events: None,
            metrics: Metrics::new(),
        }
    }

    /// Sends an [`Event`] per handled request to `events`. The server never waits on the
    /// channel: size it for bursts; overflow is dropped and counted
    /// ([`EVENTS_DROPPED_TOTAL`](crate::metrics::EVENTS_DROPPED_TOTAL)).
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// let (tx, rx) = tokio::sync::mpsc::channel(4096);
    /// let server = dhcp_server::Server::new(dhcp_server::ConfigHandle::new(c), dhcp_server::StaticLeases::new())
    ///     .with_events(tx);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_events(mut self, events: mpsc::Sender<Event>) -> Self {
        self.events = Some(events);
        self
    }

    /// Uses these counters (e.g. registered under a test recorder).
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// let server = dhcp_server::Server::new(dhcp_server::ConfigHandle::new(c), dhcp_server::StaticLeases::new())
    ///     .with_metrics(dhcp_server::Metrics::new());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Serves on `socket` until `shutdown` is cancelled, then returns the lease source (so a
    /// [`DynamicPool`](crate::DynamicPool)'s bindings can be inspected or kept).
    ///
    /// # Errors
    /// [`Error::Socket`] when the socket cannot be registered with the tokio reactor or the
    /// reactor fails. Per-packet receive and send errors are logged and counted, not returned.
    ///
    /// # Cancel safety
    /// Cancelling `shutdown` stops the loop between packets: a request being handled is
    /// answered first. Dropping the future instead stops at the next await point, which may
    /// lose that one reply.
    ///
    /// See [`Server`] for an example.
    pub async fn run(
        mut self,
        socket: DhcpSocket,
        shutdown: CancellationToken,
    ) -> Result<L, Error> {
        let span = tracing::info_span!(
            "dhcp_server",
            interface = socket.interface().unwrap_or("*"),
            addr = %socket.local_addr(),
        );
        let interface = socket.interface().map(str::to_owned);
        let fail = move |operation: &str, source| Error::Socket {
            operation: operation.to_owned(),
            interface: interface.clone(),
            source,
        };
        async move {
            let (udp, destinations) = socket
                .into_tokio()
                .map_err(|e| fail("register with the tokio reactor", e))?;
            tracing::info!("serving DHCP");
            let mut inbuf = vec![0u8; MAX_DATAGRAM];
            let mut outbuf = vec![0u8; MAX_DATAGRAM];
            let mut control = [0u8; 128];
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    ready = udp.readable() => ready.map_err(|e| fail("wait for a datagram", e))?,
                }
                for _ in 0..BUDGET {
                    let received = udp.try_io(Interest::READABLE, || {
                        transport::recv(&udp, &mut inbuf, &mut control)
                    });
                    let rx = match received {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            self.metrics.receive_error();
                            tracing::warn!(error = %e, "receive failed");
                            continue;
                        }
                        Ok(rx) => rx,
                    };
                    let Some(out) = self.handle(&inbuf[..rx.len], &rx, &mut outbuf) else {
                        continue;
                    };
                    let to = destinations.of(out.target);
                    send(&udp, &self.metrics, &outbuf[..out.len], to, &out).await;
                }
            }
            tracing::info!("shut down");
            Ok(self.leases)
        }
        .instrument(span)
        .await
    }

    /// Parses, decides and encodes; `None` when there is nothing to send.
    fn handle(&mut self, packet: &[u8], rx: &Received, out: &mut [u8]) -> Option<Outgoing> {
        let now = Instant::now();
        let request = match Request::parse(packet) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.received(None);
                let xid = packet
                    .get(4..8)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let event = Event::new(
                    EventKind::Ignored(IgnoreReason::Malformed(e)),
                    xid,
                    HwAddr::new(0, &[]),
                    Ipv4Addr::UNSPECIFIED,
                );
                self.emit(event, rx.src);
                return None;
            }
        };
        self.metrics.received(request.message_type());
        let config = self.config.load();
        let ctx = Context::new(rx.ifindex, rx.src, rx.dst);
        let (reply, mut event) =
            decide(&request, &ctx, &config, &mut self.leases, now).into_parts();
        let outgoing = reply.and_then(|reply| match reply.encode(out) {
            Ok(len) => Some(Outgoing {
                len,
                target: reply.target(),
                ifindex: rx.ifindex,
                source: config.server_id(),
                message_type: reply.message_type(),
            }),
            Err(EncodeError::TooLarge { needed, limit }) => {
                let reason = IgnoreReason::ReplyTooLarge { needed, limit };
                event = Event::new(
                    EventKind::Ignored(reason),
                    event.xid(),
                    event.client(),
                    event.addr(),
                );
                None
            }
            Err(EncodeError::BufferTooSmall { needed, available }) => {
                let reason = IgnoreReason::ReplyTooLarge {
                    needed,
                    limit: available,
                };
                event = Event::new(
                    EventKind::Ignored(reason),
                    event.xid(),
                    event.client(),
                    event.addr(),
                );
                None
            }
        });
        self.emit(event, rx.src);
        outgoing
    }

    fn emit(&self, event: Event, from: SocketAddrV4) {
        self.metrics.event(&event);
        match event.kind() {
            EventKind::Declined => {
                tracing::warn!(%event, %from, "address conflict reported by client");
            }
            EventKind::Ignored(IgnoreReason::LeaseOutsideSubnet(_)) => {
                tracing::warn!(%event, %from, "lease table and subnet disagree");
            }
            _ => tracing::debug!(%event, %from),
        }
        if let Some(events) = &self.events
            && events.try_send(event).is_err()
        {
            self.metrics.event_dropped();
        }
    }
}

/// Sends one reply; waits for room in the send buffer rather than dropping it. A free
/// function, so the server's lease source is not borrowed across the await (it need not be
/// `Sync`).
async fn send(udp: &UdpSocket, metrics: &Metrics, data: &[u8], to: SocketAddrV4, out: &Outgoing) {
    let (ifindex, source) = (out.ifindex, out.source);
    let mut result = transport::send(udp, data, to, ifindex, source);
    while matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
        // The send buffer is full: wait for room rather than drop the reply.
        result = match udp.writable().await {
            Ok(()) => udp.try_io(Interest::WRITABLE, || {
                transport::send(udp, data, to, ifindex, source)
            }),
            Err(e) => Err(e),
        };
    }
    match result {
        Ok(_) => metrics.sent(out.message_type),
        Err(e) => {
            metrics.send_error();
            tracing::warn!(error = %e, %to, source = %out.source, "cannot send reply");
        }
    }
}
