//! The kube glue against a scripted API server (tower-test): Secrets created when missing,
//! another replica's Secret adopted after `AlreadyExists`, `Conflict` on update re-read and
//! retried, and the webhook configurations' create and update bodies.

use std::collections::BTreeMap;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::{Api, Client};
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};
use vmdhcp_webhook::Error;
use vmdhcp_webhook::certs::{self, CertPem, Lifetimes};
use vmdhcp_webhook::registration::{self, Registration, Target};
use vmdhcp_webhook::secrets;
use vmdhcp_webhook::write::Outcome;

const NS: &str = "harvester-system";
const NAME: &str = "wh";
const SECRETS: &str = "/api/v1/namespaces/harvester-system/secrets";
const VALIDATING: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
const MUTATING: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

type ApiServer = Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn sans() -> Vec<String> {
    vec![format!("{NAME}.{NS}.svc")]
}

/// The next request, checked for method and path, with its JSON body (`Null` when empty).
async fn expect(
    server: &mut ApiServer,
    method: Method,
    path: &str,
) -> (Value, String, SendResponse<Response<Body>>) {
    let (request, send) = server.next_request().await.expect("another request");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let query = request.uri().query().unwrap_or_default().to_owned();
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, query, send)
}

fn reply(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn not_found(send: SendResponse<Response<Body>>, name: &str) {
    let body = status(404, "NotFound", &format!("secrets \"{name}\" not found"));
    reply(send, StatusCode::NOT_FOUND, &body);
}

fn stored(name: &str, pair: &CertPem, resource_version: &str) -> Value {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NS.to_owned()),
            resource_version: Some(resource_version.to_owned()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".to_owned(),
                ByteString(pair.cert.clone().into_bytes()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(pair.key.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

fn pair_in(body: &Value) -> CertPem {
    let secret: Secret = serde_json::from_value(body.clone()).unwrap();
    secrets::read_pair(&secret).expect("a certificate pair")
}

fn fresh_pair() -> (CertPem, CertPem) {
    let now = Timestamp::now();
    let ca = certs::generate_ca("other-replica", now, certs::CA_LIFETIME).unwrap();
    let serving = certs::issue_serving(&ca, &sans(), now, certs::SERVING_LIFETIME).unwrap();
    (ca, serving)
}

async fn ensure(client: Client) -> Result<secrets::Certificates, Error> {
    let api: Api<Secret> = Api::namespaced(client, NS);
    secrets::ensure(&api, NAME, &sans(), Lifetimes::default(), Timestamp::now()).await
}

#[tokio::test]
async fn missing_secrets_are_created() {
    let (client, mut server) = mock();
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
        not_found(send, "wh-ca");
        let (ca_body, _, send) = expect(&mut server, Method::POST, SECRETS).await;
        assert_eq!(ca_body["metadata"]["name"], "wh-ca");
        assert_eq!(ca_body["type"], "kubernetes.io/tls");
        assert_eq!(
            ca_body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "vmdhcp-webhook"
        );
        reply(send, StatusCode::CREATED, &ca_body);
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-tls")).await;
        not_found(send, "wh-tls");
        let (tls_body, _, send) = expect(&mut server, Method::POST, SECRETS).await;
        assert_eq!(tls_body["metadata"]["name"], "wh-tls");
        reply(send, StatusCode::CREATED, &tls_body);
        (pair_in(&ca_body), pair_in(&tls_body))
    });
    let got = ensure(client).await.unwrap();
    let (ca, serving) = script.await.unwrap();
    assert_eq!(
        (got.ca_outcome, got.serving_outcome),
        (Outcome::Created, Outcome::Created)
    );
    assert_eq!(got.ca, ca, "the CA stored is the CA used");
    assert_eq!(got.serving, serving);
    certs::check_serving(&serving, &ca, &sans(), Timestamp::now())
        .expect("signed by the stored CA");
}

#[tokio::test]
async fn already_exists_adopts_the_other_replicas_secrets() {
    let (client, mut server) = mock();
    let (theirs_ca, theirs_serving) = fresh_pair();
    let (ca, serving) = (theirs_ca.clone(), theirs_serving.clone());
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
        not_found(send, "wh-ca");
        let (_, _, send) = expect(&mut server, Method::POST, SECRETS).await;
        reply(
            send,
            StatusCode::CONFLICT,
            &status(409, "AlreadyExists", "secrets \"wh-ca\" already exists"),
        );
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
        reply(send, StatusCode::OK, &stored("wh-ca", &ca, "10"));
        // Their serving certificate is valid under their CA: nothing more is written.
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-tls")).await;
        reply(send, StatusCode::OK, &stored("wh-tls", &serving, "11"));
    });
    let got = ensure(client).await.unwrap();
    script.await.unwrap();
    assert_eq!(got.ca, theirs_ca);
    assert_eq!(got.serving, theirs_serving);
    assert_eq!(
        (got.ca_outcome, got.serving_outcome),
        (Outcome::Kept, Outcome::Kept)
    );
}

