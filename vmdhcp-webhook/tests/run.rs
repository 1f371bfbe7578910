//! The whole webhook ([`run::run`]) in-process against an in-memory API server: it stores
//! Secrets and webhook configurations with resourceVersions (409 on stale writes), lists the
//! cached kinds as empty and holds their watches open. Checks the start-up sequence, serving
//! over HTTPS with the stored CA, and the periodic check adopting certificates rotated by
//! another replica (serving certificate hot-swapped, new CA re-registered).
//!
//! This is the closest this suite gets to a cluster without one; `tests/e2e.rs` runs the same
//! webhook against a real API server when `VMDHCP_E2E_KUBECONFIG` is set.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client_config, connect_with, http, served_certificate};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_test::mock::{Handle, SendResponse};
use vmdhcp_webhook::admission::Settings;
use vmdhcp_webhook::certs::{self, CertPem, Lifetimes};
use vmdhcp_webhook::registration::Target;
use vmdhcp_webhook::run::{self, Config};

const NS: &str = "kube-system";
const NAME: &str = "wh";
const SERVICE: &str = "wh.kube-system.svc";

/// What the fake API server holds, shared with the test.
#[derive(Default)]
struct State {
    /// `<kind>/<name>` → object.
    objects: BTreeMap<String, Value>,
    next_version: u64,
    /// Watches held open.
    watches: Vec<SendResponse<Response<Body>>>,
    /// Requests nothing here answers.
    unexpected: Vec<String>,
    /// When set, every Secret request is refused with this status code.
    refuse_secrets: Option<u16>,
}

type Shared = Arc<Mutex<State>>;

fn state(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.lock().expect("the fake API server's lock")
}

fn start_fake() -> (Client, Shared) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let shared = Shared::default();
    tokio::spawn(serve_fake(handle, shared.clone()));
    (Client::new(service, "default"), shared)
}

async fn serve_fake(mut handle: Handle<Request<Body>, Response<Body>>, shared: Shared) {
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        if query.contains("watch=true") {
            state(&shared).watches.push(send);
            continue;
        }
        let (status, answer) = answer(&mut state(&shared), &method, &path, &query, body);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
}

fn failure(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// The empty list of a cached kind, for its path.
fn cached_list(path: &str) -> Option<Value> {
    let (kind, api_version) = match path {
        "/apis/network.harvesterhci.io/v1alpha1/ippools" => {
            ("IPPoolList", "network.harvesterhci.io/v1alpha1")
        }
        "/apis/network.harvesterhci.io/v1alpha1/virtualmachinenetworkconfigs" => (
            "VirtualMachineNetworkConfigList",
            "network.harvesterhci.io/v1alpha1",
        ),
        // Metadata-only list: kube asks for PartialObjectMetadataList.
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions" => {
            ("PartialObjectMetadataList", "meta.k8s.io/v1")
        }
        _ => return None,
    };
    Some(json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"resourceVersion": "1"}, "items": []}))
}

/// The stored kind and the object name (empty for the collection) a path addresses.
fn route(path: &str) -> Option<(&'static str, &str)> {
    const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";
    const ADMISSION: &str = "/apis/admissionregistration.k8s.io/v1/";
    if let Some(rest) = path.strip_prefix(SECRETS) {
        return Some(("Secret", rest.trim_start_matches('/')));
    }
    let rest = path.strip_prefix(ADMISSION)?;
    let (resource, name) = rest.split_once('/').unwrap_or((rest, ""));
    let kind = match resource {
        "validatingwebhookconfigurations" => "ValidatingWebhookConfiguration",
        "mutatingwebhookconfigurations" => "MutatingWebhookConfiguration",
        _ => return None,
    };
    Some((kind, name))
}

