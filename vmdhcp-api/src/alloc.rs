//! Address allocation for a pool's NICs, pure, as the controller does it and the agent's
//! standalone mode does it for the vmnetcfgs in its file (so "as the controller would" holds by
//! construction). The allocator is rebuilt from the IPPool's `status.ipv4.allocated` (the only
//! record that survives a restart, so the state after a restart is the state before it); each
//! allocation or release edits that status and the allocator together.
//!
//! ```
//! use vmdhcp_api::alloc::{Allocator, Request, allocate};
//! use vmdhcp_api::ippool::IPPool;
//!
//! let mut pool: IPPool = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
//!     "metadata": {"name": "net-a", "namespace": "default"},
//!     "spec": {"networkName": "default/net-a", "ipv4Config": {
//!         "cidr": "10.0.0.0/24", "serverIP": "10.0.0.2", "router": "10.0.0.1",
//!         "pool": {"start": "10.0.0.10", "end": "10.0.0.20"}}}
//! }))?;
//! let mut alloc = Allocator::rebuild(&pool)?;
//! let mac = "52:54:00:00:00:01";
//! let req = Request { mac_text: mac, mac: mac.parse()?, desired: None, previous: None };
//! let got = allocate(&mut pool, &mut alloc, &req)?;
//! assert_eq!(got.ip.to_string(), "10.0.0.10");
//! assert_eq!(pool.allocated().find(|(ip, _)| *ip == "10.0.0.10").map(|(_, m)| m), Some(mac));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipam::Strategy;

use crate::MacAddr;
use crate::ippool::IPPool;
use crate::message::UpstreamError;

/// A NIC's address request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The MAC as written in the vmnetcfg (written into the pool status as is, like upstream).
    pub mac_text: &'a str,
    /// The MAC, parsed.
    pub mac: MacAddr,
    /// `spec.networkConfigs[].ipAddress`: this address or an error.
    pub desired: Option<Ipv4Addr>,
    /// The address the vmnetcfg status last recorded for this MAC (resume after a pause):
    /// preferred, but another free address is fine when it was taken meanwhile.
    pub previous: Option<Ipv4Addr>,
}

impl<'a> Request<'a> {
    /// A request for the MAC `mac_text` with no desired and no previous address.
    ///
    /// ```
    /// let req = vmdhcp_api::alloc::Request::new("52-54-00-00-00-01")?;
    /// assert_eq!(req.mac.to_string(), "52:54:00:00:00:01");
    /// assert_eq!(req.mac_text, "52-54-00-00-00-01");
    /// # Ok::<(), vmdhcp_api::Error>(())
    /// ```
    ///
    /// # Errors
    /// When `mac_text` is not a MAC address (the error names it).
    pub fn new(mac_text: &'a str) -> Result<Self, crate::Error> {
        Ok(Self {
            mac_text,
            mac: mac_text.parse()?,
            desired: None,
            previous: None,
        })
    }
}

/// What [`allocate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// The NIC's address.
    pub ip: Ipv4Addr,
    /// Whether the pool status changed (a new allocation rather than the MAC's existing one).
    pub new: bool,
}

/// A pool's allocator with an index of its allocations by MAC, both rebuilt from the status.
#[derive(Debug, Clone)]
pub struct Allocator {
    /// The addresses.
    pub ipam: ipam::Pool,
    /// Allocations by MAC (any spelling in the status, parsed).
    macs: HashMap<MacAddr, Ipv4Addr>,
}

impl Allocator {
    /// Rebuilds the allocator of `pool` from its spec and `status.ipv4.allocated`.
    ///
    /// # Errors
    /// When the spec or an allocation entry does not rebuild (the message names it).
    pub fn rebuild(pool: &IPPool) -> Result<Self, crate::Error> {
        let ipam = crate::convert::to_ipam_pool(pool)?;
        let macs = crate::convert::allocations(pool)?
            .into_iter()
            .filter_map(|(ip, mac)| mac.parse().ok().map(|m| (m, ip)))
            .collect();
        Ok(Self { ipam, macs })
    }

    /// The address `mac` holds, if any.
    pub fn address_of(&self, mac: &MacAddr) -> Option<Ipv4Addr> {
        self.macs.get(mac).copied()
    }
}

