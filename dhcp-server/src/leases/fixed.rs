//! [`StaticLeases`]: a MAC → lease table, replaceable while the server runs.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Confirmation, Lease, LeaseSource, NoOffer, Query};
use crate::engine::RequestState;
use crate::hwaddr::MacAddr;

type Conflicts = HashSet<(MacAddr, Ipv4Addr)>;

/// One table of [`StaticLeases`], as [`StaticLeases::snapshot`] returns it: MAC → lease,
/// kept compact because an embedder may hold tens of thousands of leases.
///
/// Most leases are a bare address ([`Lease::new`]); those are stored as (MAC, address) pairs
/// of 10 bytes in a hash table (a table of whole [`Lease`]s took 40 bytes a bucket). The few
/// leases with more (a host name, a lease time) are kept whole in a side map as well, which
/// is empty, and never looked at, when no lease has extras.
///
/// ```
/// use dhcp_server::{Lease, LeaseTime, MacAddr, StaticLeases};
///
/// let (a, b): (MacAddr, MacAddr) = ("02:00:00:00:00:02".parse()?, "02:00:00:00:00:01".parse()?);
/// let leases: StaticLeases = [
///     (a, Lease::new("10.0.0.2".parse()?)),
///     (b, Lease::new("10.0.0.1".parse()?).with_lease_time(LeaseTime::INFINITE)),
/// ]
/// .into_iter()
/// .collect();
/// let table = leases.snapshot();
/// assert_eq!(table.len(), 2);
/// assert_eq!(table.get(a), Some(Lease::new("10.0.0.2".parse()?)));
/// assert!(table.get(b).unwrap().lease_time().unwrap().is_infinite());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct LeaseTable {
    /// Every lease's address.
    addrs: HashMap<MacAddr, Ipv4Addr>,
    /// The whole lease of the MACs whose lease is not just `Lease::new(addr)`.
    extras: HashMap<MacAddr, Lease>,
}

/// Whether `lease` carries nothing beyond its address (the compact case).
fn is_bare(lease: &Lease) -> bool {
    *lease == Lease::new(lease.addr())
}

impl LeaseTable {
    /// Builds a table; a MAC given twice keeps its last lease, as with a map.
    fn build(leases: impl IntoIterator<Item = (MacAddr, Lease)>) -> Self {
        let mut table = Self::default();
        for (mac, lease) in leases {
            table.insert(mac, lease);
        }
        table.addrs.shrink_to_fit();
        table.extras.shrink_to_fit();
        table
    }

    /// The whole lease of `mac`, leased `addr`.
    fn lease(&self, mac: MacAddr, addr: Ipv4Addr) -> Lease {
        // The common case, no lease with extras at all, costs no second hashing.
        let extras = (!self.extras.is_empty())
            .then(|| self.extras.get(&mac))
            .flatten();
        extras.cloned().unwrap_or_else(|| Lease::new(addr))
    }

    fn insert(&mut self, mac: MacAddr, lease: Lease) -> Option<Lease> {
        let previous = self
            .addrs
            .insert(mac, lease.addr())
            .map(|addr| self.lease(mac, addr));
        if is_bare(&lease) {
            if !self.extras.is_empty() {
                self.extras.remove(&mac);
            }
        } else {
            self.extras.insert(mac, lease);
        }
        previous
    }

    fn remove(&mut self, mac: MacAddr) -> Option<Lease> {
        let addr = self.addrs.remove(&mac)?;
        let lease = self.lease(mac, addr);
        self.extras.remove(&mac);
        Some(lease)
    }

