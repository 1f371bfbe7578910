//! Test support, behind the `testutil` feature: [`check_reply`], the reply invariants every
//! reply of the engine must satisfy, shared by the crate's property tests and its fuzz
//! target (and usable by embedders' own fuzzers). Not needed to run a server.
//!
//! The body of a fuzz target (`fuzz/fuzz_targets/decide.rs` runs it with more lease sources,
//! contexts and configurations):
//! ```
//! use std::time::Instant;
//! use dhcp_server::{decide, testutil::check_reply, Config, Context, StaticLeases, Request};
//!
//! fn fuzz_one(data: &[u8], config: &Config, leases: &mut StaticLeases) {
//!     let Ok(request) = Request::parse(data) else { return };
//!     let ctx = Context::new(2, "0.0.0.0:68".parse().unwrap(), [255; 4].into());
//!     if let Some(reply) = decide(&request, &ctx, config, leases, Instant::now()).reply() {
//!         if let Err(violation) = check_reply(config, &request, reply) {
//!             panic!("reply invariant broken: {violation}");
//!         }
//!     }
//! }
//!
//! let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
//! let mut leases = StaticLeases::new();
//! fuzz_one(&[1, 2, 3], &config, &mut leases); // garbage: no request, nothing to check
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::Ipv4Addr;

use dhcproto::v4::{Decodable, Decoder, Message};

use crate::config::Config;
use crate::engine::Target;
use crate::reply::{EncodeError, MIN_REPLY_LEN, Reply};
use crate::request::{BOOTREPLY, HEADER_LEN, MAGIC_COOKIE, MessageType, Request};

#[cfg(test)]
mod builders;
#[cfg(test)]
pub(crate) use builders::*;

/// Every client accepts IP datagrams of 576 bytes (RFC 2131 §2).
const MIN_CLIENT_DATAGRAM: usize = 576;
/// What IP and UDP headers take of a datagram.
const IP_UDP_HEADERS: usize = 28;
/// The link MTU assumed when the configuration sets none.
const DEFAULT_MTU: usize = 1500;

/// Encodes `reply`, the engine's answer to `request` under `config`, and checks the reply
/// invariants on the bytes. Returns the first violation, described with the reply's option
/// codes.
///
/// The invariants, each stated independently of the encoder:
/// - the reply encodes, unless even its required options exceed the client's limit
///   ([`EncodeError::TooLarge`], which is then not a violation);
/// - it decodes again, with dhcproto and with [`Request::parse`];
/// - it is at least 300 bytes and at most what the client accepts: option 57 (at least
///   576) bounded by the configured MTU, minus 28 bytes of IP and UDP headers;
/// - `op` is BOOTREPLY, `hops` 0, `xid`, `giaddr` and `chaddr` are the request's;
/// - options 53 and 54 come first, 54 is the configured server identifier; no 50, 52, 55,
///   57, and no zero-length option;
/// - 61 is echoed when the request had one (RFC 6842), 82 echoed and last (RFC 3046);
/// - a NAK carries only 53, 54, 56, 61, 82 and `yiaddr` 0; an ACK to a REQUEST has an
///   address and a lease time (51); an ACK to an INFORM has neither; an OFFER has 51 and
///   `ciaddr` 0; nothing else is a reply;
/// - relayed requests are answered to the relay (`giaddr`), others never; a unicast goes to
///   the request's `ciaddr` and is never a NAK.
///
/// # Errors
/// A description of the first invariant the reply breaks.
///
/// ```
/// use std::time::Instant;
/// use dhcp_server::{decide, testutil::check_reply, Config, Context, Lease, Request, StaticLeases};
///
/// let config = Config::builder("10.0.0.1".parse()?, "10.0.0.0/24".parse()?).build()?;
/// let mut leases: StaticLeases =
///     [("02:00:00:00:00:01".parse()?, Lease::new("10.0.0.50".parse()?))].into_iter().collect();
/// let ctx = Context::new(2, "0.0.0.0:68".parse()?, [255; 4].into());
///
/// // A DISCOVER with a client identifier.
/// let mut bytes = vec![0u8; 236];
/// bytes[..3].copy_from_slice(&[1, 1, 6]);
/// bytes[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
/// bytes.extend([99, 130, 83, 99, 53, 1, 1, 61, 3, 1, 2, 3, 255]);
///
/// let request = Request::parse(&bytes)?;
/// let decision = decide(&request, &ctx, &config, &mut leases, Instant::now());
/// let reply = decision.reply().expect("an offer");
/// assert_eq!(check_reply(&config, &request, reply), Ok(()));
///
/// // Checked against another server's configuration, the reply names the wrong server.
/// let other = Config::builder("10.0.0.2".parse()?, "10.0.0.0/24".parse()?).build()?;
/// let violation = check_reply(&other, &request, reply).unwrap_err();
/// assert!(violation.starts_with("54 is not the server identifier"), "{violation}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_reply(
    config: &Config,
    request: &Request<'_>,
    reply: &Reply<'_>,
) -> Result<(), String> {
    let wire = match reply.to_vec() {
        Ok(wire) => wire,
        Err(EncodeError::TooLarge { needed, limit }) if needed > limit => return Ok(()),
        Err(e) => {
            return Err(format!(
                "a {} does not encode: {e}",
                reply.message_type().name()
            ));
        }
    };
    let opts = instances(&wire)?;
    decodes(&wire)
        .and_then(|()| size(config, request, &wire))
        .and_then(|()| header(request, &wire))
        .and_then(|()| options(config, request, &opts))
        .and_then(|()| contents(request, reply, &wire, &opts))
        .and_then(|()| target(request, reply))
        .map_err(|what| format!("{what}: option codes {:?}", codes_of(&opts)))
}

