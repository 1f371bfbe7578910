use super::*;
use crate::LeaseTime;
use crate::testutil::{DISCOVER, MAC_B, Packet, REQUEST};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);

/// Three addresses, .10 - .12, lowest free first, 10 s offers, 100 s probation.
fn source() -> DynamicPool {
    let pool = Pool::new("10.0.0.0/24".parse().unwrap(), A, C).unwrap();
    DynamicPool::new(pool)
        .with_strategy(Strategy::LowestFree)
        .with_offer_hold(Duration::from_secs(10))
        .with_probation(Duration::from_secs(100))
}

struct Clock(Instant);
impl Clock {
    fn at(&self, secs: u64) -> Instant {
        self.0 + Duration::from_secs(secs)
    }
}

fn offer(s: &mut DynamicPool, p: &Packet, now: Instant) -> Result<Ipv4Addr, NoOffer> {
    let bytes = p.bytes();
    let req = Request::parse(&bytes).unwrap();
    s.offer(&Query::new(&req, now, LeaseTime::from_secs(60)))
        .map(|l| l.addr())
}

fn confirm(
    s: &mut DynamicPool,
    p: &Packet,
    addr: Ipv4Addr,
    state: RequestState,
    now: Instant,
) -> Confirmation {
    let bytes = p.bytes();
    let req = Request::parse(&bytes).unwrap();
    s.confirm(
        &Query::new(&req, now, LeaseTime::from_secs(60)),
        addr,
        state,
    )
}

fn with<T>(p: &Packet, now: Instant, f: impl FnOnce(&Query<'_, '_>) -> T) -> T {
    let bytes = p.bytes();
    let req = Request::parse(&bytes).unwrap();
    f(&Query::new(&req, now, LeaseTime::from_secs(60)))
}

fn a() -> Packet {
    Packet::new(DISCOVER)
}
fn b() -> Packet {
    Packet::new(DISCOVER).mac(MAC_B)
}

#[test]
fn dora_binds_and_rediscover_returns_the_same_address() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    assert_eq!(offer(&mut s, &a(), t.at(0)), Ok(A));
    assert_eq!(offer(&mut s, &a(), t.at(1)), Ok(A), "same offer again");
    assert_eq!(offer(&mut s, &b(), t.at(1)), Ok(B));
    assert_eq!(
        confirm(&mut s, &a(), A, RequestState::Selecting, t.at(2)),
        Confirmation::Ack(Lease::new(A))
    );
    assert_eq!(s.bound().count(), 1);
    assert_eq!(
        offer(&mut s, &a(), t.at(3)),
        Ok(A),
        "bound client is offered its lease"
    );
    assert_eq!(
        confirm(&mut s, &a(), B, RequestState::Selecting, t.at(3)),
        Confirmation::Nak
    );
}

#[test]
fn requested_address_is_honoured_when_free() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    assert_eq!(offer(&mut s, &a().requested(C), t.at(0)), Ok(C));
    assert_eq!(
        offer(&mut s, &b().requested(C), t.at(0)),
        Ok(A),
        "taken: next free"
    );
}

#[test]
fn offers_expire_and_are_reclaimed_when_the_pool_runs_out() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    let c = Packet::new(DISCOVER).mac([2, 0, 0, 0, 0, 0x0c]);
    let d = Packet::new(DISCOVER).mac([2, 0, 0, 0, 0, 0x0d]);
    assert_eq!(offer(&mut s, &a(), t.at(0)), Ok(A));
    assert_eq!(offer(&mut s, &b(), t.at(0)), Ok(B));
    assert_eq!(offer(&mut s, &c, t.at(0)), Ok(C));
    assert_eq!(offer(&mut s, &d, t.at(5)), Err(NoOffer::Exhausted));
    // At most one sweep a second: still exhausted within that second even after expiry.
    assert_eq!(offer(&mut s, &d, t.at(5)), Err(NoOffer::Exhausted));
    assert_eq!(offer(&mut s, &d, t.at(11)), Ok(A));
}

