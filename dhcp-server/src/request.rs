//! [`Request`]: a zero-copy view of a received BOOTP/DHCP message.
//!
//! We parse requests ourselves rather than with `dhcproto::v4::Message::decode` because the
//! server needs three things that decoder does not give: option overload (option 52, options
//! carried in `file`/`sname`), RFC 3396 concatenation of split options wherever they appear,
//! and an error on a truncated option instead of silently keeping what came before it. It also
//! avoids allocating per packet: values are slices of the receive buffer, and only a split
//! option (rare) is copied.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv4Addr;

use crate::hwaddr::{HwAddr, MacAddr};
use crate::options::code;

/// Size of the fixed BOOTP header, up to and excluding the magic cookie.
pub(crate) const HEADER_LEN: usize = 236;
/// The DHCP magic cookie (RFC 2131 §3).
pub(crate) const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// `op` of a message sent by a client.
pub(crate) const BOOTREQUEST: u8 = 1;
/// `op` of a message sent by a server.
pub(crate) const BOOTREPLY: u8 = 2;

const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;

/// The DHCP message type (option 53).
///
/// ```
/// use dhcp_server::MessageType;
///
/// assert_eq!(MessageType::from(3), MessageType::Request);
/// assert_eq!(u8::from(MessageType::Inform), 8);
/// assert_eq!(MessageType::from(13), MessageType::Other(13));
/// assert_eq!(MessageType::Discover.name(), "discover");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// DHCPDISCOVER (1).
    Discover,
    /// DHCPOFFER (2).
    Offer,
    /// DHCPREQUEST (3).
    Request,
    /// DHCPDECLINE (4).
    Decline,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
    /// DHCPRELEASE (7).
    Release,
    /// DHCPINFORM (8).
    Inform,
    /// Any other value (FORCERENEW, LEASEQUERY, ...), which this server does not answer.
    Other(u8),
}

impl MessageType {
    /// Lower-case name without the `DHCP` prefix, as used in metric labels.
    ///
    /// ```
    /// assert_eq!(dhcp_server::MessageType::Other(9).name(), "other");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Self::Discover => "discover",
            Self::Offer => "offer",
            Self::Request => "request",
            Self::Decline => "decline",
            Self::Ack => "ack",
            Self::Nak => "nak",
            Self::Release => "release",
            Self::Inform => "inform",
            Self::Other(_) => "other",
        }
    }
}

impl From<u8> for MessageType {
    fn from(v: u8) -> Self {
        match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            n => Self::Other(n),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        match t {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::Other(n) => n,
        }
    }
}

/// Which part of the message an option was found in.
///
/// ```
/// assert_eq!(dhcp_server::Area::File.to_string(), "file");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// The options field after the magic cookie.
    Options,
    /// The `file` header field, when option 52 says it holds options.
    File,
    /// The `sname` header field, when option 52 says it holds options.
    Sname,
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Options => "options",
            Self::File => "file",
            Self::Sname => "sname",
        })
    }
}

/// Why a datagram is not a usable DHCP message: the parts the server cannot answer without
/// (the BOOTP header, option 53, the client's identity) do not parse. Small and `Copy`: it is
/// produced on the packet path for every garbage datagram and must not allocate. Anything else
/// that is malformed is skipped instead and counted in [`Request::skips`].
///
/// ```
/// use dhcp_server::{ParseError, Request};
///
/// assert_eq!(Request::parse(&[1, 2, 3]).unwrap_err(), ParseError::TooShort { len: 3 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Shorter than the 236-byte BOOTP header.
    #[error("datagram of {len} bytes is shorter than a BOOTP header")]
    TooShort {
        /// Datagram length.
        len: usize,
    },
    /// `hlen` larger than the 16-byte `chaddr` field: the client's hardware address is unknown.
    #[error("hardware address length {hlen} exceeds 16")]
    BadHardwareLength {
        /// The `hlen` field.
        hlen: u8,
    },
    /// Option 53 (message type) or 61 (client identifier) runs past the end of its area.
    #[error("option {code} is truncated in the {area} area")]
    TruncatedOption {
        /// The option code.
        code: u8,
        /// Where it was.
        area: Area,
    },
    /// Option 53 with a length other than 1.
    #[error("option {code} has length {len}")]
    BadOptionLength {
        /// The option code.
        code: u8,
        /// Its (concatenated) length.
        len: usize,
    },
    /// The datagram was longer than the receive buffer (only the server's transport reports
    /// this; [`Request::parse`] never does).
    #[error("datagram truncated by the receive buffer")]
    Truncated,
}

