use std::io;

use super::*;
use http::{Response, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn pool_json(rv: &str, allocated: &Value) -> Value {
    json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "net-48", "namespace": "default", "resourceVersion": rv},
        "spec": {"networkName": "default/net-48", "ipv4Config": {
            "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77",
            "pool": {"start": "192.168.48.81", "end": "192.168.48.90"}}},
        "status": {"ipv4": {"allocated": allocated}}
    })
}

fn line(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).expect("json");
    bytes.push(b'\n');
    bytes
}

fn modified(rv: &str) -> Value {
    json!({"type": "MODIFIED", "object": pool_json(rv, &json!({"192.168.48.84": "ca:70:82:e6:84:01"}))})
}

fn all_lines(text: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut lines = Lines::default();
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.clamp(at, text.len());
        lines.feed(&text[at..cut], |l| out.push(l.to_vec()));
        at = cut;
    }
    lines.feed(&text[at..], |l| out.push(l.to_vec()));
    lines.finish(|l| out.push(l.to_vec()));
    out
}

proptest! {
    #[test]
    fn lines_do_not_depend_on_how_the_response_is_cut(
        lines in proptest::collection::vec("[a-z{}\":\r]{0,12}", 0..8),
        last_ended in any::<bool>(),
        mut cuts in proptest::collection::vec(0usize..120, 0..10),
    ) {
        let mut text = lines.join("\n").into_bytes();
        if last_ended && !lines.is_empty() {
            text.push(b'\n');
        }
        cuts.sort_unstable();
        // Split on `\n`, a `\r` before it dropped; a line end at the very end starts no line.
        let mut raw: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        if raw.last().is_some_and(|l| l.is_empty()) {
            raw.pop();
        }
        let want: Vec<Vec<u8>> = raw
            .iter()
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .collect();
        prop_assert_eq!(all_lines(&text, &[]), want.clone());
        prop_assert_eq!(all_lines(&text, &cuts), want);
    }
}

#[test]
fn a_long_line_is_freed_once_decoded_and_a_short_one_kept() {
    let long = vec![b'x'; 3 * KEEP];
    let mut lines = Lines::default();
    let mut seen = Vec::new();
    for piece in long.chunks(KEEP / 2) {
        lines.feed(piece, |l| seen.push(l.len()));
    }
    assert!(lines.capacity() >= 3 * KEEP, "the partial line is held");
    lines.feed(b"\nshort", |l| seen.push(l.len()));
    assert_eq!(seen, [3 * KEEP]);
    assert!(
        lines.capacity() <= KEEP,
        "the long line's buffer is gone: {}",
        lines.capacity()
    );
    lines.feed(b" line\n", |l| seen.push(l.len()));
    assert_eq!(seen, [3 * KEEP, 10]);
    assert!(lines.capacity() > 0, "a short line's buffer is reused");
}

