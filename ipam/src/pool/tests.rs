use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn pool(network: &str, start: &str, end: &str) -> Pool {
    Pool::new(net(network), ip(start), ip(end)).unwrap()
}

#[test]
fn construction_errors_name_the_values() {
    let cases = [
        (
            "start outside network",
            ("10.0.0.0/24", "10.0.1.1", "10.0.0.9"),
            "10.0.1.1 is outside network 10.0.0.0/24",
        ),
        (
            "end outside network",
            ("10.0.0.0/24", "10.0.0.1", "10.0.1.9"),
            "10.0.1.9 is outside network 10.0.0.0/24",
        ),
        (
            "start after end",
            ("10.0.0.0/24", "10.0.0.9", "10.0.0.1"),
            "range start 10.0.0.9 is after range end 10.0.0.1",
        ),
        (
            "start is the network address",
            ("10.0.0.0/24", "10.0.0.0", "10.0.0.9"),
            "10.0.0.0 is the network address of 10.0.0.0/24",
        ),
        (
            "end is the broadcast address",
            ("10.0.0.0/24", "10.0.0.1", "10.0.0.255"),
            "10.0.0.255 is the broadcast address of 10.0.0.0/24",
        ),
        (
            "/30 network address",
            ("10.0.0.4/30", "10.0.0.4", "10.0.0.6"),
            "10.0.0.4 is the network address of 10.0.0.4/30",
        ),
        (
            "/30 broadcast address",
            ("10.0.0.4/30", "10.0.0.5", "10.0.0.7"),
            "10.0.0.7 is the broadcast address of 10.0.0.4/30",
        ),
        (
            "larger than a /8",
            ("10.0.0.0/7", "10.0.0.1", "11.0.0.1"),
            "range 10.0.0.1-11.0.0.1 holds 16777217 addresses, more than the 16777216 a pool \
             supports",
        ),
    ];
    for (name, (network, start, end), message) in cases {
        let err = Pool::new(net(network), ip(start), ip(end)).unwrap_err();
        assert_eq!(err.to_string(), message, "{name}");
    }
}

#[test]
fn host_bits_in_the_network_are_ignored() {
    let p = pool("192.168.30.1/24", "192.168.30.10", "192.168.30.20");
    assert_eq!(p.network(), net("192.168.30.0/24"));
}

#[test]
fn prefix_sizes_from_8_to_32() {
    // (network, capacity of the whole usable range)
    let cases = [
        ("10.0.0.0/8", 16_777_214),
        ("10.1.0.0/16", 65_534),
        ("10.1.2.0/24", 254),
        ("10.1.2.4/30", 2),
        ("10.1.2.4/31", 2),
        ("10.1.2.4/32", 1),
    ];
    for (network, capacity) in cases {
        let mut p = Pool::whole(net(network)).unwrap();
        assert_eq!(p.capacity(), capacity, "{network}");
        assert_eq!(p.available(), capacity, "{network}");
        let first = p.allocate(Strategy::LowestFree).unwrap();
        assert_eq!(first, p.start(), "{network}");
    }
}

#[test]
fn slash_31_and_32_use_every_address() {
    let mut p = Pool::whole(net("192.0.2.4/31")).unwrap();
    assert_eq!((p.start(), p.end()), (ip("192.0.2.4"), ip("192.0.2.5")));
    p.allocate_specific(ip("192.0.2.4")).unwrap();
    p.allocate_specific(ip("192.0.2.5")).unwrap();
    assert_eq!(p.available(), 0);

    let mut p = Pool::whole(net("192.0.2.9/32")).unwrap();
    assert_eq!(p.allocate(Strategy::NextFit).unwrap(), ip("192.0.2.9"));
    assert!(matches!(
        p.allocate(Strategy::NextFit),
        Err(Error::Exhausted { .. })
    ));
}

#[test]
fn start_equals_end() {
    let mut p = pool("10.0.0.0/24", "10.0.0.7", "10.0.0.7");
    assert_eq!(p.capacity(), 1);
    assert_eq!(p.allocate(Strategy::LowestFree).unwrap(), ip("10.0.0.7"));
    let err = p.allocate(Strategy::LowestFree).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free address left in 10.0.0.7-10.0.0.7 of 10.0.0.0/24"
    );
    p.release(ip("10.0.0.7")).unwrap();
    assert_eq!(p.allocate(Strategy::NextFit).unwrap(), ip("10.0.0.7"));
}