#[test]
fn leases_expire() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    offer(&mut s, &a(), t.at(0)).unwrap();
    confirm(&mut s, &a(), A, RequestState::Selecting, t.at(0));
    offer(&mut s, &b(), t.at(0)).unwrap();
    confirm(&mut s, &b(), B, RequestState::Selecting, t.at(0));
    let c = Packet::new(DISCOVER).mac([2, 0, 0, 0, 0, 0x0c]);
    offer(&mut s, &c, t.at(0)).unwrap();
    confirm(&mut s, &c, C, RequestState::Selecting, t.at(0));
    let d = Packet::new(DISCOVER).mac([2, 0, 0, 0, 0, 0x0d]);
    assert_eq!(offer(&mut s, &d, t.at(59)), Err(NoOffer::Exhausted));
    assert!(offer(&mut s, &d, t.at(61)).is_ok(), "60 s leases expired");
}

#[test]
fn an_expired_lease_is_reclaimed_when_another_client_asks_for_it() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    offer(&mut s, &a(), t.at(0)).unwrap();
    confirm(&mut s, &a(), A, RequestState::Selecting, t.at(0));
    assert_eq!(
        confirm(&mut s, &b(), A, RequestState::Renewing, t.at(30)),
        Confirmation::Nak
    );
    assert_eq!(
        confirm(&mut s, &b(), A, RequestState::Renewing, t.at(61)),
        Confirmation::Ack(Lease::new(A))
    );
    assert_eq!(
        confirm(&mut s, &a(), A, RequestState::Renewing, t.at(62)),
        Confirmation::Nak
    );
}

#[test]
fn release_frees_and_the_client_gets_its_address_back() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    assert_eq!(offer(&mut s, &b(), t.at(0)), Ok(A));
    assert_eq!(offer(&mut s, &a(), t.at(0)), Ok(B));
    confirm(&mut s, &a(), B, RequestState::Selecting, t.at(0));
    assert!(!with(&a(), t.at(1), |q| s.release(q, C)), "not its address");
    assert!(with(&a(), t.at(1), |q| s.release(q, B)));
    assert_eq!(s.pool().state(B), AddrState::Free);
    assert!(
        !with(&a(), t.at(1), |q| s.release(q, B)),
        "already released"
    );
    assert_eq!(offer(&mut s, &a(), t.at(2)), Ok(B), "remembered");
}

#[test]
fn decline_quarantines_for_the_probation_period() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    offer(&mut s, &a(), t.at(0)).unwrap();
    confirm(&mut s, &a(), A, RequestState::Selecting, t.at(0));
    assert!(!with(&a(), t.at(1), |q| s.decline(q, B)));
    assert!(with(&a(), t.at(1), |q| s.decline(q, A)));
    assert_eq!(s.pool().state(A), AddrState::Allocated);
    assert_eq!(s.quarantined().collect::<Vec<_>>(), vec![A]);
    assert_eq!(
        offer(&mut s, &a(), t.at(2)),
        Ok(B),
        "not steered back to the conflict"
    );
    assert_eq!(offer(&mut s, &b(), t.at(3)), Ok(C));
    let newcomer = Packet::new(DISCOVER).mac([2; 6]);
    assert_eq!(offer(&mut s, &newcomer, t.at(4)), Err(NoOffer::Exhausted));
    assert_eq!(offer(&mut s, &newcomer, t.at(101)), Ok(A), "probation over");
    assert_eq!(s.quarantined().count(), 0);
}

#[test]
fn abandon_releases_only_offers() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    offer(&mut s, &a(), t.at(0)).unwrap();
    with(&a(), t.at(0), |q| s.abandon(q));
    assert_eq!(s.pool().used(), 0);
    offer(&mut s, &a(), t.at(0)).unwrap();
    confirm(&mut s, &a(), A, RequestState::Selecting, t.at(0));
    with(&a(), t.at(0), |q| s.abandon(q));
    assert_eq!(s.pool().used(), 1, "a bound lease stays");
}

