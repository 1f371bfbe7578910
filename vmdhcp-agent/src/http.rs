//! The agent's HTTP endpoints on `:8080`: `/healthz`, `/readyz`, `/metrics`, and `/leases`
//! behind `--enable-cache-dump-api` (upstream's JSON shape).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::state::Served;

/// What the endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    /// The served state.
    pub served: Arc<Served>,
    /// Set once the first complete sync has been applied.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`; `None` serves 404 there (e.g. in tests without a recorder).
    pub metrics: Option<PrometheusHandle>,
    /// Serve `/leases`.
    pub cache_dump: bool,
}

/// The router.
pub fn router(endpoints: Endpoints) -> Router {
    let mut router = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if endpoints.cache_dump {
        router = router.route("/leases", get(leases));
    }
    router.with_state(endpoints)
}

/// Binds `addr`; port 0 picks a free port (the listener's `local_addr` says which).
///
/// # Errors
/// [`Error::Http`] when the address cannot be bound.
pub async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "HTTP endpoints listening");
    Ok(listener)
}

/// Serves `router` on `listener` until `stop`.
///
/// # Errors
/// [`Error::Http`] when serving fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: CancellationToken,
) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|source| Error::Http { addr, source })
}

async fn readyz(State(e): State<Endpoints>) -> Response {
    if e.ready.load(Ordering::Acquire) {
        Json(serde_json::json!({"ok": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ok": false, "reason": "first sync not complete"})),
        )
            .into_response()
    }
}

async fn metrics(State(e): State<Endpoints>) -> Response {
    match &e.metrics {
        Some(handle) => (
            [("content-type", "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn leases(State(e): State<Endpoints>) -> Json<BTreeMap<String, String>> {
    Json(dump(&e.served))
}

/// One lease as upstream's agent dumped it (Go field names; the mask as base64 bytes, the way
/// Go encodes a `net.IPMask`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DumpedLease {
    #[serde(rename = "ServerIP")]
    server_ip: String,
    #[serde(rename = "ClientIP")]
    client_ip: String,
    subnet_mask: String,
    router: String,
    #[serde(rename = "DNS")]
    dns: Vec<String>,
    domain_name: String,
    domain_search: Vec<String>,
    #[serde(rename = "NTP")]
    ntp: Vec<String>,
    lease_time: u32,
}

/// `/leases`: MAC → the lease as a JSON-encoded string (upstream's double encoding, kept so
/// existing scripts keep parsing it).
pub fn dump(served: &Served) -> BTreeMap<String, String> {
    let Some(opts) = served.options() else {
        return BTreeMap::new();
    };
    let resolved = served.resolved_ntp();
    let ntp: Vec<String> = opts
        .ntp
        .iter()
        .flat_map(|s| match s {
            vmdhcp_api::convert::NtpServer::Ip(ip) => vec![*ip],
            vmdhcp_api::convert::NtpServer::Host(h) => resolved.get(h).cloned().unwrap_or_default(),
        })
        .map(|ip| ip.to_string())
        .collect();
    let strings = |v: &[Ipv4Addr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    served
        .table()
        .iter()
        .map(|(mac, ip)| {
            let lease = DumpedLease {
                server_ip: opts.server_ip.to_string(),
                client_ip: ip.to_string(),
                subnet_mask: base64(&opts.subnet_mask().octets()),
                router: opts.router.map(|r| r.to_string()).unwrap_or_default(),
                dns: strings(&opts.dns),
                domain_name: opts.domain_name.clone().unwrap_or_default(),
                domain_search: opts.domain_search.clone(),
                ntp: ntp.clone(),
                lease_time: opts.lease_time_secs,
            };
            let json = serde_json::to_string(&lease).unwrap_or_default();
            (mac.to_string(), json)
        })
        .collect()
}

/// Standard base64 with padding (what Go's `encoding/json` writes for `[]byte`).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[test]
    fn base64_matches_go_for_masks_and_padding() {
        assert_eq!(base64(&[255, 255, 255, 0]), "////AA==");
        assert_eq!(base64(&[255, 255, 0, 0]), "//8AAA==");
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b""), "");
    }

    fn served() -> Arc<Served> {
        let served = Arc::new(Served::new());
        let pool = serde_json::from_value(serde_json::json!({
            "apiVersion": "network.harvesterhci.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "net-48", "namespace": "default"},
            "spec": {"networkName": "default/net-48", "ipv4Config": {
                "cidr": "192.168.48.0/24", "serverIP": "192.168.48.77", "router": "192.168.48.1",
                "dns": ["1.1.1.1"], "domainName": "example.test", "leaseTime": 300,
                "pool": {"start": "192.168.48.81", "end": "192.168.48.90"}}},
            "status": {"ipv4": {"used": 1, "available": 9,
                "allocated": {"192.168.48.84": "CA:70:82:E6:84:6E"}}}
        }))
        .expect("fixture");
        served.apply(&pool).expect("applies");
        served
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_follows_the_first_sync_and_leases_needs_the_flag() {
        let ready = Arc::new(AtomicBool::new(false));
        let endpoints = Endpoints {
            served: served(),
            ready: ready.clone(),
            metrics: None,
            cache_dump: true,
        };
        let app = router(endpoints.clone());
        assert_eq!(
            get(app.clone(), "/healthz").await,
            (StatusCode::OK, r#"{"ok":true}"#.into())
        );
        assert_eq!(
            get(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::Release);
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);

        let (status, body) = get(app, "/leases").await;
        assert_eq!(status, StatusCode::OK);
        let outer: BTreeMap<String, String> = serde_json::from_str(&body).expect("json");
        let inner: serde_json::Value =
            serde_json::from_str(&outer["ca:70:82:e6:84:6e"]).expect("inner json");
        assert_eq!(
            inner,
            serde_json::json!({"ServerIP": "192.168.48.77", "ClientIP": "192.168.48.84",
                "SubnetMask": "////AA==", "Router": "192.168.48.1", "DNS": ["1.1.1.1"],
                "DomainName": "example.test", "DomainSearch": [], "NTP": [], "LeaseTime": 300})
        );

        let without = router(Endpoints {
            cache_dump: false,
            ..endpoints
        });
        assert_eq!(get(without, "/leases").await.0, StatusCode::NOT_FOUND);
    }
}
