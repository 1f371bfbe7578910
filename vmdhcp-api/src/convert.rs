//! Conversions of an IPPool into what the controller and the agent work with: an
//! [`ipam::Pool`] rebuilt from spec and status, and the DHCP options of its leases.
//!
//! The DHCP options are a plain typed struct ([`LeaseOptions`]) rather than the `dhcp-server`
//! crate's configuration type, so that this crate does not depend on the server; the agent maps
//! one onto the other.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::Error;
use crate::addr::{field, indexed, parse_cidr, parse_ip};
use crate::consts::{DEFAULT_LEASE_TIME_SECS, MARK_CONFLICT};
use crate::ippool::{IPPool, IPv4Config};
use crate::status::is_mark;
use crate::validate::{MAX_LEASE_TIME_SECS, is_dns_name};

/// Rebuilds the allocator of a pool from its spec and status, as upstream's `BuildCache`:
/// the range `[pool.start, pool.end]` in `cidr`; the server, router and every exclusion
/// reserved; every `status.ipv4.allocated` entry that is not a mark ([`is_mark`]) allocated
/// again; every `CONFLICT` mark in the range allocated too (the address counts as used and is
/// never handed out), unless the spec reserves it already.
///
/// Reservations that do not parse or lie outside the network are skipped, as upstream's
/// string-keyed revoke silently did: they can never be handed out anyway, and failing would
/// stop serving a pool that upstream served. So are `CONFLICT` marks that do not parse or lie
/// outside the range.
///
/// # Errors
/// [`Error::InvalidCidr`] / [`Error::InvalidIp`] for `cidr`, `pool.start`, `pool.end`;
/// [`Error::Ipam`] when `ipam` rejects the range; [`Error::BadAllocation`] naming the first
/// allocation that does not parse, lies outside the range, hits a reservation or repeats.
///
/// ```
/// use vmdhcp_api::convert::to_ipam_pool;
/// use vmdhcp_api::ippool::IPPool;
///
/// let pool: IPPool = serde_json::from_value(serde_json::json!({
///     "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
///     "metadata": {"name": "net-48", "namespace": "default"},
///     "spec": {"networkName": "default/net-48", "ipv4Config": {
///         "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "router": "192.168.48.1",
///         "pool": {"start": "192.168.48.81", "end": "192.168.48.90",
///                  "exclude": ["192.168.48.81", "192.168.48.90"]}}},
///     "status": {"ipv4": {"used": 1, "available": 7, "allocated": {
///         "192.168.48.81": "EXCLUDED", "192.168.48.84": "ca:70:82:e6:84:6e", "192.168.48.90": "EXCLUDED"}}}
/// }))?;
/// let ipam = to_ipam_pool(&pool)?;
/// assert_eq!((ipam.used(), ipam.available()), (1, 7));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn to_ipam_pool(pool: &IPPool) -> Result<ipam::Pool, Error> {
    let cfg = &pool.spec.ipv4_config;
    let net = parse_cidr(&cfg.cidr)?;
    let start = parse_ip(field::START, &cfg.pool.start)?;
    let end = parse_ip(field::END, &cfg.pool.end)?;
    let mut ipam = ipam::Pool::new(net, start, end).map_err(|source| Error::Ipam {
        field: field::POOL.into(),
        source,
    })?;
    for ip in reservations(cfg).filter(|ip| net.contains(ip)) {
        ipam.reserve(ip).map_err(|source| Error::Ipam {
            field: field::POOL.into(),
            source,
        })?;
    }
    for (ip, _) in pool.allocated().filter(|(_, v)| *v == MARK_CONFLICT) {
        if let Ok(addr) = ip.parse::<Ipv4Addr>()
            && ipam.state(addr) == ipam::AddrState::Free
        {
            ipam.allocate_specific(addr).map_err(|source| Error::Ipam {
                field: field::POOL.into(),
                source,
            })?;
        }
    }
    for (ip, mac) in pool.allocated().filter(|(_, v)| !is_mark(v)) {
        let bad = |reason: String| Error::BadAllocation {
            ip: ip.to_owned(),
            mac: mac.to_owned(),
            reason,
        };
        let addr: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address".into()))?;
        ipam.allocate_specific(addr)
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(ipam)
}

/// The `status.ipv4.allocated` entries that are allocations (not marks), parsed: IP → MAC as
/// written. What the controller's MAC cache is rebuilt from.
///
/// # Errors
/// [`Error::BadAllocation`] for a key that is not an IPv4 address.
pub fn allocations(pool: &IPPool) -> Result<Vec<(Ipv4Addr, String)>, Error> {
    pool.allocated()
        .filter(|(_, v)| !is_mark(v))
        .map(|(ip, mac)| {
            ip.parse()
                .map(|addr| (addr, mac.to_owned()))
                .map_err(|_| Error::BadAllocation {
                    ip: ip.to_owned(),
                    mac: mac.to_owned(),
                    reason: "not an IPv4 address".into(),
                })
        })
        .collect()
}

/// Server, router and exclusions that parse.
fn reservations(cfg: &IPv4Config) -> impl Iterator<Item = Ipv4Addr> + '_ {
    std::iter::once(cfg.server_ip.as_str())
        .chain(cfg.router.as_deref())
        .chain(cfg.pool.excludes().iter().map(String::as_str))
        .filter_map(|s| s.parse().ok())
}

