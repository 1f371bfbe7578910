//! One test per row of the RFC 2131 §4.3 message-handling table and per reply-destination rule
//! of §4.1, then the option rules of RFC 2131/2132.

use std::time::Duration;

use dhcproto::v4::{DhcpOption, MessageType as T, OptionCode};

use super::*;
use crate::testutil::*;
use crate::{DynamicPool, HostnamePolicy, IgnoreReason, LeaseTime, MacAddr, StaticLeases};

const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const WRONG: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 77);

fn cfg() -> Config {
    config().build().unwrap()
}

fn now() -> Instant {
    Instant::now()
}

fn go(packet: &Packet, ctx: &Context) -> Outcome {
    run(packet, ctx, &cfg(), &mut leases(), now())
}

fn ignored(o: &Outcome) -> IgnoreReason {
    assert!(o.wire.is_none(), "expected silence, got {:?}", o.event);
    match o.event.kind() {
        EventKind::Ignored(r) => r,
        k => panic!("expected an ignored event, got {k:?}"),
    }
}

fn msg_type(o: &Outcome) -> T {
    o.reply().opts().msg_type().expect("option 53")
}

// ---- §5.4, row by row -------------------------------------------------------------------

#[test]
fn discover_gets_an_offer_with_table3_header() {
    let p = Packet::new(DISCOVER)
        .hops(1)
        .secs(9)
        .broadcast_flag()
        .giaddr(RELAY)
        .opt(61, &[1, 2, 3]);
    let o = go(&p, &broadcast());
    assert_eq!(o.event.kind(), EventKind::Offered);
    assert_eq!(o.event.addr(), ADDR_A);
    let r = o.reply();
    assert_eq!(msg_type(&o), T::Offer);
    assert_eq!(r.opcode(), dhcproto::v4::Opcode::BootReply);
    assert_eq!(r.xid(), 0x1234);
    assert_eq!((r.hops(), r.secs()), (0, 0), "hops and secs are 0");
    assert!(r.flags().broadcast(), "flags copied");
    assert_eq!(r.ciaddr(), Ipv4Addr::UNSPECIFIED, "ciaddr is 0 in an OFFER");
    assert_eq!(r.yiaddr(), ADDR_A);
    assert_eq!(r.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.giaddr(), RELAY, "giaddr copied");
    assert_eq!(r.chaddr(), &MAC_A);
    assert_eq!(r.htype(), dhcproto::v4::HType::Eth);
    assert_eq!(
        r.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        r.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        r.opts().get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(1800))
    );
    assert_eq!(
        r.opts().get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
}

#[test]
fn discover_with_ciaddr_still_gets_ciaddr_zero() {
    // The Go agent copied the lease address into ciaddr; Table 3 says 0.
    let o = go(&Packet::new(DISCOVER).ciaddr(ADDR_A), &broadcast());
    assert_eq!(o.reply().ciaddr(), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn discover_from_unknown_client_is_silent() {
    let o = go(&Packet::new(DISCOVER).mac(MAC_B), &broadcast());
    assert_eq!(ignored(&o), IgnoreReason::UnknownClient);
    assert_eq!(o.event.client().mac(), Some(MacAddr::new(MAC_B)));
}

#[test]
fn discover_with_exhausted_pool_is_silent() {
    let pool = ipam::Pool::new("10.0.0.0/24".parse().unwrap(), ADDR_A, ADDR_A).unwrap();
    let mut source = DynamicPool::new(pool);
    let t = now();
    let first = run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut source, t);
    assert_eq!(first.event.kind(), EventKind::Offered);
    let second = run(
        &Packet::new(DISCOVER).mac(MAC_B),
        &broadcast(),
        &cfg(),
        &mut source,
        t,
    );
    assert_eq!(ignored(&second), IgnoreReason::PoolExhausted);
}

#[test]
fn request_selecting_our_offer_is_acked() {
    let p = Packet::new(REQUEST)
        .server_id(SERVER)
        .requested(ADDR_A)
        .opt(61, &[7]);
    let o = go(&p, &broadcast());
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::Selecting));
    let r = o.reply();
    assert_eq!(msg_type(&o), T::Ack);
    assert_eq!(r.yiaddr(), ADDR_A);
    assert_eq!(r.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(o.target, Some(Target::Broadcast));
}

