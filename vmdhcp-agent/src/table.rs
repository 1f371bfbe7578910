//! The lease table an IPPool describes: `status.ipv4.allocated` (IP → MAC) turned around into
//! MAC → IP, with MACs normalised. Pure: the agent builds a [`Table`] from every IPPool it sees
//! and swaps it into the server whole, so an address that moves to another MAC moves its lease
//! in the same step (upstream kept the old MAC's lease and gave the new MAC none).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use dhcp_server::{Lease, MacAddr, StaticLeases};
use vmdhcp_api::ippool::IPPool;

/// MAC → address, in MAC order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    by_mac: BTreeMap<MacAddr, Ipv4Addr>,
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

impl Table {
    /// The leases `pool` describes, and the entries that cannot be served.
    ///
    /// Marks (`EXCLUDED`, `RESERVED`) are not leases. An entry is skipped, with a reason, when
    /// its key is not an IPv4 address, its value is not a MAC address, or the address is
    /// outside `spec.ipv4Config.cidr`. A MAC written against several addresses keeps the
    /// lowest one; the others are skipped. MACs match whatever their spelling (upper case,
    /// dashes), which upstream's exact string match did not.
    pub fn from_pool(pool: &IPPool) -> (Self, Vec<Skipped>) {
        let network = pool.spec.ipv4_config.cidr.parse::<ipnet::Ipv4Net>().ok();
        let mut skipped = Vec::new();
        let mut entries: Vec<(Ipv4Addr, MacAddr, &str, &str)> = Vec::new();
        for (ip_text, mac_text) in pool.allocated() {
            if is_mark(mac_text) {
                continue;
            }
            let skip = |reason: String| Skipped {
                ip: ip_text.to_owned(),
                mac: mac_text.to_owned(),
                reason,
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
                skipped.push(Skipped {
                    ip: ip_text.to_owned(),
                    mac: mac_text.to_owned(),
                    reason: format!("{mac} already has {first}"),
                });
            } else {
                by_mac.insert(mac, ip);
            }
        }
        (Self { by_mac }, skipped)
    }

    /// The address of `mac`, if it has one.
    pub fn get(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.by_mac.get(&mac).copied()
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
    pub fn iter(&self) -> impl Iterator<Item = (MacAddr, Ipv4Addr)> + '_ {
        self.by_mac.iter().map(|(m, ip)| (*m, *ip))
    }

    /// What changes when `self` is replaced by `next`.
    pub fn diff(&self, next: &Self) -> Changes {
        let mut changes = Changes::default();
        for (mac, old) in self.iter() {
            match next.get(mac) {
                None => changes.removed.push((mac, old)),
                Some(new) if new != old => changes.changed.push((mac, old, new)),
                Some(_) => {}
            }
        }
        for (mac, new) in next.iter() {
            if self.get(mac).is_none() {
                changes.added.push((mac, new));
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
    value == vmdhcp_api::consts::MARK_EXCLUDED || value == vmdhcp_api::consts::MARK_RESERVED
}

#[cfg(test)]
mod tests {
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
        assert_eq!(leases.len(), 1);
        assert_eq!(
            leases.get(mac("ca:70:82:e6:84:6e")).map(|l| l.addr()),
            Some(ip("192.168.48.84"))
        );
        assert!(leases.get(mac("02:00:00:00:00:99")).is_none());
    }
}