#[test]
fn full_pool_with_reservations() {
    let mut p = Pool::whole(net("10.0.0.0/28")).unwrap(); // .1 - .14
    p.reserve(ip("10.0.0.1")).unwrap();
    p.reserve(ip("10.0.0.14")).unwrap();
    let mut got = Vec::new();
    while let Ok(a) = p.allocate(Strategy::NextFit) {
        got.push(a);
    }
    assert_eq!(got.len(), 12);
    assert_eq!(got.first(), Some(&ip("10.0.0.2")));
    assert_eq!(got.last(), Some(&ip("10.0.0.13")));
    assert_eq!((p.used(), p.available(), p.reserved_in_range()), (12, 0, 2));
    assert_eq!(p.free_ranges().count(), 0);
    for s in [Strategy::LowestFree, Strategy::Preferred(ip("10.0.0.5"))] {
        assert!(matches!(p.allocate(s), Err(Error::Exhausted { .. })));
    }
}

#[test]
fn allocate_specific_errors_in_order() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.20");
    p.reserve(ip("10.0.0.11")).unwrap();
    p.allocate_specific(ip("10.0.0.12")).unwrap();
    let cases = [
        (
            "outside network",
            "10.0.1.12",
            "10.0.1.12 is outside network 10.0.0.0/24",
        ),
        (
            "network address",
            "10.0.0.0",
            "10.0.0.0 is the network address of 10.0.0.0/24",
        ),
        (
            "broadcast",
            "10.0.0.255",
            "10.0.0.255 is the broadcast address of 10.0.0.0/24",
        ),
        (
            "outside range",
            "10.0.0.21",
            "10.0.0.21 is outside the pool range 10.0.0.10-10.0.0.20",
        ),
        ("reserved", "10.0.0.11", "10.0.0.11 is reserved"),
        ("allocated", "10.0.0.12", "10.0.0.12 is already allocated"),
    ];
    for (name, addr, message) in cases {
        let err = p.allocate_specific(ip(addr)).unwrap_err();
        assert_eq!(err.to_string(), message, "{name}");
    }
    assert_eq!(p.used(), 1, "failed calls change nothing");
}

#[test]
fn release_errors() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.20");
    p.reserve(ip("10.0.0.11")).unwrap();
    let cases = [
        (
            "outside network",
            "10.1.0.12",
            "10.1.0.12 is outside network 10.0.0.0/24",
        ),
        (
            "outside range",
            "10.0.0.9",
            "10.0.0.9 is outside the pool range 10.0.0.10-10.0.0.20",
        ),
        ("reserved", "10.0.0.11", "10.0.0.11 is reserved"),
        ("free", "10.0.0.12", "10.0.0.12 is not allocated"),
    ];
    for (name, addr, message) in cases {
        assert_eq!(
            p.release(ip(addr)).unwrap_err().to_string(),
            message,
            "{name}"
        );
    }
}

#[test]
fn reserve_and_unreserve() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.20");
    assert!(p.reserve(ip("10.0.0.10")).unwrap());
    assert!(!p.reserve(ip("10.0.0.10")).unwrap(), "idempotent");
    assert!(
        p.reserve(ip("10.0.0.1")).unwrap(),
        "outside the range is fine"
    );
    assert_eq!(p.reserved_in_range(), 1);
    assert_eq!(p.available(), 10);
    assert_eq!(
        p.reserve(ip("10.9.0.1")).unwrap_err().to_string(),
        "10.9.0.1 is outside network 10.0.0.0/24"
    );
    p.allocate_specific(ip("10.0.0.15")).unwrap();
    assert_eq!(
        p.reserve(ip("10.0.0.15")).unwrap_err(),
        Error::AlreadyAllocated {
            ip: ip("10.0.0.15")
        }
    );
    p.unreserve(ip("10.0.0.10")).unwrap();
    assert_eq!(p.state(ip("10.0.0.10")), AddrState::Free);
    assert_eq!(
        p.unreserve(ip("10.0.0.10")).unwrap_err().to_string(),
        "10.0.0.10 is not reserved"
    );
    p.unreserve(ip("10.0.0.1")).unwrap();
    assert_eq!(p.reserved().count(), 0);
}

