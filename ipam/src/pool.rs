//! [`Pool`]: one IPv4 range inside a network, its reservations and allocations.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;

use crate::bitmap::Bitmap;
use crate::error::Error;

/// The largest range a pool accepts: a whole /8 (2 MiB of bitmap).
///
/// Larger ranges are refused with [`Error::RangeTooLarge`] rather than allocating hundreds of
/// MiB because of a typo in a CIDR.
pub const MAX_RANGE: u32 = 1 << 24;

/// How [`Pool::allocate`] picks a free address. Every strategy is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Strategy {
    /// The lowest free address of the range.
    LowestFree,
    /// The next free address after the one this strategy handed out last, wrapping around at
    /// the end of the range. An address released just before is skipped while any other address
    /// is free, so a client that lets its lease go does not see it re-used by the next one at once
    /// (the behaviour Kea's iterative allocator is known for).
    NextFit,
    /// This address if it is in the range and free; otherwise the first free address after it
    /// (wrapping around), or the lowest free address when it is outside the range. Use it for a
    /// previously held address or a hash of the client's MAC, which keeps addresses stable.
    Preferred(Ipv4Addr),
}

/// What an address is to a [`Pool`], as returned by [`Pool::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AddrState {
    /// In the range and can be allocated.
    Free,
    /// In the range and handed out.
    Allocated,
    /// Never handed out (server, router, exclusion); in the range or not.
    Reserved,
    /// Outside the range (or the network) and not reserved.
    OutOfRange,
}

/// A bitmap IPv4 allocator: an inclusive range `[start, end]` inside a network, one bit per
/// address of the range.
///
/// Reserved addresses (the DHCP server, the router, exclusions) are never handed out and count
/// neither as used nor as available, so `used + available + reserved_in_range == capacity`
/// always holds. Reservations may lie outside the range (an exclusion for later, say); they take
/// effect when [`resize`](Pool::resize) brings them into it.
///
/// # Guarantees
/// - No address is allocated twice; reserved and out-of-range addresses are never allocated.
/// - Every operation is deterministic: the same calls give the same results.
/// - A failed call changes nothing.
/// - [`used`](Pool::used), [`available`](Pool::available) and [`capacity`](Pool::capacity)
///   are O(1); allocation scans one summary bit per 64 addresses, then one word.
///
/// Two pools compare equal when network, range, reservations and allocations are equal; the
/// [`Strategy::NextFit`] cursor is history, not state, and is ignored.
///
/// ```
/// use ipam::{AddrState, Pool, Strategy};
///
/// let mut pool = Pool::new(
///     "192.168.10.0/24".parse()?,
///     "192.168.10.10".parse()?,
///     "192.168.10.20".parse()?,
/// )?;
/// pool.reserve("192.168.10.10".parse()?)?; // the DHCP server
/// let ip = pool.allocate(Strategy::LowestFree)?;
/// assert_eq!(ip.to_string(), "192.168.10.11");
/// assert_eq!(pool.state(ip), AddrState::Allocated);
/// assert_eq!((pool.used(), pool.available(), pool.capacity()), (1, 9, 11));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Pool {
    network: Ipv4Net,
    start: u32,
    end: u32,
    /// Slot `i` (address `start + i`) is set when allocated or reserved.
    taken: Bitmap,
    /// Every reservation, in the range or not.
    reserved: BTreeSet<u32>,
    used: u32,
    reserved_in_range: u32,
    /// Where the next [`Strategy::NextFit`] search starts (an address).
    cursor: u32,
    /// The address released last, skipped by `NextFit` while another is free.
    last_released: Option<u32>,
}

