//! Malformed options and their RFC 2131 consequences, INFORM without ciaddr, and address
//! conflicts (DECLINE) on static leases.

use std::net::Ipv4Addr;
use std::time::Instant;

use crate::testutil::*;
use crate::{Config, EventKind, IgnoreReason, Lease, MacAddr, RequestState, StaticLeases};

fn cfg() -> Config {
    config().build().unwrap()
}

fn ignored(o: &Outcome) -> IgnoreReason {
    assert!(o.wire.is_none(), "expected silence, got {:?}", o.event);
    match o.event.kind() {
        EventKind::Ignored(r) => r,
        k => panic!("expected an ignored event, got {k:?}"),
    }
}

// ---- malformed options are absent, with the RFC's consequences --------------------------

#[test]
fn selecting_with_a_malformed_server_id_is_handled_as_init_reboot() {
    // Option 54 of length 3: absent. 50 set, ciaddr 0: INIT-REBOOT (RFC 2131 §4.3.2), so the
    // known client's own address is ACKed...
    let p = Packet::new(REQUEST).opt(54, &[10, 0, 0]).requested(ADDR_A);
    let o = run(&p, &broadcast(), &cfg(), &mut leases(), Instant::now());
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::InitReboot));
    // ...another address is NAKed...
    let p = Packet::new(REQUEST)
        .opt(54, &[10, 0, 0])
        .requested([10, 0, 0, 77].into());
    let o = run(&p, &broadcast(), &cfg(), &mut leases(), Instant::now());
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::InitReboot));
    // ...and an unknown client gets silence (it would have got a NAK had 54 named us).
    let p = Packet::new(REQUEST)
        .mac(MAC_B)
        .opt(54, &[10, 0, 0])
        .requested(ADDR_A);
    let o = run(&p, &broadcast(), &cfg(), &mut leases(), Instant::now());
    assert_eq!(ignored(&o), IgnoreReason::UnknownClient);
    let with_54 = Packet::new(REQUEST)
        .mac(MAC_B)
        .server_id(SERVER)
        .requested(ADDR_A);
    let o = run(
        &with_54,
        &broadcast(),
        &cfg(),
        &mut leases(),
        Instant::now(),
    );
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::Selecting));
}

#[test]
fn a_malformed_server_id_naming_another_server_is_not_guessed() {
    // 54 = 10.0.0.2 plus a stray byte: not read as "another server" (that would drop the
    // offer silently), not as us either; the request stands on its other fields.
    let p = Packet::new(REQUEST)
        .opt(54, &[10, 0, 0, 2, 0])
        .requested(ADDR_A);
    let o = run(&p, &broadcast(), &cfg(), &mut leases(), Instant::now());
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::InitReboot));
}

#[test]
fn selecting_with_a_malformed_requested_address_names_no_address() {
    let p = Packet::new(REQUEST).server_id(SERVER).opt(50, &[10, 0, 0]);
    let o = run(&p, &broadcast(), &cfg(), &mut leases(), Instant::now());
    assert_eq!(ignored(&o), IgnoreReason::NoAddress);
    // With ciaddr the client is RENEWING: ciaddr is used, not the broken option.
    let p = Packet::new(REQUEST).opt(50, &[10, 0, 0]).ciaddr(ADDR_A);
    let o = run(&p, &unicast(ADDR_A), &cfg(), &mut leases(), Instant::now());
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::Renewing));
}

#[test]
fn decline_with_a_malformed_requested_address_is_ignored() {
    let p = Packet::new(DECLINE)
        .server_id(SERVER)
        .opt(50, &[10, 0, 0, 50, 1]);
    let mut leases = leases();
    let o = run(&p, &broadcast(), &cfg(), &mut leases, Instant::now());
    assert_eq!(ignored(&o), IgnoreReason::NoAddress);
    assert!(leases.conflicts().is_empty());
}

#[test]
fn malformed_lease_time_and_max_size_fall_back_to_the_defaults() {
    let p = Packet::new(DISCOVER).opt(51, &[0, 0, 1]).opt(57, &[9]);
    let o = run(&p, &broadcast(), &cfg(), &mut leases(), Instant::now());
    assert_eq!(o.event.kind(), EventKind::Offered);
    let wire = o.wire.as_deref().unwrap();
    assert!(wire.len() <= 548, "the 576-byte default limit applies");
    assert_eq!(raw_option(wire, 51), Some(3600u32.to_be_bytes().to_vec()));
}

#[test]
fn a_request_with_a_truncated_trailing_option_is_answered() {
    let mut bytes = Packet::new(DISCOVER).no_end().bytes();
    bytes.extend([12, 40, b'v', b'm']);
    let req = crate::Request::parse(&bytes).unwrap();
    let config = cfg();
    let decision = crate::decide(&req, &broadcast(), &config, &mut leases(), Instant::now());
    assert_eq!(decision.event().kind(), EventKind::Offered);
}

// ---- INFORM -------------------------------------------------------------------------------

#[test]
fn inform_without_ciaddr_is_ignored() {
    let o = run(
        &Packet::new(INFORM),
        &broadcast(),
        &cfg(),
        &mut leases(),
        Instant::now(),
    );
    assert_eq!(ignored(&o), IgnoreReason::NoAddress);
    // Relayed, too: the ACK goes to ciaddr through the relay, and there is none.
    let o = run(
        &Packet::new(INFORM).giaddr([10, 0, 0, 254].into()),
        &broadcast(),
        &cfg(),
        &mut leases(),
        Instant::now(),
    );
    assert_eq!(ignored(&o), IgnoreReason::NoAddress);
}