#[test]
fn request_selecting_another_server_is_silent_and_drops_our_offer() {
    let pool = ipam::Pool::new("10.0.0.0/24".parse().unwrap(), ADDR_A, ADDR_A).unwrap();
    let mut source = DynamicPool::new(pool);
    let t = now();
    run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut source, t);
    assert_eq!(source.pool().available(), 0, "offer held");
    let p = Packet::new(REQUEST)
        .server_id(OTHER_SERVER)
        .requested(ADDR_A);
    let o = run(&p, &broadcast(), &cfg(), &mut source, t);
    assert_eq!(ignored(&o), IgnoreReason::OtherServer(OTHER_SERVER));
    assert_eq!(source.pool().available(), 1, "offer released");
}

#[test]
fn request_selecting_an_address_that_is_not_the_clients_is_nacked() {
    let o = go(
        &Packet::new(REQUEST).server_id(SERVER).requested(WRONG),
        &broadcast(),
    );
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::Selecting));
    assert_eq!(o.event.addr(), WRONG);
    assert_eq!(msg_type(&o), T::Nak);
}

#[test]
fn request_selecting_from_unknown_client_is_nacked() {
    // It named us as its server: silence would leave it waiting.
    let o = go(
        &Packet::new(REQUEST)
            .mac(MAC_B)
            .server_id(SERVER)
            .requested(ADDR_A),
        &broadcast(),
    );
    assert_eq!(msg_type(&o), T::Nak);
}

#[test]
fn request_selecting_without_option_50_uses_ciaddr_and_never_acks_zero() {
    let o = go(
        &Packet::new(REQUEST).server_id(SERVER).ciaddr(ADDR_A),
        &broadcast(),
    );
    assert_eq!(msg_type(&o), T::Ack);
    assert_eq!(o.reply().yiaddr(), ADDR_A);
    let o = go(&Packet::new(REQUEST).server_id(SERVER), &broadcast());
    assert_eq!(ignored(&o), IgnoreReason::NoAddress);
    let o = go(
        &Packet::new(REQUEST)
            .server_id(SERVER)
            .requested(Ipv4Addr::UNSPECIFIED),
        &broadcast(),
    );
    assert_eq!(ignored(&o), IgnoreReason::NoAddress);
}

#[test]
fn request_init_reboot_with_the_right_address_is_acked() {
    let o = go(&Packet::new(REQUEST).requested(ADDR_A), &broadcast());
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::InitReboot));
    assert_eq!(o.reply().yiaddr(), ADDR_A);
}

#[test]
fn request_init_reboot_with_a_wrong_address_is_nacked() {
    let o = go(&Packet::new(REQUEST).requested(WRONG), &broadcast());
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::InitReboot));
    assert_eq!(o.target, Some(Target::Broadcast));
}

#[test]
fn request_init_reboot_on_the_wrong_network_is_nacked_even_when_unknown() {
    let elsewhere = Ipv4Addr::new(192, 168, 7, 7);
    let o = go(
        &Packet::new(REQUEST).mac(MAC_B).requested(elsewhere),
        &broadcast(),
    );
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::InitReboot));
    let nak = o.reply();
    assert!(
        matches!(nak.opts().get(OptionCode::Message), Some(DhcpOption::Message(m)) if m.contains("network"))
    );
}

#[test]
fn request_init_reboot_from_unknown_client_is_silent_unless_authoritative() {
    let p = Packet::new(REQUEST).mac(MAC_B).requested(ADDR_A);
    assert_eq!(ignored(&go(&p, &broadcast())), IgnoreReason::UnknownClient);
    let auth = config().authoritative(true).build().unwrap();
    let o = run(&p, &broadcast(), &auth, &mut leases(), now());
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::InitReboot));
}

#[test]
fn request_renewing_is_acked_unicast_to_ciaddr() {
    let o = go(&Packet::new(REQUEST).ciaddr(ADDR_A), &unicast(ADDR_A));
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::Renewing));
    assert_eq!(o.target, Some(Target::Unicast(ADDR_A)));
    let r = o.reply();
    assert_eq!(r.ciaddr(), ADDR_A, "ACK copies ciaddr");
    assert_eq!(r.yiaddr(), ADDR_A);
}