impl Pool {
    /// Creates an empty pool for `[start, end]` inside `network`.
    ///
    /// Host bits in `network` are ignored (`10.0.0.7/24` means `10.0.0.0/24`), as Go's
    /// `net.ParseCIDR` does for upstream. For /31 and /32 every address is usable (RFC 3021);
    /// for shorter prefixes the network and broadcast addresses are not.
    ///
    /// # Errors
    /// [`Error::OutsideNetwork`] when `start` or `end` is not in `network`,
    /// [`Error::StartAfterEnd`], [`Error::NetworkAddress`] when `start` is the network address,
    /// [`Error::BroadcastAddress`] when `end` is the broadcast address, and
    /// [`Error::RangeTooLarge`] beyond [`MAX_RANGE`] addresses.
    ///
    /// ```
    /// use ipam::{Error, Pool};
    ///
    /// let net = "10.0.0.0/24".parse()?;
    /// let err = Pool::new(net, "10.0.0.0".parse()?, "10.0.0.9".parse()?).unwrap_err();
    /// assert!(matches!(err, Error::NetworkAddress { .. }));
    ///
    /// // A /31 has no network or broadcast address (RFC 3021).
    /// let p2p = Pool::new("10.0.0.0/31".parse()?, "10.0.0.0".parse()?, "10.0.0.1".parse()?)?;
    /// assert_eq!(p2p.capacity(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(network: Ipv4Net, start: Ipv4Addr, end: Ipv4Addr) -> Result<Self, Error> {
        let network = network.trunc();
        check_range(network, start, end)?;
        let (start, end) = (u32::from(start), u32::from(end));
        Ok(Self {
            network,
            start,
            end,
            taken: Bitmap::new(slots(start, end)),
            reserved: BTreeSet::new(),
            used: 0,
            reserved_in_range: 0,
            cursor: start,
            last_released: None,
        })
    }

    /// Creates an empty pool over every usable address of `network`: all of it for /31 and /32,
    /// otherwise everything between the network and broadcast addresses.
    ///
    /// # Errors
    /// [`Error::RangeTooLarge`] for prefixes shorter than /8.
    ///
    /// ```
    /// let pool = ipam::Pool::whole("172.16.0.0/29".parse()?)?;
    /// assert_eq!((pool.start().to_string(), pool.end().to_string()), ("172.16.0.1".into(), "172.16.0.6".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn whole(network: Ipv4Net) -> Result<Self, Error> {
        let network = network.trunc();
        let (first, last) = usable_bounds(network);
        Self::new(network, first, last)
    }

    /// The network the range lives in (host bits cleared).
    ///
    /// ```
    /// let pool = ipam::Pool::whole("10.1.2.3/24".parse()?)?;
    /// assert_eq!(pool.network().to_string(), "10.1.2.0/24");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn network(&self) -> Ipv4Net {
        self.network
    }

    /// The first address of the range.
    ///
    /// ```
    /// let pool = ipam::Pool::whole("10.1.2.0/24".parse()?)?;
    /// assert_eq!(pool.start().to_string(), "10.1.2.1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(&self) -> Ipv4Addr {
        self.start.into()
    }

    /// The last address of the range (inclusive).
    ///
    /// ```
    /// let pool = ipam::Pool::whole("10.1.2.0/24".parse()?)?;
    /// assert_eq!(pool.end().to_string(), "10.1.2.254");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn end(&self) -> Ipv4Addr {
        self.end.into()
    }

    /// Number of addresses in the range, reserved ones included.
    ///
    /// ```
    /// let pool = ipam::Pool::whole("10.0.0.0/16".parse()?)?;
    /// assert_eq!(pool.capacity(), 65_534);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> u32 {
        self.end - self.start + 1
    }

    /// Number of allocated addresses (upstream's `status.ipv4.used`).
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/30".parse()?)?;
    /// pool.allocate(ipam::Strategy::LowestFree)?;
    /// assert_eq!(pool.used(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Number of addresses that can still be allocated (upstream's `status.ipv4.available`):
    /// the range minus reserved minus allocated addresses.
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?; // .1 - .6
    /// pool.reserve("10.0.0.1".parse()?)?;
    /// pool.allocate(ipam::Strategy::LowestFree)?;
    /// assert_eq!(pool.available(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn available(&self) -> u32 {
        self.capacity() - self.used - self.reserved_in_range
    }

    /// Number of reserved addresses inside the range.
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?; // .1 - .6
    /// pool.reserve("10.0.0.1".parse()?)?;
    /// pool.reserve("10.0.0.7".parse()?)?; // broadcast: in the network, outside the range
    /// assert_eq!(pool.reserved_in_range(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserved_in_range(&self) -> u32 {
        self.reserved_in_range
    }

    /// Whether `ip` lies in `[start, end]`, whatever its state.
    ///
    /// ```
    /// let pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// assert!(pool.in_range("10.0.0.6".parse()?));
    /// assert!(!pool.in_range("10.0.0.7".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&u32::from(ip))
    }

    /// The state of any IPv4 address.
    ///
    /// ```
    /// use ipam::{AddrState, Pool};
    ///
    /// let mut pool = Pool::whole("10.0.0.0/29".parse()?)?;
    /// pool.reserve("10.0.0.1".parse()?)?;
    /// assert_eq!(pool.state("10.0.0.1".parse()?), AddrState::Reserved);
    /// assert_eq!(pool.state("10.0.0.2".parse()?), AddrState::Free);
    /// assert_eq!(pool.state("192.0.2.1".parse()?), AddrState::OutOfRange);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self, ip: Ipv4Addr) -> AddrState {
        let ip = u32::from(ip);
        if self.reserved.contains(&ip) {
            AddrState::Reserved
        } else if !(self.start..=self.end).contains(&ip) {
            AddrState::OutOfRange
        } else if self.taken.get(self.slot(ip)) {
            AddrState::Allocated
        } else {
            AddrState::Free
        }
    }

    /// Marks `ip` as never to be handed out. Returns `false` when it was already reserved.
    ///
    /// The address may be outside the range (but must be in the network): it then counts
    /// nowhere until a [`resize`](Pool::resize) brings it into the range.
    ///
    /// # Errors
    /// [`Error::OutsideNetwork`], or [`Error::AlreadyAllocated`] when `ip` is allocated
    /// (release it first).
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// assert!(pool.reserve("10.0.0.1".parse()?)?);
    /// assert!(!pool.reserve("10.0.0.1".parse()?)?);
    /// assert!(pool.reserve("10.9.9.9".parse()?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve(&mut self, ip: Ipv4Addr) -> Result<bool, Error> {
        self.check_in_network(ip)?;
        let n = u32::from(ip);
        if self.reserved.contains(&n) {
            return Ok(false);
        }
        if self.in_range(ip) {
            if !self.taken.set(self.slot(n)) {
                return Err(Error::AlreadyAllocated { ip });
            }
            self.reserved_in_range += 1;
        }
        self.reserved.insert(n);
        Ok(true)
    }

    /// Removes a reservation; an address in the range becomes free.
    ///
    /// # Errors
    /// [`Error::NotReserved`] when `ip` was not reserved.
    ///
    /// ```
    /// use ipam::{AddrState, Pool};
    ///
    /// let mut pool = Pool::whole("10.0.0.0/29".parse()?)?;
    /// pool.reserve("10.0.0.3".parse()?)?;
    /// pool.unreserve("10.0.0.3".parse()?)?;
    /// assert_eq!(pool.state("10.0.0.3".parse()?), AddrState::Free);
    /// assert!(pool.unreserve("10.0.0.3".parse()?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unreserve(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        let n = u32::from(ip);
        if !self.reserved.remove(&n) {
            return Err(Error::NotReserved { ip });
        }
        if self.in_range(ip) {
            self.taken.clear(self.slot(n));
            self.reserved_in_range -= 1;
        }
        Ok(())
    }

    /// Allocates a free address chosen by `strategy`.
    ///
    /// # Errors
    /// [`Error::Exhausted`] when no address is free.
    ///
    /// ```
    /// use ipam::{Pool, Strategy};
    ///
    /// let mut pool = Pool::whole("10.0.0.0/29".parse()?)?; // .1 - .6
    /// assert_eq!(pool.allocate(Strategy::NextFit)?.to_string(), "10.0.0.1");
    /// assert_eq!(pool.allocate(Strategy::NextFit)?.to_string(), "10.0.0.2");
    /// pool.release("10.0.0.1".parse()?)?;
    /// // Lowest free re-uses the released address; next-fit moves on.
    /// assert_eq!(pool.allocate(Strategy::NextFit)?.to_string(), "10.0.0.3");
    /// assert_eq!(pool.allocate(Strategy::LowestFree)?.to_string(), "10.0.0.1");
    /// assert_eq!(pool.allocate(Strategy::Preferred("10.0.0.5".parse()?))?.to_string(), "10.0.0.5");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allocate(&mut self, strategy: Strategy) -> Result<Ipv4Addr, Error> {
        let slot = match strategy {
            Strategy::NextFit => self.next_fit(),
            Strategy::Preferred(ip) if self.in_range(ip) => self.free_from(self.slot(ip.into())),
            Strategy::LowestFree | Strategy::Preferred(_) => self.taken.first_free_from(0),
        }
        .ok_or(Error::Exhausted {
            network: self.network,
            start: self.start.into(),
            end: self.end.into(),
        })?;
        if strategy == Strategy::NextFit {
            self.cursor = self.addr(slot).checked_add(1).unwrap_or(self.start);
        }
        Ok(self.take(slot))
    }

    fn next_fit(&self) -> Option<usize> {
        let from = if (self.start..=self.end).contains(&self.cursor) {
            self.slot(self.cursor)
        } else {
            0
        };
        let found = self.free_from(from)?;
        match self.last_released {
            Some(released) if self.addr(found) == released => {
                let other = self.free_from(found + 1).filter(|&s| s != found);
                Some(other.unwrap_or(found))
            }
            _ => Some(found),
        }
    }

    /// The first free slot at or after `from`, wrapping around once.
    fn free_from(&self, from: usize) -> Option<usize> {
        self.taken
            .first_free_from(from)
            .or_else(|| self.taken.first_free_from(0))
    }

    fn take(&mut self, slot: usize) -> Ipv4Addr {
        self.taken.set(slot);
        self.used += 1;
        let addr = self.addr(slot);
        if self.last_released == Some(addr) {
            self.last_released = None;
        }
        addr.into()
    }

    /// Allocates exactly `ip`.
    ///
    /// # Errors
    /// Checked in this order: [`Error::OutsideNetwork`], [`Error::NetworkAddress`],
    /// [`Error::BroadcastAddress`], [`Error::OutsideRange`], [`Error::Reserved`],
    /// [`Error::AlreadyAllocated`].
    ///
    /// ```
    /// use ipam::{Error, Pool};
    ///
    /// let mut pool = Pool::new("10.0.0.0/24".parse()?, "10.0.0.10".parse()?, "10.0.0.20".parse()?)?;
    /// pool.allocate_specific("10.0.0.15".parse()?)?;
    /// assert!(matches!(pool.allocate_specific("10.0.0.15".parse()?), Err(Error::AlreadyAllocated { .. })));
    /// assert!(matches!(pool.allocate_specific("10.0.0.30".parse()?), Err(Error::OutsideRange { .. })));
    /// assert!(matches!(pool.allocate_specific("10.0.0.255".parse()?), Err(Error::BroadcastAddress { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allocate_specific(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        self.check_usable(ip)?;
        self.check_in_range(ip)?;
        let slot = self.slot(ip.into());
        if self.reserved.contains(&ip.into()) {
            return Err(Error::Reserved { ip });
        }
        if self.taken.get(slot) {
            return Err(Error::AlreadyAllocated { ip });
        }
        self.take(slot);
        Ok(())
    }

    /// Frees an allocated address.
    ///
    /// # Errors
    /// [`Error::OutsideNetwork`] / [`Error::OutsideRange`] when `ip` is not in the range,
    /// [`Error::Reserved`] for a reserved address, [`Error::NotAllocated`] for a free one.
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// let ip = pool.allocate(ipam::Strategy::LowestFree)?;
    /// pool.release(ip)?;
    /// assert!(pool.release(ip).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(&mut self, ip: Ipv4Addr) -> Result<(), Error> {
        self.check_in_network(ip)?;
        self.check_in_range(ip)?;
        let n = u32::from(ip);
        if self.reserved.contains(&n) {
            return Err(Error::Reserved { ip });
        }
        if !self.taken.clear(self.slot(n)) {
            return Err(Error::NotAllocated { ip });
        }
        self.used -= 1;
        self.last_released = Some(n);
        Ok(())
    }

    /// Allocates every address of `allocated`, all or nothing: on the first failure the
    /// addresses taken by this call are released again and the error is returned.
    ///
    /// This is how a controller rebuilds a pool from what it persisted (upstream's
    /// `status.ipv4.allocated`): O(n) in the number of addresses.
    ///
    /// # Errors
    /// As [`allocate_specific`](Pool::allocate_specific), for the first failing address.
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/24".parse()?)?;
    /// pool.restore(["10.0.0.7".parse()?, "10.0.0.9".parse()?])?;
    /// assert_eq!(pool.used(), 2);
    /// // A duplicate fails the whole call and leaves the pool as it was.
    /// assert!(pool.restore(["10.0.0.8".parse()?, "10.0.0.7".parse()?]).is_err());
    /// assert_eq!(pool.used(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore<I>(&mut self, allocated: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = Ipv4Addr>,
    {
        let mut done = Vec::new();
        for ip in allocated {
            if let Err(err) = self.allocate_specific(ip) {
                for ip in done {
                    let slot = self.slot(u32::from(ip));
                    self.taken.clear(slot);
                    self.used -= 1;
                }
                return Err(err);
            }
            done.push(ip);
        }
        Ok(())
    }

    /// Moves the range to `[start, end]` (same network), keeping every allocation and
    /// reservation. Reservations that fall into the new range start counting as reserved.
    ///
    /// # Errors
    /// Those of [`Pool::new`] for the new bounds, and [`Error::ResizeConflict`] listing the
    /// allocated addresses that would fall outside. The pool is unchanged on error.
    ///
    /// ```
    /// use ipam::{Error, Pool};
    ///
    /// let mut pool = Pool::new("10.0.0.0/24".parse()?, "10.0.0.10".parse()?, "10.0.0.20".parse()?)?;
    /// pool.allocate_specific("10.0.0.12".parse()?)?;
    /// pool.resize("10.0.0.10".parse()?, "10.0.0.100".parse()?)?; // widen
    /// assert_eq!(pool.capacity(), 91);
    /// let err = pool.resize("10.0.0.50".parse()?, "10.0.0.100".parse()?).unwrap_err();
    /// assert!(matches!(err, Error::ResizeConflict { ref conflicts, .. } if conflicts.len() == 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resize(&mut self, start: Ipv4Addr, end: Ipv4Addr) -> Result<(), Error> {
        check_range(self.network, start, end)?;
        let (start, end) = (u32::from(start), u32::from(end));
        let allocated: Vec<u32> = self.allocated_u32().collect();
        let conflicts: Vec<Ipv4Addr> = allocated
            .iter()
            .filter(|ip| !(start..=end).contains(*ip))
            .map(|&ip| ip.into())
            .collect();
        if !conflicts.is_empty() {
            return Err(Error::ResizeConflict {
                start: start.into(),
                end: end.into(),
                conflicts,
            });
        }
        let mut taken = Bitmap::new(slots(start, end));
        let mut reserved_in_range = 0;
        for &ip in self.reserved.range(start..=end) {
            taken.set((ip - start) as usize);
            reserved_in_range += 1;
        }
        for ip in allocated {
            taken.set((ip - start) as usize);
        }
        self.start = start;
        self.end = end;
        self.taken = taken;
        self.reserved_in_range = reserved_in_range;
        Ok(())
    }

    /// Allocated addresses, ascending.
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// pool.reserve("10.0.0.2".parse()?)?;
    /// pool.restore(["10.0.0.5".parse()?, "10.0.0.1".parse()?])?;
    /// let ips: Vec<String> = pool.allocated().map(|ip| ip.to_string()).collect();
    /// assert_eq!(ips, ["10.0.0.1", "10.0.0.5"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allocated(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.allocated_u32().map(Ipv4Addr::from)
    }

    fn allocated_u32(&self) -> impl Iterator<Item = u32> + '_ {
        // Taken slots minus reservations: both ascending, so a merge walk is O(n + r).
        let mut reserved = self.reserved.range(self.start..=self.end).peekable();
        self.taken
            .iter_set()
            .map(|s| self.addr(s))
            .filter(move |ip| {
                while reserved.next_if(|&&r| r < *ip).is_some() {}
                reserved.next_if(|&&r| r == *ip).is_none()
            })
    }

    /// Every reservation, in the range or not, ascending.
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?;
    /// pool.reserve("10.0.0.7".parse()?)?;
    /// pool.reserve("10.0.0.1".parse()?)?;
    /// assert_eq!(pool.reserved().count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserved(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.reserved.iter().map(|&ip| Ipv4Addr::from(ip))
    }

    /// Maximal runs of free addresses, ascending.
    ///
    /// ```
    /// let mut pool = ipam::Pool::whole("10.0.0.0/29".parse()?)?; // .1 - .6
    /// pool.reserve("10.0.0.3".parse()?)?;
    /// let runs: Vec<String> = pool
    ///     .free_ranges()
    ///     .map(|r| format!("{}-{}", r.start(), r.end()))
    ///     .collect();
    /// assert_eq!(runs, ["10.0.0.1-10.0.0.2", "10.0.0.4-10.0.0.6"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn free_ranges(&self) -> impl Iterator<Item = RangeInclusive<Ipv4Addr>> + '_ {
        self.taken
            .free_runs()
            .map(|(a, b)| self.addr(a).into()..=self.addr(b).into())
    }

    /// Approximate heap bytes held by the pool: the bitmap and its summary, plus the
    /// reservation set.
    ///
    /// ```
    /// let pool = ipam::Pool::whole("10.0.0.0/8".parse()?)?;
    /// assert!(pool.heap_bytes() < 2 * 1024 * 1024 * 105 / 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn heap_bytes(&self) -> usize {
        // A BTreeSet<u32> stores up to 11 keys per ~100-byte node: ~10 bytes per key.
        self.taken.heap_bytes() + self.reserved.len() * 10
    }

    fn slot(&self, ip: u32) -> usize {
        debug_assert!((self.start..=self.end).contains(&ip));
        (ip - self.start) as usize
    }

    fn addr(&self, slot: usize) -> u32 {
        // Slots are < MAX_RANGE, so they fit in u32.
        self.start + u32::try_from(slot).expect("slot index is below MAX_RANGE")
    }

    fn check_in_network(&self, ip: Ipv4Addr) -> Result<(), Error> {
        if self.network.contains(&ip) {
            Ok(())
        } else {
            Err(Error::OutsideNetwork {
                ip,
                network: self.network,
            })
        }
    }

    fn check_usable(&self, ip: Ipv4Addr) -> Result<(), Error> {
        self.check_in_network(ip)?;
        check_not_special(self.network, ip)
    }

    fn check_in_range(&self, ip: Ipv4Addr) -> Result<(), Error> {
        if self.in_range(ip) {
            Ok(())
        } else {
            Err(Error::OutsideRange {
                ip,
                start: self.start.into(),
                end: self.end.into(),
            })
        }
    }
}

