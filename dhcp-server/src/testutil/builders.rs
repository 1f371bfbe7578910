//! Builders for unit tests: raw request packets (written byte by byte, independent of our
//! encoder), a standard configuration, and reply inspection through dhcproto's decoder.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use dhcproto::v4::{Decodable, Decoder, Message};

use crate::{
    Config, Context, Event, Lease, LeaseSource, MacAddr, Request, Route, StaticLeases, Target,
    decide,
};

pub(crate) const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub(crate) const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub(crate) const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(crate) const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

pub(crate) const DISCOVER: u8 = 1;
pub(crate) const REQUEST: u8 = 3;
pub(crate) const DECLINE: u8 = 4;
pub(crate) const RELEASE: u8 = 7;
pub(crate) const INFORM: u8 = 8;

/// A request packet under construction.
#[derive(Clone)]
pub(crate) struct Packet {
    header: [u8; 236],
    options: Vec<u8>,
    end: bool,
}

impl Packet {
    /// op BOOTREQUEST, Ethernet, chaddr `MAC_A`, xid 0x1234, option 53 = `message_type`.
    pub(crate) fn new(message_type: u8) -> Self {
        let mut header = [0u8; 236];
        header[..3].copy_from_slice(&[1, 1, 6]);
        header[4..8].copy_from_slice(&0x1234u32.to_be_bytes());
        header[28..34].copy_from_slice(&MAC_A);
        Self {
            header,
            options: vec![53, 1, message_type],
            end: true,
        }
    }
    /// No options at all, not even 53.
    pub(crate) fn bootp() -> Self {
        let mut p = Self::new(0);
        p.options.clear();
        p
    }
    pub(crate) fn op(mut self, op: u8) -> Self {
        self.header[0] = op;
        self
    }
    pub(crate) fn mac(mut self, mac: [u8; 6]) -> Self {
        self.header[28..34].copy_from_slice(&mac);
        self
    }
    pub(crate) fn htype(mut self, htype: u8, hlen: u8) -> Self {
        self.header[1] = htype;
        self.header[2] = hlen;
        self
    }
    pub(crate) fn hops(mut self, hops: u8) -> Self {
        self.header[3] = hops;
        self
    }
    pub(crate) fn secs(mut self, secs: u16) -> Self {
        self.header[8..10].copy_from_slice(&secs.to_be_bytes());
        self
    }
    pub(crate) fn broadcast_flag(mut self) -> Self {
        self.header[10] |= 0x80;
        self
    }
    pub(crate) fn ciaddr(mut self, a: Ipv4Addr) -> Self {
        self.header[12..16].copy_from_slice(&a.octets());
        self
    }
    pub(crate) fn giaddr(mut self, a: Ipv4Addr) -> Self {
        self.header[24..28].copy_from_slice(&a.octets());
        self
    }
    pub(crate) fn sname(mut self, area: &[u8]) -> Self {
        self.header[44..44 + area.len()].copy_from_slice(area);
        self
    }
    pub(crate) fn file(mut self, area: &[u8]) -> Self {
        self.header[108..108 + area.len()].copy_from_slice(area);
        self
    }
    /// Appends one raw option (no splitting).
    pub(crate) fn opt(mut self, code: u8, value: &[u8]) -> Self {
        self.options.push(code);
        self.options.push(u8::try_from(value.len()).unwrap());
        self.options.extend_from_slice(value);
        self
    }
    pub(crate) fn requested(self, a: Ipv4Addr) -> Self {
        self.opt(50, &a.octets())
    }
    pub(crate) fn server_id(self, a: Ipv4Addr) -> Self {
        self.opt(54, &a.octets())
    }
    pub(crate) fn prl(self, codes: &[u8]) -> Self {
        self.opt(55, codes)
    }
    pub(crate) fn max_size(self, size: u16) -> Self {
        self.opt(57, &size.to_be_bytes())
    }
    pub(crate) fn no_end(mut self) -> Self {
        self.end = false;
        self
    }
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut b = self.header.to_vec();
        b.extend([99, 130, 83, 99]);
        b.extend(&self.options);
        if self.end {
            b.push(255);
        }
        b
    }
}

/// 10.0.0.1 serving 10.0.0.0/24 with router, DNS, domain, search list, NTP, one-hour leases.
pub(crate) fn config() -> crate::ConfigBuilder {
    Config::builder(SERVER, "10.0.0.0/24".parse().unwrap())
        .routers([SERVER])
        .dns([SERVER, Ipv4Addr::new(1, 1, 1, 1)])
        .domain_name("vm.example")
        .domain_search(["vm.example", "example"])
        .ntp([Ipv4Addr::new(10, 0, 0, 2)])
}

pub(crate) fn routes() -> Vec<Route> {
    vec![Route::new(
        "172.16.0.0/12".parse().unwrap(),
        Ipv4Addr::new(10, 0, 0, 254),
    )]
}

/// `MAC_A` → `ADDR_A`.
pub(crate) fn leases() -> StaticLeases {
    [(MacAddr::new(MAC_A), Lease::new(ADDR_A))]
        .into_iter()
        .collect()
}

/// A broadcast from an unconfigured client.
pub(crate) fn broadcast() -> Context {
    Context::new(
        2,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        Ipv4Addr::BROADCAST,
    )
}

/// A unicast from `from` to the server.
pub(crate) fn unicast(from: Ipv4Addr) -> Context {
    Context::new(2, SocketAddrV4::new(from, 68), SERVER)
}

/// What the engine did, with the reply encoded.
pub(crate) struct Outcome {
    pub(crate) event: Event,
    pub(crate) target: Option<Target>,
    pub(crate) wire: Option<Vec<u8>>,
}

impl Outcome {
    pub(crate) fn reply(&self) -> Message {
        decode(self.wire.as_deref().expect("a reply"))
    }
}

pub(crate) fn run(
    packet: &Packet,
    ctx: &Context,
    config: &Config,
    leases: &mut impl LeaseSource,
    now: Instant,
) -> Outcome {
    let bytes = packet.bytes();
    let request = Request::parse(&bytes).expect("test packets parse");
    let (reply, event) = decide(&request, ctx, config, leases, now).into_parts();
    Outcome {
        event,
        target: reply.as_ref().map(crate::Reply::target),
        wire: reply.map(|r| r.to_vec().expect("encodes")),
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).expect("replies decode with dhcproto")
}

/// The option codes of an encoded reply, in wire order (Pad skipped, End included).
pub(crate) fn codes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 240;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => {
                out.push(255);
                break;
            }
            c => {
                out.push(c);
                i += 2 + usize::from(bytes[i + 1]);
            }
        }
    }
    out
}

/// The raw value of the first instance of `code` in an encoded reply.
pub(crate) fn raw_option(bytes: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut i = 240;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => return None,
            c => {
                let len = usize::from(bytes[i + 1]);
                if c == code {
                    return Some(bytes[i + 2..i + 2 + len].to_vec());
                }
                i += 2 + len;
            }
        }
    }
    None
}