#[test]
fn every_event_type_decodes_and_errors_are_told_apart() {
    for (kind, rv) in [("ADDED", "3"), ("MODIFIED", "4"), ("DELETED", "5")] {
        let text = line(&json!({"type": kind, "object": pool_json(rv, &json!({}))}));
        match decode(&text[..text.len() - 1]) {
            Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p))) => {
                assert_eq!(p.metadata.resource_version.as_deref(), Some(rv));
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    let bookmark = json!({"type": "BOOKMARK", "object": {
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"resourceVersion": "77"}}});
    assert!(matches!(
        decode(&serde_json::to_vec(&bookmark).expect("json")),
        Some(Ok(WatchEvent::Bookmark(b))) if b.metadata.resource_version == "77"
    ));
    let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
        "status": "Failure", "message": "too old resource version", "reason": "Expired",
        "code": 410}});
    assert!(matches!(
        decode(&serde_json::to_vec(&gone).expect("json")),
        Some(Ok(WatchEvent::Error(s))) if s.code == 410
    ));
    // A bare Status (what a server sends instead of an event) is the server's error.
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "internal error", "reason": "InternalError", "code": 500});
    assert!(matches!(
        decode(&serde_json::to_vec(&status).expect("json")),
        Some(Err(kube::Error::Api(s))) if s.code == 500
    ));
    // Anything else is a parse error (every field of a Status is optional: an object that is
    // no event reads as one, as in kube-client).
    assert!(matches!(
        decode(b"[\"MODIFIED\"]"),
        Some(Err(kube::Error::SerdeError(_)))
    ));
    // An empty line or a response cut in the middle of an event: skipped.
    assert!(decode(b"").is_none());
    assert!(decode(br#"{"type": "MODIFIED", "object": {"metadata"#).is_none());
}

async fn collect(
    chunks: Vec<Result<Vec<u8>, kube::Error>>,
) -> Vec<Result<WatchEvent<Pool>, kube::Error>> {
    events(futures::stream::iter(chunks)).collect().await
}

fn rv_of(event: &Result<WatchEvent<Pool>, kube::Error>) -> String {
    match event {
        Ok(WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p)) => {
            p.metadata.resource_version.clone().unwrap_or_default()
        }
        other => format!("{other:?}"),
    }
}

/// A MODIFIED event of `n` allocations at resourceVersion `rv`, as one line.
fn event_of(n: u32, rv: &str) -> Vec<u8> {
    let allocated: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("10.0.{}.{}", i / 256, i % 256),
                Value::from(format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)),
            )
        })
        .collect();
    line(&json!({"type": "MODIFIED", "object": pool_json(rv, &Value::Object(allocated))}))
}

#[tokio::test]
async fn events_span_chunks_and_the_last_needs_no_line_end() {
    // An event just under the large size cut into small chunks, then two events in one chunk,
    // the second unended.
    let medium = event_of(1_500, "10");
    assert!(medium.len() < KEEP, "{}", medium.len());
    let mut chunks: Vec<Result<Vec<u8>, kube::Error>> =
        medium.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let mut tail = line(&modified("11"));
    let last = serde_json::to_vec(&modified("12")).expect("json");
    tail.extend_from_slice(&last);
    chunks.push(Ok(tail));
    let got = collect(chunks).await;
    assert_eq!(
        got.iter().map(rv_of).collect::<Vec<_>>(),
        ["10", "11", "12"]
    );
    let Some(Ok(WatchEvent::Modified(pool))) = got.first() else {
        panic!("{:?}", got.first());
    };
    assert_eq!(pool.allocations.len(), 1_500);
}

#[tokio::test]
async fn a_large_event_ends_the_response_after_the_events_read_with_it() {
    let large = event_of(5_000, "10");
    assert!(large.len() > KEEP, "{}", large.len());
    let (head, last_piece) = large.split_at(large.len() - 100);
    let mut chunks: Vec<Result<Vec<u8>, kube::Error>> =
        head.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    // The chunk that completes the large event also holds a small one and half of another.
    let mut with = last_piece.to_vec();
    with.extend(line(&modified("11")));
    let next = line(&modified("12"));
    with.extend_from_slice(&next[..20]);
    chunks.push(Ok(with));
    chunks.push(Ok(next[20..].to_vec()));
    chunks.push(Ok(line(&modified("13"))));
    let got = collect(chunks).await;
    assert_eq!(got.iter().map(rv_of).collect::<Vec<_>>(), ["10", "11"]);
    let Some(Ok(WatchEvent::Modified(pool))) = got.first() else {
        panic!("{:?}", got.first());
    };
    assert_eq!(pool.allocations.len(), 5_000);
}