#[test]
fn request_renewing_a_wrong_address_is_nacked_by_broadcast() {
    let o = go(&Packet::new(REQUEST).ciaddr(WRONG), &unicast(WRONG));
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::Renewing));
    assert_eq!(
        o.target,
        Some(Target::Broadcast),
        "NAKs are broadcast even with ciaddr"
    );
    assert_eq!(o.reply().ciaddr(), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn request_renewing_from_unknown_client_is_silent_unless_authoritative() {
    let p = Packet::new(REQUEST).mac(MAC_B).ciaddr(ADDR_A);
    assert_eq!(
        ignored(&go(&p, &unicast(ADDR_A))),
        IgnoreReason::UnknownClient
    );
    let auth = config().authoritative(true).build().unwrap();
    let o = run(&p, &unicast(ADDR_A), &auth, &mut leases(), now());
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::Renewing));
}

#[test]
fn request_rebinding_is_told_from_renewing_by_the_destination() {
    let p = Packet::new(REQUEST).ciaddr(ADDR_A);
    let o = go(&p, &broadcast());
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::Rebinding));
    assert_eq!(o.target, Some(Target::Unicast(ADDR_A)));
    // A subnet-directed broadcast counts too, and so does a relayed request.
    let subnet_bcast = Context::new(
        2,
        "10.0.0.50:68".parse().unwrap(),
        "10.0.0.255".parse().unwrap(),
    );
    assert_eq!(
        go(&p, &subnet_bcast).event.kind(),
        EventKind::Acked(RequestState::Rebinding)
    );
    let o = go(&p.clone().giaddr(RELAY), &unicast(RELAY));
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::Rebinding));
}

#[test]
fn request_rebinding_wrong_address_is_nacked_and_unknown_is_silent() {
    let o = go(&Packet::new(REQUEST).ciaddr(WRONG), &broadcast());
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::Rebinding));
    let o = go(
        &Packet::new(REQUEST).mac(MAC_B).ciaddr(ADDR_A),
        &broadcast(),
    );
    assert_eq!(ignored(&o), IgnoreReason::UnknownClient);
}

#[test]
fn request_with_no_address_at_all_is_ignored() {
    assert_eq!(
        ignored(&go(&Packet::new(REQUEST), &broadcast())),
        IgnoreReason::NoAddress
    );
}

#[test]
fn decline_gets_no_reply_and_an_event() {
    let p = Packet::new(DECLINE).server_id(SERVER).requested(ADDR_A);
    let o = go(&p, &broadcast());
    assert!(o.wire.is_none());
    assert_eq!(o.event.kind(), EventKind::Declined);
    assert_eq!(o.event.addr(), ADDR_A);
    // Not the client's address, another server's, or no address: ignored with a reason.
    let o = go(
        &Packet::new(DECLINE).server_id(SERVER).requested(WRONG),
        &broadcast(),
    );
    assert_eq!(ignored(&o), IgnoreReason::NotClientAddress(WRONG));
    let o = go(
        &Packet::new(DECLINE)
            .server_id(OTHER_SERVER)
            .requested(ADDR_A),
        &broadcast(),
    );
    assert_eq!(ignored(&o), IgnoreReason::OtherServer(OTHER_SERVER));
    assert_eq!(
        ignored(&go(&Packet::new(DECLINE), &broadcast())),
        IgnoreReason::NoAddress
    );
}

#[test]
fn decline_quarantines_in_the_dynamic_pool() {
    let pool = ipam::Pool::new("10.0.0.0/24".parse().unwrap(), ADDR_A, ADDR_A).unwrap();
    let mut source = DynamicPool::new(pool).with_probation(Duration::from_secs(60));
    let t = now();
    run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut source, t);
    run(
        &Packet::new(REQUEST).server_id(SERVER).requested(ADDR_A),
        &broadcast(),
        &cfg(),
        &mut source,
        t,
    );
    let o = run(
        &Packet::new(DECLINE).server_id(SERVER).requested(ADDR_A),
        &broadcast(),
        &cfg(),
        &mut source,
        t,
    );
    assert_eq!(o.event.kind(), EventKind::Declined);
    assert_eq!(source.quarantined().collect::<Vec<_>>(), vec![ADDR_A]);
    let o = run(
        &Packet::new(DISCOVER).mac(MAC_B),
        &broadcast(),
        &cfg(),
        &mut source,
        t,
    );
    assert_eq!(ignored(&o), IgnoreReason::PoolExhausted);
    let later = t + Duration::from_secs(61);
    let o = run(
        &Packet::new(DISCOVER).mac(MAC_B),
        &broadcast(),
        &cfg(),
        &mut source,
        later,
    );
    assert_eq!(o.event.kind(), EventKind::Offered);
}