/// Gives `req` its address in `pool`: the one its MAC already holds (idempotent per MAC,
/// whatever the MAC's spelling; moved when the desired address changed), else the desired
/// one, else the previous one if still free,
/// else the lowest free address. Records a new allocation in `pool`'s status and `ipam`.
///
/// # Errors
/// Upstream's messages: the desired address is outside the subnet, the broadcast address, or
/// taken; the pool is exhausted. A desired
/// address in the subnet but outside the range or reserved gets `ipam`'s message naming why
/// (upstream said "no more ip addresses left", which sent users looking for a full pool).
pub fn allocate(
    pool: &mut IPPool,
    alloc: &mut Allocator,
    req: &Request<'_>,
) -> Result<Allocated, String> {
    let network = &pool.spec.network_name;
    let ipam = &mut alloc.ipam;
    if let Some(held) = alloc.macs.get(&req.mac).copied() {
        let Some(want) = req.desired.filter(|want| *want != held) else {
            return Ok(Allocated {
                ip: held,
                new: false,
            });
        };
        // The desired address changed: move in one status write. Upstream answered "desired
        // IP changed ... waiting for sync" and relied on its sync handler to release the old
        // one, which never happened when the vmnetcfg status did not list it.
        ipam.allocate_specific(want)
            .map_err(|e| designated_error(want, ipam, &e))?;
        let _ = ipam.release(held);
        alloc.macs.insert(req.mac, want);
        let status = pool.status.get_or_insert_with(Default::default);
        crate::status::release_allocation(status, held);
        crate::status::record_allocation(status, want, req.mac_text);
        return Ok(Allocated {
            ip: want,
            new: true,
        });
    }
    let ip = if let Some(want) = req.desired {
        ipam.allocate_specific(want)
            .map_err(|e| designated_error(want, ipam, &e))?;
        want
    } else {
        let strategy = req
            .previous
            .map_or(Strategy::LowestFree, Strategy::Preferred);
        ipam.allocate(strategy).map_err(|e| match e {
            ipam::Error::Exhausted { .. } => UpstreamError::NoMoreAddresses {
                network: network.clone(),
            }
            .to_string(),
            other => other.to_string(),
        })?
    };
    alloc.macs.insert(req.mac, ip);
    let status = pool.status.get_or_insert_with(Default::default);
    crate::status::record_allocation(status, ip, req.mac_text);
    Ok(Allocated { ip, new: true })
}

fn designated_error(ip: Ipv4Addr, ipam: &ipam::Pool, e: &ipam::Error) -> String {
    let net = ipam.network();
    match e {
        ipam::Error::OutsideNetwork { .. } => UpstreamError::DesignatedNotInSubnet {
            ip: ip.to_string(),
            network: net.network().to_string(),
            prefix_len: net.prefix_len(),
        }
        .to_string(),
        ipam::Error::BroadcastAddress { .. } => UpstreamError::DesignatedIsBroadcast {
            ip: ip.to_string(),
            broadcast: net.broadcast().to_string(),
        }
        .to_string(),
        ipam::Error::AlreadyAllocated { .. } => {
            UpstreamError::DesignatedAllocated { ip: ip.to_string() }.to_string()
        }
        other => format!("designated ip {ip}: {other}"),
    }
}

