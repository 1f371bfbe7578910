//! The HTTPS server over a real loopback socket: handshakes with a rustls client that trusts
//! only the generated CA, `AdmissionReview`s over HTTPS, certificate hot-swap, and refusal of
//! TLS ≤ 1.1 and of CBC suites (raw `ClientHello`s, since rustls clients cannot offer them).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{client_config, connect_with, http, served_certificate};
use jiff::Timestamp;
use rustls::ProtocolVersion;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use vmdhcp_webhook::admission::Settings;
use vmdhcp_webhook::cache::Caches;
use vmdhcp_webhook::certs::{self, CA_LIFETIME, CertPem, SERVING_LIFETIME};
use vmdhcp_webhook::server::{self, Admission};
use vmdhcp_webhook::tls::{self, CertResolver};

const SERVICE: &str = "vmdhcp-webhook.kube-system.svc";

struct Server {
    addr: SocketAddr,
    ca: CertPem,
    resolver: Arc<CertResolver>,
    synced: watch::Sender<bool>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn connect(server: &Server) -> TlsStream<TcpStream> {
    let config = client_config(&server.ca, rustls::ALL_VERSIONS);
    connect_with(server.addr, config, SERVICE).await.unwrap()
}

fn sans() -> Vec<String> {
    vec![SERVICE.to_owned(), "127.0.0.1".to_owned()]
}

async fn start() -> Server {
    let now = Timestamp::now();
    let ca = certs::generate_ca("test-ca", now, CA_LIFETIME).unwrap();
    let serving = certs::issue_serving(&ca, &sans(), now, SERVING_LIFETIME).unwrap();
    let resolver = Arc::new(CertResolver::new(tls::certified_key(&serving).unwrap()));
    let config = Arc::new(tls::server_config(resolver.clone()).unwrap());
    let (synced, synced_rx) = watch::channel(true);
    let app = server::router(Admission {
        cluster: Caches::from_objects(vec![], vec![], vec![]),
        settings: Settings::default(),
        synced: synced_rx,
        sync_wait: Duration::from_millis(200),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(server::serve(listener, config, app, stop.clone()));
    Server {
        addr,
        ca,
        resolver,
        synced,
        stop,
    }
}

fn pool_create_review(uid: &str, api_version: &str) -> Vec<u8> {
    json!({
        "apiVersion": api_version, "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "network.harvesterhci.io", "version": "v1alpha1", "kind": "IPPool"},
            "resource": {"group": "network.harvesterhci.io", "version": "v1alpha1", "resource": "ippools"},
            "name": "net-48", "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "system:admin", "groups": ["system:masters"]},
            "object": {
                "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
                "metadata": {"name": "net-48", "namespace": "default"},
                "spec": {"networkName": "default/net-48", "ipv4Config": {"cidr": "192.168.48.0/24"}}
            },
            "oldObject": null, "dryRun": false
        }
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn mutation_over_https_with_only_the_ca_trusted() {
    let server = start().await;
    let mut stream = connect(&server).await;
    let (status, body) = http(
        &mut stream,
        "POST",
        "/v1/webhook/mutation",
        &pool_create_review("u-1", "admission.k8s.io/v1"),
    )
    .await;
    assert_eq!(status, 200);
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["response"]["uid"], "u-1");
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    let patch: k8s_openapi::ByteString =
        serde_json::from_value(review["response"]["patch"].clone()).unwrap();
    let patch: Value = serde_json::from_slice(&patch.0).unwrap();
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/ipv4Config/pool", "value": {"start": "192.168.48.1", "end": "192.168.48.254"}},
            {"op": "add", "path": "/spec/ipv4Config/serverIP", "value": "192.168.48.1"},
        ])
    );
}

#[tokio::test]
async fn validation_over_https_denies_with_the_upstream_message() {
    let server = start().await;
    let mut stream = connect(&server).await;
    let (status, body) = http(
        &mut stream,
        "POST",
        "/v1/webhook/validation",
        &pool_create_review("u-2", "admission.k8s.io/v1beta1"),
    )
    .await;
    assert_eq!(status, 200);
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 422);
    // The empty cluster has no NAD net-48.
    assert_eq!(
        review["response"]["status"]["message"],
        "cannot create IPPool default/net-48 because network-attachment-definitions.k8s.cni.cncf.io \"net-48\" not found"
    );
}