    /// The lease of `mac`.
    ///
    /// ```
    /// # use dhcp_server::{Lease, StaticLeases};
    /// let mac = "02:00:00:00:00:01".parse()?;
    /// let leases: StaticLeases = [(mac, Lease::new("10.0.0.2".parse()?))].into_iter().collect();
    /// assert_eq!(leases.snapshot().get(mac).unwrap().addr().to_string(), "10.0.0.2");
    /// assert!(leases.snapshot().get("02:00:00:00:00:02".parse()?).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, mac: MacAddr) -> Option<Lease> {
        self.addrs.get(&mac).map(|&addr| self.lease(mac, addr))
    }

    /// The address leased to `mac`: [`get`](Self::get) without building the [`Lease`].
    ///
    /// ```
    /// # use dhcp_server::{Lease, StaticLeases};
    /// let mac = "02:00:00:00:00:01".parse()?;
    /// let leases: StaticLeases = [(mac, Lease::new("10.0.0.2".parse()?))].into_iter().collect();
    /// assert_eq!(leases.snapshot().addr(mac), Some("10.0.0.2".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn addr(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.addrs.get(&mac).copied()
    }

    /// Number of leases.
    ///
    /// ```
    /// assert_eq!(dhcp_server::StaticLeases::new().snapshot().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether the table is empty.
    ///
    /// ```
    /// assert!(dhcp_server::StaticLeases::new().snapshot().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Every lease, in no particular order.
    ///
    /// ```
    /// # use dhcp_server::{Lease, MacAddr, StaticLeases};
    /// let leases: StaticLeases = [
    ///     (MacAddr::new([2, 0, 0, 0, 0, 9]), Lease::new([10, 0, 0, 9].into())),
    ///     (MacAddr::new([2, 0, 0, 0, 0, 1]), Lease::new([10, 0, 0, 1].into()).with_hostname("a")),
    /// ]
    /// .into_iter()
    /// .collect();
    /// let mut names: Vec<_> =
    ///     leases.snapshot().iter().map(|(_, l)| l.hostname().map(str::to_owned)).collect();
    /// names.sort();
    /// assert_eq!(names, [None, Some("a".to_owned())]);
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (MacAddr, Lease)> + '_ {
        self.addrs
            .iter()
            .map(|(&mac, &addr)| (mac, self.lease(mac, addr)))
    }

    /// Every (MAC, address) pair, in no particular order: [`iter`](Self::iter) without
    /// building the [`Lease`]s.
    ///
    /// ```
    /// # use dhcp_server::{Lease, MacAddr, StaticLeases};
    /// let mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
    /// let leases: StaticLeases = [(mac, Lease::new([10, 0, 0, 1].into()))].into_iter().collect();
    /// assert_eq!(leases.snapshot().addrs().collect::<Vec<_>>(), [(mac, [10, 0, 0, 1].into())]);
    /// ```
    pub fn addrs(&self) -> impl ExactSizeIterator<Item = (MacAddr, Ipv4Addr)> + '_ {
        self.addrs.iter().map(|(&mac, &addr)| (mac, addr))
    }
}