/// Releases the allocation of `ip` if it belongs to `mac` (never another MAC's, never a mark).
/// Returns whether the status changed.
pub fn release(pool: &mut IPPool, alloc: &mut Allocator, ip: Ipv4Addr, mac: &MacAddr) -> bool {
    if alloc.macs.get(mac) != Some(&ip) {
        return false;
    }
    alloc.macs.remove(mac);
    let _ = alloc.ipam.release(ip);
    pool.status
        .as_mut()
        .is_some_and(|s| crate::status::release_allocation(s, ip))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pool(allocated: &serde_json::Value) -> IPPool {
        serde_json::from_value(json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net-48", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "router": "192.168.48.1",
                "pool": {"start": "192.168.48.81", "end": "192.168.48.85", "exclude": ["192.168.48.81"]}}},
            "status": {"ipv4": {"used": 0, "available": 0, "allocated": allocated}}
        }))
        .expect("fixture")
    }

    fn req(mac: &str) -> Request<'_> {
        Request::new(mac).expect("mac")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn lowest_free_then_idempotent_per_mac_in_any_spelling() {
        let mut p = pool(&json!({"192.168.48.81": "EXCLUDED"}));
        let mut ipam = Allocator::rebuild(&p).expect("rebuilds");
        let a = allocate(&mut p, &mut ipam, &req("aa:aa:aa:aa:aa:01")).expect("allocates");
        assert_eq!(
            a,
            Allocated {
                ip: ip("192.168.48.82"),
                new: true
            }
        );
        let again = allocate(&mut p, &mut ipam, &req("AA-AA-AA-AA-AA-01")).expect("same MAC");
        assert_eq!(
            again,
            Allocated {
                ip: ip("192.168.48.82"),
                new: false
            }
        );
        let b = allocate(&mut p, &mut ipam, &req("aa:aa:aa:aa:aa:02")).expect("allocates");
        assert_eq!(b.ip, ip("192.168.48.83"));
        assert_eq!(
            p.allocated()
                .find(|(k, _)| *k == "192.168.48.82")
                .map(|(_, v)| v),
            Some("aa:aa:aa:aa:aa:01")
        );
    }

    #[test]
    fn desired_addresses_and_upstreams_errors() {
        let mut p = pool(&json!({"192.168.48.84": "aa:aa:aa:aa:aa:09"}));
        let mut ipam = Allocator::rebuild(&p).expect("rebuilds");
        let mut r = req("aa:aa:aa:aa:aa:01");
        r.desired = Some(ip("192.168.48.85"));
        assert_eq!(
            allocate(&mut p, &mut ipam, &r).expect("free").ip,
            ip("192.168.48.85")
        );
        let mut r2 = req("aa:aa:aa:aa:aa:02");
        r2.desired = Some(ip("192.168.48.84"));
        assert_eq!(
            allocate(&mut p, &mut ipam, &r2).expect_err("taken"),
            "designated ip 192.168.48.84 is already allocated"
        );
        r2.desired = Some(ip("10.0.0.1"));
        assert_eq!(
            allocate(&mut p, &mut ipam, &r2).expect_err("outside"),
            "designated ip 10.0.0.1 is not in subnet 192.168.48.0/24"
        );
        r2.desired = Some(ip("192.168.48.81"));
        let reserved = allocate(&mut p, &mut ipam, &r2).expect_err("excluded");
        assert!(
            reserved.starts_with("designated ip 192.168.48.81: "),
            "{reserved}"
        );
        // A changed desire moves the MAC in one write; a taken one keeps it where it is.
        r.desired = Some(ip("192.168.48.83"));
        assert_eq!(
            allocate(&mut p, &mut ipam, &r).expect("moved"),
            Allocated {
                ip: ip("192.168.48.83"),
                new: true
            }
        );
        assert!(
            p.allocated().all(|(k, _)| k != "192.168.48.85"),
            "the old address is free again"
        );
        assert_eq!(ipam.address_of(&r.mac), Some(ip("192.168.48.83")));
        r.desired = Some(ip("192.168.48.84"));
        assert_eq!(
            allocate(&mut p, &mut ipam, &r).expect_err("taken"),
            "designated ip 192.168.48.84 is already allocated"
        );
        assert_eq!(ipam.address_of(&r.mac), Some(ip("192.168.48.83")));
    }

    #[test]
    fn exhaustion_names_the_network_and_a_taken_previous_address_falls_back() {
        let mut p = pool(&json!({}));
        let mut ipam = Allocator::rebuild(&p).expect("rebuilds");
        let mut r = req("aa:aa:aa:aa:aa:01");
        r.previous = Some(ip("192.168.48.84"));
        assert_eq!(
            allocate(&mut p, &mut ipam, &r).expect("preferred").ip,
            ip("192.168.48.84")
        );
        let mut r2 = req("aa:aa:aa:aa:aa:02");
        r2.previous = Some(ip("192.168.48.84"));
        assert_ne!(
            allocate(&mut p, &mut ipam, &r2).expect("another").ip,
            ip("192.168.48.84")
        );
        for m in ["aa:aa:aa:aa:aa:03", "aa:aa:aa:aa:aa:04"] {
            allocate(&mut p, &mut ipam, &req(m)).expect("room left");
        }
        assert_eq!(
            allocate(&mut p, &mut ipam, &req("aa:aa:aa:aa:aa:05")).expect_err("full"),
            "no more ip addresses left in network default/net-48 ipam"
        );
    }

    #[test]
    fn release_only_frees_the_macs_own_address() {
        let mut p =
            pool(&json!({"192.168.48.82": "aa:aa:aa:aa:aa:01", "192.168.48.81": "EXCLUDED"}));
        let mut ipam = Allocator::rebuild(&p).expect("rebuilds");
        let other: MacAddr = "aa:aa:aa:aa:aa:02".parse().expect("mac");
        assert!(!release(&mut p, &mut ipam, ip("192.168.48.82"), &other));
        assert!(!release(&mut p, &mut ipam, ip("192.168.48.81"), &other));
        let own: MacAddr = "AA:AA:AA:AA:AA:01".parse().expect("mac");
        assert!(release(&mut p, &mut ipam, ip("192.168.48.82"), &own));
        assert_eq!(ipam.ipam.used(), 0);
        assert_eq!(p.allocated().count(), 1, "the mark stays");
    }
}
