//! The `dhcp-server` packet path without the socket: `Request::parse` → `decide` →
//! `Reply::encode`, for the two messages of a DORA as perfdhcp sends them (relayed, with a
//! parameter request list and a client-id), over 10,000 clients, with `StaticLeases` and with
//! a warm `DynamicPool`. For context, the same messages through `dhcproto` (decode the request,
//! build and encode the reply), the codec a server built directly on that crate would pay.
//! Results and the command are recorded in docs/performance.md.
//!
//! Run: `cargo bench -p vmdhcp-benches --bench dhcp`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use dhcp_server::{
    Config, Context, DynamicPool, Lease, LeaseSource, LeaseTime, MacAddr, MessageType, Request,
    StaticLeases, decide,
};
use dhcproto::v4::{self, DhcpOption, Message, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use vmdhcp_benches::perfdhcp::{DEFAULT_BASE, static_assignments};

const CLIENTS: u32 = 10_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const FIRST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const LAST: Ipv4Addr = Ipv4Addr::new(10, 99, 255, 250);

fn config() -> Config {
    Config::builder(SERVER, "10.99.0.0/16".parse().expect("valid subnet"))
        .routers([SERVER])
        .dns([SERVER])
        .domain_name("bench.test")
        .lease_time(LeaseTime::from_secs(3600))
        .authoritative(true)
        .build()
        .expect("valid config")
}

/// A relayed request as perfdhcp 2.2 builds it: hops 1, giaddr set, options 53, 55 (the
/// same seven codes), 61 (type 1 + chaddr), and for a REQUEST 50 and 54. Padded to 300 bytes
/// like a captured one.
fn request(mac: [u8; 6], xid: u32, message_type: u8, requested: Option<Ipv4Addr>) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[..4].copy_from_slice(&[1, 1, 6, 1]);
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[24..28].copy_from_slice(&RELAY.octets());
    b[28..34].copy_from_slice(&mac);
    b.extend([99, 130, 83, 99, 53, 1, message_type]);
    b.extend([55, 7, 1, 28, 2, 3, 15, 6, 12]);
    b.extend([61, 7, 1]);
    b.extend(mac);
    if let Some(addr) = requested {
        b.extend([50, 4]);
        b.extend(addr.octets());
        b.extend([54, 4]);
        b.extend(SERVER.octets());
    }
    b.push(255);
    b.resize(b.len().max(300), 0);
    b
}

/// perfdhcp sends to 255.255.255.255 from the relay's port 67.
fn context() -> Context {
    Context::new(
        2,
        std::net::SocketAddrV4::new(RELAY, 67),
        Ipv4Addr::BROADCAST,
    )
}

/// The DISCOVERs and REQUESTs of every client; a REQUEST asks for `addr_of(client)`.
struct Traffic {
    discovers: Vec<Vec<u8>>,
    requests: Vec<Vec<u8>>,
}

impl Traffic {
    fn new(addrs: &[([u8; 6], Ipv4Addr)]) -> Self {
        let xid = |i: usize| u32::try_from(i).expect("fits") | 0x5a00_0000;
        Self {
            discovers: addrs
                .iter()
                .enumerate()
                .map(|(i, (mac, _))| request(*mac, xid(i), 1, None))
                .collect(),
            requests: addrs
                .iter()
                .enumerate()
                .map(|(i, (mac, addr))| request(*mac, xid(i), 3, Some(*addr)))
                .collect(),
        }
    }
}

/// One message through the whole path; returns the reply's length.
fn serve(
    packet: &[u8],
    config: &Config,
    leases: &mut impl LeaseSource,
    now: Instant,
    out: &mut [u8],
) -> usize {
    let request = Request::parse(packet).expect("well-formed");
    let decision = decide(&request, &context(), config, leases, now);
    decision
        .reply()
        .expect("a reply")
        .encode(out)
        .expect("fits")
}

/// Cycles through the clients so lookups are not all one hot cache line.
struct Cycle(usize, usize);

impl Cycle {
    fn next(&mut self) -> usize {
        self.0 = (self.0 + 1) % self.1;
        self.0
    }
}

/// DISCOVER → OFFER and REQUEST → ACK, each over every client in turn.
fn dora(
    g: &mut BenchmarkGroup<'_, WallTime>,
    traffic: &Traffic,
    config: &Config,
    leases: &mut impl LeaseSource,
    now: Instant,
    out: &mut [u8; 1500],
) {
    let n = traffic.discovers.len();
    for (name, packets) in [
        ("discover_offer", &traffic.discovers),
        ("request_ack", &traffic.requests),
    ] {
        let mut i = Cycle(0, n);
        g.bench_function(name, |b| {
            b.iter(|| serve(black_box(&packets[i.next()]), config, leases, now, out));
        });
    }
}

