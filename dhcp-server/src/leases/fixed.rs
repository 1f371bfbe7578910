//! [`StaticLeases`]: a MAC → lease table, replaceable while the server runs.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Confirmation, Lease, LeaseSource, NoOffer, Query};
use crate::engine::RequestState;
use crate::hwaddr::MacAddr;

type Table = HashMap<MacAddr, Lease>;

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
#[derive(Debug, Clone, Default)]
pub struct StaticLeases {
    table: Arc<ArcSwap<Table>>,
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

    fn lookup(&self, query: &Query<'_, '_>) -> Option<Lease> {
        let mac = query.request().mac()?;
        self.table.load().get(&mac).cloned()
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
        self.lookup(query).ok_or(NoOffer::UnknownClient)
    }

    fn confirm(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr, _: RequestState) -> Confirmation {
        match self.lookup(query) {
            Some(lease) if lease.addr() == addr => Confirmation::Ack(lease),
            Some(_) => Confirmation::Nak,
            None => Confirmation::Unknown,
        }
    }

    fn release(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
        // The binding is the table's, not the client's: nothing to free.
        self.lookup(query).is_some_and(|l| l.addr() == addr)
    }

    fn decline(&mut self, query: &Query<'_, '_>, addr: Ipv4Addr) -> bool {
        // Only the owner of the table (the controller) can move a VM to another address; the
        // server reports the conflict through its event.
        self.lookup(query).is_some_and(|l| l.addr() == addr)
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
