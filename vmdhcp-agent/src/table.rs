//! The lease table an IPPool describes: `status.ipv4.allocated` (IP → MAC) turned around into
//! MAC → IP, with MACs normalised. Pure: the agent builds a [`Table`] from every IPPool it sees
//! and swaps it into the server whole, so an address that moves to another MAC moves its lease
//! in the same step (upstream kept the old MAC's lease and gave the new MAC none).
//!
//! Both types are compact because the agent keeps nothing else of a pool: [`Allocations`] is
//! `allocated` parsed while it is read (10 bytes an entry, where the JSON map as strings took
//! well over 100), and a [`Table`] is a sorted vector of (MAC, address).

use std::fmt;
use std::net::Ipv4Addr;

use dhcp_server::{Lease, MacAddr, StaticLeases};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use vmdhcp_api::ippool::IPPool;

/// MAC → address, sorted by MAC, one address per MAC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    by_mac: Vec<(MacAddr, Ipv4Addr)>,
}

/// An `allocated` entry that cannot become a lease, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The key as written (should be an IPv4 address).
    pub ip: String,
    /// The value as written (should be a MAC address).
    pub mac: String,
    /// Why it is not served.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allocated[{}] = {:?}: {}",
            self.ip, self.mac, self.reason
        )
    }
}

/// What changed between two tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// MACs that got a lease.
    pub added: Vec<(MacAddr, Ipv4Addr)>,
    /// MACs that lost their lease.
    pub removed: Vec<(MacAddr, Ipv4Addr)>,
    /// MACs whose address changed: (mac, old, new).
    pub changed: Vec<(MacAddr, Ipv4Addr, Ipv4Addr)>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// `status.ipv4.allocated`, parsed: every entry that names an IPv4 address and a MAC address,
/// and the entries that do not (with the reason). Marks (`EXCLUDED`, `RESERVED`, `CONFLICT`)
/// are dropped: they are not leases.
///
/// Deserialises from the JSON map itself, entry by entry, so a pool of 50,000 allocations never
/// exists as 100,000 strings in the agent. The texts of an entry are kept only where a message
/// may have to quote them: a bad entry, or a MAC not written the canonical way
/// (`ca:70:82:e6:84:6e`); an address that parses is quoted as it prints, which is how it was
/// written (the parser takes no other spelling).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocations {
    /// (address, MAC), sorted by address, one entry per address.
    entries: Vec<(Ipv4Addr, MacAddr)>,
    /// The MAC as written, for the entries of `entries` not written canonically; sorted.
    spellings: Vec<(Ipv4Addr, Box<str>)>,
    /// Entries whose key is not an IPv4 address or whose value is not a MAC address.
    bad: Vec<Skipped>,
}

/// One `allocated` entry, classified.
enum Entry {
    /// `EXCLUDED`/`RESERVED` at this key: an address, or the key as written.
    Mark(Result<Ipv4Addr, Box<str>>),
    /// A lease; the MAC as written when it is not canonical.
    Lease(Ipv4Addr, MacAddr, Option<Box<str>>),
    /// Not servable; the address, if the key parses.
    Bad(Option<Ipv4Addr>, Skipped),
}

impl Entry {
    /// The entry `ip_text: mac_text`, checked in upstream's order: marks first, then the key,
    /// then the value.
    fn classify(ip_text: &str, mac_text: &str) -> Self {
        let ip = ip_text.parse::<Ipv4Addr>().ok();
        if is_mark(mac_text) {
            return Self::Mark(ip.ok_or_else(|| ip_text.into()));
        }
        let skip = |reason: String| {
            Self::Bad(
                ip,
                Skipped {
                    ip: ip_text.to_owned(),
                    mac: mac_text.to_owned(),
                    reason,
                },
            )
        };
        let Some(ip) = ip else {
            return skip("not an IPv4 address".into());
        };
        match mac_text.parse::<vmdhcp_api::MacAddr>() {
            Ok(mac) => {
                let spelled = (!is_canonical(mac_text)).then(|| mac_text.into());
                Self::Lease(ip, MacAddr::from(mac.octets()), spelled)
            }
            Err(e) => skip(format!("not a MAC address ({e})")),
        }
    }
}

