//! Where addresses come from: the [`LeaseSource`] trait and its two implementations,
//! [`StaticLeases`] (MAC → address, for MAC-pinned pools) and [`DynamicPool`] (allocation from
//! a range on the `ipam` crate).

mod dynamic;
mod fixed;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

pub use dynamic::DynamicPool;
pub use fixed::{LeaseTable, StaticLeases};

use crate::config::LeaseTime;
use crate::engine::RequestState;
use crate::request::Request;

/// An address handed to a client, with optional per-lease settings.
///
/// ```
/// use dhcp_server::{Lease, LeaseTime};
///
/// let lease = Lease::new("10.0.0.5".parse()?)
///     .with_hostname("vm-1")
///     .with_lease_time(LeaseTime::from_secs(600));
/// assert_eq!(lease.addr().to_string(), "10.0.0.5");
/// assert_eq!(lease.hostname(), Some("vm-1"));
/// assert_eq!(lease.lease_time(), Some(LeaseTime::from_secs(600)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
// `lease.lease_time()` is the RFC's name for it; renaming would only obscure that.
#[allow(clippy::struct_field_names)]
pub struct Lease {
    addr: Ipv4Addr,
    lease_time: Option<LeaseTime>,
    hostname: Option<Arc<str>>,
}

impl Lease {
    /// A lease of `addr` with the configuration's lease time and no host name.
    ///
    /// ```
    /// let lease = dhcp_server::Lease::new("10.0.0.5".parse()?);
    /// assert_eq!(lease.lease_time(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(addr: Ipv4Addr) -> Self {
        Self {
            addr,
            lease_time: None,
            hostname: None,
        }
    }
    /// Sets a host name (option 12, sent under [`HostnamePolicy::FromLease`](crate::HostnamePolicy::FromLease)).
    /// An empty name means none.
    ///
    /// ```
    /// let lease = dhcp_server::Lease::new("10.0.0.5".parse()?).with_hostname("");
    /// assert_eq!(lease.hostname(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_hostname(mut self, name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        self.hostname = (!name.is_empty()).then(|| Arc::from(name));
        self
    }
    /// Overrides the configuration's lease time for this lease.
    ///
    /// ```
    /// use dhcp_server::{Lease, LeaseTime};
    /// let lease = Lease::new("10.0.0.5".parse()?).with_lease_time(LeaseTime::INFINITE);
    /// assert!(lease.lease_time().unwrap().is_infinite());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_lease_time(mut self, lease_time: LeaseTime) -> Self {
        self.lease_time = Some(lease_time);
        self
    }
    /// The address.
    ///
    /// ```
    /// assert_eq!(dhcp_server::Lease::new([10, 0, 0, 5].into()).addr().octets(), [10, 0, 0, 5]);
    /// ```
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    /// The per-lease lease time, if any.
    ///
    /// ```
    /// assert_eq!(dhcp_server::Lease::new([10, 0, 0, 5].into()).lease_time(), None);
    /// ```
    pub fn lease_time(&self) -> Option<LeaseTime> {
        self.lease_time
    }
    /// The host name, if any.
    ///
    /// ```
    /// assert_eq!(dhcp_server::Lease::new([10, 0, 0, 5].into()).hostname(), None);
    /// ```
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
}

/// What a lease source gets with every call: the request (chaddr, client-id, requested
/// address, host name, giaddr...), the time, and the configured lease time.
///
/// ```
/// use std::time::Instant;
/// use dhcp_server::{LeaseTime, Query, Request};
///
/// # let mut b = vec![0u8; 236]; b[0] = 1;
/// let req = Request::parse(&b)?;
/// let q = Query::new(&req, Instant::now(), LeaseTime::from_secs(60));
/// assert_eq!(q.lease_time().as_secs(), 60);
/// # Ok::<(), dhcp_server::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Query<'r, 'a> {
    request: &'r Request<'a>,
    now: Instant,
    lease_time: LeaseTime,
}

impl<'r, 'a> Query<'r, 'a> {
    /// A query for `request` at `now`, with the default lease time `lease_time`.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # let mut b = vec![0u8; 236]; b[0] = 1;
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// let q = dhcp_server::Query::new(&req, Instant::now(), dhcp_server::LeaseTime::INFINITE);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn new(request: &'r Request<'a>, now: Instant, lease_time: LeaseTime) -> Self {
        Self {
            request,
            now,
            lease_time,
        }
    }
    /// The request.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # let mut b = vec![0u8; 236]; b[0] = 1; b[4] = 1;
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// # let q = dhcp_server::Query::new(&req, Instant::now(), dhcp_server::LeaseTime::INFINITE);
    /// assert_eq!(q.request().xid(), 0x0100_0000);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn request(&self) -> &'r Request<'a> {
        self.request
    }
    /// The time of the request; lease sources read no clock of their own.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # let mut b = vec![0u8; 236]; b[0] = 1;
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// let now = Instant::now();
    /// let q = dhcp_server::Query::new(&req, now, dhcp_server::LeaseTime::INFINITE);
    /// assert_eq!(q.now(), now);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn now(&self) -> Instant {
        self.now
    }
    /// The configured default lease time.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # let mut b = vec![0u8; 236]; b[0] = 1;
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// # let q = dhcp_server::Query::new(&req, Instant::now(), dhcp_server::LeaseTime::INFINITE);
    /// assert!(q.lease_time().is_infinite());
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn lease_time(&self) -> LeaseTime {
        self.lease_time
    }
}