#[tokio::test]
async fn a_cut_off_connection_ends_the_events_quietly_and_other_errors_are_passed_on() {
    let eof = kube::Error::ReadEvents(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
    let got = collect(vec![
        Ok(line(&modified("3"))),
        Err(eof),
        Ok(line(&modified("4"))),
    ])
    .await;
    assert_eq!(got.iter().map(rv_of).collect::<Vec<_>>(), ["3"]);

    let reset = kube::Error::ReadEvents(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
    let got = collect(vec![
        Ok(line(&modified("3"))),
        Err(reset),
        Ok(line(&modified("4"))),
    ])
    .await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(got[1], Err(kube::Error::ReadEvents(_))), "{got:?}");
}

/// The stream under test against a mock API server: its items arrive on a channel while the
/// test answers the requests.
struct Harness {
    handle: tower_test::mock::Handle<http::Request<Body>, Response<Body>>,
    items: mpsc::UnboundedReceiver<Result<Event<Pool>, Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start() -> Self {
        let (service, handle) = tower_test::mock::pair::<http::Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let source = Source::new(
            client,
            "/apis/network.harvesterhci.io/v1alpha1/namespaces/default/ippools",
            "net-48",
        );
        let (tx, items) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watch(source));
            while let Some(item) = events.next().await {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        Self {
            handle,
            items,
            task,
        }
    }

    /// The next request, which must be a list (`watch` false) or a watch, and its query.
    async fn expect(
        &mut self,
        watch: bool,
    ) -> (String, tower_test::mock::SendResponse<Response<Body>>) {
        let (request, send) = self.handle.next_request().await.expect("a request");
        let query = request.uri().query().unwrap_or_default().to_owned();
        assert_eq!(query.contains("watch=true"), watch, "{query}");
        assert!(
            query.contains("fieldSelector=metadata.name%3Dnet-48"),
            "{query}"
        );
        if watch {
            assert_eq!(
                request.headers().get(http::header::ACCEPT_ENCODING),
                Some(&http::HeaderValue::from_static("identity"))
            );
        }
        assert_eq!(
            request.headers().get(http::header::CONNECTION),
            Some(&http::HeaderValue::from_static("close")),
            "a connection of its own"
        );
        (query, send)
    }

    async fn next(&mut self) -> Result<Event<Pool>, Error> {
        self.items.recv().await.expect("an item")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ok(body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from(body))
        .expect("response")
}

fn list(rv: Option<&str>, items: &[Value]) -> Response<Body> {
    let mut metadata = json!({});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = rv.into();
    }
    ok(serde_json::to_vec(&json!({
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPoolList",
        "metadata": metadata, "items": items
    }))
    .expect("json"))
}

fn failure(code: StatusCode) -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "no", "reason": "Unavailable", "code": code.as_u16()});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&status).expect("json")))
        .expect("response")
}

