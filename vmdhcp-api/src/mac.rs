//! [`MacAddr`]: a 48-bit MAC address that parses every common spelling.
//!
//! Upstream stored MACs exactly as written in the vmnetcfg and looked leases up by the
//! lowercase colon form of the DHCP `chaddr`, so `AA-BB-…` or upper-case MACs silently never
//! matched. Everything that compares MACs goes through this type instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A 48-bit (EUI-48) MAC address.
///
/// Parses `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` (either case), Cisco's `aabb.ccdd.eeff` and
/// bare `aabbccddeeff`; always displays and serialises as lowercase colon form.
///
/// ```
/// use vmdhcp_api::MacAddr;
///
/// let a: MacAddr = "AA-BB-CC-DD-EE-FF".parse()?;
/// let b: MacAddr = "aabb.ccdd.eeff".parse()?;
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "aa:bb:cc:dd:ee:ff");
/// assert_eq!(serde_json::to_string(&a)?, r#""aa:bb:cc:dd:ee:ff""#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// The address from its six octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// The six octets.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> Self {
        mac.0
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    /// # Errors
    /// [`Error::InvalidMac`] naming the input.
    fn from_str(s: &str) -> Result<Self, Error> {
        parse(s).map(Self).ok_or_else(|| Error::InvalidMac {
            input: s.to_owned(),
        })
    }
}

impl TryFrom<&str> for MacAddr {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self, Error> {
        s.parse()
    }
}

/// Splits into groups by the one separator used, then reads each group as hex of the width
/// the notation demands (2 digits for `:`/`-`, 4 for `.`, 12 without separator).
fn parse(s: &str) -> Option<[u8; 6]> {
    let (groups, width): (Vec<&str>, usize) = if s.contains(':') {
        (s.split(':').collect(), 2)
    } else if s.contains('-') {
        (s.split('-').collect(), 2)
    } else if s.contains('.') {
        (s.split('.').collect(), 4)
    } else {
        (vec![s], 12)
    };
    if groups.len() * width != 12 {
        return None;
    }
    let mut digits = [0u8; 12];
    let mut n = 0;
    for group in groups {
        if group.len() != width {
            return None;
        }
        for c in group.chars() {
            digits[n] = u8::try_from(c.to_digit(16)?).ok()?;
            n += 1;
        }
    }
    let mut octets = [0u8; 6];
    for (i, octet) in octets.iter_mut().enumerate() {
        *octet = digits[2 * i] << 4 | digits[2 * i + 1];
    }
    Some(octets)
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, octet) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{octet:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for MacAddr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MacAddr".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

/// Whether two MAC strings denote the same address: compared as [`MacAddr`] when both parse,
/// as strings otherwise (so two identical malformed values still match, as upstream's string
/// comparison did).
///
/// ```
/// assert!(vmdhcp_api::mac::same_mac("AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff"));
/// assert!(!vmdhcp_api::mac::same_mac("aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:00"));
/// ```
pub fn same_mac(a: &str, b: &str) -> bool {
    match (a.parse::<MacAddr>(), b.parse::<MacAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    const MAC: MacAddr = MacAddr::new([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);

    #[rstest]
    #[case::colon_lower("aa:bb:cc:0d:ee:ff")]
    #[case::colon_upper("AA:BB:CC:0D:EE:FF")]
    #[case::colon_mixed("Aa:bB:cc:0D:ee:Ff")]
    #[case::dash("aa-bb-cc-0d-ee-ff")]
    #[case::dash_upper("AA-BB-CC-0D-EE-FF")]
    #[case::cisco_dots("aabb.cc0d.eeff")]
    #[case::cisco_dots_upper("AABB.CC0D.EEFF")]
    #[case::bare("aabbcc0deeff")]
    fn parses_common_spellings(#[case] input: &str) {
        assert_eq!(input.parse::<MacAddr>().unwrap(), MAC);
    }

    #[rstest]
    #[case::empty("")]
    #[case::short("aa:bb:cc:dd:ee")]
    #[case::long("aa:bb:cc:dd:ee:ff:00")]
    #[case::one_digit_group("a:bb:cc:dd:ee:ff")]
    #[case::three_digit_group("aaa:bb:cc:dd:ee:f")]
    #[case::mixed_separators("aa:bb-cc:dd:ee:ff")]
    #[case::not_hex("gg:bb:cc:dd:ee:ff")]
    #[case::eui64("aa:bb:cc:dd:ee:ff:00:11")]
    #[case::dots_wrong_width("aa.bbcc.ddee.ff")]
    #[case::spaces(" aa:bb:cc:dd:ee:ff")]
    #[case::trailing_colon("aa:bb:cc:dd:ee:ff:")]
    #[case::unicode_digit("aa:bb:cc:dd:ee:f\u{663}")]
    fn rejects_and_names_input(#[case] input: &str) {
        let err = input.parse::<MacAddr>().unwrap_err();
        assert_eq!(
            err,
            Error::InvalidMac {
                input: input.to_owned()
            }
        );
        assert!(err.to_string().contains(&format!("{input:?}")));
    }

    #[test]
    fn displays_lowercase_colon_and_serde_round_trips() {
        assert_eq!(MAC.to_string(), "aa:bb:cc:0d:ee:ff");
        assert_eq!(format!("{MAC:?}"), "MacAddr(aa:bb:cc:0d:ee:ff)");
        let json = serde_json::to_string(&MAC).unwrap();
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), MAC);
        assert_eq!(
            serde_json::from_str::<MacAddr>(r#""AA-BB-CC-0D-EE-FF""#).unwrap(),
            MAC
        );
        assert!(serde_json::from_str::<MacAddr>(r#""nope""#).is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(octets: [u8; 6], upper: bool, sep in 0..4usize) {
            let mac = MacAddr::new(octets);
            let hex = mac.to_string().replace(':', "");
            let text = match sep {
                0 => mac.to_string(),
                1 => mac.to_string().replace(':', "-"),
                2 => format!("{}.{}.{}", &hex[0..4], &hex[4..8], &hex[8..12]),
                _ => hex,
            };
            let text = if upper { text.to_uppercase() } else { text };
            prop_assert_eq!(text.parse::<MacAddr>().unwrap(), mac);
        }
    }
}
