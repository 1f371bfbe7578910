//! The server over real sockets on loopback, unprivileged: an in-test dhcproto client, the
//! real transport (`IP_PKTINFO`, broadcast replies out of `lo`), events and metrics.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Client, Harness, LEASED, MAC, SERVER_ID, config, counter, msg_type};
use dhcp_server::metrics::{
    EVENTS_DROPPED_TOTAL, EVENTS_TOTAL, IGNORED_TOTAL, RECEIVED_TOTAL, SENT_TOTAL,
};
use dhcp_server::{
    DhcpSocket, DynamicPool, Error, EventKind, Lease, MacAddr, Metrics, RequestState, SocketConfig,
    StaticLeases,
};
use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
use metrics_util::debugging::DebuggingRecorder;

fn leases() -> StaticLeases {
    [(MacAddr::new(MAC), Lease::new(LEASED))]
        .into_iter()
        .collect()
}

async fn start() -> (Client, Harness<StaticLeases>) {
    let client = Client::bind().await;
    let h = Harness::start(config().build().unwrap(), leases(), client.port());
    (client.to(h.addr), h)
}

#[tokio::test]
async fn full_dora() {
    let (client, mut h) = start().await;
    let offer = client.exchange(&client.discover(1)).await;
    assert_eq!(msg_type(&offer), MessageType::Offer);
    assert_eq!(offer.yiaddr(), LEASED);
    assert_eq!(offer.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        offer.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER_ID))
    );
    assert_eq!(
        offer.opts().get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            127, 0, 0, 53
        )]))
    );
    let e = h.event().await;
    assert_eq!(
        (e.kind(), e.addr(), e.xid()),
        (EventKind::Offered, LEASED, 1)
    );

    let ack = client.exchange(&client.request(2, SERVER_ID, LEASED)).await;
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), LEASED);
    assert_eq!(
        ack.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        h.event().await.kind(),
        EventKind::Acked(RequestState::Selecting)
    );
    h.stop().await;
}

#[tokio::test]
async fn broadcast_replies_come_from_the_server_id_and_are_padded() {
    let (client, h) = start().await;
    client.send(&client.discover(3)).await;
    let (_, from, len) = client.recv_within(3, common::TIMEOUT).await.unwrap();
    assert_eq!(from.ip(), IpAddr::V4(SERVER_ID), "IP_PKTINFO source");
    assert!(len >= 300);
    h.stop().await;
}

#[tokio::test]
async fn wrong_address_is_nacked() {
    let (client, mut h) = start().await;
    let mut req = client.message(MessageType::Request, 4);
    req.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(127, 0, 0, 99)));
    let nak = client.exchange(&req).await;
    assert_eq!(msg_type(&nak), MessageType::Nak);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(nak.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(
        h.event().await.kind(),
        EventKind::Nacked(RequestState::InitReboot)
    );
    h.stop().await;
}

#[tokio::test]
async fn renewing_is_acked_by_unicast() {
    let (client, mut h) = start().await;
    let mut req = client.message(MessageType::Request, 5);
    req.set_ciaddr(LEASED);
    let ack = client.exchange(&req).await;
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.ciaddr(), LEASED);
    // Sent to 127.0.0.1 (unicast to us): RENEWING, not REBINDING.
    assert_eq!(
        h.event().await.kind(),
        EventKind::Acked(RequestState::Renewing)
    );
    h.stop().await;
}

#[tokio::test]
async fn inform_is_answered_without_lease_time() {
    let (mut client, mut h) = start().await;
    client.mac = [0x02, 0, 0, 0, 0, 0x77]; // no lease needed
    let mut inform = client.message(MessageType::Inform, 6);
    inform.set_ciaddr(Ipv4Addr::new(127, 0, 0, 77));
    let ack = client.exchange(&inform).await;
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(ack.opts().get(OptionCode::Router).is_some());
    assert_eq!(h.event().await.kind(), EventKind::Informed);
    h.stop().await;
}

