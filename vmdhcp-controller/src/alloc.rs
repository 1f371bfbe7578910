//! The controller's cache of rebuilt allocators ([`Allocators`]): a pool's allocator is kept
//! for as long as the pool's `resourceVersion` says nobody else changed it. The allocation rules
//! themselves are [`vmdhcp_api::alloc`], shared with the agent's standalone mode.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use kube::ResourceExt;
use vmdhcp_api::MacAddr;
pub use vmdhcp_api::alloc::{Allocated, Allocator, Request, allocate, release};
use vmdhcp_api::ippool::IPPool;

/// Rebuilt allocators by pool, valid while the pool's UID and `resourceVersion` match; and,
/// for lookups against the watch cache's copy of a pool, an index of that version's
/// allocations by MAC.
#[derive(Debug, Default)]
pub struct Allocators {
    pools: HashMap<(String, String), Cached>,
    views: HashMap<(String, String), View>,
}

/// The allocations of one version of a pool, by MAC.
#[derive(Debug)]
struct View {
    uid: String,
    resource_version: String,
    macs: HashMap<MacAddr, Ipv4Addr>,
}

#[derive(Debug)]
struct Cached {
    uid: String,
    resource_version: String,
    alloc: Allocator,
}

impl Allocators {
    /// Takes the allocator of `pool` out of the cache when it is current, else rebuilds it
    /// from `pool`'s status. Give it back with [`put`](Self::put) after a successful write.
    ///
    /// # Errors
    /// When the pool's spec or status does not rebuild (the message names the entry).
    pub fn take(&mut self, pool: &IPPool) -> Result<Allocator, vmdhcp_api::Error> {
        let key = key(pool);
        if let Some(c) = self.pools.remove(&key)
            && Some(&c.uid) == pool.metadata.uid.as_ref()
            && Some(&c.resource_version) == pool.metadata.resource_version.as_ref()
        {
            return Ok(c.alloc);
        }
        Allocator::rebuild(pool)
    }

    /// Keeps `alloc` as the allocator of `pool` as written (with its new `resourceVersion`).
    pub fn put(&mut self, pool: &IPPool, alloc: Allocator) {
        if let (Some(uid), Some(rv)) = (
            pool.metadata.uid.clone(),
            pool.metadata.resource_version.clone(),
        ) {
            self.pools.insert(
                key(pool),
                Cached {
                    uid,
                    resource_version: rv,
                    alloc,
                },
            );
        }
    }

    /// The address `mac` holds in `pool` as given (typically the watch cache's copy): from the
    /// cached allocator when it is current for that version, else from an index of that
    /// version's allocations, built once per version. Lets a controller that restarts over
    /// thousands of allocated vmnetcfgs confirm each of them without an API call, and without
    /// throwing away an allocator that is newer than the cache.
    pub fn held_in(&mut self, pool: &IPPool, mac: &MacAddr) -> Option<Ipv4Addr> {
        let (uid, rv) = (
            pool.metadata.uid.as_ref()?,
            pool.metadata.resource_version.as_ref()?,
        );
        let key = key(pool);
        if let Some(c) = self.pools.get(&key)
            && c.uid == *uid
            && c.resource_version == *rv
        {
            return c.alloc.address_of(mac);
        }
        let current = self
            .views
            .get(&key)
            .is_some_and(|v| v.uid == *uid && v.resource_version == *rv);
        if !current {
            // A status that does not rebuild has no answer here; the writer reports why.
            let macs = vmdhcp_api::convert::allocations(pool)
                .ok()?
                .into_iter()
                .filter_map(|(ip, m)| m.parse().ok().map(|m| (m, ip)))
                .collect();
            self.views.insert(
                key.clone(),
                View {
                    uid: uid.clone(),
                    resource_version: rv.clone(),
                    macs,
                },
            );
        }
        self.views.get(&key).and_then(|v| v.macs.get(mac).copied())
    }

    /// Forgets `pool` (deleted or paused).
    pub fn forget(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.pools.remove(&key);
        self.views.remove(&key);
    }
}

fn key(pool: &IPPool) -> (String, String) {
    (pool.namespace().unwrap_or_default(), pool.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool of the allocation rules' own tests, with `allocated` entries.
    fn pool(allocated: &[(&str, &str)]) -> IPPool {
        let mut p = IPPool::test("default", "net-48")
            .with_cidr("192.168.48.0/24")
            .with_server("192.168.48.77")
            .with_router("192.168.48.1")
            .with_range("192.168.48.81", "192.168.48.85")
            .with_exclude(&["192.168.48.81"])
            .with_counts(0, 0);
        for (ip, value) in allocated {
            p = p.with_allocated(ip, value);
        }
        p.metadata.uid = Some("u1".into());
        p.metadata.resource_version = Some("7".into());
        p
    }

    fn req(mac: &str) -> Request<'_> {
        Request::new(mac).expect("mac")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_cache_is_used_only_while_the_resource_version_matches() {
        let mut p = pool(&[]);
        let mut cache = Allocators::default();
        let mut ipam = cache.take(&p).expect("rebuilds");
        allocate(&mut p, &mut ipam, &req("aa:aa:aa:aa:aa:01")).expect("allocates");
        p.metadata.resource_version = Some("8".into());
        cache.put(&p, ipam);
        assert_eq!(cache.take(&p).expect("cached").ipam.used(), 1);
        cache.put(&p, Allocator::rebuild(&p).expect("rebuilds"));
        let mac: MacAddr = "aa:aa:aa:aa:aa:01".parse().expect("mac");
        assert_eq!(
            cache.held_in(&p, &mac),
            Some(ip("192.168.48.82")),
            "a reconcile with nothing to change needs no API call"
        );
        // Someone else wrote the pool: the status, not the cache, is the truth.
        let mut theirs = pool(&[]);
        theirs.metadata.resource_version = Some("9".into());
        assert_eq!(cache.held_in(&theirs, &mac), None);
        let mut moved = pool(&[("192.168.48.85", "AA:AA:AA:AA:AA:01")]);
        moved.metadata.resource_version = Some("10".into());
        assert_eq!(
            cache.held_in(&moved, &mac),
            Some(ip("192.168.48.85")),
            "answered from that version's status"
        );
        assert_eq!(
            cache.held_in(&p, &mac),
            Some(ip("192.168.48.82")),
            "looking at another version did not throw away the allocator this process wrote"
        );
        assert_eq!(cache.take(&theirs).expect("rebuilt").ipam.used(), 0);
        let mut unknown = p.clone();
        unknown.metadata.resource_version = None;
        assert_eq!(cache.held_in(&unknown, &mac), None, "no version, no answer");
    }
}