/// An NTP server of a pool: an address, or a host name the agent resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtpServer {
    /// An IPv4 literal.
    Ip(Ipv4Addr),
    /// A DNS name.
    Host(String),
}

/// A spec entry left out of [`LeaseOptions`] because it cannot be sent; the agent logs these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// JSON path of the entry, e.g. `spec.ipv4Config.dns[1]`.
    pub field: String,
    /// The value as written.
    pub value: String,
}

/// The DHCP options every lease of a pool carries, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOptions {
    /// Server identifier (option 54) and `siaddr`.
    pub server_ip: Ipv4Addr,
    /// The subnet (option 1 is its mask).
    pub network: Ipv4Net,
    /// Default gateway (option 3); `None` means the option is not sent.
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15); `None` when unset or empty.
    pub domain_name: Option<String>,
    /// Domain search list (option 119).
    pub domain_search: Vec<String>,
    /// NTP servers (option 42, after resolving host names).
    pub ntp: Vec<NtpServer>,
    /// Lease time in seconds (option 51).
    pub lease_time_secs: u32,
    /// Entries left out because they cannot be sent.
    pub ignored: Vec<Ignored>,
}

impl LeaseOptions {
    /// Builds the options of a pool's spec. The lease time is upstream's: one year when unset
    /// or not positive; values beyond [`MAX_LEASE_TIME_SECS`] are capped so that they never
    /// mean "infinite". Entries that cannot be sent (an unparsable router, DNS server, domain
    /// search entry, or an NTP entry that is neither address nor host name) are listed in
    /// [`ignored`](Self::ignored) instead of failing the pool — upstream sent them as
    /// zero-length options.
    ///
    /// # Errors
    /// [`Error::InvalidCidr`] and [`Error::InvalidIp`] for `serverIP`: without them nothing
    /// can be served.
    ///
    /// ```
    /// use vmdhcp_api::convert::{LeaseOptions, NtpServer};
    /// use vmdhcp_api::ippool::IPv4Config;
    ///
    /// let cfg = IPv4Config {
    ///     cidr: "192.168.48.0/24".into(),
    ///     server_ip: "192.168.48.77".into(),
    ///     ntp: vec!["pool.ntp.org".into(), "192.168.48.2".into()],
    ///     ..Default::default()
    /// };
    /// let opts = LeaseOptions::from_spec(&cfg)?;
    /// assert_eq!(opts.subnet_mask().to_string(), "255.255.255.0");
    /// assert_eq!(opts.lease_time_secs, 31_536_000);
    /// assert_eq!(opts.router, None);
    /// assert_eq!(opts.ntp[0], NtpServer::Host("pool.ntp.org".into()));
    /// # Ok::<(), vmdhcp_api::Error>(())
    /// ```
    pub fn from_spec(cfg: &IPv4Config) -> Result<Self, Error> {
        let network = parse_cidr(&cfg.cidr)?;
        let server_ip = parse_ip(field::SERVER_IP, &cfg.server_ip)?;
        let mut ignored = Vec::new();
        let mut ignore = |field: String, value: &str| {
            ignored.push(Ignored {
                field,
                value: value.to_owned(),
            });
        };

        let router = cfg
            .router
            .as_deref()
            .filter(|r| !r.is_empty())
            .and_then(|r| r.parse().map_err(|_| ignore(field::ROUTER.into(), r)).ok());
        let mut dns = Vec::new();
        for (i, s) in cfg.dns.iter().enumerate() {
            match s.parse() {
                Ok(ip) => dns.push(ip),
                Err(_) => ignore(indexed(field::DNS, i), s),
            }
        }
        let mut ntp = Vec::new();
        for (i, s) in cfg.ntp.iter().enumerate() {
            match s.parse() {
                Ok(ip) => ntp.push(NtpServer::Ip(ip)),
                Err(_) if is_dns_name(s) => ntp.push(NtpServer::Host(s.clone())),
                Err(_) => ignore(indexed(field::NTP, i), s),
            }
        }
        let mut domain_search = Vec::new();
        for (i, s) in cfg.domain_search.iter().enumerate() {
            if is_dns_name(s) {
                domain_search.push(s.clone());
            } else {
                ignore(indexed(field::DOMAIN_SEARCH, i), s);
            }
        }
        let domain_name = cfg.domain_name.clone().filter(|d| !d.is_empty());
        let lease_time_secs = match cfg.lease_time {
            Some(secs) if secs > 0 => {
                u32::try_from(secs.min(MAX_LEASE_TIME_SECS)).unwrap_or(u32::MAX - 1)
            }
            _ => DEFAULT_LEASE_TIME_SECS,
        };
        Ok(Self {
            server_ip,
            network,
            router,
            dns,
            domain_name,
            domain_search,
            ntp,
            lease_time_secs,
            ignored,
        })
    }

    /// The subnet mask (option 1).
    pub fn subnet_mask(&self) -> Ipv4Addr {
        self.network.netmask()
    }

    /// The prefix length of the subnet.
    pub fn prefix_len(&self) -> u8 {
        self.network.prefix_len()
    }

    /// The lease time as a duration.
    pub fn lease_time(&self) -> Duration {
        Duration::from_secs(self.lease_time_secs.into())
    }
}

#[cfg(test)]
mod tests;