/// Static leases keyed by the client's MAC address (`chaddr`), the model of MAC-pinned VM
/// networks: a known MAC always gets its address, an unknown MAC gets no offer.
///
/// Lookups use `chaddr` only, never the client identifier (option 61): guests such as
/// systemd-networkd or dhcpcd send a DUID-based client-id that has nothing to do with the MAC
/// the lease was pinned to. The client-id is still echoed in every reply.
///
/// Clones share the table. The embedding program keeps one clone and changes the table at
/// any time ([`replace`](Self::replace), [`insert`](Self::insert), [`remove`](Self::remove));
/// the server, holding another clone, sees the change on the next packet. Reads are
/// lock-free (`arc-swap`); writes copy the table, which suits tables that change far less
/// often than they are read. The table is compact ([`LeaseTable`]): a lease that is just an
/// address takes a 10-byte (MAC, address) entry of a hash table.
///
/// ```
/// use dhcp_server::{Lease, MacAddr, StaticLeases};
///
/// let leases = StaticLeases::new();
/// let for_server = leases.clone();
/// leases.insert("CA-70-82-E6-84-6E".parse()?, Lease::new("192.168.48.84".parse()?));
/// let mac: MacAddr = "ca:70:82:e6:84:6e".parse()?;
/// assert_eq!(for_server.get(mac).map(|l| l.addr().to_string()).as_deref(), Some("192.168.48.84"));
///
/// // The IPPool changed: swap the whole table at once.
/// leases.replace([(mac, Lease::new("192.168.48.90".parse()?))]);
/// assert_eq!(for_server.get(mac).unwrap().addr().to_string(), "192.168.48.90");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Address conflicts (DECLINE)
///
/// A client that finds its address already in use sends a DECLINE (RFC 2131 §4.4.1). Only
/// the embedder can move a MAC-pinned VM to another address, so the table does not change;
/// instead the pair (MAC, address) is marked *in conflict*:
///
/// - the server reports it on its event channel: an [`Event`](crate::Event) of kind
///   [`Declined`](crate::EventKind::Declined) with the address, the client's MAC and client
///   identifier, the xid, the server identifier and the time;
/// - from then on that client is not offered that address (DISCOVER: no answer, event
///   [`AddressConflict`](crate::IgnoreReason::AddressConflict)) and a REQUEST for it gets a
///   NAK;
/// - until the embedder says otherwise: [`clear_conflict`](Self::clear_conflict) when the
///   conflict is resolved, or a new address for the MAC ([`insert`](Self::insert),
///   [`replace`](Self::replace)), which is offered at once (the conflict concerns the old
///   address only, and stays recorded until cleared).
///
/// The embedder can also mark a conflict it learnt elsewhere
/// ([`mark_conflict`](Self::mark_conflict)), e.g. to restore them after a restart
/// ([`conflicts`](Self::conflicts) lists them).
///
/// ```
/// use std::time::{Instant, SystemTime};
/// use dhcp_server::{
///     decide, Config, Context, EventKind, IgnoreReason, Lease, MacAddr, Request, StaticLeases,
/// };
///
/// let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
/// let mac: MacAddr = "02:00:00:00:00:01".parse()?;
/// let agent = StaticLeases::new(); // the embedder's handle
/// agent.insert(mac, Lease::new("10.0.0.50".parse()?));
/// let mut server = agent.clone(); // the server's handle (moved into `Server::new`)
///
/// // Requests from 02:00:00:00:00:01 with client-id 01:02:00:00:00:00:01.
/// let packet = |message_type: u8, extra: &[u8]| {
///     let mut b = vec![0u8; 236];
///     b[..3].copy_from_slice(&[1, 1, 6]);
///     b[4..8].copy_from_slice(&0xabcdu32.to_be_bytes());
///     b[28..34].copy_from_slice(&mac.octets());
///     b.extend([99, 130, 83, 99, 53, 1, message_type, 61, 7, 1, 2, 0, 0, 0, 0, 1]);
///     b.extend(extra);
///     b.push(255);
///     b
/// };
/// let ctx = Context::new(2, "0.0.0.0:68".parse()?, [255; 4].into());
/// let discover = packet(1, &[]);
/// let decline = packet(4, &[50, 4, 10, 0, 0, 50, 54, 4, 10, 0, 0, 1]);
///
/// // The client declines 10.0.0.50: the event has what the embedder needs.
/// let req = Request::parse(&decline)?;
/// let event = decide(&req, &ctx, &config, &mut server, Instant::now()).event();
/// // (`Server` stamps events with the time; the bare engine reads no clock.)
/// let event = event.with_time(SystemTime::now());
/// assert_eq!(event.kind(), EventKind::Declined);
/// assert_eq!(event.addr().to_string(), "10.0.0.50");
/// assert_eq!(event.client().mac(), Some(mac));
/// assert_eq!(event.client_id(), Some(&[1, 2, 0, 0, 0, 0, 1][..]));
/// assert_eq!((event.xid(), event.server_id().to_string()), (0xabcd, "10.0.0.1".to_owned()));
/// assert!(event.time().is_some());
/// assert!(agent.is_conflicted(mac, "10.0.0.50".parse()?));
///
/// // No more offers of that address to that client...
/// let req = Request::parse(&discover)?;
/// let decision = decide(&req, &ctx, &config, &mut server, Instant::now());
/// assert!(decision.reply().is_none());
/// assert_eq!(
///     decision.event().kind(),
///     EventKind::Ignored(IgnoreReason::AddressConflict("10.0.0.50".parse()?))
/// );
///
/// // ...until the embedder clears the conflict (or gives the MAC another address).
/// assert!(agent.clear_conflict(mac, "10.0.0.50".parse()?));
/// let decision = decide(&req, &ctx, &config, &mut server, Instant::now());
/// assert_eq!(decision.reply().unwrap().yiaddr().to_string(), "10.0.0.50");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticLeases {
    table: Arc<ArcSwap<LeaseTable>>,
    conflicts: Arc<ArcSwap<Conflicts>>,
}