/// First and last usable address of `network` (RFC 3021 for /31 and /32).
fn usable_bounds(network: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    if network.prefix_len() >= 31 {
        (network.network(), network.broadcast())
    } else {
        (
            (u32::from(network.network()) + 1).into(),
            (u32::from(network.broadcast()) - 1).into(),
        )
    }
}

fn check_not_special(network: Ipv4Net, ip: Ipv4Addr) -> Result<(), Error> {
    if network.prefix_len() <= 30 {
        if ip == network.network() {
            return Err(Error::NetworkAddress { ip, network });
        }
        if ip == network.broadcast() {
            return Err(Error::BroadcastAddress { ip, network });
        }
    }
    Ok(())
}

fn check_range(network: Ipv4Net, start: Ipv4Addr, end: Ipv4Addr) -> Result<(), Error> {
    for ip in [start, end] {
        if !network.contains(&ip) {
            return Err(Error::OutsideNetwork { ip, network });
        }
    }
    if start > end {
        return Err(Error::StartAfterEnd { start, end });
    }
    check_not_special(network, start)?;
    check_not_special(network, end)?;
    let size = u64::from(u32::from(end)) - u64::from(u32::from(start)) + 1;
    if size > u64::from(MAX_RANGE) {
        return Err(Error::RangeTooLarge {
            start,
            end,
            size,
            max: MAX_RANGE,
        });
    }
    Ok(())
}

fn slots(start: u32, end: u32) -> usize {
    (end - start) as usize + 1
}

impl PartialEq for Pool {
    fn eq(&self, other: &Self) -> bool {
        self.network == other.network
            && self.start == other.start
            && self.end == other.end
            && self.reserved == other.reserved
            && self.taken == other.taken
    }
}

impl Eq for Pool {}

impl fmt::Debug for Pool {
    // A /8 has 16 M slots: show the summary, not the bitmap.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("network", &self.network)
            .field("start", &self.start())
            .field("end", &self.end())
            .field("used", &self.used)
            .field("available", &self.available())
            .field("reserved", &self.reserved.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