#[tokio::test]
async fn conflict_on_update_rereads_and_retries() {
    let (client, mut server) = mock();
    let (ca, _) = fresh_pair();
    // Issued by another CA: stale under `ca`.
    let (_, foreign) = fresh_pair();
    let script = {
        let ca = ca.clone();
        tokio::spawn(async move {
            let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
            reply(send, StatusCode::OK, &stored("wh-ca", &ca, "5"));
            let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-tls")).await;
            reply(send, StatusCode::OK, &stored("wh-tls", &foreign, "6"));
            let (first, _, send) =
                expect(&mut server, Method::PUT, &format!("{SECRETS}/wh-tls")).await;
            assert_eq!(first["metadata"]["resourceVersion"], "6");
            reply(
                send,
                StatusCode::CONFLICT,
                &status(409, "Conflict", "the object has been modified"),
            );
            // Someone wrote meanwhile, but still nothing usable: replace again, on their version.
            let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-tls")).await;
            reply(send, StatusCode::OK, &stored("wh-tls", &foreign, "7"));
            let (second, _, send) =
                expect(&mut server, Method::PUT, &format!("{SECRETS}/wh-tls")).await;
            assert_eq!(second["metadata"]["resourceVersion"], "7");
            assert_eq!(second["type"], "kubernetes.io/tls");
            reply(send, StatusCode::OK, &second);
            pair_in(&second)
        })
    };
    let got = ensure(client).await.unwrap();
    let written = script.await.unwrap();
    assert_eq!(
        (got.ca_outcome, got.serving_outcome),
        (Outcome::Kept, Outcome::Updated)
    );
    assert_eq!(got.serving, written);
    certs::check_serving(&written, &ca, &sans(), Timestamp::now()).unwrap();
}

#[tokio::test]
async fn conflict_then_a_usable_secret_is_kept() {
    let (client, mut server) = mock();
    let (ca, theirs) = fresh_pair();
    let (_, foreign) = fresh_pair();
    let kept = theirs.clone();
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
        reply(send, StatusCode::OK, &stored("wh-ca", &ca, "5"));
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-tls")).await;
        reply(send, StatusCode::OK, &stored("wh-tls", &foreign, "6"));
        let (_, _, send) = expect(&mut server, Method::PUT, &format!("{SECRETS}/wh-tls")).await;
        reply(
            send,
            StatusCode::CONFLICT,
            &status(409, "Conflict", "modified"),
        );
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-tls")).await;
        reply(send, StatusCode::OK, &stored("wh-tls", &theirs, "7"));
    });
    let got = ensure(client).await.unwrap();
    script.await.unwrap();
    assert_eq!(got.serving, kept);
    assert_eq!(got.serving_outcome, Outcome::Kept);
}

