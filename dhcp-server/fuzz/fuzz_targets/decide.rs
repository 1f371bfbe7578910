//! decode → engine → encode over arbitrary bytes: no panic, and every reply satisfies the
//! invariants of spec/dhcp.md §8.

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dhcp_server::{
    Config, Context, DynamicPool, Lease, LeaseSource, MessageType, Reply, Request, Route,
    StaticLeases, Target, decide,
};
use dhcproto::v4::{Decodable, Decoder, Message};
use libfuzzer_sys::fuzz_target;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn configs() -> &'static [Config; 2] {
    static CONFIGS: OnceLock<[Config; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let base = || {
            Config::builder(SERVER, "10.77.0.0/24".parse().unwrap())
                .routers([SERVER])
                .dns([Ipv4Addr::new(10, 77, 0, 53)])
                .domain_name("vm.test")
                .domain_search(["vm.test", "test"])
                .ntp([Ipv4Addr::new(10, 77, 0, 123)])
        };
        [
            base().build().unwrap(),
            base()
                .classless_routes([Route::new("172.16.0.0/12".parse().unwrap(), SERVER)])
                .dns((1..=60).map(|i| Ipv4Addr::new(10, 77, 1, i)))
                .mtu(1400)
                .authoritative(true)
                .build()
                .unwrap(),
        ]
    })
}

/// Every option instance of an encoded reply's options field.
fn instances(bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut i = 240;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => break,
            c => {
                let len = usize::from(bytes[i + 1]);
                out.push((c, &bytes[i + 2..i + 2 + len]));
                i += 2 + len;
            }
        }
    }
    out
}

fn concat(opts: &[(u8, &[u8])], code: u8) -> Option<Vec<u8>> {
    let v: Vec<u8> = opts.iter().filter(|(c, _)| *c == code).flat_map(|(_, v)| v.iter().copied()).collect();
    opts.iter().any(|(c, _)| *c == code).then_some(v)
}

fn check(req: &Request<'_>, reply: &Reply<'_>, wire: &[u8]) {
    Message::decode(&mut Decoder::new(wire)).expect("dhcproto decodes every reply");
    Request::parse(wire).expect("our parser reads every reply");
    assert!(wire.len() >= 300 && wire.len() <= reply.max_len(), "size {}", wire.len());
    assert!(reply.max_len() >= 548);
    assert_eq!(wire[0], 2);
    assert_eq!(wire[3], 0, "hops");
    assert_eq!(wire[4..8], req.as_bytes()[4..8], "xid");
    assert_eq!(wire[24..44], req.as_bytes()[24..44], "giaddr, chaddr");
    let opts = instances(wire);
    assert_eq!(opts.first().map(|o| o.0), Some(53));
    assert_eq!(opts.get(1).map(|o| o.0), Some(54));
    assert_eq!(concat(&opts, 54).as_deref(), Some(&SERVER.octets()[..]));
    assert!(opts.iter().all(|(c, v)| !matches!(c, 50 | 52 | 55 | 57) && !v.is_empty()));
    if let Some(id) = req.client_id().filter(|v| !v.is_empty()) {
        assert_eq!(concat(&opts, 61).as_deref(), Some(id), "61 echoed");
    }
    if let Some(info) = req.relay_agent_info().filter(|v| !v.is_empty()) {
        assert_eq!(concat(&opts, 82).as_deref(), Some(info), "82 echoed");
        assert_eq!(opts.last().map(|o| o.0), Some(82), "82 last");
    }
    let yiaddr = &wire[16..20];
    match reply.message_type() {
        MessageType::Nak => {
            assert!(opts.iter().all(|(c, _)| matches!(c, 53 | 54 | 56 | 61 | 82)));
            assert_eq!(yiaddr, [0; 4]);
        }
        MessageType::Ack if req.message_type() == Some(MessageType::Request) => {
            assert_ne!(yiaddr, [0; 4], "never ACK 0.0.0.0");
        }
        MessageType::Ack => assert_eq!(yiaddr, [0; 4], "INFORM"),
        MessageType::Offer => assert_eq!(wire[12..16], [0; 4], "ciaddr 0 in OFFER"),
        other => panic!("reply type {other:?}"),
    }
    match reply.target() {
        Target::Relay(a) => assert_eq!(a, req.giaddr()),
        _ => assert!(req.giaddr().is_unspecified()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Request::parse(data) else { return };
    let now = Instant::now();
    let contexts = [
        Context::new(2, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68), Ipv4Addr::BROADCAST),
        Context::new(2, SocketAddrV4::new(req.ciaddr(), 68), SERVER),
    ];
    let pool = ipam::Pool::new(
        "10.77.0.0/24".parse().unwrap(),
        Ipv4Addr::new(10, 77, 0, 100),
        Ipv4Addr::new(10, 77, 0, 102),
    )
    .unwrap();
    let mut dynamic = DynamicPool::new(pool).with_offer_hold(Duration::from_secs(5));
    let mut fixed: StaticLeases = [
        ("02:00:00:77:00:01".parse().unwrap(), Lease::new(Ipv4Addr::new(10, 77, 0, 50))),
        ("02:00:00:00:00:01".parse().unwrap(), Lease::new(Ipv4Addr::new(10, 9, 9, 9))),
    ]
    .into_iter()
    .collect();
    let mut buf = [0u8; 1500];
    for config in configs() {
        for ctx in &contexts {
            for source in [&mut dynamic as &mut dyn LeaseSource, &mut fixed] {
                let decision = decide(&req, ctx, config, source, now);
                if let Some(reply) = decision.reply() {
                    if let Ok(n) = reply.encode(&mut buf) {
                        check(&req, reply, &buf[..n]);
                    }
                }
            }
        }
    }
});
