//! The one error type of this crate.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Everything that can go wrong when building or changing a [`Pool`](crate::Pool).
///
/// Every variant carries the values involved, so the message alone tells an operator which
/// address or range to fix.
///
/// ```
/// use ipam::{Error, Pool};
///
/// let net = "10.0.0.0/24".parse().unwrap();
/// let err = Pool::new(net, "10.0.0.20".parse().unwrap(), "10.0.0.10".parse().unwrap())
///     .unwrap_err();
/// assert_eq!(err.to_string(), "range start 10.0.0.20 is after range end 10.0.0.10");
/// assert!(matches!(err, Error::StartAfterEnd { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address is not inside the pool's network.
    #[error("{ip} is outside network {network}")]
    OutsideNetwork {
        /// The offending address.
        ip: Ipv4Addr,
        /// The pool's network.
        network: Ipv4Net,
    },
    /// The range start comes after the range end.
    #[error("range start {start} is after range end {end}")]
    StartAfterEnd {
        /// Requested first address.
        start: Ipv4Addr,
        /// Requested last address.
        end: Ipv4Addr,
    },
    /// An address is the network address of a prefix of /30 or shorter.
    #[error("{ip} is the network address of {network}")]
    NetworkAddress {
        /// The offending address.
        ip: Ipv4Addr,
        /// The pool's network.
        network: Ipv4Net,
    },
    /// An address is the broadcast address of a prefix of /30 or shorter.
    #[error("{ip} is the broadcast address of {network}")]
    BroadcastAddress {
        /// The offending address.
        ip: Ipv4Addr,
        /// The pool's network.
        network: Ipv4Net,
    },
    /// An address is inside the network but outside the pool's range.
    #[error("{ip} is outside the pool range {start}-{end}")]
    OutsideRange {
        /// The offending address.
        ip: Ipv4Addr,
        /// First address of the range.
        start: Ipv4Addr,
        /// Last address of the range.
        end: Ipv4Addr,
    },
    /// The address is reserved (server, router or excluded) and is never handed out.
    #[error("{ip} is reserved")]
    Reserved {
        /// The reserved address.
        ip: Ipv4Addr,
    },
    /// The address is already allocated.
    #[error("{ip} is already allocated")]
    AlreadyAllocated {
        /// The allocated address.
        ip: Ipv4Addr,
    },
    /// The address is not allocated, so it cannot be released.
    #[error("{ip} is not allocated")]
    NotAllocated {
        /// The free address.
        ip: Ipv4Addr,
    },
    /// The address is not reserved, so it cannot be unreserved.
    #[error("{ip} is not reserved")]
    NotReserved {
        /// The unreserved address.
        ip: Ipv4Addr,
    },
    /// The range holds more addresses than [`MAX_RANGE`](crate::MAX_RANGE).
    #[error("range {start}-{end} holds {size} addresses, more than the {max} a pool supports")]
    RangeTooLarge {
        /// Requested first address.
        start: Ipv4Addr,
        /// Requested last address.
        end: Ipv4Addr,
        /// Number of addresses requested.
        size: u64,
        /// The limit.
        max: u32,
    },
    /// Every address of the range is allocated or reserved.
    #[error("no free address left in {start}-{end} of {network}")]
    Exhausted {
        /// The pool's network.
        network: Ipv4Net,
        /// First address of the range.
        start: Ipv4Addr,
        /// Last address of the range.
        end: Ipv4Addr,
    },
    /// A resize would leave allocated addresses outside the new range.
    #[error(
        "cannot resize to {start}-{end}: {} allocated address(es) would fall outside: {}",
        conflicts.len(),
        list(conflicts)
    )]
    ResizeConflict {
        /// Requested first address.
        start: Ipv4Addr,
        /// Requested last address.
        end: Ipv4Addr,
        /// Allocated addresses outside the requested range, ascending.
        conflicts: Vec<Ipv4Addr>,
    },
}

/// At most ten addresses, then "and N more": a message must stay readable for a /8.
fn list(ips: &[Ipv4Addr]) -> String {
    use std::fmt::Write as _;
    const SHOWN: usize = 10;
    let mut out = ips
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ips.len() > SHOWN {
        let _ = write!(out, " and {} more", ips.len() - SHOWN);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_conflict_lists_addresses_and_truncates() {
        let conflicts: Vec<Ipv4Addr> = (1..=12).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let err = Error::ResizeConflict {
            start: Ipv4Addr::new(10, 0, 0, 100),
            end: Ipv4Addr::new(10, 0, 0, 200),
            conflicts,
        };
        assert_eq!(
            err.to_string(),
            "cannot resize to 10.0.0.100-10.0.0.200: 12 allocated address(es) would fall \
             outside: 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, \
             10.0.0.8, 10.0.0.9, 10.0.0.10 and 2 more"
        );
    }
}