/// Why a DISCOVER gets no offer.
///
/// ```
/// # use std::time::Instant;
/// # use dhcp_server::*;
/// # let mut b = vec![0u8; 236];
/// # b[..3].copy_from_slice(&[1, 1, 6]);
/// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
/// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
/// # let request = Request::parse(&b)?;
/// // A query about 02:00:00:00:00:01, as the engine passes it.
/// let query = Query::new(&request, Instant::now(), LeaseTime::from_secs(3600));
/// let mut nobody = StaticLeases::new();
/// assert_eq!(nobody.offer(&query), Err(NoOffer::UnknownClient));
///
/// let mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
/// let mut leases: StaticLeases = [(mac, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
/// leases.mark_conflict(mac, "10.0.0.50".parse()?);
/// assert_eq!(leases.offer(&query), Err(NoOffer::Conflict("10.0.0.50".parse()?)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NoOffer {
    /// The source does not serve this client (not in the static table).
    UnknownClient,
    /// No address is free.
    Exhausted,
    /// The client's address is in conflict (declined) and not cleared yet.
    Conflict(Ipv4Addr),
}

/// The lease source's verdict on a REQUEST for an address.
///
/// ```
/// # use std::time::Instant;
/// # use dhcp_server::*;
/// # let mut b = vec![0u8; 236];
/// # b[..3].copy_from_slice(&[1, 1, 6]);
/// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
/// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
/// # let request = Request::parse(&b)?;
/// // A query about 02:00:00:00:00:01, as the engine passes it.
/// let query = Query::new(&request, Instant::now(), LeaseTime::from_secs(3600));
/// let lease = Lease::new("10.0.0.50".parse()?);
/// let mut leases: StaticLeases =
///     [(MacAddr::new([2, 0, 0, 0, 0, 1]), lease.clone())].into_iter().collect();
/// let state = RequestState::Selecting;
/// assert_eq!(leases.confirm(&query, lease.addr(), state), Confirmation::Ack(lease));
/// assert_eq!(leases.confirm(&query, "10.0.0.99".parse()?, state), Confirmation::Nak);
/// assert_eq!(StaticLeases::new().confirm(&query, "10.0.0.50".parse()?, state), Confirmation::Unknown);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// The address is the client's: ACK with this lease (its address is the requested one).
    Ack(Lease),
    /// The source knows the client and the address is not (or no longer) its own: NAK.
    Nak,
    /// The source has no record of the client: silence, or NAK when authoritative
    /// (RFC 2131 §4.3.2).
    Unknown,
}

