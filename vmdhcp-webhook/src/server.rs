//! HTTPS: an axum router over hyper's HTTP/1.1, behind tokio-rustls.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/v1/webhook/validation` | the review ([`admission::review`]); 503 until the caches are synced |
//! | POST | `/v1/webhook/mutation` | the review (defaulting needs no cache) |
//! | GET | `/healthz` | `{"ok":true}` |
//! | GET | `/readyz` | `{"ok":true}` once the caches are synced, else 503 |
//!
//! The caller binds the listener ([`serve`] takes it), so tests and the e2e suite use port 0.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Cluster, PATH_MUTATION, PATH_VALIDATION, Reply, Settings, Webhook};

/// Largest review accepted. An IPPool of a /16 with every address allocated is about 3 MB of
/// status, and an UPDATE carries the object twice.
pub const MAX_BODY: usize = 8 << 20;
/// Upstream's HTTP read and write timeouts.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// A TLS handshake that takes longer is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a validation request waits for the caches before a 503. Below the API server's
/// default webhook timeout (10 s), so the caller sees our answer rather than its timeout.
pub const SYNC_WAIT: Duration = Duration::from_secs(8);

/// What the handlers need.
#[derive(Clone)]
pub struct Admission<C> {
    /// The cached cluster.
    pub cluster: C,
    /// Settings of the decisions.
    pub settings: Settings,
    /// `true` once the caches are synced.
    pub synced: watch::Receiver<bool>,
    /// How long a validation waits for `synced`.
    pub sync_wait: Duration,
}

/// The routes of the table above.
pub fn router<C>(state: Admission<C>) -> Router
where
    C: Cluster + Clone + Send + Sync + 'static,
{
    Router::new()
        .route(PATH_VALIDATION, post(validation::<C>))
        .route(PATH_MUTATION, post(mutation::<C>))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"ok": true})) }),
        )
        .route("/readyz", get(readyz::<C>))
        .with_state(state)
}

async fn validation<C>(State(state): State<Admission<C>>, body: Body) -> Response
where
    C: Cluster + Clone + Send + Sync + 'static,
{
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut synced = state.synced.clone();
    let waited = tokio::time::timeout(state.sync_wait, synced.wait_for(|s| *s)).await;
    if !matches!(waited, Ok(Ok(_))) {
        // An HTTP error, not a denial: the webhook's failurePolicy decides what happens.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches are not synced yet; retry",
        )
            .into_response();
    }
    respond(admission::review(
        Webhook::Validation,
        &body,
        &state.cluster,
        state.settings,
    ))
}

async fn mutation<C>(State(state): State<Admission<C>>, body: Body) -> Response
where
    C: Cluster + Clone + Send + Sync + 'static,
{
    match read_body(body).await {
        Ok(body) => respond(admission::review(
            Webhook::Mutation,
            &body,
            &state.cluster,
            state.settings,
        )),
        Err(response) => response,
    }
}

async fn readyz<C>(State(state): State<Admission<C>>) -> Response {
    if *state.synced.borrow() {
        axum::Json(json!({"ok": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ok": false})),
        )
            .into_response()
    }
}

/// The body, bounded in size and time.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Response> {
    match tokio::time::timeout(IO_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
            let status = if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            Err((status, e.to_string()).into_response())
        }
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "request body too slow").into_response()),
    }
}

fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Review(review) => {
            if let Some(r) = &review.response {
                if r.allowed {
                    tracing::debug!(uid = %r.uid, patched = r.patch.is_some(), "allowed");
                } else {
                    tracing::info!(uid = %r.uid, code = r.result.code, "denied: {}", r.result.message);
                }
            }
            axum::Json(admission::to_wire(&review)).into_response()
        }
        Reply::BadRequest(message) => {
            tracing::warn!("bad admission request: {message}");
            (StatusCode::BAD_REQUEST, message).into_response()
        }
    }
}

/// Accepts TLS connections on `listener` and serves `app` on each until `stop` is cancelled;
/// open connections then finish their current request.
///
/// # Cancel safety
/// Returns once `stop` is cancelled; connections close on their own shortly after.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    stop: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IO_TIMEOUT)
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