impl Allocations {
    /// The allocations of an IPPool's `status.ipv4.allocated` (none without a status).
    pub fn from_pool(pool: &IPPool) -> Self {
        Self::from_entries(pool.allocated())
    }

    /// The allocations of these `(key, value)` entries of `allocated`. A key given twice keeps
    /// its last value, as a JSON map read into the IPPool type does.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut builder = Builder::default();
        for (ip, mac) in entries {
            builder.push(Entry::classify(ip, mac));
        }
        builder.finish()
    }

    /// Number of entries that name an address and a MAC.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry names an address and a MAC.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (address, MAC) of every entry that names both, by address.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.entries.iter().copied()
    }

    /// The entries that are neither leases nor marks.
    pub fn bad(&self) -> &[Skipped] {
        &self.bad
    }

    /// The MAC of the entry at `ip` as it was written.
    fn mac_text(&self, ip: Ipv4Addr, mac: MacAddr) -> String {
        match self.spellings.binary_search_by_key(&ip, |(a, _)| *a) {
            Ok(i) => self.spellings[i].1.to_string(),
            Err(_) => mac.to_string(),
        }
    }
}

/// What an entry whose key is an address turned out to be.
#[derive(Clone, Copy)]
enum Kind {
    Lease(MacAddr),
    Mark,
    /// Index into [`Builder::bad`].
    Bad(u32),
}

/// Collects classified entries in input order; [`Builder::finish`] keeps the last entry of
/// each key and lays the rest out compactly.
#[derive(Default)]
struct Builder {
    /// (address, input position, kind) of every entry whose key is an address.
    keyed: Vec<(Ipv4Addr, u32, Kind)>,
    /// (input position, MAC as written) of leases not written canonically.
    spellings: Vec<(u32, Box<str>)>,
    /// Bad entries, in input order.
    bad: Vec<Skipped>,
    /// (key, input position) of marks whose key is not an address: they replace an earlier
    /// bad entry of the same key.
    unkeyed_marks: Vec<(Box<str>, u32)>,
    /// Input position of each of `bad`.
    bad_at: Vec<u32>,
    /// Input position of the next entry.
    next: u32,
}

impl Builder {
    fn push(&mut self, entry: Entry) {
        let at = self.next;
        self.next = self.next.saturating_add(1);
        match entry {
            Entry::Mark(Ok(ip)) => self.keyed.push((ip, at, Kind::Mark)),
            Entry::Mark(Err(key)) => self.unkeyed_marks.push((key, at)),
            Entry::Lease(ip, mac, spelled) => {
                self.keyed.push((ip, at, Kind::Lease(mac)));
                if let Some(text) = spelled {
                    self.spellings.push((at, text));
                }
            }
            Entry::Bad(ip, skipped) => {
                let index = u32::try_from(self.bad.len()).unwrap_or(u32::MAX);
                self.bad.push(skipped);
                self.bad_at.push(at);
                if let Some(ip) = ip {
                    self.keyed.push((ip, at, Kind::Bad(index)));
                }
            }
        }
    }