fn answer(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    body: Value,
) -> (u16, Value) {
    if let Some(list) = cached_list(path) {
        return (200, list);
    }
    let Some((kind, name)) = route(path) else {
        state.unexpected.push(format!("{method} {path}"));
        return failure(404, "NotFound", "unknown");
    };
    if let (Some(code), "Secret") = (state.refuse_secrets, kind) {
        return failure(code, "Forbidden", "secrets is forbidden");
    }
    match (method.as_str(), name.is_empty()) {
        ("GET", false) => match state.objects.get(&format!("{kind}/{name}")) {
            Some(object) => (200, object.clone()),
            None => failure(404, "NotFound", &format!("{kind} {name:?} not found")),
        },
        ("GET", true) => {
            let wanted = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("fieldSelector=metadata.name%3D"))
                .unwrap_or_default();
            let key = format!("{kind}/{wanted}");
            let items: Vec<Value> = state.objects.get(&key).cloned().into_iter().collect();
            (
                200,
                json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {}, "items": items}),
            )
        }
        ("POST", true) => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default();
            let key = format!("{kind}/{name}");
            if state.objects.contains_key(&key) {
                let message = format!("{kind} {name:?} already exists");
                return failure(409, "AlreadyExists", &message);
            }
            (201, state.store(key, body))
        }
        ("PUT", false) => {
            let key = format!("{kind}/{name}");
            let stored_version = state
                .objects
                .get(&key)
                .map(|o| o["metadata"]["resourceVersion"].clone());
            if stored_version != Some(body["metadata"]["resourceVersion"].clone()) {
                return failure(409, "Conflict", "the object has been modified");
            }
            // A dry run answers with what would be stored and stores nothing.
            if query.split('&').any(|kv| kv == "dryRun=All") {
                return (200, body);
            }
            (200, state.store(key, body))
        }
        _ => {
            state.unexpected.push(format!("{method} {path}"));
            failure(405, "MethodNotAllowed", "no")
        }
    }
}

impl State {
    fn store(&mut self, key: String, mut object: Value) -> Value {
        self.next_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.next_version.to_string());
        self.objects.insert(key, object.clone());
        object
    }

    /// A pair stored as another replica would write it.
    fn put_pair(&mut self, secret: &str, pair: &CertPem) {
        let key = format!("Secret/{secret}");
        let mut object = self.objects[&key].clone();
        object["data"]["tls.crt"] =
            serde_json::to_value(ByteString(pair.cert.clone().into_bytes())).unwrap();
        object["data"]["tls.key"] =
            serde_json::to_value(ByteString(pair.key.clone().into_bytes())).unwrap();
        self.store(key, object);
    }

    fn pair(&self, secret: &str) -> CertPem {
        let data = &self.objects[&format!("Secret/{secret}")]["data"];
        let text = |key: &str| {
            let bytes: ByteString = serde_json::from_value(data[key].clone()).unwrap();
            String::from_utf8(bytes.0).unwrap()
        };
        CertPem {
            cert: text("tls.crt"),
            key: text("tls.key"),
        }
    }

    fn ca_bundle(&self, kind: &str) -> Option<Vec<u8>> {
        let object = self.objects.get(&format!("{kind}/{NAME}"))?;
        let bundle = object["webhooks"][0]["clientConfig"]["caBundle"].clone();
        Some(serde_json::from_value::<ByteString>(bundle).ok()?.0)
    }
}

fn config(port: u16) -> Config {
    Config {
        name: NAME.to_owned(),
        namespace: NS.to_owned(),
        settings: Settings::default(),
        extra_sans: vec!["127.0.0.1".to_owned()],
        target: Target::Url(format!("https://127.0.0.1:{port}")),
        lifetimes: Lifetimes::default(),
        check_interval: Duration::from_millis(200),
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 s");
}

fn review(operation: &str) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "run-1",
            "kind": {"group": "network.harvesterhci.io", "version": "v1alpha1", "kind": "IPPool"},
            "resource": {"group": "network.harvesterhci.io", "version": "v1alpha1", "resource": "ippools"},
            "name": "net-48", "namespace": "default", "operation": operation,
            "userInfo": {"username": "system:admin"},
            "object": {
                "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
                "metadata": {"name": "net-48", "namespace": "default"},
                "spec": {"networkName": "default/net-48", "ipv4Config": {"cidr": "192.168.48.0/24"}}
            },
            "oldObject": null
        }
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_registers_and_follows_rotations() {
    let (client, fake) = start_fake();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let webhook = tokio::spawn(run::run(
        client,
        config(addr.port()),
        listener,
        stop.clone(),
    ));

    eventually("registration", async || {
        state(&fake)
            .ca_bundle("MutatingWebhookConfiguration")
            .is_some()
    })
    .await;
    let ca = state(&fake).pair("wh-ca");
    {
        let state = state(&fake);
        assert_eq!(
            state.ca_bundle("ValidatingWebhookConfiguration").unwrap(),
            ca.cert.as_bytes()
        );
        assert_eq!(
            state.ca_bundle("MutatingWebhookConfiguration").unwrap(),
            ca.cert.as_bytes()
        );
        let hook = &state.objects["ValidatingWebhookConfiguration/wh"]["webhooks"][0];
        assert_eq!(
            hook["clientConfig"]["url"],
            format!("https://{addr}/v1/webhook/validation")
        );
        assert_eq!(hook["name"], "validator.kube-system.wh");
    }

    serves_with_the_stored_certificate(&fake, addr, &ca).await;
    another_replica_renews_the_serving_certificate(&fake, addr, &ca).await;
    another_replica_replaces_the_ca(&fake, addr, &ca).await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), webhook)
        .await
        .expect("run returns after stop")
        .unwrap()
        .unwrap();
    let state = state(&fake);
    assert!(state.unexpected.is_empty(), "{:?}", state.unexpected);
    assert_eq!(state.watches.len(), 3, "one watch per cached kind");
}