impl StaticLeases {
    /// An empty table.
    ///
    /// ```
    /// assert!(dhcp_server::StaticLeases::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole table atomically: the server sees either the old or the new table,
    /// never a mix.
    ///
    /// ```
    /// # use dhcp_server::{Lease, StaticLeases};
    /// let leases = StaticLeases::new();
    /// leases.replace([("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.2".parse()?))]);
    /// assert_eq!(leases.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replace(&self, leases: impl IntoIterator<Item = (MacAddr, Lease)>) {
        self.table.store(Arc::new(LeaseTable::build(leases)));
    }

    /// Adds or changes one lease; returns the previous one.
    ///
    /// ```
    /// # use dhcp_server::{Lease, StaticLeases};
    /// let leases = StaticLeases::new();
    /// let mac = "02:00:00:00:00:01".parse()?;
    /// assert!(leases.insert(mac, Lease::new("10.0.0.2".parse()?)).is_none());
    /// assert!(leases.insert(mac, Lease::new("10.0.0.3".parse()?)).is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // Owned like `HashMap::insert`; `rcu` may retry, so the closure clones it.
    #[allow(clippy::needless_pass_by_value)]
    pub fn insert(&self, mac: MacAddr, lease: Lease) -> Option<Lease> {
        let mut previous = None;
        self.table.rcu(|t| {
            let mut t = LeaseTable::clone(t);
            previous = t.insert(mac, lease.clone());
            t
        });
        previous
    }

    /// Removes one lease; returns it.
    ///
    /// ```
    /// # use dhcp_server::{Lease, StaticLeases};
    /// let leases = StaticLeases::new();
    /// let mac = "02:00:00:00:00:01".parse()?;
    /// leases.insert(mac, Lease::new("10.0.0.2".parse()?));
    /// assert!(leases.remove(mac).is_some());
    /// assert!(leases.remove(mac).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self, mac: MacAddr) -> Option<Lease> {
        let mut previous = None;
        self.table.rcu(|t| {
            let mut t = LeaseTable::clone(t);
            previous = t.remove(mac);
            t
        });
        previous
    }

    /// The lease of `mac`.
    ///
    /// ```
    /// # use dhcp_server::StaticLeases;
    /// assert!(StaticLeases::new().get("02:00:00:00:00:01".parse()?).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, mac: MacAddr) -> Option<Lease> {
        self.table.load().get(mac)
    }

    /// Number of leases.
    ///
    /// ```
    /// assert_eq!(dhcp_server::StaticLeases::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Whether the table is empty.
    ///
    /// ```
    /// assert!(dhcp_server::StaticLeases::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.table.load().is_empty()
    }

    /// The current table (a snapshot: later changes do not show in it).
    ///
    /// ```
    /// # use dhcp_server::{Lease, StaticLeases};
    /// let leases: StaticLeases = [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.2".parse()?))]
    ///     .into_iter()
    ///     .collect();
    /// assert_eq!(leases.snapshot().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Arc<LeaseTable> {
        self.table.load_full()
    }

    /// Marks `addr` in conflict for `mac`: the server stops offering it to that client (see
    /// [Address conflicts](Self#address-conflicts-decline)). Returns whether it was not marked
    /// yet. The server marks conflicts itself when a client declines its address.
    ///
    /// ```
    /// # use dhcp_server::StaticLeases;
    /// let leases = StaticLeases::new();
    /// let (mac, addr) = ("02:00:00:00:00:01".parse()?, "10.0.0.2".parse()?);
    /// assert!(leases.mark_conflict(mac, addr));
    /// assert!(!leases.mark_conflict(mac, addr));
    /// assert!(leases.is_conflicted(mac, addr));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mark_conflict(&self, mac: MacAddr, addr: Ipv4Addr) -> bool {
        let mut added = false;
        self.conflicts.rcu(|c| {
            let mut c = Conflicts::clone(c);
            added = c.insert((mac, addr));
            c
        });
        added
    }

    /// Clears a conflict: `mac` may be offered `addr` again. Returns whether it was marked.
    ///
    /// ```
    /// # use dhcp_server::StaticLeases;
    /// let leases = StaticLeases::new();
    /// let (mac, addr) = ("02:00:00:00:00:01".parse()?, "10.0.0.2".parse()?);
    /// leases.mark_conflict(mac, addr);
    /// assert!(leases.clear_conflict(mac, addr));
    /// assert!(!leases.clear_conflict(mac, addr));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_conflict(&self, mac: MacAddr, addr: Ipv4Addr) -> bool {
        let mut removed = false;
        self.conflicts.rcu(|c| {
            let mut c = Conflicts::clone(c);
            removed = c.remove(&(mac, addr));
            c
        });
        removed
    }

    /// Whether `addr` is in conflict for `mac`.
    ///
    /// ```
    /// # use dhcp_server::StaticLeases;
    /// let leases = StaticLeases::new();
    /// assert!(!leases.is_conflicted("02:00:00:00:00:01".parse()?, "10.0.0.2".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_conflicted(&self, mac: MacAddr, addr: Ipv4Addr) -> bool {
        let conflicts = self.conflicts.load();
        // The common case, no conflict at all, costs no hashing.
        !conflicts.is_empty() && conflicts.contains(&(mac, addr))
    }

    /// Every conflict, sorted by MAC then address.
    ///
    /// ```
    /// # use dhcp_server::StaticLeases;
    /// let leases = StaticLeases::new();
    /// let mac = "02:00:00:00:00:01".parse()?;
    /// leases.mark_conflict(mac, "10.0.0.3".parse()?);
    /// leases.mark_conflict(mac, "10.0.0.2".parse()?);
    /// assert_eq!(leases.conflicts()[0].1.to_string(), "10.0.0.2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conflicts(&self) -> Vec<(MacAddr, Ipv4Addr)> {
        let mut all: Vec<_> = self.conflicts.load().iter().copied().collect();
        all.sort_unstable();
        all
    }

    fn lookup(&self, query: &Query<'_, '_>) -> Option<(MacAddr, Lease)> {
        let mac = query.request().mac()?;
        self.table.load().get(mac).map(|l| (mac, l))
    }
}

