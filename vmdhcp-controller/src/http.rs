//! `:8080` on every replica: `/healthz`, `/readyz`, `/metrics`, and behind
//! `--enable-cache-dump-api` `/ipams/<ns>/<nad>` and `/caches/<ns>/<nad>` with upstream's
//! JSON shapes and error texts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;
use vmdhcp_api::ippool::IPPool;

use crate::error::Error;
use crate::metrics::Registry;

/// Where readiness comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Not leading: a healthy standby (ready, so rollouts of several replicas proceed).
    Standby,
    /// Leading, caches still listing.
    Syncing,
    /// Leading with synced caches.
    Synced,
}

/// What the endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    /// Current readiness.
    pub readiness: tokio::sync::watch::Receiver<Readiness>,
    /// The gauges.
    pub metrics: Arc<Registry>,
    /// The IPPool cache, once leading.
    pub pools: tokio::sync::watch::Receiver<Option<Store<IPPool>>>,
    /// Serve `/ipams` and `/caches`.
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
        router = router
            .route("/ipams/{*network}", get(ipams))
            .route("/caches/{*network}", get(caches));
    }
    router.with_state(endpoints)
}

/// Binds `addr` now and returns the server to spawn, serving until `stop`.
///
/// # Errors
/// [`Error::Http`] when the address cannot be bound.
pub async fn bind(
    addr: SocketAddr,
    router: Router,
    stop: CancellationToken,
) -> Result<impl Future<Output = Result<(), Error>>, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http { addr, source })?;
    tracing::info!(%addr, "HTTP endpoints listening");
    Ok(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .map_err(|source| Error::Http { addr, source })
    })
}

async fn readyz(State(e): State<Endpoints>) -> Response {
    let state = e.readiness.borrow().clone();
    match state {
        Readiness::Standby | Readiness::Synced => {
            Json(serde_json::json!({"ok": true})).into_response()
        }
        Readiness::Syncing => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ok": false, "reason": "caches not synced"})),
        )
            .into_response(),
    }
}

async fn metrics(State(e): State<Endpoints>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        e.metrics.render(),
    )
        .into_response()
}

fn pool_of(e: &Endpoints, network: &str) -> Option<Arc<IPPool>> {
    let store = e.pools.borrow().clone()?;
    store.state().into_iter().find(|p| {
        p.spec.network_name == network || p.network().is_ok_and(|n| n.to_string() == network)
    })
}

async fn ipams(State(e): State<Endpoints>, Path(network): Path<String>) -> Response {
    let fail = |why: String| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to list ipam of {network}: {why}"),
        )
            .into_response()
    };
    let Some(pool) = pool_of(&e, &network) else {
        return fail(format!("network {network} does not exist"));
    };
    match vmdhcp_api::convert::to_ipam_pool(&pool) {
        Ok(ipam) => Json(ipam_dump(&ipam)).into_response(),
        Err(err) => fail(err.to_string()),
    }
}

/// Every address of the range that is not reserved → `"true"` (allocated) or `"false"`.
fn ipam_dump(ipam: &ipam::Pool) -> BTreeMap<String, String> {
    (u32::from(ipam.start())..=u32::from(ipam.end()))
        .map(std::net::Ipv4Addr::from)
        .filter_map(|ip| match ipam.state(ip) {
            ipam::AddrState::Allocated => Some((ip.to_string(), "true".to_owned())),
            ipam::AddrState::Free => Some((ip.to_string(), "false".to_owned())),
            _ => None,
        })
        .collect()
}

async fn caches(State(e): State<Endpoints>, Path(network): Path<String>) -> Response {
    let Some(pool) = pool_of(&e, &network) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to list cache of {network}: network {network} does not exist"),
        )
            .into_response();
    };
    let macs: BTreeMap<String, String> = vmdhcp_api::convert::allocations(&pool)
        .unwrap_or_default()
        .into_iter()
        .map(|(ip, mac)| (mac, ip.to_string()))
        .collect();
    Json(macs).into_response()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher;
    use tower::ServiceExt;

    use super::*;

    fn endpoints(readiness: Readiness, pool: Option<IPPool>) -> Endpoints {
        let (reader, mut writer) = reflector::store::<IPPool>();
        if let Some(p) = pool {
            writer.apply_watcher_event(&watcher::Event::Apply(p));
        }
        let _ = ObjectRef::<IPPool>::new("x");
        Endpoints {
            readiness: tokio::sync::watch::channel(readiness).1,
            metrics: Arc::new(Registry::default()),
            pools: tokio::sync::watch::channel(Some(reader)).1,
            cache_dump: true,
        }
    }

    async fn get_path(e: Endpoints, path: &str) -> (StatusCode, String) {
        let resp = router(e)
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("served");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_and_cache_dumps() {
        assert_eq!(
            get_path(endpoints(Readiness::Syncing, None), "/readyz")
                .await
                .0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get_path(endpoints(Readiness::Standby, None), "/readyz").await,
            (StatusCode::OK, r#"{"ok":true}"#.into())
        );
        let pool = IPPool::test("default", "net-48")
            .with_cidr("192.168.48.0/24")
            .with_server("192.168.48.77")
            .with_range("192.168.48.81", "192.168.48.90");
        let (code, body) = get_path(
            endpoints(Readiness::Synced, Some(pool)),
            "/ipams/default/net-48",
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let map: BTreeMap<String, String> = serde_json::from_str(&body).expect("json");
        assert!(
            !map.is_empty() && map.values().all(|v| v == "true" || v == "false"),
            "{body}"
        );
        let (code, body) =
            get_path(endpoints(Readiness::Synced, None), "/caches/default/other").await;
        assert_eq!(
            (code, body.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to list cache of default/other: network default/other does not exist"
            )
        );
    }
}
