//! IPPool status bookkeeping: counters, marks and allocation records, as upstream writes them
//! (spec/upstream.md §3.3 `OnChange` steps 6–8, §3.9).
//!
//! Every function changes a status in place and returns whether it changed anything, so the
//! caller writes the status only when needed (and sets `lastUpdate` with [`touch`], which
//! upstream does whenever it writes).

use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::consts::{MARK_EXCLUDED, MARK_RESERVED};
use crate::ippool::{IPPoolStatus, IPv4Config, IPv4Status};

/// Sets `used`/`available` from the allocator and makes sure `allocated` carries the marks:
/// `RESERVED` for the server and the router when inside the pool's range, `EXCLUDED` for every
/// exclusion (in the range or not). Keys are the spec's strings, as upstream writes them.
/// Marks are never removed, as upstream (a mark whose reason went away is harmless: marks
/// are skipped when the pool is rebuilt).
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
    let before = status.ipv4.clone();
    let v4 = status.ipv4.get_or_insert_with(IPv4Status::default);
    v4.used = pool.used().into();
    v4.available = pool.available().into();
    let in_range = |s: &str| s.parse::<Ipv4Addr>().is_ok_and(|ip| pool.in_range(ip));
    for reserved in std::iter::once(spec.server_ip.as_str()).chain(spec.router.as_deref()) {
        if in_range(reserved) {
            v4.allocated
                .insert(reserved.to_owned(), MARK_RESERVED.to_owned());
        }
    }
    for exclude in spec.pool.excludes() {
        v4.allocated
            .insert(exclude.clone(), MARK_EXCLUDED.to_owned());
    }
    status.ipv4 != before
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
        .retain(|k, v| v == MARK_EXCLUDED || v == MARK_RESERVED || k.parse() != Ok(ip));
    v4.allocated.len() != before
}

/// Sets `lastUpdate` to `now` (Go's `metav1.Now()`; serialised with whole seconds).
pub fn touch(status: &mut IPPoolStatus, now: Timestamp) {
    status.last_update = Some(Time(now));
}
