//! Parsing of the address strings in IPPool specs, with Go-compatible leniency where it
//! matters (host bits in a CIDR) and error values that name the field.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::Error;

/// JSON paths of the address fields, as used in errors and violations.
pub(crate) mod field {
    pub const CIDR: &str = "spec.ipv4Config.cidr";
    pub const SERVER_IP: &str = "spec.ipv4Config.serverIP";
    pub const ROUTER: &str = "spec.ipv4Config.router";
    pub const START: &str = "spec.ipv4Config.pool.start";
    pub const END: &str = "spec.ipv4Config.pool.end";
    pub const POOL: &str = "spec.ipv4Config.pool";
    pub const EXCLUDE: &str = "spec.ipv4Config.pool.exclude";
    pub const DNS: &str = "spec.ipv4Config.dns";
    pub const NTP: &str = "spec.ipv4Config.ntp";
    pub const DOMAIN_NAME: &str = "spec.ipv4Config.domainName";
    pub const DOMAIN_SEARCH: &str = "spec.ipv4Config.domainSearch";
    pub const LEASE_TIME: &str = "spec.ipv4Config.leaseTime";
    pub const NETWORK_NAME: &str = "spec.networkName";
}

/// Parses a CIDR like Go's `net.ParseCIDR` followed by taking the network: host bits are
/// allowed and cleared (`192.168.30.1/24` is `192.168.30.0/24`).
pub(crate) fn parse_cidr(value: &str) -> Result<Ipv4Net, Error> {
    value
        .parse::<Ipv4Net>()
        .map(|net| net.trunc())
        .map_err(|_| Error::InvalidCidr {
            value: value.to_owned(),
        })
}

/// Parses an IPv4 address of `field`.
pub(crate) fn parse_ip(field: &str, value: &str) -> Result<Ipv4Addr, Error> {
    value.parse().map_err(|_| Error::InvalidIp {
        field: field.to_owned(),
        value: value.to_owned(),
    })
}

/// An indexed field path, e.g. `spec.ipv4Config.dns[1]`.
pub(crate) fn indexed(field: &str, i: usize) -> String {
    format!("{field}[{i}]")
}
