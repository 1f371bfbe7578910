//! [`Error`], the error type of everything outside the per-packet path.
//!
//! The packet path has its own small `Copy` errors, [`ParseError`](crate::ParseError) and
//! [`EncodeError`](crate::EncodeError): a malformed packet is an everyday event, not a failure
//! of the server, and must not cost an allocation.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;

/// Configuration, socket and pool errors. Every variant carries the values involved, so the
/// message alone tells an operator what to fix.
///
/// ```
/// use dhcp_server::{Config, Error};
///
/// let err = Config::builder("10.0.1.1".parse()?, "10.0.0.0/24".parse()?)
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, Error::ServerOutsideSubnet { .. }));
/// assert_eq!(err.to_string(), "server identifier 10.0.1.1 is not inside subnet 10.0.0.0/24");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server identifier must be an address of the served subnet: clients unicast renewals
    /// to it and it is the source address of every reply.
    #[error("server identifier {server_id} is not inside subnet {subnet}")]
    ServerOutsideSubnet {
        /// The configured server identifier.
        server_id: Ipv4Addr,
        /// The configured subnet.
        subnet: Ipv4Net,
    },
    /// RFC 2132 §5.1: the interface MTU option has a minimum of 68.
    #[error("interface MTU {mtu} is below the minimum of 68")]
    MtuTooSmall {
        /// The configured MTU.
        mtu: u16,
    },
    /// A domain name (option 15 or 119) is not a valid DNS name.
    #[error("invalid domain name {name:?}: {reason}")]
    InvalidDomainName {
        /// The name as configured.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A lease time of zero seconds.
    #[error("lease time must be at least 1 second")]
    ZeroLeaseTime,
    /// T1 and T2 must satisfy `0 < T1 < T2 < lease time`, given here in thousandths of it.
    #[error(
        "renewal ({t1_permille}‰) and rebinding ({t2_permille}‰) times must satisfy 0 < T1 < T2 < 1000‰"
    )]
    InvalidTimers {
        /// T1 in thousandths of the lease time.
        t1_permille: u16,
        /// T2 in thousandths of the lease time.
        t2_permille: u16,
    },
    /// A MAC address that does not parse.
    #[error("invalid MAC address {input:?}: expected six hexadecimal octets")]
    InvalidMac {
        /// The text that failed to parse.
        input: String,
    },
    /// Another socket already holds the address and port (on that interface): a second DHCP
    /// server on the same NIC is refused instead of silently sharing traffic.
    #[error("UDP {addr}{} is already in use: is another DHCP server running there?", on(interface.as_deref()))]
    AddressInUse {
        /// The address and port we tried to bind.
        addr: SocketAddrV4,
        /// The interface the socket was bound to, if any.
        interface: Option<String>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Binding a port below 1024 needs `CAP_NET_BIND_SERVICE` or a lowered
    /// `net.ipv4.ip_unprivileged_port_start`.
    #[error(
        "permission denied binding UDP {addr}{}: grant CAP_NET_BIND_SERVICE or set \
         net.ipv4.ip_unprivileged_port_start <= {}",
        on(interface.as_deref()),
        addr.port()
    )]
    PermissionDenied {
        /// The address and port we tried to bind.
        addr: SocketAddrV4,
        /// The interface the socket was bound to, if any.
        interface: Option<String>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The interface named in the socket configuration does not exist (in this network
    /// namespace).
    #[error("no network interface named {interface:?}: {source}")]
    NoSuchInterface {
        /// The interface name.
        interface: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Any other socket call failed.
    #[error("cannot {operation} on the DHCP socket{}: {source}", on(interface.as_deref()))]
    Socket {
        /// What we were doing, e.g. `bind 0.0.0.0:67` or `set SO_BROADCAST`.
        operation: String,
        /// The interface the socket is bound to, if any.
        interface: Option<String>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The dynamic pool refused an operation.
    #[error("dynamic pool: {0}")]
    Pool(#[from] ipam::Error),
}

fn on(interface: Option<&str>) -> String {
    interface.map_or_else(String::new, |i| format!(" on interface {i}"))
}

impl Error {
    /// A short, stable, lower-case name of the variant, for metric labels and log fields.
    ///
    /// ```
    /// assert_eq!(dhcp_server::Error::ZeroLeaseTime.metric_label(), "config");
    /// ```
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ServerOutsideSubnet { .. }
            | Self::MtuTooSmall { .. }
            | Self::InvalidDomainName { .. }
            | Self::ZeroLeaseTime
            | Self::InvalidTimers { .. }
            | Self::InvalidMac { .. } => "config",
            Self::AddressInUse { .. } => "address_in_use",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::NoSuchInterface { .. } => "no_such_interface",
            Self::Socket { .. } => "socket",
            Self::Pool(_) => "pool",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_in_use_names_interface_and_port() {
        let err = Error::AddressInUse {
            addr: "0.0.0.0:67".parse().unwrap(),
            interface: Some("eth1".into()),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            err.to_string(),
            "UDP 0.0.0.0:67 on interface eth1 is already in use: is another DHCP server running there?"
        );
        assert_eq!(err.metric_label(), "address_in_use");
    }

    #[test]
    fn permission_denied_names_the_fix() {
        let err = Error::PermissionDenied {
            addr: "0.0.0.0:67".parse().unwrap(),
            interface: None,
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(err.to_string().contains("CAP_NET_BIND_SERVICE"));
        assert!(err.to_string().contains("ip_unprivileged_port_start <= 67"));
    }
}