#[test]
fn release_gets_no_reply_and_an_event() {
    let o = go(
        &Packet::new(RELEASE).server_id(SERVER).ciaddr(ADDR_A),
        &unicast(ADDR_A),
    );
    assert!(o.wire.is_none());
    assert_eq!(o.event.kind(), EventKind::Released);
    assert_eq!(o.event.addr(), ADDR_A);
    let o = go(
        &Packet::new(RELEASE).server_id(SERVER).ciaddr(WRONG),
        &unicast(WRONG),
    );
    assert_eq!(ignored(&o), IgnoreReason::NotClientAddress(WRONG));
    let o = go(
        &Packet::new(RELEASE).server_id(OTHER_SERVER).ciaddr(ADDR_A),
        &unicast(ADDR_A),
    );
    assert_eq!(ignored(&o), IgnoreReason::OtherServer(OTHER_SERVER));
    assert_eq!(
        ignored(&go(&Packet::new(RELEASE), &broadcast())),
        IgnoreReason::NoAddress
    );
}

#[test]
fn inform_gets_an_ack_without_lease_time_or_yiaddr() {
    let client = Ipv4Addr::new(10, 0, 0, 99); // any address of the subnet: no lease check
    let p = Packet::new(INFORM)
        .mac(MAC_B)
        .ciaddr(client)
        .prl(&[1, 3, 6, 51]);
    let o = go(&p, &unicast(client));
    assert_eq!(o.event.kind(), EventKind::Informed);
    assert_eq!(o.target, Some(Target::Unicast(client)));
    let r = o.reply();
    assert_eq!(msg_type(&o), T::Ack);
    assert_eq!(r.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.ciaddr(), client);
    for absent in [
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ] {
        assert!(r.opts().get(absent).is_none(), "{absent:?}");
    }
    assert!(r.opts().get(OptionCode::DomainNameServer).is_some());
}

#[test]
fn inform_from_another_network_is_ignored() {
    let elsewhere = Ipv4Addr::new(192, 168, 1, 1);
    let o = go(&Packet::new(INFORM).ciaddr(elsewhere), &unicast(elsewhere));
    assert_eq!(ignored(&o), IgnoreReason::WrongNetwork(elsewhere));
}

#[test]
fn bootreply_is_dropped() {
    let o = go(&Packet::new(DISCOVER).op(2), &broadcast());
    assert_eq!(ignored(&o), IgnoreReason::NotBootRequest);
}

#[test]
fn bootp_without_option_53_is_dropped() {
    assert_eq!(
        ignored(&go(&Packet::bootp(), &broadcast())),
        IgnoreReason::NoMessageType
    );
}

#[test]
fn server_message_types_are_dropped() {
    for t in [2, 5, 6, 9, 10, 200] {
        let o = go(&Packet::new(t), &broadcast());
        assert_eq!(ignored(&o), IgnoreReason::UnsupportedMessageType(t));
    }
}

#[test]
fn relay_from_a_foreign_subnet_is_ignored() {
    let foreign = Ipv4Addr::new(192, 168, 0, 1);
    let o = go(&Packet::new(DISCOVER).giaddr(foreign), &unicast(foreign));
    assert_eq!(ignored(&o), IgnoreReason::WrongNetwork(foreign));
}

#[test]
fn lease_outside_the_subnet_is_not_offered_or_acked() {
    let outside = Ipv4Addr::new(10, 9, 9, 9);
    let mut l: StaticLeases = [(MacAddr::new(MAC_A), Lease::new(outside))]
        .into_iter()
        .collect();
    let o = run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut l, now());
    assert_eq!(ignored(&o), IgnoreReason::LeaseOutsideSubnet(outside));
    let p = Packet::new(REQUEST).server_id(SERVER).requested(outside);
    let o = run(&p, &broadcast(), &cfg(), &mut l, now());
    assert_eq!(o.event.kind(), EventKind::Nacked(RequestState::Selecting));
}

