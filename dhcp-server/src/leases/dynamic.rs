//! [`DynamicPool`]: addresses allocated from a range on demand, with offers, expiry, release
//! and decline probation.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipam::{AddrState, Pool, Strategy};

use super::{Confirmation, Lease, LeaseSource, NoOffer, Query};
use crate::engine::RequestState;
use crate::request::Request;

/// A binding's life: offered (held briefly), bound (leased), or free (the client's last
/// address, remembered so it gets the same one back while nobody else took it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Offered,
    Bound,
    Free,
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    addr: Ipv4Addr,
    state: State,
    /// `None`: never (infinite lease).
    expires: Option<Instant>,
}

impl Binding {
    fn held(&self) -> bool {
        self.state != State::Free
    }
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// The longest client key: a tag byte, then a client identifier of up to 255 bytes, or the
/// hardware type and up to 16 bytes of chaddr.
const MAX_KEY: usize = 1 + 255;

/// A complete dynamic address source on an [`ipam::Pool`], for standalone servers.
///
/// - DISCOVER: the client's current binding, else its previous address if still free, else the
///   requested address (option 50) if free, else a new one by the pool's [`Strategy`]. The
///   address is held for the offer period (default 60 s).
/// - REQUEST: commits the binding for the configured lease time; NAKs an address that is not
///   the client's. A client unknown to the pool (after a restart) keeps a free address it
///   asks for when SELECTING, RENEWING or REBINDING; INIT-REBOOT of an unknown client is left
///   to the engine (silent unless authoritative), as RFC 2131 §4.3.2 asks.
/// - RELEASE frees the address (the client gets it back next time if nobody took it).
/// - DECLINE takes the address out of service for the probation period (default 24 h, as
///   Kea) and forgets the binding, so the client is offered another address.
/// - Expired offers and leases are reclaimed lazily: when the pool runs out (at most once a
///   second) or when another client asks for that very address. That sweep also forgets
///   clients that hold no address, which bounds memory under a flood of made-up MACs.
///
/// Clients are identified by their client identifier (option 61) when they send one, else by
/// hardware type and chaddr ([`with_client_id_matching(false)`](Self::with_client_id_matching)
/// for chaddr only).
///
/// ```
/// use std::time::Duration;
/// use dhcp_server::DynamicPool;
///
/// let mut pool = ipam::Pool::new(
///     "10.0.0.0/24".parse()?,
///     "10.0.0.100".parse()?,
///     "10.0.0.199".parse()?,
/// )?;
/// pool.reserve("10.0.0.100".parse()?)?; // e.g. the router
/// let source = DynamicPool::new(pool)
///     .with_offer_hold(Duration::from_secs(30))
///     .with_probation(Duration::from_secs(3600));
/// assert_eq!(source.pool().available(), 99);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DynamicPool {
    pool: Pool,
    strategy: Strategy,
    offer_hold: Duration,
    probation: Duration,
    match_client_id: bool,
    bindings: HashMap<Box<[u8]>, Binding>,
    /// Who holds each offered or bound address.
    owners: HashMap<Ipv4Addr, Box<[u8]>>,
    /// Declined addresses and when they come back; probation is constant, so FIFO order is
    /// expiry order.
    quarantine: VecDeque<(Instant, Ipv4Addr)>,
    next_sweep: Option<Instant>,
}