    fn finish(mut self) -> Allocations {
        // Stable: entries of one address stay in input order, and the last one wins.
        self.keyed.sort_by_key(|(ip, ..)| *ip);
        let mut entries = Vec::with_capacity(self.keyed.len());
        // Input positions of the leases kept, needed only to match spellings.
        let mut winners = Vec::new();
        let mut bad_kept = vec![true; self.bad.len()];
        let mut i = 0;
        while i < self.keyed.len() {
            let ip = self.keyed[i].0;
            let mut last = i;
            while last + 1 < self.keyed.len() && self.keyed[last + 1].0 == ip {
                if let Kind::Bad(b) = self.keyed[last].2 {
                    bad_kept[b as usize] = false;
                }
                last += 1;
            }
            let (_, at, kind) = self.keyed[last];
            if let Kind::Lease(mac) = kind {
                entries.push((ip, mac));
                if !self.spellings.is_empty() {
                    winners.push(at);
                }
            }
            i = last + 1;
        }
        drop(self.keyed);
        // A key that is not an address can repeat too: its last entry wins, and that may be
        // a mark, which is no entry at all.
        if !self.unkeyed_marks.is_empty() || self.bad.len() > 1 {
            let mut unkeyed: Vec<(&str, u32, Option<usize>)> = self
                .unkeyed_marks
                .iter()
                .map(|(key, at)| (&**key, *at, None))
                .collect();
            unkeyed.extend(
                (0..self.bad.len())
                    .filter(|&j| self.bad[j].ip.parse::<Ipv4Addr>().is_err())
                    .map(|j| (self.bad[j].ip.as_str(), self.bad_at[j], Some(j))),
            );
            unkeyed.sort_unstable();
            for pair in unkeyed.windows(2) {
                if let ((k0, _, Some(j)), (k1, ..)) = (pair[0], pair[1])
                    && k0 == k1
                {
                    bad_kept[j] = false;
                }
            }
        }
        let mut kept = bad_kept.iter();
        self.bad.retain(|_| kept.next().copied().unwrap_or(true));
        // Spellings of the leases kept, by address.
        let mut spellings: Vec<(Ipv4Addr, Box<str>)> = Vec::new();
        if !self.spellings.is_empty() {
            let mut by_position: Vec<(u32, Ipv4Addr)> = winners
                .iter()
                .zip(&entries)
                .map(|(at, (ip, _))| (*at, *ip))
                .collect();
            by_position.sort_unstable();
            for (at, text) in self.spellings {
                if let Ok(k) = by_position.binary_search_by_key(&at, |(p, _)| *p) {
                    spellings.push((by_position[k].1, text));
                }
            }
            spellings.sort_by_key(|(ip, _)| *ip);
        }
        entries.shrink_to_fit();
        self.bad.shrink_to_fit();
        Allocations {
            entries,
            spellings,
            bad: self.bad,
        }
    }
}

impl<'de> Deserialize<'de> for Allocations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(AllocationsVisitor)
    }
}

struct AllocationsVisitor;

impl<'de> Visitor<'de> for AllocationsVisitor {
    type Value = Allocations;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of IPv4 address to MAC address")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Allocations, A::Error> {
        let mut builder = Builder::default();
        // Borrowed where the input allows (no escapes), copied otherwise; either way each
        // string lives only until its entry is classified.
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let value = map.next_value::<Text<'de>>()?;
            builder.push(Entry::classify(&key.0, &value.0));
        }
        Ok(builder.finish())
    }
}

/// A string, borrowed from the input when it can be.
struct Text<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(v.to_owned().into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(v.into()))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl Table {
    /// The leases `pool` describes, and the entries that cannot be served. See
    /// [`Table::new`].
    pub fn from_pool(pool: &IPPool) -> (Self, Vec<Skipped>) {
        Self::new(&Allocations::from_pool(pool), &pool.spec.ipv4_config.cidr)
    }

