use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use dhcp_server::MacAddr;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

fn pool_json(dns: &str, allocated: &Value, rv: &str) -> Value {
    json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-48", "namespace": "default", "resourceVersion": rv},
        "spec": {"networkName": "default/net-48", "ipv4Config": {
            "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "dns": [dns],
            "pool": {"start": "192.168.48.81", "end": "192.168.48.90"}}},
        "status": {"ipv4": {"used": 1, "available": 9, "allocated": allocated}}
    })
}

fn pool(name: &str) -> Pool {
    let mut p: Pool =
        serde_json::from_value(pool_json("1.1.1.1", &json!({}), "1")).expect("fixture");
    p.metadata.name = Some(name.into());
    p
}

fn mac(s: &str) -> MacAddr {
    s.parse().expect("fixture MAC")
}

#[test]
fn the_initial_list_is_applied_once_when_complete() {
    let mut sync = Sync::new("net-48");
    assert_eq!(sync.handle(Event::Init), None);
    assert_eq!(sync.handle(Event::InitApply(pool("net-48"))), None);
    assert_eq!(sync.handle(Event::InitApply(pool("other"))), None);
    assert_eq!(
        sync.handle(Event::InitDone),
        Some(Action::ApplyListed(Box::new(pool("net-48"))))
    );
}

#[test]
fn a_list_without_the_pool_keeps_the_table() {
    let mut sync = Sync::new("net-48");
    sync.handle(Event::Init);
    sync.handle(Event::InitApply(pool("other")));
    assert_eq!(sync.handle(Event::InitDone), Some(Action::Missing));
}

#[test]
fn updates_and_deletes_of_the_pool_and_nothing_else() {
    let mut sync = Sync::new("net-48");
    assert_eq!(
        sync.handle(Event::Apply(pool("net-48"))),
        Some(Action::Apply(Box::new(pool("net-48"))))
    );
    assert_eq!(sync.handle(Event::Apply(pool("other"))), None);
    assert_eq!(sync.handle(Event::Delete(pool("other"))), None);
    assert_eq!(
        sync.handle(Event::Delete(pool("net-48"))),
        Some(Action::Clear)
    );
}

#[test]
fn relists_after_a_restarted_watch_replace_the_table() {
    // A watch that restarts lists again: the new list wins, including moves.
    let served = Served::new();
    let ready = AtomicBool::new(false);
    let mut sync = Sync::new("net-48");
    let mut first = pool("net-48");
    first.allocations =
        serde_json::from_value(json!({"192.168.48.84": "ca:70:82:e6:84:01"})).expect("allocated");
    let mut second = first.clone();
    second.allocations =
        serde_json::from_value(json!({"192.168.48.84": "ca:70:82:e6:84:02"})).expect("allocated");
    for p in [first, second] {
        sync.handle(Event::Init);
        sync.handle(Event::InitApply(p));
        let action = sync.handle(Event::InitDone).expect("action");
        perform(action, &served, &ready, "default/net-48");
    }
    assert!(ready.load(Ordering::Acquire));
    assert!(served.leases().get(mac("ca:70:82:e6:84:01")).is_none());
    assert!(served.leases().get(mac("ca:70:82:e6:84:02")).is_some());
}

#[test]
fn pool_refs_must_be_namespace_slash_name() {
    assert_eq!(
        parse_ref("default/net-48").expect("valid"),
        ("default".into(), "net-48".into())
    );
    for bad in ["net-48", "/net-48", "default/", "a/b/c", ""] {
        let err = parse_ref(bad).expect_err(bad).to_string();
        assert!(err.contains(&format!("{bad:?}")), "{err}");
    }
}

fn respond(json: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from(serde_json::to_vec(json).expect("json")))
        .expect("response")
}

fn unavailable() -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "etcdserver: request timed out", "reason": "ServiceUnavailable", "code": 503});
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .body(Body::from(serde_json::to_vec(&status).expect("json")))
        .expect("response")
}

fn is_watch(request: &Request<Body>) -> bool {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .contains("watch=true")
}