#[tokio::test]
async fn run_fails_at_start_without_access_to_the_secrets() {
    let (client, fake) = start_fake();
    state(&fake).refuse_secrets = Some(403);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = run::run(client, config(port), listener, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot get Secret kube-system/wh-ca: "),
        "{err}"
    );
}

fn trust_ca(ca: &CertPem) -> rustls::ClientConfig {
    client_config(ca, rustls::ALL_VERSIONS)
}

fn sans() -> Vec<String> {
    vec![SERVICE.to_owned(), "127.0.0.1".to_owned()]
}

/// Served with the stored serving certificate, trusted through the stored CA only.
async fn serves_with_the_stored_certificate(fake: &Shared, addr: SocketAddr, ca: &CertPem) {
    let stream = connect_with(addr, trust_ca(ca), SERVICE).await.unwrap();
    let serving = state(fake).pair("wh-tls");
    assert_eq!(
        served_certificate(&stream).serial,
        certs::inspect(&serving.cert).unwrap().serial
    );
    drop(stream);
    let mut stream = connect_with(addr, trust_ca(ca), "127.0.0.1").await.unwrap();
    let (status, body) = http(
        &mut stream,
        "POST",
        "/v1/webhook/mutation",
        &review("CREATE"),
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    // The caches (empty) sync from the fake's lists; validation then answers.
    let mut stream = connect_with(addr, trust_ca(ca), SERVICE).await.unwrap();
    let (status, body) = http(
        &mut stream,
        "POST",
        "/v1/webhook/validation",
        &review("CREATE"),
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["response"]["status"]["code"], 422, "{body}");
}

/// Another replica renews the serving certificate: the next connection gets it.
async fn another_replica_renews_the_serving_certificate(
    fake: &Shared,
    addr: SocketAddr,
    ca: &CertPem,
) {
    let theirs =
        certs::issue_serving(ca, &sans(), Timestamp::now(), certs::SERVING_LIFETIME).unwrap();
    let their_serial = certs::inspect(&theirs.cert).unwrap().serial;
    state(fake).put_pair("wh-tls", &theirs);
    eventually("the renewed certificate is served", async || {
        let stream = connect_with(addr, trust_ca(ca), SERVICE).await.unwrap();
        served_certificate(&stream).serial == their_serial
    })
    .await;
}

/// Another replica replaces the CA: the serving certificate no longer chains, so it is
/// re-issued under the new CA, swapped in, and the new CA registered.
async fn another_replica_replaces_the_ca(fake: &Shared, addr: SocketAddr, old_ca: &CertPem) {
    let new_ca = certs::generate_ca("wh-ca@rotated", Timestamp::now(), certs::CA_LIFETIME).unwrap();
    state(fake).put_pair("wh-ca", &new_ca);
    eventually("the new CA is registered", async || {
        let state = state(fake);
        state.ca_bundle("ValidatingWebhookConfiguration").as_deref() == Some(new_ca.cert.as_bytes())
            && state.ca_bundle("MutatingWebhookConfiguration").as_deref()
                == Some(new_ca.cert.as_bytes())
    })
    .await;
    eventually("a certificate under the new CA is served", async || {
        connect_with(addr, trust_ca(&new_ca), SERVICE).await.is_ok()
    })
    .await;
    let reissued = state(fake).pair("wh-tls");
    certs::check_serving(&reissued, &new_ca, &sans(), Timestamp::now()).unwrap();
    assert!(
        connect_with(addr, trust_ca(old_ca), SERVICE).await.is_err(),
        "old CA no longer works"
    );
}