fn decodes(wire: &[u8]) -> Result<(), String> {
    Message::decode(&mut Decoder::new(wire))
        .map_err(|e| format!("dhcproto cannot decode it ({e})"))?;
    Request::parse(wire).map_err(|e| format!("our parser cannot read it ({e})"))?;
    Ok(())
}

fn size(config: &Config, request: &Request<'_>, wire: &[u8]) -> Result<(), String> {
    let client = request
        .max_message_size()
        .map_or(MIN_CLIENT_DATAGRAM, usize::from);
    let link = config.mtu().map_or(DEFAULT_MTU, usize::from);
    let limit = client.min(link).max(MIN_CLIENT_DATAGRAM) - IP_UDP_HEADERS;
    if (MIN_REPLY_LEN..=limit).contains(&wire.len()) {
        Ok(())
    } else {
        Err(format!(
            "{} bytes, outside {MIN_REPLY_LEN}..={limit}",
            wire.len()
        ))
    }
}

fn header(request: &Request<'_>, wire: &[u8]) -> Result<(), String> {
    let req = request.as_bytes();
    if wire[0] != BOOTREPLY || wire[3] != 0 || wire[4..8] != req[4..8] {
        return Err("op, hops or xid wrong".into());
    }
    if wire[24..44] != req[24..44] {
        return Err("giaddr or chaddr not copied".into());
    }
    Ok(())
}

/// The options every reply has, lacks or echoes.
fn options(config: &Config, request: &Request<'_>, opts: &[(u8, &[u8])]) -> Result<(), String> {
    let codes = codes_of(opts);
    if codes.first() != Some(&53) || codes.get(1) != Some(&54) {
        return Err("53 and 54 must come first".into());
    }
    if concat(opts, 54).as_deref() != Some(&config.server_id().octets()[..]) {
        return Err("54 is not the server identifier".into());
    }
    if let Some(bad) = codes.iter().find(|c| matches!(c, 50 | 52 | 55 | 57)) {
        return Err(format!("option {bad} in a reply"));
    }
    if opts.iter().any(|(_, v)| v.is_empty()) {
        return Err("zero-length option".into());
    }
    if let Some(id) = request.client_id().filter(|v| !v.is_empty())
        && concat(opts, 61).as_deref() != Some(id)
    {
        return Err("61 not echoed".into());
    }
    if let Some(info) = request.relay_agent_info().filter(|v| !v.is_empty()) {
        if concat(opts, 82).as_deref() != Some(info) {
            return Err("82 not echoed".into());
        }
        if codes.last() != Some(&82) {
            return Err("82 not last".into());
        }
    }
    Ok(())
}

/// What each reply type carries.
fn contents(
    request: &Request<'_>,
    reply: &Reply<'_>,
    wire: &[u8],
    opts: &[(u8, &[u8])],
) -> Result<(), String> {
    let yiaddr = Ipv4Addr::new(wire[16], wire[17], wire[18], wire[19]);
    let has_lease_time = opts.iter().any(|(c, _)| *c == 51);
    let fail = |what: &str| Err(what.to_owned());
    match reply.message_type() {
        MessageType::Nak
            if opts
                .iter()
                .any(|(c, _)| !matches!(c, 53 | 54 | 56 | 61 | 82)) =>
        {
            fail("NAK with other options")
        }
        MessageType::Nak if !yiaddr.is_unspecified() => fail("NAK with yiaddr"),
        MessageType::Ack
            if request.message_type() == Some(MessageType::Request)
                && (yiaddr.is_unspecified() || !has_lease_time) =>
        {
            fail("ACK to a REQUEST without an address or a lease time")
        }
        MessageType::Ack
            if request.message_type() != Some(MessageType::Request)
                && (!yiaddr.is_unspecified() || has_lease_time) =>
        {
            fail("ACK to an INFORM with an address or a lease time")
        }
        MessageType::Offer if !has_lease_time || wire[12..16] != [0; 4] => {
            fail("OFFER without a lease time or with ciaddr")
        }
        MessageType::Nak | MessageType::Ack | MessageType::Offer => Ok(()),
        other => Err(format!("a {} is not a reply", other.name())),
    }
}

