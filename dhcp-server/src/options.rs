//! Option codes and the option area of replies: which options go in, in which order, and what
//! is left out when the client cannot take them all.
//!
//! dhcproto's encoder writes options in ascending code order, does not pad and does not know
//! the client's size limit, so replies assemble their option area here. Values that come from
//! the configuration are encoded once per [`Config`](crate::Config) (with dhcproto, see
//! `config.rs`) and copied; per-reply values (53, 54, 51, 58, 59, 12, 56, 61, 82) are written
//! directly.

/// DHCP option codes used by this crate (RFC 2132 unless noted).
pub(crate) mod code {
    /// Pad (0).
    pub(crate) const PAD: u8 = 0;
    /// Subnet mask (1).
    pub(crate) const SUBNET_MASK: u8 = 1;
    /// Routers (3).
    pub(crate) const ROUTER: u8 = 3;
    /// Domain name servers (6).
    pub(crate) const DNS: u8 = 6;
    /// Host name (12).
    pub(crate) const HOSTNAME: u8 = 12;
    /// Domain name (15).
    pub(crate) const DOMAIN_NAME: u8 = 15;
    /// Interface MTU (26).
    pub(crate) const MTU: u8 = 26;
    /// Broadcast address (28).
    pub(crate) const BROADCAST: u8 = 28;
    /// NTP servers (42).
    pub(crate) const NTP: u8 = 42;
    /// Requested IP address (50).
    pub(crate) const REQUESTED_ADDR: u8 = 50;
    /// IP address lease time (51).
    pub(crate) const LEASE_TIME: u8 = 51;
    /// Option overload (52).
    pub(crate) const OVERLOAD: u8 = 52;
    /// DHCP message type (53).
    pub(crate) const MESSAGE_TYPE: u8 = 53;
    /// Server identifier (54).
    pub(crate) const SERVER_ID: u8 = 54;
    /// Parameter request list (55).
    pub(crate) const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Message (56), the reason text of a NAK.
    pub(crate) const MESSAGE: u8 = 56;
    /// Maximum DHCP message size (57).
    pub(crate) const MAX_MESSAGE_SIZE: u8 = 57;
    /// Renewal time T1 (58).
    pub(crate) const RENEWAL_TIME: u8 = 58;
    /// Rebinding time T2 (59).
    pub(crate) const REBINDING_TIME: u8 = 59;
    /// Client identifier (61).
    pub(crate) const CLIENT_ID: u8 = 61;
    /// Relay agent information (82, RFC 3046).
    pub(crate) const RELAY_AGENT_INFO: u8 = 82;
    /// Domain search list (119, RFC 3397).
    pub(crate) const DOMAIN_SEARCH: u8 = 119;
    /// Classless static routes (121, RFC 3442).
    pub(crate) const CLASSLESS_ROUTES: u8 = 121;
    /// End (255).
    pub(crate) const END: u8 = 255;
}

/// Options never dropped to make a reply fit: without them the reply is useless or violates
/// an RFC MUST (51 in OFFER/ACK, 61 per RFC 6842, 82 per RFC 3046).
const REQUIRED: [u8; 5] = [
    code::MESSAGE_TYPE,
    code::SERVER_ID,
    code::LEASE_TIME,
    code::CLIENT_ID,
    code::RELAY_AGENT_INFO,
];

/// Where "the rest" (options the client did not ask for) goes, in this order.
pub(crate) const DEFAULT_ORDER: [u8; 15] = [
    code::SUBNET_MASK,
    code::ROUTER,
    code::DNS,
    code::HOSTNAME,
    code::DOMAIN_NAME,
    code::MTU,
    code::BROADCAST,
    code::NTP,
    code::LEASE_TIME,
    code::RENEWAL_TIME,
    code::REBINDING_TIME,
    code::DOMAIN_SEARCH,
    code::CLASSLESS_ROUTES,
    code::CLIENT_ID,
    code::MESSAGE,
];

/// The value of one option in a reply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// Complete, pre-encoded TLVs (possibly several instances, RFC 3396).
    Encoded(&'a [u8]),
    /// A raw value to wrap in TLVs, split into 255-byte instances when longer.
    Raw(&'a [u8]),
    /// A 4-byte value (addresses, times).
    U32(u32),
    /// A 1-byte value (message type).
    U8(u8),
}

impl Value<'_> {
    /// Bytes this value takes in the option area, headers included.
    pub(crate) fn wire_len(&self) -> usize {
        match self {
            Self::Encoded(b) => b.len(),
            Self::Raw(b) => b.len() + 2 * b.len().div_ceil(255),
            Self::U32(_) => 6,
            Self::U8(_) => 3,
        }
    }

    fn write(&self, code: u8, out: &mut [u8]) -> usize {
        match *self {
            Self::Encoded(b) => {
                out[..b.len()].copy_from_slice(b);
                b.len()
            }
            Self::Raw(b) => {
                let mut at = 0;
                for chunk in b.chunks(255) {
                    out[at] = code;
                    out[at + 1] = u8::try_from(chunk.len()).expect("chunks of at most 255");
                    out[at + 2..at + 2 + chunk.len()].copy_from_slice(chunk);
                    at += 2 + chunk.len();
                }
                at
            }
            Self::U32(v) => {
                out[0] = code;
                out[1] = 4;
                out[2..6].copy_from_slice(&v.to_be_bytes());
                6
            }
            Self::U8(v) => {
                out[..3].copy_from_slice(&[code, 1, v]);
                3
            }
        }
    }

    /// Whether this value would put no option at all in the reply (an empty raw value):
    /// those are skipped, never written as zero-length options.
    fn is_empty(&self) -> bool {
        match self {
            Self::Encoded(b) | Self::Raw(b) => b.is_empty(),
            Self::U32(_) | Self::U8(_) => false,
        }
    }
}