#[tokio::test]
async fn endless_conflicts_give_up() {
    let (client, mut server) = mock();
    let (_, foreign) = fresh_pair();
    let script = tokio::spawn(async move {
        for round in 0..vmdhcp_webhook::write::MAX_ATTEMPTS {
            let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
            reply(
                send,
                StatusCode::OK,
                &stored("wh-ca", &foreign, &round.to_string()),
            );
            let (_, _, send) = expect(&mut server, Method::PUT, &format!("{SECRETS}/wh-ca")).await;
            reply(
                send,
                StatusCode::CONFLICT,
                &status(409, "Conflict", "modified"),
            );
        }
    });
    let err = ensure(client).await.unwrap_err();
    script.await.unwrap();
    assert!(
        matches!(&err, Error::TooManyConflicts { object, attempts: 5 } if object == "Secret harvester-system/wh-ca"),
        "{err}"
    );
}

#[tokio::test]
async fn unreadable_secret_is_replaced_keeping_its_type() {
    let (client, mut server) = mock();
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
        // Upstream-style leftovers this webhook cannot use.
        let opaque = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "wh-ca", "namespace": NS, "resourceVersion": "3"},
            "data": {"tls.crt": "bm90IGEgY2VydA==", "other": "eA=="}});
        reply(send, StatusCode::OK, &opaque);
        let (body, _, send) = expect(&mut server, Method::PUT, &format!("{SECRETS}/wh-ca")).await;
        assert_eq!(body["type"], "Opaque", "the type of a Secret cannot change");
        assert_eq!(body["data"]["other"], "eA==", "other keys are left alone");
        assert_eq!(body["metadata"]["resourceVersion"], "3");
        reply(send, StatusCode::OK, &body);
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-tls")).await;
        not_found(send, "wh-tls");
        let (body, _, send) = expect(&mut server, Method::POST, SECRETS).await;
        reply(send, StatusCode::CREATED, &body);
    });
    let got = ensure(client).await.unwrap();
    script.await.unwrap();
    assert_eq!(
        (got.ca_outcome, got.serving_outcome),
        (Outcome::Updated, Outcome::Created)
    );
}

#[tokio::test]
async fn api_errors_name_the_object() {
    let (client, mut server) = mock();
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, &format!("{SECRETS}/wh-ca")).await;
        let body = status(403, "Forbidden", "secrets \"wh-ca\" is forbidden");
        reply(send, StatusCode::FORBIDDEN, &body);
    });
    let err = ensure(client).await.unwrap_err();
    script.await.unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with("cannot get Secret harvester-system/wh-ca: "),
        "{text}"
    );
}

// ------------------------------------------------------------------ webhook configurations

fn registration(ca: &str) -> Registration {
    Registration {
        name: NAME.into(),
        namespace: NS.into(),
        ca_bundle: ca.as_bytes().to_vec(),
        target: Target::Service { port: 443 },
    }
}

fn list(kind: &str, items: &[Value]) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": format!("{kind}List"),
           "metadata": {"resourceVersion": "100"}, "items": items})
}