#[tokio::test]
async fn validation_waits_for_the_caches_then_503() {
    let server = start().await;
    server.synced.send_replace(false);
    let mut stream = connect(&server).await;
    let (status, _) = http(
        &mut stream,
        "POST",
        "/v1/webhook/validation",
        &pool_create_review("u-3", "admission.k8s.io/v1"),
    )
    .await;
    assert_eq!(status, 503);
    let (status, body) = http(&mut connect(&server).await, "GET", "/readyz", b"").await;
    assert_eq!((status, body.as_slice()), (503, &br#"{"ok":false}"#[..]));
    // The mutator needs no cache.
    let (status, _) = http(
        &mut connect(&server).await,
        "POST",
        "/v1/webhook/mutation",
        &pool_create_review("u-4", "admission.k8s.io/v1"),
    )
    .await;
    assert_eq!(status, 200);
    server.synced.send_replace(true);
    let (status, body) = http(&mut connect(&server).await, "GET", "/readyz", b"").await;
    assert_eq!((status, body.as_slice()), (200, &br#"{"ok":true}"#[..]));
    let (status, body) = http(&mut connect(&server).await, "GET", "/healthz", b"").await;
    assert_eq!((status, body.as_slice()), (200, &br#"{"ok":true}"#[..]));
}

#[tokio::test]
async fn garbage_body_is_a_400() {
    let server = start().await;
    let (status, body) = http(
        &mut connect(&server).await,
        "POST",
        "/v1/webhook/validation",
        b"{not json",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).starts_with("cannot decode the AdmissionReview"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn oversized_body_is_a_413() {
    let server = start().await;
    let body = vec![b' '; server::MAX_BODY + 1];
    let (status, _) = http(
        &mut connect(&server).await,
        "POST",
        "/v1/webhook/mutation",
        &body,
    )
    .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn the_ip_san_is_served_too() {
    let server = start().await;
    let config = client_config(&server.ca, rustls::ALL_VERSIONS);
    let stream = connect_with(server.addr, config, "127.0.0.1")
        .await
        .unwrap();
    assert!(
        served_certificate(&stream)
            .ip_addresses
            .contains(&"127.0.0.1".parse().unwrap())
    );
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let server = start().await;
    let other = certs::generate_ca("other", Timestamp::now(), CA_LIFETIME).unwrap();
    let config = client_config(&other, rustls::ALL_VERSIONS);
    let err = connect_with(server.addr, config, SERVICE)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn tls12_and_tls13_negotiate_aead_suites() {
    let server = start().await;
    for (version, want) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&server.ca, &[version]);
        let stream = connect_with(server.addr, config, SERVICE).await.unwrap();
        let conn = stream.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(want));
        let suite = conn.negotiated_cipher_suite().unwrap().suite();
        assert!(tls::CIPHER_SUITES.contains(&suite), "{suite:?}");
    }
}

#[tokio::test]
async fn rotation_is_seen_by_the_next_connection() {
    let server = start().await;
    let before = served_certificate(&connect(&server).await);
    // An open connection keeps working across the swap.
    let mut open = connect(&server).await;

    let now = Timestamp::now();
    let renewed = certs::issue_serving(
        &server.ca,
        &sans(),
        now,
        Duration::from_secs(90 * 24 * 3600),
    )
    .unwrap();
    server.resolver.set(tls::certified_key(&renewed).unwrap());

    let after = served_certificate(&connect(&server).await);
    assert_ne!(before.serial, after.serial);
    assert_eq!(after.serial, certs::inspect(&renewed.cert).unwrap().serial);
    assert!(
        after.not_after < before.not_after,
        "the 90-day certificate is served"
    );
    let (status, _) = http(&mut open, "GET", "/healthz", b"").await;
    assert_eq!(status, 200);
}

/// A `ClientHello` as an old client sends it: `legacy_version`, the given suites, the usual EC
/// extensions, no `supported_versions`.
fn client_hello(version: [u8; 2], suites: &[u16]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    let suites: Vec<u8> = suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    body.extend_from_slice(&u16::try_from(suites.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[1, 0]); // null compression
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1
    extensions.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    extensions.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extensions.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&extensions);

    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends a raw `ClientHello` and returns the first record the server answers with.
async fn first_record(server: &Server, hello: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut answer = vec![0; 7];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut answer))
        .await
        .expect("the server answers")
        .expect("seven bytes");
    answer
}

const ALERT: u8 = 0x15;
const PROTOCOL_VERSION: u8 = 70;
const HANDSHAKE_FAILURE: u8 = 40;
/// `TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA`, `TLS_RSA_WITH_AES_128_CBC_SHA`.
const CBC_SUITES: [u16; 2] = [0xc013, 0x002f];
/// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`.
const GCM_SUITE: u16 = 0xc02b;

#[tokio::test]
async fn tls10_and_tls11_are_refused() {
    let server = start().await;
    for version in [[3, 1], [3, 2]] {
        let answer =
            first_record(&server, &client_hello(version, &[GCM_SUITE, CBC_SUITES[0]])).await;
        assert_eq!(answer[0], ALERT, "{version:?}: {answer:?}");
        assert_eq!(answer[5], 2, "fatal");
        assert_eq!(answer[6], PROTOCOL_VERSION, "{version:?}: {answer:?}");
    }
}

#[tokio::test]
async fn tls12_without_an_aead_suite_is_refused() {
    let server = start().await;
    let answer = first_record(&server, &client_hello([3, 3], &CBC_SUITES)).await;
    assert_eq!(answer[0], ALERT, "{answer:?}");
    assert_eq!(answer[6], HANDSHAKE_FAILURE, "{answer:?}");
    // The same hello with a GCM suite gets a ServerHello: the refusal above is about suites.
    let answer = first_record(&server, &client_hello([3, 3], &[GCM_SUITE])).await;
    assert_eq!(answer[0], 0x16, "handshake record: {answer:?}");
    assert_eq!(answer[5], 2, "server_hello");
}
