//! The protocol engine: [`decide`] turns a request, its [`Context`], the [`Config`] and a
//! [`LeaseSource`] into a [`Decision`]. No IO, no clock, no randomness: the time comes in as
//! an argument, so every behaviour is a plain function call in tests, benches and fuzzers.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use crate::config::Config;
use crate::event::{Event, EventKind, IgnoreReason};
use crate::leases::{Confirmation, Lease, LeaseSource, NoOffer, Query};
use crate::reply::Reply;
use crate::request::{BOOTREQUEST, MessageType, Request};

/// Where a reply goes (RFC 2131 §4.1). The transport maps it to an address and port.
///
/// ```
/// use dhcp_server::Target;
/// assert_eq!(Target::Relay([10, 0, 0, 1].into()).to_string(), "relay 10.0.0.1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// To the relay agent at `giaddr`, server port (67).
    Relay(Ipv4Addr),
    /// To the client's configured address (`ciaddr`), client port (68).
    Unicast(Ipv4Addr),
    /// To 255.255.255.255, client port (68), out of the receiving interface.
    Broadcast,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relay(a) => write!(f, "relay {a}"),
            Self::Unicast(a) => write!(f, "unicast {a}"),
            Self::Broadcast => f.write_str("broadcast"),
        }
    }
}

/// The client state a DHCPREQUEST comes from (RFC 2131 §4.3.2).
///
/// ```
/// assert_eq!(dhcp_server::RequestState::InitReboot.to_string(), "init-reboot");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Answering an offer: option 54 and 50 set, ciaddr 0.
    Selecting,
    /// Rebooting with a remembered address: option 50 set, no 54, ciaddr 0.
    InitReboot,
    /// Extending a lease with the server that gave it: ciaddr set, sent unicast to us.
    Renewing,
    /// Extending a lease with any server: ciaddr set, broadcast (or relayed).
    Rebinding,
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Selecting => "selecting",
            Self::InitReboot => "init-reboot",
            Self::Renewing => "renewing",
            Self::Rebinding => "rebinding",
        })
    }
}

/// How a request arrived: interface, source and destination address (from `IP_PKTINFO`).
/// The destination tells a RENEWING client (unicast to us) from a REBINDING one (broadcast).
///
/// ```
/// use dhcp_server::Context;
///
/// let ctx = Context::new(2, "0.0.0.0:68".parse()?, [255; 4].into());
/// assert!(ctx.is_broadcast());
/// assert_eq!(ctx.ifindex(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    ifindex: u32,
    src: SocketAddrV4,
    dst: Ipv4Addr,
}

impl Context {
    /// A request received on interface `ifindex` from `src`, sent to `dst`.
    ///
    /// ```
    /// let ctx = dhcp_server::Context::new(1, "10.0.0.5:68".parse()?, "10.0.0.1".parse()?);
    /// assert!(!ctx.is_broadcast());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(ifindex: u32, src: SocketAddrV4, dst: Ipv4Addr) -> Self {
        Self { ifindex, src, dst }
    }
    /// The receiving interface.
    ///
    /// ```
    /// # let ctx = dhcp_server::Context::new(3, "10.0.0.5:68".parse()?, "10.0.0.1".parse()?);
    /// assert_eq!(ctx.ifindex(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The source address and port of the datagram.
    ///
    /// ```
    /// # let ctx = dhcp_server::Context::new(3, "10.0.0.5:68".parse()?, "10.0.0.1".parse()?);
    /// assert_eq!(ctx.src().port(), 68);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn src(&self) -> SocketAddrV4 {
        self.src
    }
    /// The destination address of the datagram.
    ///
    /// ```
    /// # let ctx = dhcp_server::Context::new(3, "10.0.0.5:68".parse()?, "10.0.0.1".parse()?);
    /// assert_eq!(ctx.dst().to_string(), "10.0.0.1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dst(&self) -> Ipv4Addr {
        self.dst
    }
    /// Whether the datagram was not addressed to one host: sent to 255.255.255.255, to a
    /// multicast group, or with an unknown (0.0.0.0) destination. The engine also counts the
    /// served subnet's broadcast address, which a context alone cannot know.
    ///
    /// ```
    /// # use dhcp_server::Context;
    /// let bcast = Context::new(1, "0.0.0.0:68".parse()?, "255.255.255.255".parse()?);
    /// assert!(bcast.is_broadcast());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_broadcast(&self) -> bool {
        self.dst.is_broadcast() || self.dst.is_unspecified() || self.dst.is_multicast()
    }
}