/// A malformed option the parser skipped rather than dropping the whole request. Every skip is
/// counted ([`Request::skips`], and the server's
/// [`OPTIONS_SKIPPED_TOTAL`](crate::metrics::OPTIONS_SKIPPED_TOTAL) metric).
///
/// ```
/// use dhcp_server::{Request, Skip};
///
/// let mut b = vec![0u8; 236];
/// b[0] = 1;
/// b.extend([99, 130, 83, 99, 53, 1, 1, 52, 1, 9, 255]); // option 52 = 9: no such overload
/// let req = Request::parse(&b)?;
/// assert_eq!(req.skips().count(Skip::BadOverload), 1);
/// assert_eq!(req.overload(), 0); // `file` and `sname` are not read as options
/// # Ok::<(), dhcp_server::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A fixed-size option (50, 51, 52, 54 or 57) with the wrong length: treated as absent, so
    /// a REQUEST whose option 54 or 50 is malformed is handled as one without it (RFC 2131
    /// §4.3.2 then decides: another client state, or no address and no answer).
    BadLength,
    /// Option 52 with a value other than 1, 2 or 3: `file` and `sname` are not read as options.
    BadOverload,
    /// An option whose length runs past the end of its area: it, and the rest of that area
    /// (nothing but the option itself), is ignored.
    Truncated,
    /// The options field ends without an End option.
    NoEnd,
}

impl Skip {
    /// Every reason, in [`index`](Self::index) order.
    pub(crate) const ALL: [Skip; 4] = [
        Self::BadLength,
        Self::BadOverload,
        Self::Truncated,
        Self::NoEnd,
    ];
    /// Every label, in [`index`](Self::index) order (for pre-registering metrics).
    pub(crate) const LABELS: [&'static str; 4] =
        ["bad_length", "bad_overload", "truncated", "no_end"];

    /// A short, stable label for logs, and the `reason` of the
    /// [`OPTIONS_SKIPPED_TOTAL`](crate::metrics::OPTIONS_SKIPPED_TOTAL) counter.
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1;
    /// b.extend([99, 130, 83, 99, 53, 1, 1, 12, 9, b'v', b'm']); // host name cut short
    /// let skips = dhcp_server::Request::parse(&b)?.skips();
    /// let reasons: Vec<&str> = skips.iter().map(|(skip, _)| skip.label()).collect();
    /// assert_eq!(reasons, ["truncated"]);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Position of this reason in [`LABELS`](Self::LABELS).
    pub(crate) fn index(self) -> usize {
        match self {
            Self::BadLength => 0,
            Self::BadOverload => 1,
            Self::Truncated => 2,
            Self::NoEnd => 3,
        }
    }
}

/// The options skipped in one request, counted by [`Skip`] reason, with the first skipped
/// option's code for logs. `Copy` and allocation-free.
///
/// ```
/// use dhcp_server::{Request, Skip};
///
/// let mut b = vec![0u8; 236];
/// b[0] = 1;
/// b.extend([99, 130, 83, 99, 53, 1, 1, 54, 3, 10, 0, 0]); // 54 of length 3, no End
/// let skips = Request::parse(&b)?.skips();
/// assert_eq!(skips.count(Skip::BadLength), 1);
/// assert_eq!(skips.count(Skip::NoEnd), 1);
/// assert_eq!(skips.total(), 2);
/// assert_eq!(skips.first_code(), Some(54));
/// assert_eq!(skips.to_string(), "bad_length x1, no_end x1 (first: option 54)");
/// # Ok::<(), dhcp_server::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skips {
    counts: [u8; 4],
    first_code: Option<u8>,
}