// ---- address conflicts on static leases ----------------------------------------------------

fn decline() -> Packet {
    Packet::new(DECLINE)
        .server_id(SERVER)
        .requested(ADDR_A)
        .opt(61, &[1, 2, 0, 0, 0, 0, 0x0a])
}

#[test]
fn a_declined_static_address_is_reported_and_not_offered_again_until_cleared() {
    let agent = leases();
    let mut server = agent.clone();
    let mac = MacAddr::new(MAC_A);
    let t = Instant::now();

    let o = run(&decline(), &broadcast(), &cfg(), &mut server, t);
    assert!(o.wire.is_none());
    let e = &o.event;
    assert_eq!(e.kind(), EventKind::Declined);
    assert_eq!(e.addr(), ADDR_A);
    assert_eq!(e.client().mac(), Some(mac));
    assert_eq!(e.client_id(), Some(&[1, 2, 0, 0, 0, 0, 0x0a][..]));
    assert_eq!(e.xid(), 0x1234);
    assert_eq!(e.server_id(), SERVER);
    assert_eq!(agent.conflicts(), vec![(mac, ADDR_A)]);
    assert_eq!(
        agent.get(mac).unwrap().addr(),
        ADDR_A,
        "the table is the embedder's"
    );

    // DISCOVER: silence, with the reason.
    let o = run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut server, t);
    assert_eq!(ignored(&o), IgnoreReason::AddressConflict(ADDR_A));
    assert_eq!(o.event.addr(), ADDR_A);
    // REQUEST for it in any state: NAK.
    for (p, ctx) in [
        (
            Packet::new(REQUEST).server_id(SERVER).requested(ADDR_A),
            broadcast(),
        ),
        (Packet::new(REQUEST).requested(ADDR_A), broadcast()),
        (Packet::new(REQUEST).ciaddr(ADDR_A), unicast(ADDR_A)),
    ] {
        let o = run(&p, &ctx, &cfg(), &mut server, t);
        assert!(
            matches!(o.event.kind(), EventKind::Nacked(_)),
            "{:?}",
            o.event
        );
    }
    // Other clients are not affected.
    let other = MacAddr::new(MAC_B);
    agent.insert(other, Lease::new([10, 0, 0, 51].into()));
    let o = run(
        &Packet::new(DISCOVER).mac(MAC_B),
        &broadcast(),
        &cfg(),
        &mut server,
        t,
    );
    assert_eq!(o.event.kind(), EventKind::Offered);

    // The embedder clears it: offered again.
    assert!(agent.clear_conflict(mac, ADDR_A));
    let o = run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut server, t);
    assert_eq!(o.event.kind(), EventKind::Offered);
    assert_eq!(o.event.addr(), ADDR_A);
}

#[test]
fn a_new_address_for_the_mac_is_offered_at_once_the_old_conflict_stays() {
    let agent = leases();
    let mut server = agent.clone();
    let mac = MacAddr::new(MAC_A);
    let t = Instant::now();
    run(&decline(), &broadcast(), &cfg(), &mut server, t);
    let moved: Ipv4Addr = [10, 0, 0, 60].into();
    agent.insert(mac, Lease::new(moved));
    let o = run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut server, t);
    assert_eq!(
        (o.event.kind(), o.event.addr()),
        (EventKind::Offered, moved)
    );
    assert!(agent.is_conflicted(mac, ADDR_A));
    // Moving back to the conflicting address needs the conflict cleared first.
    agent.insert(mac, Lease::new(ADDR_A));
    let o = run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut server, t);
    assert_eq!(ignored(&o), IgnoreReason::AddressConflict(ADDR_A));
}

#[test]
fn a_conflict_marked_by_the_embedder_blocks_like_a_decline() {
    let agent: StaticLeases = leases();
    let mut server = agent.clone();
    assert!(agent.mark_conflict(MacAddr::new(MAC_A), ADDR_A));
    let o = run(
        &Packet::new(DISCOVER),
        &broadcast(),
        &cfg(),
        &mut server,
        Instant::now(),
    );
    assert_eq!(ignored(&o), IgnoreReason::AddressConflict(ADDR_A));
}

#[test]
fn a_decline_of_someone_elses_address_marks_nothing() {
    let agent = leases();
    let mut server = agent.clone();
    let p = Packet::new(DECLINE)
        .server_id(SERVER)
        .requested([10, 0, 0, 51].into());
    let o = run(&p, &broadcast(), &cfg(), &mut server, Instant::now());
    assert_eq!(
        ignored(&o),
        IgnoreReason::NotClientAddress([10, 0, 0, 51].into())
    );
    assert!(agent.conflicts().is_empty());
    // Events of other kinds carry the server id but no client-id.
    let o = run(
        &Packet::new(DISCOVER).opt(61, &[1, 2]),
        &broadcast(),
        &cfg(),
        &mut server,
        Instant::now(),
    );
    assert_eq!(o.event.server_id(), SERVER);
    assert_eq!(o.event.client_id(), None);
}