/// RFC 2131 §4.1 destinations.
fn target(request: &Request<'_>, reply: &Reply<'_>) -> Result<(), String> {
    let giaddr = request.giaddr();
    match reply.target() {
        Target::Relay(a) if a == giaddr => Ok(()),
        Target::Relay(a) => Err(format!("sent to relay {a}, giaddr is {giaddr}")),
        _ if !giaddr.is_unspecified() => Err("relayed request not answered to the relay".into()),
        Target::Unicast(_) if reply.message_type() == MessageType::Nak => Err("unicast NAK".into()),
        Target::Unicast(a) if a != request.ciaddr() => Err("unicast not to ciaddr".into()),
        Target::Unicast(_) | Target::Broadcast => Ok(()),
    }
}

/// Every option instance of an encoded reply's options field, in order (Pad skipped, up to
/// End).
fn instances(wire: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let start = HEADER_LEN + MAGIC_COOKIE.len();
    if wire.get(HEADER_LEN..start) != Some(&MAGIC_COOKIE[..]) {
        return Err("no magic cookie".into());
    }
    let mut out = Vec::new();
    let mut rest = &wire[start..];
    loop {
        match rest {
            [] => return Err(format!("no End option after {:?}", codes_of(&out))),
            [255, ..] => return Ok(out),
            [0, tail @ ..] => rest = tail,
            [code, len, tail @ ..] if tail.len() >= usize::from(*len) => {
                let (value, tail) = tail.split_at(usize::from(*len));
                out.push((*code, value));
                rest = tail;
            }
            [code, ..] => return Err(format!("option {code} runs past the end")),
        }
    }
}

fn codes_of(opts: &[(u8, &[u8])]) -> Vec<u8> {
    opts.iter().map(|(c, _)| *c).collect()
}

/// The RFC 3396 concatenation of every instance of `code`, `None` when absent.
fn concat(opts: &[(u8, &[u8])], code: u8) -> Option<Vec<u8>> {
    let mut parts = opts.iter().filter(|(c, _)| *c == code).peekable();
    parts.peek()?;
    Some(parts.flat_map(|(_, v)| v.iter().copied()).collect())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::decide;

    /// The checker must be able to fail: a reply checked against the wrong configuration
    /// (another server identifier) breaks the option 54 invariant.
    #[test]
    fn a_reply_naming_another_server_is_a_violation() {
        let p = Packet::new(DISCOVER);
        let bytes = p.bytes();
        let request = Request::parse(&bytes).unwrap();
        let ours = config().build().unwrap();
        let mut leases = leases();
        let decision = decide(&request, &broadcast(), &ours, &mut leases, Instant::now());
        let reply = decision.reply().expect("an offer");
        assert_eq!(check_reply(&ours, &request, reply), Ok(()));
        let other = crate::Config::builder([10, 0, 0, 2].into(), "10.0.0.0/24".parse().unwrap())
            .build()
            .unwrap();
        let err = check_reply(&other, &request, reply).unwrap_err();
        assert!(err.starts_with("54 is not the server identifier"), "{err}");
    }

    /// The size limit is option 57 bounded by the configured MTU: a reply that fits the
    /// client's 1500 bytes breaks the limit of a 600-byte link.
    #[test]
    fn the_size_limit_follows_option_57_and_the_mtu() {
        let bytes = Packet::new(DISCOVER).max_size(1500).bytes();
        let request = Request::parse(&bytes).unwrap();
        let big = config()
            .dns((1..=100).map(|i| Ipv4Addr::new(10, 0, 3, i)))
            .build()
            .unwrap();
        let mut leases = leases();
        let decision = decide(&request, &broadcast(), &big, &mut leases, Instant::now());
        let reply = decision.reply().expect("an offer");
        assert!(reply.to_vec().unwrap().len() > 600);
        assert_eq!(check_reply(&big, &request, reply), Ok(()));
        let small_link = config().mtu(600).build().unwrap();
        let err = check_reply(&small_link, &request, reply).unwrap_err();
        assert!(err.contains("outside 300..=572"), "{err}");
    }

    #[test]
    fn truncated_option_areas_are_reported_not_panicked_on() {
        let mut wire = vec![0u8; 240];
        wire[236..240].copy_from_slice(&MAGIC_COOKIE);
        wire.extend([53, 1, 2, 54, 4, 10]);
        assert_eq!(instances(&wire).unwrap_err(), "option 54 runs past the end");
        wire.truncate(243);
        assert!(instances(&wire).unwrap_err().starts_with("no End option"));
    }
}