impl Skips {
    fn record(&mut self, skip: Skip, code: Option<u8>) {
        let n = &mut self.counts[skip.index()];
        *n = n.saturating_add(1);
        if self.first_code.is_none() {
            self.first_code = code;
        }
    }

    /// How many options were skipped for `skip` (saturates at 255).
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1; b.extend([99, 130, 83, 99, 255]);
    /// let skips = dhcp_server::Request::parse(&b)?.skips();
    /// assert_eq!(skips.count(dhcp_server::Skip::NoEnd), 0);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn count(&self, skip: Skip) -> u8 {
        self.counts[skip.index()]
    }

    /// The number of skips of every reason.
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1; b.extend([99, 130, 83, 99, 255]);
    /// assert_eq!(dhcp_server::Request::parse(&b)?.skips().total(), 0);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn total(&self) -> usize {
        self.counts.iter().map(|&n| usize::from(n)).sum()
    }

    /// Whether nothing was skipped.
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1; b.extend([99, 130, 83, 99, 255]);
    /// assert!(dhcp_server::Request::parse(&b)?.skips().is_empty());
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.counts == [0; 4]
    }

    /// The code of the first skipped option (a missing End has none).
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1; b.extend([99, 130, 83, 99, 57, 1, 9, 255]);
    /// assert_eq!(dhcp_server::Request::parse(&b)?.skips().first_code(), Some(57));
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn first_code(&self) -> Option<u8> {
        self.first_code
    }

    /// Each reason with a non-zero count.
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1; b.extend([99, 130, 83, 99, 57, 1, 9, 255]);
    /// let skips = dhcp_server::Request::parse(&b)?.skips();
    /// assert_eq!(skips.iter().collect::<Vec<_>>(), [(dhcp_server::Skip::BadLength, 1)]);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (Skip, u8)> + '_ {
        Skip::ALL
            .into_iter()
            .map(|s| (s, self.count(s)))
            .filter(|&(_, n)| n > 0)
    }
}

impl fmt::Display for Skips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (skip, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} x{n}", skip.label())?;
        }
        if let Some(code) = self.first_code {
            write!(f, " (first: option {code})")?;
        }
        Ok(())
    }
}

/// The options the server looks at, gathered while scanning. Each value is the RFC 3396
/// concatenation of every instance, in order options field, `file`, `sname`.
#[derive(Default)]
struct Gathered<'a> {
    message_type: Option<Cow<'a, [u8]>>,
    server_id: Option<Cow<'a, [u8]>>,
    requested_addr: Option<Cow<'a, [u8]>>,
    lease_time: Option<Cow<'a, [u8]>>,
    max_size: Option<Cow<'a, [u8]>>,
    prl: Option<Cow<'a, [u8]>>,
    client_id: Option<Cow<'a, [u8]>>,
    relay_info: Option<Cow<'a, [u8]>>,
    hostname: Option<Cow<'a, [u8]>>,
}

impl<'a> Gathered<'a> {
    fn slot(&mut self, code: u8) -> Option<&mut Option<Cow<'a, [u8]>>> {
        Some(match code {
            code::MESSAGE_TYPE => &mut self.message_type,
            code::SERVER_ID => &mut self.server_id,
            code::REQUESTED_ADDR => &mut self.requested_addr,
            code::LEASE_TIME => &mut self.lease_time,
            code::MAX_MESSAGE_SIZE => &mut self.max_size,
            code::PARAMETER_REQUEST_LIST => &mut self.prl,
            code::CLIENT_ID => &mut self.client_id,
            code::RELAY_AGENT_INFO => &mut self.relay_info,
            code::HOSTNAME => &mut self.hostname,
            _ => return None,
        })
    }
}

fn append<'a>(slot: &mut Option<Cow<'a, [u8]>>, value: &'a [u8]) {
    match slot {
        None => *slot = Some(Cow::Borrowed(value)),
        Some(v) => v.to_mut().extend_from_slice(value),
    }
}

/// How the scan of one area ended.
struct Scanned {
    /// The code of an option whose length ran past the end of the area.
    truncated: Option<u8>,
    /// Whether an End option closed the area.
    ended: bool,
}

