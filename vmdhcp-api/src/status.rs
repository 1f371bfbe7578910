//! IPPool status bookkeeping: counters, marks and allocation records, as upstream writes them
//! (docs/upstream-compat.md, "Status contents").
//!
//! Every function changes a status in place and returns whether it changed anything, so the
//! caller writes the status only when needed (and sets `lastUpdate` with [`touch`], which
//! upstream does whenever it writes).

use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::consts::{MARK_CONFLICT, MARK_EXCLUDED, MARK_RESERVED};
use crate::ippool::{IPPoolStatus, IPv4Config, IPv4Status};

/// Whether an `allocated` value is a mark ([`EXCLUDED`](MARK_EXCLUDED),
/// [`RESERVED`](MARK_RESERVED), [`CONFLICT`](MARK_CONFLICT)) rather than a MAC address: what
/// every reader of `allocated` skips when it looks for allocations.
///
/// ```
/// use vmdhcp_api::status::is_mark;
/// assert!(is_mark("EXCLUDED") && is_mark("RESERVED") && is_mark("CONFLICT"));
/// assert!(!is_mark("ca:70:82:e6:84:6e"));
/// ```
pub fn is_mark(value: &str) -> bool {
    value == MARK_EXCLUDED || value == MARK_RESERVED || value == MARK_CONFLICT
}

/// Sets `used`/`available` from the allocator and makes sure `allocated` carries the marks:
/// `RESERVED` for the server and the router when inside the pool's range, `EXCLUDED` for every
/// exclusion (in the range or not). Keys are the spec's strings, as upstream writes them.
/// Marks are never removed, as upstream (a mark whose reason went away is harmless: marks
/// are skipped when the pool is rebuilt). A [`CONFLICT`](MARK_CONFLICT) mark is neither added
/// nor replaced here: only the operator removes it.
///
/// Upstream's accounting and `ipam`'s agree: an allocation is `used`, a free address of the
/// range is `available`, and a reserved address of the range counts as neither.
///
/// ```
/// use vmdhcp_api::ippool::{IPPoolStatus, IPv4Config};
/// use vmdhcp_api::status::refresh_ipv4;
///
/// let cfg: IPv4Config = serde_json::from_value(serde_json::json!({
///     "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "router": "192.168.48.1",
///     "pool": {"start": "192.168.48.81", "end": "192.168.48.90",
///              "exclude": ["192.168.48.81", "192.168.48.90"]}}))?;
/// let mut pool = ipam::Pool::new("192.168.48.0/24".parse()?, "192.168.48.81".parse()?, "192.168.48.90".parse()?)?;
/// for ip in ["192.168.48.77", "192.168.48.1", "192.168.48.81", "192.168.48.90"] {
///     pool.reserve(ip.parse()?)?;
/// }
/// pool.allocate_specific("192.168.48.84".parse()?)?;
///
/// let mut status = IPPoolStatus::default();
/// assert!(refresh_ipv4(&mut status, &cfg, &pool));
/// let v4 = status.ipv4.as_ref().unwrap();
/// assert_eq!((v4.used, v4.available), (1, 7));
/// assert_eq!(v4.allocated.len(), 2); // .81 and .90 EXCLUDED; server and router are outside the range
/// assert!(!refresh_ipv4(&mut status, &cfg, &pool));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn refresh_ipv4(status: &mut IPPoolStatus, spec: &IPv4Config, pool: &ipam::Pool) -> bool {
    // O(marks), not O(allocations): this runs on every allocation of pools with thousands.
    let mut changed = status.ipv4.is_none();
    let v4 = status.ipv4.get_or_insert_with(IPv4Status::default);
    let (used, available) = (i64::from(pool.used()), i64::from(pool.available()));
    changed |= v4.used != used || v4.available != available;
    v4.used = used;
    v4.available = available;
    let in_range = |s: &str| s.parse::<Ipv4Addr>().is_ok_and(|ip| pool.in_range(ip));
    // The mark each address ends with, decided before anything is written: an address that is
    // both reserved (server or router in the range) and excluded ends EXCLUDED, as upstream's
    // final state has it. Writing RESERVED and then EXCLUDED would report a change on every
    // call and make every pass write the status.
    let mut marks: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for reserved in std::iter::once(spec.server_ip.as_str()).chain(spec.router.as_deref()) {
        if in_range(reserved) {
            marks.insert(reserved, MARK_RESERVED);
        }
    }
    for exclude in spec.pool.excludes() {
        marks.insert(exclude, MARK_EXCLUDED);
    }
    for (ip, value) in marks {
        let current = v4.allocated.get(ip).map(String::as_str);
        if current != Some(value) && current != Some(MARK_CONFLICT) {
            v4.allocated.insert(ip.to_owned(), value.to_owned());
            changed = true;
        }
    }
    changed
}

