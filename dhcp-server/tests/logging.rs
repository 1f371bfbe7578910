//! What the server logs about garbage: the client's name and the xid, at DEBUG.
//!
//! Alone in its own test binary: `tracing` caches, per call site, whether any subscriber is
//! interested, and a test in another thread of the same process that hits the server's log
//! call sites first (with no subscriber) can leave them disabled for this test's
//! thread-local subscriber. In its own process, nothing else runs.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Client, Harness, LEASED, MAC, config};
use dhcp_server::{EventKind, IgnoreReason, Lease, MacAddr, StaticLeases};

fn leases() -> StaticLeases {
    [(MacAddr::new(MAC), Lease::new(LEASED))]
        .into_iter()
        .collect()
}

/// Captures what the server logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_malformed_request_is_logged_at_debug_with_its_client_and_xid() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // A current-thread test runtime: the server task runs on this thread, under this
    // subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let client = Client::bind().await;
    let mut h = Harness::start(config().build().unwrap(), leases(), client.port());
    let client = client.to(h.addr);
    let mut bytes = vec![0u8; 236];
    bytes[..3].copy_from_slice(&[1, 1, 6]);
    bytes[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    bytes[28..34].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    bytes.extend([99, 130, 83, 99, 53, 2, 1, 1, 255]); // option 53 of length 2
    client.send_raw(&bytes).await;
    let e = h.event().await;
    assert!(matches!(
        e.kind(),
        EventKind::Ignored(IgnoreReason::Malformed(_))
    ));
    assert_eq!(e.client().to_string(), "02:00:00:00:00:99");
    assert_eq!(e.xid(), 0xdead_beef);
    h.stop().await;
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("malformed"))
        .unwrap_or_else(|| panic!("no log line about it in:\n{text}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("02:00:00:00:00:99"), "{line}");
    assert!(line.contains("0xdeadbeef"), "{line}");
}