/// At most this many distinct options go into one reply; see [`DEFAULT_ORDER`] plus 53, 54
/// and 82.
const MAX_ENTRIES: usize = 20;

/// The ordered option list of one reply. Fixed capacity: building it never allocates.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    entries: [(u8, Value<'a>); MAX_ENTRIES],
    len: usize,
    seen: [u64; 4],
}

impl<'a> Plan<'a> {
    pub(crate) fn new() -> Self {
        Self {
            entries: [(0, Value::U8(0)); MAX_ENTRIES],
            len: 0,
            seen: [0; 4],
        }
    }

    pub(crate) fn contains(&self, code: u8) -> bool {
        self.seen[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    /// Appends `code` unless it is already planned, its value is empty, or the plan is full.
    pub(crate) fn push(&mut self, code: u8, value: Value<'a>) {
        if self.contains(code) || value.is_empty() || self.len == MAX_ENTRIES {
            return;
        }
        self.seen[usize::from(code / 64)] |= 1 << (code % 64);
        self.entries[self.len] = (code, value);
        self.len += 1;
    }

    fn entries(&self) -> &[(u8, Value<'a>)] {
        &self.entries[..self.len]
    }

    /// Bytes of the option area: every entry plus End.
    pub(crate) fn wire_len(&self) -> usize {
        self.entries()
            .iter()
            .map(|(_, v)| v.wire_len())
            .sum::<usize>()
            + 1
    }

    /// Drops the lowest-priority (last planned) optional entries until the option area fits
    /// in `room` bytes.
    ///
    /// # Errors
    /// The wire length still needed when even the required options do not fit.
    pub(crate) fn fit(&mut self, room: usize) -> Result<(), usize> {
        let mut total = self.wire_len();
        let mut i = self.len;
        while total > room && i > 0 {
            i -= 1;
            let (c, v) = self.entries[i];
            if REQUIRED.contains(&c) {
                continue;
            }
            total -= v.wire_len();
            self.entries.copy_within(i + 1..self.len, i);
            self.len -= 1;
            self.seen[usize::from(c / 64)] &= !(1 << (c % 64));
        }
        if total > room { Err(total) } else { Ok(()) }
    }

    /// Writes every entry and End into `out`, which must hold [`wire_len`](Self::wire_len)
    /// bytes. Returns the bytes written.
    pub(crate) fn write(&self, out: &mut [u8]) -> usize {
        let mut at = 0;
        for (c, v) in self.entries() {
            at += v.write(*c, &mut out[at..]);
        }
        out[at] = code::END;
        at + 1
    }

    /// The planned codes in order (tests and debugging).
    #[cfg(test)]
    pub(crate) fn codes(&self) -> Vec<u8> {
        self.entries().iter().map(|(c, _)| *c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_are_split_at_255_bytes() {
        let long = vec![7u8; 300];
        let v = Value::Raw(&long);
        assert_eq!(v.wire_len(), 304);
        let mut out = vec![0u8; 304];
        assert_eq!(v.write(61, &mut out), 304);
        assert_eq!(&out[..2], &[61, 255]);
        assert_eq!(&out[257..259], &[61, 45]);
    }

    #[test]
    fn empty_values_are_never_planned() {
        let mut plan = Plan::new();
        plan.push(code::CLIENT_ID, Value::Raw(&[]));
        plan.push(code::ROUTER, Value::Encoded(&[]));
        assert!(plan.codes().is_empty());
        assert_eq!(plan.wire_len(), 1);
    }

    #[test]
    fn duplicates_keep_the_first_position() {
        let mut plan = Plan::new();
        plan.push(code::DNS, Value::U32(1));
        plan.push(code::SUBNET_MASK, Value::U32(2));
        plan.push(code::DNS, Value::U32(3));
        assert_eq!(plan.codes(), vec![code::DNS, code::SUBNET_MASK]);
    }

    #[test]
    fn fit_drops_optional_entries_from_the_end() {
        let mut plan = Plan::new();
        plan.push(code::MESSAGE_TYPE, Value::U8(2));
        plan.push(code::DNS, Value::U32(1));
        plan.push(code::LEASE_TIME, Value::U32(60));
        plan.push(code::NTP, Value::U32(1));
        plan.push(code::RELAY_AGENT_INFO, Value::Raw(&[1, 2, 3]));
        assert_eq!(plan.wire_len(), 3 + 6 + 6 + 6 + 5 + 1);
        plan.fit(3 + 6 + 6 + 5 + 1).unwrap();
        assert_eq!(
            plan.codes(),
            vec![
                code::MESSAGE_TYPE,
                code::DNS,
                code::LEASE_TIME,
                code::RELAY_AGENT_INFO
            ]
        );
        plan.fit(3 + 6 + 5 + 1).unwrap();
        assert_eq!(
            plan.codes(),
            vec![code::MESSAGE_TYPE, code::LEASE_TIME, code::RELAY_AGENT_INFO]
        );
        assert!(!plan.contains(code::DNS));
        assert_eq!(plan.fit(10), Err(15));
    }
}