fn version(event: &Result<Event<Pool>, Error>) -> String {
    match event {
        Ok(Event::InitApply(p) | Event::Apply(p) | Event::Delete(p)) => {
            p.metadata.resource_version.clone().unwrap_or_default()
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn lists_then_watches_from_the_list_then_from_each_event_and_bookmark() {
    let mut h = Harness::start();
    let (query, send) = h.expect(false).await;
    assert!(!query.contains("resourceVersion"), "a fresh list: {query}");
    send.send_response(list(Some("10"), &[pool_json("9", &json!({}))]));
    assert!(matches!(h.next().await, Ok(Event::Init)));
    assert_eq!(version(&h.next().await), "9");
    assert!(matches!(h.next().await, Ok(Event::InitDone)));

    let (query, send) = h.expect(true).await;
    assert!(query.contains("resourceVersion=10"), "{query}");
    assert!(query.contains("timeoutSeconds=290"), "{query}");
    assert!(query.contains("allowWatchBookmarks=true"), "{query}");
    let mut body = line(&modified("11"));
    body.extend(line(
        &json!({"type": "DELETED", "object": pool_json("12", &json!({}))}),
    ));
    body.extend(line(&json!({"type": "BOOKMARK", "object": {
        "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
        "metadata": {"resourceVersion": "15"}}})));
    send.send_response(ok(body));
    assert!(matches!(h.next().await, Ok(Event::Apply(p)) if p.allocations.len() == 1));
    assert!(matches!(h.next().await, Ok(Event::Delete(_))));

    // The response ended: the next watch resumes from the bookmark, with no list.
    let (query, send) = h.expect(true).await;
    assert!(query.contains("resourceVersion=15"), "{query}");
    send.send_response(ok(line(&modified("16"))));
    assert_eq!(version(&h.next().await), "16");
    // After a large event (and the one read with it) the next watch resumes from the last.
    let (query, send) = h.expect(true).await;
    assert!(query.contains("resourceVersion=16"), "{query}");
    let mut body = event_of(5_000, "17");
    body.extend(line(&modified("18")));
    body.extend_from_slice(b"{\"type\": \"MODIFIED\", \"object\": {");
    send.send_response(ok(body));
    assert_eq!(version(&h.next().await), "17");
    assert_eq!(version(&h.next().await), "18");
    let (query, _send) = h.expect(true).await;
    assert!(query.contains("resourceVersion=18"), "{query}");
}

#[tokio::test]
async fn a_410_lists_again_and_other_errors_retry_where_they_were() {
    let mut h = Harness::start();
    // The list fails: passed on, then a list again.
    let (_, send) = h.expect(false).await;
    send.send_response(failure(StatusCode::FORBIDDEN));
    assert!(matches!(h.next().await, Ok(Event::Init)));
    assert!(matches!(
        h.next().await,
        Err(Error::InitialListFailed(kube::Error::Api(s))) if s.code == 403
    ));
    // No second `Init` (an `Ok` item, which would reset the caller's retry delay): the list is
    // simply asked for again.
    let (_, send) = h.expect(false).await;
    send.send_response(list(None, &[]));
    assert!(matches!(h.next().await, Err(Error::NoResourceVersion)));
    let (_, send) = h.expect(false).await;
    send.send_response(list(Some("20"), &[]));
    assert!(matches!(h.next().await, Ok(Event::InitDone)));

    // The watch cannot start: passed on, then a watch from the same version.
    let (_, send) = h.expect(true).await;
    send.send_response(failure(StatusCode::SERVICE_UNAVAILABLE));
    assert!(matches!(
        h.next().await,
        Err(Error::WatchStartFailed(kube::Error::Api(s))) if s.code == 503
    ));
    let (query, send) = h.expect(true).await;
    assert!(query.contains("resourceVersion=20"), "{query}");
    // An error event other than 410 keeps the watch; 410 lists again.
    let status = |code: u16| {
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "status": "Failure", "message": "m", "reason": "r", "code": code}})
    };
    let mut body = line(&status(500));
    body.extend(line(&modified("21")));
    body.extend(line(&status(410)));
    send.send_response(ok(body));
    assert!(matches!(h.next().await, Err(Error::WatchError(s)) if s.code == 500));
    assert_eq!(version(&h.next().await), "21");
    assert!(matches!(h.next().await, Err(Error::WatchError(s)) if s.code == 410));
    assert!(matches!(h.next().await, Ok(Event::Init)));
    let (query, _send) = h.expect(false).await;
    assert!(!query.contains("resourceVersion"), "{query}");
}

#[tokio::test]
async fn an_event_without_a_version_lists_again() {
    let mut h = Harness::start();
    let (_, send) = h.expect(false).await;
    send.send_response(list(Some("5"), &[]));
    assert!(matches!(h.next().await, Ok(Event::Init)));
    assert!(matches!(h.next().await, Ok(Event::InitDone)));
    let (_, send) = h.expect(true).await;
    send.send_response(ok(line(&modified(""))));
    assert!(matches!(h.next().await, Err(Error::NoResourceVersion)));
    assert!(matches!(h.next().await, Ok(Event::Init)));
    h.expect(false).await;
}
