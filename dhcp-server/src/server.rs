//! [`Server`]: the receive → decide → send loop around the engine.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Instant, SystemTime};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, ConfigHandle};
use crate::engine::{Context, Target, decide};
use crate::error::Error;
use crate::event::{Event, EventKind, IgnoreReason};
use crate::hwaddr::HwAddr;
use crate::leases::LeaseSource;
use crate::metrics::handles::Metrics;
use crate::reply::EncodeError;
use crate::request::{MessageType, ParseError, Request};
use crate::transport::{
    self, BATCH, Destinations, DhcpSocket, Outgoing, Received, RecvBatch, SendBatch,
};

/// Batches handled per readiness event before the loop looks at the shutdown token again.
const BUDGET: usize = 16;

/// The replies of one batch, waiting to be sent, with the events they settle.
struct Replies {
    out: Vec<Outgoing>,
    types: Vec<MessageType>,
    events: Vec<Event>,
    /// The send error of each reply, once sent.
    errors: Vec<Option<std::io::ErrorKind>>,
}

impl Replies {
    fn new() -> Self {
        Self {
            out: Vec::with_capacity(BATCH),
            types: Vec::with_capacity(BATCH),
            events: Vec::with_capacity(BATCH),
            errors: Vec::with_capacity(BATCH),
        }
    }
    fn clear(&mut self) {
        self.out.clear();
        self.types.clear();
        self.events.clear();
        self.errors.clear();
    }
}