#[test]
fn unknown_clients_after_a_restart() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    let p = Packet::new(REQUEST);
    // INIT-REBOOT of a client we have no record of: the engine decides (silent or NAK).
    assert_eq!(
        confirm(&mut s, &p, B, RequestState::InitReboot, t.at(0)),
        Confirmation::Unknown
    );
    // Renewing a free address in range: keep it.
    assert_eq!(
        confirm(&mut s, &p, B, RequestState::Renewing, t.at(0)),
        Confirmation::Ack(Lease::new(B))
    );
    // Someone else's address: NAK. Outside the range: unknown.
    let other = Packet::new(REQUEST).mac(MAC_B);
    assert_eq!(
        confirm(&mut s, &other, B, RequestState::Rebinding, t.at(0)),
        Confirmation::Nak
    );
    let outside = Ipv4Addr::new(10, 0, 0, 99);
    assert_eq!(
        confirm(&mut s, &other, outside, RequestState::Rebinding, t.at(0)),
        Confirmation::Unknown
    );
}

#[test]
fn clients_are_keyed_by_client_id_unless_told_otherwise() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    let id1 = a().opt(61, &[1, 2, 3]);
    let id2 = a().opt(61, &[4, 5, 6]); // same MAC, other client-id: another client
    assert_eq!(offer(&mut s, &id1, t.at(0)), Ok(A));
    assert_eq!(offer(&mut s, &id2, t.at(0)), Ok(B));
    let mut s = source().with_client_id_matching(false);
    assert_eq!(offer(&mut s, &id1, t.at(0)), Ok(A));
    assert_eq!(offer(&mut s, &id2, t.at(0)), Ok(A), "chaddr only");
}

#[test]
fn clients_without_identity_get_nothing() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    let anonymous = Packet::new(DISCOVER).htype(1, 0);
    assert_eq!(
        offer(&mut s, &anonymous, t.at(0)),
        Err(NoOffer::UnknownClient)
    );
    assert_eq!(
        confirm(&mut s, &anonymous, A, RequestState::Selecting, t.at(0)),
        Confirmation::Unknown
    );
}

#[test]
fn infinite_leases_never_expire() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    offer(&mut s, &a(), t.at(0)).unwrap();
    let bytes = a().bytes();
    let req = Request::parse(&bytes).unwrap();
    let q = Query::new(&req, t.at(0), LeaseTime::INFINITE);
    assert_eq!(
        s.confirm(&q, A, RequestState::Selecting),
        Confirmation::Ack(Lease::new(A))
    );
    assert_eq!(s.bound().collect::<Vec<_>>(), vec![(A, None)]);
    assert_eq!(
        confirm(&mut s, &b(), A, RequestState::Renewing, t.at(1_000_000)),
        Confirmation::Nak
    );
}

#[test]
fn sweeping_forgets_clients_that_hold_nothing() {
    let (mut s, t) = (source(), Clock(Instant::now()));
    for i in 0..3u8 {
        offer(
            &mut s,
            &Packet::new(DISCOVER).mac([2, 0, 0, 0, 1, i]),
            t.at(0),
        )
        .unwrap();
    }
    assert!(with(
        &Packet::new(DISCOVER).mac([2, 0, 0, 0, 1, 0]),
        t.at(1),
        |q| { s.decline(q, A) }
    ));
    assert_eq!(s.bindings.len(), 2);
    // Offers expired; a flood of new clients exhausts the pool and triggers a sweep.
    for i in 0..10u8 {
        let _ = offer(
            &mut s,
            &Packet::new(DISCOVER).mac([2, 0, 0, 0, 2, i]),
            t.at(20),
        );
    }
    assert!(s.bindings.len() <= 2, "{} bindings", s.bindings.len());
    assert!(s.bindings.values().all(Binding::held));
}