/// What to do about one request: an optional reply, and always an [`Event`] saying what
/// happened (for the event channel and metrics).
///
/// ```
/// # use std::time::Instant;
/// # use dhcp_server::*;
/// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
/// let mut nobody = StaticLeases::new();
/// # let mut b = vec![0u8; 236];
/// # b[..3].copy_from_slice(&[1, 1, 6]);
/// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
/// # let request = Request::parse(&b)?;
/// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
/// let decision = decide(&request, &ctx, &config, &mut nobody, Instant::now());
/// assert!(decision.reply().is_none());
/// assert_eq!(decision.event().kind(), EventKind::Ignored(IgnoreReason::UnknownClient));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Decision<'a> {
    reply: Option<Reply<'a>>,
    event: Event,
}

impl<'a> Decision<'a> {
    /// The reply to send, if any.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert!(decision.reply().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reply(&self) -> Option<&Reply<'a>> {
        self.reply.as_ref()
    }
    /// What happened.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert_eq!(decision.event().kind(), EventKind::Offered);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event(&self) -> Event {
        self.event.clone()
    }
    /// Both parts.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// let (reply, event) = decision.into_parts();
    /// assert_eq!(reply.unwrap().yiaddr(), event.addr());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_parts(self) -> (Option<Reply<'a>>, Event) {
        (self.reply, self.event)
    }
}

/// Reason text of NAKs (option 56).
const NAK_NOT_YOURS: &str = "requested address is not available to this client";
const NAK_WRONG_NETWORK: &str = "requested address is not on this network";
const NAK_UNKNOWN: &str = "no lease for this client";

struct Engine<'a, 'l, L: ?Sized> {
    req: &'a Request<'a>,
    ctx: &'l Context,
    config: &'a Config,
    leases: &'l mut L,
    now: Instant,
}

/// Decides the server's answer to one request (RFC 2131 §4.3):
///
/// | Request | Answer |
/// |---|---|
/// | DISCOVER | OFFER of the lease source's address; silent for unknown clients / no address |
/// | REQUEST, SELECTING (54, 50) | 54 not ours: silent, offer dropped; else ACK, or NAK if not the client's address |
/// | REQUEST, INIT-REBOOT (50, no 54) | NAK on the wrong network or a wrong address; ACK the client's own; unknown client: silent (NAK if authoritative) |
/// | REQUEST, RENEWING (ciaddr, unicast) / REBINDING (ciaddr, broadcast or relayed) | ACK the client's lease; NAK another address; unknown: silent (NAK if authoritative) |
/// | DECLINE / RELEASE | no reply; an event, after the lease source checked the address is the client's |
/// | INFORM | ACK with options, no lease time, yiaddr 0; silent when ciaddr is 0.0.0.0 |
/// | BOOTREPLY, no option 53, other types | silent, with the reason |
///
/// Relayed requests whose giaddr is outside the served subnet are ignored. Replies go to the
/// relay (giaddr), else to ciaddr when set (NAKs excepted), else broadcast: without ARP
/// injection (`CAP_NET_ADMIN`) a UDP socket cannot unicast to a client that has no address yet,
/// which RFC 2131 §4.1 allows ("MAY broadcast").
///
/// ```
/// use std::time::Instant;
/// use dhcp_server::{decide, Config, Context, EventKind, Lease, MessageType, Request, StaticLeases, Target};
///
/// let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?)
///     .routers(["10.0.0.1".parse()?])
///     .build()?;
/// let mut leases: StaticLeases =
///     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
///
/// // A DISCOVER from 02:00:00:00:00:01.
/// let mut bytes = vec![0u8; 236];
/// bytes[..3].copy_from_slice(&[1, 1, 6]);
/// bytes[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
/// bytes.extend([99, 130, 83, 99, 53, 1, 1, 55, 2, 1, 3, 255]);
/// let request = Request::parse(&bytes)?;
/// let ctx = Context::new(2, "0.0.0.0:68".parse()?, [255; 4].into());
///
/// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
/// assert_eq!(decision.event().kind(), EventKind::Offered);
/// let reply = decision.reply().expect("an offer");
/// assert_eq!(reply.message_type(), MessageType::Offer);
/// assert_eq!(reply.yiaddr().to_string(), "10.0.0.50");
/// assert_eq!(reply.target(), Target::Broadcast);
///
/// let wire = reply.to_vec()?;
/// assert_eq!(wire.len(), 300); // padded
/// assert_eq!(&wire[240..249], &[53, 1, 2, 54, 4, 10, 0, 0, 1]); // 53 and 54 first
/// assert_eq!(&wire[249..255], &[1, 4, 255, 255, 255, 0]); // then the PRL order: 1, 3
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decide<'a, L: LeaseSource + ?Sized>(
    request: &'a Request<'a>,
    ctx: &Context,
    config: &'a Config,
    leases: &mut L,
    now: Instant,
) -> Decision<'a> {
    Engine {
        req: request,
        ctx,
        config,
        leases,
        now,
    }
    .run()
}