/// Drives the real watcher against a mock API server: the initial list fills the table, a
/// watch event moves a lease and changes DNS, then the API server fails every request; the
/// table and options must stay as they were, and the agent must stay ready.
#[tokio::test(start_paused = true)]
async fn list_then_watch_then_outage_keeps_serving() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let served = std::sync::Arc::new(Served::new());
    let ready = std::sync::Arc::new(AtomicBool::new(false));
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    let task = {
        let (served, ready, notify, stop) =
            (served.clone(), ready.clone(), notify.clone(), stop.clone());
        tokio::spawn(async move {
            follow(client, "default", "net-48", &served, &ready, &notify, stop).await;
        })
    };

    // 1. The list, filtered to our pool.
    let (request, send) = handle.next_request().await.expect("list request");
    assert_eq!(request.method(), http::Method::GET);
    assert_eq!(
        request.uri().path(),
        "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools"
    );
    let query = request.uri().query().unwrap_or_default().to_owned();
    assert!(
        query.contains("fieldSelector=metadata.name%3Dnet-48"),
        "{query}"
    );
    assert!(!is_watch(&request), "{query}");
    let first = pool_json(
        "1.1.1.1",
        &json!({"192.168.48.84": "ca:70:82:e6:84:01"}),
        "10",
    );
    send.send_response(respond(&json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPoolList",
        "metadata": {"resourceVersion": "10"}, "items": [first]
    })));

    // 2. The watch: one MODIFIED event that moves .84 to another MAC and changes DNS.
    let (request, send) = handle.next_request().await.expect("watch request");
    assert!(is_watch(&request), "{:?}", request.uri());
    let moved = pool_json(
        "8.8.8.8",
        &json!({"192.168.48.84": "ca:70:82:e6:84:02"}),
        "11",
    );
    let mut body = serde_json::to_vec(&json!({"type": "MODIFIED", "object": moved})).expect("j");
    body.push(b'\n');
    send.send_response(
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(body))
            .expect("response"),
    );

    // 3. From now on the API server is down: every request fails.
    for _ in 0..5 {
        let (_, send) = handle.next_request().await.expect("retry");
        send.send_response(unavailable());
    }

    assert!(ready.load(Ordering::Acquire), "synced once, stays ready");
    assert!(served.leases().get(mac("ca:70:82:e6:84:01")).is_none());
    assert_eq!(
        served
            .leases()
            .get(mac("ca:70:82:e6:84:02"))
            .map(|l| l.addr()),
        Some("192.168.48.84".parse().expect("ip"))
    );
    let config = served.config().expect("configured").current();
    assert_eq!(config.encoded_option(6), Some(&[6, 4, 8, 8, 8, 8][..]));

    stop.cancel();
    task.await.expect("follow ends on stop");
}

/// An API server restart as the agent sees it: the watch fails while the server is down (the
/// delays grow to the cap), then the server answers the old resourceVersion with 410 Gone. The
/// relist must follow within a second, and its version be served.
#[tokio::test(start_paused = true)]
async fn a_410_after_an_outage_relists_within_a_second() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let served = std::sync::Arc::new(Served::new());
    let ready = std::sync::Arc::new(AtomicBool::new(false));
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    let task = {
        let (served, ready, notify, stop) =
            (served.clone(), ready.clone(), notify.clone(), stop.clone());
        tokio::spawn(async move {
            follow(client, "default", "net-48", &served, &ready, &notify, stop).await;
        })
    };
    let list = |dns: &str, rv: &str| {
        respond(&json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPoolList",
            "metadata": {"resourceVersion": rv},
            "items": [pool_json(dns, &json!({"192.168.48.84": "ca:70:82:e6:84:01"}), rv)]
        }))
    };

    let (request, send) = handle.next_request().await.expect("list request");
    assert!(!is_watch(&request));
    send.send_response(list("1.1.1.1", "10"));

    for _ in 0..6 {
        let (request, send) = handle.next_request().await.expect("watch retry");
        assert!(is_watch(&request), "{:?}", request.uri());
        send.send_response(unavailable());
    }

    let (request, send) = handle
        .next_request()
        .await
        .expect("watch after the restart");
    assert!(is_watch(&request), "{:?}", request.uri());
    let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
        "status": "Failure", "message": "too old resource version: 10 (20)",
        "reason": "Expired", "code": 410}});
    let mut body = serde_json::to_vec(&gone).expect("json");
    body.push(b'\n');
    send.send_response(
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(body))
            .expect("response"),
    );
    let answered = tokio::time::Instant::now();

    let (request, send) = handle.next_request().await.expect("relist");
    assert!(
        !is_watch(&request),
        "a list, not a watch: {:?}",
        request.uri()
    );
    let waited = answered.elapsed();
    assert!(
        waited <= std::time::Duration::from_secs(1),
        "relisted {waited:?} after the 410"
    );
    send.send_response(list("8.8.8.8", "20"));
    // Answer the watch that follows, so the relist's version is applied before we look.
    let (request, _send) = handle.next_request().await.expect("watch after the relist");
    assert!(is_watch(&request));
    let config = served.config().expect("configured").current();
    assert_eq!(config.encoded_option(6), Some(&[6, 4, 8, 8, 8, 8][..]));
    assert!(ready.load(Ordering::Acquire));

    stop.cancel();
    task.await.expect("follow ends on stop");
}