#[tokio::test]
async fn release_and_decline_produce_events_and_no_reply() {
    let (client, mut h) = start().await;
    let mut release = client.message(MessageType::Release, 7);
    release.set_ciaddr(LEASED);
    release
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER_ID));
    client.send(&release).await;
    let e = h.event().await;
    assert_eq!((e.kind(), e.addr()), (EventKind::Released, LEASED));

    let mut decline = client.message(MessageType::Decline, 8);
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(LEASED));
    decline
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER_ID));
    client.send(&decline).await;
    let e = h.event().await;
    assert_eq!((e.kind(), e.addr()), (EventKind::Declined, LEASED));
    assert_eq!(e.client().mac(), Some(MacAddr::new(MAC)));

    assert!(
        client
            .recv_within(7, Duration::from_millis(200))
            .await
            .is_none()
    );
    assert!(
        client
            .recv_within(8, Duration::from_millis(10))
            .await
            .is_none()
    );
    h.stop().await;
}

#[tokio::test]
async fn config_and_lease_changes_show_in_the_next_reply() {
    let client = Client::bind().await;
    let table = leases();
    let h = Harness::start(config().build().unwrap(), table.clone(), client.port());
    let client = client.to(h.addr);
    let before = client.exchange(&client.discover(10)).await;
    assert_eq!(before.yiaddr(), LEASED);

    h.config.store(
        config()
            .dns([Ipv4Addr::new(127, 9, 9, 9)])
            .domain_name("changed.example")
            .build()
            .unwrap(),
    );
    table.replace([(MacAddr::new(MAC), Lease::new(Ipv4Addr::new(127, 0, 0, 60)))]);

    let after = client.exchange(&client.discover(11)).await;
    assert_eq!(after.yiaddr(), Ipv4Addr::new(127, 0, 0, 60));
    assert_eq!(
        after.opts().get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            127, 9, 9, 9
        )]))
    );
    assert_eq!(
        after.opts().get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("changed.example".into()))
    );
    h.stop().await;
}