/// Records `allocated[ip] = mac`. Returns whether it changed anything.
///
/// ```
/// use vmdhcp_api::ippool::IPPoolStatus;
/// use vmdhcp_api::status::{record_allocation, release_allocation};
///
/// let mut status = IPPoolStatus::default();
/// assert!(record_allocation(&mut status, "10.0.0.5".parse().unwrap(), "aa:bb:cc:dd:ee:ff"));
/// assert!(!record_allocation(&mut status, "10.0.0.5".parse().unwrap(), "aa:bb:cc:dd:ee:ff"));
/// assert!(release_allocation(&mut status, "10.0.0.5".parse().unwrap()));
/// ```
pub fn record_allocation(status: &mut IPPoolStatus, ip: Ipv4Addr, mac: &str) -> bool {
    let v4 = status.ipv4.get_or_insert_with(IPv4Status::default);
    v4.allocated
        .insert(ip.to_string(), mac.to_owned())
        .as_deref()
        != Some(mac)
}

/// Removes the allocation record of `ip` (never a mark). Returns whether it removed one.
pub fn release_allocation(status: &mut IPPoolStatus, ip: Ipv4Addr) -> bool {
    let Some(v4) = status.ipv4.as_mut() else {
        return false;
    };
    let before = v4.allocated.len();
    v4.allocated
        .retain(|k, v| is_mark(v) || k.parse() != Ok(ip));
    v4.allocated.len() != before
}

/// Replaces the allocation of `ip` by `mac` with the [`CONFLICT`](MARK_CONFLICT) mark: the
/// address stays used but belongs to nobody. Nothing changes when `allocated` does not map
/// `ip` to `mac` (in any spelling): the entry moved, was released or is already marked.
/// Returns whether it changed anything.
///
/// ```
/// use vmdhcp_api::ippool::IPPoolStatus;
/// use vmdhcp_api::status::{mark_conflict, record_allocation};
///
/// let mut status = IPPoolStatus::default();
/// let ip = "10.0.0.5".parse().unwrap();
/// record_allocation(&mut status, ip, "AA-BB-CC-DD-EE-FF");
/// let mac = "aa:bb:cc:dd:ee:ff".parse().unwrap();
/// assert!(mark_conflict(&mut status, ip, &mac));
/// assert_eq!(status.ipv4.as_ref().unwrap().allocated["10.0.0.5"], "CONFLICT");
/// assert!(!mark_conflict(&mut status, ip, &mac), "already marked");
/// ```
pub fn mark_conflict(status: &mut IPPoolStatus, ip: Ipv4Addr, mac: &crate::MacAddr) -> bool {
    let Some(v4) = status.ipv4.as_mut() else {
        return false;
    };
    // Keys are written as `Ipv4Addr` prints them; look for any spelling all the same.
    let key = v4.allocated.iter().find_map(|(k, v)| {
        (k.parse() == Ok(ip) && v.parse::<crate::MacAddr>().is_ok_and(|m| m == *mac))
            .then(|| k.clone())
    });
    match key {
        Some(key) => {
            v4.allocated.insert(key, MARK_CONFLICT.to_owned());
            true
        }
        None => false,
    }
}