    /// The leases `allocations` describe in the network `cidr` (`spec.ipv4Config.cidr`), and
    /// the entries that cannot be served.
    ///
    /// Marks (`EXCLUDED`, `RESERVED`) are not leases. An entry is skipped, with a reason, when
    /// its key is not an IPv4 address, its value is not a MAC address, or the address is
    /// outside `cidr` (when `cidr` parses). A MAC written against several addresses keeps the
    /// lowest one; the others are skipped. MACs match whatever their spelling (upper case,
    /// dashes), which upstream's exact string match did not.
    pub fn new(allocations: &Allocations, cidr: &str) -> (Self, Vec<Skipped>) {
        let network = cidr.parse::<ipnet::Ipv4Net>().ok();
        let mut skipped = allocations.bad.clone();
        let mut by_mac: Vec<(MacAddr, Ipv4Addr)> = Vec::with_capacity(allocations.len());
        for (ip, mac) in allocations.iter() {
            if let Some(net) = network
                && !net.contains(&ip)
            {
                skipped.push(Skipped {
                    ip: ip.to_string(),
                    mac: allocations.mac_text(ip, mac),
                    reason: format!("outside the pool's network {net}"),
                });
                continue;
            }
            by_mac.push((mac, ip));
        }
        // By MAC, then address: the first of each MAC is its lowest address.
        by_mac.sort_unstable();
        let mut kept = 0;
        for i in 0..by_mac.len() {
            let (mac, ip) = by_mac[i];
            if kept > 0 && by_mac[kept - 1].0 == mac {
                skipped.push(Skipped {
                    ip: ip.to_string(),
                    mac: allocations.mac_text(ip, mac),
                    reason: format!("{mac} already has {}", by_mac[kept - 1].1),
                });
            } else {
                by_mac[kept] = (mac, ip);
                kept += 1;
            }
        }
        by_mac.truncate(kept);
        by_mac.shrink_to_fit();
        (Self { by_mac }, skipped)
    }

    /// The table `leases` holds now: MAC → address of each lease.
    pub fn served_by(leases: &StaticLeases) -> Self {
        let mut by_mac: Vec<(MacAddr, Ipv4Addr)> = leases.snapshot().addrs().collect();
        by_mac.sort_unstable();
        Self { by_mac }
    }

    /// The address of `mac`, if it has one.
    pub fn get(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.by_mac
            .binary_search_by_key(&mac, |(m, _)| *m)
            .ok()
            .map(|i| self.by_mac[i].1)
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    /// Whether there are no leases.
    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// The leases in MAC order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (MacAddr, Ipv4Addr)> + '_ {
        self.by_mac.iter().copied()
    }

    /// What changes when `self` is replaced by `next`.
    pub fn diff(&self, next: &Self) -> Changes {
        let mut changes = Changes::default();
        let (mut old, mut new) = (self.by_mac.iter().peekable(), next.by_mac.iter().peekable());
        // Both are sorted by MAC: one merge pass.
        loop {
            match (old.peek().copied(), new.peek().copied()) {
                (None, None) => break,
                (Some(&(mac, ip)), None) => {
                    changes.removed.push((mac, ip));
                    old.next();
                }
                (None, Some(&(mac, ip))) => {
                    changes.added.push((mac, ip));
                    new.next();
                }
                (Some(&(om, oip)), Some(&(nm, nip))) => match om.cmp(&nm) {
                    std::cmp::Ordering::Less => {
                        changes.removed.push((om, oip));
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        changes.added.push((nm, nip));
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if oip != nip {
                            changes.changed.push((om, oip, nip));
                        }
                        old.next();
                        new.next();
                    }
                },
            }
        }
        changes
    }

    /// Makes `leases` hold exactly this table, in one atomic swap: a request handled at the
    /// same moment sees either the old table or the new one, never a mix.
    pub fn install(&self, leases: &StaticLeases) {
        leases.replace(self.iter().map(|(mac, ip)| (mac, Lease::new(ip))));
    }
}

fn is_mark(value: &str) -> bool {
    vmdhcp_api::status::is_mark(value)
}

