//! [`Error`], the one error type of this crate.
//!
//! Validation does not use it: admission checks return every
//! [`Violation`](crate::validate::Violation) at once instead of stopping at the first.

/// Everything that can go wrong when parsing a value or converting an object.
///
/// Every variant carries the offending input, so the message alone tells an operator which
/// field of which object to fix.
///
/// ```
/// use vmdhcp_api::{Error, MacAddr};
///
/// let err = "aa:bb:cc".parse::<MacAddr>().unwrap_err();
/// assert!(matches!(err, Error::InvalidMac { .. }));
/// assert!(err.to_string().contains("\"aa:bb:cc\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A MAC address is not six hexadecimal octets in a spelling we know.
    #[error(
        "invalid MAC address {input:?}: expected six hex octets as aa:bb:cc:dd:ee:ff, \
         aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff"
    )]
    InvalidMac {
        /// What was given.
        input: String,
    },

    /// The image reference ends in a colon (upstream: `invalid image name: colon without tag`).
    #[error("invalid image name: colon without tag (image {image:?})")]
    ImageColonWithoutTag {
        /// What was given.
        image: String,
    },

    /// The image reference has more than two colons outside a digest (upstream:
    /// `invalid image name: multiple colons found`).
    #[error("invalid image name: multiple colons found (image {image:?})")]
    ImageMultipleColons {
        /// What was given.
        image: String,
    },

    /// The image reference is empty or has an empty repository, tag or digest.
    #[error("invalid image name: {reason} (image {image:?})")]
    ImageMalformed {
        /// What was given.
        image: String,
        /// Which part is wrong.
        reason: &'static str,
    },

    /// A network name (`<namespace>/<name>` or `<name>`) has an empty name part.
    #[error("invalid network name {input:?}: the name part is empty")]
    InvalidNetworkName {
        /// What was given.
        input: String,
    },

    /// The mutating webhook found no address for the DHCP server (upstream message).
    #[error("fail to assign ip for dhcp server")]
    NoServerIp {
        /// The pool's CIDR as written.
        cidr: String,
    },

    /// The defaulted pool range is empty (upstream message).
    #[error("invalid pool range")]
    InvalidPoolRange {
        /// First address (given or defaulted).
        start: std::net::Ipv4Addr,
        /// Last address (given or defaulted).
        end: std::net::Ipv4Addr,
    },

    /// `spec.ipv4Config.cidr` is not an IPv4 prefix (message as Go's `net.ParseCIDR`).
    #[error("invalid CIDR address: {value}")]
    InvalidCidr {
        /// What was written.
        value: String,
    },

    /// An address field does not hold an IPv4 address (message as Go's `netip.ParseAddr`).
    #[error("{field}: ParseAddr({value:?}): unable to parse IP")]
    InvalidIp {
        /// JSON path of the field, e.g. `spec.ipv4Config.pool.start`.
        field: String,
        /// What was written.
        value: String,
    },

    /// The pool described by the spec is rejected by `ipam`.
    #[error("{field}: {source}")]
    Ipam {
        /// JSON path of the field whose value `ipam` refused.
        field: String,
        /// Why.
        #[source]
        source: ipam::Error,
    },

    /// A `status.ipv4.allocated` entry cannot be restored into the pool.
    #[error("status.ipv4.allocated[{ip:?}] = {mac:?}: {reason}")]
    BadAllocation {
        /// The entry's key as written.
        ip: String,
        /// The entry's value as written.
        mac: String,
        /// Why it cannot be restored.
        reason: String,
    },

    /// A generated CRD could not be serialised or post-processed.
    #[error("cannot build the CRD for {kind}: {reason}")]
    Crd {
        /// The resource kind.
        kind: &'static str,
        /// What failed.
        reason: String,
    },
}