#[test]
fn non_ethernet_clients_are_unknown_to_static_leases() {
    let o = go(&Packet::new(DISCOVER).htype(32, 0), &broadcast());
    assert_eq!(ignored(&o), IgnoreReason::UnknownClient);
}

// ---- §5.3, reply destinations -----------------------------------------------------------

#[test]
fn rule1_relayed_replies_go_to_giaddr() {
    let o = go(&Packet::new(DISCOVER).giaddr(RELAY), &unicast(RELAY));
    assert_eq!(o.target, Some(Target::Relay(RELAY)));
    let o = go(
        &Packet::new(REQUEST)
            .giaddr(RELAY)
            .server_id(SERVER)
            .requested(ADDR_A),
        &unicast(RELAY),
    );
    assert_eq!(o.target, Some(Target::Relay(RELAY)));
}

#[test]
fn rule2_ciaddr_means_unicast() {
    let o = go(&Packet::new(DISCOVER).ciaddr(ADDR_A), &unicast(ADDR_A));
    assert_eq!(o.target, Some(Target::Unicast(ADDR_A)));
}

#[test]
fn rule3_broadcast_flag_means_broadcast() {
    let o = go(&Packet::new(DISCOVER).broadcast_flag(), &broadcast());
    assert_eq!(o.target, Some(Target::Broadcast));
    assert!(o.reply().flags().broadcast());
}

#[test]
fn rule4_no_flag_and_no_ciaddr_still_broadcasts() {
    // No ARP injection without CAP_NET_ADMIN: broadcast, as RFC 2131 §4.1 allows.
    let o = go(&Packet::new(DISCOVER), &broadcast());
    assert_eq!(o.target, Some(Target::Broadcast));
    assert!(!o.reply().flags().broadcast(), "flags copied, not invented");
}

#[test]
fn rule5_naks_are_broadcast_or_relayed_with_the_broadcast_bit() {
    let o = go(&Packet::new(REQUEST).ciaddr(WRONG), &unicast(WRONG));
    assert_eq!(o.target, Some(Target::Broadcast));
    let o = go(
        &Packet::new(REQUEST).giaddr(RELAY).requested(WRONG),
        &unicast(RELAY),
    );
    assert_eq!(o.target, Some(Target::Relay(RELAY)));
    assert!(
        o.reply().flags().broadcast(),
        "relay must broadcast the NAK"
    );
}

#[test]
fn rule6_inform_ack_goes_to_ciaddr_or_the_relay() {
    let client = Ipv4Addr::new(10, 0, 0, 99);
    let o = go(&Packet::new(INFORM).ciaddr(client), &unicast(client));
    assert_eq!(o.target, Some(Target::Unicast(client)));
    let o = go(
        &Packet::new(INFORM).ciaddr(client).giaddr(RELAY),
        &unicast(RELAY),
    );
    assert_eq!(o.target, Some(Target::Relay(RELAY)));
}

// ---- §5.2, options --------------------------------------------------------------------

#[test]
fn options_follow_53_54_then_prl_order_then_the_rest_82_last() {
    let p = Packet::new(DISCOVER)
        .prl(&[42, 6, 1, 3, 15])
        .opt(61, &[1, 9])
        .opt(82, &[1, 1, 7]);
    let wire = go(&p, &broadcast()).wire.unwrap();
    assert_eq!(
        codes(&wire),
        vec![53, 54, 42, 6, 1, 3, 15, 28, 51, 58, 59, 119, 61, 82, 255]
    );
}

#[test]
fn subnet_mask_goes_before_router_even_against_prl_order() {
    let wire = go(&Packet::new(DISCOVER).prl(&[3, 6, 1]), &broadcast())
        .wire
        .unwrap();
    assert_eq!(&codes(&wire)[..5], &[53, 54, 1, 3, 6]);
}

