//! [`StaticLeases`]: a MAC → lease table, replaceable while the server runs.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Confirmation, Lease, LeaseSource, NoOffer, Query};
use crate::engine::RequestState;
use crate::hwaddr::MacAddr;

type Table = HashMap<MacAddr, Lease>;
type Conflicts = HashSet<(MacAddr, Ipv4Addr)>;

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
/// often than they are read.
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
    table: Arc<ArcSwap<Table>>,
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
        self.table.store(Arc::new(leases.into_iter().collect()));
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
            let mut t = Table::clone(t);
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
            let mut t = Table::clone(t);
            previous = t.remove(&mac);
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
        self.table.load().get(&mac).cloned()
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
    pub fn snapshot(&self) -> Arc<HashMap<MacAddr, Lease>> {
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
        self.table.load().get(&mac).cloned().map(|l| (mac, l))
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
    use super::*;

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
                snapshot.values().map(|l| l.addr().octets()[2]).collect();
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
}
