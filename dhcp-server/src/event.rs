//! [`Event`]: what the server did with one request, for the embedding program (status,
//! Kubernetes Events, logs) and for metrics.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::engine::RequestState;
use crate::hwaddr::HwAddr;
use crate::request::ParseError;

/// Why a request got no reply. `Copy`, with a stable [`label`](Self::label) for metrics.
///
/// ```
/// use dhcp_server::IgnoreReason;
///
/// assert_eq!(IgnoreReason::UnknownClient.label(), "unknown_client");
/// assert_eq!(IgnoreReason::UnknownClient.to_string(), "no lease for this client");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// The datagram is not a well-formed BOOTP/DHCP message.
    #[error("malformed: {0}")]
    Malformed(ParseError),
    /// `op` is BOOTREPLY (another server's reply) or unknown.
    #[error("not a BOOTREQUEST")]
    NotBootRequest,
    /// No option 53: plain BOOTP, which this server does not serve.
    #[error("no DHCP message type (BOOTP)")]
    NoMessageType,
    /// A message type servers do not answer (OFFER, ACK, NAK, FORCERENEW, LEASEQUERY...).
    #[error("message type {0} is not handled")]
    UnsupportedMessageType(u8),
    /// Option 54 names another server: the client chose someone else.
    #[error("addressed to server {0}")]
    OtherServer(Ipv4Addr),
    /// The lease source has no lease for this client (static pools: MAC not in the table),
    /// and the server is not authoritative.
    #[error("no lease for this client")]
    UnknownClient,
    /// The dynamic pool has no free address.
    #[error("no free address")]
    PoolExhausted,
    /// The relay (giaddr) or the client's address is not in the served subnet.
    #[error("{0} is not in the served subnet")]
    WrongNetwork(Ipv4Addr),
    /// The lease source returned an address outside the served subnet (a configuration
    /// mismatch between the lease table and the subnet).
    #[error("lease address {0} is outside the served subnet")]
    LeaseOutsideSubnet(Ipv4Addr),
    /// A REQUEST, DECLINE or RELEASE that names no address (no option 50, no ciaddr), or an
    /// INFORM without ciaddr (its ACK would have nowhere to go).
    #[error("no address in the request")]
    NoAddress,
    /// A DECLINE or RELEASE for an address that is not the client's.
    #[error("{0} is not this client's address")]
    NotClientAddress(Ipv4Addr),
    /// The client's address is marked in conflict (it declined it, or the embedder said so)
    /// and the embedder has not cleared it: the server does not offer it again
    /// ([`StaticLeases::clear_conflict`](crate::StaticLeases::clear_conflict)).
    #[error("{0} is in conflict and not offered until cleared")]
    AddressConflict(Ipv4Addr),
    /// The reply was decided but the socket refused it (e.g. no route to an off-link
    /// `ciaddr`); counted in [`SEND_ERRORS_TOTAL`](crate::metrics::SEND_ERRORS_TOTAL).
    #[error("reply could not be sent: {0}")]
    SendFailed(io::ErrorKind),
    /// The reply does not fit in what the client accepts even without optional options.
    #[error("reply of {needed} bytes exceeds the client's limit of {limit}")]
    ReplyTooLarge {
        /// Bytes the smallest possible reply needs.
        needed: usize,
        /// The limit.
        limit: usize,
    },
}

impl IgnoreReason {
    /// Every label, in [`index`](Self::index) order (for pre-registering metrics).
    pub(crate) const LABELS: [&'static str; 14] = [
        "malformed",
        "not_boot_request",
        "no_message_type",
        "unsupported_message_type",
        "other_server",
        "unknown_client",
        "pool_exhausted",
        "wrong_network",
        "lease_outside_subnet",
        "no_address",
        "not_client_address",
        "reply_too_large",
        "address_conflict",
        "send_failed",
    ];

    /// A short, stable label for logs, and the `reason` of the
    /// [`IGNORED_TOTAL`](crate::metrics::IGNORED_TOTAL) counter.
    ///
    /// ```
    /// use dhcp_server::{Event, EventKind};
    ///
    /// // What an embedder logs for every unanswered request.
    /// fn why_not(event: &Event) -> Option<&'static str> {
    ///     match event.kind() {
    ///         EventKind::Ignored(reason) => Some(reason.label()),
    ///         _ => None,
    ///     }
    /// }
    /// # use dhcp_server::{HwAddr, IgnoreReason};
    /// let e = Event::new(EventKind::Ignored(IgnoreReason::PoolExhausted), 7, HwAddr::new(1, &[2; 6]), [0; 4].into());
    /// assert_eq!(why_not(&e), Some("pool_exhausted"));
    /// ```
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Position of this variant in [`LABELS`](Self::LABELS).
    pub(crate) fn index(&self) -> usize {
        match self {
            Self::Malformed(_) => 0,
            Self::NotBootRequest => 1,
            Self::NoMessageType => 2,
            Self::UnsupportedMessageType(_) => 3,
            Self::OtherServer(_) => 4,
            Self::UnknownClient => 5,
            Self::PoolExhausted => 6,
            Self::WrongNetwork(_) => 7,
            Self::LeaseOutsideSubnet(_) => 8,
            Self::NoAddress => 9,
            Self::NotClientAddress(_) => 10,
            Self::ReplyTooLarge { .. } => 11,
            Self::AddressConflict(_) => 12,
            Self::SendFailed(_) => 13,
        }
    }
}