#[test]
fn classless_routes_suppress_router_for_clients_that_ask_for_them() {
    let c = config().classless_routes(routes()).build().unwrap();
    let asks = Packet::new(DISCOVER).prl(&[1, 121, 3, 6]);
    let wire = run(&asks, &broadcast(), &c, &mut leases(), now())
        .wire
        .unwrap();
    assert_eq!(&codes(&wire)[..5], &[53, 54, 1, 121, 6]);
    assert!(!codes(&wire).contains(&3));
    // A client that does not ask for 121 gets option 3 (and 121 among the rest).
    let plain = Packet::new(DISCOVER).prl(&[1, 3, 6]);
    let wire = run(&plain, &broadcast(), &c, &mut leases(), now())
        .wire
        .unwrap();
    assert_eq!(&codes(&wire)[..5], &[53, 54, 1, 3, 6]);
    // Without 121 configured, asking for it changes nothing.
    let wire = go(&asks, &broadcast()).wire.unwrap();
    assert!(codes(&wire).contains(&3));
    // The routes decode as RFC 3442 says, default route included.
    let o = run(&asks, &broadcast(), &c, &mut leases(), now());
    let Some(DhcpOption::ClasslessStaticRoute(r)) = o
        .reply()
        .opts()
        .get(OptionCode::ClasslessStaticRoute)
        .cloned()
    else {
        panic!("no option 121");
    };
    assert_eq!(r.len(), 2);
    assert_eq!(r[1], ("0.0.0.0/0".parse().unwrap(), SERVER));
}

#[test]
fn domain_search_decodes_back() {
    let o = go(&Packet::new(DISCOVER).prl(&[119]), &broadcast());
    let Some(DhcpOption::DomainSearch(names)) =
        o.reply().opts().get(OptionCode::DomainSearch).cloned()
    else {
        panic!("no option 119");
    };
    let names: Vec<String> = names.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["vm.example.", "example."]);
}

#[test]
fn no_zero_length_options_and_no_router_when_none_configured() {
    let bare = Config::builder(SERVER, "10.0.0.0/24".parse().unwrap())
        .build()
        .unwrap();
    let p = Packet::new(DISCOVER).prl(&[1, 3, 6, 12, 15, 26, 28, 42, 119, 121]);
    let wire = run(&p, &broadcast(), &bare, &mut leases(), now())
        .wire
        .unwrap();
    assert!(
        !codes(&wire).contains(&3),
        "no router configured: no option 3"
    );
    let mut i = 240;
    while wire[i] != 255 {
        if wire[i] == 0 {
            i += 1;
            continue;
        }
        assert_ne!(wire[i + 1], 0, "option {} has length 0", wire[i]);
        i += 2 + usize::from(wire[i + 1]);
    }
}

#[test]
fn replies_are_padded_to_300_bytes_with_pad() {
    let bare = Config::builder(SERVER, "10.0.0.0/24".parse().unwrap())
        .build()
        .unwrap();
    let wire = run(
        &Packet::new(DISCOVER),
        &broadcast(),
        &bare,
        &mut leases(),
        now(),
    )
    .wire
    .unwrap();
    assert_eq!(wire.len(), 300);
    let options: usize = codes(&wire)
        .iter()
        .filter(|&&c| c != 255)
        .map(|&c| 2 + raw_option(&wire, c).unwrap().len())
        .sum();
    let end = 240 + options;
    assert_eq!(wire[end], 255);
    assert!(wire[end + 1..].iter().all(|&b| b == 0), "padded with Pad");
    // A reply longer than 300 bytes is not padded further.
    let p = Packet::new(DISCOVER).opt(61, &[5; 100]);
    let wire = go(&p, &broadcast()).wire.unwrap();
    assert!(wire.len() > 300);
    assert_eq!(*wire.last().unwrap(), 255);
}

fn big_config() -> Config {
    let search: Vec<String> = (0..12)
        .map(|i| format!("zone{i}.example-domain.internal"))
        .collect();
    config()
        .dns((1..=30).map(|i| Ipv4Addr::new(10, 0, 1, i)))
        .ntp((1..=20).map(|i| Ipv4Addr::new(10, 0, 2, i)))
        .domain_search(search)
        .build()
        .unwrap()
}

#[test]
fn replies_respect_576_bytes_by_dropping_lowest_priority_options() {
    let c = big_config();
    let p = Packet::new(DISCOVER).prl(&[1, 3, 6]).opt(61, &[1; 20]);
    let wire = run(&p, &broadcast(), &c, &mut leases(), now())
        .wire
        .unwrap();
    assert!(wire.len() <= 548, "{} bytes", wire.len());
    let got = codes(&wire);
    for kept in [53, 54, 1, 3, 6, 51, 61] {
        assert!(got.contains(&kept), "{kept} dropped: {got:?}");
    }
    assert!(
        !got.contains(&119) || !got.contains(&42),
        "something had to go: {got:?}"
    );
}

