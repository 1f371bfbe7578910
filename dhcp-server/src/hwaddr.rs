//! Client hardware addresses: [`MacAddr`] (the lease key of MAC-pinned pools) and [`HwAddr`]
//! (whatever `chaddr` holds, for events and logs).

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// An Ethernet MAC address, normalised: parsing accepts upper or lower case and `:`, `-` or
/// no separators, and it always prints as lower-case colon-separated hex. Lease tables keyed
/// by `MacAddr` therefore match however the address was written (the Go agent compared
/// strings and silently missed upper-case or dash-separated MACs).
///
/// ```
/// use dhcp_server::MacAddr;
///
/// let a: MacAddr = "CA-70-82-E6-84-6E".parse()?;
/// let b: MacAddr = "ca:70:82:e6:84:6e".parse()?;
/// let c: MacAddr = "ca7082e6846e".parse()?;
/// assert_eq!(a, b);
/// assert_eq!(b, c);
/// assert_eq!(a.to_string(), "ca:70:82:e6:84:6e");
/// assert!("ca:70:82:e6:84".parse::<MacAddr>().is_err());
/// # Ok::<(), dhcp_server::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// A MAC address from its six octets.
    ///
    /// ```
    /// let mac = dhcp_server::MacAddr::new([2, 0, 0, 0, 0, 1]);
    /// assert_eq!(mac.to_string(), "02:00:00:00:00:01");
    /// ```
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// The six octets.
    ///
    /// ```
    /// let mac: dhcp_server::MacAddr = "02:00:00:00:00:01".parse()?;
    /// assert_eq!(mac.octets(), [2, 0, 0, 0, 0, 1]);
    /// # Ok::<(), dhcp_server::Error>(())
    /// ```
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidMac {
            input: s.to_owned(),
        };
        let digits = s.bytes().filter(|b| !matches!(b, b':' | b'-' | b'.'));
        let mut out = [0u8; 6];
        let mut n = 0usize;
        for d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(invalid()),
            };
            let slot = out.get_mut(n / 2).ok_or_else(invalid)?;
            *slot = (*slot << 4) | v;
            n += 1;
        }
        // Separators, when present, must sit between octets ("a:bc:..." is refused).
        let separated = s.contains([':', '-']);
        if n != 12 || (separated && s.split([':', '-']).any(|p| p.len() != 2)) {
            return Err(invalid());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

/// The client hardware address of a request exactly as sent: hardware type (`htype`) and the
/// first `hlen` bytes of `chaddr`. Fixed size and `Copy`, so events carry it without
/// allocating.
///
/// ```
/// use dhcp_server::{HwAddr, MacAddr};
///
/// let hw = HwAddr::new(1, &[2, 0, 0, 0, 0, 1]);
/// assert_eq!(hw.to_string(), "02:00:00:00:00:01");
/// assert_eq!(hw.mac(), Some(MacAddr::new([2, 0, 0, 0, 0, 1])));
/// assert_eq!(HwAddr::new(32, &[]).mac(), None); // InfiniBand: no chaddr
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HwAddr {
    htype: u8,
    len: u8,
    bytes: [u8; 16],
}

impl HwAddr {
    /// The hardware type (1 = Ethernet) and up to 16 address bytes; longer input is cut at 16.
    ///
    /// ```
    /// let hw = dhcp_server::HwAddr::new(1, &[0xaa; 20]);
    /// assert_eq!(hw.as_bytes().len(), 16);
    /// ```
    pub fn new(htype: u8, addr: &[u8]) -> Self {
        let mut bytes = [0u8; 16];
        let addr = addr.get(..16).unwrap_or(addr);
        bytes[..addr.len()].copy_from_slice(addr);
        Self {
            htype,
            len: u8::try_from(addr.len()).unwrap_or(16),
            bytes,
        }
    }

    /// The hardware type (`htype`).
    ///
    /// ```
    /// assert_eq!(dhcp_server::HwAddr::new(1, &[0; 6]).htype(), 1);
    /// ```
    pub const fn htype(&self) -> u8 {
        self.htype
    }

    /// The address bytes (`hlen` of them).
    ///
    /// ```
    /// assert_eq!(dhcp_server::HwAddr::new(1, &[7; 6]).as_bytes(), &[7; 6]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The MAC address, when this is an Ethernet address (htype 1, six bytes).
    ///
    /// ```
    /// assert!(dhcp_server::HwAddr::new(1, &[1, 2, 3]).mac().is_none());
    /// ```
    pub fn mac(&self) -> Option<MacAddr> {
        if self.htype != 1 {
            return None;
        }
        <[u8; 6]>::try_from(self.as_bytes()).ok().map(MacAddr)
    }
}

impl fmt::Display for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HwAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HwAddr({}, {self})", self.htype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing_accepts_common_spellings_only() {
        for ok in [
            "0a:0B:0c:0d:0e:0f",
            "0A-0B-0C-0D-0E-0F",
            "0a0b0c0d0e0f",
            "0a0b.0c0d.0e0f",
        ] {
            assert_eq!(
                ok.parse::<MacAddr>().unwrap().octets(),
                [10, 11, 12, 13, 14, 15],
                "{ok}"
            );
        }
        for bad in [
            "",
            "0a:0b:0c:0d:0e",
            "0a:0b:0c:0d:0e:0f:10",
            "0g:0b:0c:0d:0e:0f",
            "a:0bc:0c:0d:0e:0f",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn hwaddr_display_and_empty() {
        assert_eq!(HwAddr::new(1, &[]).to_string(), "");
        assert_eq!(
            format!("{:?}", HwAddr::new(6, &[1, 0xff])),
            "HwAddr(6, 01:ff)"
        );
    }
}