/// Decides which address a client gets and keeps track of bindings. The engine calls it with
/// `&mut self` from the single server task: implementations need no locking of their own.
/// All calls receive the time in the [`Query`]; implementations must not read a clock, so
/// they stay deterministic and testable.
///
/// ```
/// use std::net::Ipv4Addr;
/// use dhcp_server::{Confirmation, Lease, LeaseSource, NoOffer, Query, RequestState};
///
/// /// Gives every client the same address: a toy, but a complete source.
/// struct One(Ipv4Addr);
///
/// impl LeaseSource for One {
///     fn offer(&mut self, _: &Query<'_, '_>) -> Result<Lease, NoOffer> {
///         Ok(Lease::new(self.0))
///     }
///     fn confirm(&mut self, _: &Query<'_, '_>, addr: Ipv4Addr, _: RequestState) -> Confirmation {
///         if addr == self.0 { Confirmation::Ack(Lease::new(addr)) } else { Confirmation::Nak }
///     }
///     fn release(&mut self, _: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
///         addr == self.0
///     }
///     fn decline(&mut self, _: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
///         addr == self.0
///     }
/// }
///
/// // Any source plugs into the engine, and into `Server::new`.
/// # use std::time::Instant;
/// # use dhcp_server::{decide, Config, Context, EventKind, Request};
/// # let mut discover = vec![0u8; 236];
/// # discover[..3].copy_from_slice(&[1, 1, 6]);
/// # discover.extend([99, 130, 83, 99, 53, 1, 1, 255]);
/// let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
/// let request = Request::parse(&discover)?;
/// let ctx = Context::new(2, "0.0.0.0:68".parse()?, Ipv4Addr::BROADCAST);
/// let mut source = One("10.0.0.7".parse()?);
/// let decision = decide(&request, &ctx, &config, &mut source, Instant::now());
/// assert_eq!(decision.event().kind(), EventKind::Offered);
/// assert_eq!(decision.event().addr().to_string(), "10.0.0.7");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait LeaseSource {
    /// A DISCOVER: the lease to offer, held for the client until it requests it.
    ///
    /// # Errors
    /// [`NoOffer`] when the client gets nothing.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    /// # let request = Request::parse(&b)?;
    /// // A query about 02:00:00:00:00:01, as the engine passes it.
    /// let query = Query::new(&request, Instant::now(), LeaseTime::from_secs(3600));
    /// let mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
    /// let mut leases: StaticLeases = [(mac, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// let offer = leases.offer(&query);
    /// assert_eq!(offer.map(|lease| lease.addr()), Ok("10.0.0.50".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn offer(&mut self, query: &Query<'_, '_>) -> Result<Lease, NoOffer>;

    /// A REQUEST for `addr` in `state`: commit the binding (ACK), refuse it (NAK), or say the
    /// client is unknown.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    /// # let request = Request::parse(&b)?;
    /// // A query about 02:00:00:00:00:01, as the engine passes it.
    /// let query = Query::new(&request, Instant::now(), LeaseTime::from_secs(3600));
    /// let mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
    /// let mut leases: StaticLeases = [(mac, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// let verdict = leases.confirm(&query, "10.0.0.50".parse()?, RequestState::InitReboot);
    /// assert!(matches!(verdict, Confirmation::Ack(lease) if lease.addr().to_string() == "10.0.0.50"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn confirm(
        &mut self,
        query: &Query<'_, '_>,
        addr: Ipv4Addr,
        state: RequestState,
    ) -> Confirmation;

    /// A RELEASE of `addr`. Returns whether `addr` was the client's (and is now released).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    /// # let request = Request::parse(&b)?;
    /// // A query about 02:00:00:00:00:01, as the engine passes it.
    /// let query = Query::new(&request, Instant::now(), LeaseTime::from_secs(3600));
    /// let mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
    /// let mut leases: StaticLeases = [(mac, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// assert!(leases.release(&query, "10.0.0.50".parse()?));
    /// assert!(!leases.release(&query, "10.0.0.51".parse()?)); // not this client's
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn release(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool;

    /// A DECLINE of `addr`: the client found it in use. Returns whether `addr` was the
    /// client's (and is now out of service).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    /// # let request = Request::parse(&b)?;
    /// // A query about 02:00:00:00:00:01, as the engine passes it.
    /// let query = Query::new(&request, Instant::now(), LeaseTime::from_secs(3600));
    /// let mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
    /// let mut leases: StaticLeases = [(mac, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// assert!(leases.decline(&query, "10.0.0.50".parse()?));
    /// // Static leases keep the address and mark the pair in conflict until the embedder acts.
    /// assert!(leases.is_conflicted(mac, "10.0.0.50".parse()?));
    /// assert!(leases.offer(&query).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn decline(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool;

    /// The client selected another server: drop any offer held for it. Default: nothing.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use dhcp_server::{DynamicPool, LeaseSource, LeaseTime, NoOffer, Query, Request};
    ///
    /// # let discover = |last: u8| {
    /// #     let mut b = vec![0u8; 236];
    /// #     b[..3].copy_from_slice(&[1, 1, 6]);
    /// #     b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, last]);
    /// #     b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    /// #     b
    /// # };
    /// let (a, b) = (discover(1), discover(2)); // DISCOVERs from two clients
    /// let (a, b) = (Request::parse(&a)?, Request::parse(&b)?);
    /// let now = Instant::now();
    /// let (a, b) = (Query::new(&a, now, LeaseTime::from_secs(3600)), Query::new(&b, now, LeaseTime::from_secs(3600)));
    ///
    /// // One address, held for 30 s for the client it was offered to.
    /// let pool = ipam::Pool::new("10.0.0.0/24".parse()?, "10.0.0.10".parse()?, "10.0.0.10".parse()?)?;
    /// let mut dynamic = DynamicPool::new(pool).with_offer_hold(Duration::from_secs(30));
    /// assert!(dynamic.offer(&a).is_ok());
    /// assert_eq!(dynamic.offer(&b), Err(NoOffer::Exhausted));
    ///
    /// dynamic.abandon(&a); // `a` chose another server: its offer is free at once
    /// assert_eq!(dynamic.offer(&b).map(|lease| lease.addr()), Ok("10.0.0.10".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn abandon(&mut self, query: &Query<'_, '_>) {
        let _ = query;
    }
}

/// A borrowed or boxed lease source is one too (the server takes any of them).
macro_rules! forward_lease_source {
    ($($source:ty),*) => {$(
        impl<L: LeaseSource + ?Sized> LeaseSource for $source {
            fn offer(&mut self, query: &Query<'_, '_>) -> Result<Lease, NoOffer> {
                (**self).offer(query)
            }
            fn confirm(
                &mut self,
                query: &Query<'_, '_>,
                addr: Ipv4Addr,
                state: RequestState,
            ) -> Confirmation {
                (**self).confirm(query, addr, state)
            }
            fn release(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
                (**self).release(query, addr)
            }
            fn decline(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
                (**self).decline(query, addr)
            }
            fn abandon(&mut self, query: &Query<'_, '_>) {
                (**self).abandon(query);
            }
        }
    )*};
}

forward_lease_source!(&mut L, Box<L>);