/// What the API server returns for a stored configuration: ours plus server-set metadata.
fn as_stored(mut object: Value, kind: &str, resource_version: &str) -> Value {
    object["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    object["kind"] = json!(kind);
    object["metadata"]["resourceVersion"] = json!(resource_version);
    object["metadata"]["uid"] = json!("7e1f0000-0000-4000-8000-000000000001");
    object["metadata"]["labels"] = json!({"keep": "me"});
    object
}

#[tokio::test]
async fn configurations_are_created_with_the_ca_bundle() {
    let (client, mut server) = mock();
    let reg = registration("CA-1");
    let want_validating = serde_json::to_value(registration::validating(&reg)).unwrap();
    let want_mutating = serde_json::to_value(registration::mutating(&reg)).unwrap();
    let script = tokio::spawn(async move {
        let (_, query, send) = expect(&mut server, Method::GET, VALIDATING).await;
        assert!(
            query.contains("fieldSelector=metadata.name%3Dwh"),
            "{query}"
        );
        reply(
            send,
            StatusCode::OK,
            &list("ValidatingWebhookConfiguration", &[]),
        );
        let (body, _, send) = expect(&mut server, Method::POST, VALIDATING).await;
        assert_eq!(body["webhooks"], want_validating["webhooks"]);
        assert_eq!(body["metadata"]["name"], "wh");
        // base64("CA-1")
        assert_eq!(body["webhooks"][0]["clientConfig"]["caBundle"], "Q0EtMQ==");
        assert_eq!(body["webhooks"][0]["failurePolicy"], "Fail");
        reply(send, StatusCode::CREATED, &body);
        let (_, _, send) = expect(&mut server, Method::GET, MUTATING).await;
        reply(
            send,
            StatusCode::OK,
            &list("MutatingWebhookConfiguration", &[]),
        );
        let (body, _, send) = expect(&mut server, Method::POST, MUTATING).await;
        assert_eq!(body["webhooks"], want_mutating["webhooks"]);
        assert_eq!(body["webhooks"][0]["failurePolicy"], "Ignore");
        reply(send, StatusCode::CREATED, &body);
    });
    let got = registration::apply(&client, &reg).await.unwrap();
    script.await.unwrap();
    assert_eq!(got, (Outcome::Created, Outcome::Created));
}

#[tokio::test]
async fn a_changed_ca_updates_on_the_read_version_and_retries_conflicts() {
    let (client, mut server) = mock();
    let old = registration("CA-OLD");
    let new = registration("CA-NEW");
    let stored_validating = as_stored(
        serde_json::to_value(registration::validating(&old)).unwrap(),
        "ValidatingWebhookConfiguration",
        "41",
    );
    let current_mutating = as_stored(
        serde_json::to_value(registration::mutating(&new)).unwrap(),
        "MutatingWebhookConfiguration",
        "50",
    );
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, VALIDATING).await;
        let items = vec![stored_validating.clone()];
        reply(
            send,
            StatusCode::OK,
            &list("ValidatingWebhookConfiguration", &items),
        );
        // First asked what the server would store: something else, so it is written.
        let (body, query, send) =
            expect(&mut server, Method::PUT, &format!("{VALIDATING}/wh")).await;
        assert!(query.contains("dryRun=All"), "{query}");
        reply(send, StatusCode::OK, &body);
        let (body, query, send) =
            expect(&mut server, Method::PUT, &format!("{VALIDATING}/wh")).await;
        assert!(!query.contains("dryRun"), "{query}");
        assert_eq!(body["metadata"]["resourceVersion"], "41");
        reply(
            send,
            StatusCode::CONFLICT,
            &status(409, "Conflict", "modified"),
        );
        let mut newer = stored_validating.clone();
        newer["metadata"]["resourceVersion"] = json!("42");
        let (_, _, send) = expect(&mut server, Method::GET, VALIDATING).await;
        reply(
            send,
            StatusCode::OK,
            &list("ValidatingWebhookConfiguration", &[newer]),
        );
        let (body, query, send) =
            expect(&mut server, Method::PUT, &format!("{VALIDATING}/wh")).await;
        assert!(query.contains("dryRun=All"), "{query}");
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        reply(send, StatusCode::OK, &body);
        let (body, query, send) =
            expect(&mut server, Method::PUT, &format!("{VALIDATING}/wh")).await;
        assert!(!query.contains("dryRun"), "{query}");
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert_eq!(
            body["metadata"]["labels"]["keep"], "me",
            "foreign metadata kept"
        );
        // base64("CA-NEW")
        assert_eq!(body["webhooks"][0]["clientConfig"]["caBundle"], "Q0EtTkVX");
        reply(send, StatusCode::OK, &body);
        // The mutating one already has the new CA: read, not written.
        let (_, _, send) = expect(&mut server, Method::GET, MUTATING).await;
        reply(
            send,
            StatusCode::OK,
            &list("MutatingWebhookConfiguration", &[current_mutating]),
        );
    });
    let got = registration::apply(&client, &new).await.unwrap();
    script.await.unwrap();
    assert_eq!(got, (Outcome::Updated, Outcome::Kept));
}

