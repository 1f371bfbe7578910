//! decode → engine → encode over arbitrary bytes: no panic, every reply satisfies the reply
//! invariants of `dhcp_server::testutil::check_reply` (the checker the property tests use
//! too: it decodes again, size within the client's limit, xid/giaddr/chaddr copied, 53 and
//! 54 first, 61 and 82 echoed, NAK contents, relay targets...), and an address marked in
//! conflict is never handed out.

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dhcp_server::testutil::check_reply;
use dhcp_server::{
    Config, Context, DynamicPool, Lease, LeaseSource, MacAddr, Request, Route, StaticLeases, decide,
};
use libfuzzer_sys::fuzz_target;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CONFLICTED_MAC: MacAddr = MacAddr::new([2, 0, 0, 0x77, 0, 2]);
const CONFLICTED_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 51);

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

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Request::parse(data) else {
        return;
    };
    let now = Instant::now();
    let contexts = [
        Context::new(
            2,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
            Ipv4Addr::BROADCAST,
        ),
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
        (
            "02:00:00:77:00:01".parse().unwrap(),
            Lease::new(Ipv4Addr::new(10, 77, 0, 50)),
        ),
        (
            "02:00:00:00:00:01".parse().unwrap(),
            Lease::new(Ipv4Addr::new(10, 9, 9, 9)),
        ),
        (CONFLICTED_MAC, Lease::new(CONFLICTED_ADDR)),
    ]
    .into_iter()
    .collect();
    // One client's address is in conflict (declined earlier): it must get no OFFER of it.
    fixed.mark_conflict(CONFLICTED_MAC, CONFLICTED_ADDR);
    for config in configs() {
        for ctx in &contexts {
            for source in [&mut dynamic as &mut dyn LeaseSource, &mut fixed] {
                let decision = decide(&req, ctx, config, source, now);
                if let Some(reply) = decision.reply() {
                    assert!(
                        !(req.mac() == Some(CONFLICTED_MAC) && reply.yiaddr() == CONFLICTED_ADDR),
                        "a conflicting address was handed out"
                    );
                    if let Err(violation) = check_reply(config, &req, reply) {
                        panic!("reply invariant broken: {violation}");
                    }
                }
            }
        }
    }
});