#[tokio::test]
async fn relayed_requests_are_answered_to_the_relay_port() {
    let (client, h) = start().await;
    let mut discover = client.discover(12);
    discover.set_giaddr(Ipv4Addr::LOCALHOST).set_hops(1);
    client.send(&discover).await;
    let (offer, from, _) = client.recv_within(12, common::TIMEOUT).await.unwrap();
    assert_eq!(offer.giaddr(), Ipv4Addr::LOCALHOST);
    assert_eq!(offer.hops(), 0);
    assert_eq!(from, SocketAddr::from((SERVER_ID, h.addr.port())));
    h.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_returns_the_lease_source_and_frees_the_port() {
    let (client, h) = start().await;
    client.exchange(&client.discover(13)).await;
    let addr = h.addr;
    let leases = h.stop().await;
    assert_eq!(leases.len(), 1);
    // The socket is closed: the port can be bound again.
    DhcpSocket::bind(&SocketConfig::new().bind_addr(addr)).expect("port free after shutdown");
}

#[tokio::test]
async fn a_second_server_on_the_same_port_fails_loudly() {
    let (_client, h) = start().await;
    let err = DhcpSocket::bind(&SocketConfig::new().bind_addr(h.addr)).unwrap_err();
    assert!(matches!(err, Error::AddressInUse { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&h.addr.to_string()) && text.contains("already in use"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test]
async fn dynamic_pool_over_the_wire() {
    let client = Client::bind().await;
    let pool = ipam::Pool::new(
        "127.0.0.0/8".parse().unwrap(),
        Ipv4Addr::new(127, 0, 1, 10),
        Ipv4Addr::new(127, 0, 1, 20),
    )
    .unwrap();
    let h = Harness::start(
        config().build().unwrap(),
        DynamicPool::new(pool),
        client.port(),
    );
    let client = client.to(h.addr);
    let offer = client.exchange(&client.discover(20)).await;
    let addr = offer.yiaddr();
    assert_eq!(addr, Ipv4Addr::new(127, 0, 1, 10));
    let ack = client.exchange(&client.request(21, SERVER_ID, addr)).await;
    assert_eq!(msg_type(&ack), MessageType::Ack);
    let pool = h.stop().await;
    assert_eq!(pool.bound().map(|(a, _)| a).collect::<Vec<_>>(), vec![addr]);
}

#[tokio::test]
async fn metrics_count_every_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let metrics = metrics::with_local_recorder(&recorder, Metrics::new);
    let client = Client::bind().await;
    let mut h = Harness::start_with(
        config().build().unwrap(),
        leases(),
        client.port(),
        64,
        metrics,
    );
    let client = client.to(h.addr);

    client.exchange(&client.discover(30)).await;
    client
        .exchange(&client.request(31, SERVER_ID, LEASED))
        .await;
    client.send_raw(&[1, 2, 3]).await; // malformed
    let mut unknown = client.discover(32);
    unknown.set_chaddr(&[2, 0, 0, 0, 0, 0x99]);
    client.send(&unknown).await;
    for _ in 0..4 {
        h.event().await;
    }
    let snap = snapshotter.snapshot().into_vec();

    assert_eq!(
        counter(&snap, RECEIVED_TOTAL, Some(("message_type", "discover"))),
        2
    );
    assert_eq!(
        counter(&snap, RECEIVED_TOTAL, Some(("message_type", "request"))),
        1
    );
    assert_eq!(
        counter(&snap, RECEIVED_TOTAL, Some(("message_type", "none"))),
        1
    );
    assert_eq!(
        counter(&snap, SENT_TOTAL, Some(("message_type", "offer"))),
        1
    );
    assert_eq!(counter(&snap, SENT_TOTAL, Some(("message_type", "ack"))), 1);
    assert_eq!(counter(&snap, SENT_TOTAL, Some(("message_type", "nak"))), 0);
    assert_eq!(counter(&snap, EVENTS_TOTAL, Some(("event", "offered"))), 1);
    assert_eq!(counter(&snap, EVENTS_TOTAL, Some(("event", "ignored"))), 2);
    assert_eq!(
        counter(&snap, IGNORED_TOTAL, Some(("reason", "malformed"))),
        1
    );
    assert_eq!(
        counter(&snap, IGNORED_TOTAL, Some(("reason", "unknown_client"))),
        1
    );
    assert_eq!(counter(&snap, EVENTS_DROPPED_TOTAL, None), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_full_event_channel_drops_and_counts_instead_of_blocking() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let metrics = metrics::with_local_recorder(&recorder, Metrics::new);
    let client = Client::bind().await;
    let mut h = Harness::start_with(
        config().build().unwrap(),
        leases(),
        client.port(),
        1,
        metrics,
    );
    let client = client.to(h.addr);
    // Nobody reads events: the server must still answer every request.
    for xid in 40..45 {
        let offer = client.exchange(&client.discover(xid)).await;
        assert_eq!(msg_type(&offer), MessageType::Offer);
    }
    let snap = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&snap, EVENTS_DROPPED_TOTAL, None), 4);
    assert_eq!(h.event().await.xid(), 40);
    h.stop().await;
}

#[tokio::test]
async fn garbage_is_ignored_and_the_server_keeps_serving() {
    let (client, mut h) = start().await;
    for junk in [&[][..], &[0u8; 100], &[0xff; 600]] {
        client.send_raw(junk).await;
    }
    let mut reply = client.discover(50);
    reply.set_opcode(dhcproto::v4::Opcode::BootReply);
    client.send(&reply).await;
    let mut reasons = Vec::new();
    for _ in 0..4 {
        if let EventKind::Ignored(r) = h.event().await.kind() {
            reasons.push(r.label());
        }
    }
    assert_eq!(
        reasons,
        ["malformed", "malformed", "malformed", "not_boot_request"]
    );
    assert_eq!(
        msg_type(&client.exchange(&client.discover(51)).await),
        MessageType::Offer
    );
    h.stop().await;
}