/// Sets `lastUpdate` to `now` (Go's `metav1.Now()`; serialised with whole seconds).
pub fn touch(status: &mut IPPoolStatus, now: Timestamp) {
    status.last_update = Some(Time(now));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ippool::IPPool;

    fn pool() -> IPPool {
        IPPool::test("default", "net")
            .with_cidr("10.0.0.0/24")
            .with_server("10.0.0.12")
            .with_router("10.0.0.1")
            .with_range("10.0.0.10", "10.0.0.20")
            .with_exclude(&["10.0.0.15", "10.0.0.200"])
    }

    #[test]
    fn marks_follow_upstream_and_are_never_removed() {
        let p = pool().with_allocated("10.0.0.99", MARK_EXCLUDED);
        let ipam = crate::convert::to_ipam_pool(&p).unwrap();
        let mut status = p.status.clone().unwrap();
        assert!(refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam));
        let v4 = status.ipv4.unwrap();
        let marks: Vec<(&str, &str)> = v4
            .allocated
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            marks,
            [
                ("10.0.0.12", "RESERVED"),  // server, in range
                ("10.0.0.15", "EXCLUDED"),  // exclusion in range
                ("10.0.0.200", "EXCLUDED"), // exclusion outside the range: marked all the same
                ("10.0.0.99", "EXCLUDED"),  // stale mark: kept
            ]
        );
        // Router 10.0.0.1 is outside the range: no mark; 11 addresses - server - .15 = 9 free.
        assert_eq!((v4.used, v4.available), (0, 9));
    }

    #[test]
    fn an_excluded_router_in_the_range_settles_as_excluded() {
        let p = pool().with_router("10.0.0.11").with_exclude(&["10.0.0.11"]);
        let ipam = crate::convert::to_ipam_pool(&p).unwrap();
        let mut status = IPPoolStatus::default();
        assert!(refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam));
        let v4 = status.ipv4.as_ref().unwrap();
        assert_eq!(
            v4.allocated.get("10.0.0.11").map(String::as_str),
            Some("EXCLUDED")
        );
        assert!(
            !refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam),
            "a second pass changes nothing (no status write loop)"
        );
    }

    #[test]
    fn counters_follow_the_allocator() {
        let p = pool();
        let mut ipam = crate::convert::to_ipam_pool(&p).unwrap();
        let mut status = IPPoolStatus::default();
        refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam);
        ipam.allocate(ipam::Strategy::LowestFree).unwrap();
        assert!(refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam));
        let v4 = status.ipv4.as_ref().unwrap();
        assert_eq!((v4.used, v4.available), (1, 8));
        assert!(!refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam));
    }

    #[test]
    fn allocation_records_never_touch_marks() {
        let mut status = IPPoolStatus::default();
        assert!(record_allocation(
            &mut status,
            "10.0.0.11".parse().unwrap(),
            "aa:bb:cc:dd:ee:ff"
        ));
        assert!(record_allocation(
            &mut status,
            "10.0.0.11".parse().unwrap(),
            "aa:bb:cc:dd:ee:00"
        ));
        status
            .ipv4
            .as_mut()
            .unwrap()
            .allocated
            .insert("10.0.0.15".into(), MARK_EXCLUDED.into());
        assert!(!release_allocation(
            &mut status,
            "10.0.0.15".parse().unwrap()
        ));
        assert!(release_allocation(
            &mut status,
            "10.0.0.11".parse().unwrap()
        ));
        assert!(!release_allocation(
            &mut status,
            "10.0.0.11".parse().unwrap()
        ));
        assert_eq!(status.ipv4.unwrap().allocated.len(), 1);
        assert!(!release_allocation(
            &mut IPPoolStatus::default(),
            "10.0.0.1".parse().unwrap()
        ));
    }

    #[test]
    fn conflict_marks_are_kept_by_refresh_and_release_and_need_the_holder() {
        let ip: Ipv4Addr = "10.0.0.11".parse().unwrap();
        let mac: crate::MacAddr = "aa:bb:cc:dd:ee:ff".parse().unwrap();
        let other: crate::MacAddr = "aa:bb:cc:dd:ee:00".parse().unwrap();
        let mut status = IPPoolStatus::default();
        assert!(
            !mark_conflict(&mut status, ip, &mac),
            "no status, nothing to mark"
        );
        record_allocation(&mut status, ip, "aa:bb:cc:dd:ee:ff");
        assert!(
            !mark_conflict(&mut status, ip, &other),
            "another MAC's address"
        );
        assert!(!mark_conflict(
            &mut status,
            "10.0.0.12".parse().unwrap(),
            &mac
        ));
        assert!(mark_conflict(&mut status, ip, &mac));
        assert!(
            !release_allocation(&mut status, ip),
            "a mark is not released"
        );
        let p = pool().with_exclude(&["10.0.0.15", "10.0.0.200", "10.0.0.11"]);
        let ipam = crate::convert::to_ipam_pool(&p).unwrap();
        refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam);
        assert_eq!(
            status.ipv4.as_ref().unwrap().allocated["10.0.0.11"],
            MARK_CONFLICT,
            "refresh neither replaces nor removes a conflict mark"
        );
        assert!(!refresh_ipv4(&mut status, &p.spec.ipv4_config, &ipam));
    }

    #[test]
    fn touch_serialises_like_metav1_time() {
        let mut status = IPPoolStatus::default();
        touch(&mut status, "2024-03-01T10:20:30.123456Z".parse().unwrap());
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"lastUpdate": "2024-03-01T10:20:30Z"})
        );
    }
}