fn static_leases(c: &mut Criterion) {
    let assignments = static_assignments(DEFAULT_BASE, CLIENTS, FIRST);
    let traffic = Traffic::new(&assignments);
    let config = config();
    let mut leases: StaticLeases = assignments
        .iter()
        .map(|(mac, addr)| (MacAddr::new(*mac), Lease::new(*addr)))
        .collect();
    let now = Instant::now();
    let mut out = [0u8; 1500];
    let n = traffic.discovers.len();

    let mut g = c.benchmark_group("dhcp_static_10k");
    g.throughput(Throughput::Elements(1));
    dora(&mut g, &traffic, &config, &mut leases, now, &mut out);
    // The three stages of a DISCOVER on their own, to see where the time goes.
    let mut i = Cycle(0, n);
    g.bench_function("parse_discover", |b| {
        b.iter(|| {
            Request::parse(black_box(&traffic.discovers[i.next()]))
                .expect("well-formed")
                .xid()
        });
    });
    let parsed: Vec<Request<'_>> = traffic
        .discovers
        .iter()
        .map(|p| Request::parse(p).expect("well-formed"))
        .collect();
    let mut i = Cycle(0, n);
    g.bench_function("decide_discover", |b| {
        b.iter(|| {
            let d = decide(
                black_box(&parsed[i.next()]),
                &context(),
                &config,
                &mut leases,
                now,
            );
            d.event().addr()
        });
    });
    let mut i = Cycle(0, n);
    g.bench_function("encode_offer", |b| {
        b.iter_batched_ref(
            || decide(&parsed[i.next()], &context(), &config, &mut leases, now),
            |d| d.reply().expect("a reply").encode(&mut out).expect("fits"),
            criterion::BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn dynamic_pool(c: &mut Criterion) {
    let config = config();
    let mut pool =
        ipam::Pool::new("10.99.0.0/16".parse().expect("valid"), FIRST, LAST).expect("valid range");
    pool.reserve(SERVER).expect("in range");
    let mut leases = DynamicPool::new(pool);
    let now = Instant::now();
    let mut out = [0u8; 1500];

    // Warm-up as in the perfdhcp harness: every client already holds a lease, so the loop
    // measures known clients (re-offer, re-ACK), the steady state of a running network.
    let macs = static_assignments(DEFAULT_BASE, CLIENTS, FIRST);
    let mut bound = Vec::with_capacity(macs.len());
    for (i, (mac, _)) in macs.iter().enumerate() {
        let discover = request(*mac, u32::try_from(i).expect("fits"), 1, None);
        let offered = {
            let r = Request::parse(&discover).expect("well-formed");
            let d = decide(&r, &context(), &config, &mut leases, now);
            d.reply().expect("an offer").yiaddr()
        };
        bound.push((*mac, offered));
    }
    let traffic = Traffic::new(&bound);
    for r in &traffic.requests {
        let len = serve(r, &config, &mut leases, now, &mut out);
        assert_eq!(
            Request::parse(&out[..len]).expect("decodes").message_type(),
            Some(MessageType::Ack)
        );
    }
    assert_eq!(leases.bound().count(), macs.len());

    let mut g = c.benchmark_group("dhcp_dynamic_10k");
    g.throughput(Throughput::Elements(1));
    dora(&mut g, &traffic, &config, &mut leases, now, &mut out);
    g.finish();
}

/// What `dhcproto` costs for the same exchange: decode the request into a `Message`, build
/// the reply with the same options (53, 54, 51, 58, 59, 1, 3, 6, 15, 28, 61) and encode it.
/// No lease lookup: this is the codec alone.
fn dhcproto_reply(
    packet: &[u8],
    reply_type: v4::MessageType,
    yiaddr: Ipv4Addr,
    out: &mut Vec<u8>,
) -> usize {
    let req = Message::decode(&mut Decoder::new(packet)).expect("well-formed");
    let mut reply = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr(),
        req.chaddr(),
    );
    reply
        .set_opcode(v4::Opcode::BootReply)
        .set_hops(req.hops())
        .set_flags(req.flags());
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(SERVER));
    opts.insert(DhcpOption::AddressLeaseTime(3600));
    opts.insert(DhcpOption::Renewal(1800));
    opts.insert(DhcpOption::Rebinding(3150));
    opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 0, 0)));
    opts.insert(DhcpOption::Router(vec![SERVER]));
    opts.insert(DhcpOption::DomainNameServer(vec![SERVER]));
    opts.insert(DhcpOption::DomainName("bench.test".into()));
    opts.insert(DhcpOption::BroadcastAddr(Ipv4Addr::new(10, 99, 255, 255)));
    if let Some(id) = req.opts().get(OptionCode::ClientIdentifier) {
        opts.insert(id.clone());
    }
    out.clear();
    reply.encode(&mut Encoder::new(out)).expect("encodes");
    out.len()
}

fn dhcproto_codec(c: &mut Criterion) {
    let assignments = static_assignments(DEFAULT_BASE, CLIENTS, FIRST);
    let traffic = Traffic::new(&assignments);
    let n = traffic.discovers.len();
    let mut out = Vec::with_capacity(1500);
    let mut g = c.benchmark_group("dhcproto_codec");
    g.throughput(Throughput::Elements(1));
    let mut i = Cycle(0, n);
    g.bench_function("discover_offer", |b| {
        b.iter(|| {
            let k = i.next();
            dhcproto_reply(
                black_box(&traffic.discovers[k]),
                v4::MessageType::Offer,
                assignments[k].1,
                &mut out,
            )
        });
    });
    let mut i = Cycle(0, n);
    g.bench_function("request_ack", |b| {
        b.iter(|| {
            let k = i.next();
            dhcproto_reply(
                black_box(&traffic.requests[k]),
                v4::MessageType::Ack,
                assignments[k].1,
                &mut out,
            )
        });
    });
    g.finish();
}

criterion_group!(benches, static_leases, dynamic_pool, dhcproto_codec);
criterion_main!(benches);