impl DynamicPool {
    /// A source allocating from `pool` (whose reservations are never handed out) with the
    /// [`Strategy::NextFit`] strategy.
    ///
    /// ```
    /// let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// let source = dhcp_server::DynamicPool::new(pool);
    /// assert_eq!(source.pool().capacity(), 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            strategy: Strategy::NextFit,
            offer_hold: Duration::from_secs(60),
            probation: Duration::from_secs(24 * 3600),
            match_client_id: true,
            bindings: HashMap::new(),
            owners: HashMap::new(),
            quarantine: VecDeque::new(),
            next_sweep: None,
        }
    }

    /// How new addresses are picked.
    ///
    /// ```
    /// # let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// let source = dhcp_server::DynamicPool::new(pool).with_strategy(ipam::Strategy::LowestFree);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How long an offered address stays reserved for the client.
    ///
    /// ```
    /// # let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// let source = dhcp_server::DynamicPool::new(pool).with_offer_hold(std::time::Duration::from_secs(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_offer_hold(mut self, hold: Duration) -> Self {
        self.offer_hold = hold;
        self
    }

    /// How long a declined address stays out of service.
    ///
    /// ```
    /// # let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// let source = dhcp_server::DynamicPool::new(pool).with_probation(std::time::Duration::from_secs(600));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_probation(mut self, probation: Duration) -> Self {
        self.probation = probation;
        self
    }

    /// Whether to identify clients by option 61 when present (the default, RFC 2131 §4.2) or
    /// always by chaddr.
    ///
    /// ```
    /// # let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// let source = dhcp_server::DynamicPool::new(pool).with_client_id_matching(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_client_id_matching(mut self, yes: bool) -> Self {
        self.match_client_id = yes;
        self
    }

    /// The underlying allocator (allocated = offered, bound or on probation).
    ///
    /// ```
    /// # let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// let source = dhcp_server::DynamicPool::new(pool);
    /// assert_eq!(source.pool().used(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Bound addresses and when their lease ends (`None`: infinite), in no particular order.
    /// Expired leases not yet reclaimed are included.
    ///
    /// ```
    /// # let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// assert_eq!(dhcp_server::DynamicPool::new(pool).bound().count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bound(&self) -> impl Iterator<Item = (Ipv4Addr, Option<Instant>)> + '_ {
        self.bindings
            .values()
            .filter(|b| b.state == State::Bound)
            .map(|b| (b.addr, b.expires))
    }

    /// Addresses on probation after a DECLINE.
    ///
    /// ```
    /// # let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// assert_eq!(dhcp_server::DynamicPool::new(pool).quarantined().count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quarantined(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.quarantine.iter().map(|(_, a)| *a)
    }

    /// Writes the client key into `buf`; `None` when the client has no identity at all.
    fn key<'b>(&self, req: &Request<'_>, buf: &'b mut [u8; MAX_KEY]) -> Option<&'b [u8]> {
        let id = req
            .client_id()
            .filter(|id| self.match_client_id && !id.is_empty() && id.len() < MAX_KEY);
        let len = if let Some(id) = id {
            buf[0] = 0;
            buf[1..=id.len()].copy_from_slice(id);
            1 + id.len()
        } else if req.chaddr().is_empty() {
            return None;
        } else {
            buf[0] = 1;
            buf[1] = req.htype();
            buf[2..2 + req.chaddr().len()].copy_from_slice(req.chaddr());
            2 + req.chaddr().len()
        };
        Some(&buf[..len])
    }

    fn end_quarantine(&mut self, now: Instant) {
        while let Some(&(until, addr)) = self.quarantine.front() {
            if until > now {
                break;
            }
            self.quarantine.pop_front();
            let _ = self.pool.release(addr);
        }
    }

    /// Frees the address of a binding (not the binding itself).
    fn free(&mut self, key: &[u8]) {
        if let Some(b) = self.bindings.get_mut(key).filter(|b| b.held()) {
            b.state = State::Free;
            self.owners.remove(&b.addr);
            let _ = self.pool.release(b.addr);
        }
    }

    /// Reclaims every expired offer and lease, at most once a second.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = now.checked_add(Duration::from_secs(1));
        let expired: Vec<Box<[u8]>> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.held() && b.expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.free(&key);
        }
        // Forget clients that hold nothing: under a flood of made-up MACs the map would
        // otherwise grow without bound. They lose only the "same address again" preference,
        // which an exhausted pool could not honour anyway.
        self.bindings.retain(|_, b| b.held());
    }

    /// Takes exactly `addr`, reclaiming it first if its holder's binding has expired.
    fn take(&mut self, addr: Ipv4Addr, now: Instant) -> Result<(), ipam::Error> {
        if self.pool.state(addr) == AddrState::Allocated {
            let expired_owner = self
                .owners
                .get(&addr)
                .filter(|k| self.bindings.get(*k).is_some_and(|b| b.expired(now)))
                .cloned();
            if let Some(owner) = expired_owner {
                self.free(&owner);
            }
        }
        self.pool.allocate_specific(addr)
    }

    fn allocate(&mut self, preferred: [Option<Ipv4Addr>; 2], now: Instant) -> Option<Ipv4Addr> {
        for addr in preferred.into_iter().flatten() {
            if self.pool.in_range(addr) && self.take(addr, now).is_ok() {
                return Some(addr);
            }
        }
        if let Ok(addr) = self.pool.allocate(self.strategy) {
            return Some(addr);
        }
        self.sweep(now);
        self.pool.allocate(self.strategy).ok()
    }

    fn bind(&mut self, key: &[u8], addr: Ipv4Addr, state: State, expires: Option<Instant>) {
        let binding = Binding {
            addr,
            state,
            expires,
        };
        match self.bindings.get_mut(key) {
            Some(b) => *b = binding,
            None => {
                self.bindings.insert(key.into(), binding);
            }
        }
        self.owners.insert(addr, key.into());
    }

    fn lease_end(query: &Query<'_, '_>) -> Option<Instant> {
        query
            .lease_time()
            .duration()
            .and_then(|d| query.now().checked_add(d))
    }
}

