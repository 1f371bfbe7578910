//! The clients `perfdhcp` simulates, so a server under test can know them in advance.
//!
//! `perfdhcp -R N` does not number its clients sequentially: for each exchange it draws an
//! index in `0..N` and adds it to the base MAC (`-b mac=…`, default `00:0c:01:02:03:04`)
//! octet by octet from the last one, without carrying between octets, stopping at the first
//! octet whose part of the index is below 256. A static-lease server must be given exactly
//! those addresses, or it stays silent and perfdhcp counts drops. The pattern was checked
//! against a capture of perfdhcp 2.2.0 (every captured chaddr is one of [`client_mac`]'s).

use std::net::Ipv4Addr;

/// perfdhcp's default base MAC (its `-b mac=` option changes it).
pub const DEFAULT_BASE: [u8; 6] = [0x00, 0x0c, 0x01, 0x02, 0x03, 0x04];

/// The MAC perfdhcp uses for client `index` (`0 <= index < N` for `-R N`).
///
/// ```
/// use vmdhcp_benches::perfdhcp::{DEFAULT_BASE, client_mac};
/// assert_eq!(client_mac(DEFAULT_BASE, 0), DEFAULT_BASE);
/// // The last octet wraps without carrying into the one before it...
/// assert_eq!(client_mac(DEFAULT_BASE, 252), [0x00, 0x0c, 0x01, 0x02, 0x03, 0x00]);
/// // ...which only moves when the index itself reaches 256.
/// assert_eq!(client_mac(DEFAULT_BASE, 256), [0x00, 0x0c, 0x01, 0x02, 0x04, 0x04]);
/// ```
pub fn client_mac(base: [u8; 6], index: u32) -> [u8; 6] {
    let mut mac = base;
    let mut rest = index;
    for octet in mac.iter_mut().rev() {
        // Truncation is the point: each octet gets the low byte of what is left.
        *octet = octet.wrapping_add(rest.to_le_bytes()[0]);
        if rest < 256 {
            break;
        }
        rest >>= 8;
    }
    mac
}

/// The `clients` distinct MACs of `perfdhcp -R clients`, each paired with an address counted
/// up from `first` (client `i` gets `first + i`).
///
/// # Panics
/// When the pattern repeats a MAC (it does not below 2^24 clients) or the addresses overflow.
///
/// ```
/// use vmdhcp_benches::perfdhcp::{DEFAULT_BASE, static_assignments};
/// let all = static_assignments(DEFAULT_BASE, 10_000, "10.99.0.10".parse()?);
/// assert_eq!(all.len(), 10_000);
/// assert_eq!(all[9_999].1.to_string(), "10.99.39.25");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn static_assignments(
    base: [u8; 6],
    clients: u32,
    first: Ipv4Addr,
) -> Vec<([u8; 6], Ipv4Addr)> {
    let first = u32::from(first);
    let all: Vec<_> = (0..clients)
        .map(|i| {
            let addr = first.checked_add(i).expect("address range fits in IPv4");
            (client_mac(base, i), Ipv4Addr::from(addr))
        })
        .collect();
    let distinct: std::collections::HashSet<_> = all.iter().map(|(mac, _)| mac).collect();
    assert_eq!(distinct.len(), all.len(), "perfdhcp's MAC pattern repeats");
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_clients_have_distinct_macs_sharing_the_base_prefix() {
        let all = static_assignments(DEFAULT_BASE, 10_000, Ipv4Addr::new(10, 99, 0, 10));
        assert!(all.iter().all(|(mac, _)| mac[..3] == DEFAULT_BASE[..3]));
        assert_eq!(all[0].1, Ipv4Addr::new(10, 99, 0, 10));
    }

    #[test]
    fn each_octet_takes_one_byte_of_the_index() {
        assert_eq!(client_mac([0; 6], 0x01_02_03), [0, 0, 0, 0x01, 0x02, 0x03]);
        assert_eq!(client_mac([0xff; 6], 1), [0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    }
}