/// Whether `text`, a MAC address that parses, is written as the agent prints one
/// (`ca:70:82:e6:84:6e`).
fn is_canonical(text: &str) -> bool {
    text.len() == 17
        && text.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
            }
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    fn pool(allocated: &serde_json::Value) -> IPPool {
        serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net-48", "namespace": "default"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "router": "192.168.48.1",
                "pool": {"start": "192.168.48.81", "end": "192.168.48.90",
                         "exclude": ["192.168.48.81"]}}},
            "status": {"ipv4": {"used": 0, "available": 0, "allocated": allocated}}
        }))
        .expect("fixture IPPool")
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("fixture MAC")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("fixture IP")
    }

    #[test]
    fn marks_are_not_leases_and_macs_are_normalised() {
        let (table, skipped) = Table::from_pool(&pool(&json!({
            "192.168.48.81": "EXCLUDED",
            "192.168.48.77": "RESERVED",
            "192.168.48.83": "CONFLICT",
            "192.168.48.84": "CA-70-82-E6-84-6E",
            "192.168.48.85": "ca:70:82:e6:84:6f",
        })));
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.get(mac("ca:70:82:e6:84:6e")),
            Some(ip("192.168.48.84"))
        );
        assert_eq!(
            table.get(mac("ca:70:82:e6:84:6f")),
            Some(ip("192.168.48.85"))
        );
    }

    #[test]
    fn a_pool_without_status_has_an_empty_table() {
        let mut p = pool(&json!({}));
        p.status = None;
        let (table, skipped) = Table::from_pool(&p);
        assert!(table.is_empty());
        assert!(skipped.is_empty());
    }

    #[test]
    fn bad_entries_are_skipped_with_the_value_named() {
        let (table, skipped) = Table::from_pool(&pool(&json!({
            "192.168.48.84": "not-a-mac",
            "192.168.48.x": "ca:70:82:e6:84:6e",
            "10.0.0.5": "ca:70:82:e6:84:70",
            "192.168.48.86": "ca:70:82:e6:84:71",
        })));
        assert_eq!(table.len(), 1);
        let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("not-a-mac") && r.contains("not a MAC"))
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("192.168.48.x") && r.contains("not an IPv4"))
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("10.0.0.5") && r.contains("outside"))
        );
    }

    #[test]
    fn a_mac_at_two_addresses_keeps_the_lowest_numerically() {
        // "192.168.48.9" sorts after "192.168.48.10" as text; the lower address wins.
        let (table, skipped) = Table::from_pool(&pool(&json!({
            "192.168.48.10": "ca:70:82:e6:84:6e",
            "192.168.48.9": "CA:70:82:E6:84:6E",
        })));
        assert_eq!(
            table.get(mac("ca:70:82:e6:84:6e")),
            Some(ip("192.168.48.9"))
        );
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason.contains("already has 192.168.48.9"));
    }

    #[test]
    fn diff_reports_add_change_remove_and_an_address_moving_between_macs() {
        let (old, _) = Table::from_pool(&pool(&json!({
            "192.168.48.84": "ca:70:82:e6:84:01",
            "192.168.48.85": "ca:70:82:e6:84:02",
            "192.168.48.86": "ca:70:82:e6:84:03",
        })));
        let (new, _) = Table::from_pool(&pool(&json!({
            "192.168.48.84": "ca:70:82:e6:84:04", // .84 moves from :01 to :04
            "192.168.48.87": "ca:70:82:e6:84:02", // :02 changes address
            "192.168.48.86": "ca:70:82:e6:84:03", // unchanged
        })));
        let changes = old.diff(&new);
        assert_eq!(
            changes.removed,
            [(mac("ca:70:82:e6:84:01"), ip("192.168.48.84"))]
        );
        assert_eq!(
            changes.added,
            [(mac("ca:70:82:e6:84:04"), ip("192.168.48.84"))]
        );
        assert_eq!(
            changes.changed,
            [(
                mac("ca:70:82:e6:84:02"),
                ip("192.168.48.85"),
                ip("192.168.48.87")
            )]
        );
        assert!(new.diff(&new).is_empty());
    }

    #[test]
    fn install_replaces_the_whole_server_table() {
        let leases = StaticLeases::new();
        leases.insert(mac("02:00:00:00:00:99"), Lease::new(ip("192.168.48.99")));
        let (table, _) = Table::from_pool(&pool(&json!({"192.168.48.84": "ca:70:82:e6:84:6e"})));
        table.install(&leases);
        assert_eq!(Table::served_by(&leases), table);
        assert_eq!(leases.len(), 1);
        assert_eq!(
            leases.get(mac("ca:70:82:e6:84:6e")).map(|l| l.addr()),
            Some(ip("192.168.48.84"))
        );
        assert!(leases.get(mac("02:00:00:00:00:99")).is_none());
    }

    #[test]
    fn allocations_read_from_json_keep_the_spelling_only_where_needed() {
        let a: Allocations = serde_json::from_value(json!({
            "192.168.48.81": "EXCLUDED",
            "192.168.48.84": "CA-70-82-E6-84-6E",
            "192.168.48.85": "ca:70:82:e6:84:6f",
            "192.168.48.86": "zz",
            "x": "ca:70:82:e6:84:70",
        }))
        .expect("map");
        assert_eq!(a.len(), 2);
        assert_eq!(a.spellings.len(), 1, "only the dashed upper-case MAC");
        assert_eq!(a.bad().len(), 2);
        assert_eq!(
            a.mac_text(ip("192.168.48.84"), mac("ca:70:82:e6:84:6e")),
            "CA-70-82-E6-84-6E"
        );
        assert_eq!(
            a,
            Allocations::from_pool(&pool(&json!({
                "192.168.48.81": "EXCLUDED",
                "192.168.48.84": "CA-70-82-E6-84-6E",
                "192.168.48.85": "ca:70:82:e6:84:6f",
                "192.168.48.86": "zz",
                "x": "ca:70:82:e6:84:70",
            })))
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_the_ippool_type_does() {
        let text = r#"{"192.168.48.84": "CA-70-82-E6-84-01", "192.168.48.84": "ca:70:82:e6:84:02",
            "192.168.48.85": "ca:70:82:e6:84:03", "192.168.48.85": "EXCLUDED",
            "192.168.48.86": "ca:70:82:e6:84:04", "192.168.48.86": "bad",
            "192.168.48.87": "bad", "192.168.48.87": "ca:70:82:e6:84:05",
            "x": "one", "x": "two"}"#;
        let compact: Allocations = serde_json::from_str(text).expect("map");
        let map: std::collections::BTreeMap<String, String> =
            serde_json::from_str(text).expect("map");
        let via_map = Allocations::from_entries(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(compact.entries, via_map.entries);
        assert_eq!(compact.spellings, via_map.spellings);
        let key = |s: &Skipped| (s.ip.clone(), s.mac.clone());
        let mut bad: Vec<_> = compact.bad().iter().map(key).collect();
        bad.sort();
        assert_eq!(
            bad,
            [
                ("192.168.48.86".to_owned(), "bad".to_owned()),
                ("x".to_owned(), "two".to_owned())
            ]
        );
        assert!(
            compact.spellings.is_empty(),
            "the spelled value was replaced"
        );
    }

    /// The table as the agent built it before the compact representation: a `BTreeMap` from
    /// the IPPool's string map. The compact one must agree with it on every input.
    fn reference(pool: &IPPool) -> (BTreeMap<MacAddr, Ipv4Addr>, Vec<String>) {
        let network = pool.spec.ipv4_config.cidr.parse::<ipnet::Ipv4Net>().ok();
        let mut skipped = Vec::new();
        let mut entries = Vec::new();
        for (ip_text, mac_text) in pool.allocated() {
            if is_mark(mac_text) {
                continue;
            }
            let skip = |reason: String| {
                Skipped {
                    ip: ip_text.to_owned(),
                    mac: mac_text.to_owned(),
                    reason,
                }
                .to_string()
            };
            let Ok(ip) = ip_text.parse::<Ipv4Addr>() else {
                skipped.push(skip("not an IPv4 address".into()));
                continue;
            };
            let mac = match mac_text.parse::<vmdhcp_api::MacAddr>() {
                Ok(mac) => MacAddr::from(mac.octets()),
                Err(e) => {
                    skipped.push(skip(format!("not a MAC address ({e})")));
                    continue;
                }
            };
            if let Some(net) = network
                && !net.contains(&ip)
            {
                skipped.push(skip(format!("outside the pool's network {net}")));
                continue;
            }
            entries.push((ip, mac, ip_text, mac_text));
        }
        entries.sort_by_key(|(ip, ..)| *ip);
        let mut by_mac = BTreeMap::new();
        for (ip, mac, ip_text, mac_text) in entries {
            if let Some(first) = by_mac.get(&mac) {
                skipped.push(
                    Skipped {
                        ip: ip_text.to_owned(),
                        mac: mac_text.to_owned(),
                        reason: format!("{mac} already has {first}"),
                    }
                    .to_string(),
                );
            } else {
                by_mac.insert(mac, ip);
            }
        }
        skipped.sort();
        (by_mac, skipped)
    }

    fn reference_diff(
        old: &BTreeMap<MacAddr, Ipv4Addr>,
        new: &BTreeMap<MacAddr, Ipv4Addr>,
    ) -> Changes {
        let mut changes = Changes::default();
        for (mac, old_ip) in old {
            match new.get(mac) {
                None => changes.removed.push((*mac, *old_ip)),
                Some(n) if n != old_ip => changes.changed.push((*mac, *old_ip, *n)),
                Some(_) => {}
            }
        }
        for (mac, n) in new {
            if !old.contains_key(mac) {
                changes.added.push((*mac, *n));
            }
        }
        changes
    }

    /// `allocated` as JSON text, so keys can repeat.
    fn pool_text(entries: &[(String, String)]) -> String {
        let allocated: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}: {}", json!(k), json!(v)))
            .collect();
        format!(
            r#"{{"apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {{"name": "net-48", "namespace": "default"}},
            "spec": {{"networkName": "default/net-48", "ipv4Config": {{
                "cidr": "192.168.48.0/28", "serverIP": "192.168.48.1",
                "pool": {{"start": "192.168.48.2", "end": "192.168.48.14"}}}}}},
            "status": {{"ipv4": {{"used": 0, "available": 0, "allocated": {{{}}}}}}}}}"#,
            allocated.join(", ")
        )
    }

    fn entry() -> impl proptest::strategy::Strategy<Value = (String, String)> {
        use proptest::prelude::*;
        let key = prop_oneof![
            8 => (0u8..20).prop_map(|i| format!("192.168.48.{i}")),
            1 => Just("192.168.49.3".to_owned()),
            1 => Just("192.168.48.x".to_owned()),
        ];
        let value = prop_oneof![
            6 => (0u8..6).prop_map(|i| format!("ca:70:82:e6:84:{i:02x}")),
            2 => (0u8..6).prop_map(|i| format!("CA-70-82-E6-84-{i:02X}")),
            1 => Just("EXCLUDED".to_owned()),
            1 => Just("RESERVED".to_owned()),
            1 => Just("not-a-mac".to_owned()),
        ];
        (key, value)
    }

    proptest::proptest! {
        #[test]
        fn the_compact_table_is_the_reference_table(
            entries in proptest::collection::vec(entry(), 0..40),
            next in proptest::collection::vec(entry(), 0..40),
        ) {
            let text = pool_text(&entries);
            let full: IPPool = serde_json::from_str(&text).expect("IPPool");
            let slim: crate::pool::Pool = serde_json::from_str(&text).expect("Pool");
            let (want, want_skipped) = reference(&full);
            for (table, skipped) in [
                Table::from_pool(&full),
                Table::new(&slim.allocations, &slim.spec.ipv4_config.cidr),
            ] {
                let got: BTreeMap<_, _> = table.iter().collect();
                proptest::prop_assert_eq!(&got, &want);
                let mut skipped: Vec<String> = skipped.iter().map(ToString::to_string).collect();
                skipped.sort();
                proptest::prop_assert_eq!(&skipped, &want_skipped);
            }
            let next_full: IPPool = serde_json::from_str(&pool_text(&next)).expect("IPPool");
            let (want_next, _) = reference(&next_full);
            let (old, _) = Table::from_pool(&full);
            let (new, _) = Table::from_pool(&next_full);
            proptest::prop_assert_eq!(old.diff(&new), reference_diff(&want, &want_next));
        }
    }
}
