//! The server loop over loopback sockets: bursts answered in full (batched receive and send),
//! malformed options skipped and counted, replies the socket refuses counted as send errors,
//! and DECLINE reported with what an embedder needs. (What the server logs is checked in
//! `logging.rs`, alone in its process.)

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use common::{Client, Harness, LEASED, MAC, SERVER_ID, config, counter, msg_type};
use dhcp_server::metrics::{
    EVENTS_TOTAL, IGNORED_TOTAL, OPTIONS_SKIPPED_TOTAL, SEND_ERRORS_TOTAL, SENT_TOTAL,
};
use dhcp_server::{EventKind, IgnoreReason, Lease, MacAddr, Metrics, StaticLeases};
use dhcproto::v4::{DhcpOption, Encodable, Encoder, MessageType};
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};

fn leases() -> StaticLeases {
    [(MacAddr::new(MAC), Lease::new(LEASED))]
        .into_iter()
        .collect()
}

fn recorded() -> (Metrics, Snapshotter) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let metrics = metrics::with_local_recorder(&recorder, Metrics::new);
    (metrics, snapshotter)
}

#[tokio::test]
async fn a_burst_larger_than_a_batch_is_answered_in_full_and_in_order() {
    let client = Client::bind().await;
    let h = Harness::start(config().build().unwrap(), leases(), client.port());
    let client = client.to(h.addr);
    // 100 DISCOVERs queued at once: several recvmmsg/sendmmsg batches.
    for xid in 1000..1100 {
        client.send(&client.discover(xid)).await;
    }
    for xid in 1000..1100 {
        let offer = client.recv(xid).await;
        assert_eq!(msg_type(&offer), MessageType::Offer, "xid {xid}");
        assert_eq!(offer.yiaddr(), LEASED);
    }
    h.stop().await;
}

#[tokio::test]
async fn malformed_options_are_skipped_counted_by_reason_and_the_request_answered() {
    let (metrics, snapshotter) = recorded();
    let client = Client::bind().await;
    let h = Harness::start_with(
        config().build().unwrap(),
        leases(),
        client.port(),
        64,
        metrics,
    );
    let client = client.to(h.addr);
    let mut bytes = Vec::new();
    client
        .discover(7)
        .encode(&mut Encoder::new(&mut bytes))
        .unwrap();
    assert_eq!(bytes.pop(), Some(255), "dhcproto ends with End");
    // Option 57 of length 1 (bad_length), option 52 = 9 (bad_overload), a host name running
    // past the end (truncated); no End.
    bytes.extend([57, 1, 9, 52, 1, 9, 12, 50, b'v', b'm']);
    client.send_raw(&bytes).await;
    let offer = client.recv(7).await;
    assert_eq!(msg_type(&offer), MessageType::Offer);
    let snap = snapshotter.snapshot().into_vec();
    for reason in ["bad_length", "bad_overload", "truncated"] {
        assert_eq!(
            counter(&snap, OPTIONS_SKIPPED_TOTAL, Some(("reason", reason))),
            1,
            "{reason}"
        );
    }
    assert_eq!(
        counter(&snap, OPTIONS_SKIPPED_TOTAL, Some(("reason", "no_end"))),
        0,
        "a truncated area is not also a missing End"
    );
    // A clean request with only the End missing.
    let mut bytes = Vec::new();
    client
        .discover(8)
        .encode(&mut Encoder::new(&mut bytes))
        .unwrap();
    bytes.pop();
    client.send_raw(&bytes).await;
    assert_eq!(msg_type(&client.recv(8).await), MessageType::Offer);
    let snap = snapshotter.snapshot().into_vec();
    assert_eq!(
        counter(&snap, OPTIONS_SKIPPED_TOTAL, Some(("reason", "no_end"))),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn a_reply_the_socket_refuses_is_a_send_error_not_an_offer() {
    let (metrics, snapshotter) = recorded();
    // The server identifier, the replies' source address, is not an address of this host:
    // the kernel refuses every reply (EINVAL), as it does when the agent's NIC lacks its
    // server address.
    let server_id = Ipv4Addr::new(10, 255, 255, 1);
    let config = dhcp_server::Config::builder(server_id, "10.255.255.0/24".parse().unwrap())
        .build()
        .unwrap();
    let offered = Ipv4Addr::new(10, 255, 255, 50);
    let table: StaticLeases = [(MacAddr::new(MAC), Lease::new(offered))]
        .into_iter()
        .collect();
    let client = Client::bind().await;
    let mut h = Harness::start_with(config, table, client.port(), 64, metrics);
    let client = client.to(h.addr);
    client.send(&client.discover(60)).await;
    let e = h.event().await;
    assert!(
        matches!(e.kind(), EventKind::Ignored(IgnoreReason::SendFailed(_))),
        "{e}"
    );
    assert_eq!(e.addr(), offered);
    assert!(
        client
            .recv_within(60, Duration::from_millis(300))
            .await
            .is_none()
    );
    let snap = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&snap, SEND_ERRORS_TOTAL, None), 1);
    assert_eq!(
        counter(&snap, SENT_TOTAL, Some(("message_type", "offer"))),
        0
    );
    assert_eq!(counter(&snap, EVENTS_TOTAL, Some(("event", "offered"))), 0);
    assert_eq!(
        counter(&snap, IGNORED_TOTAL, Some(("reason", "send_failed"))),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn a_decline_reaches_the_embedder_with_everything_to_act_on() {
    let agent = leases();
    let client = Client::bind().await;
    let mut h = Harness::start(config().build().unwrap(), agent.clone(), client.port());
    let client = client.to(h.addr);
    let before = SystemTime::now();
    let mut decline = client.message(MessageType::Decline, 77);
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(LEASED));
    decline
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER_ID));
    decline
        .opts_mut()
        .insert(DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1]));
    client.send(&decline).await;
    let e = h.event().await;
    assert_eq!(e.kind(), EventKind::Declined);
    assert_eq!(e.addr(), LEASED);
    assert_eq!(e.client().mac(), Some(MacAddr::new(MAC)));
    assert_eq!(e.client_id(), Some(&[1, 2, 0, 0, 0, 0, 1][..]));
    assert_eq!((e.xid(), e.server_id()), (77, SERVER_ID));
    let at = e.time().expect("the server stamps events");
    assert!(at >= before && at <= SystemTime::now());
    assert_eq!(agent.conflicts(), vec![(MacAddr::new(MAC), LEASED)]);

    // Not offered again until the embedder clears it.
    client.send(&client.discover(78)).await;
    assert_eq!(
        h.event().await.kind(),
        EventKind::Ignored(IgnoreReason::AddressConflict(LEASED))
    );
    agent.clear_conflict(MacAddr::new(MAC), LEASED);
    let offer = client.exchange(&client.discover(79)).await;
    assert_eq!(offer.yiaddr(), LEASED);
    h.stop().await;
}
