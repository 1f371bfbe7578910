//! Admission validation of IPPools ([`ippool`]) and vmnetcfgs ([`vmnetcfg`]).
//!
//! Pure functions: the caller looks up what the checks need (does the NAD exist, which pools
//! exist, …) and passes plain values. Every check returns all its findings as [`Violation`]s
//! instead of stopping at the first; upstream's checks come first, in upstream's order, with
//! upstream's messages, so `violations[0]` is what upstream would have said.

use std::fmt;

pub mod ippool;
pub mod vmnetcfg;

/// Shortest `leaseTime`, in seconds, accepted without a warning. Shorter leases make clients
/// renew several times a minute for addresses that are static anyway; upstream served them,
/// so they are accepted all the same.
pub const MIN_LEASE_TIME_SECS: i64 = 60;

/// Longest lease sent, in seconds: the largest finite DHCP lease time. Option 51 is 32 bits
/// and `0xffffffff` means "infinite" (RFC 2131 §3.3), which we do not hand out because
/// clients holding an infinite lease never come back to learn option changes. A longer
/// `leaseTime` is accepted with a warning and capped to this.
pub const MAX_LEASE_TIME_SECS: i64 = u32::MAX as i64 - 1;

/// One reason to reject an object.
///
/// `Display` is the sentence the webhook returns (upstream's wording where upstream has the
/// check); wrap it with [`admission_denied`](crate::message::admission_denied).
///
/// ```
/// use vmdhcp_api::validate::Violation;
///
/// let v = Violation::new("spec.ipv4Config.pool.start", "10.0.1.1", "start ip 10.0.1.1 is not within subnet");
/// assert_eq!(v.to_string(), "start ip 10.0.1.1 is not within subnet");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the offending field, e.g. `spec.ipv4Config.dns[1]`.
    pub field: String,
    /// The offending value as written (empty when the field is missing).
    pub value: String,
    /// The sentence shown to the user.
    pub message: String,
}

impl Violation {
    /// A violation from its parts.
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// All messages joined with `"; "`, for a single admission response.
///
/// ```
/// use vmdhcp_api::validate::{Violation, join};
///
/// let vs = [Violation::new("a", "1", "first"), Violation::new("b", "2", "second")];
/// assert_eq!(join(&vs), "first; second");
/// ```
pub fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `name` is a DNS name: dot-separated labels of 1–63 letters, digits and hyphens,
/// not starting or ending with a hyphen, at most 253 characters, an optional trailing dot, and
/// a last label that is not all digits (so `10.0.0.256` is not mistaken for a host name).
///
/// ```
/// use vmdhcp_api::validate::is_dns_name;
///
/// assert!(is_dns_name("pool.ntp.org"));
/// assert!(is_dns_name("harvester.local."));
/// assert!(!is_dns_name("-bad.example"));
/// assert!(!is_dns_name("10.0.0.256"));
/// assert!(!is_dns_name("a..b"));
/// ```
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.split('.').all(label_ok)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::simple("example", true)]
    #[case::fqdn("pool.ntp.org", true)]
    #[case::trailing_dot("pool.ntp.org.", true)]
    #[case::digits_inside("ntp1.example.com", true)]
    #[case::label_63(&format!("{}.com", "a".repeat(63)), true)]
    #[case::label_64(&format!("{}.com", "a".repeat(64)), false)]
    #[case::too_long(&["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join("."), false)]
    #[case::empty("", false)]
    #[case::only_dot(".", false)]
    #[case::empty_label("a..b", false)]
    #[case::leading_hyphen("-a.com", false)]
    #[case::trailing_hyphen("a-.com", false)]
    #[case::underscore("a_b.com", false)]
    #[case::space("a b.com", false)]
    #[case::numeric_tld("1.2.3.4", false)]
    #[case::ip_typo("10.0.0.256", false)]
    fn dns_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(is_dns_name(name), ok, "{name}");
    }

    #[test]
    fn lease_limits_fit_option_51() {
        assert_eq!(u32::try_from(MAX_LEASE_TIME_SECS).unwrap(), u32::MAX - 1);
        const { assert!(MIN_LEASE_TIME_SECS > 0) };
    }
}