/// Calls `visit(code, value)` for every complete option of `area` up to End. Pad is skipped;
/// an option running past the end of the area stops the scan (there is nothing after it).
fn scan<'a>(bytes: &'a [u8], mut visit: impl FnMut(u8, &'a [u8])) -> Scanned {
    let mut rest = bytes;
    while let Some((&c, tail)) = rest.split_first() {
        match c {
            code::PAD => rest = tail,
            code::END => {
                return Scanned {
                    truncated: None,
                    ended: true,
                };
            }
            _ => {
                let Some((&len, tail)) = tail.split_first() else {
                    return Scanned {
                        truncated: Some(c),
                        ended: false,
                    };
                };
                let len = usize::from(len);
                if tail.len() < len {
                    return Scanned {
                        truncated: Some(c),
                        ended: false,
                    };
                }
                let (value, tail) = tail.split_at(len);
                visit(c, value);
                rest = tail;
            }
        }
    }
    Scanned {
        truncated: None,
        ended: false,
    }
}

/// A fixed-size option's value; a wrong length makes it absent and is counted.
fn fixed<const N: usize>(code: u8, value: Option<&[u8]>, skips: &mut Skips) -> Option<[u8; N]> {
    let v = value?;
    let typed = <[u8; N]>::try_from(v).ok();
    if typed.is_none() {
        skips.record(Skip::BadLength, Some(code));
    }
    typed
}

/// Whether a request cannot be answered without this option: the message type and the
/// client's identity. Everything else is skipped when malformed.
fn essential(code: u8) -> bool {
    matches!(code, code::MESSAGE_TYPE | code::CLIENT_ID)
}

/// A received BOOTP/DHCP message, parsed without copying: header fields and the options the
/// server uses, with option overload (52) and split options (RFC 3396) resolved.
///
/// Parsing is tolerant where RFC 2131 allows it: the request is usable when the BOOTP header,
/// option 53 and the client's identity (chaddr, option 61) parse. A malformed option that is
/// not one of those is skipped and counted ([`skips`](Self::skips)): a fixed-size option
/// (50, 51, 52, 54, 57) with the wrong length is treated as absent, option 52 outside 1–3 as
/// no overload, an option running past the end of its area is ignored, and a missing End is
/// accepted.
///
/// ```
/// use dhcp_server::{MessageType, Request};
///
/// // A minimal DISCOVER: BOOTP header, magic cookie, options 53 and 61, End.
/// let mut bytes = vec![0u8; 236];
/// bytes[0] = 1; // BOOTREQUEST
/// bytes[1] = 1; // Ethernet
/// bytes[2] = 6;
/// bytes[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
/// bytes[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
/// bytes.extend([99, 130, 83, 99, 53, 1, 1, 61, 3, 1, 2, 3, 255]);
///
/// let req = Request::parse(&bytes)?;
/// assert_eq!(req.message_type(), Some(MessageType::Discover));
/// assert_eq!(req.xid(), 0x1234_5678);
/// assert_eq!(req.mac().map(|m| m.to_string()).as_deref(), Some("02:00:00:00:00:01"));
/// assert_eq!(req.client_id(), Some(&[1, 2, 3][..]));
/// assert!(req.skips().is_empty());
/// # Ok::<(), dhcp_server::ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Request<'a> {
    bytes: &'a [u8],
    message_type: Option<MessageType>,
    server_id: Option<Ipv4Addr>,
    requested_addr: Option<Ipv4Addr>,
    lease_time: Option<u32>,
    max_message_size: Option<u16>,
    overload: u8,
    prl: Option<Cow<'a, [u8]>>,
    client_id: Option<Cow<'a, [u8]>>,
    relay_info: Option<Cow<'a, [u8]>>,
    hostname: Option<Cow<'a, [u8]>>,
    skips: Skips,
}