/// What happened.
///
/// ```
/// use dhcp_server::EventKind;
/// assert_eq!(EventKind::Declined.label(), "declined");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// DISCOVER answered with an OFFER of [`Event::addr`].
    Offered,
    /// REQUEST answered with an ACK of [`Event::addr`].
    Acked(RequestState),
    /// REQUEST answered with a NAK; [`Event::addr`] is the address the client asked for.
    Nacked(RequestState),
    /// The client reported [`Event::addr`] as already in use (an address conflict the
    /// operator must look at); the lease source took it out of service.
    Declined,
    /// The client gave [`Event::addr`] back.
    Released,
    /// INFORM answered with configuration for [`Event::addr`] (the client's ciaddr).
    Informed,
    /// No reply; the reason says why.
    Ignored(IgnoreReason),
}

impl EventKind {
    /// Every label, in [`index`](Self::index) order.
    pub(crate) const LABELS: [&'static str; 7] = [
        "offered", "acked", "nacked", "declined", "released", "informed", "ignored",
    ];

    /// A short, stable label for logs, and the `event` of the
    /// [`EVENTS_TOTAL`](crate::metrics::EVENTS_TOTAL) counter: the variant without its data.
    ///
    /// ```
    /// use dhcp_server::{EventKind, RequestState};
    /// assert_eq!(EventKind::Acked(RequestState::Renewing).label(), "acked");
    /// assert_eq!(EventKind::Acked(RequestState::Selecting).label(), "acked");
    /// ```
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Position of this variant in [`LABELS`](Self::LABELS).
    pub(crate) fn index(&self) -> usize {
        match self {
            Self::Offered => 0,
            Self::Acked(_) => 1,
            Self::Nacked(_) => 2,
            Self::Declined => 3,
            Self::Released => 4,
            Self::Informed => 5,
            Self::Ignored(_) => 6,
        }
    }
}

/// One handled request: what was done, for which client, about which address, on behalf of
/// which server identifier and when.
///
/// Cheap to emit: fixed-size except for [`client_id`](Self::client_id), which only
/// [`Declined`](EventKind::Declined) events carry (an allocation per DECLINE, none on the
/// common path). A DECLINE event has everything an embedder needs to act on the conflict: the
/// declined address ([`addr`](Self::addr)), the client's hardware address and client
/// identifier, the transaction id, the server identifier and the time.
///
/// ```
/// use dhcp_server::{Event, EventKind, HwAddr};
///
/// let e = Event::new(EventKind::Offered, 7, HwAddr::new(1, &[2, 0, 0, 0, 0, 1]), "10.0.0.5".parse()?);
/// assert_eq!(e.to_string(), "offered 10.0.0.5 to 02:00:00:00:00:01 (xid 0x00000007)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    kind: EventKind,
    xid: u32,
    client: HwAddr,
    addr: Ipv4Addr,
    server_id: Ipv4Addr,
    client_id: Option<Arc<[u8]>>,
    time: Option<SystemTime>,
}