impl<'a, L: LeaseSource + ?Sized> Engine<'a, '_, L> {
    fn event(&self, kind: EventKind, addr: Ipv4Addr) -> Event {
        Event::new(kind, self.req.xid(), self.req.hw_addr(), addr)
            .with_server_id(self.config.server_id())
    }

    fn ignore(&self, reason: IgnoreReason) -> Decision<'a> {
        let addr = match reason {
            IgnoreReason::AddressConflict(addr) => addr,
            IgnoreReason::OtherServer(_)
            | IgnoreReason::NotClientAddress(_)
            | IgnoreReason::LeaseOutsideSubnet(_) => self
                .req
                .requested_addr()
                .unwrap_or_else(|| self.req.ciaddr()),
            _ => Ipv4Addr::UNSPECIFIED,
        };
        Decision {
            reply: None,
            event: self.event(EventKind::Ignored(reason), addr),
        }
    }

    fn query(&self) -> Query<'a, 'a> {
        Query::new(self.req, self.now, self.config.lease_time())
    }

    fn is_ours(&self, server_id: Ipv4Addr) -> bool {
        server_id == self.config.server_id()
    }

    /// RFC 2131 §4.1 destination of an OFFER or ACK.
    fn target(&self) -> Target {
        let (giaddr, ciaddr) = (self.req.giaddr(), self.req.ciaddr());
        if !giaddr.is_unspecified() {
            Target::Relay(giaddr)
        } else if !ciaddr.is_unspecified() {
            Target::Unicast(ciaddr)
        } else {
            Target::Broadcast
        }
    }

    /// NAKs go to the relay (which broadcasts them), else always broadcast.
    fn nak_target(&self) -> Target {
        let giaddr = self.req.giaddr();
        if giaddr.is_unspecified() {
            Target::Broadcast
        } else {
            Target::Relay(giaddr)
        }
    }

    fn run(mut self) -> Decision<'a> {
        if self.req.op() != BOOTREQUEST {
            return self.ignore(IgnoreReason::NotBootRequest);
        }
        let Some(message_type) = self.req.message_type() else {
            return self.ignore(IgnoreReason::NoMessageType);
        };
        let giaddr = self.req.giaddr();
        if !giaddr.is_unspecified() && !self.config.subnet().contains(&giaddr) {
            return self.ignore(IgnoreReason::WrongNetwork(giaddr));
        }
        match message_type {
            MessageType::Discover => self.discover(),
            MessageType::Request => self.request(),
            MessageType::Decline => self.decline(),
            MessageType::Release => self.release(),
            MessageType::Inform => self.inform(),
            other => self.ignore(IgnoreReason::UnsupportedMessageType(other.into())),
        }
    }

    fn discover(&mut self) -> Decision<'a> {
        match self.leases.offer(&self.query()) {
            Ok(lease) if !self.config.subnet().contains(&lease.addr()) => {
                self.ignore(IgnoreReason::LeaseOutsideSubnet(lease.addr()))
            }
            Ok(lease) => self.reply(MessageType::Offer, lease, EventKind::Offered),
            Err(NoOffer::UnknownClient) => self.ignore(IgnoreReason::UnknownClient),
            Err(NoOffer::Exhausted) => self.ignore(IgnoreReason::PoolExhausted),
            Err(NoOffer::Conflict(addr)) => self.ignore(IgnoreReason::AddressConflict(addr)),
        }
    }

    fn reply(&self, message_type: MessageType, lease: Lease, kind: EventKind) -> Decision<'a> {
        let addr = lease.addr();
        Decision {
            reply: Some(Reply::new(
                message_type,
                self.req,
                self.config,
                Some(lease),
                self.target(),
            )),
            event: self.event(kind, addr),
        }
    }

    fn nak(&self, state: RequestState, addr: Ipv4Addr, message: &'static str) -> Decision<'a> {
        Decision {
            reply: Some(Reply::nak(
                self.req,
                self.config,
                self.nak_target(),
                message,
            )),
            event: self.event(EventKind::Nacked(state), addr),
        }
    }

    fn request(&mut self) -> Decision<'a> {
        let ciaddr = self.req.ciaddr();
        let (state, addr) = match (self.req.server_id(), self.req.requested_addr()) {
            (Some(id), _) if !self.is_ours(id) => {
                let query = self.query();
                self.leases.abandon(&query);
                return self.ignore(IgnoreReason::OtherServer(id));
            }
            // Some clients leave 50 out in SELECTING and put the address in ciaddr.
            (Some(_), requested) => (RequestState::Selecting, requested.unwrap_or(ciaddr)),
            (None, _) if !ciaddr.is_unspecified() => {
                let relayed = !self.req.giaddr().is_unspecified();
                let broadcast =
                    self.ctx.is_broadcast() || self.ctx.dst() == self.config.subnet().broadcast();
                let state = if relayed || broadcast {
                    RequestState::Rebinding
                } else {
                    RequestState::Renewing
                };
                (state, ciaddr)
            }
            (None, Some(requested)) => (RequestState::InitReboot, requested),
            (None, None) => return self.ignore(IgnoreReason::NoAddress),
        };
        if addr.is_unspecified() {
            // Never ACK 0.0.0.0.
            return self.ignore(IgnoreReason::NoAddress);
        }
        if state == RequestState::InitReboot && !self.config.subnet().contains(&addr) {
            return self.nak(state, addr, NAK_WRONG_NETWORK);
        }
        match self.leases.confirm(&self.query(), addr, state) {
            Confirmation::Ack(lease) if lease.addr() == addr => {
                if self.config.subnet().contains(&addr) {
                    self.reply(MessageType::Ack, lease, EventKind::Acked(state))
                } else {
                    self.nak(state, addr, NAK_WRONG_NETWORK)
                }
            }
            Confirmation::Ack(_) | Confirmation::Nak => self.nak(state, addr, NAK_NOT_YOURS),
            // The client asked us by name: it deserves an answer.
            Confirmation::Unknown if state == RequestState::Selecting => {
                self.nak(state, addr, NAK_UNKNOWN)
            }
            Confirmation::Unknown if self.config.authoritative() => {
                self.nak(state, addr, NAK_UNKNOWN)
            }
            Confirmation::Unknown => self.ignore(IgnoreReason::UnknownClient),
        }
    }

    /// Option 54, when present, must name us (DECLINE and RELEASE carry it).
    fn other_server(&self) -> Option<Ipv4Addr> {
        self.req.server_id().filter(|id| !self.is_ours(*id))
    }

    fn decline(&mut self) -> Decision<'a> {
        if let Some(id) = self.other_server() {
            return self.ignore(IgnoreReason::OtherServer(id));
        }
        let Some(addr) = self.req.requested_addr().filter(|a| !a.is_unspecified()) else {
            return self.ignore(IgnoreReason::NoAddress);
        };
        if self.leases.decline(&self.query(), addr) {
            let mut event = self.event(EventKind::Declined, addr);
            if let Some(id) = self.req.client_id() {
                // Allocates, but only for a DECLINE: the embedder needs the identity to act.
                event = event.with_client_id(id);
            }
            Decision { reply: None, event }
        } else {
            self.ignore(IgnoreReason::NotClientAddress(addr))
        }
    }

    fn release(&mut self) -> Decision<'a> {
        if let Some(id) = self.other_server() {
            return self.ignore(IgnoreReason::OtherServer(id));
        }
        let addr = self.req.ciaddr();
        if addr.is_unspecified() {
            return self.ignore(IgnoreReason::NoAddress);
        }
        if self.leases.release(&self.query(), addr) {
            Decision {
                reply: None,
                event: self.event(EventKind::Released, addr),
            }
        } else {
            self.ignore(IgnoreReason::NotClientAddress(addr))
        }
    }

    fn inform(&self) -> Decision<'a> {
        let ciaddr = self.req.ciaddr();
        if ciaddr.is_unspecified() {
            // RFC 2131 §4.3.5: the ACK goes to ciaddr; without one there is nowhere to send it
            // (Kea and dnsmasq drop such an INFORM too).
            return self.ignore(IgnoreReason::NoAddress);
        }
        let relayed = !self.req.giaddr().is_unspecified();
        if !relayed && !self.config.subnet().contains(&ciaddr) {
            return self.ignore(IgnoreReason::WrongNetwork(ciaddr));
        }
        Decision {
            reply: Some(Reply::new(
                MessageType::Ack,
                self.req,
                self.config,
                None,
                self.target(),
            )),
            event: self.event(EventKind::Informed, ciaddr),
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod robustness;
#[cfg(test)]
mod tests;
