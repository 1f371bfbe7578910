//! [`Reply`]: an OFFER, ACK or NAK decided by the engine, and its encoding.

use std::net::Ipv4Addr;

use crate::config::{Config, HostnamePolicy};
use crate::engine::Target;
use crate::leases::Lease;
use crate::options::{DEFAULT_ORDER, Plan, Value, code};
use crate::request::{BOOTREPLY, HEADER_LEN, MAGIC_COOKIE, MessageType, Request};

/// Replies are padded to at least this size: BOOTP's fixed message, below which some relays
/// and clients (the Linux in-kernel `ip=dhcp` client) drop them (RFC 1542 §2.1).
pub(crate) const MIN_REPLY_LEN: usize = 300;
/// Every client accepts IP datagrams of 576 bytes (RFC 2131 §2), of which IP and UDP take 28.
const MIN_CLIENT_DATAGRAM: usize = 576;
const IP_UDP_HEADERS: usize = 28;
const OPTIONS_START: usize = HEADER_LEN + 4;

/// Why a reply could not be encoded. `Copy`, for the packet path.
///
/// ```
/// use dhcp_server::EncodeError;
/// let e = EncodeError::BufferTooSmall { needed: 300, available: 10 };
/// assert_eq!(e.to_string(), "reply needs 300 bytes, buffer has 10");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Even the options that are never dropped exceed what the client accepts.
    #[error("reply needs {needed} bytes, the client accepts {limit}")]
    TooLarge {
        /// Bytes of the smallest reply.
        needed: usize,
        /// The client's limit.
        limit: usize,
    },
    /// The output buffer is too small (give it [`Reply::max_len`] bytes).
    #[error("reply needs {needed} bytes, buffer has {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
}

/// A reply decided by [`decide`](crate::decide): its type, addresses and destination, plus
/// what it needs to encode itself (the request and the configuration, borrowed).
///
/// Encoding follows RFC 2131 Table 3 for the header (`hops`, `secs`, `siaddr`, `sname`,
/// `file` zero; `xid`, `flags`, `giaddr`, `htype`, `hlen`, `chaddr` copied) and writes options
/// in this order: 53, 54, the client's parameter request list order (1 moved before 3 when
/// both go in), then every other configured option, 82 last, End; then pads to 300 bytes
/// (BOOTP's fixed message size, RFC 1542 §2.1). Option 61 and 82 are echoed. Option 3 is left out when the client asked
/// for 121 and 121 is configured (RFC 3442). When the client cannot take everything (option 57,
/// at least 576 bytes, bounded by the configured MTU), the lowest-priority options are
/// dropped, never 53, 54, 51, 61 or 82.
///
/// ```
/// # use std::time::Instant;
/// # use dhcp_server::*;
/// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
/// # let mut leases: StaticLeases =
/// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
/// # let mut b = vec![0u8; 236];
/// # b[..3].copy_from_slice(&[1, 1, 6]);
/// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
/// // A DISCOVER that asks for the router before the subnet mask.
/// b.extend([99, 130, 83, 99, 53, 1, 1, 55, 2, 3, 1, 255]);
/// let request = Request::parse(&b)?;
/// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
/// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
/// let wire = decision.reply().unwrap().to_vec()?;
/// // 53, 54, then 1 moved before 3 (no router configured: no option 3 at all), then the rest.
/// assert_eq!(&wire[249..251], &[1, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reply<'a> {
    message_type: MessageType,
    request: &'a Request<'a>,
    config: &'a Config,
    yiaddr: Ipv4Addr,
    ciaddr: Ipv4Addr,
    lease: Option<Lease>,
    target: Target,
    message: Option<&'static str>,
}