/// Before Kubernetes 1.28 the API server drops `matchConditions`: what it stores then
/// differs from ours forever, and a dry run shows that writing would change nothing.
#[tokio::test]
async fn a_server_that_drops_match_conditions_is_not_rewritten() {
    let (client, mut server) = mock();
    let reg = registration("CA-1");
    let mut stored_validating = as_stored(
        serde_json::to_value(registration::validating(&reg)).unwrap(),
        "ValidatingWebhookConfiguration",
        "7",
    );
    for hook in stored_validating["webhooks"].as_array_mut().unwrap() {
        hook.as_object_mut().unwrap().remove("matchConditions");
    }
    let stored_mutating = as_stored(
        serde_json::to_value(registration::mutating(&reg)).unwrap(),
        "MutatingWebhookConfiguration",
        "8",
    );
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, VALIDATING).await;
        let items = vec![stored_validating.clone()];
        reply(
            send,
            StatusCode::OK,
            &list("ValidatingWebhookConfiguration", &items),
        );
        let (mut body, query, send) =
            expect(&mut server, Method::PUT, &format!("{VALIDATING}/wh")).await;
        assert!(query.contains("dryRun=All"), "{query}");
        assert!(body["webhooks"][0].get("matchConditions").is_some());
        for hook in body["webhooks"].as_array_mut().unwrap() {
            hook.as_object_mut().unwrap().remove("matchConditions");
        }
        reply(send, StatusCode::OK, &body);
        // No real write: next comes the mutating configuration.
        let (_, _, send) = expect(&mut server, Method::GET, MUTATING).await;
        reply(
            send,
            StatusCode::OK,
            &list("MutatingWebhookConfiguration", &[stored_mutating]),
        );
    });
    let got = registration::apply(&client, &reg).await.unwrap();
    script.await.unwrap();
    assert_eq!(got, (Outcome::Kept, Outcome::Kept));
}

#[tokio::test]
async fn already_exists_on_create_rereads() {
    let (client, mut server) = mock();
    let reg = registration("CA-1");
    let theirs = as_stored(
        serde_json::to_value(registration::validating(&reg)).unwrap(),
        "ValidatingWebhookConfiguration",
        "9",
    );
    let mutating = as_stored(
        serde_json::to_value(registration::mutating(&reg)).unwrap(),
        "MutatingWebhookConfiguration",
        "10",
    );
    let script = tokio::spawn(async move {
        let (_, _, send) = expect(&mut server, Method::GET, VALIDATING).await;
        reply(
            send,
            StatusCode::OK,
            &list("ValidatingWebhookConfiguration", &[]),
        );
        let (_, _, send) = expect(&mut server, Method::POST, VALIDATING).await;
        let body = status(
            409,
            "AlreadyExists",
            "validatingwebhookconfigurations \"wh\" already exists",
        );
        reply(send, StatusCode::CONFLICT, &body);
        let (_, _, send) = expect(&mut server, Method::GET, VALIDATING).await;
        reply(
            send,
            StatusCode::OK,
            &list("ValidatingWebhookConfiguration", &[theirs]),
        );
        let (_, _, send) = expect(&mut server, Method::GET, MUTATING).await;
        reply(
            send,
            StatusCode::OK,
            &list("MutatingWebhookConfiguration", &[mutating]),
        );
    });
    let got = registration::apply(&client, &reg).await.unwrap();
    script.await.unwrap();
    assert_eq!(got, (Outcome::Kept, Outcome::Kept));
}
