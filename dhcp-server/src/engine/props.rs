//! Property tests: the engine never panics, and every reply it builds satisfies the reply
//! invariants of [`check_reply`], the checker the fuzz target uses too.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::testutil::{self, MAC_A, MAC_B, Packet, SERVER, check_reply};
use crate::{Config, DynamicPool, MacAddr, Route, StaticLeases};

fn config(routes: bool, big: bool) -> Config {
    let mut b = testutil::config();
    if routes {
        b = b.classless_routes([Route::new("172.16.0.0/12".parse().unwrap(), SERVER)]);
    }
    if big {
        b = b.dns((1..=60).map(|i| Ipv4Addr::new(10, 0, 3, i)));
    }
    b.build().unwrap()
}

fn drive(bytes: &[u8], ctx: &Context, config: &Config, now: Instant) -> Result<(), String> {
    let Ok(req) = Request::parse(bytes) else {
        return Ok(());
    };
    let pool = ipam::Pool::new(
        "10.0.0.0/24".parse().unwrap(),
        [10, 0, 0, 40].into(),
        [10, 0, 0, 60].into(),
    )
    .unwrap();
    let mut dynamic = DynamicPool::new(pool).with_offer_hold(Duration::from_secs(5));
    let mut fixed: StaticLeases = [
        (MacAddr::new(MAC_A), Lease::new(testutil::ADDR_A)),
        (
            MacAddr::new(MAC_B),
            Lease::new([10, 0, 0, 51].into()).with_hostname("b"),
        ),
    ]
    .into_iter()
    .collect();
    for source in [&mut dynamic as &mut dyn LeaseSource, &mut fixed] {
        let decision = decide(&req, ctx, config, source, now);
        if let Some(reply) = decision.reply() {
            check_reply(config, &req, reply)?;
        }
    }
    Ok(())
}

fn addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        Just(Ipv4Addr::UNSPECIFIED),
        Just(SERVER),
        Just(testutil::ADDR_A),
        Just(Ipv4Addr::new(10, 0, 0, 51)),
        Just(Ipv4Addr::new(10, 0, 0, 45)),
        Just(Ipv4Addr::new(10, 0, 0, 254)),
        Just(Ipv4Addr::new(192, 168, 1, 1)),
        any::<[u8; 4]>().prop_map(Ipv4Addr::from),
    ]
}

fn option() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        (addr(), prop_oneof![Just(50u8), Just(54)]).prop_map(|(a, c)| (c, a.octets().to_vec())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| (55, v)),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| (61, v)),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| (82, v)),
        any::<u16>().prop_map(|v| (57, v.to_be_bytes().to_vec())),
        (0u8..5).prop_map(|v| (52, vec![v])),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..20)),
    ]
}

/// A request that is mostly well-formed, to reach every branch of the engine.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![1u8..=8, any::<u8>()],
        prop_oneof![Just(MAC_A), Just(MAC_B), any::<[u8; 6]>()],
        (addr(), addr()),
        (any::<bool>(), prop_oneof![Just(1u8), any::<u8>()]),
        proptest::collection::vec(option(), 0..8),
        proptest::collection::vec(any::<u8>(), 0..128),
    )
        .prop_map(|(t, mac, (ciaddr, giaddr), (flag, op), opts, file)| {
            let mut p = Packet::new(t)
                .mac(mac)
                .ciaddr(ciaddr)
                .giaddr(giaddr)
                .op(op)
                .file(&file);
            if flag {
                p = p.broadcast_flag();
            }
            for (code, value) in opts {
                if value.len() <= 255 {
                    p = p.opt(code, &value);
                } else {
                    p = p.opt(code, &value[..255]).opt(code, &value[255..]);
                }
            }
            p.bytes()
        })
}

fn context() -> impl Strategy<Value = Context> {
    (addr(), addr())
        .prop_map(|(src, dst)| Context::new(2, std::net::SocketAddrV4::new(src, 68), dst))
}

/// The fuzz seeds (real captures from udhcpc, dhclient and dhcpcd, and hand-written
/// requests) go through the engine with a matching configuration and keep the invariants.
#[test]
fn fuzz_seeds_keep_the_invariants() {
    let server = Ipv4Addr::new(10, 77, 0, 1);
    let config = Config::builder(server, "10.77.0.0/24".parse().unwrap())
        .routers([server])
        .dns([Ipv4Addr::new(10, 77, 0, 53)])
        .domain_search(["vm.test", "test"])
        .classless_routes([Route::new("172.16.0.0/12".parse().unwrap(), server)])
        .build()
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut replies = 0;
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let req = Request::parse(&bytes).expect("seeds parse");
        seeds += 1;
        let mut fixed: StaticLeases = [(
            "02:00:00:77:00:01".parse().unwrap(),
            Lease::new([10, 77, 0, 50].into()),
        )]
        .into_iter()
        .collect();
        let pool = ipam::Pool::new(
            "10.77.0.0/24".parse().unwrap(),
            [10, 77, 0, 50].into(),
            [10, 77, 0, 60].into(),
        )
        .unwrap();
        let mut dynamic = DynamicPool::new(pool);
        for ctx in [
            testutil::broadcast(),
            Context::new(2, "10.77.0.50:68".parse().unwrap(), server),
        ] {
            for source in [&mut fixed as &mut dyn LeaseSource, &mut dynamic] {
                if let Some(reply) = decide(&req, &ctx, &config, source, Instant::now()).reply() {
                    check_reply(&config, &req, reply).unwrap();
                    // The 300-byte split client-id cannot be echoed within 576 bytes: such
                    // a reply is not sent, and not counted.
                    if reply.to_vec().is_ok() {
                        replies += 1;
                    }
                }
            }
        }
    }
    assert!(seeds >= 15, "{seeds} seeds");
    assert!(
        replies >= 20,
        "only {replies} replies: the seeds no longer reach the engine"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700), ctx in context()) {
        drive(&bytes, &ctx, &config(false, false), Instant::now()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn replies_satisfy_the_invariants(
        bytes in request(),
        ctx in context(),
        routes in any::<bool>(),
        big in any::<bool>(),
        secs in 0u64..100,
    ) {
        let now = Instant::now() + Duration::from_secs(secs);
        drive(&bytes, &ctx, &config(routes, big), now).map_err(TestCaseError::fail)?;
    }
}