#[test]
fn next_fit_rotates_and_wraps() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.13");
    let a: Vec<_> = (0..4)
        .map(|_| p.allocate(Strategy::NextFit).unwrap())
        .collect();
    assert_eq!(
        a,
        [
            ip("10.0.0.10"),
            ip("10.0.0.11"),
            ip("10.0.0.12"),
            ip("10.0.0.13")
        ]
    );
    p.release(ip("10.0.0.11")).unwrap();
    p.release(ip("10.0.0.12")).unwrap();
    // Cursor wrapped to .10; .11 is free; .12 was released last and is skipped only when
    // chosen first.
    assert_eq!(p.allocate(Strategy::NextFit).unwrap(), ip("10.0.0.11"));
    // Only .12 is free now: handed out even though it was the last released.
    assert_eq!(p.allocate(Strategy::NextFit).unwrap(), ip("10.0.0.12"));
}

#[test]
fn next_fit_skips_the_address_just_released() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.19");
    for _ in 0..5 {
        p.allocate(Strategy::NextFit).unwrap(); // .10 - .14, cursor at .15
    }
    p.release(ip("10.0.0.14")).unwrap();
    for _ in 0..5 {
        p.allocate(Strategy::NextFit).unwrap(); // .15 - .19; the cursor wraps to .10
    }
    p.release(ip("10.0.0.10")).unwrap();
    // The search starts at .10, released just now; .14 is also free, so .14 it is.
    assert_eq!(p.allocate(Strategy::NextFit).unwrap(), ip("10.0.0.14"));
    assert_eq!(p.allocate(Strategy::NextFit).unwrap(), ip("10.0.0.10"));
}

#[test]
fn preferred_takes_the_address_or_the_next_free_one() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.14");
    assert_eq!(
        p.allocate(Strategy::Preferred(ip("10.0.0.13"))).unwrap(),
        ip("10.0.0.13")
    );
    assert_eq!(
        p.allocate(Strategy::Preferred(ip("10.0.0.13"))).unwrap(),
        ip("10.0.0.14")
    );
    // Wraps around to the start.
    assert_eq!(
        p.allocate(Strategy::Preferred(ip("10.0.0.14"))).unwrap(),
        ip("10.0.0.10")
    );
    // Outside the range: lowest free.
    assert_eq!(
        p.allocate(Strategy::Preferred(ip("10.0.0.99"))).unwrap(),
        ip("10.0.0.11")
    );
}

#[test]
fn state_of_every_kind_of_address() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.20");
    p.reserve(ip("10.0.0.1")).unwrap();
    p.reserve(ip("10.0.0.10")).unwrap();
    p.allocate_specific(ip("10.0.0.11")).unwrap();
    let cases = [
        ("10.0.0.1", AddrState::Reserved),
        ("10.0.0.10", AddrState::Reserved),
        ("10.0.0.11", AddrState::Allocated),
        ("10.0.0.12", AddrState::Free),
        ("10.0.0.21", AddrState::OutOfRange),
        ("10.0.0.0", AddrState::OutOfRange),
        ("172.16.0.1", AddrState::OutOfRange),
    ];
    for (addr, state) in cases {
        assert_eq!(p.state(ip(addr)), state, "{addr}");
    }
}