impl<'a> Reply<'a> {
    /// An OFFER or ACK (`lease` set: options 51/58/59, `yiaddr` = lease address), an ACK to
    /// INFORM (`lease` unset), or a NAK (`message` for option 56).
    pub(crate) fn new(
        message_type: MessageType,
        request: &'a Request<'a>,
        config: &'a Config,
        lease: Option<Lease>,
        target: Target,
    ) -> Self {
        let yiaddr = lease.as_ref().map_or(Ipv4Addr::UNSPECIFIED, Lease::addr);
        // Table 3: ciaddr is 0 in OFFER and NAK, the request's ciaddr in ACK.
        let ciaddr = if message_type == MessageType::Ack {
            request.ciaddr()
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        Self {
            message_type,
            request,
            config,
            yiaddr,
            ciaddr,
            lease,
            target,
            message: None,
        }
    }

    pub(crate) fn nak(
        request: &'a Request<'a>,
        config: &'a Config,
        target: Target,
        message: &'static str,
    ) -> Self {
        Self {
            message: Some(message),
            ..Self::new(MessageType::Nak, request, config, None, target)
        }
    }

    /// OFFER, ACK or NAK.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert_eq!(decision.reply().unwrap().message_type(), MessageType::Offer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }
    /// The address given to the client (0.0.0.0 in NAK and in ACK to INFORM).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert_eq!(decision.reply().unwrap().yiaddr().to_string(), "10.0.0.50");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.yiaddr
    }
    /// The `ciaddr` of the reply (the request's in ACK, else 0.0.0.0).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert!(decision.reply().unwrap().ciaddr().is_unspecified()); // 0 in an OFFER
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.ciaddr
    }
    /// Where to send it.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert_eq!(decision.reply().unwrap().target(), Target::Broadcast);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn target(&self) -> Target {
        self.target
    }
    /// The lease behind an OFFER or ACK to REQUEST.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert_eq!(decision.reply().unwrap().lease().unwrap().addr().to_string(), "10.0.0.50");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The largest reply this client accepts: option 57 when it sent one (at least 576),
    /// else 576, bounded by the configured MTU; minus 28 bytes of IP and UDP headers.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// assert_eq!(decision.reply().unwrap().max_len(), 548); // no option 57: 576 - 28
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_len(&self) -> usize {
        let client = self
            .request
            .max_message_size()
            .map_or(MIN_CLIENT_DATAGRAM, usize::from);
        let link = self.config.mtu().map_or(1500, usize::from);
        client.min(link).max(MIN_CLIENT_DATAGRAM) - IP_UDP_HEADERS
    }

    fn is_nak(&self) -> bool {
        self.message_type == MessageType::Nak
    }

    /// The value of `code` in this reply, if it has one. 53, 54 and 82 are placed by
    /// [`plan`](Self::plan) itself.
    fn value(&self, code: u8, skip_router: bool) -> Option<Value<'_>> {
        let lease_time = self
            .lease
            .as_ref()
            .map(|l| l.lease_time().unwrap_or(self.config.lease_time()));
        let (t1, t2) = self.config.timers_permille();
        match code {
            code::LEASE_TIME => lease_time.map(|t| Value::U32(t.as_secs())),
            code::RENEWAL_TIME => lease_time
                .filter(|t| !t.is_infinite())
                .map(|t| Value::U32(t.fraction(t1))),
            code::REBINDING_TIME => lease_time
                .filter(|t| !t.is_infinite())
                .map(|t| Value::U32(t.fraction(t2))),
            code::HOSTNAME => match self.config.hostname_policy() {
                HostnamePolicy::FromLease => self
                    .lease
                    .as_ref()
                    .and_then(Lease::hostname)
                    .map(|h| Value::Raw(h.as_bytes())),
                HostnamePolicy::Omit => None,
            },
            code::CLIENT_ID => self.request.client_id().map(Value::Raw),
            code::ROUTER if skip_router => None,
            code::MESSAGE_TYPE | code::SERVER_ID | code::RELAY_AGENT_INFO | code::MESSAGE => None,
            c => self.config.encoded_option(c).map(Value::Encoded),
        }
    }

    fn plan(&self) -> Plan<'_> {
        let mut plan = Plan::new();
        plan.push(code::MESSAGE_TYPE, Value::U8(self.message_type.into()));
        plan.push(code::SERVER_ID, Value::U32(self.config.server_id().into()));
        if self.is_nak() {
            // RFC 2131 Table 3: a NAK carries nothing but 53, 54, 56, 61 and 82.
            if let Some(m) = self.message {
                plan.push(code::MESSAGE, Value::Raw(m.as_bytes()));
            }
        } else {
            let prl = self.request.parameter_request_list();
            let skip_router = prl.contains(&code::CLASSLESS_ROUTES)
                && self.config.encoded_option(code::CLASSLESS_ROUTES).is_some();
            for &c in prl {
                if c == code::ROUTER && !skip_router {
                    // RFC 2132 §3.3: the subnet mask MUST come before the router option.
                    if let Some(v) = self.value(code::SUBNET_MASK, skip_router) {
                        plan.push(code::SUBNET_MASK, v);
                    }
                }
                if let Some(v) = self.value(c, skip_router) {
                    plan.push(c, v);
                }
            }
            for c in DEFAULT_ORDER {
                if let Some(v) = self.value(c, skip_router) {
                    plan.push(c, v);
                }
            }
        }
        if let Some(id) = self.request.client_id() {
            plan.push(code::CLIENT_ID, Value::Raw(id));
        }
        if let Some(info) = self.request.relay_agent_info() {
            plan.push(code::RELAY_AGENT_INFO, Value::Raw(info));
        }
        plan
    }

    /// Encodes the reply into `buf` and returns its length (at least 300 bytes, at most
    /// [`max_len`](Self::max_len)).
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`] when even the required options exceed the client's limit;
    /// [`EncodeError::BufferTooSmall`] when `buf` is shorter than the reply.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// let mut buf = [0u8; 1500];
    /// let len = decision.reply().unwrap().encode(&mut buf)?;
    /// assert_eq!(&buf[..4], &[2, 1, 6, 0]); // BOOTREPLY, Ethernet, hlen 6, hops 0
    /// assert!(len >= 300); // padded
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let limit = self.max_len();
        let mut plan = self.plan();
        plan.fit(limit - OPTIONS_START)
            .map_err(|needed| EncodeError::TooLarge {
                needed: OPTIONS_START + needed,
                limit,
            })?;
        let used = OPTIONS_START + plan.wire_len();
        let len = used.max(MIN_REPLY_LEN);
        if buf.len() < len {
            return Err(EncodeError::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        }
        let req = self.request.as_bytes();
        let out = &mut buf[..len];
        out[0] = BOOTREPLY;
        out[1] = self.request.htype();
        out[2] = self.request.hlen();
        out[3] = 0; // hops
        out[4..8].copy_from_slice(&req[4..8]); // xid
        out[8..10].fill(0); // secs
        let mut flags = self.request.flags();
        if self.is_nak() && !self.request.giaddr().is_unspecified() {
            // RFC 2131 §4.3.2: a NAK through a relay asks it to broadcast.
            flags |= 0x8000;
        }
        out[10..12].copy_from_slice(&flags.to_be_bytes());
        out[12..16].copy_from_slice(&self.ciaddr.octets());
        out[16..20].copy_from_slice(&self.yiaddr.octets());
        out[20..24].fill(0); // siaddr: no next server
        out[24..28].copy_from_slice(&req[24..28]); // giaddr
        out[28..44].copy_from_slice(self.request.chaddr_field());
        out[44..HEADER_LEN].fill(0); // sname, file
        out[HEADER_LEN..OPTIONS_START].copy_from_slice(&MAGIC_COOKIE);
        let written = plan.write(&mut out[OPTIONS_START..]);
        out[OPTIONS_START + written..].fill(0);
        Ok(len)
    }

    /// [`encode`](Self::encode) into a new vector.
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`], as [`encode`](Self::encode).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use dhcp_server::*;
    /// # let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
    /// # let mut leases: StaticLeases =
    /// #     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
    /// # let mut b = vec![0u8; 236];
    /// # b[..3].copy_from_slice(&[1, 1, 6]);
    /// # b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    /// # b.extend([99, 130, 83, 99, 53, 1, 1, 255]); // DISCOVER
    /// # let request = Request::parse(&b)?;
    /// # let ctx = Context::new(1, "0.0.0.0:68".parse()?, [255; 4].into());
    /// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
    /// let wire = decision.reply().unwrap().to_vec()?;
    /// assert_eq!(&wire[236..240], &[99, 130, 83, 99]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = vec![0u8; self.max_len()];
        let len = self.encode(&mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }
}