#[test]
fn option_57_raises_the_limit_and_small_values_mean_576() {
    let c = big_config();
    let p = Packet::new(DISCOVER).max_size(1500);
    let wire = run(&p, &broadcast(), &c, &mut leases(), now())
        .wire
        .unwrap();
    assert!(wire.len() > 548 && wire.len() <= 1472, "{}", wire.len());
    for c in [6, 42, 119] {
        assert!(codes(&wire).contains(&c));
    }
    let small = Packet::new(DISCOVER).max_size(300);
    let wire = run(&small, &broadcast(), &c, &mut leases(), now())
        .wire
        .unwrap();
    assert!(wire.len() <= 548);
    // The configured MTU caps option 57.
    let c = config()
        .mtu(576)
        .dns((1..=100).map(|i| Ipv4Addr::new(10, 0, 1, i)))
        .build()
        .unwrap();
    let wire = run(&p, &broadcast(), &c, &mut leases(), now())
        .wire
        .unwrap();
    assert!(wire.len() <= 548);
}

#[test]
fn a_reply_whose_required_options_cannot_fit_is_refused() {
    let p = Packet::new(DISCOVER).opt(61, &[1; 255]).opt(82, &[2; 255]);
    let bytes = p.bytes();
    let req = Request::parse(&bytes).unwrap();
    let c = cfg();
    let d = decide(&req, &broadcast(), &c, &mut leases(), now());
    let err = d.reply().unwrap().to_vec().unwrap_err();
    assert!(
        matches!(err, crate::EncodeError::TooLarge { limit: 548, .. }),
        "{err}"
    );
    let mut small = [0u8; 10];
    let err = d.reply().unwrap().encode(&mut small).unwrap_err();
    assert!(matches!(err, crate::EncodeError::TooLarge { .. }));
}

#[test]
fn client_id_and_relay_info_are_echoed_in_every_reply() {
    let id = [0xff, 0, 0, 0, 1, 0, 1, 0x2a];
    let info = [1, 4, b'p', b'o', b'r', b't'];
    let with = |p: Packet| p.opt(61, &id).opt(82, &info);
    for (p, ctx) in [
        (with(Packet::new(DISCOVER)), broadcast()),
        (
            with(Packet::new(REQUEST).server_id(SERVER).requested(ADDR_A)),
            broadcast(),
        ),
        (
            with(Packet::new(REQUEST).server_id(SERVER).requested(WRONG)),
            broadcast(),
        ),
        (with(Packet::new(INFORM).ciaddr(ADDR_A)), unicast(ADDR_A)),
    ] {
        let wire = go(&p.giaddr(RELAY), &ctx).wire.unwrap();
        assert_eq!(raw_option(&wire, 61).as_deref(), Some(&id[..]));
        assert_eq!(raw_option(&wire, 82).as_deref(), Some(&info[..]));
        let c = codes(&wire);
        assert_eq!(&c[c.len() - 2..], &[82, 255], "82 last");
    }
}

#[test]
fn nak_carries_only_53_54_56_61_82() {
    let p = Packet::new(REQUEST)
        .requested(WRONG)
        .prl(&[1, 3, 6, 51])
        .opt(61, &[1, 2])
        .opt(82, &[1, 1, 1]);
    let wire = go(&p, &broadcast()).wire.unwrap();
    assert_eq!(codes(&wire), vec![53, 54, 56, 61, 82, 255]);
    let r = decode(&wire);
    assert_eq!(
        (r.yiaddr(), r.ciaddr()),
        (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED)
    );
}

#[test]
fn options_50_55_57_are_never_sent() {
    let p = Packet::new(DISCOVER)
        .requested(ADDR_A)
        .prl(&[50, 55, 57, 52, 53, 54, 1])
        .max_size(1000);
    let wire = go(&p, &broadcast()).wire.unwrap();
    let c = codes(&wire);
    for never in [50, 52, 55, 57] {
        assert!(!c.contains(&never), "{never} in {c:?}");
    }
    assert_eq!(
        c.iter().filter(|&&x| x == 53 || x == 54).count(),
        2,
        "each once"
    );
}