#[test]
fn resize_keeps_allocations_and_counts_reservations() {
    let mut p = pool("10.0.0.0/24", "10.0.0.50", "10.0.0.60");
    p.reserve(ip("10.0.0.40")).unwrap(); // outside for now
    p.allocate_specific(ip("10.0.0.55")).unwrap();
    p.resize(ip("10.0.0.30"), ip("10.0.0.70")).unwrap();
    assert_eq!(p.reserved_in_range(), 1, "reservation now inside");
    assert_eq!((p.capacity(), p.used(), p.available()), (41, 1, 39));
    assert_eq!(p.state(ip("10.0.0.40")), AddrState::Reserved);
    assert_eq!(p.allocated().collect::<Vec<_>>(), [ip("10.0.0.55")]);

    // Shrink around the allocation: the reservation leaves the range again.
    p.resize(ip("10.0.0.55"), ip("10.0.0.56")).unwrap();
    assert_eq!(
        (p.capacity(), p.used(), p.available(), p.reserved_in_range()),
        (2, 1, 1, 0)
    );
    assert_eq!(p.allocate(Strategy::LowestFree).unwrap(), ip("10.0.0.56"));
}

#[test]
fn resize_conflict_lists_addresses_and_changes_nothing() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.30");
    p.restore([ip("10.0.0.10"), ip("10.0.0.20"), ip("10.0.0.30")])
        .unwrap();
    let before = p.clone();
    let err = p.resize(ip("10.0.0.15"), ip("10.0.0.25")).unwrap_err();
    assert_eq!(
        err,
        Error::ResizeConflict {
            start: ip("10.0.0.15"),
            end: ip("10.0.0.25"),
            conflicts: vec![ip("10.0.0.10"), ip("10.0.0.30")],
        }
    );
    assert_eq!(p, before);
    assert!(matches!(
        p.resize(ip("10.0.0.15"), ip("10.0.1.25")),
        Err(Error::OutsideNetwork { .. })
    ));
}

#[test]
fn restore_is_all_or_nothing() {
    let mut p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.30");
    p.reserve(ip("10.0.0.15")).unwrap();
    let err = p
        .restore([ip("10.0.0.11"), ip("10.0.0.12"), ip("10.0.0.15")])
        .unwrap_err();
    assert_eq!(
        err,
        Error::Reserved {
            ip: ip("10.0.0.15")
        }
    );
    assert_eq!(p.used(), 0);
    assert_eq!(p.state(ip("10.0.0.11")), AddrState::Free);
}

#[test]
fn restore_sixty_thousand_then_identical_rebuild() {
    let mut p = Pool::whole(net("10.20.0.0/16")).unwrap();
    p.reserve(ip("10.20.0.1")).unwrap();
    let ips: Vec<Ipv4Addr> = (0..60_000u32)
        .map(|i| Ipv4Addr::from(u32::from(ip("10.20.0.2")) + i))
        .collect();
    p.restore(ips.iter().copied()).unwrap();
    assert_eq!(p.used(), 60_000);
    let mut q = Pool::whole(net("10.20.0.0/16")).unwrap();
    q.reserve(ip("10.20.0.1")).unwrap();
    q.restore(p.allocated()).unwrap();
    assert_eq!(p, q);
}

#[test]
fn slash_8_memory_is_close_to_one_bit_per_address() {
    let p = Pool::whole(net("10.0.0.0/8")).unwrap();
    let limit = (1usize << 24) / 8;
    assert!(p.heap_bytes() >= limit);
    assert!(
        p.heap_bytes() <= limit * 105 / 100,
        "{} bytes",
        p.heap_bytes()
    );
}

#[test]
fn allocation_on_a_nearly_full_pool_finds_the_hole() {
    // A /12 spans two summary words' worth of full words on each side of the hole.
    let mut p = Pool::whole(net("10.0.0.0/12")).unwrap();
    let hole = ip("10.15.255.200");
    let all: Vec<Ipv4Addr> = (u32::from(p.start())..=u32::from(p.end()))
        .map(Ipv4Addr::from)
        .filter(|&a| a != hole)
        .collect();
    p.restore(all).unwrap();
    assert_eq!(p.available(), 1);
    assert_eq!(p.allocate(Strategy::LowestFree).unwrap(), hole);
}

#[test]
fn debug_output_is_a_summary() {
    let p = pool("10.0.0.0/24", "10.0.0.10", "10.0.0.20");
    assert_eq!(
        format!("{p:?}"),
        "Pool { network: 10.0.0.0/24, start: 10.0.0.10, end: 10.0.0.20, used: 0, \
         available: 11, reserved: 0, .. }"
    );
}