impl Event {
    /// An event; `addr` is 0.0.0.0 when no address is involved. No server identifier
    /// (0.0.0.0), client identifier or time: see the `with_*` methods.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr, IgnoreReason};
    /// let e = Event::new(EventKind::Ignored(IgnoreReason::NoMessageType), 1, HwAddr::new(1, &[]), [0; 4].into());
    /// assert_eq!(e.xid(), 1);
    /// assert!(e.server_id().is_unspecified());
    /// ```
    pub fn new(kind: EventKind, xid: u32, client: HwAddr, addr: Ipv4Addr) -> Self {
        Self {
            kind,
            xid,
            client,
            addr,
            server_id: Ipv4Addr::UNSPECIFIED,
            client_id: None,
            time: None,
        }
    }
    /// Sets the server identifier the request was answered as.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// let e = Event::new(EventKind::Released, 1, HwAddr::new(1, &[]), [0; 4].into())
    ///     .with_server_id([10, 0, 0, 1].into());
    /// assert_eq!(e.server_id().to_string(), "10.0.0.1");
    /// ```
    #[must_use]
    pub fn with_server_id(mut self, server_id: Ipv4Addr) -> Self {
        self.server_id = server_id;
        self
    }
    /// Sets the client identifier (option 61) the client sent.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// let e = Event::new(EventKind::Declined, 1, HwAddr::new(1, &[]), [0; 4].into())
    ///     .with_client_id(&[1, 2, 0, 0, 0, 0, 1]);
    /// assert_eq!(e.client_id(), Some(&[1, 2, 0, 0, 0, 0, 1][..]));
    /// ```
    #[must_use]
    pub fn with_client_id(mut self, client_id: &[u8]) -> Self {
        self.client_id = Some(Arc::from(client_id));
        self
    }
    /// Sets when the request was handled.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// let now = std::time::SystemTime::now();
    /// let e = Event::new(EventKind::Released, 1, HwAddr::new(1, &[]), [0; 4].into()).with_time(now);
    /// assert_eq!(e.time(), Some(now));
    /// ```
    #[must_use]
    pub fn with_time(mut self, time: SystemTime) -> Self {
        self.time = Some(time);
        self
    }
    /// The same event with another kind (e.g. an offer that could not be sent).
    #[must_use]
    pub(crate) fn with_kind(mut self, kind: EventKind) -> Self {
        self.kind = kind;
        self
    }
    /// What happened.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// # let e = Event::new(EventKind::Released, 1, HwAddr::new(1, &[]), [0; 4].into());
    /// assert_eq!(e.kind(), EventKind::Released);
    /// ```
    pub fn kind(&self) -> EventKind {
        self.kind
    }
    /// The transaction id of the request.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// # let e = Event::new(EventKind::Released, 9, HwAddr::new(1, &[]), [0; 4].into());
    /// assert_eq!(e.xid(), 9);
    /// ```
    pub fn xid(&self) -> u32 {
        self.xid
    }
    /// The client's hardware address (`htype`, `chaddr`).
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// # let e = Event::new(EventKind::Released, 9, HwAddr::new(1, &[1; 6]), [0; 4].into());
    /// assert_eq!(e.client().to_string(), "01:01:01:01:01:01");
    /// ```
    pub fn client(&self) -> HwAddr {
        self.client
    }
    /// The address concerned (offered, acked, requested, declined, released, informed), or
    /// 0.0.0.0.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// # let e = Event::new(EventKind::Released, 9, HwAddr::new(1, &[]), [10, 0, 0, 9].into());
    /// assert_eq!(e.addr().to_string(), "10.0.0.9");
    /// ```
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    /// The server identifier (option 54) the server answered as, from the configuration in
    /// force for this request; 0.0.0.0 for a datagram that did not parse.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// # let e = Event::new(EventKind::Released, 9, HwAddr::new(1, &[]), [10, 0, 0, 9].into());
    /// assert!(e.server_id().is_unspecified());
    /// ```
    pub fn server_id(&self) -> Ipv4Addr {
        self.server_id
    }
    /// The client identifier (option 61) of a [`Declined`](EventKind::Declined) event, when
    /// the client sent one. Other events do not carry it (it would cost an allocation per
    /// request).
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// # let e = Event::new(EventKind::Released, 9, HwAddr::new(1, &[]), [10, 0, 0, 9].into());
    /// assert_eq!(e.client_id(), None);
    /// ```
    pub fn client_id(&self) -> Option<&[u8]> {
        self.client_id.as_deref()
    }
    /// When the server handled the request (wall clock, read by the server loop). `None` for
    /// events straight from [`decide`](crate::decide), which reads no clock.
    ///
    /// ```
    /// # use dhcp_server::{Event, EventKind, HwAddr};
    /// # let e = Event::new(EventKind::Released, 9, HwAddr::new(1, &[]), [10, 0, 0, 9].into());
    /// assert_eq!(e.time(), None);
    /// ```
    pub fn time(&self) -> Option<SystemTime> {
        self.time
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (client, addr) = (self.client, self.addr);
        match self.kind {
            EventKind::Offered => write!(f, "offered {addr} to {client}"),
            EventKind::Acked(state) => write!(f, "acked {addr} to {client} ({state})"),
            EventKind::Nacked(state) => write!(f, "nacked {addr} requested by {client} ({state})"),
            EventKind::Declined => write!(f, "{client} declined {addr}: address conflict"),
            EventKind::Released => write!(f, "{client} released {addr}"),
            EventKind::Informed => write!(f, "informed {client} at {addr}"),
            EventKind::Ignored(reason) => write!(f, "ignored request from {client}: {reason}"),
        }?;
        write!(f, " (xid {:#010x})", self.xid)
    }
}