impl LeaseSource for DynamicPool {
    fn offer(&mut self, query: &Query<'_, '_>) -> Result<Lease, NoOffer> {
        let now = query.now();
        self.end_quarantine(now);
        let mut buf = [0u8; MAX_KEY];
        let key = self
            .key(query.request(), &mut buf)
            .ok_or(NoOffer::UnknownClient)?;
        let hold = now.checked_add(self.offer_hold);
        let mut previous = None;
        if let Some(b) = self.bindings.get_mut(key) {
            match b.state {
                State::Offered => {
                    b.expires = hold;
                    return Ok(Lease::new(b.addr));
                }
                State::Bound if !b.expired(now) => return Ok(Lease::new(b.addr)),
                State::Bound => {
                    (b.state, b.expires) = (State::Offered, hold);
                    return Ok(Lease::new(b.addr));
                }
                State::Free => previous = Some(b.addr),
            }
        }
        let requested = query.request().requested_addr();
        let addr = self
            .allocate([previous, requested], now)
            .ok_or(NoOffer::Exhausted)?;
        self.bind(key, addr, State::Offered, hold);
        Ok(Lease::new(addr))
    }

    fn confirm(
        &mut self,
        query: &Query<'_, '_>,
        addr: Ipv4Addr,
        state: RequestState,
    ) -> Confirmation {
        let now = query.now();
        self.end_quarantine(now);
        let mut buf = [0u8; MAX_KEY];
        let Some(key) = self.key(query.request(), &mut buf) else {
            return Confirmation::Unknown;
        };
        let ends = Self::lease_end(query);
        match self.bindings.get_mut(key) {
            Some(b) if b.held() => {
                if b.addr != addr {
                    return Confirmation::Nak;
                }
                (b.state, b.expires) = (State::Bound, ends);
                Confirmation::Ack(Lease::new(addr))
            }
            known => {
                let known = known.is_some();
                if !known && state == RequestState::InitReboot {
                    return Confirmation::Unknown;
                }
                match self.take(addr, now) {
                    Ok(()) => {
                        self.bind(key, addr, State::Bound, ends);
                        Confirmation::Ack(Lease::new(addr))
                    }
                    Err(ipam::Error::AlreadyAllocated { .. } | ipam::Error::Reserved { .. }) => {
                        Confirmation::Nak
                    }
                    Err(_) if known => Confirmation::Nak,
                    Err(_) => Confirmation::Unknown,
                }
            }
        }
    }

    fn release(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
        self.end_quarantine(query.now());
        let mut buf = [0u8; MAX_KEY];
        let Some(key) = self.key(query.request(), &mut buf) else {
            return false;
        };
        let owns = self
            .bindings
            .get(key)
            .is_some_and(|b| b.held() && b.addr == addr);
        if owns {
            self.free(key);
        }
        owns
    }

    fn decline(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
        let now = query.now();
        self.end_quarantine(now);
        let mut buf = [0u8; MAX_KEY];
        let Some(key) = self.key(query.request(), &mut buf) else {
            return false;
        };
        let owns = self
            .bindings
            .get(key)
            .is_some_and(|b| b.held() && b.addr == addr);
        if owns {
            // The address stays allocated in the pool until probation ends; the binding goes,
            // so the client is not steered back to a conflicting address.
            self.bindings.remove(key);
            self.owners.remove(&addr);
            // A probation too long to represent keeps the address out of service for good.
            if let Some(until) = now.checked_add(self.probation) {
                self.quarantine.push_back((until, addr));
            }
        }
        owns
    }

    fn abandon(&mut self, query: &Query<'_, '_>) {
        let mut buf = [0u8; MAX_KEY];
        if let Some(key) = self.key(query.request(), &mut buf)
            && self
                .bindings
                .get(key)
                .is_some_and(|b| b.state == State::Offered)
        {
            self.free(key);
        }
    }
}

#[cfg(test)]
mod tests;