/// A DHCPv4 server: one task, one socket, one lease source.
///
/// The loop receives what is queued (one datagram, or up to 32 with one `recvmmsg`; it never
/// waits to fill a batch), reads the current [`Config`] (lock-free), calls [`decide`] for
/// each request, encodes the replies into reused buffers and sends them (`sendmsg` for one,
/// `sendmmsg` for several); no task per packet, no lock, and no allocation on the common path.
/// Each handled request produces an [`Event`] (stamped with the time), counted in [`Metrics`]
/// and offered to the event channel, if any, without ever waiting: when the channel is full
/// the event is dropped and counted. A reply the socket refuses is a send error, and its
/// event says so ([`IgnoreReason::SendFailed`]) instead of claiming an offer or an ACK.
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
    batch: usize,
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
            batch: BATCH,
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

    /// Receives at most `datagrams` requests per system call (clamped to 1..=32, the
    /// default 32). 1 turns batching off: one `recvmsg`-sized receive per request, as an A/B
    /// baseline for benchmarks. Batching never delays a reply: a receive takes what is
    /// queued and returns.
    ///
    /// ```
    /// # let c = dhcp_server::Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// let server = dhcp_server::Server::new(dhcp_server::ConfigHandle::new(c), dhcp_server::StaticLeases::new())
    ///     .with_batch_size(1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_batch_size(mut self, datagrams: usize) -> Self {
        self.batch = datagrams.clamp(1, BATCH);
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
    /// ```
    /// use std::time::Duration;
    /// use dhcp_server::{Config, ConfigHandle, DhcpSocket, DynamicPool, Server, SocketConfig};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// // A relay agent on loopback: replies to relayed requests go to its port.
    /// let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    /// let socket = DhcpSocket::bind(
    ///     &SocketConfig::new()
    ///         .bind_addr("127.0.0.1:0".parse()?)
    ///         .relay_port(relay.local_addr()?.port()),
    /// )?;
    /// let server_addr = socket.local_addr();
    /// let config = Config::builder("127.0.0.1".parse()?, "127.0.0.0/8".parse()?).build()?;
    /// let pool = ipam::Pool::new("127.0.0.0/8".parse()?, "127.0.0.100".parse()?, "127.0.0.199".parse()?)?;
    /// let shutdown = CancellationToken::new();
    /// let server = Server::new(ConfigHandle::new(config), DynamicPool::new(pool));
    /// let task = tokio::spawn(server.run(socket, shutdown.clone()));
    ///
    /// // A DISCOVER from 02:00:00:00:00:01, relayed by 127.0.0.1 (giaddr).
    /// let mut discover = vec![0u8; 236];
    /// discover[..4].copy_from_slice(&[1, 1, 6, 1]);
    /// discover[24..28].copy_from_slice(&[127, 0, 0, 1]);
    /// discover[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// discover.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    /// relay.send_to(&discover, server_addr).await?;
    /// let mut offer = [0u8; 1500];
    /// tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut offer)).await??;
    /// assert_eq!(&offer[240..243], &[53, 1, 2]); // option 53: OFFER
    ///
    /// // Stopping hands the lease source back: the offered address is held in it.
    /// shutdown.cancel();
    /// let pool = task.await??;
    /// assert_eq!(pool.pool().used(), 1);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })
    /// # }
    /// ```
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
            let mut rx = RecvBatch::new();
            let mut tx = SendBatch::new();
            let mut replies = Replies::new();
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    ready = udp.readable() => ready.map_err(|e| fail("wait for a datagram", e))?,
                }
                for _ in 0..BUDGET {
                    let mut got = 0;
                    let received = udp.try_io(Interest::READABLE, || {
                        got = rx.recv(&udp, self.batch)?;
                        if got < self.batch {
                            // The queue was empty when recvmmsg returned (see
                            // `RecvBatch::recv`): report WouldBlock so tokio clears the
                            // readiness now instead of after one more, empty, receive call.
                            // tokio only clears it if no new readiness event arrived since.
                            Err(std::io::ErrorKind::WouldBlock.into())
                        } else {
                            Ok(())
                        }
                    });
                    if got > 0 {
                        self.decide_batch(&rx, got, destinations, &mut tx, &mut replies);
                        send_batch(&udp, &mut tx, &mut replies).await;
                        self.settle(&mut replies);
                    }
                    match received {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            self.metrics.receive_error();
                            tracing::warn!(error = %e, "receive failed");
                        }
                    }
                }
            }
            tracing::info!("shut down");
            Ok(self.leases)
        }
        .instrument(span)
        .await
    }

    /// Decides every datagram of a batch: replies are encoded into `tx` and listed in
    /// `replies`; events of requests without a reply are emitted now.
    fn decide_batch(
        &mut self,
        rx: &RecvBatch,
        count: usize,
        destinations: Destinations,
        tx: &mut SendBatch,
        replies: &mut Replies,
    ) {
        // One clock read and one configuration load per batch: a batch is handled within
        // microseconds, and a configuration swap applies from the next one.
        let now = Instant::now();
        let wall = SystemTime::now();
        let config = self.config.load();
        for i in 0..count {
            let (packet, meta) = rx.get(i);
            let slot = tx.slot_mut(replies.out.len());
            if let Some((target, out, message_type, event)) =
                self.handle(packet, meta, &config, now, wall, slot)
            {
                replies.out.push(Outgoing {
                    to: destinations.of(target),
                    ..out
                });
                replies.types.push(message_type);
                replies.events.push(event);
            }
        }
    }

    /// Parses, decides and encodes one request into `out`. Returns the reply to send with the
    /// event it settles; `None` when nothing is sent (the event was emitted).
    fn handle(
        &mut self,
        packet: &[u8],
        rx: &Received,
        config: &Config,
        now: Instant,
        wall: SystemTime,
        out: &mut [u8],
    ) -> Option<(Target, Outgoing, MessageType, Event)> {
        let parsed = if rx.truncated {
            Err(ParseError::Truncated)
        } else {
            Request::parse(packet)
        };
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                self.metrics.received(None);
                self.emit(malformed(packet, e).with_time(wall), rx.src);
                return None;
            }
        };
        self.metrics.received(request.message_type());
        let skips = request.skips();
        if !skips.is_empty() {
            self.metrics.skipped(skips);
            tracing::debug!(
                client = %request.hw_addr(),
                xid = format_args!("{:#010x}", request.xid()),
                from = %rx.src,
                skipped = %skips,
                "skipped malformed options",
            );
        }
        let ctx = Context::new(rx.ifindex, rx.src, rx.dst);
        let (reply, event) = decide(&request, &ctx, config, &mut self.leases, now).into_parts();
        let event = event.with_time(wall);
        let Some(reply) = reply else {
            self.emit(event, rx.src);
            return None;
        };
        match reply.encode(out) {
            Ok(len) => Some((
                reply.target(),
                Outgoing {
                    len,
                    // Set by the caller, which knows the socket's ports.
                    to: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    ifindex: rx.ifindex,
                    source: config.server_id(),
                },
                reply.message_type(),
                event,
            )),
            Err(
                EncodeError::TooLarge { needed, limit }
                | EncodeError::BufferTooSmall {
                    needed,
                    available: limit,
                },
            ) => {
                let reason = IgnoreReason::ReplyTooLarge { needed, limit };
                self.emit(event.with_kind(EventKind::Ignored(reason)), rx.src);
                None
            }
        }
    }

    /// Counts what was sent and emits the events of a sent batch: a reply the socket refused
    /// is a send error, and its event says so instead of claiming an offer or an ACK.
    fn settle(&self, replies: &mut Replies) {
        for (i, event) in replies.events.drain(..).enumerate() {
            let to = replies.out[i].to;
            let event = match replies.errors.get(i).copied().flatten() {
                None => {
                    self.metrics.sent(replies.types[i]);
                    event
                }
                Some(kind) => {
                    self.metrics.send_error();
                    tracing::warn!(
                        error = %std::io::Error::from(kind),
                        %to,
                        source = %replies.out[i].source,
                        client = %event.client(),
                        xid = format_args!("{:#010x}", event.xid()),
                        "cannot send reply",
                    );
                    event.with_kind(EventKind::Ignored(IgnoreReason::SendFailed(kind)))
                }
            };
            self.emit(event, to);
        }
        replies.clear();
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

/// The event of a datagram that does not parse, naming the client as far as the header
/// shows it (the DEBUG log line then says who sent garbage).
fn malformed(packet: &[u8], error: ParseError) -> Event {
    let xid = packet
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let client = match (packet.get(1), packet.get(2)) {
        (Some(&htype), Some(&hlen)) => {
            let hlen = usize::from(hlen.min(16));
            packet
                .get(28..28 + hlen)
                .map_or(HwAddr::new(0, &[]), |chaddr| HwAddr::new(htype, chaddr))
        }
        _ => HwAddr::new(0, &[]),
    };
    Event::new(
        EventKind::Ignored(IgnoreReason::Malformed(error)),
        xid,
        client,
        Ipv4Addr::UNSPECIFIED,
    )
}

/// Sends the replies of a batch: one `sendmsg` for a single reply, `sendmmsg` for several.
/// Waits for room in the send buffer rather than dropping a reply. A free function, so the
/// server's lease source is not borrowed across the await (it need not be `Sync`).
async fn send_batch(udp: &UdpSocket, tx: &mut SendBatch, replies: &mut Replies) {
    let count = replies.out.len();
    replies.errors.clear();
    replies.errors.resize(count, None);
    let mut next = 0;
    while next < count {
        let result = if count == 1 {
            let o = replies.out[0];
            udp.try_io(Interest::WRITABLE, || {
                transport::send(udp, tx.slot(0, o.len), o.to, o.ifindex, o.source).map(|_| 1)
            })
        } else {
            udp.try_io(Interest::WRITABLE, || tx.send(udp, &replies.out, next))
        };
        match result {
            Ok(sent) => next += sent.max(1),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The send buffer is full: wait for room rather than drop the reply.
                if let Err(e) = udp.writable().await {
                    replies.errors[next] = Some(e.kind());
                    next += 1;
                }
            }
            Err(e) => {
                // sendmmsg reports the error of the first reply it could not send; the ones
                // after it are tried again.
                replies.errors[next] = Some(e.kind());
                next += 1;
            }
        }
    }
}