#[test]
fn hostname_follows_the_policy() {
    let mut l: StaticLeases = [(
        MacAddr::new(MAC_A),
        Lease::new(ADDR_A).with_hostname("vm-a"),
    )]
    .into_iter()
    .collect();
    let p = Packet::new(DISCOVER).prl(&[12]);
    let wire = run(&p, &broadcast(), &cfg(), &mut l, now()).wire.unwrap();
    assert!(raw_option(&wire, 12).is_none());
    let c = config()
        .hostname_policy(HostnamePolicy::FromLease)
        .build()
        .unwrap();
    let wire = run(&p, &broadcast(), &c, &mut l, now()).wire.unwrap();
    assert_eq!(raw_option(&wire, 12).as_deref(), Some(&b"vm-a"[..]));
    assert_eq!(codes(&wire)[2], 12, "in PRL position");
}

#[test]
fn lease_time_comes_from_the_lease_then_the_config_and_infinite_has_no_timers() {
    let mut l: StaticLeases = [(
        MacAddr::new(MAC_A),
        Lease::new(ADDR_A).with_lease_time(LeaseTime::INFINITE),
    )]
    .into_iter()
    .collect();
    let o = run(&Packet::new(DISCOVER), &broadcast(), &cfg(), &mut l, now());
    let r = o.reply();
    assert_eq!(
        r.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(u32::MAX))
    );
    assert!(r.opts().get(OptionCode::Renewal).is_none());
    assert!(r.opts().get(OptionCode::Rebinding).is_none());
    let c = config()
        .lease_time(LeaseTime::from_secs(100))
        .timers_permille(300, 600)
        .build()
        .unwrap();
    let o = run(
        &Packet::new(DISCOVER),
        &broadcast(),
        &c,
        &mut leases(),
        now(),
    );
    let r = o.reply();
    assert_eq!(
        r.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(100))
    );
    assert_eq!(
        r.opts().get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(30))
    );
    assert_eq!(
        r.opts().get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(60))
    );
}

#[test]
fn a_new_config_shows_in_the_next_reply() {
    let p = Packet::new(DISCOVER).prl(&[6]);
    let handle = crate::ConfigHandle::new(cfg());
    let first = run(&p, &broadcast(), &handle.load(), &mut leases(), now());
    handle.store(config().dns([Ipv4Addr::new(9, 9, 9, 9)]).build().unwrap());
    let second = run(&p, &broadcast(), &handle.load(), &mut leases(), now());
    assert_eq!(
        raw_option(first.wire.as_ref().unwrap(), 6).unwrap(),
        vec![10, 0, 0, 1, 1, 1, 1, 1]
    );
    assert_eq!(
        raw_option(second.wire.as_ref().unwrap(), 6).unwrap(),
        vec![9, 9, 9, 9]
    );
}

#[test]
fn overloaded_request_options_are_honoured() {
    // The requested address and server id only in `file` (option 52 = 1).
    let mut file = vec![50, 4];
    file.extend(ADDR_A.octets());
    file.extend([54, 4]);
    file.extend(SERVER.octets());
    file.push(255);
    let p = Packet::new(REQUEST).opt(52, &[1]).file(&file);
    let o = go(&p, &broadcast());
    assert_eq!(o.event.kind(), EventKind::Acked(RequestState::Selecting));
    // The reply's file field is zero: we never overload replies.
    let wire = o.wire.unwrap();
    assert!(wire[44..236].iter().all(|&b| b == 0));
}

#[test]
fn a_duid_client_id_does_not_change_the_mac_lookup() {
    // systemd-networkd / dhcpcd style RFC 4361 client-id: type 255, IAID, DUID.
    let duid = [0xff, 0, 0, 0, 1, 0, 4, 0xde, 0xad, 0xbe, 0xef];
    let o = go(&Packet::new(DISCOVER).opt(61, &duid), &broadcast());
    assert_eq!(o.event.kind(), EventKind::Offered);
    assert_eq!(
        raw_option(o.wire.as_ref().unwrap(), 61).unwrap(),
        duid.to_vec()
    );
}