impl<'a> Request<'a> {
    /// Parses a datagram. Without the magic cookie the message parses as plain BOOTP: no
    /// options, so no [`message_type`](Self::message_type).
    ///
    /// # Errors
    /// [`ParseError`] when the header is short, `hlen` exceeds 16, or option 53 or 61 is
    /// truncated, or option 53 does not have length 1. Other malformed options are skipped
    /// (see [`Request`]).
    ///
    /// ```
    /// use dhcp_server::{ParseError, Request};
    ///
    /// let mut bytes = vec![0u8; 236];
    /// bytes[0] = 1;
    /// bytes.extend([99, 130, 83, 99, 53, 4, 1]); // length 4, one byte left
    /// assert!(matches!(Request::parse(&bytes), Err(ParseError::TruncatedOption { code: 53, .. })));
    ///
    /// // A truncated host name is only skipped.
    /// let mut bytes = vec![0u8; 236];
    /// bytes[0] = 1;
    /// bytes.extend([99, 130, 83, 99, 53, 1, 1, 12, 9, b'v', b'm']);
    /// let req = Request::parse(&bytes)?;
    /// assert_eq!(req.hostname(), None);
    /// assert_eq!(req.skips().total(), 1);
    /// # Ok::<(), ParseError>(())
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort { len: bytes.len() });
        }
        let hlen = bytes[2];
        if hlen > 16 {
            return Err(ParseError::BadHardwareLength { hlen });
        }
        let mut g = Gathered::default();
        let mut skips = Skips::default();
        let mut overload: Option<&[u8]> = None;
        let truncated = |scanned: &Scanned, area, skips: &mut Skips| match scanned.truncated {
            Some(code) if essential(code) => Err(ParseError::TruncatedOption { code, area }),
            Some(code) => {
                skips.record(Skip::Truncated, Some(code));
                Ok(())
            }
            None => Ok(()),
        };
        if let Some(options) = bytes
            .get(HEADER_LEN..)
            .and_then(|b| b.strip_prefix(&MAGIC_COOKIE[..]))
        {
            let scanned = scan(options, |c, v| {
                if c == code::OVERLOAD {
                    overload.get_or_insert(v);
                } else if let Some(slot) = g.slot(c) {
                    append(slot, v);
                }
            });
            truncated(&scanned, Area::Options, &mut skips)?;
            if scanned.truncated.is_none() && !scanned.ended {
                skips.record(Skip::NoEnd, None);
            }
        }
        let overload = match fixed::<1>(code::OVERLOAD, overload, &mut skips) {
            None => 0,
            Some([v @ 1..=3]) => v,
            Some(_) => {
                skips.record(Skip::BadOverload, Some(code::OVERLOAD));
                0
            }
        };
        // RFC 2131 §4.1: options field first, then `file`, then `sname`.
        if overload & 1 != 0 {
            let scanned = scan(&bytes[FILE], |c, v| {
                if let Some(slot) = g.slot(c) {
                    append(slot, v);
                }
            });
            truncated(&scanned, Area::File, &mut skips)?;
        }
        if overload & 2 != 0 {
            let scanned = scan(&bytes[SNAME], |c, v| {
                if let Some(slot) = g.slot(c) {
                    append(slot, v);
                }
            });
            truncated(&scanned, Area::Sname, &mut skips)?;
        }
        let message_type = match g.message_type.as_deref() {
            None => None,
            Some(&[t]) => Some(MessageType::from(t)),
            Some(v) => {
                return Err(ParseError::BadOptionLength {
                    code: code::MESSAGE_TYPE,
                    len: v.len(),
                });
            }
        };
        Ok(Self {
            bytes,
            message_type,
            server_id: fixed::<4>(code::SERVER_ID, g.server_id.as_deref(), &mut skips)
                .map(Ipv4Addr::from),
            requested_addr: fixed::<4>(
                code::REQUESTED_ADDR,
                g.requested_addr.as_deref(),
                &mut skips,
            )
            .map(Ipv4Addr::from),
            lease_time: fixed::<4>(code::LEASE_TIME, g.lease_time.as_deref(), &mut skips)
                .map(u32::from_be_bytes),
            max_message_size: fixed::<2>(code::MAX_MESSAGE_SIZE, g.max_size.as_deref(), &mut skips)
                .map(u16::from_be_bytes),
            overload,
            prl: g.prl,
            client_id: g.client_id,
            relay_info: g.relay_info,
            hostname: g.hostname,
            skips,
        })
    }

    /// The malformed options skipped while parsing, by reason.
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1;
    /// b.extend([99, 130, 83, 99, 53, 1, 3, 50, 2, 10, 0, 255]); // option 50 of length 2
    /// let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.requested_addr(), None); // treated as absent
    /// assert_eq!(req.skips().count(dhcp_server::Skip::BadLength), 1);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn skips(&self) -> Skips {
        self.skips
    }

    /// The datagram this request was parsed from.
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1;
    /// let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.as_bytes().len(), 236);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn u32_at(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[at..at + 4]);
        u32::from_be_bytes(b)
    }

    /// `op`: 1 (BOOTREQUEST) from clients and relays; the engine ignores anything else.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.op(), 1);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn op(&self) -> u8 {
        self.bytes[0]
    }
    /// `htype`, the hardware address type (1 = Ethernet).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.htype(), 1);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn htype(&self) -> u8 {
        self.bytes[1]
    }
    /// `hlen`, the hardware address length (at most 16, checked by [`parse`](Self::parse)).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.hlen(), 6);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn hlen(&self) -> u8 {
        self.bytes[2]
    }
    /// `hops`, incremented by relays.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.hops(), 1);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn hops(&self) -> u8 {
        self.bytes[3]
    }
    /// `xid`, the transaction id chosen by the client.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.xid(), 0x0102_0304);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn xid(&self) -> u32 {
        self.u32_at(4)
    }
    /// `secs`, seconds since the client started.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.secs(), 5);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn secs(&self) -> u16 {
        u16::from_be_bytes([self.bytes[8], self.bytes[9]])
    }
    /// `flags`; bit 15 is the broadcast flag.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.flags(), 0x8000);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.bytes[10], self.bytes[11]])
    }
    /// Whether the client set the broadcast flag.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert!(req.broadcast_flag());
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn broadcast_flag(&self) -> bool {
        self.flags() & 0x8000 != 0
    }
    /// `ciaddr`, the client's current address (renewing, rebinding, inform, release).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.ciaddr().to_string(), "10.0.0.9");
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.u32_at(12).into()
    }
    /// `yiaddr` (meaningless in requests, kept for completeness).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert!(req.yiaddr().is_unspecified());
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.u32_at(16).into()
    }
    /// `siaddr` (meaningless in requests, kept for completeness).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert!(req.siaddr().is_unspecified());
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn siaddr(&self) -> Ipv4Addr {
        self.u32_at(20).into()
    }
    /// `giaddr`, the relay agent's address, or 0.0.0.0 for a directly attached client.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.giaddr().to_string(), "10.0.0.254");
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn giaddr(&self) -> Ipv4Addr {
        self.u32_at(24).into()
    }
    /// The raw 16-byte `chaddr` field, copied unchanged into replies.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(&req.chaddr_field()[..7], &[2, 0, 0, 0, 0, 1, 0]);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn chaddr_field(&self) -> &'a [u8] {
        &self.bytes[28..44]
    }
    /// The client hardware address: the first `hlen` bytes of `chaddr`.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.chaddr(), &[2, 0, 0, 0, 0, 1]);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn chaddr(&self) -> &'a [u8] {
        &self.bytes[28..28 + usize::from(self.hlen())]
    }
    /// `htype` and `chaddr` together, for events and logs.
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1; b[1] = 1; b[2] = 6; b[28] = 0xaa;
    /// let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.hw_addr().to_string(), "aa:00:00:00:00:00");
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn hw_addr(&self) -> HwAddr {
        HwAddr::new(self.htype(), self.chaddr())
    }
    /// The client's MAC address when `chaddr` is Ethernet (htype 1, hlen 6): the lease key of
    /// MAC-pinned pools.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.mac().unwrap().to_string(), "02:00:00:00:00:01");
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn mac(&self) -> Option<MacAddr> {
        self.hw_addr().mac()
    }

    /// Option 53, if present.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.message_type(), Some(dhcp_server::MessageType::Request));
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn message_type(&self) -> Option<MessageType> {
        self.message_type
    }
    /// Option 54, the server the client addresses (SELECTING, DECLINE, RELEASE).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.server_id().unwrap().to_string(), "10.0.0.1");
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.server_id
    }
    /// Option 50, the address the client asks for.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.requested_addr().unwrap().to_string(), "10.0.0.9");
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn requested_addr(&self) -> Option<Ipv4Addr> {
        self.requested_addr
    }
    /// Option 51 in a request: the lease time the client would like, in seconds.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.requested_lease_time(), Some(3600));
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn requested_lease_time(&self) -> Option<u32> {
        self.lease_time
    }
    /// Option 57, the largest DHCP message the client accepts (IP and UDP headers included).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.max_message_size(), Some(1500));
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn max_message_size(&self) -> Option<u16> {
        self.max_message_size
    }
    /// Option 52: 0 (none), 1 (`file` holds options), 2 (`sname`), 3 (both).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.overload(), 0);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn overload(&self) -> u8 {
        self.overload
    }
    /// Option 55, the codes the client asks for, in its order of preference (empty if absent).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.parameter_request_list(), &[1, 3, 6]);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn parameter_request_list(&self) -> &[u8] {
        self.prl.as_deref().unwrap_or_default()
    }
    /// Whether the request carried option 55 at all.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert!(req.has_parameter_request_list());
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn has_parameter_request_list(&self) -> bool {
        self.prl.is_some()
    }
    /// Option 61, the client identifier, echoed in every reply (RFC 6842).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.client_id(), Some(&[1, 2, 3][..]));
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn client_id(&self) -> Option<&[u8]> {
        self.client_id.as_deref()
    }
    /// Option 82, relay agent information, echoed unchanged in every reply (RFC 3046).
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.relay_agent_info(), Some(&[1, 1, 7][..]));
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn relay_agent_info(&self) -> Option<&[u8]> {
        self.relay_info.as_deref()
    }
    /// Option 12, the host name the client announces.
    ///
    /// ```
    /// # let mut b = [1, 1, 6, 1, 1, 2, 3, 4, 0, 5, 0x80, 0, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    /// # b.extend([10, 0, 0, 254, 2, 0, 0, 0, 0, 1]); b.resize(236, 0);
    /// # b.extend([99, 130, 83, 99, 53, 1, 3, 54, 4, 10, 0, 0, 1, 50, 4, 10, 0, 0, 9, 51, 4, 0, 0, 14, 16, 57, 2, 5, 220]);
    /// # b.extend([55, 3, 1, 3, 6, 61, 3, 1, 2, 3, 82, 3, 1, 1, 7, 12, 3, b'v', b'm', b'1', 255]);
    /// # let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.hostname(), Some(&b"vm1"[..]));
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn hostname(&self) -> Option<&[u8]> {
        self.hostname.as_deref()
    }

    /// Any option by code, concatenated per RFC 3396 (allocating only when it was split).
    ///
    /// ```
    /// # let mut b = vec![0u8; 236]; b[0] = 1;
    /// // Option 60 split in two instances.
    /// b.extend([99, 130, 83, 99, 60, 2, b'a', b'b', 60, 1, b'c', 255]);
    /// let req = dhcp_server::Request::parse(&b)?;
    /// assert_eq!(req.option(60).as_deref(), Some(&b"abc"[..]));
    /// assert_eq!(req.option(77), None);
    /// # Ok::<(), dhcp_server::ParseError>(())
    /// ```
    pub fn option(&self, code: u8) -> Option<Cow<'a, [u8]>> {
        let mut out = None;
        let mut visit = |c: u8, v: &'a [u8]| {
            if c == code {
                append(&mut out, v);
            }
        };
        if let Some(options) = self
            .bytes
            .get(HEADER_LEN..)
            .and_then(|b| b.strip_prefix(&MAGIC_COOKIE[..]))
        {
            // Truncation was dealt with by `parse`: only complete options are visited.
            scan(options, &mut visit);
        }
        if self.overload & 1 != 0 {
            scan(&self.bytes[FILE], &mut visit);
        }
        if self.overload & 2 != 0 {
            scan(&self.bytes[SNAME], &mut visit);
        }
        out
    }
}

#[cfg(test)]
mod tests;