impl FromIterator<(MacAddr, Lease)> for StaticLeases {
    fn from_iter<I: IntoIterator<Item = (MacAddr, Lease)>>(iter: I) -> Self {
        let leases = Self::new();
        leases.replace(iter);
        leases
    }
}

impl LeaseSource for StaticLeases {
    fn offer(&mut self, query: &Query<'_, '_>) -> Result<Lease, NoOffer> {
        let (mac, lease) = self.lookup(query).ok_or(NoOffer::UnknownClient)?;
        if self.is_conflicted(mac, lease.addr()) {
            return Err(NoOffer::Conflict(lease.addr()));
        }
        Ok(lease)
    }

    fn confirm(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr, _: RequestState) -> Confirmation {
        match self.lookup(query) {
            Some((mac, _)) if self.is_conflicted(mac, addr) => Confirmation::Nak,
            Some((_, lease)) if lease.addr() == addr => Confirmation::Ack(lease),
            Some(_) => Confirmation::Nak,
            None => Confirmation::Unknown,
        }
    }

    fn release(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
        // The binding is the table's, not the client's: nothing to free.
        self.lookup(query).is_some_and(|(_, l)| l.addr() == addr)
    }

    fn decline(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
        // Only the embedder can move a VM to another address: the table stays, the pair is
        // marked in conflict until the embedder clears it, and the event reports it.
        match self.lookup(query) {
            Some((mac, lease)) if lease.addr() == addr => {
                self.mark_conflict(mac, addr);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::LeaseTime;

    #[test]
    fn readers_see_whole_tables_while_a_writer_replaces_them() {
        let leases = StaticLeases::new();
        let table = |generation: u8| {
            (0..50u8).map(move |i| {
                (
                    MacAddr::new([2, 0, 0, 0, 0, i]),
                    Lease::new([10, 0, generation, i].into()),
                )
            })
        };
        leases.replace(table(0));
        let writer = {
            let leases = leases.clone();
            std::thread::spawn(move || {
                for generation in 1..=200u8 {
                    leases.replace(table(generation));
                }
            })
        };
        while !writer.is_finished() {
            let snapshot = leases.snapshot();
            // One generation per snapshot: never a mix of two tables.
            let gens: std::collections::HashSet<u8> =
                snapshot.iter().map(|(_, l)| l.addr().octets()[2]).collect();
            assert_eq!(gens.len(), 1, "{gens:?}");
            assert_eq!(snapshot.len(), 50);
        }
        writer.join().unwrap();
        assert_eq!(
            leases
                .get(MacAddr::new([2, 0, 0, 0, 0, 7]))
                .unwrap()
                .addr()
                .octets(),
            [10, 0, 200, 7]
        );
    }

    #[test]
    fn insert_and_remove_keep_the_rest() {
        let leases: StaticLeases = [(MacAddr::new([2; 6]), Lease::new([10, 0, 0, 2].into()))]
            .into_iter()
            .collect();
        let other = leases.clone();
        assert!(
            leases
                .insert(MacAddr::new([3; 6]), Lease::new([10, 0, 0, 3].into()))
                .is_none()
        );
        assert_eq!(other.len(), 2);
        assert_eq!(
            leases.remove(MacAddr::new([2; 6])).unwrap().addr().octets(),
            [10, 0, 0, 2]
        );
        assert_eq!(other.len(), 1);
        assert!(!other.is_empty());
    }

    #[test]
    fn a_bare_lease_takes_ten_bytes() {
        assert_eq!(std::mem::size_of::<(MacAddr, Ipv4Addr)>(), 10);
        let table = LeaseTable::build((0..100u8).map(|i| {
            (
                MacAddr::new([2, 0, 0, 0, 1, i]),
                Lease::new([10, 0, 0, i].into()),
            )
        }));
        assert!(table.extras.is_empty());
        assert_eq!(table.addrs.len(), 100);
    }

    #[test]
    fn extras_are_kept_only_for_the_leases_that_have_them() {
        let (a, b) = (MacAddr::new([2; 6]), MacAddr::new([3; 6]));
        let named = Lease::new([10, 0, 0, 2].into()).with_hostname("vm-a");
        let leases: StaticLeases = [(a, named.clone()), (b, Lease::new([10, 0, 0, 3].into()))]
            .into_iter()
            .collect();
        assert_eq!(leases.get(a), Some(named.clone()));
        assert_eq!(leases.snapshot().extras.len(), 1);
        // Back to a bare lease: the side entry goes, the previous lease comes back whole.
        assert_eq!(
            leases.insert(a, Lease::new([10, 0, 0, 4].into())),
            Some(named)
        );
        assert!(leases.snapshot().extras.is_empty());
        let timed = Lease::new([10, 0, 0, 5].into()).with_lease_time(LeaseTime::INFINITE);
        leases.insert(b, timed.clone());
        assert_eq!(leases.remove(b), Some(timed));
        assert!(leases.snapshot().extras.is_empty());
    }

    fn lease_strategy() -> impl Strategy<Value = (MacAddr, Lease)> {
        // Few MACs and addresses, so that duplicates, overwrites and removals are common.
        (0..8u8, 0..4u8, proptest::option::of(0..3u8), any::<bool>()).prop_map(
            |(m, a, time, named)| {
                let mut lease = Lease::new([10, 0, 0, a].into());
                if let Some(t) = time {
                    lease = lease.with_lease_time(LeaseTime::from_secs(60 * u32::from(t)));
                }
                if named {
                    lease = lease.with_hostname(format!("vm-{m}"));
                }
                (MacAddr::new([2, 0, 0, 0, m >> 2, m]), lease)
            },
        )
    }

    proptest! {
        /// The compact table behaves as the map of whole leases it replaced.
        #[test]
        fn behaves_like_a_map(
            initial in proptest::collection::vec(lease_strategy(), 0..12),
            ops in proptest::collection::vec((lease_strategy(), any::<bool>()), 0..24),
        ) {
            let mut model: HashMap<MacAddr, Lease> = initial.iter().cloned().collect();
            let leases: StaticLeases = initial.into_iter().collect();
            for ((mac, lease), remove) in ops {
                if remove {
                    prop_assert_eq!(leases.remove(mac), model.remove(&mac));
                } else {
                    prop_assert_eq!(leases.insert(mac, lease.clone()), model.insert(mac, lease));
                }
                let table = leases.snapshot();
                prop_assert_eq!(table.len(), model.len());
                prop_assert_eq!(leases.is_empty(), model.is_empty());
                let mut expected: Vec<_> = model.iter().map(|(m, l)| (*m, l.clone())).collect();
                expected.sort_by_key(|(m, _)| *m);
                let mut got: Vec<_> = table.iter().collect();
                got.sort_by_key(|(m, _)| *m);
                prop_assert_eq!(got, expected.clone());
                let addrs: Vec<_> = expected.iter().map(|(m, l)| (*m, l.addr())).collect();
                let mut got: Vec<_> = table.addrs().collect();
                got.sort_unstable();
                prop_assert_eq!(got, addrs);
                for m in 0..8u8 {
                    let mac = MacAddr::new([2, 0, 0, 0, m >> 2, m]);
                    prop_assert_eq!(leases.get(mac), model.get(&mac).cloned());
                    prop_assert_eq!(table.addr(mac), model.get(&mac).map(Lease::addr));
                }
                // Only leases with more than an address take a side entry.
                let with_extras = model.values().filter(|l| **l != Lease::new(l.addr())).count();
                prop_assert_eq!(table.extras.len(), with_extras);
            }
        }
    }
}
